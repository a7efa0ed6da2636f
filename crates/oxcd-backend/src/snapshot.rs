//! The backend snapshot stream: a logical dump of every bucket taken from one read transaction, so
//! it is consistent, and rebuilt into a fresh file on the receiving member.
//!
//! Format: magic `OXCDSNP1`, then records `[bucket u8][key len u32 LE][value len u32 LE][key][value]`,
//! then `[0xFF][crc32c u32 LE]` where the CRC covers every byte before it.

use std::io::{Read, Write};
use std::path::Path;

use redb::Database;

use crate::{BUCKETS, BackendError, BucketRead, ReadTxn, Result, def};

const MAGIC: &[u8; 8] = b"OXCDSNP1";
const END: u8 = 0xFF;
/// Entries inserted per write transaction while restoring.
const RESTORE_BATCH: usize = 50_000;

/// Errors of a snapshot stream.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The stream does not start with the snapshot magic.
    #[error("snapshot: bad magic")]
    BadMagic,
    /// The stream names a bucket that does not exist.
    #[error("snapshot: unknown bucket {0}")]
    UnknownBucket(u8),
    /// The trailing checksum does not match the data.
    #[error("snapshot: checksum mismatch")]
    Checksum,
}

struct CrcWriter<'w, W: Write> {
    inner: &'w mut W,
    crc: u32,
    n: u64,
}

impl<W: Write> CrcWriter<'_, W> {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, b);
        self.n += b.len() as u64;
        self.inner.write_all(b)
    }
}

pub(crate) fn write_snapshot(rtx: &ReadTxn, w: &mut impl Write) -> Result<u64> {
    let mut cw = CrcWriter { inner: w, crc: 0, n: 0 };
    cw.put(MAGIC)?;
    for (i, name) in BUCKETS.iter().enumerate() {
        rtx.bucket(name)?.try_visit::<BackendError>(&[], None, |k, v| {
            let mut head = [0u8; 9];
            head[0] = i as u8;
            head[1..5].copy_from_slice(&(k.len() as u32).to_le_bytes());
            head[5..9].copy_from_slice(&(v.len() as u32).to_le_bytes());
            Ok(cw.put(&head).and_then(|_| cw.put(k)).and_then(|_| cw.put(v))?)
        })?;
    }
    cw.put(&[END])?;
    let crc = cw.crc;
    cw.inner.write_all(&crc.to_le_bytes())?;
    Ok(cw.n + 4)
}

struct CrcReader<R: Read> {
    inner: R,
    crc: u32,
}

impl<R: Read> CrcReader<R> {
    fn take(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        self.inner.read_exact(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, buf);
        Ok(())
    }
}

/// Reads the next record into `k` and `v`; its bucket number, or `None` at the end mark.
fn read_record<R: Read>(cr: &mut CrcReader<R>, k: &mut Vec<u8>, v: &mut Vec<u8>) -> Result<Option<u8>> {
    let mut tag = [0u8; 1];
    cr.take(&mut tag)?;
    if tag[0] == END {
        return Ok(None);
    }
    let mut lens = [0u8; 8];
    cr.take(&mut lens)?;
    k.resize(u32::from_le_bytes(lens[0..4].try_into().expect("4 bytes")) as usize, 0);
    v.resize(u32::from_le_bytes(lens[4..8].try_into().expect("4 bytes")) as usize, 0);
    cr.take(k)?;
    cr.take(v)?;
    Ok(Some(tag[0]))
}

/// Rebuilds a backend file at `dest` from a snapshot stream. The file is complete and durable when
/// this returns; on error it may be partial and should be removed by the caller.
pub fn restore_snapshot(r: impl Read, dest: &Path) -> Result<()> {
    let mut cr = CrcReader { inner: r, crc: 0 };
    let mut magic = [0u8; 8];
    cr.take(&mut magic)?;
    if &magic != MAGIC {
        return Err(SnapshotError::BadMagic.into());
    }
    let _ = std::fs::remove_file(dest);
    let db = Database::create(dest)?;
    let mut txn = db.begin_write()?;
    for name in BUCKETS {
        txn.open_table(def(name))?;
    }
    let mut in_txn = 0;
    let (mut k, mut v) = (Vec::new(), Vec::new());
    let mut next = read_record(&mut cr, &mut k, &mut v)?;
    while let Some(tag) = next {
        let name = BUCKETS.get(tag as usize).ok_or(SnapshotError::UnknownBucket(tag))?;
        {
            // One open table for a run of records of one bucket, not one per record.
            let mut table = txn.open_table(def(name))?;
            loop {
                table.insert(k.as_slice(), v.as_slice())?;
                in_txn += 1;
                next = read_record(&mut cr, &mut k, &mut v)?;
                if next != Some(tag) || in_txn >= RESTORE_BATCH {
                    break;
                }
            }
        }
        if in_txn >= RESTORE_BATCH {
            txn.commit()?;
            txn = db.begin_write()?;
            in_txn = 0;
        }
    }
    let want = cr.crc;
    let mut got = [0u8; 4];
    cr.inner.read_exact(&mut got)?;
    if u32::from_le_bytes(got) != want {
        return Err(SnapshotError::Checksum.into());
    }
    txn.commit()?;
    Ok(())
}
