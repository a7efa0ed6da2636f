//! `etcdserverpb.Auth`: AuthStatus (users, roles and tokens arrive with the Auth service work).

use std::sync::Arc;

use oxcd_api::etcdserverpb::auth_server::Auth;
use oxcd_api::etcdserverpb::{AuthStatusRequest, AuthStatusResponse};
use tonic::{Request, Response, Status};

use super::require_leader;
use crate::server::EtcdServer;

pub struct AuthService {
    server: Arc<EtcdServer>,
}

impl AuthService {
    pub fn new(server: Arc<EtcdServer>) -> AuthService {
        AuthService { server }
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_status(&self, req: Request<AuthStatusRequest>) -> Result<Response<AuthStatusResponse>, Status> {
        require_leader(&self.server, &req)?;
        let auth = self.server.auth();
        Ok(Response::new(AuthStatusResponse {
            header: Some(self.server.header(self.server.store().current_rev())),
            enabled: auth.enabled(),
            auth_revision: auth.revision(),
        }))
    }
}
