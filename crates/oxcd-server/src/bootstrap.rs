//! Starting and stopping a member: data directory, WAL, backend, Raft node, threads, listeners.
//!
//! Data directory layout (etcd's): `member/wal/*.wal` (the WAL), `member/snap/db` (the backend),
//! `member/snap/*.snap.db` (backend snapshots received from a leader, until installed).
//!
//! Threads and tasks, and the order they stop in: gRPC listeners (tokio) → Raft thread → applier
//! (ends when the Raft thread drops its channel) → compactor (ends with the applier) → backend flush
//! → peer transport.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use oxcd_api::EtcdError;
use oxcd_api::etcdserverpb::HashKvResponse;
use oxcd_api::oxcdpb::{ClusterVersionSetRequest, MemberAttrSetRequest, WalMetadata, internal_raft_request::Request};
use oxcd_backend::Backend;
use oxcd_wal::{HardState as WalHardState, SnapshotRecord, Wal};
use prost::Message;
use raft::prelude::ConfState;
use tokio::sync::watch;

use crate::apply::state::{MemberState, StateCell};
use crate::apply::{AppliedIndex, Applier, CompactJob, consistent_index, run_compactor};
use crate::config::{ServerConfig, is_https, parse_url, split_urls, url_host_port};
use crate::datadir::{BOOT_INDEX, Layout, NewMember, StartError, create_member, save_first_members};
use crate::ids::{ClusterId, MemberId};
use crate::membership::Member;
use crate::raft::{
    HashAnswer, NodeConfig, PeerApi, PeerTls, RaftInput, RaftNode, RaftStatus, Transport, encode_conf_state,
    fetch_members, open_raft, raft_config, snapshot_db_path,
};
use crate::server::{EtcdServer, ServerParts};
use crate::tls::{ClientTls, ServerTls};

/// How long stopping waits for client connections to drain before closing them.
const GRPC_DRAIN: Duration = Duration::from_secs(2);

/// A running member.
pub struct RunningMember {
    pub server: Arc<EtcdServer>,
    /// Where clients are served (actual addresses, after binding port 0).
    pub client_addrs: Vec<SocketAddr>,
    /// Where peers are served.
    pub peer_addrs: Vec<SocketAddr>,
    raft_thread: Option<JoinHandle<Result<(), oxcd_wal::WalError>>>,
    applier_thread: Option<JoinHandle<()>>,
    compactor_thread: Option<JoinHandle<()>>,
    grpc: Vec<tokio::task::JoinHandle<()>>,
    transport: Arc<Transport>,
}

/// Starts a member from `cfg`: recovers or creates its data, joins the Raft group and serves.
pub async fn start(mut cfg: ServerConfig) -> Result<RunningMember, StartError> {
    cfg.validate()?;
    with_auto_tls(&mut cfg)?;
    // --auth-token's keys and options, before anything is written.
    crate::apply::state::token_config(&cfg).map_err(StartError::Data)?;
    // The client ports' TLS files are read now: a bad one stops the start before anything is
    // written.
    let client_ports = crate::listener::client_ports(&cfg)?;
    let peer_tls = peer_tls(&cfg)?;
    let forward_tls = if cfg.client_transport_security.has_cert() {
        Some(ClientTls::new(&cfg.client_transport_security, &cfg)?)
    } else {
        None
    };
    let layout = cfg.layout();
    // An etcd data directory: converted once, etcd's files kept beside it.
    if let Some(t) = oxcd_datadir::etcd_datadir::take_over(&cfg.data_dir(), cfg.wal_dir.is_some())? {
        tracing::warn!(
            member = %MemberId(t.member_id),
            cluster = %ClusterId(t.cluster_id),
            applied_index = t.applied,
            entries_after = t.entries_after,
            kept = %t.kept.display(),
            "took over an etcd data directory; etcd's files are kept unchanged in the kept directory"
        );
    }
    std::fs::create_dir_all(&layout.wal)?;
    std::fs::create_dir_all(&layout.snap)?;
    layout.remove_interrupted_snapshots()?;

    // Identity and the WAL: recovered, or computed from --initial-cluster and created.
    let restarted = Wal::exists(&layout.wal);
    let (wal, wal_state, id, cluster_id) = if restarted {
        let (wal, state) = Wal::open(&layout.wal)?;
        let meta =
            WalMetadata::decode(&state.metadata[..]).map_err(|e| StartError::Data(format!("wal metadata: {e}")))?;
        (wal, state, MemberId(meta.member_id), ClusterId(meta.cluster_id))
    } else {
        let created = if cfg.initial_cluster_state == "existing" {
            // Asking peers, and waiting between tries, blocks: not on a runtime worker.
            let (cfg, layout, tls) = (cfg.clone(), layout.clone(), peer_tls.clone());
            tokio::task::spawn_blocking(move || join_cluster(&cfg, &layout, &tls))
                .await
                .map_err(|e| StartError::Data(format!("joining the cluster: {e}")))??
        } else {
            create_member(&cfg, &layout)?
        };
        let (wal, state) = Wal::open(&layout.wal)?;
        (wal, state, created.id, created.cluster_id)
    };
    let (mut wal, wal_state) = if cfg.force_new_cluster && restarted {
        let mut wal = wal;
        crate::raft::force_new_cluster(&mut wal, &wal_state, id)?;
        drop(wal);
        Wal::open(&layout.wal)?
    } else {
        (wal, wal_state)
    };
    wal.set_unsafe_no_fsync(cfg.unsafe_no_fsync);
    let wal_snap = wal_state.snapshot.clone().ok_or_else(|| StartError::Data("wal has no snapshot record".into()))?;

    // The backend: if the WAL says a snapshot from the leader was taken but the backend is older,
    // the received snapshot file is installed first (a crash between the two steps).
    recover_snapshot_db(&layout, &wal_snap, &cfg)?;
    let backend = Arc::new(Backend::open(&layout.db, crate::apply::batch_config(&cfg))?);
    bootstrap_defrag(&backend, cfg.bootstrap_defrag_threshold_megabytes)?;
    if cfg.memory_mlock {
        // SAFETY: mlockall takes flags only and touches no memory of ours.
        if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } != 0 {
            return Err(StartError::Data(format!(
                "--experimental-memory-mlock: cannot lock memory: {}",
                std::io::Error::last_os_error()
            )));
        }
    }
    let ci = consistent_index(&backend)?;
    if ci < wal_snap.index && wal_snap.index > BOOT_INDEX {
        return Err(StartError::Data(format!(
            "backend consistent index {ci} is behind the WAL snapshot at {}: the data directory is damaged",
            wal_snap.index
        )));
    }
    let MemberState { view, removed, pending_compaction } = MemberState::load(backend.clone(), &cfg)?;
    let (store, members) = (view.store.clone(), view.members.clone());
    if cfg.experimental_initial_corrupt_check {
        let (st, ms, tls) = (store.clone(), members.clone(), peer_tls.clone());
        tokio::task::spawn_blocking(move || crate::corruption::initial_check(&st, &ms, id, cluster_id, &tls))
            .await
            .map_err(|e| StartError::Data(format!("initial corruption check: {e}")))?
            .map_err(StartError::Data)?;
    }
    let state = StateCell::new(view.clone());

    let (raw, storage, applied) = open_raft(
        |applied| raft_config(id.0, cfg.election_ticks(), applied, cfg.pre_vote),
        &wal_state,
        ci,
        cfg.max_learners as usize,
    )?;

    // Three channels are unbounded, each because blocking its senders would be worse than what
    // it can hold:
    // - the Raft thread's inputs: a full queue would block peer connections, the ReadIndex loop
    //   and the applier behind client proposals, or drop votes and read requests nobody retries.
    //   What it holds is bounded by what is in flight: every proposal by a client request waiting
    //   for its answer (and timing out), appends from the leader by Raft's flow control
    //   (`max_inflight_msgs`), ReadIndex requests by the hub's one round at a time. The thread
    //   takes everything queued at each turn.
    // - committed entries for the applier: the Raft thread must not wait for the applier (it would
    //   stop heartbeating and lose the leadership); the entries are in the WAL already, and what
    //   waits here is what the applier has yet to reach, which it takes all at once per batch.
    // - compaction jobs: one per applied Compact request, a few bytes each.
    let (raft_tx, raft_rx) = crossbeam_channel::unbounded();
    let (apply_tx, apply_rx) = crossbeam_channel::unbounded();
    let (compactor_tx, compactor_rx) = crossbeam_channel::unbounded::<CompactJob>();
    let status = Arc::new(RaftStatus::new());
    let cell = state.clone();
    let transport =
        Transport::new(id, cluster_id, raft_tx.clone(), move || cell.backend(), layout.snap.clone(), peer_tls);
    transport.mark_removed(removed);
    let server = EtcdServer::new(ServerParts {
        cfg: cfg.clone(),
        id,
        cluster_id,
        state: state.clone(),
        applied: applied.clone(),
        raft: status.clone(),
        raft_tx: raft_tx.clone(),
        transport: transport.clone(),
        forward_tls,
        awaiting_snapshot: wal_snap.index == 0 && ci == 0,
    });
    let s = Arc::downgrade(&server);
    transport.set_on_removed(move || {
        if let Some(s) = s.upgrade() {
            s.stop();
        }
    });
    transport.set_api(Arc::new(MemberPeerApi {
        server: Arc::downgrade(&server),
        runtime: tokio::runtime::Handle::current(),
    }));

    // Peers.
    let mut peer_addrs = Vec::new();
    for url in split_urls(&cfg.listen_peer_urls) {
        // Bound as tokio binds (SO_REUSEADDR; SO_REUSEPORT with --socket-reuse-port), served by
        // blocking threads.
        let listener = crate::listener::bind(parse_url(&url)?, cfg.socket_reuse_port).await?.into_std()?;
        listener.set_nonblocking(false)?;
        peer_addrs.push(listener.local_addr()?);
        transport.serve(listener, is_https(&url));
    }
    server.sync_peers();

    // Threads.
    let (applied_tx, applied_rx) = watch::channel(ci);
    let published = AppliedIndex { index: applied.clone(), tx: applied_tx };
    let s = server.clone();
    let applier = Applier::new(id, cfg.clone(), view, state, published, compactor_tx.clone(), ci, move |decision| {
        s.act_on(decision)
    });
    let applier = Arc::new(parking_lot::Mutex::new(applier));
    let (shared, s) = (applier.clone(), server.clone());
    let inline_apply: crate::raft::InlineApply =
        Box::new(move |entries| match Applier::apply_inline(&shared, entries) {
            None => false,
            Some(Ok(())) => true,
            Some(Err(e)) => {
                applier_failed(&s, &e);
                true
            }
        });
    let node = RaftNode {
        raw,
        storage,
        wal,
        rx: raft_rx,
        transport: transport.clone(),
        apply_tx,
        status,
        read_hub: server.read_hub.clone(),
        cfg: NodeConfig {
            tick: cfg.tick(),
            catchup_entries: cfg.snapshot_catchup_entries,
            stalled_ttl: cfg.request_timeout(),
            snap_dir: layout.snap.clone(),
            max_learners: cfg.max_learners as usize,
        },
        stalled: Default::default(),
        held_timeout_now: None,
        snapshot_index: wal_snap.index,
        applied: applied.clone(),
        inline_apply: Some(inline_apply),
    };
    let s = server.clone();
    let raft_thread = std::thread::Builder::new().name("raft".into()).spawn(move || {
        let r = node.run();
        if let Err(e) = &r {
            tracing::error!(error = %e, "raft thread failed to persist; stopping the member");
            s.fail();
        }
        r
    })?;
    let s = server.clone();
    let applier_thread = std::thread::Builder::new().name("apply".into()).spawn(move || {
        if let Err(e) = Applier::run(applier, apply_rx) {
            applier_failed(&s, &e);
        }
    })?;
    if let Some(rev) = pending_compaction {
        let _ = compactor_tx.send(CompactJob { store, rev, waiters: Vec::new() });
    }
    drop(compactor_tx);
    let (s, c) = (server.clone(), cfg.clone());
    let compactor_thread = std::thread::Builder::new()
        .name("compactor".into())
        .spawn(move || run_compactor(compactor_rx, &c, |id, r| s.wait.trigger(id, r)))?;

    // Tasks.
    tokio::spawn(server.read_hub.clone().run(
        raft_tx.clone(),
        server.ids.clone(),
        applied_rx,
        cfg.request_timeout(),
        server.stop_tx.subscribe(),
    ));
    let mut client_addrs = Vec::new();
    let mut grpc = Vec::new();
    for port in client_ports {
        let listener = crate::listener::bind(port.addr, cfg.socket_reuse_port).await?;
        client_addrs.push(listener.local_addr()?);
        let s = server.clone();
        grpc.push(tokio::spawn(async move {
            if let Err(e) = crate::listener::serve(s.clone(), listener, &port).await {
                tracing::error!(error = %e, "client listener failed; stopping the member");
                s.fail();
            }
        }));
    }
    for url in split_urls(&cfg.listen_metrics_urls) {
        let listener = crate::listener::bind(parse_url(&url)?, cfg.socket_reuse_port).await?;
        let s = server.clone();
        grpc.push(tokio::spawn(async move {
            if let Err(e) = crate::listener::serve_metrics(s.clone(), listener).await {
                tracing::error!(error = %e, "metrics listener failed; stopping the member");
                s.fail();
            }
        }));
    }
    tokio::spawn(publish_attributes(server.clone()));
    tokio::spawn(decide_cluster_version(server.clone()));
    tokio::spawn(crate::lease_duties::run(server.clone()));
    if cfg.experimental_compact_hash_check_enabled {
        tokio::spawn(crate::corruption::monitor_compaction_hashes(server.clone(), cfg.compact_hash_check_time));
    }
    if !cfg.corrupt_check_time.is_zero() {
        tokio::spawn(crate::corruption::monitor(server.clone(), cfg.corrupt_check_time));
    }
    if let Some(mode) = cfg.auto_compaction()? {
        tokio::spawn(crate::auto_compaction::run(server.clone(), mode));
    }
    if members.len() == 1 {
        // Alone: no one to wait for, elect now.
        let _ = raft_tx.send(RaftInput::Campaign);
    }
    tracing::info!(
        member_id = %id,
        cluster_id = %cluster_id,
        name = %cfg.name,
        clients = ?client_addrs,
        peers = ?peer_addrs,
        applied_index = ci,
        "member started"
    );
    Ok(RunningMember {
        server,
        client_addrs,
        peer_addrs,
        raft_thread: Some(raft_thread),
        applier_thread: Some(applier_thread),
        compactor_thread: Some(compactor_thread),
        grpc,
        transport,
    })
}

/// `--auto-tls`, `--peer-auto-tls`: the ports' settings with the certificates generated in the data
/// directory (`fixtures/client`, `fixtures/peer`, as etcd) for the hosts of their listen URLs.
fn with_auto_tls(cfg: &mut ServerConfig) -> Result<(), StartError> {
    // The URLs were validated: each has a host.
    let hosts = |urls: &str| -> Vec<String> {
        split_urls(urls).iter().filter_map(|u| url_host_port(u).ok()).map(|(h, _)| h.to_string()).collect()
    };
    let fixtures = cfg.data_dir().join("fixtures");
    let client_hosts = hosts(&format!("{},{}", cfg.listen_client_urls, cfg.listen_client_http_urls));
    cfg.client_transport_security = crate::tls::auto_tls(
        &cfg.client_transport_security,
        &fixtures.join("client"),
        &client_hosts,
        cfg.self_signed_cert_validity,
    )?;
    cfg.peer_transport_security = crate::tls::auto_tls(
        &cfg.peer_transport_security,
        &fixtures.join("peer"),
        &hosts(&cfg.listen_peer_urls),
        cfg.self_signed_cert_validity,
    )?;
    Ok(())
}

/// The peer port's TLS: served on `https://` peer URLs, and used to dial `https://` peers when a
/// certificate or CA is configured or a first member's URL is `https://`. Read now: a bad file
/// stops the start.
fn peer_tls(cfg: &ServerConfig) -> Result<PeerTls, StartError> {
    let sec = &cfg.peer_transport_security;
    let listens_https = split_urls(&cfg.listen_peer_urls).iter().any(|u| is_https(u));
    let server = if listens_https { Some(ServerTls::new(sec, cfg, &[])?) } else { None };
    let dials_https = cfg.initial_members()?.iter().flat_map(|m| &m.peer_urls).any(|u| is_https(u));
    let client = if sec.has_cert() || !sec.trusted_ca_file.is_empty() || dials_https {
        Some(ClientTls::new(sec, cfg)?)
    } else {
        None
    };
    Ok(PeerTls { server, client, check_san: !cfg.peer_skip_client_san_verification })
}

/// A member joining a running cluster (`--initial-cluster-state existing`, after `member add`):
/// the cluster id and the members come from a running member's peer port, its own id is the one
/// the cluster gave its peer URLs, and its WAL starts empty, with no configuration: the leader
/// sends it a snapshot that includes it.
fn join_cluster(cfg: &ServerConfig, layout: &Layout, tls: &PeerTls) -> Result<NewMember, StartError> {
    let mut mine = split_urls(&cfg.initial_advertise_peer_urls);
    mine.sort();
    let others: Vec<String> =
        cfg.initial_members()?.into_iter().filter(|m| m.name != cfg.name).flat_map(|m| m.peer_urls).collect();
    // Asked again until a member answers with this member among its members (the one asked
    // first may not have applied the `member add` yet).
    let deadline = std::time::Instant::now() + crate::reconfig::JOIN_TIMEOUT;
    let (cluster_id, members, id) = loop {
        let answer = others.iter().find_map(|url| fetch_members(url, tls).ok());
        let found = answer.map(|(cluster_id, members)| {
            let me = members.iter().find(|m| {
                let mut urls = m.peer_urls.clone();
                urls.sort();
                urls == mine
            });
            (cluster_id, me.map(|m| m.id), members)
        });
        match found {
            Some((cluster_id, Some(id), members)) => break (cluster_id, members, id),
            _ if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(300)),
            Some((cluster_id, None, _)) => {
                return Err(StartError::Data(format!(
                    "error validating peerURLs {mine:?}: no member of cluster {cluster_id} has them (add this member with `member add` first)"
                )));
            }
            None => {
                return Err(StartError::Data(
                    "cannot fetch cluster info from peer urls: could not retrieve cluster information from the given URLs"
                        .into(),
                ));
            }
        }
    };
    // The log is etcd's from its first entry: only an etcd leader sends entry 1 (an oxcd leader's
    // log starts after BOOT_INDEX, so it sends a snapshot first, which brings its own key).
    save_first_members(layout, &members, 1)?;
    let meta = WalMetadata { member_id: id.0, cluster_id: cluster_id.0 }.encode_to_vec();
    let mut wal = Wal::create(&layout.wal, &meta)?;
    wal.save_snapshot(SnapshotRecord { index: 0, term: 0, conf_state: encode_conf_state(&ConfState::default()) });
    wal.set_hard_state(WalHardState { term: 0, vote: 0, commit: 0 });
    wal.sync()?;
    tracing::info!(member_id = %id, cluster_id = %cluster_id, "joining a running cluster");
    Ok(NewMember { id, cluster_id, members })
}

/// `--experimental-bootstrap-defrag-threshold-megabytes`: defragments the backend at start when
/// that frees at least `threshold_mb` MB (etcd's `maybeDefragBackend`).
fn bootstrap_defrag(backend: &Backend, threshold_mb: u64) -> Result<(), StartError> {
    if threshold_mb == 0 {
        return Ok(());
    }
    let (size, in_use) = (backend.size_bytes(), backend.size_in_use_bytes()?);
    let free = size.saturating_sub(in_use);
    if free < threshold_mb * 1024 * 1024 {
        tracing::info!(
            current_db_size_bytes = size,
            current_db_size_in_use_bytes = in_use,
            threshold_bytes = threshold_mb * 1024 * 1024,
            "skipping defragmentation"
        );
        return Ok(());
    }
    tracing::info!(
        current_db_size_bytes = size,
        current_db_size_in_use_bytes = in_use,
        "defragmenting the backend at start"
    );
    backend.defrag()?;
    Ok(())
}

/// Installs a backend snapshot that the WAL already accounts for but the backend does not hold.
fn recover_snapshot_db(layout: &Layout, snap: &SnapshotRecord, cfg: &ServerConfig) -> Result<(), StartError> {
    let received = snapshot_db_path(&layout.snap, snap.term, snap.index);
    if !received.exists() {
        return Ok(());
    }
    let behind = if layout.db.exists() {
        let b = Backend::open(&layout.db, crate::apply::batch_config(cfg))?;
        consistent_index(&b)? < snap.index
    } else {
        true
    };
    if behind {
        tracing::info!(index = snap.index, "installing received snapshot left by a crash");
        crate::datadir::rename_durably(&received, &layout.db)?;
    } else {
        std::fs::remove_file(&received)?;
    }
    Ok(())
}

/// The applier failed (on whichever thread applied the batch): the member stops.
fn applier_failed(server: &EtcdServer, e: &crate::apply::ApplyError) {
    tracing::error!(error = %e, "applier failed; stopping the member");
    server.fail();
}

/// The leader's part of etcd's version monitor: while the cluster has no version, or an older one
/// than this member's, the leader sets it through Raft (every member of an oxcd cluster runs the
/// same version, so the lowest of theirs is this one's). As in etcd, a new leader sets it at once:
/// the check (a read of the published members and a comparison) is made every 10 ms until the
/// version is decided, then every 500 ms.
async fn decide_cluster_version(server: Arc<EtcdServer>) {
    let ours = crate::grpc::CLUSTER_VERSION_FULL;
    let mut every = Duration::from_millis(10);
    let mut announced = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = server.stopped() => return,
        }
        let members = server.members();
        let current = members.version();
        if current.is_some_and(|v| !older(v, ours)) {
            every = Duration::from_millis(500);
            continue;
        }
        every = Duration::from_millis(10);
        if !server.is_leader() {
            continue;
        }
        if !announced {
            announced = true;
            match current {
                None => tracing::info!(
                    cluster_version = crate::grpc::CLUSTER_VERSION,
                    "setting up initial cluster version using v3 API"
                ),
                Some(v) => tracing::info!(from = %v, to = ours, "updating cluster version using v3 API"),
            }
        }
        let set = Request::ClusterVersionSet(ClusterVersionSetRequest { ver: ours.to_string() });
        if let Err(e) = server.propose(set).await {
            // Not every 10 ms while proposals are refused (too many requests, no leader).
            tracing::debug!(error = %e, "setting the cluster version failed; will retry");
            every = Duration::from_secs(1);
        }
    }
}

/// Whether the version `a` (`3.4.0`) is older than `b`, by major and minor.
fn older(a: &str, b: &str) -> bool {
    let parse = |v: &str| -> (u64, u64) {
        let mut parts = v.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    };
    parse(a) < parse(b)
}

/// Publishes this member's name and client URLs through Raft (etcd's `publish`), retrying until it
/// is applied; then logs etcd 3.5's readiness lines, which tools wait for (etcd's own e2e tests
/// wait for "enabled capabilities for version" and "published").
async fn publish_attributes(server: Arc<EtcdServer>) {
    let req = MemberAttrSetRequest {
        member_id: server.id.0,
        name: server.cfg.name.clone(),
        client_urls: split_urls(&server.cfg.advertise_client_urls),
    };
    loop {
        tokio::select! {
            r = server.propose(Request::MemberAttrSet(req.clone())) => match r {
                Ok(_) => {
                    tracing::info!(
                        cluster_version = crate::grpc::CLUSTER_VERSION,
                        "enabled capabilities for version"
                    );
                    tracing::info!(
                        local_member_id = %server.id,
                        local_member_attributes = format!("{{Name:{} ClientURLs:{:?}}}", req.name, req.client_urls),
                        cluster_id = %server.cluster_id,
                        "published local member to cluster through raft"
                    );
                    for url in split_urls(&server.cfg.listen_client_urls) {
                        tracing::info!(address = %url, "ready to serve client requests");
                    }
                    return;
                }
                Err(e) => tracing::debug!(error = %e, "publishing member attributes; will retry"),
            },
            _ = server.stopped() => return,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

impl RunningMember {
    /// Waits until the member is asked to stop (or fails), then shuts it down in order.
    pub async fn wait(mut self) {
        self.server.stopped().await;
        // Graceful for in-flight requests, but idle client connections do not hold the stop up.
        let grpc = std::mem::take(&mut self.grpc);
        let aborts: Vec<_> = grpc.iter().map(|t| t.abort_handle()).collect();
        if tokio::time::timeout(GRPC_DRAIN, futures::future::join_all(grpc)).await.is_err() {
            aborts.iter().for_each(|a| a.abort());
        }
        let _ = self.server.raft_tx.send(RaftInput::Stop);
        let (raft, applier, compactor) =
            (self.raft_thread.take(), self.applier_thread.take(), self.compactor_thread.take());
        let server = self.server.clone();
        let transport = self.transport.clone();
        let _ = tokio::task::spawn_blocking(move || {
            // The applier ends when the Raft thread drops its channel, the compactor with the applier.
            if let Some(h) = raft {
                let _ = h.join();
            }
            if let Some(h) = applier {
                let _ = h.join();
            }
            if let Some(h) = compactor {
                let _ = h.join();
            }
            if let Err(e) = server.backend().flush() {
                tracing::error!(error = %e, "final backend flush failed");
            }
            transport.stop();
        })
        .await;
        self.server.wait.fail_all(oxcd_api::EtcdError::Stopped);
        tracing::info!(member_id = %self.server.id, "member stopped");
    }
}

/// What the peer transport answers peers from outside Raft: this member's state.
struct MemberPeerApi {
    server: std::sync::Weak<EtcdServer>,
    /// Peer connections are served on threads of their own; a linearizable read runs here.
    runtime: tokio::runtime::Handle,
}

impl PeerApi for MemberPeerApi {
    fn members(&self) -> Vec<Member> {
        self.server.upgrade().map(|s| s.members().iter().cloned().collect()).unwrap_or_default()
    }

    fn cluster_version(&self) -> Option<String> {
        self.server.upgrade().and_then(|s| s.members().version().map(str::to_owned))
    }

    fn read_barrier(&self) -> Result<(), String> {
        let s = self.server.upgrade().ok_or_else(|| EtcdError::Stopped.to_string())?;
        let timeout = s.cfg.request_timeout();
        // The timer is made inside the runtime (this is a peer connection's thread).
        match self.runtime.block_on(async { tokio::time::timeout(timeout, s.linearizable_read()).await }) {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(EtcdError::Timeout.to_string()),
        }
    }

    fn hash_kv(&self, rev: i64, compactions: bool) -> Result<HashKvResponse, HashAnswer> {
        let s = self.server.upgrade().ok_or(HashAnswer::Unavailable)?;
        crate::corruption::answer(&s.store(), s.cluster_id(), s.member_id(), rev, compactions)
    }

    fn promote(&self, id: u64) -> Option<Result<Vec<Member>, EtcdError>> {
        let s = self.server.upgrade()?;
        let timeout = s.cfg.request_timeout();
        let promoted =
            self.runtime.block_on(async { tokio::time::timeout(timeout, s.promote_member(MemberId(id))).await });
        match promoted {
            Err(_) => Some(Err(EtcdError::Timeout)),
            Ok(None) => None,
            Ok(Some(r)) => Some(r.map(|()| s.members().iter().cloned().collect())),
        }
    }

    fn lease_renew(&self, id: i64) -> Result<i64, oxcd_lease::RenewError> {
        let s = self.server.upgrade().ok_or(oxcd_lease::RenewError::NotPrimary)?;
        s.leaders_lessor().0.renew(oxcd_lease::LeaseId(id), std::time::Instant::now())
    }

    fn lease_time_to_live(&self, id: i64, keys: bool) -> Option<oxcd_api::etcdserverpb::LeaseTimeToLiveResponse> {
        let s = self.server.upgrade()?;
        s.lease_time_to_live(&s.leaders_lessor().0, id, keys)
    }
}
