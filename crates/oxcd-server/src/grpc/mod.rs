//! The gRPC edge: one file per service, this module for what they share — the leader-required
//! check, the request size check, and the single mapping from internal errors to `tonic::Status`.

mod auth;
mod cluster;
mod concurrency;
mod kv;
mod lease;
mod maintenance;
mod watch;

use oxcd_api::EtcdError;
use tonic::Status;

use crate::error::ServeError;
use crate::server::EtcdServer;

pub use auth::AuthService;
pub use cluster::ClusterService;
pub use concurrency::{ElectionService, LockService};
pub use kv::KvService;
pub use lease::LeaseService;
pub use maintenance::MaintenanceService;
pub use watch::WatchService;

/// The version oxcd reports to clients (the etcd API level it serves).
pub const SERVER_VERSION: &str = "3.5.0";
/// The cluster version the members agree on (etcd's major.minor).
pub const CLUSTER_VERSION: &str = "3.5";
/// [`CLUSTER_VERSION`] as the members store it (etcd's `clusterVersion`).
pub const CLUSTER_VERSION_FULL: &str = "3.5.0";

/// The single mapping of internal errors to statuses.
pub(crate) fn status(e: impl Into<ServeError>) -> Status {
    match e.into() {
        ServeError::Etcd(e) => e.to_status(),
        ServeError::Fatal(msg) => {
            tracing::error!(error = %msg, "store failure while serving a request");
            EtcdError::Stopped.to_status()
        }
    }
}

/// `hasleader: true` metadata: fail at once when the member has no leader.
pub(crate) fn require_leader<T>(server: &EtcdServer, req: &tonic::Request<T>) -> Result<(), Status> {
    let wants = req.metadata().get("hasleader").is_some_and(|v| v.as_bytes() == b"true");
    if wants && !server.has_leader() {
        return Err(EtcdError::NoLeader.to_status());
    }
    Ok(())
}

/// etcd's `IsAdminPermitted` before serving: with auth on, only a user with the root role.
pub(crate) async fn require_admin<T>(server: &EtcdServer, req: &tonic::Request<T>) -> Result<(), Status> {
    let who = server.who(req).await.map_err(status)?;
    server.require_admin(&who).map_err(status)
}

/// [`require_admin`] as etcd's Defragment, Snapshot, Hash and HashKV answer it: their auth errors
/// reach the client unconverted (code Unknown, the auth store's own text).
pub(crate) async fn require_admin_unconverted<T>(server: &EtcdServer, req: &tonic::Request<T>) -> Result<(), Status> {
    let who = server.who(req).await.map_err(status)?;
    server.require_admin(&who).map_err(|e| {
        let text = match e {
            EtcdError::UserEmpty => "auth: user name is empty",
            EtcdError::UserNotFound => "auth: user not found",
            EtcdError::PermissionDenied => "auth: permission denied",
            other => return status(other),
        };
        Status::unknown(text)
    })
}

/// etcd's `requireAuthInfo` before serving: with auth on, any user.
pub(crate) async fn require_user<T>(server: &EtcdServer, req: &tonic::Request<T>) -> Result<(), Status> {
    let who = server.who(req).await.map_err(status)?;
    server.require_user(&who).map_err(status)
}

/// A request forwarded to the leader, carrying the client's token (the leader checks it again).
pub(crate) fn forwarded<T>(meta: &tonic::metadata::MetadataMap, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    for key in ["token", "authorization"] {
        if let Some(v) = meta.get(key) {
            req.metadata_mut().insert(key, v.clone());
        }
    }
    req
}

/// A client channel to the current leader, at the client URL it published.
pub(crate) fn to_leader(server: &EtcdServer) -> Result<tonic::transport::Channel, Status> {
    let leader = server.raft.leader();
    if leader == raft::INVALID_ID {
        return Err(EtcdError::NoLeader.to_status());
    }
    let url = server
        .members()
        .get(crate::ids::MemberId(leader))
        .and_then(|m| m.client_urls.first().cloned())
        .ok_or_else(|| EtcdError::NoLeader.to_status())?;
    server.leader_channel(leader, &url).map_err(|_| EtcdError::NoLeader.to_status())
}

/// gRPC methods a learner serves (etcd's `isRPCSupportedForLearner`); Range only when
/// serializable, which the range itself checks.
pub(crate) fn served_by_learners(path: &str) -> bool {
    matches!(path, "/etcdserverpb.Maintenance/Status" | "/etcdserverpb.KV/Range")
}
