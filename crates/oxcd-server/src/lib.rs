//! One oxcd member. A request meets, in order: `grpc/` (validate, map errors; `gateway/` turns JSON
//! requests into the same calls), [`server`] (propose
//! through Raft or take a ReadIndex), `raft/` (the Ready loop, WAL, peers), `apply/` (in log order,
//! into the MVCC store and the backend), and is answered from the applier's result.

pub mod alarms;
pub mod apply;
mod bootstrap;
pub mod concurrency;
pub mod config;
pub mod datadir;
pub mod error;
pub mod etcd_snapshot;
mod gateway;
pub mod grpc;
mod hot_wait;
pub mod ids;
mod kv;
mod lease_duties;
mod listener;
pub mod membership;
pub mod raft;
mod reconfig;
pub mod server;
mod wait;

pub use bootstrap::{RunningMember, start};
pub use config::ServerConfig;
pub use datadir::{Layout, StartError};
pub use server::EtcdServer;
