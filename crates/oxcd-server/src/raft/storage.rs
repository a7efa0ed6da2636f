//! The Raft log as raft-rs reads it: entries after the last snapshot point, the HardState and the
//! ConfState, in memory. The WAL is what makes them durable; this is the copy raft-rs reads.
//!
//! Snapshots are the backend itself: [`Storage::snapshot`] answers with the metadata of the
//! member's applied index (the transport then streams the backend, whose consistent_index is at
//! least that index), never with data.

use std::cmp;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::util::limit_size;
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

#[derive(Default)]
struct Log {
    hard_state: HardState,
    conf_state: ConfState,
    /// Index and term of the last entry folded into a snapshot (the entry before `entries[0]`),
    /// and the configuration as of it.
    snapshot: SnapshotMetadata,
    entries: Vec<Entry>,
    /// Configuration changes applied after the snapshot point: the configuration in effect from
    /// each index on (a snapshot offered at an index carries the configuration as of that index).
    conf_history: Vec<(u64, ConfState)>,
}

impl Log {
    fn first_index(&self) -> u64 {
        self.snapshot.index + 1
    }

    fn last_index(&self) -> u64 {
        self.snapshot.index + self.entries.len() as u64
    }

    fn conf_state_at(&self, index: u64) -> ConfState {
        let later = self.conf_history.iter().rev().find(|(i, _)| *i <= index);
        later.map_or_else(|| self.snapshot.get_conf_state().clone(), |(_, cs)| cs.clone())
    }
}

/// The in-memory Raft log, shared between the Raft thread (writer) and raft-rs (reader).
#[derive(Clone)]
pub struct RaftStorage {
    log: Arc<RwLock<Log>>,
    /// Index the backend has applied (set by the applier): the snapshot point offered to followers.
    applied: Arc<AtomicU64>,
}

impl RaftStorage {
    /// A log starting after the snapshot point `snap` with `entries`.
    pub fn new(
        snap: SnapshotMetadata,
        hard_state: HardState,
        entries: Vec<Entry>,
        applied: Arc<AtomicU64>,
    ) -> RaftStorage {
        let conf_state = snap.get_conf_state().clone();
        let log = Log { hard_state, conf_state, snapshot: snap, entries, conf_history: Vec::new() };
        RaftStorage { log: Arc::new(RwLock::new(log)), applied }
    }

    /// Appends entries, replacing any conflicting suffix.
    pub fn append(&self, ents: &[Entry]) {
        let Some(first) = ents.first() else { return };
        let mut log = self.log.write();
        assert!(first.index >= log.first_index(), "append at {} before first index {}", first.index, log.first_index());
        let keep = (first.index - log.first_index()) as usize;
        log.entries.truncate(keep);
        log.entries.extend_from_slice(ents);
    }

    pub fn set_hard_state(&self, hs: HardState) {
        self.log.write().hard_state = hs;
    }

    pub fn hard_state(&self) -> HardState {
        self.log.read().hard_state.clone()
    }

    pub fn set_commit(&self, commit: u64) {
        self.log.write().hard_state.commit = commit;
    }

    pub fn conf_state(&self) -> ConfState {
        self.log.read().conf_state.clone()
    }

    /// The configuration after the change committed at `index` (Raft's, from `apply_conf_change`).
    pub fn set_conf_state(&self, index: u64, cs: ConfState) {
        let mut log = self.log.write();
        log.conf_state = cs.clone();
        log.conf_history.push((index, cs));
    }

    /// The configuration in effect at `index` (at or after the snapshot point).
    pub fn conf_state_at(&self, index: u64) -> ConfState {
        self.log.read().conf_state_at(index)
    }

    /// Installs a snapshot received from the leader: the log restarts after it.
    pub fn apply_snapshot(&self, meta: &SnapshotMetadata) {
        let mut log = self.log.write();
        log.hard_state.term = cmp::max(log.hard_state.term, meta.term);
        log.hard_state.commit = cmp::max(log.hard_state.commit, meta.index);
        log.conf_state = meta.get_conf_state().clone();
        log.snapshot = meta.clone();
        log.entries.clear();
        log.conf_history.clear();
    }

    /// After a snapshot at `index`: drops the entries up to it but for the last `keep_entries` of
    /// them, and fewer if those hold more than `keep_bytes` of data (lagging followers past that get
    /// a snapshot instead, as past the entry count).
    pub fn compact_behind(&self, index: u64, keep_entries: u64, keep_bytes: usize) {
        let mut to = index.saturating_sub(keep_entries);
        {
            let log = self.log.read();
            let first = log.first_index();
            if index >= first && index <= log.last_index() {
                let mut kept = 0usize;
                let mut i = index;
                while i > to.max(first.saturating_sub(1)) && i >= first {
                    kept += log.entries[(i - first) as usize].data.len();
                    if kept > keep_bytes {
                        to = i;
                        break;
                    }
                    i -= 1;
                }
            }
        }
        self.compact(to);
    }

    /// Drops the applied entries from memory once there are `batch` of them, if this member is the
    /// configuration's only voter and it has no learner: no one will ask for them (a member added
    /// later gets a snapshot), and the WAL keeps them until its next snapshot. Only while no
    /// configuration change is recorded after the snapshot point, so that the configuration as of
    /// any index from there on stays known.
    pub fn drop_applied_if_alone(&self, batch: u64) {
        let to = {
            let log = self.log.read();
            let cs = &log.conf_state;
            let alone = cs.voters.len() == 1
                && cs.learners.is_empty()
                && cs.voters_outgoing.is_empty()
                && cs.learners_next.is_empty()
                && log.conf_history.is_empty();
            let to = self.applied.load(Ordering::Acquire).min(log.last_index());
            if !alone || to < log.first_index() + batch {
                return;
            }
            to
        };
        self.compact(to);
    }

    /// Bytes of entry data held in memory.
    pub fn bytes(&self) -> usize {
        self.log.read().entries.iter().map(|e| e.data.len()).sum()
    }

    /// Drops entries up to `index` (inclusive), which must be applied and durable in the backend.
    pub fn compact(&self, index: u64) {
        let mut log = self.log.write();
        if index < log.first_index() || index > log.last_index() {
            return;
        }
        let term = log.entries[(index - log.first_index()) as usize].term;
        let drop = (index + 1 - log.first_index()) as usize;
        log.entries.drain(..drop);
        let cs = log.conf_state_at(index);
        log.snapshot.index = index;
        log.snapshot.term = term;
        log.snapshot.set_conf_state(cs);
        log.conf_history.retain(|(i, _)| *i > index);
    }

    /// Term of the entry at `index`, if the log still has it.
    pub fn term_of(&self, index: u64) -> Option<u64> {
        self.term(index).ok()
    }

    pub fn first_last(&self) -> (u64, u64) {
        let log = self.log.read();
        (log.first_index(), log.last_index())
    }
}

impl Storage for RaftStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let log = self.log.read();
        Ok(RaftState::new(log.hard_state.clone(), log.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _ctx: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let log = self.log.read();
        if low < log.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > log.last_index() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let off = log.first_index();
        let mut ents = log.entries[(low - off) as usize..(high - off) as usize].to_vec();
        limit_size(&mut ents, max_size.into());
        Ok(ents)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let log = self.log.read();
        if idx == log.snapshot.index {
            return Ok(log.snapshot.term);
        }
        if idx < log.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > log.last_index() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(log.entries[(idx - log.first_index()) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.log.read().first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.log.read().last_index())
    }

    /// The snapshot point is the backend's applied index (which the streamed backend covers).
    fn snapshot(&self, _request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let log = self.log.read();
        let applied = self.applied.load(Ordering::Acquire);
        let index = applied.clamp(log.snapshot.index, log.last_index());
        let term = if index == log.snapshot.index {
            log.snapshot.term
        } else {
            log.entries[(index - log.first_index()) as usize].term
        };
        let cs = log.conf_state_at(index);
        if !cs.voters.contains(&to) && !cs.learners.contains(&to) {
            // A member added after the applied index: it would refuse a snapshot without itself
            // (after the whole backend was streamed); raft-rs asks again later.
            return Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
        }
        let mut snap = Snapshot::default();
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(cs);
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ent(index: u64, term: u64) -> Entry {
        Entry { index, term, ..Default::default() }
    }

    fn storage() -> RaftStorage {
        let mut snap = SnapshotMetadata { index: 1, term: 1, ..Default::default() };
        snap.mut_conf_state().voters = vec![1];
        RaftStorage::new(snap, HardState::default(), vec![], Arc::new(AtomicU64::new(0)))
    }

    #[test]
    fn append_truncates_conflicts_and_compact_moves_first_index() {
        let s = storage();
        s.append(&[ent(2, 1), ent(3, 1), ent(4, 1)]);
        s.append(&[ent(3, 2)]);
        assert_eq!(s.first_last(), (2, 3));
        assert_eq!(s.term(3).unwrap(), 2);
        s.compact(2);
        assert_eq!(s.first_last(), (3, 3));
        assert_eq!(s.term(2).unwrap(), 1, "term of the snapshot point is kept");
        assert!(matches!(s.term(1), Err(raft::Error::Store(StorageError::Compacted))));
        assert!(matches!(
            s.entries(2, 3, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
    }

    #[test]
    fn a_member_alone_drops_applied_entries_in_batches() {
        let s = storage();
        s.append(&(2..=20).map(|i| ent(i, 1)).collect::<Vec<_>>());
        s.applied.store(10, Ordering::Release);
        s.drop_applied_if_alone(5);
        assert_eq!(s.first_last(), (11, 20));
        assert_eq!(s.term(10).unwrap(), 1, "the term of the last dropped entry is kept");
        s.applied.store(14, Ordering::Release);
        s.drop_applied_if_alone(5);
        assert_eq!(s.first_last(), (11, 20), "fewer than a batch applied since");

        // Not alone: a second voter (or a learner) may need the entries.
        let s = storage();
        s.append(&(2..=20).map(|i| ent(i, 1)).collect::<Vec<_>>());
        s.applied.store(15, Ordering::Release);
        let two = ConfState { voters: vec![1, 2], ..Default::default() };
        s.set_conf_state(12, two);
        s.drop_applied_if_alone(5);
        assert_eq!(s.first_last(), (2, 20));
        // Alone again, but a configuration change is recorded after the snapshot point.
        s.set_conf_state(14, ConfState { voters: vec![1], ..Default::default() });
        s.drop_applied_if_alone(5);
        assert_eq!(s.first_last(), (2, 20));
        // Once compacted past it, the configuration is known from the snapshot point on.
        s.compact(14);
        s.applied.store(20, Ordering::Release);
        s.drop_applied_if_alone(5);
        assert_eq!(s.first_last(), (21, 20));
        assert_eq!(s.conf_state_at(20).voters, vec![1]);
    }

    #[test]
    fn compaction_keeps_catchup_entries_within_a_byte_budget() {
        let s = storage();
        let big = |index| Entry { index, term: 1, data: vec![0u8; 100].into(), ..Default::default() };
        s.append(&(2..=21).map(big).collect::<Vec<_>>());
        // Keep up to 10 entries behind 21, but only 350 bytes of them: entries 19..=21 stay.
        s.compact_behind(21, 10, 350);
        assert_eq!(s.first_last(), (19, 21));
        assert_eq!(s.bytes(), 300);
        // Entry count binds first when entries are small.
        s.compact_behind(21, 1, 1 << 20);
        assert_eq!(s.first_last(), (21, 21));
    }

    #[test]
    fn snapshot_point_is_the_applied_index() {
        let s = storage();
        s.append(&[ent(2, 1), ent(3, 2), ent(4, 2)]);
        s.applied.store(3, Ordering::Release);
        let snap = s.snapshot(0, 1).unwrap();
        assert_eq!((snap.get_metadata().index, snap.get_metadata().term), (3, 2));
        assert_eq!(snap.get_metadata().get_conf_state().voters, vec![1]);
        assert!(snap.data.is_empty());
    }

    #[test]
    fn a_snapshot_carries_the_configuration_as_of_its_index() {
        let s = storage();
        s.append(&[ent(2, 1), ent(3, 1), ent(4, 1), ent(5, 1)]);
        let voters = |v: Vec<u64>| ConfState { voters: v, ..Default::default() };
        // Raft applied a change committed at 3 (two voters) and one at 5 (three).
        s.set_conf_state(3, voters(vec![1, 2]));
        s.set_conf_state(5, voters(vec![1, 2, 3]));
        assert_eq!(s.conf_state().voters, vec![1, 2, 3], "raft-rs starts from the newest");
        let at = |applied: u64| {
            s.applied.store(applied, Ordering::Release);
            s.snapshot(0, 1).unwrap().get_metadata().get_conf_state().voters.clone()
        };
        assert_eq!(at(2), vec![1], "before the first change");
        assert_eq!(at(4), vec![1, 2]);
        // Not to a member the snapshot's configuration lacks (it would refuse it): later.
        assert!(matches!(s.snapshot(0, 3), Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable))));
        assert_eq!(at(5), vec![1, 2, 3]);
        assert!(s.snapshot(0, 3).is_ok());
        // Compaction folds the changes up to its point into the snapshot point's configuration.
        s.compact(4);
        assert_eq!(s.conf_state_at(4).voters, vec![1, 2]);
        assert_eq!(s.conf_state_at(5).voters, vec![1, 2, 3]);
        s.compact(5);
        assert_eq!(s.conf_state_at(5).voters, vec![1, 2, 3]);
    }
}
