//! `etcdserverpb.Maintenance`: Status, Alarm, Snapshot, Hash, HashKV, MoveLeader, Defragment and
//! Downgrade (validated as etcd 3.5 does; enabling it is refused, since etcd 3.4 cannot read an
//! oxcd data directory, so no downgrade is ever in flight).

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use oxcd_api::EtcdError;
use oxcd_api::etcdserverpb::downgrade_request::DowngradeAction;
use oxcd_api::etcdserverpb::maintenance_server::Maintenance;
use oxcd_api::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, DowngradeRequest, DowngradeResponse,
    HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest,
    SnapshotResponse, StatusRequest, StatusResponse,
};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use super::{CLUSTER_VERSION, SERVER_VERSION, require_leader};
use crate::ids::MemberId;
use crate::raft::RaftInput;
use crate::server::EtcdServer;
use crate::wait::Response as Applied;
use oxcd_api::oxcdpb::internal_raft_request::Request as Proposal;

/// The one version a 3.5 cluster may be downgraded to (etcd's `AllowedDowngradeVersion`).
const ALLOWED_DOWNGRADE: (u64, u64) = (3, 4);

/// A Downgrade target as etcd reads it: semver `major.minor.patch` (with any pre-release or build
/// suffix) or `major.minor`, keeping major and minor.
fn downgrade_target(v: &str) -> Result<(u64, u64), EtcdError> {
    let num = |s: &str| {
        let ok = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
        if ok { s.parse::<u64>().ok() } else { None }
    };
    let (core, suffixed) = match v.find(['-', '+']) {
        Some(i) => (&v[..i], true),
        None => (v, false),
    };
    let (major, minor) = match core.split('.').collect::<Vec<_>>()[..] {
        [ma, mi, patch] if num(patch).is_some() => (ma, mi),
        [ma, mi] if !suffixed => (ma, mi),
        _ => return Err(EtcdError::WrongDowngradeVersionFormat),
    };
    num(major).zip(num(minor)).ok_or(EtcdError::WrongDowngradeVersionFormat)
}

pub struct MaintenanceService {
    server: Arc<EtcdServer>,
}

impl MaintenanceService {
    pub fn new(server: Arc<EtcdServer>) -> MaintenanceService {
        MaintenanceService { server }
    }
}

/// Bytes per Snapshot message (etcd's).
const SNAPSHOT_CHUNK: usize = 32 * 1024;

static SNAPSHOT_SEQ: AtomicU64 = AtomicU64::new(0);

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    /// Hands leadership to another voting member and waits (a tick at a time, up to the request
    /// timeout) until it leads, as etcd does. Only the leader accepts it.
    async fn move_leader(&self, req: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        require_leader(&self.server, &req)?;
        super::require_admin(&self.server, &req).await?;
        let s = &self.server;
        if s.raft.leader() != s.id.0 {
            return Err(EtcdError::NotLeader.to_status());
        }
        let to = req.into_inner().target_id;
        if s.members().get(MemberId(to)).is_none_or(|m| m.is_learner) {
            return Err(EtcdError::BadLeaderTransferee.to_status());
        }
        let deadline = tokio::time::Instant::now() + s.cfg.request_timeout();
        let _ = s.raft_tx.send(RaftInput::TransferLeader(to));
        while s.raft.leader() != to {
            if tokio::time::Instant::now() >= deadline {
                return Err(EtcdError::TimeoutLeaderTransfer.to_status());
            }
            tokio::time::sleep(s.cfg.tick()).await;
        }
        // etcd answers without a header.
        Ok(Response::new(MoveLeaderResponse { header: None }))
    }

    /// Rewrites this member's backend compactly while it serves (`Backend::defrag`): writes wait
    /// for it, reads do not. Local to the member, as etcd's.
    async fn defragment(&self, req: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        require_leader(&self.server, &req)?;
        super::require_admin_unconverted(&self.server, &req).await?;
        let s = self.server.clone();
        tokio::task::spawn_blocking(move || {
            let _swapping = s.state().file_swap();
            let started = std::time::Instant::now();
            let before = s.backend().size_bytes();
            s.backend().defrag()?;
            let after = s.backend().size_bytes();
            tracing::info!(before, after, took = ?started.elapsed(), "defragmented the backend");
            Ok::<_, oxcd_backend::BackendError>(())
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::internal(e.to_string()))?;
        // etcd answers without a header.
        Ok(Response::new(DefragmentResponse { header: None }))
    }

    /// etcd 3.5's Downgrade: VALIDATE checks the target (the minor version below the cluster's,
    /// `3.4` or `3.4.x`) after a linearizable read and answers the cluster version; ENABLE is
    /// refused with the reason; CANCEL finds no downgrade in flight.
    async fn downgrade(&self, req: Request<DowngradeRequest>) -> Result<Response<DowngradeResponse>, Status> {
        require_leader(&self.server, &req)?;
        super::require_admin(&self.server, &req).await?;
        let r = req.into_inner();
        match DowngradeAction::try_from(r.action) {
            Ok(DowngradeAction::Validate) | Ok(DowngradeAction::Enable) => {
                let target = downgrade_target(&r.version).map_err(|e| e.to_status())?;
                self.server.linearizable_read().await.map_err(|e| e.to_status())?;
                if target != ALLOWED_DOWNGRADE {
                    return Err(EtcdError::InvalidDowngradeTargetVersion.to_status());
                }
                if r.action == DowngradeAction::Enable as i32 {
                    return Err(EtcdError::DowngradeNotSupported.to_status());
                }
                let header = self.server.header(self.server.store().current_rev());
                Ok(Response::new(DowngradeResponse { header: Some(header), version: format!("{}.0", CLUSTER_VERSION) }))
            }
            Ok(DowngradeAction::Cancel) => Err(EtcdError::NoInflightDowngrade.to_status()),
            Err(_) => Err(Status::unimplemented("etcdserver: unknown method")),
        }
    }

    /// etcd's hash of the whole backend (every bucket of etcd's but the member's own consistent
    /// index and term, and where its log turned to etcd's format), at the current revision. Members that applied the same log agree.
    async fn hash(&self, req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        require_leader(&self.server, &req)?;
        super::require_admin_unconverted(&self.server, &req).await?;
        let (backend, store) = (self.server.backend(), self.server.store());
        let (hash, rev) = tokio::task::spawn_blocking(move || {
            // The revision read before the hash: a write applied in between is in the hash, as
            // with etcd (which reads its revision after).
            let rev = store.write_rev();
            let skip_key = |bucket: &str, key: &[u8]| {
                bucket == "meta"
                    && (key == oxcd_mvcc::meta::CONSISTENT_INDEX
                        || key == oxcd_mvcc::meta::TERM
                        || key == oxcd_datadir::etcd_log::LOG_FROM)
            };
            backend.hash(|b| b == oxcd_auth::TOKENS_BUCKET, skip_key).map(|h| (h, rev))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(HashResponse { header: Some(self.server.header(rev)), hash }))
    }

    /// etcd's hash of the MVCC history up to a revision, served locally (see `Store::hash_by_rev`).
    async fn hash_kv(&self, req: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        require_leader(&self.server, &req)?;
        super::require_admin_unconverted(&self.server, &req).await?;
        let rev = req.into_inner().revision;
        let store = self.server.store();
        let h = tokio::task::spawn_blocking(move || store.hash_by_rev(rev))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| match e {
                oxcd_mvcc::MvccError::Compacted => EtcdError::Compacted.to_status(),
                oxcd_mvcc::MvccError::FutureRev => EtcdError::FutureRev.to_status(),
                other => Status::internal(other.to_string()),
            })?;
        Ok(Response::new(HashKvResponse {
            header: Some(self.server.header(h.current_rev)),
            hash: h.hash,
            compact_revision: h.compact_rev,
            hash_revision: h.hash_rev,
        }))
    }

    /// The backend as an etcd backend file (bbolt, etcd's buckets; see `etcd_snapshot`), so that
    /// etcd's tools read it and etcd restores from it, then its SHA-256 as the last message, as
    /// etcd sends it. The file is built from one read transaction into the data directory (and
    /// unlinked once open), then streamed in 32 KiB messages; memory stays flat whatever the size.
    async fn snapshot(&self, req: Request<SnapshotRequest>) -> Result<Response<BoxStream<SnapshotResponse>>, Status> {
        require_leader(&self.server, &req)?;
        super::require_admin_unconverted(&self.server, &req).await?;
        let backend = self.server.backend();
        let seq = SNAPSHOT_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = crate::Layout::new(&self.server.cfg.data_dir()).snapshot_scratch(seq);
        let built = tokio::task::spawn_blocking(move || {
            let r = crate::etcd_snapshot::write_etcd_db(&backend, &path)
                .map_err(|e| e.to_string())
                .and_then(|size| std::fs::File::open(&path).map(|f| (f, size)).map_err(|e| e.to_string()));
            let _ = std::fs::remove_file(&path);
            r
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        let (mut file, size) = built.map_err(Status::internal)?;
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let mut sha = Sha256::new();
            let mut sent = 0u64;
            while sent < size {
                let mut blob = vec![0u8; SNAPSHOT_CHUNK.min((size - sent) as usize)];
                if let Err(e) = file.read_exact(&mut blob) {
                    let _ = tx.blocking_send(Err(Status::internal(e.to_string())));
                    return;
                }
                sha.update(&blob);
                sent += blob.len() as u64;
                let msg = SnapshotResponse { remaining_bytes: size - sent, blob: blob.into(), ..Default::default() };
                if tx.blocking_send(Ok(msg)).is_err() {
                    return;
                }
            }
            let digest = SnapshotResponse { blob: sha.finalize().to_vec().into(), ..Default::default() };
            let _ = tx.blocking_send(Ok(digest));
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn status(&self, req: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        require_leader(&self.server, &req)?;
        super::require_user(&self.server, &req).await?;
        let s = &self.server;
        let backend = s.backend();
        let size = backend.size_bytes() as i64;
        // etcd lists a missing leader and every raised alarm.
        let mut errors = Vec::new();
        if !s.has_leader() {
            errors.push(EtcdError::NoLeader.to_string());
        }
        errors.extend(s.alarms().status_errors());
        Ok(Response::new(StatusResponse {
            header: Some(s.header(s.store().current_rev())),
            version: SERVER_VERSION.to_string(),
            db_size: size,
            leader: s.raft.leader(),
            raft_index: s.raft.committed.load(Ordering::Acquire),
            raft_term: s.raft.term(),
            raft_applied_index: s.applied.load(Ordering::Acquire),
            errors,
            db_size_in_use: size,
            is_learner: s.is_learner(),
            storage_version: String::new(),
            db_size_quota: s.cfg.quota_bytes() as i64,
            downgrade_info: None,
        }))
    }

    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        require_leader(&self.server, &req)?;
        if req.get_ref().action == oxcd_api::etcdserverpb::alarm_request::AlarmAction::Get as i32 {
            super::require_user(&self.server, &req).await?;
        } else {
            super::require_admin(&self.server, &req).await?;
        }
        // Every action goes through Raft, as in etcd (so a list is linearizable).
        match self.server.propose(Proposal::Alarm(req.into_inner())).await.map_err(super::status)? {
            // etcd 3.5 fills the header (3.4 did not).
            Applied::Alarm(mut r) => {
                r.header = Some(self.server.header(self.server.store().current_rev()));
                Ok(Response::new(r))
            }
            _ => Err(Status::internal("apply result of the wrong kind")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downgrade_targets_are_read_as_etcds_semver() {
        assert_eq!(downgrade_target("3.4"), Ok((3, 4)));
        assert_eq!(downgrade_target("3.4.7"), Ok((3, 4)));
        assert_eq!(downgrade_target("3.4.0-rc.1"), Ok((3, 4)));
        for bad in ["abc", "3", "", "3.4.x", "3.04", "3.4.5.6", "v3.4"] {
            assert_eq!(downgrade_target(bad), Err(EtcdError::WrongDowngradeVersionFormat), "{bad}");
        }
    }
}
