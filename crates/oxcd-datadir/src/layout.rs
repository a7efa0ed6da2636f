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
use crate::membership::Member;
use crate::membership::encode_conf_state;

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

    /// Removes the scratch files of Snapshot requests that a crash interrupted.
    pub fn remove_interrupted_snapshots(&self) -> std::io::Result<()> {
        for e in std::fs::read_dir(&self.snap)?.flatten() {
            if e.file_name().to_string_lossy().ends_with(SNAPSHOT_SCRATCH_SUFFIX) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(())
    }
}

/// The suffix of [`Layout::snapshot_scratch`] files.
const SNAPSHOT_SCRATCH_SUFFIX: &str = ".snapshot.tmp";

/// A new member's identity, as [`create_member`] wrote it.
pub struct NewMember {
    pub id: MemberId,
    pub cluster_id: ClusterId,
    /// Every member of `--initial-cluster`, for the backend's members bucket.
    pub members: Vec<Member>,
}

/// Creates a new member's WAL: ids from `--initial-cluster` and the token, a snapshot record of
/// the first configuration at [`BOOT_INDEX`] and a HardState committing it, synced.
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
    let meta = WalMetadata { member_id: id.0, cluster_id: cluster_id.0 }.encode_to_vec();
    std::fs::create_dir_all(&layout.wal)?;
    let mut wal = Wal::create(&layout.wal, &meta)?;
    let cs = ConfState { voters: members.iter().map(|m| m.id.0).collect(), ..Default::default() };
    wal.save_snapshot(SnapshotRecord { index: BOOT_INDEX, term: BOOT_TERM, conf_state: encode_conf_state(&cs) });
    wal.set_hard_state(WalHardState { term: BOOT_TERM, vote: 0, commit: BOOT_INDEX });
    wal.sync()?;
    Ok(NewMember { id, cluster_id, members })
}
