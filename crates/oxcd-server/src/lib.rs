//! One oxcd member. A request meets, in order: `grpc/` (validate, map errors; `gateway/` turns JSON
//! requests into the same calls), [`server`] (propose
//! through Raft or take a ReadIndex), `raft/` (the Ready loop, WAL, peers), `apply/` (in log order,
//! into the MVCC store and the backend), and is answered from the applier's result.

mod accept_failures;
pub mod alarms;
pub mod apply;
mod auth;
mod auto_compaction;
mod bootstrap;
pub mod concurrency;
mod corruption;
pub mod error;
mod gateway;
pub mod grpc;
mod keepalive_policy;
mod kv;
mod lease_duties;
mod listener;
pub mod metrics;
pub mod otel;
pub mod raft;
mod reconfig;
pub mod server;
mod wait;

pub use bootstrap::{RunningMember, start};
pub use listener::{ClientConnInfo, ClientPort};
// The data directory's code, its configuration and identities are their own crate (oxcdctl's
// offline commands use it without a member); under their old names here.
pub use oxcd_datadir::layout as datadir;
pub use oxcd_datadir::{Layout, ServerConfig, StartError, config, etcd_snapshot, ids, membership};
pub use oxcd_tls as tls;
pub use server::EtcdServer;
