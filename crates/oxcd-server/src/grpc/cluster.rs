//! `etcdserverpb.Cluster`: MemberList, and the membership changes (see [`crate::reconfig`]).

use std::sync::Arc;

use oxcd_api::etcdserverpb::cluster_client::ClusterClient;
use oxcd_api::etcdserverpb::cluster_server::Cluster;
use oxcd_api::etcdserverpb::{
    Member as PbMember, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest,
    MemberUpdateResponse,
};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::{require_leader, status, to_leader};
use crate::ids::MemberId;
use crate::server::EtcdServer;

pub struct ClusterService {
    server: Arc<EtcdServer>,
}

impl ClusterService {
    pub fn new(server: Arc<EtcdServer>) -> ClusterService {
        ClusterService { server }
    }

    fn members(&self) -> Vec<PbMember> {
        self.server.members().iter().map(|m| m.to_pb()).collect()
    }

    /// A change only the leader may judge: `here` is this member's answer (`None` when it does not
    /// lead); otherwise the leader is asked, and the answer waits until this member has applied
    /// the change too (`done`).
    async fn decided_by_leader<F>(
        &self,
        here: Option<Result<(), oxcd_api::EtcdError>>,
        ask: impl FnOnce(ClusterClient<Channel>) -> F,
        done: impl Fn(&EtcdServer) -> bool,
    ) -> Result<(), Status>
    where
        F: std::future::Future<Output = Result<(), Status>>,
    {
        if let Some(r) = here {
            return r.map_err(status);
        }
        ask(ClusterClient::new(to_leader(&self.server)?)).await?;
        let deadline = tokio::time::Instant::now() + self.server.cfg.request_timeout();
        while !done(&self.server) {
            if tokio::time::Instant::now() > deadline {
                return Err(status(oxcd_api::EtcdError::Timeout));
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, req: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        require_leader(&self.server, &req)?;
        super::require_admin(&self.server, &req).await?;
        let r = req.into_inner();
        let added = self.server.add_member(r.peer_ur_ls, r.is_learner).await.map_err(status)?;
        // etcd's membership-change headers carry no revision.
        let header = Some(self.server.header(0));
        Ok(Response::new(MemberAddResponse { header, member: Some(added.to_pb()), members: self.members() }))
    }

    async fn member_remove(&self, req: Request<MemberRemoveRequest>) -> Result<Response<MemberRemoveResponse>, Status> {
        require_leader(&self.server, &req)?;
        super::require_admin(&self.server, &req).await?;
        let id = MemberId(req.get_ref().id);
        let meta = req.metadata().clone();
        // Only the leader knows who is active: it decides.
        let here = self.server.remove_member(id).await;
        let ask = |mut leader: ClusterClient<Channel>| async move {
            leader.member_remove(super::forwarded(&meta, MemberRemoveRequest { id: id.0 })).await.map(drop)
        };
        self.decided_by_leader(here, ask, |s| s.members().get(id).is_none()).await?;
        Ok(Response::new(MemberRemoveResponse { header: Some(self.server.header(0)), members: self.members() }))
    }

    async fn member_update(&self, req: Request<MemberUpdateRequest>) -> Result<Response<MemberUpdateResponse>, Status> {
        require_leader(&self.server, &req)?;
        super::require_admin(&self.server, &req).await?;
        let r = req.into_inner();
        self.server.update_member(MemberId(r.id), r.peer_ur_ls).await.map_err(status)?;
        Ok(Response::new(MemberUpdateResponse { header: Some(self.server.header(0)), members: self.members() }))
    }

    async fn member_list(&self, req: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        require_leader(&self.server, &req)?;
        if req.get_ref().linearizable {
            self.server.linearizable_read().await.map_err(status)?;
        }
        // etcd's MemberList header carries no revision.
        Ok(Response::new(MemberListResponse { header: Some(self.server.header(0)), members: self.members() }))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        require_leader(&self.server, &req)?;
        super::require_admin(&self.server, &req).await?;
        let id = MemberId(req.get_ref().id);
        let meta = req.metadata().clone();
        // Only the leader knows whether the learner caught up: it decides (etcd forwards too).
        let here = self.server.promote_member(id).await;
        let ask = |mut leader: ClusterClient<Channel>| async move {
            leader.member_promote(super::forwarded(&meta, MemberPromoteRequest { id: id.0 })).await.map(drop)
        };
        self.decided_by_leader(here, ask, |s| s.members().get(id).is_some_and(|m| !m.is_learner)).await?;
        Ok(Response::new(MemberPromoteResponse { header: Some(self.server.header(0)), members: self.members() }))
    }
}
