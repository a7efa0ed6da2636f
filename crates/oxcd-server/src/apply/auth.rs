//! Auth in the applier, as etcd's `authApplierV3` does it: every request is checked against the
//! user and auth revision in its header before it applies (deterministically, on every member),
//! and the Auth service's requests change the auth store in the batch's transaction.

use oxcd_api::EtcdError;
use oxcd_api::etcdserverpb::*;
use oxcd_api::oxcdpb::internal_raft_request::Request;
use oxcd_auth::{AuthInfo, AuthStore};
use oxcd_backend::{BackendError, WriteTxn};
use oxcd_lease::{LeaseId, Lessor};

use crate::wait::Response;

/// etcd's `needAdminPermission`: the requests only a user with the root role may make.
fn needs_admin(req: &Request) -> bool {
    matches!(
        req,
        Request::AuthEnable(_)
            | Request::AuthDisable(_)
            | Request::AuthStatus(_)
            | Request::AuthUserAdd(_)
            | Request::AuthUserDelete(_)
            | Request::AuthUserChangePassword(_)
            | Request::AuthUserGrantRole(_)
            | Request::AuthUserRevokeRole(_)
            | Request::AuthRoleAdd(_)
            | Request::AuthRoleGrantPermission(_)
            | Request::AuthRoleRevokePermission(_)
            | Request::AuthRoleDelete(_)
            | Request::AuthUserList(_)
            | Request::AuthRoleList(_)
    )
}

/// Whether `who` may make `req` (nothing is checked while auth is off).
pub fn permitted(auth: &AuthStore, lessor: &Lessor, who: &AuthInfo, req: &Request) -> Result<(), EtcdError> {
    if !auth.enabled() {
        return Ok(());
    }
    if needs_admin(req) {
        return auth.check_admin(who);
    }
    match req {
        Request::Put(p) => check_put(auth, lessor, who, p),
        Request::DeleteRange(d) => check_delete(auth, who, d),
        Request::Txn(t) => check_txn(auth, lessor, who, t),
        Request::LeaseRevoke(r) => check_lease_puts(auth, lessor, who, LeaseId(r.id)),
        // Users read themselves; a role is readable by those who hold it.
        Request::AuthUserGet(r) => match auth.check_admin(who) {
            Err(e) if r.name != who.user => Err(e),
            _ => Ok(()),
        },
        Request::AuthRoleGet(r) => match auth.check_admin(who) {
            Err(e) if !auth.has_role(&who.user, &r.role) => Err(e),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

fn check_put(auth: &AuthStore, lessor: &Lessor, who: &AuthInfo, p: &PutRequest) -> Result<(), EtcdError> {
    auth.check_put(who, &p.key)?;
    check_lease_puts(auth, lessor, who, LeaseId(p.lease))?;
    if p.prev_kv {
        auth.check_range(who, &p.key, &[])?;
    }
    Ok(())
}

fn check_delete(auth: &AuthStore, who: &AuthInfo, d: &DeleteRangeRequest) -> Result<(), EtcdError> {
    auth.check_delete(who, &d.key, &d.range_end)?;
    if d.prev_kv {
        auth.check_range(who, &d.key, &d.range_end)?;
    }
    Ok(())
}

/// Every compare and every op of both branches, nested txns included (etcd's `checkTxnAuth`).
pub fn check_txn(auth: &AuthStore, lessor: &Lessor, who: &AuthInfo, t: &TxnRequest) -> Result<(), EtcdError> {
    for c in &t.compare {
        auth.check_range(who, &c.key, &c.range_end)?;
    }
    for op in t.success.iter().chain(t.failure.iter()) {
        match &op.request {
            Some(request_op::Request::RequestRange(r)) => auth.check_range(who, &r.key, &r.range_end)?,
            Some(request_op::Request::RequestPut(p)) => check_put(auth, lessor, who, p)?,
            Some(request_op::Request::RequestDeleteRange(d)) => {
                if d.prev_kv {
                    auth.check_range(who, &d.key, &d.range_end)?;
                }
                auth.check_delete(who, &d.key, &d.range_end)?;
            }
            Some(request_op::Request::RequestTxn(t)) => check_txn(auth, lessor, who, t)?,
            None => {}
        }
    }
    Ok(())
}

/// Using or revoking a lease needs write access to every key attached to it (or the root role).
pub fn check_lease_puts(auth: &AuthStore, lessor: &Lessor, who: &AuthInfo, id: LeaseId) -> Result<(), EtcdError> {
    let Some(keys) = lessor.keys(id) else { return Ok(()) };
    if auth.check_admin(who).is_ok() {
        return Ok(());
    }
    keys.iter().try_for_each(|k| auth.check_put(who, k))
}

/// Applies one request of the Auth service; `index` is its entry's (simple tokens name it).
pub fn apply(
    auth: &AuthStore,
    wtx: &WriteTxn,
    index: u64,
    req: Request,
) -> Result<Result<Response, EtcdError>, BackendError> {
    macro_rules! done {
        ($r:expr, $variant:ident) => {
            $r.map(|r| r.map(|()| Response::$variant(Default::default())))
        };
    }
    match req {
        Request::AuthEnable(_) => done!(auth.enable(wtx), AuthEnable),
        Request::AuthDisable(_) => auth.disable(wtx).map(|()| Ok(Response::AuthDisable(Default::default()))),
        Request::AuthStatus(_) => Ok(Ok(Response::AuthStatus(AuthStatusResponse {
            header: None,
            enabled: auth.enabled(),
            auth_revision: auth.revision(),
        }))),
        Request::Authenticate(a) => Ok(auth
            .authenticate(wtx, &a.name, &a.simple_token, index)?
            .map(|token| Response::Authenticate(AuthenticateResponse { header: None, token }))),
        Request::AuthUserAdd(r) => done!(auth.user_add(wtx, &r), UserAdd),
        Request::AuthUserDelete(r) => done!(auth.user_delete(wtx, &r.name), UserDelete),
        Request::AuthUserChangePassword(r) => done!(auth.user_change_password(wtx, &r), UserChangePassword),
        Request::AuthUserGrantRole(r) => done!(auth.user_grant_role(wtx, &r.user, &r.role), UserGrantRole),
        Request::AuthUserRevokeRole(r) => done!(auth.user_revoke_role(wtx, &r.name, &r.role), UserRevokeRole),
        Request::AuthUserGet(r) => {
            Ok(auth.user_get(&r.name).map(|roles| Response::UserGet(AuthUserGetResponse { header: None, roles })))
        }
        Request::AuthUserList(_) => {
            Ok(Ok(Response::UserList(AuthUserListResponse { header: None, users: auth.user_list() })))
        }
        Request::AuthRoleAdd(r) => done!(auth.role_add(wtx, &r.name), RoleAdd),
        Request::AuthRoleDelete(r) => done!(auth.role_delete(wtx, &r.role), RoleDelete),
        Request::AuthRoleGet(r) => {
            Ok(auth.role_get(&r.role).map(|perm| Response::RoleGet(AuthRoleGetResponse { header: None, perm })))
        }
        Request::AuthRoleList(_) => {
            Ok(Ok(Response::RoleList(AuthRoleListResponse { header: None, roles: auth.role_list() })))
        }
        Request::AuthRoleGrantPermission(r) => done!(auth.role_grant_permission(wtx, &r), RoleGrantPermission),
        Request::AuthRoleRevokePermission(r) => done!(auth.role_revoke_permission(wtx, &r), RoleRevokePermission),
        _ => unreachable!("only Auth requests reach auth::apply"),
    }
}

/// Whether a request belongs to the Auth service.
pub fn is_auth(req: &Request) -> bool {
    needs_admin(req) || matches!(req, Request::Authenticate(_) | Request::AuthUserGet(_) | Request::AuthRoleGet(_))
}
