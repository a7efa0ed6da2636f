//! The applier: applies committed entries in log order to the backend, with the consistent index
//! in the same transaction as the data it covers, and hands each result to the proposer that
//! waits for it. It has a thread of its own; the Raft thread applies a small batch itself when
//! the applier is idle and caught up (one lock keeps the two in log order).
//!
//! Entries at or below the backend's consistent index are skipped, so replaying the WAL after a
//! crash, or receiving a backend snapshot that is ahead of the Raft snapshot point, never applies
//! an entry twice. Results are handed out only after the backend commit and [`Store::publish`], so
//! a client that got an answer reads its own write on this member.
//!
//! The applier owns the state machine ([`state`]: backend, store, lessor, auth, members, alarms)
//! and knows nothing of the member around it: what it decides that others must act on (answers,
//! events for the watchers, membership changes, its own member's removal, a log that may be
//! compacted, a state replaced by a snapshot) it hands to its caller as a [`Decision`].

pub mod auth;
mod lease;
pub mod request;
pub mod state;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use oxcd_api::EtcdError;
use oxcd_api::etcdserverpb::{
    AlarmRequest, AlarmResponse, AlarmType, CompactionResponse, LeaseRevokeResponse, ResponseHeader, alarm_request,
};
use oxcd_api::mvccpb::Event;
use oxcd_api::oxcdpb::{
    InternalRaftRequest, MemberAttrSetRequest, MemberUpdateRequest, RequestHeader, internal_raft_request::Request,
};
use oxcd_backend::{Backend, BatchConfig, META, WriteTxn};
use oxcd_lease::{LeaseId, Lessor};
use oxcd_mvcc::{Store, meta};
use parking_lot::Mutex;
use prost::Message;
use raft::prelude::{Entry, EntryType};
use tokio::sync::watch;

use crate::alarms::Alarms;
use crate::config::ServerConfig;
use crate::ids::MemberId;
use crate::membership::MemberChange;
use crate::membership::Members;
use crate::raft::ApplyMsg;
use crate::wait::{ApplyResult, Response};
pub use lease::load_leases;
pub use request::ApplyError;
use state::{MemberState, StateCell, View};

/// A compaction to carry out in the background, and who to answer when it is done.
pub struct CompactJob {
    pub store: Arc<Store>,
    pub rev: i64,
    /// Answered once the compaction is physically done.
    pub waiters: Vec<(u64, ApplyResult)>,
}

/// Reads the consistent index (the last applied entry) recorded in a backend.
pub fn consistent_index(backend: &Backend) -> Result<u64, oxcd_backend::BackendError> {
    meta_u64(backend, meta::CONSISTENT_INDEX)
}

/// The term of the entry at the consistent index (etcd 3.5's `meta/term`; 0 if not recorded).
fn consistent_term(backend: &Backend) -> Result<u64, oxcd_backend::BackendError> {
    meta_u64(backend, meta::TERM)
}

fn meta_u64(backend: &Backend, key: &[u8]) -> Result<u64, oxcd_backend::BackendError> {
    use oxcd_backend::BucketRead;
    let v = backend.read()?.bucket(META)?.get(key)?;
    Ok(v.and_then(|b| <[u8; 8]>::try_from(&b[..]).ok()).map(u64::from_be_bytes).unwrap_or(0))
}

/// What the applier decided that the member around it acts on, handed over in the order the
/// applier reached it.
pub enum Decision {
    /// A batch of entries is committed to the backend and visible in the store.
    Applied(Applied),
    /// The backend holds every entry up to `index` (of `term`) durably: the Raft log may drop them.
    LogCompactable { index: u64, term: u64 },
    /// A snapshot from the leader replaced the whole state (already published).
    Installed {
        /// The new store (the watchers start over from it).
        store: Arc<Store>,
        /// Every member ever removed from the cluster, as the snapshot records them.
        removed: Vec<MemberId>,
    },
}

/// One applied batch, for the member to act on in this order: watchers, peers, stop, answers.
#[derive(Default)]
pub struct Applied {
    /// New revisions and their events, for the watchers.
    pub events: Vec<(i64, Vec<Event>)>,
    /// Members removed by this batch: their peer connections are refused from now on.
    pub removed: Vec<MemberId>,
    /// The members changed (already published): the peer transport follows them.
    pub members_changed: bool,
    /// This member itself was removed from the cluster: it stops.
    pub removed_self: bool,
    /// The answers to the proposals applied, by request id.
    pub results: Vec<(u64, ApplyResult)>,
}

/// Where the applier tells how far it has applied: the index readers wait for.
pub struct AppliedIndex {
    pub index: Arc<AtomicU64>,
    pub tx: watch::Sender<u64>,
}

pub struct Applier {
    me: MemberId,
    /// Where every decision goes (see [`Decision`]).
    decided: Box<dyn FnMut(Decision) + Send>,
    /// A batch failed: nothing more is applied (the member is stopping).
    failed: bool,
    cfg: ServerConfig,
    /// The state machine (the applier's own; readers see what it publishes to `cell`).
    state: View,
    cell: Arc<StateCell>,
    published: AppliedIndex,
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
    /// An applier of `state` (the one `cell` publishes), whose backend has applied up to `applied`,
    /// handing each decision to `decided`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        me: MemberId,
        cfg: ServerConfig,
        state: View,
        cell: Arc<StateCell>,
        published: AppliedIndex,
        compactor_tx: Sender<CompactJob>,
        applied: u64,
        decided: impl FnMut(Decision) + Send + 'static,
    ) -> Applier {
        // What an earlier run applied last; 0 (not known) only where the backend does not say.
        let applied_term = consistent_term(&state.backend).unwrap_or(0);
        Applier {
            me,
            decided: Box::new(decided),
            failed: false,
            cfg,
            state,
            cell,
            published,
            compactor_tx,
            applied,
            applied_term,
            last_snapshot: applied,
            bytes_since_snapshot: 0,
        }
    }

    /// Runs until the Raft thread goes away or the backend fails (then the member must stop). The
    /// Raft thread may apply a batch itself while this thread is idle ([`Applier::apply_inline`]),
    /// so the applier is shared behind a lock, held for one batch at a time.
    pub fn run(shared: Arc<Mutex<Applier>>, rx: Receiver<ApplyMsg>) -> Result<(), ApplyError> {
        let idle = batch_config(&shared.lock().cfg).interval;
        loop {
            let msg = match rx.recv_timeout(idle) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    let mut a = shared.lock();
                    if !a.failed && a.state.backend.flush_due() {
                        let r = a.state.backend.flush().map_err(fatal);
                        a.fail_on(r)?;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            };
            let mut a = shared.lock();
            if a.failed {
                return Ok(());
            }
            let r = a.handle(msg, &rx);
            a.fail_on(r)?;
        }
    }

    /// Applies `entries` on the caller's thread (the Raft thread's, saving the hand-off to the
    /// applier's thread and its wake-up) when the applier is idle and they follow what it applied;
    /// `None` when they must be queued instead. With the lock held, "they follow" also means
    /// nothing is queued before them: a queued batch would still be unapplied.
    pub fn apply_inline(shared: &Mutex<Applier>, entries: &[Entry]) -> Option<Result<(), ApplyError>> {
        let mut a = shared.try_lock()?;
        if a.failed || entries.first()?.index != a.applied + 1 || a.snapshot_due(entries) {
            return None;
        }
        // Nor does it wait for the backend (a defragmentation holds its writer for seconds).
        let backend = a.state.backend.clone();
        let r = match backend.try_write() {
            Ok(None) => return None,
            Ok(Some(wtx)) => a.apply_in(entries, &backend, wtx),
            Err(e) => Err(fatal(e)),
        };
        Some(a.fail_on(r))
    }

    /// Whether applying `entries` takes a snapshot, whose durable flush waits for the backend's
    /// other writers: left to the applier's thread.
    fn snapshot_due(&self, entries: &[Entry]) -> bool {
        let last = entries.last().map_or(self.applied, |e| e.index);
        let bytes: usize = entries.iter().map(|e| e.data.len()).sum();
        self.snapshot_due_at(last, self.bytes_since_snapshot + bytes)
    }

    /// Every --snapshot-count entries, or sooner when their data would fill memory (the Raft log
    /// keeps everything since the last snapshot): at `applied`, with `bytes` of entry data since
    /// the last one.
    fn snapshot_due_at(&self, applied: u64, bytes: usize) -> bool {
        applied - self.last_snapshot >= self.cfg.snapshot_count || bytes >= SNAPSHOT_BYTES
    }

    fn fail_on(&mut self, r: Result<(), ApplyError>) -> Result<(), ApplyError> {
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn handle(&mut self, msg: ApplyMsg, rx: &Receiver<ApplyMsg>) -> Result<(), ApplyError> {
        match msg {
            ApplyMsg::Entries(mut entries) => {
                // Everything already committed goes into one backend transaction; a snapshot
                // queued behind it is installed after it, keeping log order.
                let mut snapshot = None;
                while let Ok(m) = rx.try_recv() {
                    match m {
                        ApplyMsg::Entries(more) => entries.extend(more),
                        snap => {
                            snapshot = Some(snap);
                            break;
                        }
                    }
                }
                self.apply_entries(&entries)?;
                if let Some(snap) = snapshot {
                    self.install_snapshot(snap)?;
                }
                Ok(())
            }
            snap @ ApplyMsg::Snapshot { .. } => self.install_snapshot(snap),
        }
    }

    fn apply_entries(&mut self, entries: &[Entry]) -> Result<(), ApplyError> {
        if entries.iter().all(|e| e.index <= self.applied) {
            return Ok(());
        }
        let backend = self.state.backend.clone();
        let wtx = backend.write().map_err(fatal)?;
        self.apply_in(entries, &backend, wtx)
    }

    /// Applies `entries` in `wtx`, the backend's write transaction, and commits it.
    fn apply_in(&mut self, entries: &[Entry], backend: &Backend, mut wtx: WriteTxn<'_>) -> Result<(), ApplyError> {
        let mut batch = Batch {
            me: self.me,
            store: &self.state.store,
            lessor: &self.state.lessor,
            auth: &self.state.auth,
            wtx: &wtx,
            now: Instant::now(),
            current_members: &self.state.members,
            alarms: &mut self.state.alarms,
            alarms_changed: false,
            results: Vec::new(),
            jobs: Vec::new(),
            published: Vec::new(),
            members: None,
            removed: Vec::new(),
            removed_self: false,
            max_learners: self.cfg.max_learners as usize,
        };
        let mut ops = 0;
        let slow = self.cfg.warning_apply_duration;
        for e in entries {
            if e.index <= self.applied {
                continue;
            }
            if e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
                let decoded = match self.state.etcd_log_from {
                    Some(from) if e.index >= from => oxcd_datadir::etcd_log::decode(&e.data),
                    _ => InternalRaftRequest::decode(&e.data[..]).map_err(|e| e.to_string()),
                };
                match decoded {
                    Ok(req) => {
                        if let Some(r) = req.request {
                            let started = Instant::now();
                            let op = op_name(&r);
                            let answered = batch.results.len();
                            batch.apply(req.header.unwrap_or_default(), e.index, r)?;
                            let took = started.elapsed();
                            // etcd counts a compacted read as a success.
                            let success = batch.results[answered..]
                                .iter()
                                .all(|(_, r)| matches!(r, Ok(_) | Err(EtcdError::Compacted)));
                            crate::metrics::APPLY_SECONDS
                                .with_label_values(&["v3", op, if success { "true" } else { "false" }])
                                .observe(took.as_secs_f64());
                            if took > slow {
                                crate::metrics::SLOW_APPLY.inc();
                                tracing::warn!(
                                    took = ?took,
                                    expected_duration = ?slow,
                                    index = e.index,
                                    "apply request took too long"
                                );
                            }
                            ops += 1;
                        }
                    }
                    Err(err) => tracing::error!(index = e.index, %err, "undecodable raft entry skipped"),
                }
            } else if e.get_entry_type() == EntryType::EntryConfChange {
                match MemberChange::decode(&e.data) {
                    Some(c) => batch.member_change(c.request_id, c.change)?,
                    None => tracing::error!(index = e.index, "undecodable configuration change skipped"),
                }
            } else if e.get_entry_type() != EntryType::EntryNormal {
                tracing::warn!(index = e.index, "entry of a type oxcd does not propose; skipped");
            }
            self.applied = e.index;
            self.applied_term = e.term;
        }
        let Batch { results, jobs, published, members, removed, removed_self, alarms_changed, .. } = batch;
        oxcd_fail::point("applyBeforeConsistentIndex").map_err(|e| fatal(e.into()))?;
        {
            let mut m = wtx.bucket(META).map_err(fatal)?;
            m.put(meta::CONSISTENT_INDEX, &self.applied.to_be_bytes()).map_err(fatal)?;
            m.put(meta::TERM, &self.applied_term.to_be_bytes()).map_err(fatal)?;
        }
        // --backend-batch-limit: this many applied requests since the last durable commit make
        // this commit durable.
        wtx.count_ops(ops);
        wtx.commit().map_err(fatal)?;
        self.state.store.publish();
        let members_changed = members.is_some();
        if let Some(members) = members {
            self.state.members = Arc::new(members);
        }
        if members_changed || alarms_changed {
            self.cell.publish(self.state.clone());
        }
        // Published before the answers, so that a client answered can count on it (Raft refuses a
        // configuration change while the one before is not applied as far as it knows).
        self.publish_applied();
        // Answers go out within the first decision: the waiting clients are the latency that matters.
        (self.decided)(Decision::Applied(Applied {
            events: published,
            removed,
            members_changed,
            removed_self,
            results,
        }));
        for job in jobs {
            let _ = self.compactor_tx.send(job);
        }
        self.bytes_since_snapshot += entries.iter().map(|e| e.data.len()).sum::<usize>();
        // A term of 0 is one not known (a backend older than the term's record, with every entry of
        // this batch already applied): the WAL snapshot waits for an entry that names it.
        if self.applied_term != 0 && self.snapshot_due_at(self.applied, self.bytes_since_snapshot) {
            self.bytes_since_snapshot = 0;
            // The WAL may drop entries only once the backend holds them durably.
            backend.flush().map_err(fatal)?;
            self.last_snapshot = self.applied;
            (self.decided)(Decision::LogCompactable { index: self.applied, term: self.applied_term });
        }
        Ok(())
    }

    fn publish_applied(&self) {
        self.published.index.store(self.applied, Ordering::Release);
        let _ = self.published.tx.send(self.applied);
    }

    /// Replaces the backend with the snapshot the leader sent, then continues after it.
    fn install_snapshot(&mut self, msg: ApplyMsg) -> Result<(), ApplyError> {
        let ApplyMsg::Snapshot { index, db } = msg else { return Ok(()) };
        if index <= self.applied {
            let _ = std::fs::remove_file(&db);
            return Ok(());
        }
        let cell = self.cell.clone();
        let _swapping = cell.file_swap();
        crate::metrics::SNAPSHOT_APPLY_IN_PROGRESS.set(1);
        let _applied = InProgress;
        let path = self.state.backend.path().to_path_buf();
        crate::datadir::rename_durably(&db, &path).map_err(|e| fatal(e.into()))?;
        oxcd_fail::point("applyAfterInstallSnap").map_err(|e| fatal(e.into()))?;
        let backend = Arc::new(Backend::open(&path, batch_config(&self.cfg)).map_err(fatal)?);
        let ci = consistent_index(&backend).map_err(fatal)?;
        let ci_term = consistent_term(&backend).map_err(fatal)?;
        let MemberState { view, removed, pending_compaction } =
            MemberState::load(backend, &self.cfg).map_err(ApplyError::Fatal)?;
        if let Some(rev) = pending_compaction {
            let _ = self.compactor_tx.send(CompactJob { store: view.store.clone(), rev, waiters: Vec::new() });
        }
        let store = view.store.clone();
        self.state = view;
        self.cell.publish(self.state.clone());
        (self.decided)(Decision::Installed { store, removed });
        // The leader streamed its backend as it was applied, at or past the snapshot's index.
        self.applied = index.max(ci);
        self.applied_term = if ci >= index { ci_term } else { 0 };
        self.last_snapshot = self.applied;
        tracing::info!(index, consistent_index = ci, "installed backend snapshot");
        self.publish_applied();
        Ok(())
    }
}

/// A request's name in `etcd_server_apply_duration_seconds` (etcd's `op` label).
fn op_name(r: &Request) -> &'static str {
    match r {
        Request::Put(_) => "Put",
        Request::DeleteRange(_) => "DeleteRange",
        Request::Txn(_) => "Txn",
        Request::Compaction(_) => "Compaction",
        Request::LeaseGrant(_) => "LeaseGrant",
        Request::LeaseRevoke(_) => "LeaseRevoke",
        Request::LeaseCheckpoint(_) => "LeaseCheckpoint",
        Request::Alarm(_) => "Alarm",
        Request::ClusterVersionSet(_) => "ClusterVersionSet",
        Request::MemberAttrSet(_) => "ClusterMemberAttrSet",
        Request::MemberUpdate(_) => "MemberUpdate",
        Request::Authenticate(_) => "Authenticate",
        Request::AuthEnable(_) => "AuthEnable",
        Request::AuthDisable(_) => "AuthDisable",
        Request::AuthStatus(_) => "AuthStatus",
        Request::AuthUserAdd(_) => "AuthUserAdd",
        Request::AuthUserDelete(_) => "AuthUserDelete",
        Request::AuthUserChangePassword(_) => "AuthUserChangePassword",
        Request::AuthUserGrantRole(_) => "AuthUserGrantRole",
        Request::AuthUserGet(_) => "AuthUserGet",
        Request::AuthUserRevokeRole(_) => "AuthUserRevokeRole",
        Request::AuthRoleAdd(_) => "AuthRoleAdd",
        Request::AuthRoleGrantPermission(_) => "AuthRoleGrantPermission",
        Request::AuthRoleGet(_) => "AuthRoleGet",
        Request::AuthRoleRevokePermission(_) => "AuthRoleRevokePermission",
        Request::AuthRoleDelete(_) => "AuthRoleDelete",
        Request::AuthUserList(_) => "AuthUserList",
        Request::AuthRoleList(_) => "AuthRoleList",
    }
}

/// While a snapshot from the leader is installed (`etcd_server_snapshot_apply_in_progress_total`).
struct InProgress;

impl Drop for InProgress {
    fn drop(&mut self) {
        crate::metrics::SNAPSHOT_APPLY_IN_PROGRESS.set(0);
    }
}

fn fatal(e: oxcd_backend::BackendError) -> ApplyError {
    ApplyError::Fatal(e.into())
}

fn compaction_resp(store: &Store) -> CompactionResponse {
    CompactionResponse { header: Some(ResponseHeader { revision: store.write_rev(), ..Default::default() }) }
}

/// What one apply batch (one backend transaction) collects on its way.
struct Batch<'a, 'b> {
    me: MemberId,
    store: &'a Arc<Store>,
    lessor: &'a Lessor,
    auth: &'a oxcd_auth::AuthStore,
    wtx: &'a WriteTxn<'b>,
    /// The moment the batch is applied (lease deadlines count from it).
    now: Instant,
    /// The members before this batch.
    current_members: &'a Members,
    alarms: &'a mut Arc<Alarms>,
    alarms_changed: bool,
    results: Vec<(u64, ApplyResult)>,
    jobs: Vec<CompactJob>,
    /// New revisions and their events, for the watchers once committed.
    published: Vec<(i64, Vec<Event>)>,
    /// The members as this batch changed them (`None`: unchanged).
    members: Option<Members>,
    /// Members this batch removed.
    removed: Vec<MemberId>,
    /// This member's own removal was applied: it stops once the batch is committed.
    removed_self: bool,
    /// `--max-learners`.
    max_learners: usize,
}

impl Batch<'_, '_> {
    /// Applies one request (the entry at `index`); a rejected request is answered with its error
    /// and writes nothing.
    fn apply(&mut self, header: RequestHeader, index: u64, req: Request) -> Result<(), ApplyError> {
        let id = header.id;
        // NOSPACE raised: what takes space is refused until the alarm is disarmed (etcd's capped
        // applier).
        let takes_space = || match &req {
            Request::Put(_) | Request::LeaseGrant(_) => true,
            Request::Txn(t) => crate::alarms::txn_cost(t) > 0,
            _ => false,
        };
        // CORRUPT raised: every write is refused (etcd's corrupt applier; reads are served).
        let writes = matches!(
            &req,
            Request::Put(_)
                | Request::DeleteRange(_)
                | Request::Txn(_)
                | Request::Compaction(_)
                | Request::LeaseGrant(_)
                | Request::LeaseRevoke(_)
        );
        if writes && self.alarms.corrupt() {
            self.results.push((id, Err(EtcdError::Corrupt)));
            return Ok(());
        }
        if self.alarms.no_space() && takes_space() {
            self.results.push((id, Err(EtcdError::NoSpace)));
            return Ok(());
        }
        if !header.system {
            let who = oxcd_auth::AuthInfo { user: header.username, revision: header.auth_revision };
            if let Err(e) = auth::permitted(self.auth, self.lessor, &who, &req) {
                self.results.push((id, Err(e)));
                return Ok(());
            }
        }
        if auth::is_auth(&req) {
            let result = auth::apply(self.auth, self.wtx, index, req).map_err(fatal)?;
            self.results.push((id, result));
            return Ok(());
        }
        let result = match req {
            Request::Compaction(c) => return self.compaction(id, c.revision, c.physical),
            Request::MemberAttrSet(m) => self.member_attrs(m).map(|()| Response::Empty),
            Request::ClusterVersionSet(v) => self.cluster_version(&v.ver).map(|()| Response::Empty),
            Request::MemberUpdate(m) => self.member_update(m).map(|()| Response::Empty),
            Request::LeaseGrant(g) => lease::grant(self.lessor, self.wtx, self.store, &g, self.now),
            Request::LeaseRevoke(r) => self.revoke(LeaseId(r.id)),
            Request::LeaseCheckpoint(c) => {
                lease::checkpoint(self.lessor, self.wtx, &c, self.now).map(|()| Response::Empty)
            }
            Request::Alarm(a) => self.alarm(a),
            kv @ (Request::Put(_) | Request::DeleteRange(_) | Request::Txn(_)) => self.kv(kv),
            _ => unreachable!("Auth requests are applied above"),
        };
        match result {
            Ok(r) => self.results.push((id, Ok(r))),
            Err(ApplyError::Reject(e)) => self.results.push((id, Err(e))),
            Err(f) => return Err(f),
        }
        Ok(())
    }

    /// etcd's alarm actions: list, raise, clear (the response has no header, as etcd's).
    fn alarm(&mut self, a: AlarmRequest) -> request::Result<Response> {
        let listed = match alarm_request::AlarmAction::try_from(a.action) {
            Ok(alarm_request::AlarmAction::Get) => self.alarms.get(a.alarm),
            // etcd ignores raising "no alarm".
            Ok(alarm_request::AlarmAction::Activate) if a.alarm == AlarmType::None as i32 => Vec::new(),
            Ok(alarm_request::AlarmAction::Activate) => {
                let alarms = Arc::make_mut(self.alarms);
                self.alarms_changed = true;
                let raised = !alarms.no_space();
                let m = alarms.activate(self.wtx, a.member_id, a.alarm).map_err(fatal)?;
                if raised && alarms.no_space() {
                    tracing::warn!(member_id = %MemberId(a.member_id), "NOSPACE alarm raised: writes that take space are refused");
                }
                vec![m]
            }
            Ok(alarm_request::AlarmAction::Deactivate) => {
                let alarms = Arc::make_mut(self.alarms);
                self.alarms_changed = true;
                let m = alarms.deactivate(self.wtx, a.member_id, a.alarm).map_err(fatal)?;
                if m.is_some() && a.alarm == AlarmType::Nospace as i32 && !alarms.no_space() {
                    tracing::info!("NOSPACE alarm disarmed");
                }
                m.into_iter().collect()
            }
            Err(_) => Vec::new(),
        };
        Ok(Response::Alarm(AlarmResponse { header: None, alarms: listed }))
    }

    /// A KV write request in its own store transaction (one revision).
    fn kv(&mut self, req: Request) -> request::Result<Response> {
        let mut txn = self.store.write(self.wtx).map_err(ApplyError::Fatal)?;
        let result = match &req {
            Request::Put(p) => request::apply_put(&mut txn, self.lessor, p).map(Response::Put),
            Request::DeleteRange(d) => request::apply_delete_range(&mut txn, d).map(Response::DeleteRange),
            Request::Txn(t) => request::apply_txn(&mut txn, self.lessor, t).map(Response::Txn),
            _ => unreachable!("only KV requests reach kv()"),
        };
        debug_assert!(result.is_ok() || txn.changes().is_empty(), "a rejected request wrote nothing");
        self.end(txn);
        result
    }

    /// Revokes a lease: its keys are deleted in one revision.
    fn revoke(&mut self, id: LeaseId) -> request::Result<Response> {
        let keys = self.lessor.revoke(id).ok_or(EtcdError::LeaseNotFound)?;
        let mut txn = self.store.write(self.wtx).map_err(ApplyError::Fatal)?;
        for k in &keys {
            txn.delete_range(k, None).map_err(ApplyError::Fatal)?;
        }
        self.end(txn);
        lease::delete(self.wtx, id).map_err(fatal)?;
        Ok(Response::LeaseRevoke(LeaseRevokeResponse {
            header: Some(ResponseHeader { revision: self.store.write_rev(), ..Default::default() }),
        }))
    }

    /// Ends a store transaction, keeping its events for the watchers.
    fn end(&mut self, txn: oxcd_mvcc::TxnWrite<'_, '_>) {
        let (rev, events) = txn.end();
        if !events.is_empty() {
            self.published.push((rev, events));
        }
    }

    fn compaction(&mut self, id: u64, rev: i64, physical: bool) -> Result<(), ApplyError> {
        let result = match self.store.compact(self.wtx, rev) {
            Ok(()) => Ok(Response::Compaction(compaction_resp(self.store))),
            Err(e) => match ApplyError::from(e) {
                ApplyError::Reject(e) => Err(e),
                f => return Err(f),
            },
        };
        if result.is_ok() {
            // A physical compaction answers once the compactor is done.
            let waiters = if physical { vec![(id, result.clone())] } else { Vec::new() };
            self.jobs.push(CompactJob { store: self.store.clone(), rev, waiters });
            if physical {
                return Ok(());
            }
        }
        self.results.push((id, result));
        Ok(())
    }
}

impl Batch<'_, '_> {
    /// The members as changed so far in this batch (a copy of the applied ones, on first use).
    fn members(&mut self) -> &mut Members {
        let current = self.current_members;
        self.members.get_or_insert_with(|| current.clone())
    }

    /// The leader decided the cluster version: kept in the `cluster` bucket, logged as etcd logs it.
    fn cluster_version(&mut self, ver: &str) -> Result<(), ApplyError> {
        let wtx = self.wtx;
        let members = self.members();
        let old = members.version().map(str::to_string);
        if old.as_deref() == Some(ver) {
            return Ok(());
        }
        members.set_version(wtx, ver).map_err(fatal)?;
        let short = |v: &str| v.rsplit_once('.').map_or(v, |(major_minor, _)| major_minor).to_string();
        match old {
            None => {
                tracing::info!(local_member_id = %self.me, cluster_version = short(ver), "set initial cluster version")
            }
            Some(old) => {
                tracing::info!(local_member_id = %self.me, from = short(&old), to = short(ver), "updated cluster version")
            }
        }
        tracing::info!(cluster_version = short(ver), "enabled capabilities for version");
        Ok(())
    }

    /// A started member publishes its name and client URLs.
    fn member_attrs(&mut self, m: MemberAttrSetRequest) -> Result<(), ApplyError> {
        let wtx = self.wtx;
        if let Some(member) = self.members().get_mut(MemberId(m.member_id)) {
            member.name = m.name;
            member.client_urls = m.client_urls;
            Members::save(wtx, member).map_err(fatal)?;
        }
        Ok(())
    }

    /// MemberUpdate: new peer URLs.
    fn member_update(&mut self, m: MemberUpdateRequest) -> Result<(), ApplyError> {
        let wtx = self.wtx;
        match self.members().get_mut(MemberId(m.member_id)) {
            Some(member) => {
                member.peer_urls = m.peer_urls;
                Members::save(wtx, member).map_err(fatal)?;
                Ok(())
            }
            None => Err(ApplyError::Reject(EtcdError::MemberNotFound)),
        }
    }

    /// A committed configuration change (Raft already applied it to its configuration).
    fn member_change(&mut self, id: u64, change: MemberChange) -> Result<(), ApplyError> {
        let (wtx, me, max_learners) = (self.wtx, self.me, self.max_learners);
        let members = self.members();
        let learners = members.iter().filter(|m| m.is_learner).count();
        if let Err(e) = change.check(|id| members.get(id).map(|m| m.is_learner), learners, max_learners) {
            // The Raft thread skipped it too (same rule, same configuration at this index).
            self.results.push((id, Err(e)));
            return Ok(());
        }
        match change {
            MemberChange::Add(m) => {
                if members.get(m.id).is_none() {
                    Members::save(wtx, &m).map_err(fatal)?;
                    members.insert(m);
                }
            }
            MemberChange::Promote(who) => {
                if let Some(m) = members.get_mut(who) {
                    m.is_learner = false;
                    Members::save(wtx, m).map_err(fatal)?;
                }
            }
            MemberChange::Update(who, peer_urls) => {
                if let Some(m) = members.get_mut(who) {
                    m.peer_urls = peer_urls;
                    Members::save(wtx, m).map_err(fatal)?;
                }
            }
            MemberChange::Remove(who) => {
                members.remove(who);
                Members::delete(wtx, who).map_err(fatal)?;
                Members::mark_removed(wtx, who).map_err(fatal)?;
                self.removed.push(who);
                self.removed_self |= who == me;
            }
        }
        self.results.push((id, Ok(Response::Empty)));
        Ok(())
    }
}

/// The background compactor: runs compactions in order and hands physical-compaction waiters
/// their answers.
pub fn run_compactor(rx: Receiver<CompactJob>, cfg: &ServerConfig, answer: impl Fn(u64, ApplyResult)) {
    let batch = if cfg.compaction_batch_limit <= 0 { 1000 } else { cfg.compaction_batch_limit as usize };
    while let Ok(job) = rx.recv() {
        let started = Instant::now();
        let outcome = job.store.run_compaction(job.rev, batch, cfg.compaction_sleep_interval);
        match &outcome {
            Ok(()) => {
                tracing::info!(compact_revision = job.rev, took = ?started.elapsed(), "finished scheduled compaction")
            }
            Err(e) => tracing::error!(rev = job.rev, error = %e, "compaction failed"),
        }
        for (id, r) in job.waiters {
            let r = match &outcome {
                Ok(()) => r,
                Err(_) => Err(EtcdError::Stopped),
            };
            answer(id, r);
        }
    }
}

/// Batch settings of the backend, from the member's config.
pub fn batch_config(cfg: &ServerConfig) -> BatchConfig {
    BatchConfig {
        interval: if cfg.backend_batch_interval.is_zero() {
            Duration::from_secs(1)
        } else {
            cfg.backend_batch_interval
        },
        limit: if cfg.backend_batch_limit <= 0 { 10_000 } else { cfg.backend_batch_limit as usize },
    }
}
