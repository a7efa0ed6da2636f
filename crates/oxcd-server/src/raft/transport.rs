//! The peer transport: Raft messages between members over TCP, one outbound connection per peer,
//! and backend snapshots streamed on connections of their own.
//!
//! Wire format (not etcd's rafthttp; members of one cluster are all oxcd): a connection starts with
//! `OXCDPEER`, the sender's member id, the cluster id (u64 LE each) and a kind byte, which the
//! receiver answers with one byte: [`ACCEPTED`], or [`REMOVED`] to a member removed from the
//! cluster (which then stops, as etcd's removed members do on their peers' "410 Gone"). Kind
//! [`KIND_MESSAGES`] then carries frames `[len u32 LE][raft Message]`. Kind [`KIND_SNAPSHOT`] carries one
//! frame with the MsgSnapshot, then the backend snapshot stream (self-delimiting, checksummed), and
//! the receiver answers one byte once the snapshot is stored.
//!
//! A connection that does not start with `OXCDPEER` is read as HTTP/1.1, etcd's peer API
//! (`peer_http.rs`): etcd's members and tools ask a peer's `/version`, `/members` and the like,
//! and etcd members exchange Raft messages in etcd's rafthttp (`etcd_link.rs`), which this member
//! speaks with a peer once it knows the peer is an etcd member.
//!
//! A peer whose URL is `https://` is dialed with TLS, and an `https://` peer listener serves TLS
//! only (`peer_stream.rs`, `crate::tls`): the handshake above then runs inside TLS.
//!
//! Threads, not tasks: peers are few, and blocking IO keeps the Raft path free of the async runtime.
//! Outbound queues are bounded; when one is full the message is dropped and the peer reported
//! unreachable (Raft retransmits).

mod etcd_link;

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};
use oxcd_backend::Backend;
use parking_lot::{Mutex, RwLock};
use prost::Message as _;
use protobuf::Message as PbMessage;
use raft::prelude::{Message, MessageType};

use super::msg::{PeerTransport, RaftInput};
use super::peer_http::{self, HttpConn, PeerApi};
use super::peer_stream::{PeerAddr, PeerStream, PeerTls};
use crate::accept_failures::{ACCEPT_RETRY, AcceptFailures};
use crate::ids::{ClusterId, MemberId};
use crate::membership::Member;
use oxcd_datadir::etcd_snapshot::EtcdMember;

const MAGIC: &[u8; 8] = b"OXCDPEER";
const KIND_MESSAGES: u8 = 1;
const KIND_SNAPSHOT: u8 = 2;
/// A joining member asks for the cluster id and the members (it knows neither its id nor the
/// cluster's yet, so the handshake's are not checked); the answer is the cluster id (u64 LE) and
/// one frame with a `MemberListResponse`.
const KIND_MEMBERS: u8 = 3;
/// A member asks another for its HashKV at a revision (i64 LE after the handshake): the answer
/// is a [`HashAnswer`] byte and, when it is `Ok`, one frame with a `HashKvResponse` (etcd's
/// `/members/hashkv`, for the corruption checks).
const KIND_HASHKV: u8 = 4;
/// The receiver's answer to a handshake: go on.
const ACCEPTED: u8 = 0;
/// The receiver's answer to a handshake from a member removed from the cluster.
const REMOVED: u8 = 1;
/// Largest frame accepted from a peer.
const MAX_FRAME: usize = 256 << 20;
/// Messages queued per peer before dropping.
const PEER_QUEUE: usize = 4096;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a peer may take to answer a handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// A peer silent this long after the handshake may be an etcd member, waiting for the end of what
/// it reads as a request line.
const ETCD_PROBE_AFTER: Duration = Duration::from_secs(1);
/// Inbound connections still in their handshake, at most: beyond, new ones are closed at once
/// (a flood of connections that never say who they are cannot take every descriptor).
const MAX_HANDSHAKING: usize = 256;
/// How often a connection notes that its peer was heard from.
const HEARD_EVERY: Duration = Duration::from_millis(100);

/// Where a received snapshot's backend file is stored until the applier installs it.
pub fn snapshot_db_path(snap_dir: &Path, term: u64, index: u64) -> PathBuf {
    snap_dir.join(format!("{term:016x}-{index:016x}.snap.db"))
}

/// Sends Raft messages to peers and receives theirs.
pub struct Transport {
    /// This transport, for the threads it starts.
    this: Weak<Transport>,
    me: MemberId,
    cluster: ClusterId,
    raft_tx: Sender<RaftInput>,
    peers: RwLock<HashMap<u64, Sender<Message>>>,
    /// Inbound connections that have not finished their handshake (see [`MAX_HANDSHAKING`]).
    handshaking: Arc<std::sync::atomic::AtomicUsize>,
    addrs: Arc<RwLock<HashMap<u64, PeerAddr>>>,
    tls: PeerTls,
    /// The backend to stream when a follower needs a snapshot (the one applied at the moment).
    backend: Box<dyn Fn() -> Arc<Backend> + Send + Sync>,
    snap_dir: PathBuf,
    stopped: Arc<AtomicBool>,
    /// Connections open, by a number of their own, so stop() can shut them down (each is
    /// forgotten when its thread ends).
    inbound: Arc<Mutex<HashMap<u64, TcpStream>>>,
    /// Where the peer listeners listen, so stop() can wake them from `accept`.
    listening: Mutex<Vec<std::net::SocketAddr>>,
    /// The member's state, for what peers ask outside Raft: the members (for joining members),
    /// HashKV (for [`KIND_HASHKV`]) and etcd's peer HTTP API (set once the member's state exists).
    api: std::sync::OnceLock<Arc<dyn PeerApi>>,
    /// When each peer was last heard from (noted at most every [`HEARD_EVERY`] per connection).
    heard: Mutex<HashMap<u64, Instant>>,
    /// Members removed from the cluster: their connections are refused with [`REMOVED`].
    removed: RwLock<std::collections::HashSet<u64>>,
    /// What to do when a peer says this member was removed (stop it).
    on_removed: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// When the last heartbeat to each peer was queued, until a response comes back (the round
    /// trip `etcd_network_peer_round_trip_time_seconds` measures; heartbeats go out every
    /// heartbeat interval, far apart next to a round trip).
    heartbeat_sent: Mutex<HashMap<u64, Instant>>,
    /// Peers that are etcd members, spoken to in etcd's rafthttp (`etcd_link`).
    etcd_peers: RwLock<HashSet<u64>>,
    /// The streams each etcd peer opened here to receive this member's messages.
    attached: Mutex<HashMap<u64, Arc<Mutex<etcd_link::Attached>>>>,
}

impl Transport {
    pub fn new(
        me: MemberId,
        cluster: ClusterId,
        raft_tx: Sender<RaftInput>,
        backend: impl Fn() -> Arc<Backend> + Send + Sync + 'static,
        snap_dir: PathBuf,
        tls: PeerTls,
    ) -> Arc<Transport> {
        Arc::new_cyclic(|this| Transport {
            this: this.clone(),
            me,
            cluster,
            raft_tx,
            peers: RwLock::new(HashMap::new()),
            addrs: Arc::new(RwLock::new(HashMap::new())),
            tls,
            backend: Box::new(backend),
            snap_dir,
            stopped: Arc::new(AtomicBool::new(false)),
            inbound: Arc::new(Mutex::new(HashMap::new())),
            handshaking: Default::default(),
            listening: Mutex::new(Vec::new()),
            api: std::sync::OnceLock::new(),
            heard: Mutex::new(HashMap::new()),
            removed: RwLock::new(Default::default()),
            on_removed: std::sync::OnceLock::new(),
            heartbeat_sent: Mutex::new(HashMap::new()),
            etcd_peers: RwLock::new(HashSet::new()),
            attached: Mutex::new(HashMap::new()),
        })
    }

    /// Where answers to peers' questions outside Raft come from.
    pub fn set_api(&self, api: Arc<dyn PeerApi>) {
        let _ = self.api.set(api);
    }

    /// The peer port's TLS (to dial peers with).
    pub fn tls(&self) -> &PeerTls {
        &self.tls
    }

    /// Members removed from the cluster (their connections are refused from now on).
    pub fn mark_removed(&self, ids: impl IntoIterator<Item = MemberId>) {
        self.removed.write().extend(ids.into_iter().map(|m| m.0));
    }

    /// What to do when a peer refuses this member as removed.
    pub fn set_on_removed(&self, f: impl Fn() + Send + Sync + 'static) {
        let _ = self.on_removed.set(Box::new(f));
    }

    /// Whether a message from member `id` arrived at or after `since`.
    pub fn heard_since(&self, id: MemberId, since: Instant) -> bool {
        self.heard.lock().get(&id.0).is_some_and(|t| *t >= since)
    }

    /// Drops every peer not in `ids` (removed members): its outbound thread ends.
    pub fn retain_peers(&self, ids: &[MemberId]) {
        let kept = |id: &u64| ids.iter().any(|m| m.0 == *id);
        self.peers.write().retain(|id, _| kept(id));
        self.addrs.write().retain(|id, _| kept(id));
        // An etcd peer's streams to it close; its readers end at their next dial.
        self.attached.lock().retain(|id, _| kept(id));
        self.etcd_peers.write().retain(kept);
    }

    /// Adds (or re-addresses) a peer and starts its outbound thread.
    pub fn add_peer(self: &Arc<Self>, id: MemberId, addr: PeerAddr) {
        self.addrs.write().insert(id.0, addr);
        if self.peers.read().contains_key(&id.0) {
            return;
        }
        let (tx, rx) = bounded(PEER_QUEUE);
        self.peers.write().insert(id.0, tx);
        let t = self.clone();
        std::thread::Builder::new()
            .name(format!("peer-{id}"))
            .spawn(move || t.outbound_loop(id, rx))
            .expect("spawn peer thread");
    }

    /// Serves peers on `listener` (with TLS if `secure`) until [`Transport::stop`].
    pub fn serve(self: &Arc<Self>, listener: TcpListener, secure: bool) {
        if let Ok(addr) = listener.local_addr() {
            self.listening.lock().push(addr);
        }
        let t = self.clone();
        std::thread::Builder::new()
            .name("peer-listener".into())
            .spawn(move || {
                let mut failures = AcceptFailures::new("peer");
                for (n, conn) in (0u64..).zip(listener.incoming()) {
                    if t.stopped.load(Ordering::Acquire) {
                        break;
                    }
                    let conn = match conn {
                        Ok(c) => {
                            failures.succeeded();
                            c
                        }
                        Err(e) => {
                            failures.failed(&e);
                            std::thread::sleep(ACCEPT_RETRY);
                            continue;
                        }
                    };
                    if t.handshaking.load(Ordering::Acquire) >= MAX_HANDSHAKING {
                        tracing::warn!(
                            limit = MAX_HANDSHAKING,
                            "too many peer connections in their handshake; closing a new one"
                        );
                        continue;
                    }
                    let slot = HandshakeSlot::take(&t.handshaking);
                    if let Ok(c) = conn.try_clone() {
                        t.inbound.lock().insert(n, c);
                    }
                    let t2 = t.clone();
                    let _ = std::thread::Builder::new().name("peer-in".into()).spawn(move || {
                        if let Err(e) = t2.inbound_conn(conn, secure, slot) {
                            tracing::debug!(error = %e, "peer connection closed");
                        }
                        t2.inbound.lock().remove(&n);
                    });
                }
            })
            .expect("spawn peer listener");
    }

    /// Stops accepting and closes inbound connections; outbound threads end with the transport.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        for (_, c) in self.inbound.lock().drain() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        self.peers.write().clear();
        self.attached.lock().clear();
        // A listener sees the stop at its next connection: make one, so its thread ends and its
        // port closes now.
        for addr in self.listening.lock().drain(..) {
            let _ = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT);
        }
    }

    fn handshake(&self, conn: &mut PeerStream, kind: u8) -> std::io::Result<()> {
        conn.write_all(&hello(self.me.0, self.cluster.0, kind))
    }

    /// Peer `by` says this member was removed from the cluster (oxcd's handshake answer, etcd's
    /// 403 or 410): it stops, as etcd's removed members do.
    fn removed_by_peer(&self, by: MemberId) {
        tracing::warn!(peer = %by, "the member has been permanently removed from the cluster; stopping");
        if let Some(f) = self.on_removed.get() {
            f();
        }
    }

    fn connect(&self, to: MemberId, kind: u8) -> std::io::Result<PeerStream> {
        let addr = self
            .addrs
            .read()
            .get(&to.0)
            .cloned()
            .ok_or_else(|| std::io::Error::other(format!("no address for peer {to}")))?;
        let mut conn = PeerStream::dial(&addr, &self.tls, CONNECT_TIMEOUT, HANDSHAKE_TIMEOUT)?;
        self.handshake(&mut conn, kind)?;
        conn.flush()?;
        let mut answer = [0u8; 1];
        conn.tcp().set_read_timeout(Some(ETCD_PROBE_AFTER))?;
        if let Err(e) = conn.read_exact(&mut answer) {
            if !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) {
                return Err(e);
            }
            // An oxcd member answers at once; etcd's peer port waits for the end of a request
            // line, then refuses it. Ending the line tells which: if it is an oxcd member after
            // all (a slow one), this connection is spoiled and dropped.
            conn.write_all(b"\r\n")?;
            conn.flush()?;
            conn.tcp().set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
            conn.read_exact(&mut answer)?;
            if answer[0] != b'H' {
                return Err(std::io::Error::other("the peer answered the handshake late"));
            }
        }
        conn.tcp().set_read_timeout(None)?;
        if answer[0] == b'H' {
            // etcd's peer port refuses the handshake: "HTTP/1.1 400 Bad Request".
            return Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "the peer is an etcd member"));
        }
        if answer[0] == REMOVED {
            self.removed_by_peer(to);
            return Err(std::io::Error::other("this member was removed from the cluster"));
        }
        Ok(conn)
    }

    fn outbound_loop(&self, to: MemberId, rx: Receiver<Message>) {
        let mut conn: Option<BufWriter<PeerStream>> = None;
        let mut buf = Vec::new();
        let label = to.to_string();
        let sent_bytes = crate::metrics::PEER_SENT_BYTES.with_label_values(&[label.as_str()]);
        let failures = crate::metrics::PEER_SENT_FAILURES.with_label_values(&[label.as_str()]);
        let mut etcd = etcd_link::Outbound::default();
        loop {
            // Woken now and then without a message: an etcd peer's streams need link heartbeats.
            let first = match rx.recv_timeout(etcd_link::LINK_HEARTBEAT_EVERY) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            if self.stopped.load(Ordering::Acquire) {
                return;
            }
            if self.is_etcd(to.0) {
                self.etcd_send(to, first, &rx, &mut etcd, &sent_bytes, &failures);
                continue;
            }
            let Some(first) = first else { continue };
            if conn.is_none() {
                match self.connect(to, KIND_MESSAGES) {
                    Ok(c) => conn = Some(BufWriter::with_capacity(256 << 10, c)),
                    Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                        self.mark_etcd(to.0);
                        self.etcd_send(to, Some(first), &rx, &mut etcd, &sent_bytes, &failures);
                        continue;
                    }
                    Err(e) => {
                        failures.inc();
                        tracing::debug!(to = %to, error = %e, "peer unreachable");
                        let _ = self.raft_tx.send(RaftInput::Unreachable(to.0));
                        // Drop what is queued: Raft retransmits once the peer answers again.
                        std::thread::sleep(Duration::from_millis(50));
                        while rx.try_recv().is_ok() {}
                        continue;
                    }
                }
            }
            let w = conn.as_mut().expect("connected above");
            let mut written = 0;
            let mut result = write_frame(w, &first, &mut buf).map(|n| written += n);
            while result.is_ok() {
                match rx.try_recv() {
                    Ok(m) => result = write_frame(w, &m, &mut buf).map(|n| written += n),
                    Err(_) => break,
                }
            }
            sent_bytes.inc_by(written as u64);
            if let Err(e) = result.and_then(|_| w.flush()) {
                failures.inc();
                tracing::debug!(to = %to, error = %e, "peer write failed");
                conn = None;
                let _ = self.raft_tx.send(RaftInput::Unreachable(to.0));
            }
        }
    }

    fn send_snapshot(&self, m: Message) -> std::io::Result<()> {
        let to = MemberId(m.to);
        let conn = match self.connect(to, KIND_SNAPSHOT) {
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                self.mark_etcd(to.0);
                return self.send_etcd_snapshot(m);
            }
            other => other?,
        };
        conn.tcp().set_write_timeout(Some(Duration::from_secs(60)))?;
        let mut w = BufWriter::with_capacity(1 << 20, conn);
        write_frame(&mut w, &m, &mut Vec::new())?;
        let backend = (self.backend)();
        backend.snapshot_to(&mut w).map_err(std::io::Error::other)?;
        let mut conn = w.into_inner().map_err(|e| e.into_error())?;
        conn.flush()?;
        conn.tcp().set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut ack = [0u8; 1];
        conn.read_exact(&mut ack)?;
        tracing::info!(to = %to, index = m.get_snapshot().get_metadata().index, "sent snapshot");
        Ok(())
    }

    fn inbound_conn(&self, tcp: TcpStream, secure: bool, slot: HandshakeSlot) -> std::io::Result<()> {
        let conn = PeerStream::accept(tcp, secure.then_some(&self.tls), HANDSHAKE_TIMEOUT)?;
        // A peer has the handshake timeout to say who it is; then reads block as long as it is
        // connected.
        conn.tcp().set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        let mut r = BufReader::with_capacity(256 << 10, conn);
        let mut h = [0u8; 25];
        r.read_exact(&mut h[..8])?;
        if &h[..8] != MAGIC {
            drop(slot);
            return self.serve_http(r, &h[..8]);
        }
        r.read_exact(&mut h[8..])?;
        drop(slot);
        r.get_ref().tcp().set_read_timeout(None)?;
        let from = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
        let cluster = u64::from_le_bytes(h[16..24].try_into().expect("8 bytes"));
        if h[24] == KIND_MEMBERS {
            let list = self.api.get().map(|api| encode_members(api.as_ref())).unwrap_or_default();
            let w = r.get_mut();
            w.write_all(&self.cluster.0.to_le_bytes())?;
            write_blob(w, &list)?;
            return w.flush();
        }
        if cluster != self.cluster.0 {
            tracing::warn!(from = %MemberId(from), remote_cluster = %ClusterId(cluster), "rejected peer: cluster ID mismatch");
            return Err(std::io::Error::other("cluster ID mismatch"));
        }
        if h[24] == KIND_HASHKV {
            let mut rev = [0u8; 8];
            r.read_exact(&mut rev)?;
            let answer = match self.api.get() {
                Some(api) => api.hash_kv(i64::from_le_bytes(rev), true).map(|h| h.encode_to_vec()),
                None => Err(HashAnswer::Unavailable),
            };
            let w = r.get_mut();
            match answer {
                Ok(resp) => {
                    w.write_all(&[HashAnswer::Ok as u8])?;
                    write_blob(w, &resp)?;
                }
                Err(code) => w.write_all(&[code as u8])?,
            }
            return w.flush();
        }
        let removed = self.removed.read().contains(&from);
        let w = r.get_mut();
        w.write_all(&[if removed { REMOVED } else { ACCEPTED }])?;
        w.flush()?;
        if removed {
            tracing::info!(from = %MemberId(from), "refused a member removed from the cluster");
            return Ok(());
        }
        let mut buf = Vec::new();
        match h[24] {
            KIND_MESSAGES => {
                let mut noted = Instant::now() - HEARD_EVERY;
                let label = MemberId(from).to_string();
                let received = crate::metrics::PEER_RECEIVED_BYTES.with_label_values(&[label.as_str()]);
                loop {
                    let m = read_frame(&mut r, &mut buf)?;
                    received.inc_by(4 + buf.len() as u64);
                    if !self.deliver(from, m, &label, &mut noted) {
                        return Ok(());
                    }
                }
            }
            KIND_SNAPSHOT => {
                let m = read_frame(&mut r, &mut buf)?;
                let meta = m.get_snapshot().get_metadata();
                std::fs::create_dir_all(&self.snap_dir)?;
                let dest = snapshot_db_path(&self.snap_dir, meta.term, meta.index);
                let tmp = dest.with_extension("tmp");
                oxcd_backend::restore_snapshot(&mut r, &tmp).map_err(std::io::Error::other)?;
                crate::datadir::rename_durably(&tmp, &dest)?;
                tracing::info!(from = %MemberId(from), index = meta.index, "received snapshot");
                let w = r.get_mut();
                w.write_all(&[1])?;
                w.flush()?;
                let _ = self.raft_tx.send(RaftInput::Step(m));
                Ok(())
            }
            k => Err(std::io::Error::other(format!("unknown connection kind {k}"))),
        }
    }
}

impl Transport {
    /// A message from peer `from` for Raft (`noted`: when the connection last noted the peer
    /// heard from). False when this member no longer listens to the peer: it was removed since
    /// it connected (its next connection is refused), or Raft stopped.
    fn deliver(&self, from: u64, m: Message, label: &str, noted: &mut Instant) -> bool {
        if m.get_msg_type() == MessageType::MsgHeartbeatResponse {
            self.heartbeat_answered(from, label);
        }
        if noted.elapsed() >= HEARD_EVERY {
            *noted = Instant::now();
            self.heard.lock().insert(from, *noted);
            if self.removed.read().contains(&from) {
                return false;
            }
        }
        self.raft_tx.send(RaftInput::Step(m)).is_ok()
    }

    /// Serves etcd's peer HTTP API on a connection whose first bytes were `first`; bytes that
    /// cannot begin an HTTP request get Go's `400 Bad Request`.
    fn serve_http(&self, r: BufReader<PeerStream>, first: &[u8]) -> std::io::Result<()> {
        let buffered = r.buffer().to_vec();
        let conn = r.into_inner();
        conn.tcp().set_read_timeout(Some(peer_http::RW_TIMEOUT))?;
        conn.tcp().set_write_timeout(Some(peer_http::RW_TIMEOUT))?;
        let mut already = first.to_vec();
        already.extend_from_slice(&buffered);
        let mut http = HttpConn::new(conn, &already);
        if !peer_http::may_begin_request(first) {
            let s = http.stream();
            let _ = s.write_all(peer_http::ReadError::Bad.answer().unwrap_or_default());
            let _ = s.flush();
            return Err(std::io::Error::other("neither an oxcd peer nor HTTP"));
        }
        let Some(api) = self.api.get() else {
            return Err(std::io::Error::other("peer HTTP request before the member's state exists"));
        };
        match peer_http::serve(http, api.as_ref(), self, self.cluster)? {
            Some((req, conn)) if req.path() == "/raft/snapshot" => self.receive_etcd_snapshot(req, conn),
            Some((req, conn)) => self.attach_stream(req, conn),
            None => Ok(()),
        }
    }

    /// A heartbeat response from `from`: the round trip since the last heartbeat sent to it.
    fn heartbeat_answered(&self, from: u64, label: &str) {
        if let Some(sent) = self.heartbeat_sent.lock().remove(&from) {
            crate::metrics::PEER_ROUND_TRIP.with_label_values(&[label]).observe(sent.elapsed().as_secs_f64());
        }
    }
}

impl PeerTransport for Transport {
    /// Sends messages; MsgSnapshot goes on a connection of its own with the backend streamed after it.
    fn send(&self, msgs: Vec<Message>) {
        for m in msgs {
            let to = m.to;
            if m.get_msg_type() == MessageType::MsgSnapshot {
                let Some(t) = self.this.upgrade() else { return };
                let etcd = self.is_etcd(to);
                let _ = std::thread::Builder::new().name("snapshot-send".into()).spawn(move || {
                    let sent = if etcd { t.send_etcd_snapshot(m) } else { t.send_snapshot(m) };
                    let ok = match sent {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::warn!(to = %MemberId(to), error = %e, "sending snapshot failed");
                            false
                        }
                    };
                    let _ = t.raft_tx.send(RaftInput::SnapshotStatus { to, ok });
                });
                continue;
            }
            let peers = self.peers.read();
            let Some(tx) = peers.get(&to) else { continue };
            let heartbeat = m.get_msg_type() == MessageType::MsgHeartbeat;
            match tx.try_send(m) {
                Ok(()) => {
                    if heartbeat {
                        self.heartbeat_sent.lock().insert(to, Instant::now());
                    }
                }
                Err(TrySendError::Full(_)) => {
                    if heartbeat {
                        // The peer's queue is full: this heartbeat is lost (a slow peer or link,
                        // or a leader falling behind).
                        crate::metrics::HEARTBEAT_SEND_FAILURES.inc();
                    }
                    let _ = self.raft_tx.send(RaftInput::Unreachable(to));
                }
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
    }
}

/// Asks the member serving peers at `url` for the cluster id and the members (what a joining
/// member does first), as etcd's members ask: `GET /members`. A member of an older oxcd, which
/// does not serve it, is asked in oxcd's own protocol.
pub fn fetch_members(url: &str, tls: &PeerTls) -> std::io::Result<(ClusterId, Vec<Member>)> {
    fetch_members_http(url, tls).or_else(|e| {
        tracing::debug!(url, error = %e, "GET /members failed; asking in oxcd's peer protocol");
        let mut conn = ask(url, tls, &hello(0, 0, KIND_MEMBERS), Duration::from_secs(5))?;
        let mut cluster = [0u8; 8];
        conn.read_exact(&mut cluster)?;
        let list = read_blob(&mut conn, "members")?;
        let list = oxcd_api::etcdserverpb::MemberListResponse::decode(&list[..]).map_err(std::io::Error::other)?;
        Ok((ClusterId(u64::from_le_bytes(cluster)), list.members.into_iter().map(Member::from_pb).collect()))
    })
}

fn fetch_members_http(url: &str, tls: &PeerTls) -> std::io::Result<(ClusterId, Vec<Member>)> {
    let addr = PeerAddr::parse(url).map_err(std::io::Error::other)?;
    let conn = PeerStream::dial(&addr, tls, CONNECT_TIMEOUT, HANDSHAKE_TIMEOUT)?;
    conn.tcp().set_read_timeout(Some(peer_http::RW_TIMEOUT))?;
    conn.tcp().set_write_timeout(Some(peer_http::RW_TIMEOUT))?;
    let resp = peer_http::get(conn, &addr.addr.to_string(), "/members")?;
    if resp.status != 200 {
        return Err(std::io::Error::other(format!("GET {url}/members answered {}", resp.status)));
    }
    let cluster = resp
        .header("x-etcd-cluster-id")
        .and_then(|v| u64::from_str_radix(std::str::from_utf8(v).ok()?, 16).ok())
        .ok_or_else(|| std::io::Error::other(format!("GET {url}/members: no cluster id")))?;
    let members: Vec<EtcdMember> = serde_json::from_slice(&resp.body).map_err(std::io::Error::other)?;
    Ok((ClusterId(cluster), members.into_iter().map(Member::from).collect()))
}

/// The handshake a connection starts with: the magic, the sender's member id, the cluster id and
/// the kind of connection.
fn hello(from: u64, cluster: u64, kind: u8) -> [u8; 25] {
    let mut h = [0u8; 25];
    h[..8].copy_from_slice(MAGIC);
    h[8..16].copy_from_slice(&from.to_le_bytes());
    h[16..24].copy_from_slice(&cluster.to_le_bytes());
    h[24] = kind;
    h
}

/// A one-question connection to the member at peer URL `url`: `request` sent, the answer to be
/// read within `timeout`.
fn ask(url: &str, tls: &PeerTls, request: &[u8], timeout: Duration) -> std::io::Result<PeerStream> {
    let addr = PeerAddr::parse(url).map_err(std::io::Error::other)?;
    let mut conn = PeerStream::dial(&addr, tls, CONNECT_TIMEOUT.min(timeout), HANDSHAKE_TIMEOUT.min(timeout))?;
    conn.tcp().set_read_timeout(Some(timeout))?;
    conn.write_all(request)?;
    conn.flush()?;
    Ok(conn)
}

/// Bytes with their length before them (u32 LE).
fn write_blob(w: &mut impl Write, b: &[u8]) -> std::io::Result<()> {
    w.write_all(&(b.len() as u32).to_le_bytes())?;
    w.write_all(b)
}

/// What [`write_blob`] wrote; at most [`MAX_FRAME`] bytes (`what` names it in the error).
fn read_blob(r: &mut impl Read, what: &str) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!("{what} frame of {len} bytes")));
    }
    let mut b = vec![0; len];
    r.read_exact(&mut b)?;
    Ok(b)
}

/// One of the [`MAX_HANDSHAKING`] places, held from accept to the end of the peer handshake.
struct HandshakeSlot(Arc<std::sync::atomic::AtomicUsize>);

impl HandshakeSlot {
    fn take(count: &Arc<std::sync::atomic::AtomicUsize>) -> HandshakeSlot {
        count.fetch_add(1, Ordering::AcqRel);
        HandshakeSlot(count.clone())
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The members as a joining member asks for them: an encoded `MemberListResponse`.
fn encode_members(api: &dyn PeerApi) -> Vec<u8> {
    let members = api.members().iter().map(|m| m.to_pb()).collect();
    oxcd_api::etcdserverpb::MemberListResponse { header: None, members }.encode_to_vec()
}

/// The first byte of an answer to a HashKV request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum HashAnswer {
    Ok = 0,
    /// The revision asked for is compacted on the peer (its local member is behind).
    Compacted = 1,
    /// The revision asked for is ahead of the peer (a slow peer).
    FutureRev = 2,
    /// The peer cannot hash now.
    Unavailable = 3,
}

/// Asks the member at peer URL `url` for its HashKV at `rev` (an encoded `HashKvResponse`), as
/// member `me` of `cluster`.
pub fn fetch_hashkv(
    url: &str,
    tls: &PeerTls,
    me: MemberId,
    cluster: ClusterId,
    rev: i64,
    timeout: Duration,
) -> std::io::Result<Result<Vec<u8>, HashAnswer>> {
    let mut request = hello(me.0, cluster.0, KIND_HASHKV).to_vec();
    request.extend_from_slice(&rev.to_le_bytes());
    let mut conn = ask(url, tls, &request, timeout)?;
    let mut status = [0u8; 1];
    conn.read_exact(&mut status)?;
    match status[0] {
        0 => Ok(Ok(read_blob(&mut conn, "hashkv")?)),
        1 => Ok(Err(HashAnswer::Compacted)),
        2 => Ok(Err(HashAnswer::FutureRev)),
        _ => Ok(Err(HashAnswer::Unavailable)),
    }
}

fn write_frame(w: &mut impl Write, m: &Message, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    buf.clear();
    m.write_to_vec(buf).map_err(std::io::Error::other)?;
    w.write_all(&(buf.len() as u32).to_le_bytes())?;
    w.write_all(buf)?;
    Ok(4 + buf.len())
}

fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>) -> std::io::Result<Message> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!("frame of {len} bytes")));
    }
    buf.resize(len, 0);
    r.read_exact(buf)?;
    Message::parse_from_bytes(buf).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer port that reads as Go's HTTP server does (etcd 3.5.1's, checked by hand: it
    /// answers nothing until a line ends, then refuses the line with `400 Bad Request`).
    fn go_like_peer_port() -> std::net::SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut c) = conn else { return };
                let mut seen = Vec::new();
                let mut b = [0u8; 1];
                while c.read_exact(&mut b).is_ok() {
                    seen.push(b[0]);
                    if b[0] == b'\n' {
                        let _ = c.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n400 Bad Request");
                        break;
                    }
                }
            }
        });
        addr
    }

    #[test]
    fn an_etcd_member_is_told_from_its_answer_to_the_handshake() {
        let (tx, _rx) = crossbeam_channel::unbounded();
        let t = Transport::new(
            MemberId(0x1234),
            ClusterId(0x99),
            tx,
            || unreachable!("no snapshot is sent"),
            std::env::temp_dir(),
            PeerTls::default(),
        );
        let etcd = MemberId(0x0a0a);
        let url = format!("http://{}", go_like_peer_port());
        t.addrs.write().insert(etcd.0, PeerAddr::parse(&url).unwrap());
        // The handshake holds no newline: the peer waits, then reads the end of a line.
        assert!(!hello(0x1234, 0x99, KIND_MESSAGES).contains(&b'\n'));
        let e = t.connect(etcd, KIND_MESSAGES).err().expect("not an oxcd member");
        assert_eq!(e.kind(), std::io::ErrorKind::Unsupported, "{e}");
    }
}
