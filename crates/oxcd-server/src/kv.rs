//! The KV operations of a member, as the KV service and the Lock and Election services use them:
//! validation, then a local read (after a ReadIndex unless serializable) or a proposal through
//! Raft, with the response header completed.

use oxcd_api::EtcdError;
use oxcd_api::etcdserverpb::*;
use oxcd_api::oxcdpb::internal_raft_request::Request as Proposal;
use oxcd_api::validate;

use crate::apply::request;
use crate::error::ServeError;
use crate::server::EtcdServer;
use crate::wait::Response as Applied;
use oxcd_auth::AuthInfo;

/// A KV response, whose header the member completes.
pub(crate) trait Answer: Sized {
    fn header(&mut self) -> &mut Option<ResponseHeader>;
}

/// A KV response the applier hands back.
pub(crate) trait Written: Answer {
    fn take(a: Applied) -> Option<Self>;
}

macro_rules! answer {
    ($t:ty) => {
        impl Answer for $t {
            fn header(&mut self) -> &mut Option<ResponseHeader> {
                &mut self.header
            }
        }
    };
    ($t:ty, $variant:ident) => {
        answer!($t);
        impl Written for $t {
            fn take(a: Applied) -> Option<Self> {
                match a {
                    Applied::$variant(r) => Some(r),
                    _ => None,
                }
            }
        }
    };
}
answer!(RangeResponse);
answer!(PutResponse, Put);
answer!(DeleteRangeResponse, DeleteRange);
answer!(TxnResponse, Txn);
answer!(CompactionResponse, Compaction);
answer!(LeaseGrantResponse, LeaseGrant);
answer!(LeaseRevokeResponse, LeaseRevoke);
answer!(AuthEnableResponse, AuthEnable);
answer!(AuthDisableResponse, AuthDisable);
answer!(AuthStatusResponse, AuthStatus);
answer!(AuthenticateResponse, Authenticate);
answer!(AuthUserAddResponse, UserAdd);
answer!(AuthUserDeleteResponse, UserDelete);
answer!(AuthUserGetResponse, UserGet);
answer!(AuthUserChangePasswordResponse, UserChangePassword);
answer!(AuthUserGrantRoleResponse, UserGrantRole);
answer!(AuthUserRevokeRoleResponse, UserRevokeRole);
answer!(AuthUserListResponse, UserList);
answer!(AuthRoleListResponse, RoleList);
answer!(AuthRoleAddResponse, RoleAdd);
answer!(AuthRoleDeleteResponse, RoleDelete);
answer!(AuthRoleGetResponse, RoleGet);
answer!(AuthRoleGrantPermissionResponse, RoleGrantPermission);
answer!(AuthRoleRevokePermissionResponse, RoleRevokePermission);

impl EtcdServer {
    /// Completes the header (ids, term) of a response.
    fn answer<R: Answer>(&self, mut r: R) -> R {
        self.fill_header(r.header());
        r
    }

    /// Proposes `who`'s write and answers with what the applier returned for it.
    pub(crate) async fn write<R: Written>(&self, who: &AuthInfo, p: Proposal) -> Result<R, ServeError> {
        let applied = self.propose_as(who, p).await?;
        let r = R::take(applied).ok_or_else(|| ServeError::Fatal("apply result of the wrong kind".into()))?;
        Ok(self.answer(r))
    }

    /// Range: linearizable unless `serializable`.
    pub async fn range(&self, who: &AuthInfo, r: RangeRequest) -> Result<RangeResponse, ServeError> {
        if !r.serializable && self.is_learner() {
            return Err(EtcdError::NotSupportedForLearner.into());
        }
        validate::check_range(&r)?;
        if !r.serializable {
            self.linearizable_read().await?;
        }
        let auth = self.auth();
        auth.check_range(who, &r.key, &r.range_end)?;
        let store = self.store();
        let view = store.read()?;
        let resp = request::range(&view, &r)?;
        still_current(&auth, who)?;
        Ok(self.answer(resp))
    }

    /// etcd's quota check, before anything else: a write that would take the backend to
    /// `--quota-backend-bytes` raises NOSPACE through Raft, then is refused.
    pub(crate) async fn check_quota(&self, cost: usize) -> Result<(), ServeError> {
        if cost == 0 || self.backend().size_bytes() + (cost as u64) < self.cfg.quota_bytes() {
            return Ok(());
        }
        let raise = AlarmRequest {
            action: alarm_request::AlarmAction::Activate as i32,
            member_id: self.id.0,
            alarm: AlarmType::Nospace as i32,
        };
        if let Err(e) = self.propose(Proposal::Alarm(raise)).await {
            tracing::warn!(error = %e, "raising the NOSPACE alarm");
        }
        Err(EtcdError::NoSpace.into())
    }

    pub async fn put(&self, who: &AuthInfo, r: PutRequest) -> Result<PutResponse, ServeError> {
        self.check_quota(crate::alarms::put_cost(&r)).await?;
        validate::check_put(&r)?;
        self.write(who, Proposal::Put(r)).await
    }

    pub async fn delete_range(&self, who: &AuthInfo, r: DeleteRangeRequest) -> Result<DeleteRangeResponse, ServeError> {
        validate::check_delete(&r)?;
        self.write(who, Proposal::DeleteRange(r)).await
    }

    /// Txn: a read-only txn is served locally, like etcd (after a ReadIndex unless every range
    /// is serializable); one that writes goes through Raft.
    pub async fn txn(&self, who: &AuthInfo, r: TxnRequest) -> Result<TxnResponse, ServeError> {
        self.check_quota(crate::alarms::txn_cost(&r)).await?;
        validate::check_txn(&r, self.cfg.max_txn_ops)?;
        if let Some(read) = request::ReadOnlyTxn::new(&r) {
            if !read.is_serializable() {
                self.linearizable_read().await?;
            }
            let auth = self.auth();
            if auth.enabled() {
                crate::apply::auth::check_txn(&auth, &self.lessor(), who, &r)?;
            }
            let store = self.store();
            let mut view = store.read()?;
            let resp = request::read_txn(&mut view, read)?;
            still_current(&auth, who)?;
            return Ok(self.answer(resp));
        }
        self.write(who, Proposal::Txn(r)).await
    }

    /// Compaction (etcd checks no permission for it).
    pub async fn compact(&self, who: &AuthInfo, r: CompactionRequest) -> Result<CompactionResponse, ServeError> {
        self.write(who, Proposal::Compaction(r)).await
    }
}

/// etcd's last step of a local read: credentials checked before an auth change that landed
/// during the read are stale.
pub(crate) fn still_current(auth: &oxcd_auth::AuthStore, who: &AuthInfo) -> Result<(), EtcdError> {
    if who.revision != 0 && who.revision != auth.revision() {
        return Err(EtcdError::AuthOldRevision);
    }
    Ok(())
}

impl EtcdServer {
    /// etcd's `requireAuthInfo`: with auth on, a request must come from someone.
    pub(crate) fn require_user(&self, who: &AuthInfo) -> Result<(), EtcdError> {
        if who.user.is_empty() && self.auth().enabled() {
            return Err(EtcdError::UserEmpty);
        }
        Ok(())
    }
}
