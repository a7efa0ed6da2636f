//! `oxcdctl`: etcdctl's commands, flags, environment variables and output formats, so scripts
//! written for etcdctl work by changing the program name.
//!
//! This first slice has `get`, `put`, `del` and `version` in the `simple` and `json` formats; the
//! other commands and formats come with the oxcdctl issue.

mod output;

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use oxcd_api::etcdserverpb::kv_client::KvClient;
use oxcd_api::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, range_request};
use tonic::transport::{Channel, Endpoint};

use output::{Format, Printer};

/// A simple command line client for etcd3 (and oxcd).
#[derive(Debug, Parser)]
#[command(name = "oxcdctl", version, disable_version_flag = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Args)]
struct Global {
    /// gRPC endpoints
    #[arg(long, env = "ETCDCTL_ENDPOINTS", default_value = "127.0.0.1:2379", value_delimiter = ',', global = true)]
    endpoints: Vec<String>,
    /// dial timeout for client connections
    #[arg(long, env = "ETCDCTL_DIAL_TIMEOUT", default_value = "2s", value_parser = parse_duration, global = true)]
    dial_timeout: Duration,
    /// timeout for short running command (excluding dial timeout)
    #[arg(long, env = "ETCDCTL_COMMAND_TIMEOUT", default_value = "5s", value_parser = parse_duration, global = true)]
    command_timeout: Duration,
    /// set the output format (simple, json)
    #[arg(short = 'w', long, env = "ETCDCTL_WRITE_OUT", default_value = "simple", global = true)]
    write_out: Format,
    /// print byte strings as hex encoded strings
    #[arg(long, env = "ETCDCTL_HEX", global = true)]
    hex: bool,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Gets the key or a range of keys
    Get {
        key: String,
        range_end: Option<String>,
        /// Linearizable(l) or Serializable(s)
        #[arg(long, default_value = "l")]
        consistency: String,
        /// Get keys with matching prefix
        #[arg(long)]
        prefix: bool,
        /// Get keys that are greater than or equal to the given key using byte compare
        #[arg(long)]
        from_key: bool,
        /// Maximum number of results
        #[arg(long, default_value_t = 0)]
        limit: i64,
        /// Specify the kv revision
        #[arg(long, default_value_t = 0)]
        rev: i64,
        /// Get only the keys
        #[arg(long)]
        keys_only: bool,
        /// Get only the count
        #[arg(long)]
        count_only: bool,
        /// Only write values when using the "simple" output format
        #[arg(long)]
        print_value_only: bool,
        /// Order of results; ASCEND or DESCEND (ASCEND by default)
        #[arg(long, default_value = "")]
        order: String,
        /// Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION
        #[arg(long, default_value = "")]
        sort_by: String,
    },
    /// Puts the given key into the store
    Put {
        key: String,
        value: Option<String>,
        /// lease ID (in hexadecimal) to attach to the key
        #[arg(long, default_value = "0")]
        lease: String,
        /// return the previous key-value pair before modification
        #[arg(long)]
        prev_kv: bool,
        /// updates the key using its current value
        #[arg(long)]
        ignore_value: bool,
        /// updates the key using its current lease
        #[arg(long)]
        ignore_lease: bool,
    },
    /// Removes the specified key or range of keys [key, range_end)
    Del {
        key: String,
        range_end: Option<String>,
        /// delete keys with matching prefix
        #[arg(long)]
        prefix: bool,
        /// return deleted key-value pairs
        #[arg(long)]
        prev_kv: bool,
        /// delete keys that are greater than or equal to the given key using byte compare
        #[arg(long)]
        from_key: bool,
    },
    /// Prints the version of oxcdctl
    Version,
}

/// Go-style durations as etcdctl takes them: `2s`, `500ms`, `1m`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    oxcd_api::duration::parse(s)
}

/// The end of the range covering every key with prefix `key` (etcd's `GetPrefixRangeEnd`).
fn prefix_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn range_end(key: &str, end: Option<String>, prefix: bool, from_key: bool) -> Result<Bytes, String> {
    match (end, prefix, from_key) {
        (Some(_), true, _) | (Some(_), _, true) => {
            Err("too many arguments, only accept one argument when `--prefix` or `--from-key` is set".into())
        }
        (_, true, true) => Err("`--prefix` and `--from-key` cannot be set at the same time, choose one".into()),
        (Some(e), false, false) => Ok(Bytes::from(e)),
        (None, true, false) if key.is_empty() => Ok(Bytes::from_static(b"\0")),
        (None, true, false) => Ok(Bytes::from(prefix_end(key.as_bytes()))),
        (None, false, true) => Ok(Bytes::from_static(b"\0")),
        (None, false, false) => Ok(Bytes::new()),
    }
}

async fn connect(g: &Global) -> anyhow::Result<KvClient<Channel>> {
    let endpoints = g.endpoints.iter().map(|e| {
        let url = if e.contains("://") { e.clone() } else { format!("http://{e}") };
        Endpoint::from_shared(url).map(|ep| ep.connect_timeout(g.dial_timeout).timeout(g.command_timeout))
    });
    let endpoints: Vec<Endpoint> = endpoints.collect::<Result<_, _>>()?;
    let channel = Channel::balance_list(endpoints.into_iter());
    Ok(KvClient::new(channel).max_decoding_message_size(usize::MAX))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let printer = Printer { format: cli.global.write_out, hex: cli.global.hex };
    match cli.cmd {
        Cmd::Version => {
            println!("oxcdctl version: {}", env!("CARGO_PKG_VERSION"));
            println!("API version: 3.5");
        }
        Cmd::Get {
            key,
            range_end: end,
            consistency,
            prefix,
            from_key,
            limit,
            rev,
            keys_only,
            count_only,
            print_value_only,
            order,
            sort_by,
        } => {
            let sort_order = match order.as_str() {
                "" => range_request::SortOrder::None,
                "ASCEND" => range_request::SortOrder::Ascend,
                "DESCEND" => range_request::SortOrder::Descend,
                other => anyhow::bail!("bad sort order {other}"),
            };
            let sort_target = match sort_by.as_str() {
                "" | "KEY" => range_request::SortTarget::Key,
                "CREATE" => range_request::SortTarget::Create,
                "MODIFY" => range_request::SortTarget::Mod,
                "VALUE" => range_request::SortTarget::Value,
                "VERSION" => range_request::SortTarget::Version,
                other => anyhow::bail!("bad sort target {other}"),
            };
            // etcdctl: a sort target without an order sorts ascending.
            let sort_order = if sort_by.is_empty() || sort_order != range_request::SortOrder::None {
                sort_order
            } else {
                range_request::SortOrder::Ascend
            };
            let req = RangeRequest {
                range_end: range_end(&key, end, prefix, from_key).map_err(anyhow::Error::msg)?,
                key: Bytes::from(if key.is_empty() && (prefix || from_key) { "\0".to_string() } else { key }),
                limit,
                revision: rev,
                sort_order: sort_order as i32,
                sort_target: sort_target as i32,
                serializable: consistency == "s",
                keys_only,
                count_only,
                ..Default::default()
            };
            let resp = connect(&cli.global).await?.range(req).await?.into_inner();
            printer.range(&resp, print_value_only);
        }
        Cmd::Put { key, value, lease, prev_kv, ignore_value, ignore_lease } => {
            let value = match value {
                Some(v) => v,
                None if ignore_value => String::new(),
                None => {
                    let mut v = String::new();
                    std::io::stdin().read_line(&mut v)?;
                    v.trim_end_matches('\n').to_string()
                }
            };
            let lease = i64::from_str_radix(&lease, 16)
                .map_err(|e| anyhow::anyhow!("bad lease ID ({e}), expecting ID in Hex"))?;
            let req = PutRequest {
                key: Bytes::from(key),
                value: Bytes::from(value),
                lease,
                prev_kv,
                ignore_value,
                ignore_lease,
            };
            let resp = connect(&cli.global).await?.put(req).await?.into_inner();
            printer.put(&resp);
        }
        Cmd::Del { key, range_end: end, prefix, prev_kv, from_key } => {
            let req = DeleteRangeRequest {
                range_end: range_end(&key, end, prefix, from_key).map_err(anyhow::Error::msg)?,
                key: Bytes::from(if key.is_empty() && (prefix || from_key) { "\0".to_string() } else { key }),
                prev_kv,
            };
            let resp = connect(&cli.global).await?.delete_range(req).await?.into_inner();
            printer.delete(&resp);
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // etcdctl prints the server's message for gRPC errors.
            let msg = match e.downcast_ref::<tonic::Status>() {
                Some(s) => s.message().to_string(),
                None => e.to_string(),
            };
            eprintln!("Error: {msg}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"a"), b"b");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }
}
