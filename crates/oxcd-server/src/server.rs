//! The member as the services see it: who it is, its store, and the two ways a request reaches the
//! state machine — [`EtcdServer::propose`] (writes: through Raft, answered after apply) and
//! [`EtcdServer::linearizable_read`] (reads: a shared ReadIndex, then a local read).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crossbeam_channel::Sender;
use oxcd_api::EtcdError;
use oxcd_api::etcdserverpb::ResponseHeader;
use oxcd_api::oxcdpb::{InternalRaftRequest, RequestHeader, internal_raft_request::Request};
use oxcd_auth::AuthStore;
use oxcd_backend::Backend;
use oxcd_lease::Lessor;
use oxcd_mvcc::Store;
use oxcd_mvcc::watchable::WatchableStore;
use prost::Message;
use tokio::sync::watch;

use crate::alarms::Alarms;
use crate::apply::state::StateCell;
use crate::apply::{Applied, Decision};
use crate::config::ServerConfig;
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
    /// The applied state, as the applier last published it.
    state: Arc<StateCell>,
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
    /// Set by [`EtcdServer::fail`]: the member stops because something failed (the process then
    /// exits non-zero, so that a supervisor restarts it).
    failed: std::sync::atomic::AtomicBool,
    /// Client connections to other members (for forwarding to the leader), by member id.
    peer_clients: parking_lot::Mutex<std::collections::HashMap<u64, (String, tonic::transport::Channel)>>,
    /// The peer transport (its peers follow the members).
    pub(crate) transport: Arc<Transport>,
    /// Whether this member is a learner (follows the members).
    learner: std::sync::atomic::AtomicBool,
    /// TLS toward other members' `https://` client URLs (requests forwarded to the leader).
    forward_tls: Option<Arc<crate::tls::ClientTls>>,
    /// A member that joined and has not installed the leader's snapshot yet: it proposes nothing
    /// before (the format of the log, oxcd's or etcd's, comes with the snapshot).
    awaiting_snapshot: std::sync::atomic::AtomicBool,
    /// What `/metrics` serves.
    pub(crate) metrics: crate::metrics::Metrics,
    /// The gRPC calls' spans, with `--experimental-enable-distributed-tracing`.
    pub(crate) tracer: Option<Arc<crate::otel::Tracer>>,
}

/// The parts [`EtcdServer::new`] is built from (assembled by the bootstrap).
pub(crate) struct ServerParts {
    pub cfg: ServerConfig,
    pub id: MemberId,
    pub cluster_id: ClusterId,
    /// The applied state, as the applier publishes it.
    pub state: Arc<StateCell>,
    pub applied: Arc<AtomicU64>,
    pub raft: Arc<RaftStatus>,
    pub raft_tx: Sender<RaftInput>,
    pub transport: Arc<Transport>,
    /// TLS toward other members' `https://` client URLs, when the client port has a certificate.
    pub forward_tls: Option<Arc<crate::tls::ClientTls>>,
    /// Joined, nothing applied yet (the member then waits for the leader's snapshot to propose).
    pub awaiting_snapshot: bool,
}

impl EtcdServer {
    pub(crate) fn new(p: ServerParts) -> Arc<EtcdServer> {
        let watchable = WatchableStore::new(p.state.store(), p.cfg.max_request_bytes);
        let metrics = crate::metrics::Metrics::new(p.id, p.cfg.metrics == "extensive");
        let tracer = p.cfg.enable_distributed_tracing.then(|| {
            crate::otel::Tracer::start(crate::otel::TracingConfig {
                address: p.cfg.distributed_tracing_address.clone(),
                service_name: p.cfg.distributed_tracing_service_name.clone(),
                instance_id: p.cfg.distributed_tracing_instance_id.clone(),
                sampling_rate: p.cfg.distributed_tracing_sampling_rate.clamp(0, 1_000_000) as u32,
            })
        });
        Arc::new_cyclic(|me| EtcdServer {
            me: me.clone(),
            ids: Arc::new(IdGenerator::new(p.id)),
            cfg: p.cfg,
            id: p.id,
            cluster_id: p.cluster_id,
            state: p.state,
            watchable,
            transport: p.transport,
            wait: Wait::default(),
            applied: p.applied,
            raft: p.raft,
            raft_tx: p.raft_tx,
            read_hub: ReadIndexHub::new(),
            stop_tx: watch::channel(false).0,
            failed: Default::default(),
            peer_clients: Default::default(),
            learner: std::sync::atomic::AtomicBool::new(false),
            forward_tls: p.forward_tls,
            awaiting_snapshot: std::sync::atomic::AtomicBool::new(p.awaiting_snapshot),
            metrics,
            tracer,
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
        self.state.backend()
    }

    pub fn store(&self) -> Arc<Store> {
        self.state.store()
    }

    pub fn lessor(&self) -> Arc<Lessor> {
        self.state.view().lessor.clone()
    }

    /// The lessor for what only the leader's answers (keep-alive, TimeToLive), and the leader
    /// it was read with: when it is this member, the lessor is promoted now if the lease duties
    /// have not noticed yet (a no-op otherwise).
    pub(crate) fn leaders_lessor(&self) -> (Arc<Lessor>, u64) {
        let lessor = self.lessor();
        let leader = self.raft.leader();
        if leader == self.member_id().0 {
            lessor.promote(std::time::Instant::now());
        }
        (lessor, leader)
    }

    /// Lease `id`'s TimeToLive from this member's lessor (the leader's answer), with its keys if
    /// asked; `None` for a lease it does not know.
    pub(crate) fn lease_time_to_live(
        &self,
        lessor: &Lessor,
        id: i64,
        keys: bool,
    ) -> Option<oxcd_api::etcdserverpb::LeaseTimeToLiveResponse> {
        let t = lessor.time_to_live(oxcd_lease::LeaseId(id), std::time::Instant::now(), keys)?;
        Some(oxcd_api::etcdserverpb::LeaseTimeToLiveResponse {
            header: None,
            id,
            ttl: t.remaining_secs,
            granted_ttl: t.granted_ttl_secs,
            keys: t.keys.into_iter().map(|k| bytes::Bytes::from(k.into_vec())).collect(),
        })
    }

    pub fn auth(&self) -> Arc<AuthStore> {
        self.state.view().auth.clone()
    }

    /// The members as last applied.
    pub fn members(&self) -> Arc<Members> {
        self.state.view().members.clone()
    }

    /// The raised alarms as last applied.
    pub fn alarms(&self) -> Arc<Alarms> {
        self.state.view().alarms.clone()
    }

    /// The applied state (held while the backend file is replaced: see [`StateCell::file_swap`]).
    pub(crate) fn state(&self) -> &StateCell {
        &self.state
    }

    /// Acts on what the applier decided, in the order it lists.
    pub(crate) fn act_on(&self, decision: Decision) {
        match decision {
            Decision::Applied(Applied { events, removed, members_changed, removed_self, results }) => {
                for (rev, events) in events {
                    self.watchable.publish(rev, events);
                }
                if !removed.is_empty() {
                    self.transport.mark_removed(removed);
                }
                if members_changed {
                    self.sync_peers();
                }
                if removed_self {
                    tracing::warn!(member = %self.id, "the member has been permanently removed from the cluster; stopping");
                    self.stop();
                }
                for (id, r) in results {
                    self.wait.trigger(id, r);
                }
            }
            Decision::LogCompactable { index, term } => {
                let _ = self.raft_tx.send(RaftInput::Compact { index, term });
            }
            Decision::Installed { store, removed } => {
                // Every watcher starts over from the new store (their streams resynchronise).
                self.watchable.reset(store);
                self.transport.mark_removed(removed);
                self.sync_peers();
            }
        }
    }

    /// Points the peer transport at the members: every other member by its first peer URL, and
    /// no one else.
    pub(crate) fn sync_peers(&self) {
        let members = self.members();
        let learner = members.get(self.id).is_some_and(|m| m.is_learner);
        self.learner.store(learner, Ordering::Release);
        let mut ids = Vec::new();
        for m in members.iter().filter(|m| m.id != self.id) {
            ids.push(m.id);
            match m.peer_urls.first().map(|u| crate::raft::PeerAddr::parse(u)) {
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

    /// Proposes a request of the member's own (no permission check applies) through Raft and
    /// waits until it is applied on this member.
    pub async fn propose(&self, req: Request) -> Result<Response, EtcdError> {
        let mut header = RequestHeader { system: true, ..Default::default() };
        if self.state.etcd_log() {
            // etcd's log has no such flag: the member proposes as root when auth is on, as
            // etcd's lessor revokes an expired lease (`WithRoot`), which passes every member's
            // permission check (a lock's key deleted when its caller went away is the other
            // request of the member's own that is checked).
            let auth = self.state.view().auth.clone();
            if auth.enabled() {
                header.username = "root".into();
                header.auth_revision = auth.revision();
            }
        }
        self.propose_with(header, req).await
    }

    /// Proposes a client's request, checked when applied against `who` and the auth revision its
    /// credentials were checked at.
    pub async fn propose_as(&self, who: &oxcd_auth::AuthInfo, req: Request) -> Result<Response, EtcdError> {
        let header = RequestHeader { username: who.user.clone(), auth_revision: who.revision, ..Default::default() };
        self.propose_with(header, req).await
    }

    async fn propose_with(&self, mut header: RequestHeader, req: Request) -> Result<Response, EtcdError> {
        let committed = self.raft.committed.load(Ordering::Acquire);
        if committed > self.applied.load(Ordering::Acquire) + MAX_APPLY_GAP {
            return Err(EtcdError::TooManyRequests);
        }
        if self.awaiting_snapshot.load(Ordering::Relaxed) {
            let started = Instant::now();
            while self.applied.load(Ordering::Acquire) == 0 {
                if started.elapsed() >= self.cfg.request_timeout() {
                    return Err(EtcdError::Timeout);
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            self.awaiting_snapshot.store(false, Ordering::Relaxed);
        }
        let id = self.ids.next();
        header.id = id;
        // Encoded, the request is dropped before the wait: its keys and values are slices of
        // the gRPC decode buffer (8 KiB a request), which would otherwise stay allocated for
        // every request in flight until its answer.
        let data = if self.state.etcd_log() {
            oxcd_datadir::etcd_log::encode(&header, &req).map_err(|_| EtcdError::Stopped)?
        } else {
            InternalRaftRequest { header: Some(header), request: Some(req) }.encode_to_vec()
        };
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
        crate::metrics::PROPOSALS_PENDING.inc();
        let _forget = ForgetOnDrop { wait: &self.wait, id };
        let started = Instant::now();
        if self.raft_tx.send(proposal).is_err() {
            crate::metrics::PROPOSALS_FAILED.inc();
            return Err(EtcdError::Stopped);
        }
        match tokio::time::timeout(self.cfg.request_timeout(), rx).await {
            Ok(Ok(result)) => result,
            Err(_) => {
                crate::metrics::PROPOSALS_FAILED.inc();
                Err(self.timeout_error(started))
            }
            Ok(Err(_)) => {
                crate::metrics::PROPOSALS_FAILED.inc();
                Err(EtcdError::Stopped)
            }
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

    /// A (lazily connected, cached) client channel to member `id` at `url`: TLS for an
    /// `https://` URL, presenting this member's client certificate (the client port's own, as
    /// etcd does).
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
        let host = url.split_once("://").map_or(url, |(_, h)| h);
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{host}"))?
            .tcp_nodelay(true)
            .connect_timeout(std::time::Duration::from_secs(1));
        let ch = match (url.starts_with("https://"), &self.forward_tls) {
            (true, Some(tls)) => endpoint.connect_with_connector_lazy(tls_connector(tls.clone())),
            _ => endpoint.connect_lazy(),
        };
        clients.insert(id, (url.to_string(), ch.clone()));
        Ok(ch)
    }

    /// Asks the member to stop.
    pub fn stop(&self) {
        let _ = self.stop_tx.send(true);
    }

    /// Whether this member leads (as its Raft thread last saw).
    pub(crate) fn is_leader(&self) -> bool {
        self.raft.leader() == self.id.0
    }

    /// For the leader's periodic duties: waits `every`, then again until this member leads at the
    /// end of a wait; `false` once the member stops.
    pub(crate) async fn next_turn_as_leader(&self, every: std::time::Duration) -> bool {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = self.stopped() => return false,
            }
            if self.is_leader() {
                return true;
            }
        }
    }

    /// Stops the member because something failed (a WAL or backend write, a listener).
    pub fn fail(&self) {
        self.failed.store(true, Ordering::Release);
        self.stop();
    }

    /// Whether the member stopped (or is stopping) because something failed.
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Resolves when the member is asked to stop.
    pub async fn stopped(&self) {
        let mut rx = self.stop_tx.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// A proposal in flight: pending until it is answered or given up.
struct ForgetOnDrop<'a> {
    wait: &'a Wait,
    id: u64,
}

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        crate::metrics::PROPOSALS_PENDING.dec();
        self.wait.cancel(self.id);
    }
}

/// Dials a member's client port with TLS (HTTP/2 inside, as gRPC needs).
fn tls_connector(
    tls: Arc<crate::tls::ClientTls>,
) -> impl tower::Service<
    http::Uri,
    Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    Error = std::io::Error,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(move |uri: http::Uri| {
        let tls = tls.clone();
        async move {
            let host = uri.host().unwrap_or("localhost").trim_matches(['[', ']']).to_string();
            let port = uri.port_u16().unwrap_or(2379);
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = rustls::pki_types::ServerName::try_from(host)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let mut config = (*tls.config()).clone();
            config.alpn_protocols = vec![b"h2".to_vec()];
            let stream = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await?;
            Ok(hyper_util::rt::TokioIo::new(stream))
        }
    })
}
