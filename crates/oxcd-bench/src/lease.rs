//! `lease-keepalive` (etcd's shape: each client grants one lease, then renews it over a new stream
//! per request) and `lease-grant-revoke` (grant then revoke, per request).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use oxcd_api::etcdserverpb::lease_client::LeaseClient;
use oxcd_api::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest};
use tokio_stream::wrappers::ReceiverStream;

use crate::report::Latencies;
use crate::{Cli, channels};

#[derive(Clone, Copy)]
pub enum Shape {
    KeepAlive,
    GrantRevoke,
}

pub async fn run(cli: &Cli, total: u64, shape: Shape) -> anyhow::Result<()> {
    let chans = channels(cli).await?;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..cli.clients.max(1) {
        let mut lease = LeaseClient::new(chans[c % chans.len()].clone());
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Latencies::new();
            let id = match shape {
                Shape::KeepAlive => lease.lease_grant(LeaseGrantRequest { ttl: 100, id: 0 }).await?.into_inner().id,
                Shape::GrantRevoke => 0,
            };
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let t = Instant::now();
                let ok = match shape {
                    Shape::KeepAlive => {
                        let (tx, rx) = tokio::sync::mpsc::channel(1);
                        tx.send(LeaseKeepAliveRequest { id }).await?;
                        let mut s = lease.lease_keep_alive(ReceiverStream::new(rx)).await?.into_inner();
                        s.message().await.is_ok_and(|r| r.is_some_and(|r| r.ttl > 0))
                    }
                    Shape::GrantRevoke => match lease.lease_grant(LeaseGrantRequest { ttl: 60, id: 0 }).await {
                        Ok(g) => lease.lease_revoke(LeaseRevokeRequest { id: g.into_inner().id }).await.is_ok(),
                        Err(_) => false,
                    },
                };
                lat.record(t.elapsed(), ok);
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Latencies::new();
    for t in tasks {
        all.merge(t.await??);
    }
    let summary = all.summary(started.elapsed());
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
