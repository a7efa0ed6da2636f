//! The store itself: read views, the write transaction of the applier, restore and compaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use oxcd_api::mvccpb::{Event, KeyValue, event::EventType};
use oxcd_backend::{Backend, BackendError, BucketRead, KEY, META, ReadBucket, WriteBucket, WriteTxn};
use oxcd_lease::{LeaseId, Lessor};
use parking_lot::RwLock;
use prost::Message;

use crate::metrics::{self, OpCounts};

use crate::index::TreeIndex;
use crate::key_index::KeyAt;
use crate::revision::Revision;

/// Keys of the `meta` bucket.
pub mod meta {
    /// Index of the last Raft entry applied to the backend (u64 big-endian).
    pub const CONSISTENT_INDEX: &[u8] = b"consistent_index";
    /// Raft term of that entry (u64 big-endian).
    pub const TERM: &[u8] = b"term";
    /// Revision of the last compaction scheduled (17-byte revision key).
    pub const SCHEDULED_COMPACT_REV: &[u8] = b"scheduledCompactRev";
    /// Revision of the last compaction finished (17-byte revision key).
    pub const FINISHED_COMPACT_REV: &[u8] = b"finishedCompactRev";
}

/// Keys examined per hold of the index lock during compaction.
const COMPACT_INDEX_CHUNK: usize = 10_000;

/// Errors of the MVCC store.
#[derive(Debug, thiserror::Error)]
pub enum MvccError {
    /// The revision asked for was compacted.
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    /// The revision asked for does not exist yet.
    #[error("mvcc: required revision is a future revision")]
    FutureRev,
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Data in the backend does not decode or contradicts the index.
    #[error("mvcc: corrupt store: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, MvccError>;

/// What to read.
#[derive(Debug, Clone, Copy, Default)]
pub struct RangeOptions {
    /// Maximum number of kvs returned; 0 is unlimited.
    pub limit: i64,
    /// Revision to read at; 0 or less is the current revision.
    pub rev: i64,
    /// Return only the count.
    pub count_only: bool,
}

/// What a range read found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RangeResult {
    pub kvs: Vec<KeyValue>,
    /// The store's current revision (not the revision read at).
    pub rev: i64,
    /// Number of keys in the range, regardless of the limit.
    pub count: i64,
}

/// Read access at one revision: a [`ReadView`] or the applier's [`TxnWrite`].
pub trait KvRead {
    /// Reads `[key, end)`; `end` `None` is the single key, `Some(empty)` every key from `key` on.
    fn range(&self, key: &[u8], end: Option<&[u8]>, opts: RangeOptions) -> Result<RangeResult>;
    /// The revision this view reads at by default.
    fn rev(&self) -> i64;
    /// The compacted revision: reads below it fail (-1 if never compacted).
    fn compact_rev(&self) -> i64;
}

/// The MVCC store of one member.
pub struct Store {
    backend: Arc<Backend>,
    lessor: Arc<Lessor>,
    index: RwLock<TreeIndex>,
    /// Newest revision committed to the backend: what readers see.
    current_rev: AtomicI64,
    /// Newest revision applied, committed or not (the applier's view).
    write_rev: AtomicI64,
    /// Revisions below this are compacted (-1: never compacted).
    compact_rev: AtomicI64,
    /// The hashes of the last [`COMPACTION_HASHES`] compactions, oldest first: each the HashKV at
    /// the compaction's revision from the previous compaction's, computed before the history it
    /// covers was deleted (etcd's `hashStorage`, for the compaction hash check).
    compaction_hashes: parking_lot::Mutex<std::collections::VecDeque<KvHash>>,
}

/// Compaction hashes kept (etcd keeps 10).
const COMPACTION_HASHES: usize = 10;

impl Store {
    /// Opens the store on `backend`, rebuilding the key index from the `key` bucket. Returns the
    /// store and, if a compaction was scheduled but not finished before a crash, its revision (the
    /// caller runs it again with [`Store::run_compaction`]).
    pub fn open(backend: Arc<Backend>, lessor: Arc<Lessor>) -> Result<(Store, Option<i64>)> {
        let rtx = backend.read()?;
        let meta_b = rtx.bucket(META)?;
        let read_rev = |k: &[u8]| -> Result<i64> {
            Ok(meta_b.get(k)?.and_then(|v| Revision::from_key(&v)).map(|(r, _)| r.main).unwrap_or(-1))
        };
        let scheduled = read_rev(meta::SCHEDULED_COMPACT_REV)?;
        let finished = read_rev(meta::FINISHED_COMPACT_REV)?;

        let mut index = TreeIndex::default();
        let mut last_rev = 1;
        // Keys with a lease, by their newest revision, to re-attach once all is read.
        let mut leased: std::collections::HashMap<Box<[u8]>, i64> = Default::default();
        rtx.bucket(KEY)?.try_visit::<MvccError>(&[], None, |k, v| {
            let (rev, tombstone) =
                Revision::from_key(k).ok_or_else(|| MvccError::Corrupt(format!("bad revision key {k:?}")))?;
            let kv = KeyValue::decode(v).map_err(|e| MvccError::Corrupt(format!("bad KeyValue at {rev:?}: {e}")))?;
            index.restore(&kv.key, rev, Revision::new(kv.create_revision, 0), kv.version, tombstone);
            if tombstone || kv.lease == 0 {
                leased.remove(&kv.key[..]);
            } else {
                leased.insert(kv.key[..].into(), kv.lease);
            }
            last_rev = rev.main;
            Ok(())
        })?;
        for (key, lease) in leased {
            lessor.attach(LeaseId(lease), &key);
        }
        // A compaction may have removed the newest revisions (a deleted key); never go back.
        let current = last_rev.max(scheduled).max(1);
        let compact = scheduled.max(finished);
        let store = Store {
            backend,
            lessor,
            index: RwLock::new(index),
            current_rev: AtomicI64::new(current),
            write_rev: AtomicI64::new(current),
            compact_rev: AtomicI64::new(compact),
            compaction_hashes: Default::default(),
        };
        let pending = (scheduled > finished).then_some(scheduled);
        Ok((store, pending))
    }

    /// The newest revision visible to readers.
    pub fn current_rev(&self) -> i64 {
        self.current_rev.load(Ordering::Acquire)
    }

    /// The newest revision applied, committed to the backend or not (the applier's view).
    pub fn write_rev(&self) -> i64 {
        self.write_rev.load(Ordering::Acquire)
    }

    /// The compacted revision (-1 if none).
    pub fn compact_rev(&self) -> i64 {
        self.compact_rev.load(Ordering::Acquire)
    }

    /// Number of keys with history in the index.
    pub fn key_count(&self) -> usize {
        self.index.read().len()
    }

    /// A consistent view at the current revision.
    pub fn read(&self) -> Result<ReadView<'_>> {
        // Revision first, transaction second: the transaction then holds at least that revision.
        let rev = self.current_rev();
        let keys = self.backend.read()?.bucket(KEY)?;
        Ok(ReadView { store: self, keys, rev, counts: OpCounts::default() })
    }

    /// A consistent view at the current revision for the member's own use: its reads are not
    /// counted in the metrics of client requests.
    pub fn read_internal(&self) -> Result<ReadView<'_>> {
        let mut view = self.read()?;
        view.counts.internal = true;
        Ok(view)
    }

    /// Starts the applier's write transaction on `wtx` (the caller commits `wtx`, then calls
    /// [`Store::publish`]).
    pub fn write<'s, 't>(&'s self, wtx: &'t WriteTxn<'_>) -> Result<TxnWrite<'s, 't>> {
        Ok(TxnWrite {
            store: self,
            keys: wtx.bucket(KEY)?,
            begin_rev: self.write_rev.load(Ordering::Acquire),
            changes: Vec::new(),
            counts: OpCounts::default(),
        })
    }

    /// Makes everything written so far visible to readers; call after the backend commit.
    pub fn publish(&self) {
        self.current_rev.store(self.write_rev.load(Ordering::Acquire), Ordering::Release);
    }

    /// Schedules a compaction at `rev` inside the applier's transaction: from now on reads below
    /// `rev` fail. The caller then runs [`Store::run_compaction`] (in the background).
    pub fn compact(&self, wtx: &WriteTxn<'_>, rev: i64) -> Result<()> {
        if rev <= self.compact_rev() {
            return Err(MvccError::Compacted);
        }
        if rev > self.write_rev.load(Ordering::Acquire) {
            return Err(MvccError::FutureRev);
        }
        wtx.bucket(META)?.put(meta::SCHEDULED_COMPACT_REV, &Revision::new(rev, 0).to_key(false))?;
        self.compact_rev.store(rev, Ordering::Release);
        Ok(())
    }

    /// Drops history below `rev` from the index and the backend, a chunk at a time, `batch`
    /// revisions per backend commit (etcd's `--experimental-compaction-batch-limit`), sleeping
    /// `pause` between backend batches so foreground writes keep their latency. Idempotent: after a
    /// crash it is run again from the scheduled mark.
    pub fn run_compaction(&self, rev: i64, batch: usize, pause: Duration) -> Result<()> {
        let started = std::time::Instant::now();
        // The history this compaction drops, hashed first (from the previous compaction on).
        let previous = {
            let rtx = self.backend.read()?;
            let v = rtx.bucket(META)?.get(meta::FINISHED_COMPACT_REV)?;
            v.and_then(|v| Revision::from_key(&v)).map_or(-1, |(r, _)| r.main)
        };
        if previous < rev {
            let keep = self.index.read().keep(rev);
            let h = self.hash_between(previous, rev, &keep, &self.backend.read()?)?;
            let h = KvHash { current_rev: self.current_rev(), ..h };
            let mut hashes = self.compaction_hashes.lock();
            hashes.push_back(h);
            while hashes.len() > COMPACTION_HASHES {
                hashes.pop_front();
            }
        }
        let mut from: Box<[u8]> = Box::default();
        let mut removed = Vec::new();
        loop {
            removed.clear();
            let next = self.index.write().compact_chunk(&from, rev, COMPACT_INDEX_CHUNK, &mut removed);
            for batch in removed.chunks(batch.max(1)) {
                let mut tx = self.backend.write()?;
                {
                    let mut b = tx.bucket(KEY)?;
                    for (r, tombstone) in batch {
                        b.delete(&r.to_key(*tombstone))?;
                    }
                }
                tx.count_ops(batch.len());
                let paused = std::time::Instant::now();
                tx.commit()?;
                metrics::COMPACTION_PAUSE_MS.observe(paused.elapsed().as_secs_f64() * 1000.0);
                metrics::COMPACTION_KEYS.inc_by(batch.len() as u64);
                if !pause.is_zero() {
                    std::thread::sleep(pause);
                }
            }
            match next {
                Some(k) => from = k,
                None => break,
            }
        }
        let tx = self.backend.write()?;
        tx.bucket(META)?.put(meta::FINISHED_COMPACT_REV, &Revision::new(rev, 0).to_key(false))?;
        tx.commit()?;
        metrics::COMPACTION_TOTAL_MS.observe(started.elapsed().as_secs_f64() * 1000.0);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        metrics::COMPACTION_LAST.set(now.as_secs() as i64);
        Ok(())
    }
}

/// What [`Store::hash_by_rev`] computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvHash {
    pub hash: u32,
    /// The store's current revision.
    pub current_rev: i64,
    /// The compacted revision (-1 if never compacted).
    pub compact_rev: i64,
    /// The revision hashed up to.
    pub hash_rev: i64,
}

impl Store {
    /// etcd's HashKV (`store.HashByRev`): CRC-32C of the `key` bucket's name and of every revision
    /// key and value up to `rev` (0: the current revision), skipping revisions at or below the
    /// compacted one that a compaction at `rev` would not keep. The bucket holds etcd's encoding,
    /// so equal histories hash equal on oxcd and etcd.
    pub fn hash_by_rev(&self, rev: i64) -> Result<KvHash> {
        let started = std::time::Instant::now();
        let (compact_rev, current_rev, rev, keep, rtx) = loop {
            let (compact_rev, current_rev) = (self.compact_rev(), self.current_rev());
            if rev > 0 && rev <= compact_rev {
                return Err(MvccError::Compacted);
            }
            if rev > 0 && rev > current_rev {
                return Err(MvccError::FutureRev);
            }
            let rev = if rev == 0 { current_rev } else { rev };
            let (keep, rtx) = {
                let index = self.index.read();
                (index.keep(rev), self.backend.read()?)
            };
            // A compaction scheduled meanwhile may have dropped revisions this would hash as
            // live (etcd holds its store lock instead): start again from the new mark.
            if self.compact_rev() == compact_rev {
                break (compact_rev, current_rev, rev, keep, rtx);
            }
        };
        let hash = KvHash { current_rev, ..self.hash_between(compact_rev, rev, &keep, &rtx)? };
        metrics::HASH_REV_SECONDS.observe(started.elapsed().as_secs_f64());
        Ok(hash)
    }

    /// The hashes computed at the last compactions (see `compaction_hashes`), newest first.
    pub fn compaction_hashes(&self) -> Vec<KvHash> {
        self.compaction_hashes.lock().iter().rev().copied().collect()
    }

    /// The hash computed at the compaction at `rev`, if it is one of the last.
    pub fn compaction_hash(&self, rev: i64) -> Option<KvHash> {
        self.compaction_hashes.lock().iter().find(|h| h.hash_rev == rev).copied()
    }

    /// HashKV's walk: revisions up to `rev`, those at or below `compact_rev` only if `keep` holds
    /// them (when it holds any).
    fn hash_between(
        &self,
        compact_rev: i64,
        rev: i64,
        keep: &std::collections::HashSet<Revision>,
        rtx: &oxcd_backend::ReadTxn,
    ) -> Result<KvHash> {
        let mut h = crc32c::crc32c(KEY.as_bytes());
        rtx.bucket(KEY)?.visit(&[], None, &mut |k, v| {
            let Some((r, _)) = Revision::from_key(k) else { return true };
            if r.main > rev {
                return false;
            }
            if r.main <= compact_rev && !keep.is_empty() && !keep.contains(&r) {
                return true;
            }
            h = crc32c::crc32c_append(crc32c::crc32c_append(h, k), v);
            true
        })?;
        Ok(KvHash { hash: h, current_rev: rev, compact_rev, hash_rev: rev })
    }

    /// The events of revisions `from..=to`, read back from the `key` bucket, grouped by revision
    /// in order. `Err(Compacted)` if `from` is below the compacted revision.
    pub fn events_between(&self, from: i64, to: i64) -> Result<Vec<(i64, Vec<Event>)>> {
        let rtx = self.backend.read()?;
        if from < self.compact_rev() {
            return Err(MvccError::Compacted);
        }
        let mut out: Vec<(i64, Vec<Event>)> = Vec::new();
        if to < from {
            return Ok(out);
        }
        let start = Revision::new(from, 0).to_key(false);
        let end = Revision::new(to + 1, 0).to_key(false);
        rtx.bucket(KEY)?.try_visit::<MvccError>(&start, Some(&end), |k, v| {
            let (Some((rev, tombstone)), Ok(mut kv)) = (Revision::from_key(k), KeyValue::decode(v)) else {
                return Err(MvccError::Corrupt(format!("bad record at {k:?}")));
            };
            let ty = if tombstone {
                kv.mod_revision = rev.main;
                EventType::Delete
            } else {
                EventType::Put
            };
            let ev = Event { r#type: ty as i32, kv: Some(kv), prev_kv: None };
            match out.last_mut() {
                Some((r, evs)) if *r == rev.main => evs.push(ev),
                _ => out.push((rev.main, vec![ev])),
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// Reads `[key, end)` at `at` (or the current revision) from the index and a bucket.
fn range_keys(
    store: &Store,
    bucket: &impl BucketRead,
    cur_rev: i64,
    key: &[u8],
    end: Option<&[u8]>,
    opts: RangeOptions,
) -> Result<RangeResult> {
    if opts.rev > cur_rev {
        return Err(MvccError::FutureRev);
    }
    let at = if opts.rev <= 0 { cur_rev } else { opts.rev };
    let mut found: Vec<Revision> = Vec::new();
    let count = {
        let index = store.index.read();
        if at < store.compact_rev() {
            return Err(MvccError::Compacted);
        }
        if opts.count_only {
            index.count_alive(key, end, at)
        } else {
            let mut n = 0;
            index.visit_alive(key, end, at, |_, KeyAt { modified, .. }| {
                if opts.limit <= 0 || (found.len() as i64) < opts.limit {
                    found.push(modified);
                }
                n += 1;
                true
            });
            n
        }
    };
    let mut kvs = Vec::with_capacity(found.len());
    for rev in found {
        let v = bucket
            .get(&rev.to_key(false))?
            .ok_or_else(|| MvccError::Corrupt(format!("revision {rev:?} in index but not in backend")))?;
        kvs.push(decode_kv(v)?);
    }
    Ok(RangeResult { kvs, rev: cur_rev, count })
}

fn decode_kv(v: Bytes) -> Result<KeyValue> {
    KeyValue::decode(v).map_err(|e| MvccError::Corrupt(format!("bad KeyValue: {e}")))
}

/// A consistent read-only view of the store at one revision.
pub struct ReadView<'s> {
    store: &'s Store,
    keys: ReadBucket,
    rev: i64,
    counts: OpCounts,
}

impl Drop for ReadView<'_> {
    fn drop(&mut self) {
        self.counts.flush();
    }
}

impl KvRead for ReadView<'_> {
    fn range(&self, key: &[u8], end: Option<&[u8]>, opts: RangeOptions) -> Result<RangeResult> {
        self.counts.range();
        range_keys(self.store, &self.keys, self.rev, key, end, opts)
    }

    fn rev(&self) -> i64 {
        self.rev
    }

    fn compact_rev(&self) -> i64 {
        self.store.compact_rev()
    }
}

/// The applier's write transaction: every change gets the revision `begin_rev + 1`.
pub struct TxnWrite<'s, 't> {
    store: &'s Store,
    keys: WriteBucket<'t>,
    begin_rev: i64,
    changes: Vec<Event>,
    counts: OpCounts,
}

impl Drop for TxnWrite<'_, '_> {
    fn drop(&mut self) {
        self.counts.flush();
    }
}

impl TxnWrite<'_, '_> {
    /// The revision of the changes made by this transaction.
    fn next_rev(&self) -> i64 {
        self.begin_rev + 1
    }

    /// Writes `key`; returns the revision of the change.
    pub fn put(&mut self, key: &[u8], value: Bytes, lease: LeaseId) -> Result<i64> {
        self.counts.puts += 1;
        self.counts.put_bytes += key.len() + value.len();
        let rev = self.next_rev();
        let idx_rev = Revision::new(rev, self.changes.len() as i64);
        let prior = self.store.index.read().get(key, rev);
        let (created, ver) = match prior {
            Some(at) => (at.created.main, at.ver + 1),
            None => (rev, 1),
        };
        let kv = KeyValue {
            key: Bytes::copy_from_slice(key),
            create_revision: created,
            mod_revision: rev,
            version: ver,
            value,
            lease: lease.0,
        };
        self.keys.put(&idx_rev.to_key(false), &kv.encode_to_vec())?;
        self.store.index.write().put(key, idx_rev);
        let lessor = &self.store.lessor;
        if !lessor.is_empty() {
            if lessor.lease_of(key) != Some(lease) {
                lessor.detach(key);
            }
            lessor.attach(lease, key);
        }
        self.changes.push(Event { r#type: EventType::Put as i32, kv: Some(kv), prev_kv: None });
        Ok(rev)
    }

    /// Deletes every live key in `[key, end)`; returns how many were deleted.
    pub fn delete_range(&mut self, key: &[u8], end: Option<&[u8]>) -> Result<i64> {
        self.counts.deletes += 1;
        let at = self.rev();
        let mut live: Vec<Box<[u8]>> = Vec::new();
        self.store.index.read().visit_alive(key, end, at, |k, _| {
            live.push(k.into());
            true
        });
        let rev = self.next_rev();
        let leases = !self.store.lessor.is_empty();
        for k in &live {
            let idx_rev = Revision::new(rev, self.changes.len() as i64);
            let kv = KeyValue { key: Bytes::copy_from_slice(k), mod_revision: rev, ..Default::default() };
            self.keys
                .put(&idx_rev.to_key(true), &KeyValue { key: kv.key.clone(), ..Default::default() }.encode_to_vec())?;
            if !self.store.index.write().tombstone(k, idx_rev) {
                return Err(MvccError::Corrupt(format!("tombstone of dead key {k:?}")));
            }
            if leases {
                self.store.lessor.detach(k);
            }
            self.changes.push(Event { r#type: EventType::Delete as i32, kv: Some(kv), prev_kv: None });
        }
        Ok(live.len() as i64)
    }

    /// Counts what the request did so far as one transaction of its own in the metrics, and
    /// starts counting afresh: etcd's applier evaluates a write txn's compares in a read
    /// transaction, then runs its operations in a write transaction, and counts each
    /// (`etcd_mvcc_txn_total` moves for either only if it made more than one range, put or delete).
    pub fn end_phase(&mut self) {
        std::mem::take(&mut self.counts).flush();
    }

    /// The changes made so far, in order.
    pub fn changes(&self) -> &[Event] {
        &self.changes
    }

    /// Ends the transaction; returns the store revision after it (bumped only if it changed
    /// something) and its events.
    pub fn end(mut self) -> (i64, Vec<Event>) {
        let changes = std::mem::take(&mut self.changes);
        if changes.is_empty() {
            return (self.begin_rev, changes);
        }
        let rev = self.begin_rev + 1;
        self.store.write_rev.store(rev, Ordering::Release);
        (rev, changes)
    }
}

impl KvRead for TxnWrite<'_, '_> {
    /// Reads see this transaction's own writes.
    fn range(&self, key: &[u8], end: Option<&[u8]>, opts: RangeOptions) -> Result<RangeResult> {
        self.counts.range();
        range_keys(self.store, &self.keys, self.rev(), key, end, opts)
    }

    fn rev(&self) -> i64 {
        if self.changes.is_empty() { self.begin_rev } else { self.begin_rev + 1 }
    }

    fn compact_rev(&self) -> i64 {
        self.store.compact_rev()
    }
}

#[cfg(test)]
mod tests;
