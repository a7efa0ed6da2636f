//! The error catalogue: every error a client can see, with etcd's gRPC code and exact message text.
//! Clients (clientv3, Patroni, etcd3gw) match errors by string, so the text here is byte-for-byte
//! etcd's. This is the only place the texts live; [`EtcdError::to_status`] is the only mapping.

use tonic::{Code, Status};

/// An error with etcd's wire identity (gRPC code + message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    /// Empty key in Range, Put, DeleteRange or a Compare.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// Put with ignore_value/ignore_lease on a missing key; an empty RequestOp in a txn.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// Put with ignore_value and a value.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// Put with ignore_lease and a lease.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// More compares or ops in one txn branch than `--max-txn-ops`.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// Two writes to overlapping keys in one txn branch.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// `client-api-version` metadata newer than the cluster.
    #[error("etcdserver: invalid client api version")]
    InvalidClientApiVersion,
    /// Unknown sort order or sort target enum value.
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    /// The requested revision is below the compacted revision.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    /// The requested revision is above the current revision.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev,
    /// The NOSPACE alarm is active.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// Unknown lease id.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// LeaseGrant with an id already in use.
    #[error("etcdserver: lease already exists")]
    LeaseExist,
    /// LeaseGrant TTL above the maximum.
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// A watch stream was canceled.
    #[error("etcdserver: watch canceled")]
    WatchCanceled,
    /// MemberAdd with an id already in the cluster.
    #[error("etcdserver: member ID already exist")]
    MemberExist,
    /// MemberAdd or MemberUpdate with peer URLs already used.
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExist,
    /// A membership change that could lose quorum.
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    MemberNotEnoughStarted,
    /// Peer URLs that do not parse.
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    /// Unknown member id.
    #[error("etcdserver: member not found")]
    MemberNotFound,
    /// Promote of a voter.
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    /// Promote of a learner that is not caught up.
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    /// More learners than `--max-learners`.
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    /// Cluster id of a request or peer does not match.
    #[error("etcdserver: cluster ID mismatch")]
    ClusterIdMismatch,
    /// The encoded request is larger than `--max-request-bytes`.
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// Too many committed but unapplied entries.
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    /// Auth: root user missing on AuthEnable.
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    /// Auth: root user lacks the root role on AuthEnable.
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    /// Auth: UserAdd of an existing user.
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    /// Auth: empty user name.
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    /// Auth: unknown user.
    #[error("etcdserver: user name not found")]
    UserNotFound,
    /// Auth: RoleAdd of an existing role.
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    /// Auth: unknown role.
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    /// Auth: empty role name.
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    /// Auth: wrong user name or password.
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    /// Auth: request not allowed by the user's roles.
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    /// Auth: role not granted to the user.
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    /// Auth: permission not granted to the role.
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    /// Auth: operation that needs auth enabled.
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    /// Auth: token unknown or expired.
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    /// Auth: invalid auth management request.
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    /// Auth: RoleGrantPermission without a permission.
    #[error("etcdserver: permission not given")]
    PermissionNotGiven,
    /// Auth: a password for a user created without one, or a stored hash that does not decode
    /// (etcd sends its internal error text with code Unknown).
    #[error("auth: authentication failed, password was given for no password user")]
    NoPasswordUser,
    /// Auth: Authenticate on a member whose JWT configuration has only the public key.
    #[error("auth: token signing attempted with verify-only key")]
    TokenVerifyOnly,
    /// Auth: the request was checked against an older auth store revision.
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    /// The member has no leader (and the request required one).
    #[error("etcdserver: no leader")]
    NoLeader,
    /// The request must be sent to the leader.
    #[error("etcdserver: not leader")]
    NotLeader,
    /// The leader changed while the request waited.
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    /// The member is shutting down.
    #[error("etcdserver: server stopped")]
    Stopped,
    /// The request did not complete within the request timeout.
    #[error("etcdserver: request timed out")]
    Timeout,
    /// Timed out after the leader failed.
    #[error("etcdserver: request timed out, possibly due to previous leader failure")]
    TimeoutDueToLeaderFail,
    /// Timed out after losing the connection to the leader.
    #[error("etcdserver: request timed out, possibly due to connection lost")]
    TimeoutDueToConnectionLost,
    /// A linearizable read waited too long for the applied index.
    #[error("etcdserver: request timed out, waiting for the applied index took too long")]
    TimeoutWaitAppliedIndex,
    /// MoveLeader: the transferee did not take over in time.
    #[error("etcdserver: request timed out, leader transfer took too long")]
    TimeoutLeaderTransfer,
    /// Membership change refused because the cluster is unhealthy.
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    /// The CORRUPT alarm is active.
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    /// An RPC a learner does not serve.
    #[error("etcdserver: rpc not supported for learner")]
    NotSupportedForLearner,
    /// MoveLeader to a member that cannot lead.
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    /// Lock: the lock's session lease is gone (etcd's `concurrency.ErrSessionExpired`).
    #[error("mutex: session is expired")]
    LockSessionExpired,
    /// Proclaim by a leader key that no longer leads (`concurrency.ErrElectionNotLeader`).
    #[error("election: not leader")]
    ElectionNotLeader,
    /// Leader of an election no one campaigns in (`concurrency.ErrElectionNoLeader`).
    #[error("election: no leader")]
    ElectionNoLeader,
    /// Proclaim or Resign without a leader key (`v3election.ErrMissingLeaderKey`).
    #[error("\"leader\" field must be provided")]
    ElectionMissingLeaderKey,
    /// Downgrade to a version that is not `major.minor[.patch]`.
    #[error("etcdserver: wrong downgrade target version format")]
    WrongDowngradeVersionFormat,
    /// Downgrade to anything but the minor version below the cluster's.
    #[error("etcdserver: invalid downgrade target version")]
    InvalidDowngradeTargetVersion,
    /// Downgrade CANCEL with no downgrade enabled.
    #[error("etcdserver: no inflight downgrade job")]
    NoInflightDowngrade,
    /// Downgrade ENABLE: oxcd's data directory is not one etcd 3.4 can read (oxcd's own error).
    #[error(
        "etcdserver: downgrade not supported: etcd 3.4 cannot read an oxcd data directory; move the data with a snapshot (etcdctl snapshot save, then restore with etcd 3.4's etcdutl)"
    )]
    DowngradeNotSupported,
}

impl EtcdError {
    /// The gRPC code etcd returns for this error.
    pub fn code(self) -> Code {
        use EtcdError::*;
        match self {
            EmptyKey
            | KeyNotFound
            | ValueProvided
            | LeaseProvided
            | TooManyOps
            | DuplicateKey
            | InvalidClientApiVersion
            | InvalidSortOption
            | MemberBadUrls
            | RequestTooLarge
            | UserEmpty
            | RoleEmpty
            | AuthFailed
            | InvalidAuthMgmt
            | PermissionNotGiven
            | AuthOldRevision
            | WrongDowngradeVersionFormat
            | InvalidDowngradeTargetVersion => Code::InvalidArgument,
            Compacted | FutureRev | LeaseTtlTooLarge => Code::OutOfRange,
            NoSpace | TooManyRequests => Code::ResourceExhausted,
            LeaseNotFound | MemberNotFound => Code::NotFound,
            LeaseExist
            | MemberExist
            | PeerUrlExist
            | MemberNotEnoughStarted
            | MemberNotLearner
            | LearnerNotReady
            | TooManyLearners
            | ClusterIdMismatch
            | RootUserNotExist
            | RootRoleNotExist
            | UserAlreadyExist
            | UserNotFound
            | RoleAlreadyExist
            | RoleNotFound
            | RoleNotGranted
            | PermissionNotGranted
            | AuthNotEnabled
            | NoInflightDowngrade
            | DowngradeNotSupported
            | NotLeader
            | BadLeaderTransferee => Code::FailedPrecondition,
            WatchCanceled => Code::Cancelled,
            PermissionDenied => Code::PermissionDenied,
            InvalidAuthToken => Code::Unauthenticated,
            NoLeader
            | LeaderChanged
            | Stopped
            | Timeout
            | TimeoutDueToLeaderFail
            | TimeoutDueToConnectionLost
            | TimeoutWaitAppliedIndex
            | TimeoutLeaderTransfer
            | NotSupportedForLearner
            | Unhealthy => Code::Unavailable,
            Corrupt => Code::DataLoss,
            LockSessionExpired
            | ElectionNotLeader
            | ElectionNoLeader
            | ElectionMissingLeaderKey
            | NoPasswordUser
            | TokenVerifyOnly => Code::Unknown,
        }
    }

    /// The exact message text etcd sends.
    pub fn message(self) -> String {
        self.to_string()
    }

    /// The `tonic::Status` sent to gRPC clients.
    pub fn to_status(self) -> Status {
        Status::new(self.code(), self.message())
    }
}

impl From<EtcdError> for Status {
    fn from(e: EtcdError) -> Status {
        e.to_status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows checked against etcd 3.4.23 (reference/etcd.md §9) and rpctypes/error.go.
    #[test]
    fn codes_and_messages_match_etcd() {
        let rows = [
            (EtcdError::EmptyKey, Code::InvalidArgument, "etcdserver: key is not provided"),
            (EtcdError::KeyNotFound, Code::InvalidArgument, "etcdserver: key not found"),
            (EtcdError::TooManyOps, Code::InvalidArgument, "etcdserver: too many operations in txn request"),
            (EtcdError::DuplicateKey, Code::InvalidArgument, "etcdserver: duplicate key given in txn request"),
            (EtcdError::Compacted, Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted"),
            (EtcdError::FutureRev, Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision"),
            (EtcdError::LeaseNotFound, Code::NotFound, "etcdserver: requested lease not found"),
            (EtcdError::LeaseExist, Code::FailedPrecondition, "etcdserver: lease already exists"),
            (EtcdError::LeaseTtlTooLarge, Code::OutOfRange, "etcdserver: too large lease TTL"),
            (EtcdError::RequestTooLarge, Code::InvalidArgument, "etcdserver: request is too large"),
            (EtcdError::NoLeader, Code::Unavailable, "etcdserver: no leader"),
            (EtcdError::Timeout, Code::Unavailable, "etcdserver: request timed out"),
            (EtcdError::NoSpace, Code::ResourceExhausted, "etcdserver: mvcc: database space exceeded"),
            (EtcdError::UserNotFound, Code::FailedPrecondition, "etcdserver: user name not found"),
            (EtcdError::InvalidAuthToken, Code::Unauthenticated, "etcdserver: invalid auth token"),
            (EtcdError::Corrupt, Code::DataLoss, "etcdserver: corrupt cluster"),
            (EtcdError::LockSessionExpired, Code::Unknown, "mutex: session is expired"),
            (EtcdError::ElectionNotLeader, Code::Unknown, "election: not leader"),
            (EtcdError::ElectionNoLeader, Code::Unknown, "election: no leader"),
            (EtcdError::ElectionMissingLeaderKey, Code::Unknown, "\"leader\" field must be provided"),
            (
                EtcdError::WrongDowngradeVersionFormat,
                Code::InvalidArgument,
                "etcdserver: wrong downgrade target version format",
            ),
            (
                EtcdError::InvalidDowngradeTargetVersion,
                Code::InvalidArgument,
                "etcdserver: invalid downgrade target version",
            ),
            (EtcdError::NoInflightDowngrade, Code::FailedPrecondition, "etcdserver: no inflight downgrade job"),
        ];
        for (err, code, msg) in rows {
            let st = err.to_status();
            assert_eq!(st.code(), code, "{err:?}");
            assert_eq!(st.message(), msg, "{err:?}");
        }
    }
}
