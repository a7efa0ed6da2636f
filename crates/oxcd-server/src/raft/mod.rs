//! Raft: the node thread around raft-rs, its in-memory log, the peer transport, and linearizable
//! reads by ReadIndex (the hub the Raft thread delivers read states to).

mod logger;
mod msg;
mod node;
mod read_index;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod sim_tests;
mod storage;
mod transport;

pub use logger::raft_logger;
pub use msg::{ApplyMsg, PeerTransport, RaftInput, RaftProgress};
pub(crate) use node::apply_conf_entry;
pub use node::{NodeConfig, RaftNode, RaftStatus, decode_conf_state, decode_entry, encode_conf_state, raft_config};
pub use read_index::ReadIndexHub;
pub use storage::RaftStorage;
pub use transport::{Transport, fetch_members, snapshot_db_path};
