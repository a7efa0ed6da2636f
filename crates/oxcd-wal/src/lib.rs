//! The write-ahead log of one oxcd member.
//!
//! The WAL owns durability of the Raft log: every entry and every HardState is framed, checksummed and
//! written here, and [`Wal::sync`] (one `fdatasync` for everything appended since the last sync) is the
//! point after which the member may acknowledge. It knows nothing of Raft's types: entries are opaque
//! bytes tagged with their index and term, so this crate depends on neither the server nor tokio.
//!
//! On-disk layout (see `docs/design.md`): a directory of segment files named
//! `{seq:016x}-{first_index:016x}.wal`, each preallocated to [`SEGMENT_SIZE`] bytes and filled with
//! frames `[len u32 LE][crc32c u32 LE][type u8][payload]` where `len` counts type + payload and the
//! CRC covers type + payload. A zero `len` marks the end of the written part of a segment.
//!
//! Invariants:
//! - Only the last segment may end in a torn frame; [`Wal::open`] cuts it off (the bytes were never
//!   synced, so nothing acknowledged is lost). A bad frame anywhere else is [`WalError::Corrupt`].
//! - A later entry with index `i` supersedes every earlier entry with index `>= i` (Raft log
//!   truncation is append-only on disk).
//! - Every segment starts with the metadata, the latest snapshot marker and the latest HardState, so
//!   releasing old segments never loses them.

pub mod metrics;
mod record;
mod segment;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use record::{EntryRecord, HardState, Record, SnapshotRecord};
use segment::{Segment, SegmentName};

/// Size a segment is preallocated to; a segment is rolled once it grows past it (64 MB, as etcd).
pub const SEGMENT_SIZE: u64 = 64 * 1000 * 1000;

/// An fsync slower than this is logged as a warning (etcd warns at 1 s).
const SLOW_FSYNC: Duration = Duration::from_secs(1);

/// Errors of the write-ahead log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// An I/O error from the file system.
    #[error("wal: io error: {0}")]
    Io(#[from] io::Error),
    /// A frame in a segment other than the last one failed its length or CRC check.
    #[error("wal: corrupt record in {file} at offset {offset}: {reason}")]
    Corrupt {
        /// The segment file.
        file: String,
        /// Byte offset of the bad frame.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// The directory holds no WAL segment.
    #[error("wal: no segment found in {0}")]
    NotFound(String),
    /// A segment file name did not parse.
    #[error("wal: bad segment name {0}")]
    BadName(String),
}

pub type Result<T> = std::result::Result<T, WalError>;

/// What [`Wal::open`] read back: the state to rebuild the Raft storage from.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WalState {
    /// The metadata written when the WAL was created (member and cluster ids, encoded by the caller).
    pub metadata: Vec<u8>,
    /// The latest snapshot marker, if any; entries at or below its index are not returned.
    pub snapshot: Option<SnapshotRecord>,
    /// The latest HardState, if any.
    pub hard_state: Option<HardState>,
    /// Entries after the snapshot, in index order, without gaps.
    pub entries: Vec<EntryRecord>,
}

/// An open write-ahead log, positioned for appending.
pub struct Wal {
    dir: PathBuf,
    /// Segments in sequence order; the last one is open for writing.
    segments: Vec<SegmentName>,
    tail: Segment,
    /// Frames appended since the last sync, written to `tail` by [`Wal::sync`].
    buf: Vec<u8>,
    metadata: Vec<u8>,
    last_snapshot: Option<SnapshotRecord>,
    last_hard_state: Option<HardState>,
    /// Index of the last entry appended (0 when none).
    last_index: u64,
    /// Index of the last entry written to a segment file (names the next segment on a roll).
    written_last_index: u64,
    /// `--unsafe-no-fsync`: [`Wal::sync`] writes without `fdatasync`.
    no_fsync: bool,
}

impl Wal {
    /// Creates a new WAL in `dir` (which must not hold segments) and syncs its first segment.
    pub fn create(dir: impl AsRef<Path>, metadata: &[u8]) -> Result<Wal> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)?;
        let name = SegmentName { seq: 0, first_index: 0 };
        let tail = Segment::create(&dir, name)?;
        let mut wal = Wal {
            dir,
            segments: vec![name],
            tail,
            buf: Vec::with_capacity(64 * 1024),
            metadata: metadata.to_vec(),
            last_snapshot: None,
            last_hard_state: None,
            last_index: 0,
            written_last_index: 0,
            no_fsync: false,
        };
        wal.write_segment_header();
        wal.sync()?;
        sync_dir(&wal.dir)?;
        Ok(wal)
    }

    /// Whether `dir` holds at least one WAL segment.
    pub fn exists(dir: impl AsRef<Path>) -> bool {
        segment::list(dir.as_ref()).map(|s| !s.is_empty()).unwrap_or(false)
    }

    /// Opens the WAL in `dir`, reads every segment, cuts a torn tail off the last one and returns the
    /// log positioned for appending together with the state it holds.
    pub fn open(dir: impl AsRef<Path>) -> Result<(Wal, WalState)> {
        let dir = dir.as_ref().to_path_buf();
        let segments = segment::list(&dir)?;
        if segments.is_empty() {
            return Err(WalError::NotFound(dir.display().to_string()));
        }
        let mut state = WalState::default();
        let mut tail_end = 0;
        for (i, name) in segments.iter().enumerate() {
            let is_last = i + 1 == segments.len();
            let path = dir.join(name.file_name());
            let reader = std::io::BufReader::with_capacity(1 << 20, File::open(&path)?);
            let (records, end, torn) = record::decode_all(reader);
            if let Some(reason) = torn
                && !is_last
            {
                return Err(WalError::Corrupt { file: path.display().to_string(), offset: end as u64, reason });
            }
            for rec in records {
                apply_record(&mut state, rec);
            }
            if is_last {
                tail_end = end as u64;
            }
        }
        let last = *segments.last().expect("checked non-empty");
        let tail = Segment::open_at(&dir, last, tail_end)?;
        let last_index =
            state.entries.last().map(|e| e.index).or(state.snapshot.as_ref().map(|s| s.index)).unwrap_or(0);
        let wal = Wal {
            dir,
            segments,
            tail,
            buf: Vec::with_capacity(64 * 1024),
            metadata: state.metadata.clone(),
            last_snapshot: state.snapshot.clone(),
            last_hard_state: state.hard_state,
            last_index,
            written_last_index: last_index,
            no_fsync: false,
        };
        Ok((wal, state))
    }

    /// Appends entries (buffered until [`Wal::sync`]). An entry whose index is at or below the last
    /// appended one supersedes the entries from that index on.
    pub fn append_entries(&mut self, entries: &[EntryRecord]) {
        for e in entries {
            record::encode(&Record::Entry(e.clone()), &mut self.buf);
            self.last_index = e.index;
        }
    }

    /// Appends a HardState (buffered until [`Wal::sync`]).
    pub fn set_hard_state(&mut self, hs: HardState) {
        record::encode(&Record::HardState(hs), &mut self.buf);
        self.last_hard_state = Some(hs);
    }

    /// Appends a snapshot marker (buffered until [`Wal::sync`]): entries at or below its index are
    /// no longer returned by [`Wal::open`].
    pub fn save_snapshot(&mut self, snap: SnapshotRecord) {
        if snap.index > self.last_index {
            self.last_index = snap.index;
        }
        record::encode(&Record::Snapshot(snap.clone()), &mut self.buf);
        self.last_snapshot = Some(snap);
    }

    /// Whether anything was appended since the last sync.
    pub fn has_pending(&self) -> bool {
        !self.buf.is_empty()
    }

    /// `--unsafe-no-fsync`: from now on [`Wal::sync`] writes to the file but does not `fdatasync`
    /// (a crash of the machine, not of the process, loses acknowledged writes).
    pub fn set_unsafe_no_fsync(&mut self, on: bool) {
        self.no_fsync = on;
    }

    /// Writes everything appended since the last sync and makes it durable with one `fdatasync`.
    /// Rolls to a new segment first when the current one is full.
    pub fn sync(&mut self) -> Result<()> {
        oxcd_fail::point("walBeforeSync")?;
        self.flush()?;
        if self.no_fsync {
            return Ok(());
        }
        let started = Instant::now();
        self.tail.file().sync_data()?;
        oxcd_fail::point("walAfterFdatasync")?;
        let took = started.elapsed();
        metrics::FSYNC_SECONDS.observe(took.as_secs_f64());
        if took > SLOW_FSYNC {
            tracing::warn!(took = ?took, expected_duration = ?SLOW_FSYNC, "slow fdatasync");
        }
        Ok(())
    }

    /// Writes everything appended so far to the file without waiting for the disk: for records whose
    /// loss is harmless (a commit index only moves forward again after a restart).
    pub fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.tail.offset() + self.buf.len() as u64 > SEGMENT_SIZE && self.tail.offset() > 0 {
            self.roll()?;
        }
        self.tail.file().write_all(&self.buf)?;
        self.tail.advance(self.buf.len() as u64);
        metrics::WRITE_BYTES.add(self.buf.len() as i64);
        self.buf.clear();
        self.written_last_index = self.last_index;
        Ok(())
    }

    /// Deletes segments whose entries are all at or below `index` (never the segment being written).
    /// Call it only once everything up to `index` is durable elsewhere (the backend).
    pub fn release_to(&mut self, index: u64) -> Result<()> {
        let mut keep_from = 0;
        for i in 0..self.segments.len().saturating_sub(1) {
            // Segment i holds entries below the first index of segment i + 1.
            if self.segments[i + 1].first_index <= index + 1 {
                keep_from = i + 1;
            }
        }
        for name in self.segments.drain(..keep_from) {
            fs::remove_file(self.dir.join(name.file_name()))?;
        }
        if keep_from > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Number of segment files currently kept.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn roll(&mut self) -> Result<()> {
        let last = *self.segments.last().expect("a wal always has a segment");
        let name = SegmentName { seq: last.seq + 1, first_index: self.written_last_index + 1 };
        // Frames already buffered belong to the new segment; the header goes before them.
        let pending = std::mem::take(&mut self.buf);
        self.tail.file().sync_data()?;
        self.tail = Segment::create(&self.dir, name)?;
        self.segments.push(name);
        self.write_segment_header();
        self.buf.extend_from_slice(&pending);
        sync_dir(&self.dir)?;
        Ok(())
    }

    /// Restates metadata, the latest snapshot marker and HardState at the top of a segment.
    fn write_segment_header(&mut self) {
        let mut head = Vec::new();
        record::encode(&Record::Metadata(self.metadata.clone()), &mut head);
        if let Some(s) = &self.last_snapshot {
            record::encode(&Record::Snapshot(s.clone()), &mut head);
        }
        if let Some(hs) = self.last_hard_state {
            record::encode(&Record::HardState(hs), &mut head);
        }
        head.extend_from_slice(&self.buf);
        self.buf = head;
    }
}

fn apply_record(state: &mut WalState, rec: Record) {
    match rec {
        Record::Metadata(m) => state.metadata = m,
        Record::HardState(hs) => state.hard_state = Some(hs),
        Record::Snapshot(s) => {
            state.entries.retain(|e| e.index > s.index);
            if state.snapshot.as_ref().is_none_or(|old| old.index <= s.index) {
                state.snapshot = Some(s);
            }
        }
        Record::Entry(e) => {
            let floor = state.snapshot.as_ref().map(|s| s.index).unwrap_or(0);
            if e.index <= floor {
                return;
            }
            // A rewrite of index i drops every entry from i on.
            while state.entries.last().is_some_and(|last| last.index >= e.index) {
                state.entries.pop();
            }
            state.entries.push(e);
        }
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests;
