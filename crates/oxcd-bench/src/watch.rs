//! `watch-latency`: watchers on one key (etcd's shape) or on a key each, puts at a fixed rate, and
//! the time from sending each put to each watcher receiving its event.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use oxcd_api::etcdserverpb::kv_client::KvClient;
use oxcd_api::etcdserverpb::watch_client::WatchClient;
use oxcd_api::etcdserverpb::{PutRequest, WatchCreateRequest, WatchRequest, watch_request};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::report::Latencies;
use crate::{Cli, Cmd, channels, key_bytes};

/// When each put was sent, by put number (written before the put goes out).
struct Sent {
    epoch: Instant,
    at: Vec<AtomicU64>,
}

impl Sent {
    fn new(n: usize) -> Sent {
        Sent { epoch: Instant::now(), at: (0..n).map(|_| AtomicU64::new(0)).collect() }
    }

    fn mark(&self, i: usize) {
        self.at[i].store(self.epoch.elapsed().as_nanos() as u64, Ordering::Release);
    }

    fn since(&self, i: usize) -> Option<Duration> {
        let at = self.at.get(i)?.load(Ordering::Acquire);
        Some(Duration::from_nanos((self.epoch.elapsed().as_nanos() as u64).saturating_sub(at)))
    }
}

pub async fn latency(cli: &Cli) -> anyhow::Result<()> {
    let Cmd::WatchLatency {
        streams,
        watchers_per_stream,
        put_total,
        put_rate,
        key_size,
        val_size,
        prevkv,
        distinct_keys,
    } = cli.cmd
    else {
        unreachable!("called for watch-latency only")
    };
    let chans = channels(cli).await?;
    let watchers = streams * watchers_per_stream;
    let key_of = |w: usize| if distinct_keys { key_bytes(w as u64, key_size) } else { key_bytes(0, key_size) };
    let sent = Arc::new(Sent::new(put_total as usize));
    let (lat_tx, mut lat_rx) = mpsc::unbounded_channel::<Latencies>();
    // Each put is expected by every watcher (one key) or by one (distinct keys).
    let per_stream_events = if distinct_keys {
        // Puts go round the keys: watcher w gets puts w, w + watchers, ...
        (0..streams)
            .map(|s| {
                (0..watchers_per_stream)
                    .map(|j| {
                        let w = s * watchers_per_stream + j;
                        (put_total as usize).saturating_sub(w).div_ceil(watchers)
                    })
                    .sum::<usize>()
            })
            .collect::<Vec<_>>()
    } else {
        vec![put_total as usize * watchers_per_stream; streams]
    };
    let mut ready = Vec::new();
    for s in 0..streams {
        let mut client = WatchClient::new(chans[s % chans.len()].clone()).max_decoding_message_size(usize::MAX);
        let (req_tx, req_rx) = mpsc::channel(watchers_per_stream + 1);
        // Creates go first: a Go gRPC server sends no response headers before a request arrives.
        for j in 0..watchers_per_stream {
            let w = s * watchers_per_stream + j;
            let create = WatchCreateRequest { key: key_of(w), prev_kv: prevkv, ..Default::default() };
            req_tx
                .send(WatchRequest { request_union: Some(watch_request::RequestUnion::CreateRequest(create)) })
                .await?;
        }
        let mut stream = client.watch(ReceiverStream::new(req_rx)).await?.into_inner();
        // Wait for every created response before any put.
        let mut created = 0;
        while created < watchers_per_stream {
            let r = stream.message().await?.ok_or_else(|| anyhow::anyhow!("watch stream closed"))?;
            created += usize::from(r.created);
        }
        let expect = per_stream_events[s];
        let sent = sent.clone();
        let lat_tx = lat_tx.clone();
        ready.push(tokio::spawn(async move {
            let _keep_open = req_tx;
            let mut lat = Latencies::new();
            let mut got = 0;
            while got < expect {
                let Ok(Some(r)) = stream.message().await else { break };
                for e in &r.events {
                    let Some(kv) = &e.kv else { continue };
                    let i = u64::from_le_bytes(kv.value[..8].try_into().unwrap_or_default()) as usize;
                    if let Some(d) = sent.since(i) {
                        lat.record(d, true);
                    }
                    got += 1;
                }
            }
            let _ = lat_tx.send(lat);
        }));
    }
    drop(lat_tx);
    let mut kv = KvClient::new(chans[0].clone());
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / put_rate.max(1) as f64);
    for i in 0..put_total as usize {
        let due = started + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let mut value = vec![b'x'; val_size.max(8)];
        value[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let key = key_of(i % watchers);
        sent.mark(i);
        kv.put(PutRequest { key, value: Bytes::from(value), ..Default::default() }).await?;
    }
    let mut all = Latencies::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Ok(Some(l)) = tokio::time::timeout_at(deadline.into(), lat_rx.recv()).await {
        all.merge(l);
    }
    let elapsed = started.elapsed();
    let summary = all.summary(elapsed);
    if cli.output == "json" {
        println!("{}", serde_json::to_string_pretty(&summary.to_json())?);
    } else {
        print!("{}", summary.to_text());
        println!("\nEvents delivered: {} ({:.0}/s)", summary.requests, summary.rps);
    }
    Ok(())
}
