//! Segment files: naming, preallocation and the write position of the segment being appended to.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::{Result, SEGMENT_SIZE, WalError};

/// `{seq:016x}-{first_index:016x}.wal`: sequence number and index of the first entry it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SegmentName {
    pub seq: u64,
    pub first_index: u64,
}

impl SegmentName {
    pub fn file_name(&self) -> String {
        format!("{:016x}-{:016x}.wal", self.seq, self.first_index)
    }

    fn parse(name: &str) -> Result<SegmentName> {
        let bad = || WalError::BadName(name.to_string());
        let stem = name.strip_suffix(".wal").ok_or_else(bad)?;
        let (seq, first) = stem.split_once('-').ok_or_else(bad)?;
        Ok(SegmentName {
            seq: u64::from_str_radix(seq, 16).map_err(|_| bad())?,
            first_index: u64::from_str_radix(first, 16).map_err(|_| bad())?,
        })
    }
}

/// Lists the segments in `dir` in sequence order (empty if the directory does not exist).
pub(crate) fn list(dir: &Path) -> Result<Vec<SegmentName>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    for ent in rd {
        let name = ent?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".wal") {
            out.push(SegmentName::parse(&name)?);
        }
    }
    out.sort();
    Ok(out)
}

/// The segment being appended to.
pub(crate) struct Segment {
    file: File,
    offset: u64,
}

impl Segment {
    /// Creates and preallocates a new segment.
    pub fn create(dir: &Path, name: SegmentName) -> Result<Segment> {
        let path = dir.join(name.file_name());
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
        preallocate(&file, SEGMENT_SIZE);
        Ok(Segment { file, offset: 0 })
    }

    /// Opens an existing segment for appending at `offset`, zeroing anything after it (a torn
    /// tail) so a later open reads a clean end marker.
    pub fn open_at(dir: &Path, name: SegmentName, offset: u64) -> Result<Segment> {
        let path = dir.join(name.file_name());
        let mut file = OpenOptions::new().read(true).write(true).open(path)?;
        let len = file.metadata()?.len();
        if len > offset {
            // Cut the torn tail, then restore the preallocation.
            file.set_len(offset)?;
            preallocate(&file, SEGMENT_SIZE.max(len));
            file.sync_all()?;
        }
        file.seek(SeekFrom::Start(offset))?;
        Ok(Segment { file, offset })
    }

    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn advance(&mut self, n: u64) {
        self.offset += n;
    }
}

/// Reserves `size` bytes so appends within them do not grow the file (cheaper `fdatasync`). Falls
/// back to nothing where the file system cannot preallocate; correctness does not depend on it.
fn preallocate(file: &File, size: u64) {
    // SAFETY: fallocate on a valid, owned file descriptor; mode 0 only allocates, never discards.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, size as libc::off_t) };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "wal preallocation unavailable");
    }
}
