//! Frames and records: `[len u32 LE][crc32c u32 LE][type u8][payload]`, decoded in two passes (check
//! the frame, then decode the payload) so a torn or corrupt frame never yields a half-read record.

/// Record type tags as written on disk.
const TYPE_METADATA: u8 = 1;
const TYPE_ENTRY: u8 = 2;
const TYPE_HARD_STATE: u8 = 3;
const TYPE_SNAPSHOT: u8 = 5;

/// Bytes before the payload: length, CRC and type.
pub(crate) const FRAME_HEADER: usize = 9;

/// Largest frame accepted on read; anything larger is a torn or corrupt length field.
const MAX_FRAME: usize = 256 * 1024 * 1024;

/// One Raft log entry: its index and term, and the caller's encoding of the whole entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRecord {
    pub index: u64,
    pub term: u64,
    pub data: Vec<u8>,
}

/// Raft's HardState: current term, vote and commit index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
}

/// A snapshot marker: the log before `index` (inclusive) lives in the backend now. `conf_state` is
/// the caller's encoding of the membership at that index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotRecord {
    pub index: u64,
    pub term: u64,
    pub conf_state: Vec<u8>,
}

/// A decoded WAL record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Metadata(Vec<u8>),
    Entry(EntryRecord),
    HardState(HardState),
    Snapshot(SnapshotRecord),
}

/// Appends the frame of `rec` to `out`.
pub(crate) fn encode(rec: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER]);
    match rec {
        Record::Metadata(m) => {
            out[start + 8] = TYPE_METADATA;
            out.extend_from_slice(m);
        }
        Record::Entry(e) => {
            out[start + 8] = TYPE_ENTRY;
            out.extend_from_slice(&e.index.to_le_bytes());
            out.extend_from_slice(&e.term.to_le_bytes());
            out.extend_from_slice(&e.data);
        }
        Record::HardState(hs) => {
            out[start + 8] = TYPE_HARD_STATE;
            out.extend_from_slice(&hs.term.to_le_bytes());
            out.extend_from_slice(&hs.vote.to_le_bytes());
            out.extend_from_slice(&hs.commit.to_le_bytes());
        }
        Record::Snapshot(s) => {
            out[start + 8] = TYPE_SNAPSHOT;
            out.extend_from_slice(&s.index.to_le_bytes());
            out.extend_from_slice(&s.term.to_le_bytes());
            out.extend_from_slice(&s.conf_state);
        }
    }
    let len = (out.len() - start - 8) as u32;
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes frames from `r` until the end marker (zero length), the end of the data, or the first bad
/// frame. Returns the records, the offset where the valid part ends, and why decoding stopped at a
/// bad frame (`None` at a clean end). Reads no further than the end marker.
pub(crate) fn decode_all(mut r: impl std::io::Read) -> (Vec<Record>, usize, Option<String>) {
    let mut records = Vec::new();
    let mut off = 0;
    let mut head = [0u8; 8];
    let mut body = Vec::new();
    loop {
        match read_full(&mut r, &mut head) {
            Ok(0) => return (records, off, None),
            Ok(n) if n < 4 => return (records, off, Some("truncated frame header".to_string())),
            Ok(_) => {}
            Err(e) => return (records, off, Some(format!("read error: {e}"))),
        }
        let len = u32::from_le_bytes(head[0..4].try_into().expect("4 bytes")) as usize;
        if len == 0 {
            return (records, off, None);
        }
        if len > MAX_FRAME {
            return (records, off, Some(format!("frame length {len} too large")));
        }
        let crc = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
        body.resize(len, 0);
        match read_full(&mut r, &mut body) {
            Ok(n) if n == len => {}
            Ok(_) => return (records, off, Some("truncated frame".to_string())),
            Err(e) => return (records, off, Some(format!("read error: {e}"))),
        }
        if crc32c::crc32c(&body) != crc {
            return (records, off, Some("crc mismatch".to_string()));
        }
        match decode_body(&body) {
            Some(rec) => records.push(rec),
            None => return (records, off, Some("malformed record body".to_string())),
        }
        off += 8 + len;
    }
}

/// Reads until `buf` is full or the data ends; returns how many bytes were read.
fn read_full(r: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn decode_body(body: &[u8]) -> Option<Record> {
    let (ty, p) = body.split_first()?;
    let u64_at = |i: usize| -> Option<u64> { Some(u64::from_le_bytes(p.get(i..i + 8)?.try_into().ok()?)) };
    Some(match *ty {
        TYPE_METADATA => Record::Metadata(p.to_vec()),
        TYPE_ENTRY => Record::Entry(EntryRecord { index: u64_at(0)?, term: u64_at(8)?, data: p.get(16..)?.to_vec() }),
        TYPE_HARD_STATE => Record::HardState(HardState { term: u64_at(0)?, vote: u64_at(8)?, commit: u64_at(16)? }),
        TYPE_SNAPSHOT => {
            Record::Snapshot(SnapshotRecord { index: u64_at(0)?, term: u64_at(8)?, conf_state: p.get(16..)?.to_vec() })
        }
        _ => return None,
    })
}
