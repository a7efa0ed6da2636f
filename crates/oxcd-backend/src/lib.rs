//! The backend: an embedded copy-on-write B+tree (redb) holding etcd's buckets.
//!
//! Everything durable besides the WAL lives here: the `key` bucket (revision → KeyValue), `meta`
//! (consistent_index, compaction marks), and the lease, member, alarm and auth buckets. Buckets are
//! byte-keyed tables, as in bbolt.
//!
//! Batching: every [`WriteTxn`] commits, so readers see its data at once, but only every
//! `batch_interval` or `batch_limit` operations is a commit made durable (fsync); the others are
//! redb non-durable commits. The WAL is what makes acknowledged writes durable; the backend only has
//! to hold, durably, a consistent prefix of the applied log, which is why the applier writes
//! `consistent_index` in the same transaction as the data it covers.
//!
//! Defragmentation ([`Backend::defrag`]) rewrites the file while the member serves: it holds the
//! write lock, copies every bucket into a fresh file, renames it over the old one and switches new
//! transactions to it; transactions already open finish on the old file, which is freed with them.
//!
//! This crate knows nothing of MVCC or Raft; it must not depend on the server.

pub mod bolt;
pub mod metrics;
mod snapshot;

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use redb::{Database, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable, Table, TableDefinition};

pub use snapshot::{SnapshotError, restore_snapshot};

/// The buckets of the backend, etcd's names. Order matters: it is the bucket number in snapshots.
pub const BUCKETS: &[&str] = &[
    "key",
    "meta",
    "lease",
    "members",
    "members_removed",
    "alarm",
    "auth",
    "authUsers",
    "authRoles",
    "cluster",
    "authTokens",
];

/// Bucket of MVCC revisions: 17-byte revision key → encoded KeyValue.
pub const KEY: &str = "key";
/// Bucket of member-local metadata (consistent_index, compaction marks).
pub const META: &str = "meta";
/// Bucket of leases: 8-byte big-endian id → encoded lease.
pub const LEASE: &str = "lease";
/// Bucket of cluster members: 8-byte big-endian id → encoded member.
pub const MEMBERS: &str = "members";
/// Bucket of removed member ids.
pub const MEMBERS_REMOVED: &str = "members_removed";
/// Bucket of active alarms.
pub const ALARM: &str = "alarm";
/// Bucket of cluster-wide settings: `clusterVersion` (etcd's key and format, `3.5.0`).
pub const CLUSTER: &str = "cluster";

type BucketDef<'n> = TableDefinition<'n, &'static [u8], &'static [u8]>;

fn def(name: &str) -> BucketDef<'_> {
    TableDefinition::new(name)
}

/// Errors of the backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// An error from redb.
    #[error("backend: {0}")]
    Db(#[from] redb::Error),
    /// An I/O error outside redb.
    #[error("backend: io: {0}")]
    Io(#[from] std::io::Error),
    /// A snapshot stream failed its checks.
    #[error("backend: {0}")]
    Snapshot(#[from] SnapshotError),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for BackendError {
            fn from(e: $t) -> Self { BackendError::Db(e.into()) }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// redb's page cache. 4 MiB, not 16: after 100,000 puts from 1000 clients a member's peak RSS is
/// 77-78 MiB instead of 89-91 MiB, with put and range throughput within noise (the file's pages
/// stay in the OS page cache; docs/benchmarks.md).
const CACHE_BYTES: usize = 4 << 20;

fn create(path: &Path) -> Result<Database> {
    Ok(Database::builder().set_cache_size(CACHE_BYTES).create(path)?)
}

fn defrag_path(path: &Path) -> PathBuf {
    path.with_extension("defrag")
}

/// Entries copied per write transaction of a defragmentation.
const DEFRAG_BATCH: usize = 50_000;

/// Copies every bucket of `from` into the empty `to`; the last commit is durable.
fn copy_buckets(from: &redb::ReadTransaction, to: &Database) -> Result<()> {
    let mut txn = to.begin_write()?;
    txn.set_durability(Durability::None)?;
    let mut in_txn = 0;
    for name in BUCKETS {
        let src = from.open_table(def(name))?;
        let mut entries = src.iter()?;
        // The destination table is opened once per transaction, not once per entry.
        loop {
            let mut full = false;
            {
                let mut dst = txn.open_table(def(name))?;
                for item in entries.by_ref() {
                    let (k, v) = item?;
                    dst.insert(k.value(), v.value())?;
                    in_txn += 1;
                    if in_txn >= DEFRAG_BATCH {
                        full = true;
                        break;
                    }
                }
            }
            if !full {
                break;
            }
            txn.commit()?;
            txn = to.begin_write()?;
            txn.set_durability(Durability::None)?;
            in_txn = 0;
        }
    }
    txn.set_durability(Durability::Immediate)?;
    txn.set_quick_repair(true);
    txn.commit()?;
    Ok(())
}

pub type Result<T> = std::result::Result<T, BackendError>;

/// How often write transactions are made durable (etcd: `--backend-batch-interval`, `-limit`).
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// A commit is durable when this long has passed since the last durable one (default 100 ms).
    pub interval: Duration,
    /// ... or when this many operations were written since (default 10,000).
    pub limit: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { interval: Duration::from_millis(100), limit: 10_000 }
    }
}

struct BatchState {
    last_durable: Instant,
    ops_since_durable: usize,
    non_durable_commits: usize,
}

/// An open backend file.
pub struct Backend {
    /// The open file; replaced by [`Backend::defrag`]. Every transaction holds the one it began on.
    db: RwLock<Arc<Database>>,
    path: PathBuf,
    batch: BatchConfig,
    state: Mutex<BatchState>,
    /// The file's size after the last commit (read by every quota check, so kept, not stat'ed).
    size: AtomicU64,
    /// Writers holding or waiting for the write transaction (see [`Backend::try_write`]).
    writers: AtomicUsize,
}

impl Backend {
    /// Opens (or creates) the backend at `path` and makes sure every bucket exists.
    pub fn open(path: impl AsRef<Path>, batch: BatchConfig) -> Result<Backend> {
        let path = path.as_ref().to_path_buf();
        // A defragmentation that a crash interrupted (the old file is still in place).
        let _ = std::fs::remove_file(defrag_path(&path));
        let db = create(&path)?;
        let txn = db.begin_write()?;
        for name in BUCKETS {
            txn.open_table(def(name))?;
        }
        txn.commit()?;
        let backend = Backend {
            size: AtomicU64::new(0),
            writers: AtomicUsize::new(0),
            db: RwLock::new(Arc::new(db)),
            path,
            batch,
            state: Mutex::new(BatchState {
                last_durable: Instant::now(),
                ops_since_durable: 0,
                non_durable_commits: 0,
            }),
        };
        backend.note_size();
        Ok(backend)
    }

    /// The file this backend lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn current(&self) -> Arc<Database> {
        self.db.read().clone()
    }

    /// Starts the write transaction (one at a time; this blocks while another is open).
    pub fn write(&self) -> Result<WriteTxn<'_>> {
        self.begin(WriterGate::enter(&self.writers))
    }

    /// Starts the write transaction unless another writer holds it or waits for it (a
    /// defragmentation, a compaction batch): for a caller that must not block, such as the Raft
    /// thread. It counts itself in only if it is the only writer, so a writer that comes after
    /// waits for it, never the other way round.
    pub fn try_write(&self) -> Result<Option<WriteTxn<'_>>> {
        if self.writers.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return Ok(None);
        }
        self.begin(WriterGate(&self.writers)).map(Some)
    }

    /// Begins the write transaction for a writer counted in by `gate`.
    fn begin<'a>(&'a self, gate: WriterGate<'a>) -> Result<WriteTxn<'a>> {
        loop {
            let db = self.current();
            let txn = db.begin_write()?;
            // A defragmentation may have replaced the file while this waited for the lock.
            if Arc::ptr_eq(&db, &self.db.read()) {
                return Ok(WriteTxn { backend: self, txn, ops: 0, db, _gate: gate });
            }
        }
    }

    /// Starts a read transaction: a consistent view of everything committed so far.
    pub fn read(&self) -> Result<ReadTxn> {
        let db = self.current();
        Ok(ReadTxn { txn: db.begin_read()?, db })
    }

    /// Rewrites the file compactly while the member keeps serving (etcd's online defragment):
    /// writers wait, readers do not. Every committed write, durable or not, is in the new file,
    /// which is durable before it replaces the old one.
    pub fn defrag(&self) -> Result<()> {
        let started = Instant::now();
        metrics::DEFRAG_INFLIGHT.set(1);
        let done = self.defrag_file();
        metrics::DEFRAG_INFLIGHT.set(0);
        metrics::DEFRAG_SECONDS.observe(started.elapsed().as_secs_f64());
        done
    }

    fn defrag_file(&self) -> Result<()> {
        let gate = self.write()?;
        let tmp = defrag_path(&self.path);
        let _ = std::fs::remove_file(&tmp);
        oxcd_fail::point("defragBeforeCopy")?;
        let new = create(&tmp)?;
        let copied = copy_buckets(&gate.db.begin_read()?, &new);
        if let Err(e) = copied {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        oxcd_fail::point("defragBeforeRename")?;
        std::fs::rename(&tmp, &self.path)?;
        // From the rename on, the path names the new file: switch at once, whatever follows.
        *self.db.write() = Arc::new(new);
        self.note_size();
        {
            let mut st = self.state.lock();
            st.last_durable = Instant::now();
            st.ops_since_durable = 0;
            st.non_durable_commits = 0;
        }
        // `gate` ends without a commit: writers blocked on the old file retry on the new one.
        drop(gate);
        // The rename itself is durable once the directory is. Until then a crash leaves the old
        // file in place, which holds a prefix of the log the WAL replays.
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Makes every earlier commit durable, if any was not (an empty durable commit).
    pub fn flush(&self) -> Result<()> {
        if self.state.lock().non_durable_commits == 0 {
            return Ok(());
        }
        self.write()?.commit_durable()
    }

    /// Whether a commit made now would be durable under the batch policy (so a caller can flush
    /// when idle).
    pub fn flush_due(&self) -> bool {
        let st = self.state.lock();
        st.non_durable_commits > 0 && st.last_durable.elapsed() >= self.batch.interval
    }

    /// Size of the backend file in bytes (etcd's dbSize).
    pub fn size_bytes(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }

    /// etcd's backend hash (Maintenance.Hash): CRC-32C over every bucket in name order, each
    /// bucket's name then its keys and values, leaving out the buckets and keys `skip` names.
    pub fn hash(&self, skip_bucket: impl Fn(&str) -> bool, skip_key: impl Fn(&str, &[u8]) -> bool) -> Result<u32> {
        let rtx = self.read()?;
        let mut names: Vec<&str> = BUCKETS.iter().copied().filter(|b| !skip_bucket(b)).collect();
        names.sort_unstable();
        let mut crc = 0u32;
        for name in names {
            crc = crc32c::crc32c_append(crc, name.as_bytes());
            rtx.bucket(name)?.try_visit::<BackendError>(&[], None, |k, v| {
                if !skip_key(name, k) {
                    crc = crc32c::crc32c_append(crc32c::crc32c_append(crc, k), v);
                }
                Ok(())
            })?;
        }
        Ok(crc)
    }

    /// Bytes of the file its live pages take (etcd's dbSizeInUse): about what a defragmentation
    /// would leave. Takes the write lock for a moment (not for a hot path).
    pub fn size_in_use_bytes(&self) -> Result<u64> {
        let w = self.write()?;
        let stats = w.txn.stats()?;
        let used = stats.allocated_pages() * stats.page_size() as u64;
        w.txn.abort()?;
        Ok(used.min(self.size_bytes()))
    }

    fn note_size(&self) {
        if let Ok(m) = std::fs::metadata(&self.path) {
            self.size.store(m.len(), Ordering::Relaxed);
        }
    }

    /// Writes a consistent logical dump of every bucket to `w` (see [`restore_snapshot`]); returns
    /// the number of bytes written.
    pub fn snapshot_to(&self, w: &mut impl std::io::Write) -> Result<u64> {
        let started = Instant::now();
        let written = snapshot::write_snapshot(&self.read()?, w)?;
        metrics::SNAPSHOT_SECONDS.observe(started.elapsed().as_secs_f64());
        Ok(written)
    }
}

/// The write transaction. Dropping it without commit discards its writes.
pub struct WriteTxn<'b> {
    backend: &'b Backend,
    txn: redb::WriteTransaction,
    ops: usize,
    /// The file `txn` writes (declared after it: dropped after it).
    db: Arc<Database>,
    _gate: WriterGate<'b>,
}

/// Counts a writer in [`Backend::writers`] from the call to [`Backend::write`] until its
/// transaction ends.
struct WriterGate<'b>(&'b AtomicUsize);

impl<'b> WriterGate<'b> {
    fn enter(writers: &'b AtomicUsize) -> WriterGate<'b> {
        writers.fetch_add(1, Ordering::AcqRel);
        WriterGate(writers)
    }
}

impl Drop for WriterGate<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<'b> WriteTxn<'b> {
    /// Opens a bucket for writing.
    pub fn bucket(&self, name: &str) -> Result<WriteBucket<'_>> {
        Ok(WriteBucket { table: self.txn.open_table(def(name))? })
    }

    /// Counts `n` operations toward the batch limit.
    pub fn count_ops(&mut self, n: usize) {
        self.ops += n;
    }

    /// Commits: visible to readers at once, durable when the batch policy says so.
    pub fn commit(self) -> Result<()> {
        let durable = {
            let st = self.backend.state.lock();
            st.last_durable.elapsed() >= self.backend.batch.interval
                || st.ops_since_durable + self.ops >= self.backend.batch.limit
        };
        self.finish(durable)
    }

    /// Commits and makes this and every earlier commit durable.
    pub fn commit_durable(self) -> Result<()> {
        self.finish(true)
    }

    fn finish(mut self, durable: bool) -> Result<()> {
        if durable {
            // Allocator state saved with each durable commit: reopening after a crash is quick.
            self.txn.set_quick_repair(true);
        } else {
            self.txn.set_durability(Durability::None)?;
        }
        oxcd_fail::point("backendBeforeCommit")?;
        let started = Instant::now();
        self.txn.commit()?;
        metrics::COMMIT_SECONDS.observe(started.elapsed().as_secs_f64());
        oxcd_fail::point("backendAfterCommit")?;
        self.backend.note_size();
        let mut st = self.backend.state.lock();
        if durable {
            st.last_durable = Instant::now();
            st.ops_since_durable = 0;
            st.non_durable_commits = 0;
        } else {
            st.ops_since_durable += self.ops;
            st.non_durable_commits += 1;
        }
        Ok(())
    }
}

/// Read access to a bucket, from a read or a write transaction.
pub trait BucketRead {
    /// The value at `key`, copied out once into a `Bytes` (decoders slice it without copying).
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>>;

    /// Calls `f` for each entry with `start <= key < end` (`end` `None`: to the last key) in key
    /// order, until `f` returns false.
    fn visit(&self, start: &[u8], end: Option<&[u8]>, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()>;

    /// [`BucketRead::visit`] with a callback that can fail: the first error ends the walk and is
    /// returned (a backend error becomes the caller's error type).
    fn try_visit<E: From<BackendError>>(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        mut f: impl FnMut(&[u8], &[u8]) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E>
    where
        Self: Sized,
    {
        let mut failed = None;
        self.visit(start, end, &mut |k, v| match f(k, v) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        })?;
        failed.map_or(Ok(()), Err)
    }
}

macro_rules! impl_bucket_read {
    ($t:ty) => {
        impl BucketRead for $t {
            fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
                Ok(self.table.get(key)?.map(|g| Bytes::copy_from_slice(g.value())))
            }

            fn visit(&self, start: &[u8], end: Option<&[u8]>, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
                let upper = match end {
                    Some(e) => Bound::Excluded(e),
                    None => Bound::Unbounded,
                };
                for item in self.table.range::<&[u8]>((Bound::Included(start), upper))? {
                    let (k, v) = item?;
                    if !f(k.value(), v.value()) {
                        break;
                    }
                }
                Ok(())
            }
        }
    };
}

/// A bucket opened in the write transaction.
pub struct WriteBucket<'t> {
    table: Table<'t, &'static [u8], &'static [u8]>,
}

impl_bucket_read!(WriteBucket<'_>);

impl WriteBucket<'_> {
    /// Sets `key` to `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.table.insert(key, value)?;
        Ok(())
    }

    /// Removes `key`; true if it was there.
    pub fn delete(&mut self, key: &[u8]) -> Result<bool> {
        Ok(self.table.remove(key)?.is_some())
    }
}

/// A read transaction: a snapshot of the committed state.
pub struct ReadTxn {
    txn: redb::ReadTransaction,
    db: Arc<Database>,
}

impl ReadTxn {
    /// Opens a bucket for reading.
    pub fn bucket(&self, name: &str) -> Result<ReadBucket> {
        Ok(ReadBucket { table: self.txn.open_table(def(name))?, _db: self.db.clone() })
    }
}

/// A bucket opened in a read transaction (keeps the snapshot, and its file, alive on its own).
pub struct ReadBucket {
    table: ReadOnlyTable<&'static [u8], &'static [u8]>,
    _db: Arc<Database>,
}

impl_bucket_read!(ReadBucket);

#[cfg(test)]
mod tests;
