//! Raft: the node thread around raft-rs, its in-memory log, and the peer transport.

mod logger;
mod node;
mod storage;
mod transport;

pub use logger::raft_logger;
pub(crate) use node::apply_conf_entry;
pub use node::{NodeConfig, RaftInput, RaftNode, RaftStatus, decode_conf_state, decode_entry, encode_conf_state};
pub use storage::RaftStorage;
pub use transport::{Transport, fetch_members, snapshot_db_path};
