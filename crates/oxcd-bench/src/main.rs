//! `oxcd-bench`: a load generator modelled on etcd's `benchmark` tool. It speaks plain etcd v3
//! gRPC, so the same binary measures oxcd and etcd.
//!
//! The `put`, `range` and `watch-latency` workloads exist so far (the rest of etcd's subcommands come
//! with the benchmark issue); their flags and output follow etcd's tool.

mod lease;
mod report;
mod watch;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::{Parser, Subcommand};
use oxcd_api::etcdserverpb::kv_client::KvClient;
use oxcd_api::etcdserverpb::{PutRequest, RangeRequest};
use tonic::transport::{Channel, Endpoint};

/// A load generator for etcd v3 endpoints (oxcd or etcd).
#[derive(Debug, Parser)]
#[command(name = "oxcd-bench", version)]
pub(crate) struct Cli {
    /// gRPC endpoints, comma-separated.
    #[arg(long, default_value = "127.0.0.1:2379", value_delimiter = ',', global = true)]
    pub(crate) endpoints: Vec<String>,
    /// Total number of gRPC connections.
    #[arg(long, default_value_t = 1, global = true)]
    pub(crate) conns: usize,
    /// Total number of concurrent clients.
    #[arg(long, default_value_t = 1, global = true)]
    pub(crate) clients: usize,
    /// Output format: text (etcd's report) or json.
    #[arg(long, default_value = "text", global = true)]
    pub(crate) output: String,
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Cmd {
    /// Benchmark put.
    Put {
        /// Key size of put request.
        #[arg(long, default_value_t = 8)]
        key_size: usize,
        /// Value size of put request.
        #[arg(long, default_value_t = 8)]
        val_size: usize,
        /// Total number of put requests.
        #[arg(long, default_value_t = 10_000)]
        total: u64,
        /// Maximum possible keys.
        #[arg(long, default_value_t = 1)]
        key_space_size: u64,
        /// Use sequential keys.
        #[arg(long)]
        sequential_keys: bool,
        /// Maximum put requests per second (0 is no limit).
        #[arg(long, default_value_t = 0)]
        rate: u64,
    },
    /// Benchmark range.
    Range {
        key: String,
        end: Option<String>,
        /// Total number of range requests.
        #[arg(long, default_value_t = 10_000)]
        total: u64,
        /// Linearizable (l) or Serializable (s).
        #[arg(long, default_value = "l")]
        consistency: String,
        /// Maximum range requests per second (0 is no limit).
        #[arg(long, default_value_t = 0)]
        rate: u64,
    },
    /// Benchmark lease keep-alive (etcd's shape: one lease per client, one stream per renewal).
    LeaseKeepalive {
        /// Total number of lease keepalive requests.
        #[arg(long, default_value_t = 10_000)]
        total: u64,
    },
    /// Benchmark lease grant + revoke pairs (not in etcd's tool).
    LeaseGrantRevoke {
        /// Total number of grant/revoke pairs.
        #[arg(long, default_value_t = 10_000)]
        total: u64,
    },
    /// Benchmark watch latency: time from a put to each watcher receiving its event.
    WatchLatency {
        /// Total watch streams.
        #[arg(long, default_value_t = 10)]
        streams: usize,
        /// Total watchers per stream.
        #[arg(long, default_value_t = 10)]
        watchers_per_stream: usize,
        /// Total number of put requests.
        #[arg(long, default_value_t = 1000)]
        put_total: u64,
        /// Number of keys to put per second.
        #[arg(long, default_value_t = 100)]
        put_rate: u64,
        /// Key size of watch request.
        #[arg(long, default_value_t = 32)]
        key_size: usize,
        /// Value size of watch request.
        #[arg(long, default_value_t = 32)]
        val_size: usize,
        /// Ask for the previous value with each event.
        #[arg(long)]
        prevkv: bool,
        /// Each watcher watches a key of its own and puts go round them (not in etcd's tool).
        #[arg(long)]
        distinct_keys: bool,
    },
}

/// A small deterministic generator for random keys (splitmix64).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// etcd's benchmark writes the key number as a varint into a zeroed key of `size` bytes.
pub(crate) fn key_bytes(n: u64, size: usize) -> Bytes {
    let mut k = vec![0u8; size.max(1)];
    let (mut v, mut i) = (n, 0);
    while i < k.len() {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        k[i] = if v != 0 { b | 0x80 } else { b };
        i += 1;
        if v == 0 {
            break;
        }
    }
    Bytes::from(k)
}

pub(crate) async fn channels(cli: &Cli) -> anyhow::Result<Vec<Channel>> {
    let mut out = Vec::new();
    for i in 0..cli.conns.max(1) {
        let ep = &cli.endpoints[i % cli.endpoints.len()];
        let url = if ep.contains("://") { ep.clone() } else { format!("http://{ep}") };
        let ch = Endpoint::from_shared(url)?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to {ep}"))?;
        out.push(ch);
    }
    Ok(out)
}

async fn connect(cli: &Cli) -> anyhow::Result<Vec<KvClient<Channel>>> {
    Ok(channels(cli).await?.into_iter().map(|ch| KvClient::new(ch).max_decoding_message_size(usize::MAX)).collect())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::WatchLatency { .. } => return watch::latency(&cli).await,
        Cmd::LeaseKeepalive { total } => return lease::run(&cli, total, lease::Shape::KeepAlive).await,
        Cmd::LeaseGrantRevoke { total } => return lease::run(&cli, total, lease::Shape::GrantRevoke).await,
        _ => {}
    }
    let conns = connect(&cli).await?;
    let (total, rate) = match &cli.cmd {
        Cmd::Put { total, rate, .. } | Cmd::Range { total, rate, .. } => (*total, *rate),
        _ => unreachable!("handled above"),
    };
    // With a rate, request i goes out no sooner than i / rate seconds after the start.
    let interval = (rate > 0).then(|| Duration::from_secs_f64(1.0 / rate as f64));
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..cli.clients.max(1) {
        let mut kv = conns[c % conns.len()].clone();
        let next = next.clone();
        let job = match &cli.cmd {
            Cmd::Put { key_size, val_size, key_space_size, sequential_keys, .. } => Job::Put {
                key_size: *key_size,
                value: Bytes::from(vec![b'x'; *val_size]),
                space: (*key_space_size).max(1),
                sequential: *sequential_keys,
            },
            Cmd::Range { key, end, consistency, .. } => Job::Range {
                key: Bytes::from(key.clone()),
                end: Bytes::from(end.clone().unwrap_or_default()),
                serializable: consistency == "s",
            },
            _ => unreachable!("handled above"),
        };
        tasks.push(tokio::spawn(async move {
            let mut lat = report::Latencies::new();
            let mut rng = SplitMix(c as u64 + 1);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                if let Some(interval) = interval {
                    tokio::time::sleep_until((started + interval.mul_f64(i as f64)).into()).await;
                }
                let t = Instant::now();
                let ok = match &job {
                    Job::Put { key_size, value, space, sequential } => {
                        let n = if *sequential { i % space } else { rng.next() % space };
                        let req =
                            PutRequest { key: key_bytes(n, *key_size), value: value.clone(), ..Default::default() };
                        kv.put(req).await.is_ok()
                    }
                    Job::Range { key, end, serializable } => {
                        let req = RangeRequest {
                            key: key.clone(),
                            range_end: end.clone(),
                            serializable: *serializable,
                            ..Default::default()
                        };
                        kv.range(req).await.is_ok()
                    }
                };
                lat.record(t.elapsed(), ok);
            }
            lat
        }));
    }
    let mut all = report::Latencies::new();
    for t in tasks {
        all.merge(t.await?);
    }
    let elapsed = started.elapsed();
    let summary = all.summary(elapsed);
    if cli.output == "json" {
        println!("{}", serde_json::to_string_pretty(&summary.to_json())?);
    } else {
        print!("{}", summary.to_text());
    }
    if all.errors() > 0 {
        eprintln!("{} requests failed", all.errors());
    }
    Ok(())
}

enum Job {
    Put { key_size: usize, value: Bytes, space: u64, sequential: bool },
    Range { key: Bytes, end: Bytes, serializable: bool },
}
