//! Who a request comes from, and the Auth service's operations as a member runs them.
//!
//! A client names itself with a token (gRPC metadata `token`, or `authorization`, from
//! Authenticate) or, with `--client-cert-auth`, with the common name of its TLS certificate
//! (etcd's rule: a token wins over the certificate). Every Auth request goes through Raft and is
//! judged when applied (`apply/auth.rs`); what must not enter the log stays here: passwords are
//! hashed and checked with bcrypt on blocking threads, never on the Raft or applier threads, and
//! only the hash is replicated.

use std::time::{Duration, Instant};

use oxcd_api::EtcdError;
use oxcd_api::etcdserverpb::*;
use oxcd_api::oxcdpb::InternalAuthenticateRequest;
use oxcd_api::oxcdpb::internal_raft_request::Request as Proposal;
use oxcd_auth::{AuthInfo, SimpleTokens};
use tonic::metadata::MetadataMap;

use crate::error::ServeError;
use crate::listener::ClientConnInfo;
use crate::server::EtcdServer;

impl EtcdServer {
    /// Who sent `req` (etcd's `AuthInfoFromCtx`, then the certificate's CN).
    pub(crate) async fn who<T>(&self, req: &tonic::Request<T>) -> Result<AuthInfo, EtcdError> {
        self.who_from(req.metadata(), req.extensions().get::<ClientConnInfo>()).await
    }

    /// Who sent a request with this metadata over this connection.
    pub(crate) async fn who_from(
        &self,
        meta: &MetadataMap,
        conn: Option<&ClientConnInfo>,
    ) -> Result<AuthInfo, EtcdError> {
        let auth = self.auth();
        if auth.enabled()
            && let Some(token) = meta.get("token").or_else(|| meta.get("authorization")).and_then(|v| v.to_str().ok())
        {
            let token = token.strip_prefix("Bearer ").unwrap_or(token);
            // A token is registered when its Authenticate entry is applied: one just issued by
            // another member may not be here yet.
            if let Some(index) = SimpleTokens::index(token) {
                self.wait_applied(index).await;
            }
            return self.auth().token_info(token);
        }
        if self.cfg.client_transport_security.client_cert_auth
            && let Some(cn) = conn.and_then(|c| c.common_name.as_deref()).filter(|cn| !cn.is_empty())
        {
            return Ok(auth.cert_info(cn));
        }
        Ok(AuthInfo::default())
    }

    /// Waits (up to the request timeout) until this member has applied `index`. An index this
    /// member does not know as committed within an election timeout is no token's (forged, or from
    /// another cluster): it is refused then rather than at the request timeout.
    async fn wait_applied(&self, index: u64) {
        use std::sync::atomic::Ordering;
        let now = Instant::now();
        let (deadline, unknown_after) =
            (now + self.cfg.request_timeout(), now + Duration::from_millis(self.cfg.election_timeout));
        while self.applied.load(Ordering::Acquire) < index {
            let now = Instant::now();
            if now >= deadline || (index > self.raft.committed.load(Ordering::Acquire) && now >= unknown_after) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// etcd's `IsAdminPermitted` for requests checked before they are proposed (maintenance,
    /// membership).
    pub(crate) fn require_admin(&self, who: &AuthInfo) -> Result<(), EtcdError> {
        self.auth().check_admin(who)
    }

    /// An Auth request made by `who`, answered with the current revision in its header.
    pub(crate) async fn auth_request<R: crate::kv::Written>(
        &self,
        who: &AuthInfo,
        p: Proposal,
    ) -> Result<R, ServeError> {
        let mut r: R = self.write(who, p).await?;
        *crate::kv::Answer::header(&mut r) = Some(self.header(self.store().current_rev()));
        Ok(r)
    }

    /// Authenticate: the password is checked here (bcrypt, off the async threads), then a token
    /// is registered on every member through Raft; if users changed meanwhile, once more.
    pub async fn authenticate(&self, r: AuthenticateRequest) -> Result<AuthenticateResponse, ServeError> {
        self.linearizable_read().await?;
        loop {
            let auth = self.auth();
            let (name, password) = (r.name.clone(), r.password.clone());
            let checked = tokio::task::spawn_blocking(move || auth.check_password(&name, &password))
                .await
                .map_err(|e| ServeError::Fatal(format!("password check: {e}")))??;
            let req = InternalAuthenticateRequest {
                name: r.name.clone(),
                password: String::new(),
                simple_token: SimpleTokens::prefix(),
            };
            let resp: AuthenticateResponse =
                self.auth_request(&AuthInfo::default(), Proposal::Authenticate(req)).await?;
            if checked == self.auth().revision() {
                return Ok(resp);
            }
        }
    }

    /// The bcrypt hash of a new password, made off the async threads, as the replicated form.
    pub(crate) async fn hash_password(&self, password: String) -> Result<String, ServeError> {
        let cost = self.auth().bcrypt_cost();
        let hash = tokio::task::spawn_blocking(move || oxcd_auth::password::hash(&password, cost))
            .await
            .map_err(|e| ServeError::Fatal(format!("password hash: {e}")))?;
        Ok(oxcd_auth::encode_hash(&hash))
    }
}
