//! What a member's operations (`kv.rs`, `concurrency.rs`, the services' own steps) fail with: an
//! etcd error, which the edge sends with etcd's code and text, or a store failure, which the edge
//! logs and answers as a stopping member. `grpc::status` is the one mapping to `tonic::Status`;
//! nothing below `grpc/` builds a `Status`.

use oxcd_api::EtcdError;

use crate::apply::ApplyError;

/// What a member's operations fail with.
#[derive(Debug)]
pub enum ServeError {
    /// An error of etcd's catalogue.
    Etcd(EtcdError),
    /// A store failure, or a broken invariant: never an answer a client can act on.
    Fatal(String),
}

impl From<EtcdError> for ServeError {
    fn from(e: EtcdError) -> Self {
        ServeError::Etcd(e)
    }
}

impl From<ApplyError> for ServeError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Reject(e) => ServeError::Etcd(e),
            ApplyError::Fatal(e) => ServeError::Fatal(e.to_string()),
        }
    }
}

impl From<oxcd_mvcc::MvccError> for ServeError {
    fn from(e: oxcd_mvcc::MvccError) -> Self {
        ApplyError::from(e).into()
    }
}
