//! The applier: one thread that applies committed entries in log order to the backend, with the
//! consistent index in the same transaction as the data it covers, and hands each result to the
//! proposer that waits for it.
//!
//! Entries at or below the backend's consistent index are skipped, so replaying the WAL after a
//! crash, or receiving a backend snapshot that is ahead of the Raft snapshot point, never applies
//! an entry twice. Results are handed out only after the backend commit and [`Store::publish`], so
//! a client that got an answer reads its own write on this member.

pub mod request;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use oxcd_api::EtcdError;
use oxcd_api::etcdserverpb::{CompactionResponse, ResponseHeader};
use oxcd_api::mvccpb::Event;
use oxcd_api::oxcdpb::{InternalRaftRequest, MemberAttrSetRequest, internal_raft_request::Request};
use oxcd_backend::{Backend, BatchConfig, META, WriteTxn};
use oxcd_lease::Lessor;
use oxcd_mvcc::{Store, meta};
use prost::Message;
use raft::prelude::{Entry, EntryType};
use tokio::sync::watch;

use crate::ids::MemberId;
use crate::membership::Members;
use crate::raft::RaftInput;
use crate::server::{EtcdServer, MemberState};
use crate::wait::{ApplyResult, Response};
pub use request::ApplyError;

/// What the Raft thread hands the applier, in log order.
pub enum ApplyMsg {
    /// Committed entries.
    Entries(Vec<Entry>),
    /// A backend snapshot from the leader, stored at `db`, covering at least `index`.
    Snapshot { index: u64, db: PathBuf },
}

/// A compaction to carry out in the background, and who to answer when it is done.
pub struct CompactJob {
    pub store: Arc<Store>,
    pub rev: i64,
    /// Answered once the compaction is physically done.
    pub waiters: Vec<(u64, ApplyResult)>,
}

/// Reads the consistent index (the last applied entry) recorded in a backend.
pub fn consistent_index(backend: &Backend) -> Result<u64, oxcd_backend::BackendError> {
    use oxcd_backend::BucketRead;
    let v = backend.read()?.bucket(META)?.get(meta::CONSISTENT_INDEX)?;
    Ok(v.and_then(|b| <[u8; 8]>::try_from(&b[..]).ok()).map(u64::from_be_bytes).unwrap_or(0))
}

pub struct Applier {
    server: Arc<EtcdServer>,
    rx: Receiver<ApplyMsg>,
    applied_tx: watch::Sender<u64>,
    compactor_tx: Sender<CompactJob>,
    applied: u64,
    applied_term: u64,
    last_snapshot: u64,
    /// Entry data applied since the last snapshot.
    bytes_since_snapshot: usize,
}

/// Entry data applied after which a snapshot is taken even before `--snapshot-count` entries.
const SNAPSHOT_BYTES: usize = 32 << 20;

impl Applier {
    pub fn new(
        server: Arc<EtcdServer>,
        rx: Receiver<ApplyMsg>,
        applied_tx: watch::Sender<u64>,
        compactor_tx: Sender<CompactJob>,
        applied: u64,
    ) -> Applier {
        Applier {
            server,
            rx,
            applied_tx,
            compactor_tx,
            applied,
            applied_term: 0,
            last_snapshot: applied,
            bytes_since_snapshot: 0,
        }
    }

    /// Runs until the Raft thread goes away or the backend fails (then the member must stop).
    pub fn run(mut self) -> Result<(), ApplyError> {
        let idle = Duration::from_millis(self.server.cfg.backend_batch_interval.max(1));
        loop {
            let msg = match self.rx.recv_timeout(idle) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    let backend = self.server.backend();
                    if backend.flush_due() {
                        backend.flush().map_err(fatal)?;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            };
            match msg {
                ApplyMsg::Entries(mut entries) => {
                    // Everything already committed goes into one backend transaction; a snapshot
                    // queued behind it is installed after it, keeping log order.
                    let mut snapshot = None;
                    while let Ok(m) = self.rx.try_recv() {
                        match m {
                            ApplyMsg::Entries(more) => entries.extend(more),
                            snap => {
                                snapshot = Some(snap);
                                break;
                            }
                        }
                    }
                    self.apply_entries(entries)?;
                    if let Some(snap) = snapshot {
                        self.install_snapshot(snap)?;
                    }
                }
                snap @ ApplyMsg::Snapshot { .. } => self.install_snapshot(snap)?,
            }
        }
    }

    fn apply_entries(&mut self, entries: Vec<Entry>) -> Result<(), ApplyError> {
        if entries.iter().all(|e| e.index <= self.applied) {
            return Ok(());
        }
        let backend = self.server.backend();
        let store = self.server.store();
        let lessor = self.server.lessor();
        let wtx = backend.write().map_err(fatal)?;
        let mut results: Vec<(u64, ApplyResult)> = Vec::new();
        let mut jobs: Vec<CompactJob> = Vec::new();
        let mut members_changed = false;
        let mut published: Vec<(i64, Vec<Event>)> = Vec::new();
        for e in &entries {
            if e.index <= self.applied {
                continue;
            }
            if e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
                match InternalRaftRequest::decode(&e.data[..]) {
                    Ok(req) => {
                        let id = req.header.as_ref().map(|h| h.id).unwrap_or(0);
                        match req.request {
                            Some(Request::Compaction(c)) => {
                                let result = apply_compaction(&store, &wtx, c.revision)?;
                                if result.is_ok() {
                                    // A physical compaction answers once the compactor is done.
                                    let waiters = if c.physical { vec![(id, result.clone())] } else { Vec::new() };
                                    jobs.push(CompactJob { store: store.clone(), rev: c.revision, waiters });
                                    if !c.physical {
                                        results.push((id, result));
                                    }
                                } else {
                                    results.push((id, result));
                                }
                            }
                            Some(Request::MemberAttrSet(m)) => {
                                self.apply_member_attrs(&wtx, m)?;
                                members_changed = true;
                                results.push((id, Ok(Response::Empty)));
                            }
                            Some(r) => results.push((id, apply_kv(&store, &lessor, &wtx, r, &mut published)?)),
                            None => {}
                        }
                    }
                    Err(err) => tracing::error!(index = e.index, %err, "undecodable raft entry skipped"),
                }
            } else if e.get_entry_type() != EntryType::EntryNormal {
                tracing::warn!(index = e.index, "configuration change entries are not served yet; skipped");
            }
            self.applied = e.index;
            self.applied_term = e.term;
        }
        {
            let mut m = wtx.bucket(META).map_err(fatal)?;
            m.put(meta::CONSISTENT_INDEX, &self.applied.to_be_bytes()).map_err(fatal)?;
            m.put(meta::TERM, &self.applied_term.to_be_bytes()).map_err(fatal)?;
        }
        wtx.commit().map_err(fatal)?;
        store.publish();
        for (rev, events) in published {
            self.server.watchable.publish(rev, events);
        }
        if members_changed {
            *self.server.members.write() = Members::load(&backend.read().map_err(fatal)?).map_err(fatal)?;
        }
        // Answer first: the waiting clients are the latency that matters.
        for (id, r) in results {
            self.server.wait.trigger(id, r);
        }
        self.publish_applied();
        for job in jobs {
            let _ = self.compactor_tx.send(job);
        }
        self.bytes_since_snapshot += entries.iter().map(|e| e.data.len()).sum::<usize>();
        // Every --snapshot-count entries, or sooner when their data would fill memory (the Raft log
        // keeps everything since the last snapshot).
        if self.applied - self.last_snapshot >= self.server.cfg.snapshot_count
            || self.bytes_since_snapshot >= SNAPSHOT_BYTES
        {
            self.bytes_since_snapshot = 0;
            // The WAL may drop entries only once the backend holds them durably.
            backend.flush().map_err(fatal)?;
            self.last_snapshot = self.applied;
            let _ = self.server.raft_tx.send(RaftInput::Compact { index: self.applied });
        }
        Ok(())
    }

    fn publish_applied(&self) {
        self.server.applied.store(self.applied, Ordering::Release);
        let _ = self.applied_tx.send(self.applied);
    }

    fn apply_member_attrs(&self, wtx: &WriteTxn<'_>, m: MemberAttrSetRequest) -> Result<(), ApplyError> {
        let mut members = self.server.members.read().clone();
        if let Some(member) = members.get_mut(MemberId(m.member_id)) {
            member.name = m.name;
            member.client_urls = m.client_urls;
            Members::save(wtx, member).map_err(fatal)?;
        }
        Ok(())
    }

    /// Replaces the backend with the snapshot the leader sent, then continues after it.
    fn install_snapshot(&mut self, msg: ApplyMsg) -> Result<(), ApplyError> {
        let ApplyMsg::Snapshot { index, db } = msg else { return Ok(()) };
        if index <= self.applied {
            let _ = std::fs::remove_file(&db);
            return Ok(());
        }
        let path = self.server.backend().path().to_path_buf();
        std::fs::rename(&db, &path).map_err(|e| fatal(e.into()))?;
        let backend = Arc::new(Backend::open(&path, self.server.batch_config()).map_err(fatal)?);
        let ci = consistent_index(&backend).map_err(fatal)?;
        let state = MemberState::load(backend).map_err(ApplyError::Fatal)?;
        if let Some(rev) = state.pending_compaction {
            let _ = self.compactor_tx.send(CompactJob { store: state.store.clone(), rev, waiters: Vec::new() });
        }
        self.server.swap_state(state);
        self.applied = index.max(ci);
        self.last_snapshot = self.applied;
        tracing::info!(index, consistent_index = ci, "installed backend snapshot");
        self.publish_applied();
        Ok(())
    }
}

fn fatal(e: oxcd_backend::BackendError) -> ApplyError {
    ApplyError::Fatal(e.into())
}

fn compaction_resp(store: &Store) -> CompactionResponse {
    CompactionResponse { header: Some(ResponseHeader { revision: store.write_rev(), ..Default::default() }) }
}

fn apply_compaction(store: &Store, wtx: &WriteTxn<'_>, rev: i64) -> Result<ApplyResult, ApplyError> {
    match store.compact(wtx, rev) {
        Ok(()) => Ok(Ok(Response::Compaction(compaction_resp(store)))),
        Err(e) => match ApplyError::from(e) {
            ApplyError::Reject(e) => Ok(Err(e)),
            f => Err(f),
        },
    }
}

/// Applies one KV write request in its own store transaction (one revision). Events of a new
/// revision are appended to `published` for the watchers.
fn apply_kv(
    store: &Store,
    lessor: &Lessor,
    wtx: &WriteTxn<'_>,
    req: Request,
    published: &mut Vec<(i64, Vec<Event>)>,
) -> Result<ApplyResult, ApplyError> {
    let mut txn = store.write(wtx).map_err(ApplyError::Fatal)?;
    let result = match &req {
        Request::Put(p) => request::apply_put(&mut txn, lessor, p).map(Response::Put),
        Request::DeleteRange(d) => request::apply_delete_range(&mut txn, d).map(Response::DeleteRange),
        Request::Txn(t) => request::apply_txn(&mut txn, lessor, t).map(Response::Txn),
        Request::LeaseGrant(_) | Request::LeaseRevoke(_) | Request::Alarm(_) => {
            tracing::warn!("lease and alarm requests are not served yet; entry skipped");
            Ok(Response::Empty)
        }
        Request::Compaction(_) | Request::MemberAttrSet(_) => unreachable!("handled by the caller"),
    };
    debug_assert!(result.is_ok() || txn.changes().is_empty(), "a rejected request wrote nothing");
    let (rev, events) = txn.end();
    if !events.is_empty() {
        published.push((rev, events));
    }
    match result {
        Ok(r) => Ok(Ok(r)),
        Err(ApplyError::Reject(e)) => Ok(Err(e)),
        Err(f) => Err(f),
    }
}

/// The background compactor: runs compactions in order and answers physical-compaction waiters.
pub fn run_compactor(server: Arc<EtcdServer>, rx: Receiver<CompactJob>) {
    while let Ok(job) = rx.recv() {
        let outcome = job.store.run_compaction(job.rev, Duration::from_millis(10));
        if let Err(e) = &outcome {
            tracing::error!(rev = job.rev, error = %e, "compaction failed");
        }
        for (id, r) in job.waiters {
            let r = match &outcome {
                Ok(()) => r,
                Err(_) => Err(EtcdError::Stopped),
            };
            server.wait.trigger(id, r);
        }
    }
}

/// Batch settings of the backend, from the member's config.
pub fn batch_config(cfg: &crate::config::ServerConfig) -> BatchConfig {
    BatchConfig {
        interval: Duration::from_millis(cfg.backend_batch_interval.max(1)),
        limit: cfg.backend_batch_limit.max(1),
    }
}
