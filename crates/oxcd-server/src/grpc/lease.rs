//! `etcdserverpb.Lease`: grant and revoke go through Raft from any member; keep-alive and
//! TimeToLive are the leader's (a follower forwards them to the leader's client URL, and answers
//! with its own header, as etcd's followers do); LeaseLeases is local.

use std::sync::Arc;
use std::time::Instant;

use oxcd_api::EtcdError;
use oxcd_api::etcdserverpb::lease_client::LeaseClient;
use oxcd_api::etcdserverpb::lease_server::Lease;
use oxcd_api::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest,
    LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
};
use oxcd_api::oxcdpb::internal_raft_request::Request as Proposal;
use oxcd_lease::{LeaseId, RenewError};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

use super::{require_leader, status};
use crate::server::EtcdServer;

pub struct LeaseService {
    server: Arc<EtcdServer>,
}

impl LeaseService {
    pub fn new(server: Arc<EtcdServer>) -> LeaseService {
        LeaseService { server }
    }
}

/// A connection to the current leader's client URL, for forwarding.
async fn leader_client(server: &EtcdServer) -> Result<LeaseClient<Channel>, Status> {
    Ok(LeaseClient::new(super::to_leader(server)?))
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(&self, req: Request<LeaseGrantRequest>) -> Result<Response<LeaseGrantResponse>, Status> {
        require_leader(&self.server, &req)?;
        let mut r = req.into_inner();
        self.server.check_quota(crate::alarms::LEASE_OVERHEAD).await.map_err(status)?;
        // No id given: this member picks one (positive), so every member grants the same.
        while r.id == 0 {
            r.id = (self.server.ids.next() & (i64::MAX as u64)) as i64;
        }
        self.server.write(Proposal::LeaseGrant(r)).await.map(Response::new).map_err(status)
    }

    async fn lease_revoke(&self, req: Request<LeaseRevokeRequest>) -> Result<Response<LeaseRevokeResponse>, Status> {
        require_leader(&self.server, &req)?;
        self.server.write(Proposal::LeaseRevoke(req.into_inner())).await.map(Response::new).map_err(status)
    }

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<BoxStream<LeaseKeepAliveResponse>>, Status> {
        require_leader(&self.server, &req)?;
        let mut input = req.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let server = self.server.clone();
        tokio::spawn(async move {
            let mut forward: Option<Forward> = None;
            loop {
                let r = tokio::select! {
                    r = input.message() => r,
                    _ = server.stopped() => return,
                };
                let Ok(Some(r)) = r else { return };
                let ttl = match renew(&server, LeaseId(r.id), &mut forward).await {
                    Ok(ttl) => ttl,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let resp =
                    LeaseKeepAliveResponse { header: Some(server.header(server.store().current_rev())), id: r.id, ttl };
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        require_leader(&self.server, &req)?;
        let r = req.into_inner();
        let lessor = self.server.lessor();
        let leading = self.server.raft.leader() == self.server.member_id().0;
        if leading {
            lessor.promote(Instant::now());
        }
        let mut resp = if leading {
            match lessor.time_to_live(LeaseId(r.id), Instant::now(), r.keys) {
                Some(t) => LeaseTimeToLiveResponse {
                    header: None,
                    id: r.id,
                    ttl: t.remaining_secs,
                    granted_ttl: t.granted_ttl_secs,
                    keys: t.keys.into_iter().map(|k| bytes::Bytes::from(k.into_vec())).collect(),
                },
                // etcd: an unknown lease is TTL -1, not an error.
                None => LeaseTimeToLiveResponse { id: r.id, ttl: -1, ..Default::default() },
            }
        } else {
            leader_client(&self.server).await?.lease_time_to_live(r).await?.into_inner()
        };
        resp.header = Some(self.server.header(self.server.store().current_rev()));
        Ok(Response::new(resp))
    }

    async fn lease_leases(&self, req: Request<LeaseLeasesRequest>) -> Result<Response<LeaseLeasesResponse>, Status> {
        require_leader(&self.server, &req)?;
        let leases = self.server.lessor().leases().into_iter().map(|id| LeaseStatus { id: id.0 }).collect();
        Ok(Response::new(LeaseLeasesResponse {
            header: Some(self.server.header(self.server.store().current_rev())),
            leases,
        }))
    }
}

/// A follower's keep-alive stream to the leader, opened on the first forwarded renewal.
struct Forward {
    leader: u64,
    tx: mpsc::Sender<LeaseKeepAliveRequest>,
    rx: Streaming<LeaseKeepAliveResponse>,
}

/// Renews on the leader: here if this member leads, else through the forward stream. An unknown or
/// expired lease renews to TTL 0 (etcd answers so, without an error).
async fn renew(server: &EtcdServer, id: LeaseId, forward: &mut Option<Forward>) -> Result<i64, Status> {
    let lessor = server.lessor();
    let leader = server.raft.leader();
    if leader == server.member_id().0 {
        // Leading: promote now if the lease duties have not noticed yet (a no-op otherwise).
        lessor.promote(Instant::now());
    }
    match lessor.renew(id, Instant::now()) {
        Ok(ttl) => return Ok(ttl),
        Err(RenewError::NotFound) => return Ok(0),
        Err(RenewError::NotPrimary) if leader != server.member_id().0 => {}
        Err(RenewError::NotPrimary) => return Err(EtcdError::LeaderChanged.to_status()),
    }
    if forward.as_ref().is_none_or(|f| f.leader != leader) {
        let (tx, rx) = mpsc::channel(4);
        let stream = leader_client(server).await?.lease_keep_alive(ReceiverStream::new(rx)).await?.into_inner();
        *forward = Some(Forward { leader, tx, rx: stream });
    }
    let f = forward.as_mut().expect("just set");
    let sent = f.tx.send(LeaseKeepAliveRequest { id: id.0 }).await.is_ok();
    match f.rx.message().await {
        Ok(Some(r)) if sent => Ok(r.ttl),
        Ok(_) => {
            *forward = None;
            Err(EtcdError::LeaderChanged.to_status())
        }
        Err(e) => {
            *forward = None;
            Err(e)
        }
    }
}
