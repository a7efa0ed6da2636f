//! A member's data directory: where its files are ([`Layout`], etcd's layout), and a new member's
//! first WAL ([`create_member`]). A member's start-up, its Snapshot RPC, [`crate::etcd_snapshot`]'s
//! restore and oxcdctl's offline commands all ask here.

use std::path::{Path, PathBuf};

use oxcd_api::oxcdpb::WalMetadata;
use oxcd_wal::{HardState as WalHardState, SnapshotRecord, Wal};
use prost::Message;
use raft::prelude::ConfState;

use crate::config::{ConfigError, ServerConfig};
use crate::ids::{self, ClusterId, MemberId};
use crate::membership::{Member, Members, encode_conf_state};

/// Why a member could not start (or stopped on a failure).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Wal(#[from] oxcd_wal::WalError),
    #[error(transparent)]
    Backend(#[from] oxcd_backend::BackendError),
    #[error(transparent)]
    Mvcc(#[from] oxcd_mvcc::MvccError),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Data(String),
}

/// The index and term every member's log starts from (as raft-rs's examples do): entry 1 is implied.
pub const BOOT_INDEX: u64 = 1;
pub const BOOT_TERM: u64 = 1;

/// Where a member's files are under its data directory (etcd's layout).
#[derive(Debug, Clone)]
pub struct Layout {
    pub wal: PathBuf,
    pub snap: PathBuf,
    pub db: PathBuf,
}

impl Layout {
    pub fn new(data_dir: &Path) -> Layout {
        let member = data_dir.join("member");
        Layout { wal: member.join("wal"), snap: member.join("snap"), db: member.join("snap").join("db") }
    }

    /// Where a `Maintenance.Snapshot` request builds its etcd backend file (`seq` tells concurrent
    /// requests apart); removed once streamed, or at the next start after a crash.
    pub fn snapshot_scratch(&self, seq: u64) -> PathBuf {
        self.snap.join(format!("{seq}{SNAPSHOT_SCRATCH_SUFFIX}"))
    }

    /// Removes the scratch files a crash interrupted: those of Snapshot requests, and snapshots
    /// from a leader still being received (the leader sends again what the member still needs).
    /// Called at start, before anything writes them.
    pub fn remove_interrupted_snapshots(&self) -> std::io::Result<()> {
        for e in std::fs::read_dir(&self.snap)?.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(SNAPSHOT_SCRATCH_SUFFIX) || name.ends_with(RECEIVED_SCRATCH_SUFFIX) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(())
    }
}

/// The suffix of [`Layout::snapshot_scratch`] files.
const SNAPSHOT_SCRATCH_SUFFIX: &str = ".snapshot.tmp";
/// The suffix of a snapshot from the leader while it is received (`<term>-<index>.snap.tmp`, renamed
/// to `.snap.db` once whole).
const RECEIVED_SCRATCH_SUFFIX: &str = ".snap.tmp";

/// Renames `from` to `to` and syncs the directory, so that the rename survives a crash (what the
/// file holds must be durable already).
pub fn rename_durably(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(from, to)?;
    std::fs::File::open(to.parent().unwrap_or(Path::new(".")))?.sync_all()
}

/// A new member's identity, as [`create_member`] wrote it.
pub struct NewMember {
    pub id: MemberId,
    pub cluster_id: ClusterId,
    /// Every member of `--initial-cluster`, for the backend's members bucket.
    pub members: Vec<Member>,
}

/// Creates a new member: ids from `--initial-cluster` and the token, the members in its backend
/// ([`save_first_members`]), then its WAL: a snapshot record of the first configuration at
/// [`BOOT_INDEX`] and a HardState committing it, synced.
pub fn create_member(cfg: &ServerConfig, layout: &Layout) -> Result<NewMember, StartError> {
    let members: Vec<Member> = cfg
        .initial_members()?
        .into_iter()
        .map(|m| Member {
            id: ids::member_id(&m.peer_urls, &cfg.initial_cluster_token),
            name: m.name,
            peer_urls: m.peer_urls,
            client_urls: Vec::new(),
            is_learner: false,
        })
        .collect();
    let id = members.iter().find(|m| m.name == cfg.name).map(|m| m.id).expect("validated: name in cluster");
    let cluster_id = ids::cluster_id(&members.iter().map(|m| m.id).collect::<Vec<_>>());
    save_first_members(layout, &members, BOOT_INDEX + 1)?;
    let meta = WalMetadata { member_id: id.0, cluster_id: cluster_id.0 }.encode_to_vec();
    std::fs::create_dir_all(&layout.wal)?;
    let mut wal = Wal::create(&layout.wal, &meta)?;
    let cs = ConfState { voters: members.iter().map(|m| m.id.0).collect(), ..Default::default() };
    wal.save_snapshot(SnapshotRecord { index: BOOT_INDEX, term: BOOT_TERM, conf_state: encode_conf_state(&cs) });
    wal.set_hard_state(WalHardState { term: BOOT_TERM, vote: 0, commit: BOOT_INDEX });
    wal.sync()?;
    Ok(NewMember { id, cluster_id, members })
}

/// Writes a new member's first members into its backend, durably. This comes before its WAL is
/// created: a member counts as new until its WAL exists, so a crash between the two steps repeats
/// both at the next start, where the other order would leave a member without peers.
///
/// It also records from which index the log is in etcd's format (`crate::etcd_log`): a new
/// cluster's from its first entry after the boot, a member joining a running cluster from entry 1
/// (what an etcd leader sends it; an oxcd leader sends a snapshot first, whose backend replaces
/// this one, key included).
pub fn save_first_members(layout: &Layout, members: &[Member], log_from: u64) -> Result<(), StartError> {
    std::fs::create_dir_all(&layout.snap)?;
    let backend = oxcd_backend::Backend::open(&layout.db, Default::default())?;
    let wtx = backend.write()?;
    for m in members {
        Members::save(&wtx, m)?;
    }
    wtx.bucket(oxcd_backend::META)?.put(crate::etcd_log::LOG_FROM, &log_from.to_be_bytes())?;
    wtx.commit_durable()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use oxcd_backend::Backend;

    use super::*;

    #[test]
    fn interrupted_snapshots_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        std::fs::create_dir_all(&layout.snap).unwrap();
        let names = ["db", "2-10.snap.db", "2-11.snap.tmp", "3.snapshot.tmp", "db.defrag"];
        for n in names {
            std::fs::write(layout.snap.join(n), b"x").unwrap();
        }
        layout.remove_interrupted_snapshots().unwrap();
        let mut left: Vec<String> =
            std::fs::read_dir(&layout.snap).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["2-10.snap.db", "db", "db.defrag"]);
    }

    #[test]
    fn a_new_member_has_its_members_in_the_backend_before_its_wal_exists() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let cfg = ServerConfig {
            name: "a".into(),
            initial_cluster: Some("a=http://127.0.0.1:1,b=http://127.0.0.1:2".into()),
            data_dir: Some(dir.path().into()),
            ..Default::default()
        };
        // A WAL directory that cannot be created: the member fails after its backend step.
        std::fs::create_dir_all(dir.path().join("member")).unwrap();
        std::fs::write(&layout.wal, b"not a directory").unwrap();
        assert!(create_member(&cfg, &layout).is_err());
        let members = Members::load(&Backend::open(&layout.db, Default::default()).unwrap().read().unwrap()).unwrap();
        assert_eq!(members.iter().count(), 2, "the members are saved before the WAL is created");
        // Once the WAL can be written, creating the member again gives the same members and a WAL.
        std::fs::remove_file(&layout.wal).unwrap();
        let created = create_member(&cfg, &layout).unwrap();
        assert!(Wal::exists(&layout.wal));
        let members = Members::load(&Backend::open(&layout.db, Default::default()).unwrap().read().unwrap()).unwrap();
        let mut names: Vec<_> = members.iter().map(|m| m.name.clone()).collect();
        names.sort();
        assert_eq!(names, ["a", "b"]);
        assert!(members.get(created.id).is_some());
    }
}
