//! `lease-keepalive` (etcd's shape: each client grants one lease, then renews it once per request
//! over a new keep-alive stream, as clientv3's KeepAliveOnce) and `lease-grant-revoke` (ours).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::Conn;
use clap::Args;
use oxcd_api::etcdserverpb::lease_client::LeaseClient;
use oxcd_api::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest};
use tokio_stream::wrappers::ReceiverStream;

use crate::Cli;
use crate::progress::Bar;
use crate::report::{Recorder, Report};

#[derive(Debug, Args)]
pub(crate) struct KeepaliveArgs {
    /// Total number of lease keepalive requests
    #[arg(long, default_value_t = 10000)]
    total: u64,
}

#[derive(Debug, Args)]
pub(crate) struct GrantRevokeArgs {
    /// Total number of grant/revoke pairs
    #[arg(long, default_value_t = 10000)]
    total: u64,
}

async fn keepalive_once(lease: &mut LeaseClient<Conn>, id: i64) -> Result<(), String> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(LeaseKeepAliveRequest { id }).await.map_err(|e| e.to_string())?;
    let mut s =
        lease.lease_keep_alive(ReceiverStream::new(rx)).await.map_err(|e| e.message().to_string())?.into_inner();
    match s.message().await {
        Ok(Some(r)) if r.ttl > 0 => Ok(()),
        Ok(_) => Err("etcdserver: requested lease not found".to_string()),
        Err(e) => Err(e.message().to_string()),
    }
}

async fn grant_revoke(lease: &mut LeaseClient<Conn>) -> Result<(), String> {
    let g = lease.lease_grant(LeaseGrantRequest { ttl: 60, id: 0 }).await.map_err(|e| e.message().to_string())?;
    lease.lease_revoke(LeaseRevokeRequest { id: g.into_inner().id }).await.map_err(|e| e.message().to_string())?;
    Ok(())
}

#[derive(Clone, Copy)]
enum Shape {
    KeepAlive,
    GrantRevoke,
}

async fn run(cli: &Cli, total: u64, shape: Shape) -> anyhow::Result<()> {
    let chans = cli.dial(cli.conns).await?;
    let next = Arc::new(AtomicU64::new(0));
    let bar = Arc::new(Bar::start(total));
    let report = Report::start(cli.format());
    let mut tasks = Vec::new();
    for c in 0..cli.clients.max(1) {
        let mut lease = LeaseClient::new(chans[c % chans.len()].clone());
        let (next, bar, mut rec): (_, _, Recorder) = (next.clone(), bar.clone(), report.recorder());
        tasks.push(tokio::spawn(async move {
            let id = match shape {
                Shape::KeepAlive => lease.lease_grant(LeaseGrantRequest { ttl: 100, id: 0 }).await?.into_inner().id,
                Shape::GrantRevoke => 0,
            };
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let start = Instant::now();
                let result = match shape {
                    Shape::KeepAlive => keepalive_once(&mut lease, id).await,
                    Shape::GrantRevoke => grant_revoke(&mut lease).await,
                };
                rec.record(start, Instant::now(), result);
                bar.inc(1);
            }
            anyhow::Ok(rec)
        }));
    }
    let mut all = report.recorder();
    for t in tasks {
        all.merge(t.await??);
    }
    bar.finish();
    cli.print("", &report.finish(all), "");
    Ok(())
}

pub(crate) async fn keepalive(cli: &Cli, a: &KeepaliveArgs) -> anyhow::Result<()> {
    run(cli, a.total, Shape::KeepAlive).await
}

pub(crate) async fn grant_revoke_pairs(cli: &Cli, a: &GrantRevokeArgs) -> anyhow::Result<()> {
    run(cli, a.total, Shape::GrantRevoke).await
}
