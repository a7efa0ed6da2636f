//! `lease-keepalive` (etcd's shape: each client grants one lease, then renews it once per request
//! over a new keep-alive stream, as clientv3's KeepAliveOnce) and `lease-grant-revoke` (ours).

use crate::Conn;
use clap::Args;
use oxcd_api::etcdserverpb::lease_client::LeaseClient;
use oxcd_api::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest};
use tokio_stream::wrappers::ReceiverStream;

use crate::{Cli, closed_loop};

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

pub(crate) async fn keepalive(cli: &Cli, a: &KeepaliveArgs) -> anyhow::Result<()> {
    let chans = cli.dial(cli.conns).await?;
    let mut clients = Vec::new();
    for c in 0..cli.clients.max(1) {
        let mut lease = LeaseClient::new(chans[c % chans.len()].clone());
        let id = lease.lease_grant(LeaseGrantRequest { ttl: 100, id: 0 }).await?.into_inner().id;
        clients.push((lease, id));
    }
    closed_loop(cli, a.total, clients, |(lease, id)| Box::pin(keepalive_once(lease, *id))).await
}

pub(crate) async fn grant_revoke_pairs(cli: &Cli, a: &GrantRevokeArgs) -> anyhow::Result<()> {
    let chans = cli.dial(cli.conns).await?;
    let clients: Vec<_> = (0..cli.clients.max(1)).map(|c| LeaseClient::new(chans[c % chans.len()].clone())).collect();
    closed_loop(cli, a.total, clients, |lease| Box::pin(grant_revoke(lease))).await
}
