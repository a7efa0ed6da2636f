//! `put`, `range`, `txn-put` and `txn-mixed`: one generator makes the requests in etcd's order, a
//! worker per client sends them over the shared connections, a token bucket paces them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Conn;
use bytes::Bytes;
use clap::Args;
use oxcd_api::etcdserverpb::kv_client::KvClient;
use oxcd_api::etcdserverpb::{CompactionRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, request_op};

use crate::progress::Bar;
use crate::report::{Recorder, Report, Summary};
use crate::{Cli, KeyBuf, SplitMix, check_key_space};

#[derive(Debug, Args)]
pub(crate) struct PutArgs {
    /// Key size of put request
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Value size of put request
    #[arg(long, default_value_t = 8)]
    val_size: usize,
    /// Maximum puts per second (0 is no limit)
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Total number of put requests
    #[arg(long, default_value_t = 10000)]
    total: u64,
    /// Maximum possible keys
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    key_space_size: i64,
    /// Use sequential keys
    #[arg(long)]
    sequential_keys: bool,
    /// Interval to compact database (do not duplicate this with etcd's 'auto-compaction-retention' flag) (e.g.
    /// --compact-interval=5m compacts every 5-minute)
    #[arg(long, default_value = "0", value_parser = oxcd_api::duration::parse)]
    compact_interval: Duration,
    /// Delta between current revision and compact revision (e.g. current revision 10000, compact at 9000)
    #[arg(long, default_value_t = 1000)]
    compact_index_delta: i64,
}

#[derive(Debug, Args)]
pub(crate) struct RangeArgs {
    key: String,
    end_range: Option<String>,
    /// Maximum range requests per second (0 is no limit)
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Total number of range requests
    #[arg(long, default_value_t = 10000)]
    total: u64,
    /// Linearizable(l) or Serializable(s)
    #[arg(long, default_value = "l", value_parser = ["l", "s"])]
    consistency: String,
}

#[derive(Debug, Args)]
pub(crate) struct TxnPutArgs {
    /// Key size of txn put
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Value size of txn put
    #[arg(long, default_value_t = 8)]
    val_size: usize,
    /// Number of puts per txn
    #[arg(long, default_value_t = 1)]
    txn_ops: u64,
    /// Maximum txns per second (0 is no limit)
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Total number of txn requests
    #[arg(long, default_value_t = 10000)]
    total: u64,
    /// Maximum possible keys
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    key_space_size: i64,
}

#[derive(Debug, Args)]
pub(crate) struct TxnMixedArgs {
    /// Accepted and ignored, as etcd's tool does: reads cover the whole keyspace
    key: Option<String>,
    end_range: Option<String>,
    /// Key size of mixed txn
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Value size of mixed txn
    #[arg(long, default_value_t = 8)]
    val_size: usize,
    /// Maximum txns per second (0 is no limit)
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Total number of txn requests
    #[arg(long, default_value_t = 10000)]
    total: u64,
    /// Read operation range end key. By default, we do full range query with the default limit of 1000.
    #[arg(long, default_value = "")]
    end_key: String,
    /// Read operation range result limit
    #[arg(long, default_value_t = 1000)]
    limit: i64,
    /// Maximum possible keys
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    key_space_size: i64,
    /// Linearizable(l) or Serializable(s)
    #[arg(long, default_value = "l", value_parser = ["l", "s"])]
    consistency: String,
    /// Read/write ops ratio
    #[arg(long, default_value_t = 1.0)]
    rw_ratio: f64,
}

/// One request and the report it counts in.
enum Request {
    Put(PutRequest),
    Range(RangeRequest),
    Txn(TxnRequest),
}

/// Makes the run's requests in order; shared by the workers.
struct Generator {
    i: u64,
    total: u64,
    make: Box<dyn FnMut(u64) -> (Request, usize) + Send>,
}

impl Generator {
    fn next(&mut self) -> Option<(Request, usize)> {
        if self.i >= self.total {
            return None;
        }
        self.i += 1;
        Some((self.make)(self.i - 1))
    }
}

/// etcd's rate limiter: a token bucket with a burst of one, shared by every worker.
pub(crate) struct Limiter {
    interval: Option<Duration>,
    next: Mutex<Instant>,
}

impl Limiter {
    pub(crate) fn new(rate: u64) -> Limiter {
        Limiter {
            interval: (rate > 0).then(|| Duration::from_secs_f64(1.0 / rate as f64)),
            next: Mutex::new(Instant::now()),
        }
    }

    pub(crate) async fn wait(&self) {
        let Some(interval) = self.interval else { return };
        let slot = {
            let mut next = self.next.lock().expect("limiter lock");
            let slot = (*next).max(Instant::now());
            *next = slot + interval;
            slot
        };
        tokio::time::sleep_until(slot.into()).await;
    }
}

/// Runs the generator's requests from `--clients` workers; one summary per report slot, then
/// (with several slots) one of every request.
async fn run(cli: &Cli, requests: Generator, slots: usize, rate: u64, chans: &[Conn]) -> anyhow::Result<Vec<Summary>> {
    let bar = Arc::new(Bar::start(requests.total));
    let report = Report::start(cli.format());
    let requests = Arc::new(Mutex::new(requests));
    let limiter = Arc::new(Limiter::new(rate));
    let mut workers = Vec::new();
    for c in 0..cli.clients.max(1) {
        let mut kv = KvClient::new(chans[c % chans.len()].clone()).max_decoding_message_size(usize::MAX);
        let (requests, limiter, bar) = (requests.clone(), limiter.clone(), bar.clone());
        let mut recs: Vec<Recorder> = (0..slots).map(|_| report.recorder()).collect();
        workers.push(tokio::spawn(async move {
            loop {
                let Some((req, slot)) = requests.lock().expect("generator lock").next() else { break };
                limiter.wait().await;
                let start = Instant::now();
                let result = match req {
                    Request::Put(r) => kv.put(r).await.map(drop),
                    Request::Range(r) => kv.range(r).await.map(drop),
                    Request::Txn(r) => kv.txn(r).await.map(drop),
                };
                recs[slot].record(start, Instant::now(), result.map_err(|s| s.message().to_string()));
                bar.inc(1);
            }
            recs
        }));
    }
    let mut all: Vec<Recorder> = (0..slots).map(|_| report.recorder()).collect();
    for w in workers {
        for (slot, rec) in w.await?.into_iter().enumerate() {
            all[slot].merge(rec);
        }
    }
    bar.finish();
    let mut summaries: Vec<Summary> = all.iter().map(|r| report.finish(r.clone())).collect();
    if slots > 1 {
        let mut every = report.recorder();
        for r in all {
            every.merge(r);
        }
        summaries.push(report.finish(every));
    }
    Ok(summaries)
}

pub(crate) async fn put(cli: &Cli, a: &PutArgs) -> anyhow::Result<()> {
    let space = check_key_space(a.key_space_size)?;
    let mut keys = KeyBuf::new(a.key_size, space)?;
    let mut rng = SplitMix(1);
    let value = rng.bytes(a.val_size);
    let sequential = a.sequential_keys;
    let make = move |i: u64| {
        let n = if sequential { i % space } else { rng.below(space) };
        (Request::Put(PutRequest { key: keys.key(n), value: value.clone(), ..Default::default() }), 0)
    };
    let chans = cli.dial(cli.conns).await?;
    let compactor = (!a.compact_interval.is_zero()).then(|| {
        let mut kv = KvClient::new(chans[0].clone());
        let (every, delta) = (a.compact_interval, a.compact_index_delta);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let rev = match kv.range(RangeRequest { key: Bytes::from_static(b"foo"), ..Default::default() }).await {
                    Ok(r) => r.into_inner().header.map_or(0, |h| h.revision),
                    Err(e) => fail(&format!("compaction: get foo: {}", e.message())),
                };
                let compact = (rev - delta).max(0);
                if let Err(e) = kv.compact(CompactionRequest { revision: compact, physical: false }).await {
                    fail(&format!("compaction at {compact}: {}", e.message()));
                }
            }
        })
    });
    let requests = Generator { i: 0, total: a.total, make: Box::new(make) };
    let summaries = run(cli, requests, 1, a.rate, &chans).await?;
    if let Some(c) = compactor {
        c.abort();
    }
    cli.print("", &summaries[0], "\n");
    Ok(())
}

fn fail(msg: &str) -> ! {
    eprintln!("{msg}");
    std::process::exit(1)
}

fn consistency_line(c: &str) -> &'static str {
    if c == "s" { "bench with serializable range\n" } else { "bench with linearizable range\n" }
}

pub(crate) async fn range(cli: &Cli, a: &RangeArgs) -> anyhow::Result<()> {
    if cli.output == crate::Output::Text {
        print!("{}", consistency_line(&a.consistency));
    }
    let req = RangeRequest {
        key: Bytes::from(a.key.clone()),
        range_end: Bytes::from(a.end_range.clone().unwrap_or_default()),
        serializable: a.consistency == "s",
        ..Default::default()
    };
    let make = move |_| (Request::Range(req.clone()), 0);
    let chans = cli.dial(cli.conns).await?;
    let summaries = run(cli, Generator { i: 0, total: a.total, make: Box::new(make) }, 1, a.rate, &chans).await?;
    cli.print("", &summaries[0], "");
    Ok(())
}

fn put_op(key: Bytes, value: Bytes) -> RequestOp {
    RequestOp { request: Some(request_op::Request::RequestPut(PutRequest { key, value, ..Default::default() })) }
}

pub(crate) async fn txn_put(cli: &Cli, a: &TxnPutArgs) -> anyhow::Result<()> {
    let space = check_key_space(a.key_space_size)?;
    let mut keys = KeyBuf::new(a.key_size, space)?;
    let value = SplitMix(1).bytes(a.val_size);
    let ops = a.txn_ops;
    let make = move |i: u64| {
        let success = (0..ops).map(|j| put_op(keys.key((i * ops + j) % space), value.clone())).collect();
        (Request::Txn(TxnRequest { compare: vec![], success, failure: vec![] }), 0)
    };
    let chans = cli.dial(cli.conns).await?;
    let summaries = run(cli, Generator { i: 0, total: a.total, make: Box::new(make) }, 1, a.rate, &chans).await?;
    cli.print("", &summaries[0], "\n");
    Ok(())
}

pub(crate) async fn txn_mixed(cli: &Cli, a: &TxnMixedArgs) -> anyhow::Result<()> {
    let space = check_key_space(a.key_space_size)?;
    if cli.output == crate::Output::Text {
        print!("{}", consistency_line(&a.consistency));
    }
    let mut keys = KeyBuf::new(a.key_size, space)?;
    let mut rng = SplitMix(1);
    let value = rng.bytes(a.val_size);
    // As etcd's tool: WithPrefix() on the empty key overrides --end-key, so reads cover the whole
    // keyspace, --limit at a time.
    let read = RangeRequest {
        key: Bytes::from_static(b"\0"),
        range_end: Bytes::from_static(b"\0"),
        limit: a.limit,
        serializable: a.consistency == "s",
        ..Default::default()
    };
    let read_share = a.rw_ratio / (1.0 + a.rw_ratio);
    let counts = Arc::new(Mutex::new([0u64; 2]));
    let tally = counts.clone();
    let make = move |i: u64| {
        let (op, slot) = if rng.unit() < read_share {
            (RequestOp { request: Some(request_op::Request::RequestRange(read.clone())) }, 0)
        } else {
            (put_op(keys.key(i % space), value.clone()), 1)
        };
        tally.lock().expect("tally")[slot] += 1;
        (Request::Txn(TxnRequest { compare: vec![], success: vec![op], failure: vec![] }), slot)
    };
    let chans = cli.dial(cli.conns).await?;
    let s = run(cli, Generator { i: 0, total: a.total, make: Box::new(make) }, 2, a.rate, &chans).await?;
    let [reads, writes] = *counts.lock().expect("tally");
    let (rp, wp) = (format!("Total Read Ops: {reads}\nDetails:"), format!("Total Write Ops: {writes}\nDetails:"));
    let mut reports = vec![("read", rp.as_str(), &s[0], "\n"), ("write", wp.as_str(), &s[1], "\n")];
    if cli.output == crate::Output::Json {
        reports.push(("all", "", &s[2], ""));
    }
    cli.print_named(&reports);
    Ok(())
}
