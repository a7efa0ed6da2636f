//! `oxcd-bench`: a load generator modelled on etcd's `benchmark` tool — the same subcommands, flags,
//! request shapes and report — speaking plain etcd v3 gRPC, so the same binary measures oxcd and etcd.
//! `--output json` gives the report to machines (scripts/bench-vs-etcd reads it).

mod auth;
mod kv;
mod lease;
mod progress;
mod report;
mod watch;

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use oxcd_api::etcdserverpb::AuthenticateRequest;
use oxcd_api::etcdserverpb::auth_client::AuthClient;
use oxcd_api::etcdserverpb::cluster_client::ClusterClient;
use oxcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use oxcd_api::etcdserverpb::{MemberListRequest, StatusRequest};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use oxcd_api::coalesce::Coalesce;

use crate::report::{Format, Summary};

/// A low-level benchmark tool for etcd3 (oxcd or etcd).
#[derive(Debug, Parser)]
#[command(name = "oxcd-bench", version)]
pub(crate) struct Cli {
    /// gRPC endpoints
    #[arg(long, default_value = "127.0.0.1:2379", value_delimiter = ',', global = true)]
    pub(crate) endpoints: Vec<String>,
    /// Total number of gRPC connections
    #[arg(long, default_value_t = 1, global = true)]
    pub(crate) conns: usize,
    /// Total number of gRPC clients
    #[arg(long, default_value_t = 1, global = true)]
    pub(crate) clients: usize,
    /// use full floating point precision
    #[arg(long, global = true)]
    pub(crate) precise: bool,
    /// 'true' to sample requests for every second
    #[arg(long, global = true)]
    pub(crate) sample: bool,
    /// connect only to the leader node
    #[arg(long, global = true)]
    pub(crate) target_leader: bool,
    /// dial timeout for client connections (Go duration; 0 waits for the connection)
    #[arg(long, default_value = "0", value_parser = oxcd_api::duration::parse, global = true)]
    pub(crate) dial_timeout: Duration,
    /// verify certificates of TLS-enabled secure servers using this CA bundle
    #[arg(long, default_value = "", global = true)]
    pub(crate) cacert: String,
    /// identify secure client using this TLS certificate file
    #[arg(long, default_value = "", global = true)]
    pub(crate) cert: String,
    /// identify secure client using this TLS key file
    // Its own id: `range` has a positional `key`.
    #[arg(long = "key", id = "tls-key", default_value = "", global = true)]
    pub(crate) tls_key: String,
    /// Username[:password] for authentication (prompting is not supported: give the password)
    #[arg(long, default_value = "", global = true)]
    pub(crate) user: String,
    /// Password for authentication (if this option is used, --user option shouldn't include password)
    #[arg(long, default_value = "", global = true)]
    pub(crate) password: String,
    /// Output format of the report: etcd's text, or json
    #[arg(long, value_enum, default_value_t = Output::Text, global = true)]
    pub(crate) output: Output,
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Cmd {
    /// Benchmark put
    Put(kv::PutArgs),
    /// Benchmark range
    Range(kv::RangeArgs),
    /// Benchmark txn-put
    TxnPut(kv::TxnPutArgs),
    /// Benchmark a mixed load of txn-put & txn-range.
    TxnMixed(kv::TxnMixedArgs),
    /// Benchmark watch
    #[command(long_about = "Benchmark watch tests the performance of processing watch requests and sending events to \
        watchers. It tests the sending performance by changing the value of the watched keys with concurrent put \
        requests.\n\nDuring the test, each watcher watches (--total/--watchers) keys\n\n(a watcher might watch on the \
        same key multiple times if --watched-key-total is small).\n\nEach key is watched by \
        (--total/--watched-key-total) watchers.")]
    Watch(watch::WatchArgs),
    /// Benchmark watch latency
    #[command(long_about = "Benchmarks the latency for watches by measuring the latency between writing to a key and \
        receiving the associated watch response.\n\nThe latency runs from sending the put (etcd's tool starts the \
        clock at the put's response, which hides the commit); --clients watchers share --conns watch streams.")]
    WatchLatency(watch::LatencyArgs),
    /// Benchmark watch with get
    #[command(long_about = "Benchmark for serialized key gets with many unsynced watchers")]
    WatchGet(watch::GetArgs),
    /// Benchmark lease keepalive
    LeaseKeepalive(lease::KeepaliveArgs),
    /// Benchmark lease grant + revoke pairs (not in etcd's tool)
    LeaseGrantRevoke(lease::GrantRevokeArgs),
    /// Benchmark Authenticate with --user's credentials (not in etcd's tool)
    Authenticate(auth::AuthenticateArgs),
}

/// One timed request of a client, on that client's own state.
pub(crate) type Op<C> =
    for<'a> fn(&'a mut C) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>>;

/// A closed loop: each of `clients` (one state per client) sends `op` until `total` requests were
/// sent between them all, each timed; then the report is printed.
pub(crate) async fn closed_loop<C: Send + 'static>(
    cli: &Cli,
    total: u64,
    clients: Vec<C>,
    op: Op<C>,
) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let next = std::sync::Arc::new(AtomicU64::new(0));
    let bar = std::sync::Arc::new(progress::Bar::start(total));
    let report = report::Report::start(cli.format());
    let mut tasks = Vec::new();
    for mut client in clients {
        let (next, bar, mut rec) = (next.clone(), bar.clone(), report.recorder());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let start = std::time::Instant::now();
                let result = op(&mut client).await;
                rec.record(start, std::time::Instant::now(), result);
                bar.inc(1);
            }
            rec
        }));
    }
    let mut all = report.recorder();
    for t in tasks {
        all.merge(t.await?);
    }
    bar.finish();
    cli.print("", &report.finish(all), "");
    Ok(())
}

/// A connection whose every request carries the auth token, once `--user` logged in.
pub(crate) type Conn = InterceptedService<Channel, Token>;

/// Adds `token` metadata to every request (none without `--user`).
#[derive(Clone)]
pub(crate) struct Token(Option<MetadataValue<Ascii>>);

impl Interceptor for Token {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = &self.0 {
            req.metadata_mut().insert("token", t.clone());
        }
        Ok(req)
    }
}

impl Cli {
    pub(crate) fn format(&self) -> Format {
        Format { precise: self.precise, sample: self.sample }
    }

    /// Prints one report: etcd's text (with `prefix` before it and `suffix` after), or json.
    pub(crate) fn print(&self, prefix: &str, s: &Summary, suffix: &str) {
        match self.output {
            Output::Text => print!("{prefix}{}{suffix}", s.to_text()),
            Output::Json => println!("{}", serde_json::to_string_pretty(&s.to_json()).expect("json")),
        }
    }

    /// Prints several named reports: each as etcd does in text, one json object keyed by name.
    pub(crate) fn print_named(&self, reports: &[(&str, &str, &Summary, &str)]) {
        match self.output {
            Output::Text => {
                for (_, prefix, s, suffix) in reports {
                    print!("{prefix}{}{suffix}", s.to_text());
                }
            }
            Output::Json => {
                let v: serde_json::Map<String, serde_json::Value> =
                    reports.iter().map(|(name, _, s, _)| (name.to_string(), s.to_json())).collect();
                println!("{}", serde_json::to_string_pretty(&v).expect("json"));
            }
        }
    }

    /// Opens `n` connections. Without --target-leader each gets one endpoint, round-robin over
    /// --endpoints (as etcd's tool); with it, every connection goes to the leader's client URL.
    pub(crate) async fn dial(&self, n: usize) -> anyhow::Result<Vec<Conn>> {
        let eps = if self.target_leader { vec![self.leader_endpoint().await?] } else { self.endpoints.clone() };
        let mut chans = Vec::with_capacity(n);
        for i in 0..n.max(1) {
            chans.push(self.dial_one(&eps[i % eps.len()]).await?);
        }
        let token = match self.credentials()? {
            Some((name, password)) => {
                let resp = AuthClient::new(chans[0].clone())
                    .authenticate(AuthenticateRequest { name, password })
                    .await
                    .map_err(|e| anyhow::anyhow!("authentication failed: {}", e.message()))?;
                Some(resp.into_inner().token.parse().context("token")?)
            }
            None => None,
        };
        Ok(chans.into_iter().map(|c| InterceptedService::new(c, Token(token.clone()))).collect())
    }

    /// `--user name[:password]` and `--password`, as etcd's tools take them.
    pub(crate) fn credentials(&self) -> anyhow::Result<Option<(String, String)>> {
        if self.user.is_empty() {
            return Ok(None);
        }
        if !self.password.is_empty() {
            anyhow::ensure!(
                !self.user.contains(':'),
                "--user flag must not contain password if --password flag is set"
            );
            return Ok(Some((self.user.clone(), self.password.clone())));
        }
        match self.user.split_once(':') {
            Some((n, p)) => Ok(Some((n.to_string(), p.to_string()))),
            None => anyhow::bail!("--user without a password: give --user name:password or --password"),
        }
    }

    /// Dials one endpoint: TLS when it is `https://` or TLS files are given (as etcd's tool).
    async fn dial_one(&self, ep: &str) -> anyhow::Result<Channel> {
        let secure =
            ep.starts_with("https://") || !(self.cacert.is_empty() && self.cert.is_empty() && self.tls_key.is_empty());
        let host = ep.split_once("://").map_or(ep, |(_, h)| h);
        let url = format!("{}://{host}", if secure { "https" } else { "http" });
        let mut e = Endpoint::from_shared(url).with_context(|| format!("bad endpoint {ep}"))?.tcp_nodelay(true);
        if !self.dial_timeout.is_zero() {
            e = e.connect_timeout(self.dial_timeout);
        }
        if secure {
            e = e.tls_config(self.tls()?).context("TLS settings")?;
        }
        // Requests of many streams leave in one write, as gRPC-Go's (see oxcd_api::coalesce); TLS,
        // when set, goes over it.
        let connector = tower::service_fn(|uri: tonic::codegen::http::Uri| async move {
            let host = uri.host().unwrap_or("127.0.0.1").trim_start_matches('[').trim_end_matches(']');
            let tcp = tokio::net::TcpStream::connect((host, uri.port_u16().unwrap_or(2379))).await?;
            tcp.set_nodelay(true)?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(Coalesce::new(tcp)))
        });
        e.connect_with_connector(connector).await.with_context(|| format!("dial error: {ep}"))
    }

    fn tls(&self) -> anyhow::Result<ClientTlsConfig> {
        let read = |f: &str| std::fs::read(f).with_context(|| format!("reading {f}"));
        let mut tls = ClientTlsConfig::new().with_native_roots();
        if !self.cacert.is_empty() {
            tls = tls.ca_certificate(Certificate::from_pem(read(&self.cacert)?));
        }
        if !self.cert.is_empty() {
            tls = tls.identity(Identity::from_pem(read(&self.cert)?, read(&self.tls_key)?));
        }
        Ok(tls)
    }

    async fn leader_endpoint(&self) -> anyhow::Result<String> {
        let ch = self.dial_one(&self.endpoints[0]).await?;
        let members = ClusterClient::new(ch.clone())
            .member_list(MemberListRequest { linearizable: false })
            .await
            .map_err(|e| anyhow::anyhow!("failed to get a member list: {}", e.message()))?
            .into_inner()
            .members;
        let leader = MaintenanceClient::new(ch)
            .status(StatusRequest {})
            .await
            .map_err(|_| anyhow::anyhow!("failed to find a leader endpoint"))?
            .into_inner()
            .leader;
        members
            .into_iter()
            .find(|m| m.id == leader)
            .and_then(|m| m.client_ur_ls.into_iter().next())
            .ok_or_else(|| anyhow::anyhow!("failed to find a leader endpoint"))
    }
}

/// A small deterministic generator (splitmix64) for random keys, choices and values.
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A float in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Bytes {
        (0..n).map(|_| self.next() as u8).collect::<Vec<_>>().into()
    }
}

/// etcd's benchmark keys: `binary.PutVarint` (zig-zag, then LEB128) of the key number written
/// over the front of one key buffer that is never cleared, so a short number keeps the tail
/// bytes a longer one left — the same keys etcd's tool sends.
pub(crate) struct KeyBuf(Vec<u8>);

impl KeyBuf {
    /// A buffer of `size` bytes that can hold every number below `space`.
    pub(crate) fn new(size: usize, space: u64) -> anyhow::Result<KeyBuf> {
        let need = varint_len(space.saturating_sub(1) as i64);
        anyhow::ensure!(size >= need, "--key-size {size} cannot hold key numbers up to {} ({need} bytes)", space - 1);
        Ok(KeyBuf(vec![0; size]))
    }

    pub(crate) fn key(&mut self, n: u64) -> Bytes {
        let mut v = zigzag(n as i64);
        let mut i = 0;
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            self.0[i] = if v != 0 { b | 0x80 } else { b };
            i += 1;
            if v == 0 {
                break;
            }
        }
        Bytes::copy_from_slice(&self.0)
    }
}

fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

fn varint_len(x: i64) -> usize {
    let mut v = zigzag(x);
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// `--key-space-size` must be positive (etcd's message).
pub(crate) fn check_key_space(n: i64) -> anyhow::Result<u64> {
    anyhow::ensure!(n > 0, "expected positive --key-space-size, got ({n})");
    Ok(n as u64)
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match &cli.cmd {
        Cmd::Put(a) => kv::put(&cli, a).await,
        Cmd::Range(a) => kv::range(&cli, a).await,
        Cmd::TxnPut(a) => kv::txn_put(&cli, a).await,
        Cmd::TxnMixed(a) => kv::txn_mixed(&cli, a).await,
        Cmd::Watch(a) => watch::watch(&cli, a).await,
        Cmd::WatchLatency(a) => watch::latency(&cli, a).await,
        Cmd::WatchGet(a) => watch::get(&cli, a).await,
        Cmd::LeaseKeepalive(a) => lease::keepalive(&cli, a).await,
        Cmd::LeaseGrantRevoke(a) => lease::grant_revoke_pairs(&cli, a).await,
        Cmd::Authenticate(a) => auth::authenticate(&cli, a).await,
    };
    if let Err(e) = result {
        eprintln!("{e:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_as_etcds_putvarint_on_a_reused_buffer() {
        let mut k = KeyBuf::new(8, 1000).unwrap();
        assert_eq!(&k.key(0)[..], &[0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&k.key(1)[..], &[2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&k.key(64)[..], &[0x80, 0x01, 0, 0, 0, 0, 0, 0]);
        // The tail of the longer key stays.
        assert_eq!(&k.key(1)[..], &[2, 0x01, 0, 0, 0, 0, 0, 0]);
        assert!(KeyBuf::new(1, 100).is_err(), "99 needs two bytes");
        assert!(KeyBuf::new(1, 64).is_ok());
    }

    #[test]
    fn key_space_must_be_positive() {
        assert_eq!(check_key_space(0).unwrap_err().to_string(), "expected positive --key-space-size, got (0)");
    }
}
