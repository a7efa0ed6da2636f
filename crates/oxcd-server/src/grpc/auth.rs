//! `etcdserverpb.Auth`: every request goes through Raft and is judged when applied; passwords are
//! hashed and checked here, before (`crate::auth`).

use std::sync::Arc;

use oxcd_api::etcdserverpb::auth_server::Auth;
use oxcd_api::etcdserverpb::*;
use oxcd_api::oxcdpb::internal_raft_request::Request as Proposal;
use tonic::{Request, Response, Status};

use super::{require_leader, status};
use crate::server::EtcdServer;

pub struct AuthService {
    server: Arc<EtcdServer>,
}

impl AuthService {
    pub fn new(server: Arc<EtcdServer>) -> AuthService {
        AuthService { server }
    }

    /// Proposes `f(request)` as its sender and answers with the applied result.
    async fn call<Req, Resp: crate::kv::Written>(
        &self,
        req: Request<Req>,
        f: impl FnOnce(Req) -> Proposal,
    ) -> Result<Response<Resp>, Status> {
        require_leader(&self.server, &req)?;
        let who = self.server.who(&req).await.map_err(status)?;
        let p = f(req.into_inner());
        self.server.auth_request(&who, p).await.map(Response::new).map_err(status)
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(&self, req: Request<AuthEnableRequest>) -> Result<Response<AuthEnableResponse>, Status> {
        self.call(req, Proposal::AuthEnable).await
    }

    async fn auth_disable(&self, req: Request<AuthDisableRequest>) -> Result<Response<AuthDisableResponse>, Status> {
        self.call(req, Proposal::AuthDisable).await
    }

    async fn auth_status(&self, req: Request<AuthStatusRequest>) -> Result<Response<AuthStatusResponse>, Status> {
        self.call(req, Proposal::AuthStatus).await
    }

    async fn authenticate(&self, req: Request<AuthenticateRequest>) -> Result<Response<AuthenticateResponse>, Status> {
        require_leader(&self.server, &req)?;
        self.server.authenticate(req.into_inner()).await.map(Response::new).map_err(status)
    }

    async fn user_add(&self, req: Request<AuthUserAddRequest>) -> Result<Response<AuthUserAddResponse>, Status> {
        require_leader(&self.server, &req)?;
        let who = self.server.who(&req).await.map_err(status)?;
        let mut r = req.into_inner();
        if !r.options.is_some_and(|o| o.no_password) {
            r.hashed_password = self.server.hash_password(std::mem::take(&mut r.password)).await.map_err(status)?;
        }
        self.server.auth_request(&who, Proposal::AuthUserAdd(r)).await.map(Response::new).map_err(status)
    }

    async fn user_get(&self, req: Request<AuthUserGetRequest>) -> Result<Response<AuthUserGetResponse>, Status> {
        self.call(req, Proposal::AuthUserGet).await
    }

    async fn user_list(&self, req: Request<AuthUserListRequest>) -> Result<Response<AuthUserListResponse>, Status> {
        self.call(req, Proposal::AuthUserList).await
    }

    async fn user_delete(
        &self,
        req: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        self.call(req, Proposal::AuthUserDelete).await
    }

    async fn user_change_password(
        &self,
        req: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        require_leader(&self.server, &req)?;
        let who = self.server.who(&req).await.map_err(status)?;
        let mut r = req.into_inner();
        if !r.password.is_empty() {
            r.hashed_password = self.server.hash_password(std::mem::take(&mut r.password)).await.map_err(status)?;
        }
        self.server.auth_request(&who, Proposal::AuthUserChangePassword(r)).await.map(Response::new).map_err(status)
    }

    async fn user_grant_role(
        &self,
        req: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        self.call(req, Proposal::AuthUserGrantRole).await
    }

    async fn user_revoke_role(
        &self,
        req: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        self.call(req, Proposal::AuthUserRevokeRole).await
    }

    async fn role_add(&self, req: Request<AuthRoleAddRequest>) -> Result<Response<AuthRoleAddResponse>, Status> {
        self.call(req, Proposal::AuthRoleAdd).await
    }

    async fn role_get(&self, req: Request<AuthRoleGetRequest>) -> Result<Response<AuthRoleGetResponse>, Status> {
        self.call(req, Proposal::AuthRoleGet).await
    }

    async fn role_list(&self, req: Request<AuthRoleListRequest>) -> Result<Response<AuthRoleListResponse>, Status> {
        self.call(req, Proposal::AuthRoleList).await
    }

    async fn role_delete(
        &self,
        req: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        self.call(req, Proposal::AuthRoleDelete).await
    }

    async fn role_grant_permission(
        &self,
        req: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        self.call(req, Proposal::AuthRoleGrantPermission).await
    }

    async fn role_revoke_permission(
        &self,
        req: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        self.call(req, Proposal::AuthRoleRevokePermission).await
    }
}
