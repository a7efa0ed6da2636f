//! A member's Raft node and log rebuilt from its WAL, for the backend's consistent index.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use oxcd_datadir::StartError;
use oxcd_wal::WalState;
use raft::RawNode;
use raft::prelude::{EntryType, HardState, SnapshotMetadata};

use super::logger::raft_logger;
use super::node::{apply_conf_entry, decode_entry};
use super::storage::RaftStorage;
use crate::membership::decode_conf_state;

/// raft-rs's node and its log as the WAL recorded them, for a member whose backend has applied up
/// to `ci` (its consistent index), with the settings `config` gives for the index raft-rs has
/// applied; also the applied index the applier publishes.
pub fn open_raft(
    config: impl FnOnce(u64) -> raft::Config,
    wal_state: &WalState,
    ci: u64,
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
        apply_conf_entry(&mut raw, &storage, e);
    }
    Ok((raw, storage, applied))
}
