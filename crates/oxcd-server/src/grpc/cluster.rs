//! `etcdserverpb.Cluster`: MemberList (membership changes arrive with runtime reconfiguration).

use std::sync::Arc;

use oxcd_api::etcdserverpb::cluster_server::Cluster;
use oxcd_api::etcdserverpb::{MemberListRequest, MemberListResponse};
use tonic::{Request, Response, Status};

use super::{require_leader, status};
use crate::server::EtcdServer;

pub struct ClusterService {
    server: Arc<EtcdServer>,
}

impl ClusterService {
    pub fn new(server: Arc<EtcdServer>) -> ClusterService {
        ClusterService { server }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_list(&self, req: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        require_leader(&self.server, &req)?;
        if req.get_ref().linearizable {
            self.server.linearizable_read().await.map_err(status)?;
        }
        let members = self.server.members.read().iter().map(|m| m.to_pb()).collect();
        // etcd's MemberList header carries no revision.
        let header = Some(self.server.header(0));
        Ok(Response::new(MemberListResponse { header, members }))
    }
}
