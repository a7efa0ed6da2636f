//! `watch` (watch creation, then events delivered per second), `watch-latency` (put to event) and
//! `watch-get` (serializable gets while many watchers catch up from an old revision).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::Conn;
use bytes::Bytes;
use clap::Args;
use oxcd_api::etcdserverpb::kv_client::KvClient;
use oxcd_api::etcdserverpb::watch_client::WatchClient;
use oxcd_api::etcdserverpb::{
    PutRequest, RangeRequest, WatchCreateRequest, WatchRequest, WatchResponse, watch_request,
};
use tokio::sync::{mpsc, watch as signal};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use crate::kv::Limiter;
use crate::progress::Bar;
use crate::report::{Recorder, Report};
use crate::{Cli, KeyBuf, SplitMix, check_key_space};

/// How long to wait for events still in flight once every put is done.
const DRAIN: Duration = Duration::from_secs(60);

#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// Total watch streams
    #[arg(long, default_value_t = 10)]
    streams: usize,
    /// Total watchers per stream
    #[arg(long, default_value_t = 100)]
    watch_per_stream: usize,
    /// Total number of keys to be watched
    #[arg(long, default_value_t = 1)]
    watched_key_total: usize,
    /// Number of keys to put per second (0 is no limit)
    #[arg(long, default_value_t = 0)]
    put_rate: u64,
    /// Number of put requests
    #[arg(long, default_value_t = 1000)]
    put_total: u64,
    /// Key size of watch request
    #[arg(long, default_value_t = 32)]
    key_size: usize,
    /// Maximum possible keys
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    key_space_size: i64,
    /// Use sequential keys
    #[arg(long)]
    sequential_keys: bool,
}

#[derive(Debug, Args)]
pub(crate) struct LatencyArgs {
    /// Total number of put requests
    #[arg(long, default_value_t = 10000)]
    total: u64,
    /// Number of keys to put per second
    #[arg(long, default_value_t = 100)]
    put_rate: u64,
    /// Key size of watch response
    #[arg(long, default_value_t = 32)]
    key_size: usize,
    /// Value size of watch response (at least 8: the value carries the put's number)
    #[arg(long, default_value_t = 32)]
    val_size: usize,
    /// Each watcher watches a key of its own and the puts go round them (not in etcd's tool)
    #[arg(long)]
    distinct_keys: bool,
}

#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// Total number of watchers
    #[arg(long, default_value_t = 10000)]
    watchers: usize,
    /// Total number of watcher streams
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Number of events per watcher
    #[arg(long, default_value_t = 8)]
    events: usize,
}

fn create(key: Bytes, start_revision: i64) -> WatchRequest {
    let c = WatchCreateRequest { key, start_revision, ..Default::default() };
    WatchRequest { request_union: Some(watch_request::RequestUnion::CreateRequest(c)) }
}

/// Opens a watch stream with `first` as its first request (a Go gRPC server sends no response
/// headers before a request arrives, so the request must be queued before the call is awaited).
async fn open(
    ch: &Conn,
    first: WatchRequest,
    queue: usize,
) -> anyhow::Result<(mpsc::Sender<WatchRequest>, Streaming<WatchResponse>)> {
    let (tx, rx) = mpsc::channel(queue.max(1) + 1);
    tx.send(first).await?;
    let stream = WatchClient::new(ch.clone())
        .max_decoding_message_size(usize::MAX)
        .watch(ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok((tx, stream))
}

async fn next(stream: &mut Streaming<WatchResponse>) -> anyhow::Result<WatchResponse> {
    stream.message().await?.ok_or_else(|| anyhow::anyhow!("watch stream closed by the server"))
}

pub(crate) async fn watch(cli: &Cli, a: &WatchArgs) -> anyhow::Result<()> {
    let space = check_key_space(a.key_space_size)?;
    let chans = cli.dial(cli.conns).await?;
    let clients = cli.clients.max(1);
    let mut rng = SplitMix(1);
    let watched = (0..a.watched_key_total.max(1) as u64)
        .map(|i| Ok(KeyBuf::new(a.key_size, space)?.key(if a.sequential_keys { i % space } else { rng.below(space) })))
        .collect::<anyhow::Result<Vec<Bytes>>>()?;
    let total = a.streams * a.watch_per_stream;
    let mut watchers_of: HashMap<Bytes, u64> = HashMap::new();
    for w in 0..total {
        *watchers_of.entry(watched[w % watched.len()].clone()).or_default() += 1;
    }

    // Watch creation: from sending each create request to its created response.
    let bar = Arc::new(Bar::start(total as u64));
    let report = Report::start(cli.format());
    let mut tasks = Vec::new();
    for s in 0..a.streams {
        let ch = chans[(s % clients) % chans.len()].clone();
        let keys: Vec<Bytes> =
            (0..a.watch_per_stream).map(|j| watched[(s * a.watch_per_stream + j) % watched.len()].clone()).collect();
        let (bar, mut rec) = (bar.clone(), report.recorder());
        tasks.push(tokio::spawn(async move {
            let mut opened: Option<(mpsc::Sender<WatchRequest>, Streaming<WatchResponse>)> = None;
            for key in keys {
                let start = Instant::now();
                let stream = match &mut opened {
                    Some((tx, stream)) => {
                        tx.send(create(key, 0)).await?;
                        stream
                    }
                    None => &mut opened.insert(open(&ch, create(key, 0), 1).await?).1,
                };
                let r = next(stream).await?;
                rec.record(start, Instant::now(), if r.created { Ok(()) } else { Err(r.cancel_reason) });
                bar.inc(1);
            }
            anyhow::Ok((rec, opened))
        }));
    }
    let mut created = report.recorder();
    let mut streams = Vec::new();
    for t in tasks {
        let (rec, stream) = t.await??;
        created.merge(rec);
        streams.extend(stream);
    }
    bar.finish();
    let creation = report.finish(created);
    if cli.output == crate::Output::Text {
        print!("Watch creation summary:\n{}", creation.to_text());
    }

    // Events: puts round the watched keys; every event counts once, as it arrives.
    let events_total: u64 = (0..a.put_total as usize).map(|i| watchers_of[&watched[i % watched.len()]]).sum();
    let bar = Arc::new(Bar::start(events_total));
    let report = Report::start(cli.format());
    let remaining = Arc::new(AtomicI64::new(events_total as i64));
    let (done_tx, done_rx) = signal::channel(false);
    let done_tx = Arc::new(done_tx);
    let mut receivers = Vec::new();
    for (tx, mut stream) in streams {
        let (bar, remaining, done_tx, mut done_rx) = (bar.clone(), remaining.clone(), done_tx.clone(), done_rx.clone());
        let mut rec = report.recorder();
        receivers.push(tokio::spawn(async move {
            let _keep_open = tx;
            loop {
                tokio::select! {
                    r = stream.message() => {
                        let Ok(Some(r)) = r else { break };
                        let start = Instant::now();
                        for _ in &r.events {
                            rec.record(start, Instant::now(), Ok(()));
                            bar.inc(1);
                            if remaining.fetch_sub(1, Ordering::Relaxed) <= 1 {
                                let _ = done_tx.send(true);
                            }
                        }
                    }
                    _ = done_rx.wait_for(|d| *d) => break,
                }
            }
            rec
        }));
    }
    let limiter = Arc::new(Limiter::new(a.put_rate));
    let next_put = Arc::new(AtomicU64::new(0));
    let watched = Arc::new(watched);
    let mut putters = Vec::new();
    for c in 0..clients {
        let mut kv = KvClient::new(chans[c % chans.len()].clone());
        let (limiter, next_put, watched, put_total) = (limiter.clone(), next_put.clone(), watched.clone(), a.put_total);
        putters.push(tokio::spawn(async move {
            loop {
                let i = next_put.fetch_add(1, Ordering::Relaxed);
                if i >= put_total {
                    return anyhow::Ok(());
                }
                limiter.wait().await;
                let key = watched[i as usize % watched.len()].clone();
                kv.put(PutRequest { key, value: Bytes::from_static(b"data"), ..Default::default() }).await?;
            }
        }));
    }
    for p in putters {
        p.await??;
    }
    let mut rx = done_rx.clone();
    if tokio::time::timeout(DRAIN, rx.wait_for(|d| *d)).await.is_err() {
        eprintln!("{} of {events_total} events not received", remaining.load(Ordering::Relaxed));
        let _ = done_tx.send(true);
    }
    let mut got = report.recorder();
    for r in receivers {
        got.merge(r.await?);
    }
    bar.finish();
    let events = report.finish(got);
    match cli.output {
        crate::Output::Text => print!("Watch events received summary:\n{}", events.to_text()),
        crate::Output::Json => cli.print_named(&[("creation", "", &creation, ""), ("events", "", &events, "")]),
    }
    Ok(())
}

/// When each put was sent, by put number (written just before the put goes out).
struct Sent {
    epoch: Instant,
    at: Vec<AtomicU64>,
}

impl Sent {
    fn mark(&self, i: usize) {
        self.at[i].store(self.epoch.elapsed().as_nanos() as u64, Ordering::Release);
    }

    fn at(&self, i: usize) -> Option<Instant> {
        let ns = self.at.get(i)?.load(Ordering::Acquire);
        Some(self.epoch + Duration::from_nanos(ns))
    }
}

pub(crate) async fn latency(cli: &Cli, a: &LatencyArgs) -> anyhow::Result<()> {
    let watchers = cli.clients.max(1);
    let streams = cli.conns.clamp(1, watchers);
    // The watch connections, then one more for the puts (the next endpoint round-robin).
    let mut chans = cli.dial(streams + 1).await?;
    let put_chan = chans.pop().expect("one more connection");
    let mut rng = SplitMix(1);
    // One random key for every watcher, or each watcher's own (a fresh buffer each, as etcd's
    // watch creates its keys); put i goes to the key of watcher i % watchers.
    let keys: Vec<Bytes> = if a.distinct_keys {
        (0..watchers as u64)
            .map(|w| Ok(KeyBuf::new(a.key_size, watchers as u64)?.key(w)))
            .collect::<anyhow::Result<_>>()?
    } else {
        vec![rng.bytes(a.key_size.max(1))]
    };
    let key_of = |w: usize| keys[w % keys.len()].clone();
    let total = a.total as usize;
    let sent = Arc::new(Sent { epoch: Instant::now(), at: (0..total).map(|_| AtomicU64::new(0)).collect() });
    let bar = Bar::start(a.total);
    let mut tasks = Vec::new();
    for (s, ch) in chans.iter().enumerate() {
        // Watchers s, s + streams, ... share stream s.
        let mine: Vec<usize> = (s..watchers).step_by(streams).collect();
        let expect: usize = if a.distinct_keys {
            mine.iter().map(|w| total.saturating_sub(*w).div_ceil(watchers)).sum()
        } else {
            total * mine.len()
        };
        let (tx, mut stream) = open(ch, create(key_of(mine[0]), 0), mine.len()).await?;
        for w in &mine[1..] {
            tx.send(create(key_of(*w), 0)).await?;
        }
        let mut created = 0;
        while created < mine.len() {
            created += usize::from(next(&mut stream).await?.created);
        }
        let sent = sent.clone();
        let mut rec = Recorder::new(cli.format());
        tasks.push(tokio::spawn(async move {
            let _keep_open = tx;
            let mut got = 0;
            while got < expect {
                let Ok(Ok(Some(r))) = tokio::time::timeout(DRAIN, stream.message()).await else { break };
                let now = Instant::now();
                for e in &r.events {
                    let Some(kv) = &e.kv else { continue };
                    let i = kv.value.get(..8).and_then(|b| b.try_into().ok()).map_or(u64::MAX, u64::from_le_bytes);
                    if let Some(start) = sent.at(i as usize) {
                        rec.record(start, now, Ok(()));
                    }
                    got += 1;
                }
            }
            rec
        }));
    }
    let report = Report::start(cli.format());
    let mut kv = KvClient::new(put_chan);
    let interval = Duration::from_secs_f64(1.0 / a.put_rate.max(1) as f64);
    let started = Instant::now();
    let mut value = rng.bytes(a.val_size.max(8)).to_vec();
    for i in 0..total {
        tokio::time::sleep_until((started + interval.mul_f64(i as f64)).into()).await;
        value[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let key = key_of(i % watchers);
        sent.mark(i);
        kv.put(PutRequest { key, value: Bytes::copy_from_slice(&value), ..Default::default() })
            .await
            .map_err(|e| anyhow::anyhow!("Failed to Put for watch latency benchmark: {}", e.message()))?;
        bar.inc(1);
    }
    let mut all = report.recorder();
    for t in tasks {
        all.merge(t.await?);
    }
    bar.finish();
    let summary = report.finish(all);
    let expected = if a.distinct_keys { total } else { total * watchers };
    if (summary.lats.len()) < expected {
        eprintln!("{} of {expected} events not received", expected - summary.lats.len());
    }
    cli.print("", &summary, "");
    Ok(())
}

pub(crate) async fn get(cli: &Cli, a: &GetArgs) -> anyhow::Result<()> {
    let chans = cli.dial(cli.conns).await?;
    let get_chan = cli.dial(1).await?.remove(0);
    let mut kv = KvClient::new(chans[0].clone());
    let key = Bytes::from_static(b"watchkey");
    let mut watch_rev = 0;
    for i in 0..a.events {
        let r = kv.put(PutRequest { key: key.clone(), value: i.to_string().into(), ..Default::default() }).await?;
        if i == 0 {
            watch_rev = r.into_inner().header.map_or(0, |h| h.revision);
        }
    }
    let bar = Arc::new(Bar::start((a.watchers * a.events) as u64));
    let report = Report::start(cli.format());
    let (started_tx, mut started_rx) = signal::channel(false);
    let started_tx = Arc::new(started_tx);
    let streams = a.streams.max(1);
    let mut tasks = Vec::new();
    for s in 0..streams {
        let n = (s..a.watchers).step_by(streams).count();
        if n == 0 {
            continue;
        }
        let (ch, key, bar, started_tx, events) =
            (chans[s % chans.len()].clone(), key.clone(), bar.clone(), started_tx.clone(), a.events);
        tasks.push(tokio::spawn(async move {
            let (tx, mut stream) = open(&ch, create(key.clone(), watch_rev), n).await?;
            for _ in 1..n {
                tx.send(create(key.clone(), watch_rev)).await?;
            }
            let mut got: HashMap<i64, usize> = HashMap::new();
            let mut done = 0;
            while done < n {
                let r = next(&mut stream).await?;
                if r.created {
                    let _ = started_tx.send(true);
                }
                let seen = got.entry(r.watch_id).or_default();
                let before = *seen;
                *seen += r.events.len();
                bar.inc(r.events.len() as u64);
                if before < events && *seen >= events {
                    done += 1;
                }
            }
            anyhow::Ok(())
        }));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let getter = {
        let (stop, mut rec) = (stop.clone(), report.recorder());
        let mut kv = KvClient::new(get_chan);
        tokio::spawn(async move {
            let _ = started_rx.wait_for(|s| *s).await;
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let req = RangeRequest { key: Bytes::from_static(b"abc"), serializable: true, ..Default::default() };
                let r = kv.range(req).await;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                rec.record(start, Instant::now(), r.map(drop).map_err(|e| e.message().to_string()));
            }
            rec
        })
    };
    for t in tasks {
        t.await??;
    }
    stop.store(true, Ordering::Relaxed);
    let summary = report.finish(getter.await?);
    bar.finish();
    cli.print("Get during watch summary:\n", &summary, "");
    Ok(())
}
