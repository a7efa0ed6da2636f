//! One module per etcdctl command family.

pub mod auth;
pub mod check;
pub mod concurrency;
pub mod endpoint;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod member;
pub mod mirror;
pub mod snapshot;
pub mod txn;
pub mod watch;
