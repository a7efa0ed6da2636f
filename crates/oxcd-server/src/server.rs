//! The member as the services see it: who it is, its store, and the two ways a request reaches the
//! state machine — [`EtcdServer::propose`] (writes: through Raft, answered after apply) and
//! [`EtcdServer::linearizable_read`] (reads: a shared ReadIndex, then a local read).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use oxcd_api::EtcdError;
use oxcd_api::etcdserverpb::ResponseHeader;
use oxcd_api::oxcdpb::{InternalRaftRequest, RequestHeader, internal_raft_request::Request};
use oxcd_auth::AuthStore;
use oxcd_backend::{Backend, BatchConfig};
use oxcd_lease::Lessor;
use oxcd_mvcc::Store;
use oxcd_mvcc::watchable::WatchableStore;
use parking_lot::RwLock;
use prost::Message;
use tokio::sync::watch;

use crate::alarms::Alarms;
use crate::config::ServerConfig;
use crate::hot_wait::HotWait;
use crate::ids::{ClusterId, IdGenerator, MemberId};
use crate::membership::Members;
use crate::raft::ReadIndexHub;
use crate::raft::{RaftInput, RaftStatus, Transport};
use crate::wait::{Response, Wait};

/// Committed-but-unapplied entries beyond which new proposals are refused (etcd: 5000).
const MAX_APPLY_GAP: u64 = 5000;

/// Shared state of one member.
pub struct EtcdServer {
    /// Itself, for tasks that must outlive a borrowed call (see [`EtcdServer::handle`]).
    me: std::sync::Weak<EtcdServer>,
    pub(crate) cfg: ServerConfig,
    pub(crate) id: MemberId,
    pub(crate) cluster_id: ClusterId,
    backend: Arc<RwLock<Arc<Backend>>>,
    store: RwLock<Arc<Store>>,
    lessor: RwLock<Arc<Lessor>>,
    auth: RwLock<Arc<AuthStore>>,
    /// The raised alarms (see `alarms`), changed only by the applier.
    pub alarms: RwLock<Alarms>,
    pub(crate) members: RwLock<Members>,
    /// Watchers of every stream on this member.
    pub(crate) watchable: Arc<WatchableStore>,
    pub(crate) wait: Wait,
    pub(crate) ids: Arc<IdGenerator>,
    /// Index of the last entry applied to the backend.
    pub(crate) applied: Arc<AtomicU64>,
    pub(crate) raft: Arc<RaftStatus>,
    pub(crate) raft_tx: Sender<RaftInput>,
    pub(crate) read_hub: Arc<ReadIndexHub>,
    pub(crate) stop_tx: watch::Sender<bool>,
    /// Where writes wait for the applier.
    hot_wait: HotWait,
    /// Client connections to other members (for forwarding to the leader), by member id.
    peer_clients: parking_lot::Mutex<std::collections::HashMap<u64, (String, tonic::transport::Channel)>>,
    /// Held while the backend file is replaced (a snapshot from the leader is installed, or the
    /// backend is defragmented), so that one replacement never overwrites the other.
    pub(crate) file_swap: parking_lot::Mutex<()>,
    /// The peer transport (its peers follow the members).
    pub(crate) transport: Arc<Transport>,
    /// Whether this member is a learner (follows the members).
    learner: std::sync::atomic::AtomicBool,
}

/// Everything a member rebuilds from a backend file (at start, or when a snapshot is installed).
pub(crate) struct MemberState {
    pub backend: Arc<Backend>,
    pub store: Arc<Store>,
    pub lessor: Arc<Lessor>,
    pub auth: Arc<AuthStore>,
    pub members: Members,
    /// Members removed from the cluster (their peer connections are refused).
    pub removed: Vec<MemberId>,
    pub alarms: Alarms,
    /// A compaction scheduled but not finished before the last stop.
    pub pending_compaction: Option<i64>,
}

impl MemberState {
    /// Loads everything kept in `backend`.
    pub fn load(backend: Arc<Backend>, cfg: &ServerConfig) -> Result<MemberState, oxcd_mvcc::MvccError> {
        let lessor =
            Arc::new(Lessor::with_limits(cfg.min_lease_ttl_secs(), Duration::from_millis(cfg.election_timeout)));
        // Leases first: the store attaches keys to them as it rebuilds its index.
        crate::apply::load_leases(&backend, &lessor, std::time::Instant::now())?;
        let (store, pending_compaction) = Store::open(backend.clone(), lessor.clone())?;
        let auth = Arc::new(AuthStore::open(&backend)?);
        let rtx = backend.read()?;
        let (members, alarms) = (Members::load(&rtx)?, Alarms::load(&rtx)?);
        let removed = Members::load_removed(&rtx)?;
        Ok(MemberState { backend, store: Arc::new(store), lessor, auth, members, removed, alarms, pending_compaction })
    }
}

/// The parts [`EtcdServer::new`] is built from (assembled by the bootstrap).
pub(crate) struct ServerParts {
    pub cfg: ServerConfig,
    pub id: MemberId,
    pub cluster_id: ClusterId,
    /// The backend cell shared with the transport (which streams it to followers).
    pub backend: Arc<RwLock<Arc<Backend>>>,
    pub state: MemberState,
    pub applied: Arc<AtomicU64>,
    pub raft: Arc<RaftStatus>,
    pub raft_tx: Sender<RaftInput>,
    pub transport: Arc<Transport>,
}

impl EtcdServer {
    pub(crate) fn new(p: ServerParts) -> Arc<EtcdServer> {
        let watchable = WatchableStore::new(p.state.store.clone(), p.cfg.max_request_bytes);
        p.transport.mark_removed(p.state.removed.iter().copied());
        Arc::new_cyclic(|me| EtcdServer {
            me: me.clone(),
            ids: Arc::new(IdGenerator::new(p.id)),
            cfg: p.cfg,
            id: p.id,
            cluster_id: p.cluster_id,
            backend: p.backend,
            store: RwLock::new(p.state.store),
            lessor: RwLock::new(p.state.lessor),
            auth: RwLock::new(p.state.auth),
            watchable,
            members: RwLock::new(p.state.members),
            transport: p.transport,
            alarms: RwLock::new(p.state.alarms),
            wait: Wait::default(),
            applied: p.applied,
            raft: p.raft,
            raft_tx: p.raft_tx,
            read_hub: ReadIndexHub::new(),
            stop_tx: watch::channel(false).0,
            hot_wait: HotWait::default(),
            peer_clients: Default::default(),
            file_swap: parking_lot::Mutex::new(()),
            learner: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// An owning handle to this member (it lives as long as any handle).
    pub(crate) fn handle(&self) -> Arc<EtcdServer> {
        self.me.upgrade().expect("a member is used only while an Arc to it exists")
    }

    pub fn member_id(&self) -> MemberId {
        self.id
    }

    pub fn cluster_id(&self) -> ClusterId {
        self.cluster_id
    }

    pub fn backend(&self) -> Arc<Backend> {
        self.backend.read().clone()
    }

    pub fn store(&self) -> Arc<Store> {
        self.store.read().clone()
    }

    pub fn lessor(&self) -> Arc<Lessor> {
        self.lessor.read().clone()
    }

    pub fn auth(&self) -> Arc<AuthStore> {
        self.auth.read().clone()
    }

    pub(crate) fn batch_config(&self) -> BatchConfig {
        crate::apply::batch_config(&self.cfg)
    }

    /// Swaps in the state rebuilt from a backend snapshot.
    pub(crate) fn swap_state(&self, state: MemberState) {
        *self.backend.write() = state.backend;
        self.watchable.reset(state.store.clone());
        *self.store.write() = state.store;
        *self.lessor.write() = state.lessor;
        *self.auth.write() = state.auth;
        *self.members.write() = state.members;
        self.transport.mark_removed(state.removed);
        *self.alarms.write() = state.alarms;
    }

    /// Points the peer transport at the members: every other member by its first peer URL, and
    /// no one else.
    pub(crate) fn sync_peers(&self) {
        let members = self.members.read().clone();
        let learner = members.get(self.id).is_some_and(|m| m.is_learner);
        self.learner.store(learner, Ordering::Release);
        let mut ids = Vec::new();
        for m in members.iter().filter(|m| m.id != self.id) {
            ids.push(m.id);
            match m.peer_urls.first().map(|u| crate::config::parse_url(u)) {
                Some(Ok(addr)) => self.transport.add_peer(m.id, addr),
                _ => tracing::warn!(member = %m.id, urls = ?m.peer_urls, "member without a usable peer URL"),
            }
        }
        self.transport.retain_peers(&ids);
    }

    /// Whether this member is a learner: it serves only Status and serializable reads (etcd).
    pub fn is_learner(&self) -> bool {
        self.learner.load(Ordering::Acquire)
    }

    /// Whether this member knows a leader.
    pub fn has_leader(&self) -> bool {
        self.raft.leader() != raft::INVALID_ID
    }

    /// A response header from this member at `revision`.
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader { cluster_id: self.cluster_id.0, member_id: self.id.0, revision, raft_term: self.raft.term() }
    }

    /// Completes a header that carries a revision (ids and term).
    pub fn fill_header_from(&self, h: &mut ResponseHeader) {
        *h = self.header(h.revision);
    }

    /// Completes a header the applier filled with a revision.
    pub fn fill_header(&self, h: &mut Option<ResponseHeader>) {
        let revision = h.as_ref().map(|h| h.revision).unwrap_or(0);
        *h = Some(self.header(revision));
    }

    /// Proposes a request through Raft and waits until it is applied on this member.
    pub async fn propose(&self, req: Request) -> Result<Response, EtcdError> {
        let committed = self.raft.committed.load(Ordering::Acquire);
        if committed > self.applied.load(Ordering::Acquire) + MAX_APPLY_GAP {
            return Err(EtcdError::TooManyRequests);
        }
        let id = self.ids.next();
        let msg = InternalRaftRequest { header: Some(RequestHeader { id, ..Default::default() }), request: Some(req) };
        let data = msg.encode_to_vec();
        if data.len() > self.cfg.max_request_bytes {
            return Err(EtcdError::RequestTooLarge);
        }
        self.propose_and_wait(id, RaftInput::Propose(data)).await
    }

    /// Hands a proposal carrying request id `id` to the Raft thread and waits until this member
    /// has applied it (or the request times out).
    pub(crate) async fn propose_and_wait(&self, id: u64, proposal: RaftInput) -> Result<Response, EtcdError> {
        let rx = self.wait.register(id);
        // Forget the wait if the caller goes away (client cancel) or times out.
        let _forget = ForgetOnDrop { wait: &self.wait, id };
        let started = Instant::now();
        if self.raft_tx.send(proposal).is_err() {
            return Err(EtcdError::Stopped);
        }
        match self.hot_wait.wait(rx, self.cfg.request_timeout()).await {
            Ok(Some(result)) => result,
            Ok(None) => Err(self.timeout_error(started)),
            Err(()) => Err(EtcdError::Stopped),
        }
    }

    /// etcd's `parseProposeCtxErr`: a request that started shortly before the current leader was
    /// elected timed out because the previous leader failed.
    fn timeout_error(&self, started: Instant) -> EtcdError {
        let leader_since = *self.raft.leader_since.lock();
        let window = std::time::Duration::from_millis(2 * self.cfg.election_timeout);
        let lost = leader_since.checked_sub(window).unwrap_or(leader_since);
        if started > lost && started < leader_since { EtcdError::TimeoutDueToLeaderFail } else { EtcdError::Timeout }
    }

    /// Waits until reading locally is linearizable (one ReadIndex shared by concurrent readers).
    ///
    /// The leader of a one-voter configuration reads at once once it has applied its first entry
    /// as leader: every write acknowledged since was committed by this member alone and applied
    /// before its response went out, every earlier one (say, replayed from the WAL after a
    /// restart) is applied by then, and readers only ever see applied state.
    pub async fn linearizable_read(&self) -> Result<(), EtcdError> {
        let from = self.raft.sole_leader_from.load(Ordering::Acquire);
        if from != 0 && self.applied.load(Ordering::Acquire) >= from {
            return Ok(());
        }
        // The round itself gives up at the request timeout; this bound only guards a lost round.
        self.read_hub.read_barrier(2 * self.cfg.request_timeout()).await
    }

    /// A (lazily connected, cached) client channel to member `id` at `url`.
    pub(crate) fn leader_channel(
        &self,
        id: u64,
        url: &str,
    ) -> Result<tonic::transport::Channel, tonic::transport::Error> {
        let mut clients = self.peer_clients.lock();
        if let Some((u, ch)) = clients.get(&id)
            && u == url
        {
            return Ok(ch.clone());
        }
        let ch = tonic::transport::Endpoint::from_shared(url.to_string())?
            .tcp_nodelay(true)
            .connect_timeout(std::time::Duration::from_secs(1))
            .connect_lazy();
        clients.insert(id, (url.to_string(), ch.clone()));
        Ok(ch)
    }

    /// Asks the member to stop.
    pub fn stop(&self) {
        let _ = self.stop_tx.send(true);
    }

    /// Resolves when the member is asked to stop.
    pub async fn stopped(&self) {
        let mut rx = self.stop_tx.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }
}

struct ForgetOnDrop<'a> {
    wait: &'a Wait,
    id: u64,
}

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        self.wait.cancel(self.id);
    }
}
