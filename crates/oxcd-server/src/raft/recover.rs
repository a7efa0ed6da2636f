//! A member's Raft node and log rebuilt from its WAL, for the backend's consistent index.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use oxcd_datadir::StartError;
use oxcd_datadir::membership::MemberChange;
use oxcd_wal::{EntryRecord, HardState as WalHardState, Wal, WalState};
use protobuf::Message as _;
use raft::RawNode;
use raft::prelude::{ConfChangeType, Entry, EntryType, HardState, SnapshotMetadata};

use crate::ids::MemberId;

use super::logger::raft_logger;
use super::node::{apply_conf_entry, decode_entry};
use super::storage::RaftStorage;
use crate::membership::decode_conf_state;

/// `--force-new-cluster` (etcd's `restartAsStandaloneNode`): the log is cut at its commit index
/// (what was never committed is dropped), then one committed entry per other member removes it,
/// so that once they are applied this member is the only one, with its data, its member id and
/// its cluster id. Written to the WAL (durably) before Raft starts; returns how many were removed.
pub fn force_new_cluster(wal: &mut Wal, state: &WalState, me: MemberId) -> Result<usize, StartError> {
    let snap = state.snapshot.as_ref().ok_or_else(|| StartError::Data("wal has no snapshot record".into()))?;
    let hs = state.hard_state.unwrap_or_default();
    let last = state.entries.last().map_or(snap.index, |e| e.index);
    let commit = hs.commit.max(snap.index).min(last);
    let term = hs.term.max(snap.term);
    // The configuration at the commit index: the snapshot's, then every change up to it.
    let cs = decode_conf_state(&snap.conf_state).ok_or_else(|| StartError::Data("bad conf state in wal".into()))?;
    let mut ids: Vec<u64> = cs.voters.iter().chain(cs.learners.iter()).copied().collect();
    for r in state.entries.iter().filter(|r| r.index <= commit) {
        let Some(e) = decode_entry(r) else { continue };
        if e.get_entry_type() != EntryType::EntryConfChange {
            continue;
        }
        match MemberChange::decode(&e.data).map(|c| c.change) {
            Some(MemberChange::Add(m)) if !ids.contains(&m.id.0) => ids.push(m.id.0),
            Some(MemberChange::Remove(id)) => ids.retain(|i| *i != id.0),
            _ => {}
        }
    }
    let others: Vec<u64> = ids.into_iter().filter(|i| *i != me.0).collect();
    let mut records = Vec::with_capacity(others.len());
    for (n, id) in others.iter().enumerate() {
        let cc = MemberChange::proposal(ConfChangeType::RemoveNode, MemberId(*id), Vec::new(), 0);
        let mut e = Entry::default();
        e.set_entry_type(EntryType::EntryConfChange);
        e.index = commit + 1 + n as u64;
        e.term = term;
        e.data = cc.write_to_bytes().map_err(|e| StartError::Data(e.to_string()))?.into();
        records.push(EntryRecord {
            index: e.index,
            term,
            data: e.write_to_bytes().map_err(|e| StartError::Data(e.to_string()))?,
        });
    }
    let new_commit = commit + records.len() as u64;
    if last > commit || !records.is_empty() {
        if last > commit {
            tracing::warn!(commit, last, "--force-new-cluster: discarding uncommitted entries");
        }
        // An entry at commit + 1 supersedes everything after the commit index; with no member to
        // remove, the entry at the commit index itself is written again to cut the tail.
        let cut = match records.is_empty() {
            true => state.entries.iter().filter(|r| r.index == commit).cloned().collect(),
            false => records,
        };
        wal.append_entries(&cut);
    }
    wal.set_hard_state(WalHardState { term, vote: hs.vote, commit: new_commit });
    wal.sync()?;
    tracing::info!(local_member_id = %me, removed = ?others.iter().map(|i| MemberId(*i).to_string()).collect::<Vec<_>>(), commit_index = new_commit, "forcing restart member as a new one-member cluster");
    Ok(others.len())
}

/// raft-rs's node and its log as the WAL recorded them, for a member whose backend has applied up
/// to `ci` (its consistent index), with the settings `config` gives for the index raft-rs has
/// applied; also the applied index the applier publishes.
pub fn open_raft(
    config: impl FnOnce(u64) -> raft::Config,
    wal_state: &WalState,
    ci: u64,
    max_learners: usize,
) -> Result<(RawNode<RaftStorage>, RaftStorage, Arc<AtomicU64>), StartError> {
    let wal_snap = wal_state.snapshot.as_ref().ok_or_else(|| StartError::Data("wal has no snapshot record".into()))?;
    let mut snap_meta = SnapshotMetadata { index: wal_snap.index, term: wal_snap.term, ..Default::default() };
    snap_meta.set_conf_state(
        decode_conf_state(&wal_snap.conf_state).ok_or_else(|| StartError::Data("bad conf state in wal".into()))?,
    );
    let whs = wal_state.hard_state.unwrap_or_default();
    let mut hs = HardState {
        term: whs.term.max(wal_snap.term),
        vote: whs.vote,
        commit: whs.commit.max(wal_snap.index),
        ..Default::default()
    };
    let entries = wal_state
        .entries
        .iter()
        .map(|r| decode_entry(r).ok_or_else(|| StartError::Data(format!("bad entry {} in wal", r.index))))
        .collect::<Result<Vec<_>, _>>()?;
    let last_index = entries.last().map(|e| e.index).unwrap_or(wal_snap.index);
    hs.commit = hs.commit.min(last_index);
    let raft_applied = ci.min(hs.commit).max(wal_snap.index);
    // Configuration changes the backend already applied: raft-rs does not hand them out again,
    // so they are applied to its configuration here (after the WAL snapshot's).
    let replay: Vec<_> = entries
        .iter()
        .filter(|e| e.index <= raft_applied && e.get_entry_type() == EntryType::EntryConfChange)
        .cloned()
        .collect();
    let applied = Arc::new(AtomicU64::new(ci));
    let storage = RaftStorage::new(snap_meta, hs, entries, applied.clone());
    let raft_cfg = config(raft_applied);
    raft_cfg.validate()?;
    let mut raw = RawNode::new(&raft_cfg, storage.clone(), &raft_logger())?;
    for e in &replay {
        apply_conf_entry(&mut raw, &storage, e, max_learners);
    }
    Ok((raw, storage, applied))
}
