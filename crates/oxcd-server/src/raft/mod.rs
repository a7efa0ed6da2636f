//! Raft: the node thread around raft-rs, its in-memory log, the peer transport, and linearizable
//! reads by ReadIndex (the hub the Raft thread delivers read states to).

mod logger;
mod msg;
mod node;
mod peer_http;
mod peer_stream;
pub mod rafthttp;
mod read_index;
mod recover;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod sim_tests;
mod storage;
mod transport;

pub use logger::raft_logger;
pub use msg::{ApplyMsg, PeerTransport, RaftInput, RaftProgress};
pub use node::{InlineApply, NodeConfig, RaftNode, RaftStatus, decode_entry, raft_config};
pub use oxcd_datadir::membership::{decode_conf_state, encode_conf_state};
pub use peer_http::PeerApi;
pub use peer_stream::{PeerAddr, PeerTls};
pub use read_index::ReadIndexHub;
pub use recover::{force_new_cluster, open_raft};
pub use storage::RaftStorage;
pub use transport::{HashAnswer, Transport, fetch_hashkv, fetch_members, snapshot_db_path};
