//! What goes in and out of the Raft thread: its inputs ([`RaftInput`], one channel), what it hands
//! the applier ([`ApplyMsg`], in log order) and where its messages to peers go ([`PeerTransport`]).
//!
//! This module depends on nothing else of the member, so the Raft thread, the transport, the applier and the server can all speak it without depending on each
//! other.

use std::path::PathBuf;

use raft::prelude::{Entry, Message};

/// Inputs of the Raft thread.
pub enum RaftInput {
    /// Propose an encoded request.
    Propose(Vec<u8>),
    /// Ask for a read index under the unique context `ctx`.
    ReadIndex { ctx: u64 },
    /// A message from a peer.
    Step(Message),
    /// The backend durably holds everything up to `index`, an entry of `term`: snapshot the WAL
    /// there. (The term comes with it: a member alone may have dropped that entry from memory.)
    Compact { index: u64, term: u64 },
    /// A peer could not be reached.
    Unreachable(u64),
    /// A snapshot send to `to` finished.
    SnapshotStatus { to: u64, ok: bool },
    /// Start an election now (single-member boot).
    Campaign,
    /// Hand leadership to this member (MoveLeader); ignored unless this member leads.
    TransferLeader(u64),
    /// Propose a change of the configuration (membership): the entry's data, in the log's format
    /// (`MemberChange::proposal` or `MemberChange::etcd_proposal`).
    ProposeConfChange(Vec<u8>),
    /// Tell the leader's view of every member's log (`None` unless this member leads).
    Progress(tokio::sync::oneshot::Sender<Option<RaftProgress>>),
    /// Stop the thread.
    Stop,
}

/// What the Raft thread hands the applier, in log order.
pub enum ApplyMsg {
    /// Committed entries.
    Entries(Vec<Entry>),
    /// A backend snapshot from the leader, stored at `db`, covering at least `index`.
    Snapshot { index: u64, db: PathBuf },
}

/// Where the Raft thread sends its messages to peers: the TCP [`super::Transport`] in a member,
/// an in-memory network in the simulation tests.
///
/// `send` must not block the Raft thread: a message that cannot be sent now is dropped (and the
/// peer reported unreachable), since Raft retransmits. A `MsgSnapshot` is the transport's to
/// deliver with the backend it stands for, and to report with [`RaftInput::SnapshotStatus`].
pub trait PeerTransport: Send + Sync {
    fn send(&self, msgs: Vec<Message>);
}

/// The leader's progress of each member: (id, matched index).
#[derive(Debug, Default)]
pub struct RaftProgress {
    pub peers: Vec<(u64, u64)>,
}

impl RaftProgress {
    pub(crate) fn matched(&self, id: u64) -> u64 {
        self.peers.iter().find(|p| p.0 == id).map_or(0, |p| p.1)
    }
}
