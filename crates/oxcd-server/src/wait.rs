//! The wait registry: a proposer registers its request id before proposing, and the applier hands
//! the result of the entry with that id back once it is applied and committed to the backend.

use std::collections::HashMap;

use oxcd_api::EtcdError;
use oxcd_api::etcdserverpb::*;
use parking_lot::Mutex;
use tokio::sync::oneshot;

/// The response of an applied write request.
#[derive(Debug, Clone)]
pub enum Response {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compaction(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    Alarm(AlarmResponse),
    AuthEnable(AuthEnableResponse),
    AuthDisable(AuthDisableResponse),
    AuthStatus(AuthStatusResponse),
    Authenticate(AuthenticateResponse),
    UserAdd(AuthUserAddResponse),
    UserDelete(AuthUserDeleteResponse),
    UserGet(AuthUserGetResponse),
    UserChangePassword(AuthUserChangePasswordResponse),
    UserGrantRole(AuthUserGrantRoleResponse),
    UserRevokeRole(AuthUserRevokeRoleResponse),
    UserList(AuthUserListResponse),
    RoleList(AuthRoleListResponse),
    RoleAdd(AuthRoleAddResponse),
    RoleDelete(AuthRoleDeleteResponse),
    RoleGet(AuthRoleGetResponse),
    RoleGrantPermission(AuthRoleGrantPermissionResponse),
    RoleRevokePermission(AuthRoleRevokePermissionResponse),
    /// Requests without a client-visible response (member attributes).
    Empty,
}

/// What the applier hands back.
pub type ApplyResult = Result<Response, EtcdError>;

#[derive(Default)]
pub struct Wait {
    pending: Mutex<HashMap<u64, oneshot::Sender<ApplyResult>>>,
}

impl Wait {
    /// Registers `id`; the receiver resolves when the applier triggers it.
    pub fn register(&self, id: u64) -> oneshot::Receiver<ApplyResult> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(id, tx);
        rx
    }

    /// Hands `result` to whoever waits on `id` (nobody, if it was proposed elsewhere or gave up).
    pub fn trigger(&self, id: u64, result: ApplyResult) {
        if let Some(tx) = self.pending.lock().remove(&id) {
            let _ = tx.send(result);
        }
    }

    /// Forgets `id` (the waiter gave up).
    pub fn cancel(&self, id: u64) {
        self.pending.lock().remove(&id);
    }

    /// Fails every waiter (the member stops).
    pub fn fail_all(&self, err: EtcdError) {
        for (_, tx) in self.pending.lock().drain() {
            let _ = tx.send(Err(err));
        }
    }
}
