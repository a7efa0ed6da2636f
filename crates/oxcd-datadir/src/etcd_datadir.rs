//! Taking over an etcd 3.4 or 3.5 data directory in place: oxcd started on `member/` as etcd left
//! it converts it once into its own formats and keeps etcd's files, untouched, beside it.
//!
//! What etcd leaves: `member/wal/*.wal` (records framed by a 64-bit length, each a `walpb.Record`
//! whose CRC-32C runs on from the record before: metadata with the member and cluster ids,
//! entries, HardStates, snapshot marks), `member/snap/*.snap`, and the bbolt backend
//! `member/snap/db` with the applied index (`meta/consistent_index`), the members, leases, auth,
//! alarms and the cluster version.
//!
//! What oxcd makes of it (in `oxcd-takeover.tmp/member/`, renamed into place once complete and
//! durable):
//! - its backend: every bucket [`crate::etcd_snapshot`]'s restore copies, plus the applied index
//!   and its term, the members and the removed members as etcd recorded them;
//! - its WAL: etcd's member and cluster ids, a snapshot mark at the applied index with the
//!   configuration the members give, every entry etcd logged after it as etcd wrote it (the backend
//!   records that the log is in etcd's format from the index after the applied one on, see
//!   [`crate::etcd_log`]), and etcd's last HardState. Entries logged but not yet applied are kept, so a member that
//!   acknowledged an entry still holds it, and entries committed but not applied are applied at
//!   the first start, as etcd would have.
//!
//! etcd's `member/` becomes `member.etcd/`, as it was: the way back is to stop oxcd, remove
//! `member/` and rename `member.etcd/` back (what was written under oxcd is then lost). A start
//! interrupted between the two renames finishes them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oxcd_api::oxcdpb::WalMetadata;
use oxcd_backend::bolt::Reader;
use oxcd_backend::{Backend, MEMBERS, MEMBERS_REMOVED, META};
use oxcd_wal::{EntryRecord, HardState as WalHardState, SnapshotRecord, Wal};
use prost::Message;
use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, EntryType};

use crate::etcd_snapshot::EtcdMember;
use crate::ids::MemberId;
use crate::layout::{Layout, StartError};
use crate::membership::{Member, MemberChange, Members, encode_conf_state};

/// bbolt's magic number, at the start of each meta page's body (after the 16-byte page header).
const BOLT_MAGIC: u32 = 0xED0C_DAED;

/// What a takeover made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenOver {
    pub member_id: u64,
    pub cluster_id: u64,
    /// etcd's applied index: oxcd continues from it.
    pub applied: u64,
    /// Entries etcd logged after it, now in oxcd's WAL (in etcd's format, as they were).
    pub entries_after: usize,
    /// Where etcd's files are kept.
    pub kept: PathBuf,
}

/// Where etcd's own `member/` directory is kept.
pub fn kept_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("member.etcd")
}

/// A data directory of its own, in which oxcd's `member/` is built.
fn tmp_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("oxcd-takeover.tmp")
}

/// Whether `layout`'s backend is a bbolt file: the data directory is etcd's.
pub fn is_etcd(layout: &Layout) -> bool {
    let mut head = [0u8; 20];
    match std::fs::File::open(&layout.db) {
        Ok(mut f) => {
            use std::io::Read;
            f.read_exact(&mut head).is_ok()
                && u32::from_le_bytes(head[16..20].try_into().expect("4 bytes")) == BOLT_MAGIC
        }
        Err(_) => false,
    }
}

/// Converts the etcd data directory at `data_dir`, if it is one (see the module's docs); `None`
/// when it is not (oxcd's own, or empty). Finishes a takeover a crash interrupted. With a
/// dedicated WAL directory (`--wal-dir`) an etcd directory is refused.
pub fn take_over(data_dir: &Path, dedicated_wal: bool) -> Result<Option<TakenOver>, StartError> {
    let member = data_dir.join("member");
    let (tmp, kept) = (tmp_dir(data_dir), kept_dir(data_dir));
    let built = tmp.join("member");
    if !member.exists() && kept.exists() && built.exists() {
        // Interrupted between the two renames: the new directory is complete.
        crate::layout::rename_durably(&built, &member)?;
        let _ = std::fs::remove_dir_all(&tmp);
        tracing::warn!(kept = %kept.display(), "finished taking over the etcd data directory");
        return Ok(None);
    }
    let layout = Layout::new(data_dir);
    if !is_etcd(&layout) {
        return Ok(None);
    }
    if dedicated_wal {
        return Err(StartError::Data(
            "cannot take over the etcd data directory with --wal-dir: move etcd's WAL files into member/wal and start without it"
                .into(),
        ));
    }
    if kept.exists() {
        return Err(refused(format!(
            "{} already holds an etcd data directory kept by an earlier takeover; move it away first",
            kept.display()
        )));
    }
    // etcd holds an exclusive lock on its backend while it runs (bbolt's flock).
    let db = std::fs::File::open(&layout.db)?;
    if db.try_lock().is_err() {
        return Err(refused(format!("{} is locked: is etcd still running on it?", layout.db.display())));
    }
    let _ = std::fs::remove_dir_all(&tmp);
    let made = convert(&layout, &tmp).inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&tmp);
    })?;
    crate::layout::rename_durably(&member, &kept)?;
    crate::layout::rename_durably(&built, &member)?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(Some(TakenOver { kept, ..made }))
}

fn refused(why: String) -> StartError {
    StartError::Data(format!("cannot take over the etcd data directory: {why}"))
}

/// Builds oxcd's `member/` from etcd's in the data directory `tmp`.
fn convert(etcd: &Layout, tmp: &Path) -> Result<TakenOver, StartError> {
    let wal = read_wal(&etcd.wal).map_err(refused)?;
    let (member_id, cluster_id) = wal.metadata.ok_or_else(|| refused("its WAL has no metadata record".into()))?;
    let data = std::fs::read(&etcd.db)?;
    let db = Reader::open(&data).map_err(|e| refused(format!("its backend: {e}")))?;
    let meta_u64 = |key: &[u8]| -> Result<Option<u64>, StartError> {
        let Some(bucket) = db.bucket(META.as_bytes()).map_err(refused)? else { return Ok(None) };
        let mut found = None;
        db.for_each(&bucket, &mut |k, v| {
            if k == key && v.len() == 8 {
                found = Some(u64::from_be_bytes(v.try_into().expect("8 bytes")));
            }
        })
        .map_err(refused)?;
        Ok(found)
    };
    let applied = meta_u64(oxcd_mvcc::meta::CONSISTENT_INDEX)?.unwrap_or(0);
    // etcd 3.5 records the applied entry's term; 3.4 does not: then the WAL tells it.
    let term = match meta_u64(oxcd_mvcc::meta::TERM)? {
        Some(t) if t > 0 => t,
        _ => wal.term_of(applied).ok_or_else(|| {
            refused(format!("the term of its applied index {applied} is in neither its backend nor its WAL"))
        })?,
    };
    let layout = Layout::new(tmp);
    std::fs::create_dir_all(&layout.snap)?;
    let members = import_db(&db, &layout.db, applied, term, None)?;
    drop(data);

    // The entries after the applied index, as etcd wrote them (the log is etcd's from the next
    // index on, recorded in the backend); they must follow it without a gap, and each must be one
    // oxcd can apply.
    let after: Vec<&Entry> = wal.entries.iter().filter(|e| e.index > applied).collect();
    if let Some(first) = after.first()
        && first.index != applied + 1
    {
        return Err(refused(format!("its WAL lacks the entries from {} to {}", applied + 1, first.index - 1)));
    }
    let mut records = Vec::with_capacity(after.len());
    for e in &after {
        let why = |why: String| refused(format!("entry {}: {why}", e.index));
        match e.get_entry_type() {
            EntryType::EntryNormal if e.data.is_empty() => {}
            EntryType::EntryNormal => drop(crate::etcd_log::decode(&e.data).map_err(why)?),
            EntryType::EntryConfChange => {
                MemberChange::decode(&e.data).ok_or_else(|| why("an unreadable configuration change".into()))?;
            }
            EntryType::EntryConfChangeV2 => {
                return Err(refused(format!(
                    "entry {} is a joint configuration change, which etcd never writes",
                    e.index
                )));
            }
        }
        records.push(EntryRecord { index: e.index, term: e.term, data: e.write_to_bytes().expect("entry encodes") });
    }

    std::fs::create_dir_all(&layout.wal)?;
    let meta = WalMetadata { member_id, cluster_id }.encode_to_vec();
    let mut w = Wal::create(&layout.wal, &meta)?;
    let cs = ConfState {
        voters: members.iter().filter(|m| !m.is_learner).map(|m| m.id.0).collect(),
        learners: members.iter().filter(|m| m.is_learner).map(|m| m.id.0).collect(),
        ..Default::default()
    };
    w.save_snapshot(SnapshotRecord { index: applied, term, conf_state: encode_conf_state(&cs) });
    w.append_entries(&records);
    let hs = wal.hard_state;
    w.set_hard_state(WalHardState { term: hs.term.max(term), vote: hs.vote, commit: hs.commit.max(applied) });
    w.sync()?;
    drop(w);
    // The new directories' entries are durable before they are renamed into place.
    for dir in [&layout.snap, &layout.wal, &tmp.join("member"), &tmp.to_path_buf()] {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(TakenOver { member_id, cluster_id, applied, entries_after: records.len(), kept: PathBuf::new() })
}

/// Writes oxcd's backend at `dest` from etcd's (`db`, applied up to `applied`, an entry of
/// `term`): its buckets, the applied index and term, the members and the removed ones (from
/// `v2`, the membership of the snapshot's v2 store, when there is one: etcd 3.5.1 keeps the
/// members' names and client URLs only there; else from the backend), and that the log is etcd's
/// from the next entry on. The members.
///
/// The takeover of an etcd data directory and a snapshot from an etcd leader both come this way.
pub fn import_db(
    db: &Reader<'_>,
    dest: &Path,
    applied: u64,
    term: u64,
    v2: Option<&crate::etcd_v2store::V2Membership>,
) -> Result<Vec<Member>, StartError> {
    let (members, removed) = match v2 {
        Some(v2) if !v2.members.is_empty() => (v2.members.clone(), v2.removed.clone()),
        _ => (etcd_members(db)?, etcd_removed(db)?),
    };
    crate::etcd_snapshot::copy_buckets(db, dest).map_err(|e| refused(e.to_string()))?;
    let backend = Backend::open(dest, Default::default())?;
    let wtx = backend.write()?;
    {
        let mut meta = wtx.bucket(META)?;
        meta.put(oxcd_mvcc::meta::CONSISTENT_INDEX, &applied.to_be_bytes())?;
        meta.put(oxcd_mvcc::meta::TERM, &term.to_be_bytes())?;
        meta.put(crate::etcd_log::LOG_FROM, &(applied + 1).to_be_bytes())?;
    }
    for m in &members {
        Members::save(&wtx, m)?;
    }
    for id in &removed {
        Members::mark_removed(&wtx, *id)?;
    }
    wtx.commit_durable()?;
    Ok(members)
}

// ---- etcd's backend ----

fn etcd_members(db: &Reader<'_>) -> Result<Vec<Member>, StartError> {
    let Some(bucket) = db.bucket(MEMBERS.as_bytes()).map_err(refused)? else {
        return Err(refused("its backend has no members bucket".into()));
    };
    let mut out = Vec::new();
    let mut bad = None;
    db.for_each(&bucket, &mut |k, v| match serde_json::from_slice::<EtcdMember>(v) {
        Ok(m) => out.push(Member::from(m)),
        Err(e) => bad = Some(format!("member {}: {e}", String::from_utf8_lossy(k))),
    })
    .map_err(refused)?;
    if let Some(why) = bad {
        return Err(refused(why));
    }
    if out.is_empty() {
        return Err(refused("its backend lists no members".into()));
    }
    Ok(out)
}

fn etcd_removed(db: &Reader<'_>) -> Result<Vec<MemberId>, StartError> {
    let Some(bucket) = db.bucket(MEMBERS_REMOVED.as_bytes()).map_err(refused)? else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    db.for_each(&bucket, &mut |k, _| out.extend(Members::removed_id(k))).map_err(refused)?;
    Ok(out)
}

// ---- etcd's WAL ----

/// `walpb.Record`.
#[derive(Clone, PartialEq, Message)]
struct Record {
    #[prost(int64, tag = "1")]
    kind: i64,
    #[prost(uint32, tag = "2")]
    crc: u32,
    #[prost(bytes = "vec", tag = "3")]
    data: Vec<u8>,
}

/// `etcdserverpb.Metadata`: the WAL's first record.
#[derive(Clone, PartialEq, Message)]
struct Metadata {
    #[prost(uint64, tag = "1")]
    node_id: u64,
    #[prost(uint64, tag = "2")]
    cluster_id: u64,
}

/// `walpb.Snapshot` (its configuration, a 3.5 addition, is not needed here).
#[derive(Clone, PartialEq, Message)]
struct SnapshotMark {
    #[prost(uint64, tag = "1")]
    index: u64,
    #[prost(uint64, tag = "2")]
    term: u64,
}

/// `raftpb.HardState`.
#[derive(Clone, Copy, PartialEq, Message)]
struct HardState {
    #[prost(uint64, tag = "1")]
    term: u64,
    #[prost(uint64, tag = "2")]
    vote: u64,
    #[prost(uint64, tag = "3")]
    commit: u64,
}

const METADATA: i64 = 1;
const ENTRY: i64 = 2;
const STATE: i64 = 3;
const CRC: i64 = 4;
const SNAPSHOT: i64 = 5;

/// What etcd's WAL holds, read as etcd reads it.
#[derive(Debug, Default)]
struct EtcdWal {
    metadata: Option<(u64, u64)>,
    /// Snapshot marks: index → term.
    marks: BTreeMap<u64, u64>,
    /// The log as it stands (a later entry at an index replaces that entry and every one after it).
    entries: Vec<Entry>,
    hard_state: HardState,
}

impl EtcdWal {
    fn term_of(&self, index: u64) -> Option<u64> {
        self.entries.iter().find(|e| e.index == index).map(|e| e.term).or_else(|| self.marks.get(&index).copied())
    }
}

/// Reads every `.wal` file in `dir`, in order. A damaged record at the end of the last file is a
/// write torn by a crash (etcd drops it too); anywhere else it refuses the directory.
fn read_wal(dir: &Path) -> Result<EtcdWal, String> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(format!("{} holds no WAL file", dir.display()));
    }
    let mut wal = EtcdWal::default();
    let mut crc = 0u32;
    let last = names.len() - 1;
    for (n, path) in names.iter().enumerate() {
        let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut off = 0usize;
        while off + 8 <= data.len() {
            let len = i64::from_le_bytes(data[off..off + 8].try_into().expect("8 bytes"));
            if len == 0 {
                break; // preallocated space
            }
            let size = (len as u64 & 0x00FF_FFFF_FFFF_FFFF) as usize;
            let pad = if len < 0 { ((len as u64 >> 56) & 0x7) as usize } else { 0 };
            let end = off + 8 + size + pad;
            // A damaged record is a torn write (dropped, as etcd drops it) only at the end of the
            // last file and only where the disk did not finish writing it: past the end of the
            // file, or with a sector of it still zeros. Anywhere else the directory is refused.
            let torn = |why: &str| {
                let sectors = |from: usize, to: usize| {
                    let to = to.min(data.len());
                    let mut at = from;
                    let mut zeroed = false;
                    while at < to {
                        let next = ((at / 512) + 1) * 512;
                        zeroed |= data[at..next.min(to)].iter().all(|b| *b == 0);
                        at = next;
                    }
                    zeroed
                };
                if n == last && (end > data.len() || sectors(off, end)) {
                    Ok(())
                } else {
                    Err(format!("{}: {why} at offset {off}", path.display()))
                }
            };
            if end > data.len() {
                torn("a record past the end of the file")?;
                break;
            }
            let rec = match Record::decode(&data[off + 8..off + 8 + size]) {
                Ok(r) => r,
                Err(e) => {
                    torn(&format!("an undecodable record ({e})"))?;
                    break;
                }
            };
            if rec.kind == CRC {
                // Each file starts with the CRC the previous one ended with.
                if crc != 0 && rec.crc != crc {
                    return Err(format!("{}: its CRC record does not continue the file before", path.display()));
                }
                crc = rec.crc;
            } else {
                let next = crc32c::crc32c_append(crc, &rec.data);
                if next != rec.crc {
                    torn("a record whose CRC does not match")?;
                    break;
                }
                crc = next;
            }
            match rec.kind {
                METADATA => {
                    let m = Metadata::decode(&rec.data[..]).map_err(|e| format!("metadata: {e}"))?;
                    wal.metadata = Some((m.node_id, m.cluster_id));
                }
                ENTRY => {
                    let e = Entry::parse_from_bytes(&rec.data).map_err(|e| format!("entry: {e}"))?;
                    if let Some(last) = wal.entries.last()
                        && e.index > last.index + 1
                    {
                        return Err(format!(
                            "{}: entries {} to {} are missing",
                            path.display(),
                            last.index + 1,
                            e.index - 1
                        ));
                    }
                    if let Some(pos) = wal.entries.iter().rposition(|x| x.index < e.index) {
                        wal.entries.truncate(pos + 1);
                    } else {
                        wal.entries.clear();
                    }
                    wal.entries.push(e);
                }
                STATE => {
                    let hs = HardState::decode(&rec.data[..]).map_err(|e| format!("hard state: {e}"))?;
                    // etcd writes an empty state now and then; it changes nothing.
                    if hs != HardState::default() {
                        wal.hard_state = hs;
                    }
                }
                SNAPSHOT => {
                    let s = SnapshotMark::decode(&rec.data[..]).map_err(|e| format!("snapshot mark: {e}"))?;
                    wal.marks.insert(s.index, s.term);
                }
                CRC => {}
                other => return Err(format!("{}: a record of unknown type {other}", path.display())),
            }
            off = end;
        }
    }
    Ok(wal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(kind: i64, data: &[u8], crc: &mut u32) -> Vec<u8> {
        let c = if kind == CRC { *crc } else { crc32c::crc32c_append(*crc, data) };
        *crc = c;
        let rec = Record { kind, crc: c, data: data.to_vec() }.encode_to_vec();
        let pad = (8 - rec.len() % 8) % 8;
        let mut len = rec.len() as u64;
        if pad > 0 {
            len |= (0x80 | pad as u64) << 56;
        }
        let mut out = len.to_le_bytes().to_vec();
        out.extend_from_slice(&rec);
        out.extend(std::iter::repeat_n(0, pad));
        out
    }

    fn entry(index: u64, term: u64, data: &[u8]) -> Vec<u8> {
        Entry { index, term, data: data.to_vec().into(), ..Default::default() }.write_to_bytes().unwrap()
    }

    #[test]
    fn a_wal_is_read_as_etcd_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut crc = 0;
        let mut f = framed(CRC, &[], &mut crc);
        f.extend(framed(METADATA, &Metadata { node_id: 7, cluster_id: 9 }.encode_to_vec(), &mut crc));
        f.extend(framed(SNAPSHOT, &SnapshotMark { index: 0, term: 0 }.encode_to_vec(), &mut crc));
        for (i, t) in [(1, 1), (2, 1), (3, 1), (2, 2), (3, 2)] {
            f.extend(framed(ENTRY, &entry(i, t, b"x"), &mut crc));
        }
        f.extend(framed(STATE, &HardState { term: 2, vote: 7, commit: 3 }.encode_to_vec(), &mut crc));
        let whole = f.len();
        // A last record the disk did not finish: cut short, then preallocated zeros.
        let fourth = framed(ENTRY, &entry(4, 2, b"y"), &mut crc);
        let mut torn = f.clone();
        torn.extend_from_slice(&fourth[..fourth.len() - 4]);
        let name = dir.path().join("0000000000000000-0000000000000000.wal");
        std::fs::write(&name, &torn).unwrap();
        let wal = read_wal(dir.path()).unwrap();
        assert_eq!(wal.metadata, Some((7, 9)));
        let log: Vec<(u64, u64)> = wal.entries.iter().map(|e| (e.index, e.term)).collect();
        assert_eq!(log, [(1, 1), (2, 2), (3, 2)]);
        assert_eq!(wal.hard_state, HardState { term: 2, vote: 7, commit: 3 });
        assert_eq!(wal.term_of(3), Some(2));

        // A whole record whose bytes are wrong is damage, not a torn write: refused, even last.
        let mut damaged = f.clone();
        damaged.extend_from_slice(&fourth);
        damaged[whole + 12] ^= 0xff; // inside the record's CRC
        damaged.extend(vec![0; 64]);
        std::fs::write(&name, &damaged).unwrap();
        let err = read_wal(dir.path()).unwrap_err();
        assert!(err.contains(&format!("at offset {whole}")), "{err}");

        // A torn record in a file that is not the last refuses the directory.
        std::fs::write(&name, &torn).unwrap();
        std::fs::write(dir.path().join("0000000000000001-0000000000000004.wal"), &f[..whole]).unwrap();
        let err = read_wal(dir.path()).unwrap_err();
        assert!(
            err.contains("0000000000000000-0000000000000000.wal") && err.contains(&format!("at offset {whole}")),
            "{err}"
        );

        // A gap in the log is refused.
        let mut crc = 0;
        let mut g = framed(CRC, &[], &mut crc);
        g.extend(framed(ENTRY, &entry(1, 1, b"x"), &mut crc));
        g.extend(framed(ENTRY, &entry(3, 1, b"x"), &mut crc));
        std::fs::remove_file(dir.path().join("0000000000000001-0000000000000004.wal")).unwrap();
        std::fs::write(&name, &g).unwrap();
        assert!(read_wal(dir.path()).unwrap_err().contains("entries 2 to 2 are missing"));
    }

    #[test]
    fn a_directory_that_cannot_be_converted_is_refused_and_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let etcd = Layout::new(dir.path());
        std::fs::create_dir_all(&etcd.snap).unwrap();
        std::fs::create_dir_all(&etcd.wal).unwrap();
        // A bbolt backend (as etcd's), with a member.
        let scratch = tempfile::tempdir().unwrap();
        let b = Backend::open(scratch.path().join("db"), Default::default()).unwrap();
        let wtx = b.write().unwrap();
        let m = Member {
            id: MemberId(7),
            name: "m".into(),
            peer_urls: vec!["http://p:2380".into()],
            client_urls: vec![],
            is_learner: false,
        };
        Members::save(&wtx, &m).unwrap();
        wtx.commit_durable().unwrap();
        crate::etcd_snapshot::write_etcd_db(&b, &etcd.db).unwrap();
        assert!(is_etcd(&etcd));
        // No WAL file.
        let err = take_over(dir.path(), false).unwrap_err().to_string();
        assert!(
            err.starts_with("cannot take over the etcd data directory: ") && err.contains("holds no WAL file"),
            "{err}"
        );
        // A WAL without the applied index's term (the backend says 0 applied, the WAL has nothing).
        let mut crc = 0;
        let mut f = framed(CRC, &[], &mut crc);
        f.extend(framed(METADATA, &Metadata { node_id: 7, cluster_id: 9 }.encode_to_vec(), &mut crc));
        std::fs::write(etcd.wal.join("0000000000000000-0000000000000000.wal"), &f).unwrap();
        let err = take_over(dir.path(), false).unwrap_err().to_string();
        assert!(err.contains("the term of its applied index 0"), "{err}");
        // Nothing moved, nothing left behind.
        assert!(etcd.db.is_file() && !kept_dir(dir.path()).exists() && !tmp_dir(dir.path()).exists());
        // With the term, it converts: etcd's directory kept, oxcd's in place; but not while etcd
        // holds its backend's lock.
        f.extend(framed(SNAPSHOT, &SnapshotMark { index: 0, term: 1 }.encode_to_vec(), &mut crc));
        std::fs::write(etcd.wal.join("0000000000000000-0000000000000000.wal"), &f).unwrap();
        let err = take_over(dir.path(), true).unwrap_err().to_string();
        assert!(err.starts_with("cannot take over the etcd data directory with --wal-dir"), "{err}");
        let running = std::fs::File::open(&etcd.db).unwrap();
        running.lock().unwrap();
        let err = take_over(dir.path(), false).unwrap_err().to_string();
        assert!(err.ends_with("is locked: is etcd still running on it?"), "{err}");
        drop(running);
        let t = take_over(dir.path(), false).unwrap().unwrap();
        assert_eq!((t.member_id, t.cluster_id, t.applied), (7, 9, 0));
        assert!(kept_dir(dir.path()).join("snap/db").is_file() && !is_etcd(&etcd) && Wal::exists(&etcd.wal));
        assert_eq!(take_over(dir.path(), false).unwrap(), None, "once only");
    }
}
