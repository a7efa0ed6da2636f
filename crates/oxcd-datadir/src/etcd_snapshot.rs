//! etcd's snapshot file, in both directions: the backend written as an etcd backend (a bbolt file
//! with etcd's buckets and encodings) for `Maintenance.Snapshot`, and a data directory restored
//! from such a file (`oxcdctl snapshot restore`), whichever of etcd and oxcd took it.
//!
//! Most buckets have one encoding in both: `key` (revision key → `mvccpb.KeyValue`), `meta`
//! (`consistent_index`, `term`, compaction marks), `alarm`, `auth*`, `cluster`. Two differ:
//! - `lease`: oxcd stores `oxcdpb.Lease{ID, TTL, remaining_ms}`, etcd `leasepb.Lease{ID, TTL,
//!   RemainingTTL}` (seconds, 0 when never checkpointed); same keys (8-byte big-endian id).
//! - `members`: oxcd keys by the 8-byte id and stores `etcdserverpb.Member`; etcd keys by the id in
//!   hex and stores JSON (`{"id":…,"peerURLs":[…],"name":…,"clientURLs":[…]}`).
//!
//! A restore, like etcd's, keeps the keys, leases, compaction marks, alarms and auth data and starts
//! a new cluster: membership from `--initial-cluster`, a fresh WAL, consistent index 1.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use oxcd_api::etcdserverpb::Member as PbMember;
use oxcd_api::oxcdpb::Lease as OxLease;
use oxcd_backend::bolt::{self, Reader};
use oxcd_backend::{Backend, BackendError, BucketRead, LEASE, MEMBERS, META};
use prost::Message;
use sha2::{Digest, Sha256};

use crate::config::ServerConfig;
use crate::layout::{BOOT_INDEX, BOOT_TERM, Layout, StartError, create_member};

/// etcd's `leasepb.Lease`.
#[derive(Clone, PartialEq, Message)]
struct EtcdLease {
    #[prost(int64, tag = "1")]
    id: i64,
    #[prost(int64, tag = "2")]
    ttl: i64,
    /// Seconds left at the last checkpoint; 0: the whole TTL.
    #[prost(int64, tag = "3")]
    remaining_ttl: i64,
}

/// etcd's member record (`membership.Member` as JSON), as etcd writes it in its `members` bucket
/// (fields in etcd's order, empty ones left out) and as etcd's data directories are read.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EtcdMember {
    pub id: u64,
    /// `null` in a promotion's context reads as none.
    #[serde(rename = "peerURLs", default, deserialize_with = "null_as_empty")]
    pub peer_urls: Vec<String>,
    #[serde(rename = "isLearner", default, skip_serializing_if = "std::ops::Not::not")]
    pub is_learner: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(rename = "clientURLs", default, skip_serializing_if = "Vec::is_empty")]
    pub client_urls: Vec<String>,
}

impl From<EtcdMember> for crate::membership::Member {
    fn from(m: EtcdMember) -> Self {
        crate::membership::Member {
            id: crate::ids::MemberId(m.id),
            name: m.name,
            peer_urls: m.peer_urls,
            client_urls: m.client_urls,
            is_learner: m.is_learner,
        }
    }
}

impl From<crate::membership::Member> for EtcdMember {
    fn from(m: crate::membership::Member) -> Self {
        EtcdMember {
            id: m.id.0,
            peer_urls: m.peer_urls,
            is_learner: m.is_learner,
            name: m.name,
            client_urls: m.client_urls,
        }
    }
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(<Option<Vec<String>> as serde::Deserialize>::deserialize(d)?.unwrap_or_default())
}

/// The backend's buckets in the order a bbolt file holds them (byte order of their names); a
/// member's live tokens are its own and never leave it.
fn buckets_by_name() -> Vec<&'static str> {
    let mut names: Vec<&str> =
        oxcd_backend::BUCKETS.iter().copied().filter(|b| *b != oxcd_auth::TOKENS_BUCKET).collect();
    names.sort_unstable();
    names
}

/// Writes a consistent view of `backend` to `path` as an etcd backend file; returns its size.
pub fn write_etcd_db(backend: &Backend, path: &Path) -> Result<u64, BackendError> {
    let rtx = backend.read()?;
    let mut w = bolt::Writer::create(path)?;
    for name in buckets_by_name() {
        w.bucket(name.as_bytes())?;
        let bucket = rtx.bucket(name)?;
        if name == MEMBERS {
            // Re-keyed, so re-sorted.
            let mut members = Vec::new();
            bucket.visit(&[], None, &mut |_, v| {
                if let Ok(m) = PbMember::decode(v) {
                    members.push(m);
                }
                true
            })?;
            let mut rows: Vec<(Vec<u8>, Vec<u8>)> = members
                .iter()
                .map(|m| {
                    let json = serde_json::to_vec(&EtcdMember {
                        id: m.id,
                        peer_urls: m.peer_ur_ls.clone(),
                        is_learner: m.is_learner,
                        name: m.name.clone(),
                        client_urls: m.client_ur_ls.clone(),
                    })
                    .expect("plain strings serialize");
                    (format!("{:x}", m.id).into_bytes(), json)
                })
                .collect();
            rows.sort();
            for (k, v) in rows {
                w.put(&k, &v)?;
            }
            continue;
        }
        let mut buf = Vec::new();
        bucket.try_visit::<BackendError>(&[], None, |k, v| {
            let v = if name == LEASE {
                let Ok(l) = OxLease::decode(v) else { return Ok(()) };
                buf.clear();
                // Whole seconds, rounded up: a lease is never restored shorter than it was. At
                // least 1: to etcd, 0 means "never checkpointed, the whole TTL".
                let remaining_ttl = (l.remaining_ms.max(0) as u64).div_ceil(1000).max(1) as i64;
                EtcdLease { id: l.id, ttl: l.ttl, remaining_ttl }.encode(&mut buf).expect("vec grows");
                &buf[..]
            } else {
                v
            };
            Ok(w.put(k, v)?)
        })?;
    }
    Ok(w.finish()?)
}

/// Why a restore failed; the messages are etcd's where etcd has the same failure.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("data-dir {0:?} exists")]
    DataDirExists(String),
    #[error("snapshot missing hash but --skip-hash-check=false")]
    MissingHash,
    #[error("expected sha256 {}, got {}", go_bytes(expected), go_bytes(got))]
    HashMismatch { expected: Vec<u8>, got: Vec<u8> },
    #[error("open {path}: {source}")]
    Open { path: String, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Start(#[from] StartError),
}

/// A byte slice as Go's `%v` prints it: `[1 2 3]`.
fn go_bytes(b: &[u8]) -> String {
    let parts: Vec<String> = b.iter().map(u8::to_string).collect();
    format!("[{}]", parts.join(" "))
}

/// What a restore made.
#[derive(Debug)]
pub struct Restored {
    pub member_id: u64,
    pub cluster_id: u64,
    /// The newest revision in the snapshot.
    pub revision: i64,
}

/// Entries copied per backend write transaction.
const RESTORE_BATCH: usize = 50_000;

/// Restores the snapshot file at `snapshot` into `cfg`'s data directory, which must not exist: a
/// new member, with the snapshot's whole history, of the cluster `cfg` describes. The file may end with
/// the SHA-256 of the rest (as `snapshot save` writes it), which is checked unless
/// `skip_hash_check`; a backend file copied from a data directory has none.
pub fn restore(snapshot: &Path, cfg: &ServerConfig, skip_hash_check: bool) -> Result<Restored, RestoreError> {
    cfg.validate()?;
    let data_dir = cfg.data_dir();
    if data_dir.exists() {
        return Err(RestoreError::DataDirExists(data_dir.display().to_string()));
    }
    let data = read_checked(snapshot, skip_hash_check)?;
    let db = Reader::open(&data).map_err(RestoreError::Invalid)?;
    // Built beside the target and renamed into place once complete and durable: a crash midway
    // never leaves a directory that oxcd would start from.
    let tmp = PathBuf::from(format!("{}.restore.tmp", data_dir.display()));
    let _ = std::fs::remove_dir_all(&tmp);
    let r = (|| {
        let layout = Layout::new(&tmp);
        std::fs::create_dir_all(&layout.snap)?;
        let revision = copy_buckets(&db, &layout.db)?;
        let created = create_member(cfg, &layout)?;
        let backend = Backend::open(&layout.db, Default::default())?;
        let wtx = backend.write()?;
        {
            let mut meta = wtx.bucket(META)?;
            meta.put(oxcd_mvcc::meta::CONSISTENT_INDEX, &BOOT_INDEX.to_be_bytes())?;
            meta.put(oxcd_mvcc::meta::TERM, &BOOT_TERM.to_be_bytes())?;
        }
        wtx.commit_durable()?;
        drop(backend);
        std::fs::rename(&tmp, &data_dir)?;
        let parent = data_dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::File::open(parent)?.sync_all()?;
        Ok(Restored { member_id: created.id.0, cluster_id: created.cluster_id.0, revision })
    })();
    if r.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    r
}

/// Reads the snapshot file, checking and removing its SHA-256 trailer (etcd's rule: the file has
/// one when its size is 32 more than a multiple of 512).
fn read_checked(path: &Path, skip_hash_check: bool) -> Result<Vec<u8>, RestoreError> {
    let open_err = |e| RestoreError::Open { path: path.display().to_string(), source: e };
    let mut f = std::fs::File::open(path).map_err(open_err)?;
    let size = f.seek(SeekFrom::End(0))?;
    f.seek(SeekFrom::Start(0))?;
    let mut data = Vec::with_capacity(size as usize);
    f.read_to_end(&mut data)?;
    let has_hash = data.len() % 512 == 32;
    if has_hash {
        let expected = data.split_off(data.len() - 32);
        if !skip_hash_check {
            let got = Sha256::digest(&data).to_vec();
            if got != expected {
                return Err(RestoreError::HashMismatch { expected, got });
            }
        }
    } else if !skip_hash_check {
        return Err(RestoreError::MissingHash);
    }
    Ok(data)
}

/// Copies every bucket oxcd keeps from an etcd backend file into a new oxcd backend at `dest`
/// (members and the applied index excepted: the restored member gets new ones); returns the
/// newest revision.
pub(crate) fn copy_buckets(db: &Reader<'_>, dest: &Path) -> Result<i64, RestoreError> {
    let backend = Backend::open(dest, Default::default())?;
    let mut revision = 0;
    for (name, bucket) in db.buckets().map_err(RestoreError::Invalid)? {
        let Some(name) = oxcd_backend::BUCKETS.iter().find(|b| b.as_bytes() == name.as_slice()) else { continue };
        if [MEMBERS, oxcd_backend::MEMBERS_REMOVED].contains(name) {
            continue;
        }
        let mut rows = Vec::new();
        db.for_each(&bucket, &mut |k, v| rows.push((k, v))).map_err(RestoreError::Invalid)?;
        for batch in rows.chunks(RESTORE_BATCH) {
            let wtx = backend.write()?;
            {
                let mut dst = wtx.bucket(name)?;
                for &(k, v) in batch {
                    match *name {
                        LEASE => {
                            let l = EtcdLease::decode(v).map_err(|e| RestoreError::Invalid(format!("lease: {e}")))?;
                            let left = if l.remaining_ttl > 0 { l.remaining_ttl } else { l.ttl };
                            let rec = OxLease { id: l.id, ttl: l.ttl, remaining_ms: left.saturating_mul(1000) };
                            dst.put(k, &rec.encode_to_vec())?;
                        }
                        META if k != oxcd_mvcc::meta::SCHEDULED_COMPACT_REV
                            && k != oxcd_mvcc::meta::FINISHED_COMPACT_REV => {}
                        _ => {
                            if *name == oxcd_backend::KEY && k.len() >= 8 {
                                revision = i64::from_be_bytes(k[..8].try_into().expect("8 bytes"));
                            }
                            dst.put(k, v)?;
                        }
                    }
                }
            }
            wtx.commit()?;
        }
    }
    backend.flush()?;
    Ok(revision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxcd_backend::KEY;

    fn backend_with_data(dir: &Path) -> Backend {
        let b = Backend::open(dir.join("db"), Default::default()).unwrap();
        let wtx = b.write().unwrap();
        {
            let mut key = wtx.bucket(KEY).unwrap();
            for rev in 2..500i64 {
                let mut k = rev.to_be_bytes().to_vec();
                k.push(b'_');
                k.extend_from_slice(&0i64.to_be_bytes());
                key.put(&k, format!("value {rev}").as_bytes()).unwrap();
            }
            let mut meta = wtx.bucket(META).unwrap();
            meta.put(oxcd_mvcc::meta::CONSISTENT_INDEX, &77u64.to_be_bytes()).unwrap();
            meta.put(oxcd_mvcc::meta::FINISHED_COMPACT_REV, b"compact-mark").unwrap();
            wtx.bucket(LEASE)
                .unwrap()
                .put(&5i64.to_be_bytes(), &OxLease { id: 5, ttl: 60, remaining_ms: 41_500 }.encode_to_vec())
                .unwrap();
        }
        for (id, name) in [(0x20u64, "b"), (0x1_0000_0000u64, "a")] {
            let m = crate::membership::Member {
                id: crate::ids::MemberId(id),
                name: name.into(),
                peer_urls: vec![format!("http://{name}:2380")],
                client_urls: vec![],
                is_learner: false,
            };
            crate::membership::Members::save(&wtx, &m).unwrap();
        }
        wtx.commit_durable().unwrap();
        b
    }

    #[test]
    fn the_backend_is_written_with_etcds_buckets_and_encodings() {
        let dir = tempfile::tempdir().unwrap();
        let b = backend_with_data(dir.path());
        let path = dir.path().join("snap.db");
        let size = write_etcd_db(&b, &path).unwrap();
        let data = std::fs::read(&path).unwrap();
        assert_eq!(data.len() as u64, size);
        let r = Reader::open(&data).unwrap();
        let names: Vec<String> = r.buckets().unwrap().into_iter().map(|(n, _)| String::from_utf8(n).unwrap()).collect();
        assert_eq!(names, buckets_by_name());
        let mut members = Vec::new();
        r.for_each(&r.bucket(b"members").unwrap().unwrap(), &mut |k, v| {
            members.push((String::from_utf8(k.to_vec()).unwrap(), String::from_utf8(v.to_vec()).unwrap()))
        })
        .unwrap();
        assert_eq!(
            members,
            [
                ("100000000".to_string(), r#"{"id":4294967296,"peerURLs":["http://a:2380"],"name":"a"}"#.to_string()),
                ("20".to_string(), r#"{"id":32,"peerURLs":["http://b:2380"],"name":"b"}"#.to_string()),
            ]
        );
        let mut leases = Vec::new();
        r.for_each(&r.bucket(b"lease").unwrap().unwrap(), &mut |_, v| leases.push(EtcdLease::decode(v).unwrap()))
            .unwrap();
        assert_eq!(leases, [EtcdLease { id: 5, ttl: 60, remaining_ttl: 42 }]);
        let mut n = 0;
        r.for_each(&r.bucket(b"key").unwrap().unwrap(), &mut |_, _| n += 1).unwrap();
        assert_eq!(n, 498);
    }

    #[test]
    fn a_restore_keeps_the_data_and_starts_a_new_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let b = backend_with_data(dir.path());
        let path = dir.path().join("snap.db");
        write_etcd_db(&b, &path).unwrap();
        let mut data = std::fs::read(&path).unwrap();
        data.extend_from_slice(&Sha256::digest(&data));
        std::fs::write(&path, &data).unwrap();

        let cfg = ServerConfig {
            name: "m1".into(),
            data_dir: Some(dir.path().join("restored")),
            initial_cluster: Some("m1=http://127.0.0.1:1,m2=http://127.0.0.1:2".into()),
            initial_advertise_peer_urls: "http://127.0.0.1:1".into(),
            ..Default::default()
        };
        let r = restore(&path, &cfg, false).unwrap();
        assert_eq!(r.revision, 499);
        let restored = Backend::open(dir.path().join("restored/member/snap/db"), Default::default()).unwrap();
        let rtx = restored.read().unwrap();
        let meta = rtx.bucket(META).unwrap();
        assert_eq!(meta.get(oxcd_mvcc::meta::CONSISTENT_INDEX).unwrap().unwrap()[..], BOOT_INDEX.to_be_bytes());
        // A new cluster: its log is etcd's from its first entry (written with its first members).
        assert_eq!(meta.get(crate::etcd_log::LOG_FROM).unwrap().unwrap()[..], (BOOT_INDEX + 1).to_be_bytes());
        assert_eq!(&meta.get(oxcd_mvcc::meta::FINISHED_COMPACT_REV).unwrap().unwrap()[..], b"compact-mark");
        let lease = OxLease::decode(rtx.bucket(LEASE).unwrap().get(&5i64.to_be_bytes()).unwrap().unwrap()).unwrap();
        assert_eq!(lease, OxLease { id: 5, ttl: 60, remaining_ms: 42_000 });
        let members = crate::membership::Members::load(&rtx).unwrap();
        let names: Vec<_> = members.iter().map(|m| m.name.clone()).collect();
        assert_eq!(names.len(), 2);
        assert!(names.contains(&"m1".to_string()) && names.contains(&"m2".to_string()));
        assert!(dir.path().join("restored/member/wal").is_dir());

        // Again into the same directory: refused, nothing touched.
        let err = restore(&path, &cfg, false).unwrap_err().to_string();
        assert_eq!(err, format!("data-dir {:?} exists", cfg.data_dir().display().to_string()));
        // A damaged hash.
        let last = data.len() - 1;
        data[last] ^= 1;
        std::fs::write(&path, &data).unwrap();
        let cfg2 = ServerConfig { data_dir: Some(dir.path().join("other")), ..cfg.clone() };
        assert!(restore(&path, &cfg2, false).unwrap_err().to_string().starts_with("expected sha256 ["));
        assert!(!dir.path().join("other").exists());
        // No hash at all: needs --skip-hash-check, and then restores.
        data.truncate(data.len() - 32);
        std::fs::write(&path, &data).unwrap();
        assert_eq!(
            restore(&path, &cfg2, false).unwrap_err().to_string(),
            "snapshot missing hash but --skip-hash-check=false"
        );
        assert_eq!(restore(&path, &cfg2, true).unwrap().revision, 499);
    }

    #[test]
    fn a_snapshot_keeps_users_roles_and_the_enabled_flag_but_no_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let b = backend_with_data(dir.path());
        let wtx = b.write().unwrap();
        wtx.bucket("auth").unwrap().put(oxcd_auth::ENABLED_KEY, &[1]).unwrap();
        wtx.bucket("authUsers").unwrap().put(b"root", b"user").unwrap();
        wtx.bucket(oxcd_auth::TOKENS_BUCKET).unwrap().put(b"tok.1", b"root").unwrap();
        wtx.commit_durable().unwrap();
        let path = dir.path().join("snap.db");
        write_etcd_db(&b, &path).unwrap();
        let cfg = ServerConfig { data_dir: Some(dir.path().join("restored")), ..Default::default() };
        restore(&path, &cfg, true).unwrap();
        let restored = Backend::open(crate::layout::Layout::new(&cfg.data_dir()).db, Default::default()).unwrap();
        let rtx = restored.read().unwrap();
        use oxcd_backend::BucketRead;
        assert_eq!(rtx.bucket("auth").unwrap().get(oxcd_auth::ENABLED_KEY).unwrap().as_deref(), Some(&[1u8][..]));
        assert!(rtx.bucket("authUsers").unwrap().get(b"root").unwrap().is_some());
        assert!(rtx.bucket(oxcd_auth::TOKENS_BUCKET).unwrap().get(b"tok.1").unwrap().is_none());
    }
}
