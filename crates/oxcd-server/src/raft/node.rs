//! The Raft thread: owns raft-rs's `RawNode` and the WAL, ticks the clock, and handles each `Ready`
//! in the order the durability rules require (see [`RaftNode::on_ready`]).
//!
//! Everything that changes Raft state arrives on one channel ([`RaftInput`]); everything committed
//! leaves on the apply channel, in log order. Proposals made while there is no leader are kept and
//! proposed again once one is known, until their callers have given up.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use oxcd_wal::{EntryRecord, HardState as WalHardState, SnapshotRecord, Wal};
use parking_lot::Mutex;
use protobuf::Message as PbMessage;
use raft::prelude::{ConfChange, ConfChangeType, Entry, EntryType, HardState, Message, MessageType, Snapshot};
use raft::{RawNode, SnapshotStatus};

use super::msg::{ApplyMsg, PeerTransport, RaftInput, RaftProgress};
use super::read_index::ReadIndexHub;
use super::storage::RaftStorage;
use super::transport::snapshot_db_path;
use crate::ids::MemberId;
use crate::membership::{CommittedChange, MemberChange, encode_conf_state};

/// Raft state published for the rest of the member (headers, Status, leader checks).
#[derive(Debug)]
pub struct RaftStatus {
    pub term: AtomicU64,
    pub leader: AtomicU64,
    pub committed: AtomicU64,
    /// Non-zero while this member leads a configuration in which it is the only voter: an index
    /// at or after its first entry as leader. Nothing can be committed or acknowledged anywhere
    /// but here, so once the applier has reached this index (every entry of earlier terms, such
    /// as those replayed after a restart, is then applied) its applied state is linearizable
    /// without a ReadIndex round.
    pub sole_leader_from: AtomicU64,
    /// When the current leader was first seen (for "possibly due to previous leader failure").
    pub leader_since: Mutex<Instant>,
}

impl RaftStatus {
    pub fn new() -> RaftStatus {
        RaftStatus {
            term: AtomicU64::new(0),
            leader: AtomicU64::new(0),
            committed: AtomicU64::new(0),
            sole_leader_from: AtomicU64::new(0),
            leader_since: Mutex::new(Instant::now()),
        }
    }

    pub fn leader(&self) -> u64 {
        self.leader.load(Ordering::Acquire)
    }

    pub fn term(&self) -> u64 {
        self.term.load(Ordering::Acquire)
    }
}

impl Default for RaftStatus {
    fn default() -> Self {
        RaftStatus::new()
    }
}

/// Most bytes of entry data kept in memory behind a snapshot for lagging followers.
const CATCHUP_BYTES: usize = 16 << 20;

/// A member alone in its configuration drops applied entries from memory once this many have
/// gathered (see [`RaftStorage::drop_applied_if_alone`]).
const ALONE_KEEP_ENTRIES: u64 = 256;

/// Settings of the Raft thread.
pub struct NodeConfig {
    pub tick: Duration,
    /// Entries kept in memory before a snapshot point for slow followers.
    pub catchup_entries: u64,
    /// How long a proposal made without a leader is kept for another try.
    pub stalled_ttl: Duration,
    pub snap_dir: PathBuf,
    /// `--max-learners`.
    pub max_learners: usize,
}

/// The Raft thread's state (built by the bootstrap, then moved onto its thread).
pub struct RaftNode {
    pub(crate) raw: RawNode<RaftStorage>,
    pub(crate) storage: RaftStorage,
    pub(crate) wal: Wal,
    pub(crate) rx: Receiver<RaftInput>,
    pub(crate) transport: Arc<dyn PeerTransport>,
    pub(crate) apply_tx: Sender<ApplyMsg>,
    pub(crate) status: Arc<RaftStatus>,
    pub(crate) read_hub: Arc<ReadIndexHub>,
    pub(crate) cfg: NodeConfig,
    /// Proposals dropped for want of a leader, oldest first.
    pub(crate) stalled: VecDeque<(Vec<u8>, Instant)>,
    /// Index of the last WAL snapshot.
    pub(crate) snapshot_index: u64,
    /// The applier's applied index.
    pub(crate) applied: Arc<AtomicU64>,
    /// A leadership transfer to this member (`MsgTimeoutNow`) waiting for the applier to apply a
    /// committed configuration change, and when it arrived: raft-rs refuses to campaign while
    /// one is not applied, and a transfer right after a promotion (etcd's `member promote` then
    /// `move-leader`) would be refused for good.
    pub(crate) held_timeout_now: Option<(Message, Instant)>,
    /// Applies a small committed batch on this thread when the applier is idle (true if it did):
    /// see [`RaftNode::hand_to_applier`].
    pub(crate) inline_apply: Option<InlineApply>,
}

/// Applies committed entries on the Raft thread if it can; false when they must be queued.
pub type InlineApply = Box<dyn FnMut(&[Entry]) -> bool + Send>;

/// The most entries the Raft thread applies itself: a larger batch is worth the hand-off, since
/// the applier applies it while this thread writes and syncs the next one.
const INLINE_APPLY_MAX: usize = 4;

impl RaftNode {
    /// Runs until [`RaftInput::Stop`] or a persistence failure (after which the member must stop:
    /// it never acknowledges what it could not persist).
    pub fn run(mut self) -> Result<(), oxcd_wal::WalError> {
        let tick = self.cfg.tick;
        let mut next_tick = Instant::now() + tick;
        self.publish_status();
        loop {
            match self.rx.recv_deadline(next_tick) {
                Ok(m) => {
                    if !self.handle(m)? {
                        return Ok(());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            if Instant::now() >= next_tick {
                self.raw.tick();
                next_tick += tick;
                if next_tick < Instant::now() {
                    // Fell behind (a slow fsync): do not replay the missed ticks in a burst.
                    next_tick = Instant::now() + tick;
                }
            }
            if !self.drain()? {
                return Ok(());
            }
        }
    }

    /// Handles every input already queued, then the `Ready` they make: one Ready, one fsync for
    /// all of it. False once told to stop. (The simulation tests drive nodes through this and
    /// [`RaftNode::tick`], on a clock of their own.)
    pub(crate) fn drain(&mut self) -> Result<bool, oxcd_wal::WalError> {
        while let Ok(m) = self.rx.try_recv() {
            if !self.handle(m)? {
                return Ok(false);
            }
        }
        self.advance_applied();
        self.step_held_timeout_now();
        self.retry_stalled();
        self.on_ready()?;
        Ok(true)
    }

    /// Steps a held `MsgTimeoutNow` once no committed configuration change waits to be applied,
    /// or drops it after an election timeout (the leader has given up on the transfer by then,
    /// and a campaign now would depose a leader no one asked to go).
    fn step_held_timeout_now(&mut self) {
        let Some((_, since)) = &self.held_timeout_now else { return };
        if self.conf_change_unapplied() {
            if since.elapsed() >= self.cfg.tick * self.raw.raft.election_timeout() as u32 {
                self.held_timeout_now = None;
                tracing::info!("dropped a leadership transfer: a configuration change was not applied in time");
            }
            return;
        }
        let (m, _) = self.held_timeout_now.take().expect("checked above");
        if let Err(e) = self.raw.step(m) {
            tracing::debug!(error = %e, "dropped raft message");
        }
    }

    /// Whether a committed configuration change is not applied yet (raft-rs's own test before
    /// it campaigns).
    fn conf_change_unapplied(&self) -> bool {
        let log = &self.raw.raft.raft_log;
        let first = log.unstable.maybe_first_index().unwrap_or(log.applied + 1);
        if first > log.committed {
            return false;
        }
        log.slice(first, log.committed + 1, None, raft::GetEntriesContext::empty(false))
            .is_ok_and(|ents| ents.iter().any(|e| e.get_entry_type() != EntryType::EntryNormal))
    }

    /// One tick of Raft's logical clock.
    #[cfg(test)]
    pub(crate) fn tick(&mut self) {
        self.raw.tick();
    }

    /// Tells raft-rs how far the applier got (read from the applier's published index, so the
    /// applier never has to wake this thread).
    fn advance_applied(&mut self) {
        let index = self.applied.load(Ordering::Acquire);
        let log = &self.raw.raft.raft_log;
        let to = index.min(log.committed).min(log.persisted);
        if to > log.applied {
            self.raw.advance_apply_to(to);
        }
    }

    /// Handles one input; false means stop.
    fn handle(&mut self, input: RaftInput) -> Result<bool, oxcd_wal::WalError> {
        match input {
            RaftInput::Propose(data) => {
                if self.raw.raft.leader_id == raft::INVALID_ID || !self.stalled.is_empty() {
                    // No one to propose to (or older proposals wait): keep it, in order.
                    self.stalled.push_back((data, Instant::now()));
                } else if let Err(e) = self.raw.propose(vec![], data) {
                    // Rare (a leadership transfer in progress): the caller times out, as in etcd.
                    tracing::debug!(error = %e, "proposal dropped");
                }
            }
            RaftInput::ReadIndex { ctx } => self.raw.read_index(ctx.to_be_bytes().to_vec()),
            RaftInput::Step(m) if m.get_msg_type() == MessageType::MsgPropose => {
                // A proposal a follower forwarded (a configuration change is refused while an
                // earlier one is not applied: raft-rs learns first how far the applier got).
                self.advance_applied();
                if let Err(e) = step_proposal(&mut self.raw, m) {
                    tracing::debug!(error = %e, "dropped forwarded proposal");
                }
            }
            RaftInput::Step(m) if m.get_msg_type() == MessageType::MsgTimeoutNow => {
                self.advance_applied();
                self.held_timeout_now = Some((m, Instant::now()));
                self.step_held_timeout_now();
            }
            RaftInput::Step(m) => {
                if let Err(e) = self.raw.step(m) {
                    tracing::debug!(error = %e, "dropped raft message");
                }
            }
            RaftInput::Compact { index, term } => self.compact_log(index, term)?,
            RaftInput::Unreachable(id) => self.raw.report_unreachable(id),
            RaftInput::SnapshotStatus { to, ok } => {
                let status = if ok { SnapshotStatus::Finish } else { SnapshotStatus::Failure };
                self.raw.report_snapshot(to, status);
            }
            RaftInput::Campaign => {
                let _ = self.raw.campaign();
            }
            RaftInput::TransferLeader(to) => self.raw.transfer_leader(to),
            RaftInput::ProposeConfChange(data) => {
                // What raft-rs's `propose_conf_change` steps, with the entry's bytes as given
                // (raft-rs would write its own type numbers, not etcd's).
                let mut e = Entry::default();
                e.set_entry_type(EntryType::EntryConfChange);
                e.data = data.into();
                let mut m = Message::default();
                m.set_msg_type(MessageType::MsgPropose);
                m.set_entries(vec![e].into());
                self.advance_applied();
                if let Err(e) = step_proposal(&mut self.raw, m) {
                    // Another change is still being applied, or no leader: the caller times out.
                    tracing::info!(error = %e, "configuration change dropped");
                }
            }
            RaftInput::Progress(reply) => {
                let r = &self.raw.raft;
                let view = (r.state == raft::StateRole::Leader)
                    .then(|| RaftProgress { peers: r.prs().iter().map(|(id, p)| (*id, p.matched)).collect() });
                let _ = reply.send(view);
            }
            RaftInput::Stop => return Ok(false),
        }
        Ok(true)
    }

    fn retry_stalled(&mut self) {
        if self.stalled.is_empty() {
            return;
        }
        let ttl = self.cfg.stalled_ttl;
        self.stalled.retain(|(_, at)| at.elapsed() < ttl);
        if self.raw.raft.leader_id == raft::INVALID_ID {
            return;
        }
        while let Some((data, _)) = self.stalled.pop_front() {
            if let Err(e) = self.raw.propose(vec![], data) {
                tracing::debug!(error = %e, "stalled proposal dropped");
            }
        }
    }

    /// Handles a `Ready`, in this order:
    /// 1. messages that need no persistence (the leader's appends) go out at once, so followers
    ///    persist in parallel with the leader (Raft thesis 10.2.1);
    /// 2. a snapshot from the leader is made durable in the WAL, then handed to the applier;
    /// 3. committed entries (already persisted) go to the applier;
    /// 4. new entries and the HardState are written to the WAL and fsynced, in one sync;
    /// 5. read states are released to waiting linearizable reads;
    /// 6. messages that depend on what was just persisted (votes, append responses) go out;
    /// 7. raft-rs is told, and what that releases (newly committed entries) is handled the same way.
    fn on_ready(&mut self) -> Result<(), oxcd_wal::WalError> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut rd = self.raw.ready();

        // 1.
        if !rd.messages().is_empty() {
            self.transport.send(rd.take_messages());
        }
        // 2.
        if !rd.snapshot().is_empty() {
            self.install_snapshot(rd.snapshot().clone())?;
        }
        // 3.
        let committed = rd.take_committed_entries();
        if !committed.is_empty() {
            // Applied here only when nothing waits to be persisted behind it (a follower's new
            // entries: its acknowledgement is the leader's latency).
            let inline = rd.entries().is_empty();
            self.hand_to_applier(committed, inline);
        }
        // 4.
        oxcd_fail::point("raftBeforeSave")?;
        if !rd.entries().is_empty() {
            let recs: Vec<EntryRecord> = rd.entries().iter().map(to_record).collect();
            self.wal.append_entries(&recs);
            self.storage.append(rd.entries());
        }
        if let Some(hs) = rd.hs() {
            self.wal.set_hard_state(wal_hard_state(hs));
            self.storage.set_hard_state(hs.clone());
        }
        if rd.must_sync() {
            self.wal.sync()?;
        } else if self.wal.has_pending() {
            // Only the commit index moved: written, not waited for.
            self.wal.flush()?;
        }
        oxcd_fail::point("raftAfterSave")?;
        // 5.
        for rs in rd.take_read_states() {
            if let Ok(ctx) = <[u8; 8]>::try_from(rs.request_ctx.as_slice()) {
                self.read_hub.deliver(u64::from_be_bytes(ctx), rs.index);
            }
        }
        // 6.
        if !rd.persisted_messages().is_empty() {
            self.transport.send(rd.take_persisted_messages());
        }
        // 7.
        let mut light = self.raw.advance_append(rd);
        if let Some(commit) = light.commit_index() {
            self.storage.set_commit(commit);
            // Recorded lazily: synced with the next write. A lower commit after a crash is safe.
            let mut hs = self.storage.hard_state();
            hs.commit = commit;
            self.wal.set_hard_state(wal_hard_state(&hs));
        }
        if !light.messages().is_empty() {
            self.transport.send(light.take_messages());
        }
        let committed = light.take_committed_entries();
        if !committed.is_empty() {
            self.hand_to_applier(committed, true);
            // Checked as entries are committed, not on every ready (heartbeats, votes).
            self.storage.drop_applied_if_alone(ALONE_KEEP_ENTRIES);
        }
        self.publish_status();
        Ok(())
    }

    /// Hands committed entries to the applier. A small batch of plain entries (`inline` allowing)
    /// is applied on this thread when the applier is idle and caught up: one client's write then
    /// costs no wake-up of the applier's thread, which on a virtual machine is tens of
    /// microseconds of its latency.
    fn hand_to_applier(&mut self, committed: Vec<Entry>, inline: bool) {
        self.apply_conf_changes(&committed);
        if inline
            && committed.len() <= INLINE_APPLY_MAX
            && committed.iter().all(|e| e.get_entry_type() == EntryType::EntryNormal)
            && let Some(apply) = self.inline_apply.as_mut()
            && apply(&committed)
        {
            return;
        }
        let _ = self.apply_tx.send(ApplyMsg::Entries(committed));
    }

    /// Committed configuration changes take effect in Raft as they are handed to the applier, in
    /// log order (the applier records the members in the backend).
    fn apply_conf_changes(&mut self, committed: &[Entry]) {
        for e in committed.iter().filter(|e| e.get_entry_type() == EntryType::EntryConfChange) {
            let r = &self.raw.raft;
            let leading = r.state == raft::StateRole::Leader;
            // As the leader saw its followers before the change.
            let matched: Vec<(u64, u64)> =
                if leading { r.prs().iter().map(|(id, p)| (*id, p.matched)).collect() } else { Vec::new() };
            let Some(cc) = apply_conf_entry(&mut self.raw, &self.storage, e, self.cfg.max_learners) else { continue };
            if leading && cc.get_change_type() == ConfChangeType::RemoveNode {
                self.after_removal(cc.node_id, &matched);
            }
        }
    }

    /// This leader removed `removed` from the configuration.
    ///
    /// - Itself: raft-rs would keep leading a configuration it is not part of (and fail on its own
    ///   missing progress), so it steps down, and the most up-to-date voter left is told to
    ///   campaign at once (MsgTimeoutNow, as a leadership transfer does).
    /// - A follower: it hears nothing from this leader afterwards, so it would never learn that
    ///   its removal is committed (and stop, as etcd's removed members do): a last heartbeat
    ///   carries the commit index, up to what the follower acknowledged.
    fn after_removal(&mut self, removed: u64, matched: &[(u64, u64)]) {
        let r = &mut self.raw.raft;
        let (me, term, committed) = (r.id, r.term, r.raft_log.committed);
        let mut m = Message { from: me, term, ..Default::default() };
        if removed == me {
            r.become_follower(term, raft::INVALID_ID);
            let voters = r.prs().conf().voters();
            let Some(&(to, _)) =
                matched.iter().filter(|(id, _)| *id != me && voters.contains(*id)).max_by_key(|(_, m)| *m)
            else {
                return;
            };
            m.set_msg_type(MessageType::MsgTimeoutNow);
            m.to = to;
        } else {
            let Some(&(_, acked)) = matched.iter().find(|(id, _)| *id == removed) else { return };
            m.set_msg_type(MessageType::MsgHeartbeat);
            m.to = removed;
            m.commit = acked.min(committed);
        }
        self.transport.send(vec![m]);
    }

    fn install_snapshot(&mut self, snap: Snapshot) -> Result<(), oxcd_wal::WalError> {
        let meta = snap.get_metadata();
        tracing::info!(index = meta.index, term = meta.term, "installing snapshot from leader");
        oxcd_fail::point("raftBeforeApplySnap")?;
        self.wal.save_snapshot(SnapshotRecord {
            index: meta.index,
            term: meta.term,
            conf_state: encode_conf_state(meta.get_conf_state()),
        });
        self.storage.apply_snapshot(meta);
        let hs = self.storage.hard_state();
        self.wal.set_hard_state(wal_hard_state(&hs));
        self.wal.sync()?;
        oxcd_fail::point("raftAfterApplySnap")?;
        self.snapshot_index = meta.index;
        let db = snapshot_db_path(&self.cfg.snap_dir, meta.term, meta.index);
        let _ = self.apply_tx.send(ApplyMsg::Snapshot { index: meta.index, db });
        Ok(())
    }

    /// Snapshots the WAL at `index` (durable in the backend) and drops log entries before it,
    /// keeping `catchup_entries` in memory for followers that lag a little.
    fn compact_log(&mut self, index: u64, term: u64) -> Result<(), oxcd_wal::WalError> {
        if index <= self.snapshot_index {
            return Ok(());
        }
        oxcd_fail::point("raftBeforeSaveSnap")?;
        self.wal.save_snapshot(SnapshotRecord {
            index,
            term,
            conf_state: encode_conf_state(&self.storage.conf_state_at(index)),
        });
        let mut hs = self.storage.hard_state();
        hs.commit = hs.commit.max(index);
        self.wal.set_hard_state(wal_hard_state(&hs));
        self.wal.sync()?;
        oxcd_fail::point("raftAfterSaveSnap")?;
        self.wal.release_to(index)?;
        oxcd_fail::point("raftAfterWALRelease")?;
        self.snapshot_index = index;
        self.storage.compact_behind(index, self.cfg.catchup_entries, CATCHUP_BYTES);
        // etcd's two lines for a snapshot and the log compaction behind it.
        tracing::info!(snapshot_index = index, snapshot_term = term, "saved snapshot");
        tracing::info!(compact_index = index, "compacted Raft logs");
        Ok(())
    }

    fn publish_status(&self) {
        let r = &self.raw.raft;
        let old_leader = self.status.leader.swap(r.leader_id, Ordering::AcqRel);
        if old_leader != r.leader_id {
            *self.status.leader_since.lock() = Instant::now();
            // etcd's raft.node lines, which operators grep for.
            let me = crate::ids::MemberId(r.id);
            if r.leader_id != raft::INVALID_ID {
                crate::metrics::LEADER_CHANGES.inc();
                let leader = crate::ids::MemberId(r.leader_id);
                if old_leader == raft::INVALID_ID {
                    tracing::info!(target: "raft", "raft.node: {me} elected leader {leader} at term {}", r.term);
                } else {
                    let old = crate::ids::MemberId(old_leader);
                    tracing::info!(target: "raft", "raft.node: {me} changed leader from {old} to {leader} at term {}", r.term);
                }
            } else {
                let old = crate::ids::MemberId(old_leader);
                tracing::info!(target: "raft", "raft.node: {me} lost leader {old} at term {}", r.term);
            }
        }
        self.status.term.store(r.term, Ordering::Release);
        self.status.committed.store(r.raft_log.committed, Ordering::Release);
        if r.state == raft::StateRole::Leader && r.prs().is_singleton() {
            // The first time: the last index now is at or after the leader's first (empty) entry.
            let _ = self.status.sole_leader_from.compare_exchange(
                0,
                r.raft_log.last_index().max(1),
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        } else {
            self.status.sole_leader_from.store(0, Ordering::Release);
        }
    }
}

/// raft-rs's settings for member `id`, whose state machine has applied `applied`: PreVote,
/// CheckQuorum and safe ReadIndex (by a heartbeat round), one heartbeat per tick.
pub fn raft_config(id: u64, election_tick: usize, applied: u64, pre_vote: bool) -> raft::Config {
    raft::Config {
        id,
        election_tick,
        heartbeat_tick: 1,
        applied,
        max_size_per_msg: 1 << 20,
        max_inflight_msgs: 512,
        check_quorum: true,
        pre_vote,
        read_only_option: raft::ReadOnlyOption::Safe,
        ..Default::default()
    }
}

/// Steps a proposal into Raft. raft-rs's leader reads each configuration change with its own
/// `ConfChange`, which refuses etcd's AddLearnerNode (3: a number raft-rs's enum lacks), so a
/// proposal holding a change raft-rs cannot read is appended here, after the checks raft-rs
/// makes (this member still in the configuration, no leadership transfer under way; a change
/// while another is not applied yet, or in a joint configuration, becomes an empty entry).
fn step_proposal(raw: &mut RawNode<RaftStorage>, mut m: Message) -> raft::Result<()> {
    let unreadable =
        |e: &Entry| e.get_entry_type() == EntryType::EntryConfChange && ConfChange::parse_from_bytes(&e.data).is_err();
    let r = &mut raw.raft;
    if r.state != raft::StateRole::Leader || !m.entries.iter().any(unreadable) {
        return r.step(m);
    }
    if r.prs().get(r.id).is_none() || r.lead_transferee.is_some() {
        return Err(raft::Error::ProposalDropped);
    }
    for (i, e) in m.mut_entries().iter_mut().enumerate() {
        if e.get_entry_type() != EntryType::EntryConfChange {
            continue;
        }
        let joint = !r.prs().conf().to_conf_state().voters_outgoing.is_empty();
        if r.has_pending_conf() || joint {
            tracing::info!(pending = r.pending_conf_index, joint, "configuration change ignored");
            *e = Entry::default();
        } else {
            r.pending_conf_index = r.raft_log.last_index() + i as u64 + 1;
        }
    }
    if !r.append_entry(m.mut_entries()) {
        return Err(raft::Error::ProposalDropped);
    }
    r.bcast_append();
    Ok(())
}

/// Applies `e` to Raft's configuration if it is a configuration change that still applies to it
/// (also used when a restarted member replays the changes its backend already applied); returns
/// the change applied.
pub(crate) fn apply_conf_entry(
    raw: &mut RawNode<RaftStorage>,
    storage: &RaftStorage,
    e: &Entry,
    max_learners: usize,
) -> Option<ConfChange> {
    if e.get_entry_type() != EntryType::EntryConfChange {
        return None;
    }
    let Some(CommittedChange { change, raft, .. }) = MemberChange::decode(&e.data) else {
        tracing::error!(index = e.index, "undecodable configuration change skipped");
        return None;
    };
    let conf = raw.raft.prs().conf();
    let role = |id: MemberId| {
        if conf.voters().contains(id.0) { Some(false) } else { conf.learners().contains(&id.0).then_some(true) }
    };
    if let Err(err) = change.check(role, conf.learners().len(), max_learners) {
        tracing::warn!(index = e.index, %err, "committed configuration change no longer applies; skipped");
        return None;
    }
    // New peer URLs change no Raft configuration.
    let cc = raft?;
    match raw.apply_conf_change(&cc) {
        Ok(cs) => {
            tracing::info!(index = e.index, change = ?cc.get_change_type(), member = %MemberId(cc.node_id), voters = ?cs.voters, learners = ?cs.learners, "configuration changed");
            storage.set_conf_state(e.index, cs);
            Some(cc)
        }
        Err(err) => {
            tracing::warn!(index = e.index, %err, "configuration change not applied");
            None
        }
    }
}

fn to_record(e: &Entry) -> EntryRecord {
    EntryRecord { index: e.index, term: e.term, data: e.write_to_bytes().expect("entry encodes") }
}

fn wal_hard_state(hs: &HardState) -> WalHardState {
    WalHardState { term: hs.term, vote: hs.vote, commit: hs.commit }
}

/// Decodes a WAL entry record back into a Raft entry.
pub fn decode_entry(r: &EntryRecord) -> Option<Entry> {
    Entry::parse_from_bytes(&r.data).ok()
}
