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

use super::{forwarded, require_leader, status};
use crate::server::EtcdServer;

pub struct LeaseService {
    server: Arc<EtcdServer>,
}

/// One keep-alive stream: its requests, and the stream to the leader when this member forwards.
struct KeepAlive {
    server: Arc<EtcdServer>,
    meta: tonic::metadata::MetadataMap,
    conn: Option<crate::listener::ClientConnInfo>,
    input: Streaming<LeaseKeepAliveRequest>,
    forward: Option<Forward>,
    /// An error was sent: the stream ends.
    failed: bool,
}

impl KeepAlive {
    /// Checks and renews lease `id`: its new TTL.
    async fn renew(&mut self, id: LeaseId) -> Result<i64, Status> {
        check_renew(&self.server, &self.meta, self.conn.as_ref(), id).await.map_err(status)?;
        renew(&self.server, id, &self.meta, &mut self.forward).await
    }
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
        let who = self.server.who(&req).await.map_err(status)?;
        let mut r = req.into_inner();
        self.server.check_quota(crate::alarms::LEASE_OVERHEAD).await.map_err(status)?;
        self.server.require_user(&who).map_err(status)?;
        // No id given: this member picks one (positive), so every member grants the same.
        while r.id == 0 {
            r.id = (self.server.ids.next() & (i64::MAX as u64)) as i64;
        }
        self.server.write(&who, Proposal::LeaseGrant(r)).await.map(Response::new).map_err(status)
    }

    async fn lease_revoke(&self, req: Request<LeaseRevokeRequest>) -> Result<Response<LeaseRevokeResponse>, Status> {
        require_leader(&self.server, &req)?;
        let who = self.server.who(&req).await.map_err(status)?;
        self.server.require_user(&who).map_err(status)?;
        self.server.write(&who, Proposal::LeaseRevoke(req.into_inner())).await.map(Response::new).map_err(status)
    }

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<BoxStream<LeaseKeepAliveResponse>>, Status> {
        require_leader(&self.server, &req)?;
        let meta = req.metadata().clone();
        let conn = req.extensions().get::<crate::listener::ClientConnInfo>().cloned();
        let input = req.into_inner();
        // No task of its own: the stream renews when tonic's connection task asks for the next
        // response (a spawned task and a channel per stream cost a third of the CPU of a
        // KeepAliveOnce, which opens a stream per renewal).
        let state = KeepAlive { server: self.server.clone(), meta, conn, input, forward: None, failed: false };
        let responses = futures::stream::unfold(state, |mut ka| async move {
            if ka.failed {
                return None;
            }
            let r = tokio::select! {
                r = ka.input.message() => r,
                _ = ka.server.stopped() => return None,
            };
            let Ok(Some(r)) = r else { return None };
            match ka.renew(LeaseId(r.id)).await {
                Ok(ttl) => {
                    let header = Some(ka.server.header(ka.server.store().current_rev()));
                    Some((Ok(LeaseKeepAliveResponse { header, id: r.id, ttl }), ka))
                }
                Err(e) => {
                    ka.failed = true;
                    Some((Err(e), ka))
                }
            }
        });
        Ok(Response::new(Box::pin(responses)))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        require_leader(&self.server, &req)?;
        let who = self.server.who(&req).await.map_err(status)?;
        let meta = req.metadata().clone();
        let r = req.into_inner();
        self.server.require_user(&who).map_err(status)?;
        let checked = if r.keys { Some(self.server.check_lease_keys(&who, &[LeaseId(r.id)])?) } else { None };
        let (lessor, leader) = self.server.leaders_lessor();
        let mut resp = if leader == self.server.member_id().0 {
            // etcd: an unknown lease is TTL -1, not an error.
            self.server.lease_time_to_live(&lessor, r.id, r.keys).unwrap_or(LeaseTimeToLiveResponse {
                id: r.id,
                ttl: -1,
                ..Default::default()
            })
        } else {
            leader_client(&self.server).await?.lease_time_to_live(forwarded(&meta, r)).await?.into_inner()
        };
        if let Some(rev) = checked {
            self.server.auth_unchanged_since(rev)?;
        }
        resp.header = Some(self.server.header(self.server.store().current_rev()));
        Ok(Response::new(resp))
    }

    async fn lease_leases(&self, req: Request<LeaseLeasesRequest>) -> Result<Response<LeaseLeasesResponse>, Status> {
        require_leader(&self.server, &req)?;
        let who = self.server.who(&req).await.map_err(status)?;
        let ids = self.server.lessor().leases();
        self.server.require_user(&who).map_err(status)?;
        let rev = self.server.check_lease_keys(&who, &ids)?;
        self.server.auth_unchanged_since(rev)?;
        let leases = ids.into_iter().map(|id| LeaseStatus { id: id.0 }).collect();
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
async fn renew(
    server: &EtcdServer,
    id: LeaseId,
    meta: &tonic::metadata::MetadataMap,
    forward: &mut Option<Forward>,
) -> Result<i64, Status> {
    let (lessor, leader) = server.leaders_lessor();
    match lessor.renew(id, Instant::now()) {
        Ok(ttl) => return Ok(ttl),
        Err(RenewError::NotFound) => return Ok(0),
        Err(RenewError::NotPrimary) if leader != server.member_id().0 => {}
        Err(RenewError::NotPrimary) => return Err(EtcdError::LeaderChanged.to_status()),
    }
    if forward.as_ref().is_none_or(|f| f.leader != leader) {
        let (tx, rx) = mpsc::channel(4);
        let stream =
            leader_client(server).await?.lease_keep_alive(forwarded(meta, ReceiverStream::new(rx))).await?.into_inner();
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

/// etcd's `checkLeaseRenew`: renewing needs write access to the lease's keys (or root).
async fn check_renew(
    server: &EtcdServer,
    meta: &tonic::metadata::MetadataMap,
    conn: Option<&crate::listener::ClientConnInfo>,
    id: LeaseId,
) -> Result<(), oxcd_api::EtcdError> {
    let auth = server.auth();
    if !auth.enabled() {
        return Ok(());
    }
    let rev = auth.revision();
    let who = server.who_from(meta, conn).await?;
    server.require_user(&who)?;
    if auth.check_admin(&who).is_ok() {
        return Ok(());
    }
    for k in server.lessor().keys(id).unwrap_or_default() {
        auth.check_put(&who, &k)?;
    }
    if rev != auth.revision() {
        return Err(EtcdError::AuthOldRevision);
    }
    Ok(())
}

impl EtcdServer {
    /// With auth on, a lease read checked at auth revision `rev` is stale once the revision moved.
    fn auth_unchanged_since(&self, rev: u64) -> Result<(), Status> {
        let auth = self.auth();
        if auth.enabled() && rev != auth.revision() {
            return Err(EtcdError::AuthOldRevision.to_status());
        }
        Ok(())
    }

    /// etcd's `checkLeaseTimeToLive`/`checkLeaseLeases`: reading leases' keys needs read access to
    /// each (or root). The auth revision the check was made at.
    fn check_lease_keys(&self, who: &oxcd_auth::AuthInfo, ids: &[LeaseId]) -> Result<u64, Status> {
        let auth = self.auth();
        let rev = auth.revision();
        if !auth.enabled() || auth.check_admin(who).is_ok() {
            return Ok(rev);
        }
        let lessor = self.lessor();
        for id in ids {
            for k in lessor.keys(*id).unwrap_or_default() {
                auth.check_range(who, &k, &[]).map_err(status)?;
            }
        }
        Ok(rev)
    }
}
