//! A member's data directory, without the member: what oxcd's start-up and its offline tools
//! (`oxcdctl snapshot restore`, `defrag --data-dir`) share.
//!
//! - [`layout`]: where a member's files are (etcd's layout), a new member's first WAL, and the
//!   errors starting a member can meet;
//! - [`config`]: the member's configuration (flags, `ETCD_*` variables, the YAML file);
//! - [`ids`]: member and cluster ids as etcd computes them;
//! - [`membership`]: the members as the backend keeps them, and a configuration change as a Raft
//!   entry carries it;
//! - [`etcd_snapshot`]: etcd's snapshot file, written from a backend and restored into a new data
//!   directory;
//! - [`etcd_datadir`]: an etcd data directory taken over in place (converted once, etcd's files
//!   kept beside it);
//! - [`etcd_log`]: etcd's format of a normal log entry, read and written (the log is in it from a
//!   recorded index on);
//! - [`etcd_v2store`]: the membership in etcd's v2 store, the JSON an etcd snapshot carries.

pub mod config;
pub mod etcd_confchange;
pub mod etcd_datadir;
pub mod etcd_log;
pub mod etcd_snapshot;
pub mod etcd_v2store;
pub mod ids;
pub mod layout;
pub mod membership;

pub use config::ServerConfig;
pub use layout::{Layout, StartError};
