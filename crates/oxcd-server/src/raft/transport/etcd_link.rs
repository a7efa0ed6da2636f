//! rafthttp with etcd members (docs/etcd-peer-protocol.md §1): how this member's Raft messages
//! reach an etcd peer and how the peer's reach it.
//!
//! etcd's transport is dialed by the receiver. For each etcd peer this member
//! - dials the peer's `GET /raft/stream/message/<me>` and `GET /raft/stream/msgapp/<me>` and
//!   reads, from each answer's chunked body, the messages the peer sends it ([`Transport::read_streams`]);
//! - serves the same two requests from the peer: the answer's body stays open and carries this
//!   member's messages to it, appends on the msgapp stream, everything else on the message
//!   stream, with a link heartbeat at least every [`LINK_HEARTBEAT_EVERY`] on each, since etcd
//!   gives up on a stream silent for 5 s ([`Transport::attach_stream`]);
//! - until the peer has dialed, posts each message alone to its `POST /raft` (the pipeline), and
//!   takes the peer's pipelined messages the same way ([`Transport`]'s `RaftHttp`).
//!
//! A peer is known to be an etcd member when it answers oxcd's handshake in HTTP (etcd's peer port
//! refuses it with `400 Bad Request`), or when it dials a stream or posts a message here. Members
//! of oxcd keep oxcd's own protocol between them.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use crossbeam_channel::Receiver;
use parking_lot::Mutex;
use raft::prelude::{Message, MessageType};

use super::super::peer_http::{HttpConn, RaftHttp, Request, Response};
use super::super::peer_stream::PeerStream;
use super::super::rafthttp::{
    MessageStreamDecoder, MsgAppV2Decoder, MsgAppV2Encoder, decode_message, encode_framed, is_link_heartbeat,
    link_heartbeat,
};
use super::{RaftInput, Transport};
use crate::grpc::SERVER_VERSION;
use crate::ids::MemberId;

/// How often an idle stream carries a link heartbeat (etcd: its 5 s read timeout over 3).
pub(super) const LINK_HEARTBEAT_EVERY: Duration = Duration::from_millis(1500);
/// A stream is dialed again at most this often (etcd's `DialRetryFrequency`).
const DIAL_EVERY: Duration = Duration::from_millis(100);
/// etcd's `PeerDialTimeout` with the default election timeout.
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// A stream that carried nothing, not even a link heartbeat, for this long is dead (etcd's
/// per-read deadline on its streams).
const STREAM_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A pipeline post may wait this long for its answer (etcd answers after stepping the message,
/// which for a proposal waits for a leader).
const PIPELINE_TIMEOUT: Duration = Duration::from_secs(10);
/// The oldest cluster version this member works in (etcd's `MinClusterVersion`).
const MIN_CLUSTER_VERSION: &str = "3.0.0";
/// Messages written to the streams at once, at most (etcd flushes every 2048).
const BATCH: usize = 2048;

/// rafthttp's two stream types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StreamKind {
    Message,
    MsgApp,
}

impl StreamKind {
    fn name(self) -> &'static str {
        match self {
            StreamKind::Message => "message",
            StreamKind::MsgApp => "msgapp",
        }
    }
}

/// The streams an etcd peer opened here to receive this member's messages.
#[derive(Default)]
pub(super) struct Attached {
    message: Option<PeerStream>,
    msgapp: Option<(PeerStream, MsgAppV2Encoder)>,
}

/// The sending side's state for one etcd peer: its pipeline connection and the streams' buffers.
pub(super) struct Outbound {
    pipeline: Option<HttpConn<PeerStream>>,
    heartbeat_at: Instant,
    message: Vec<u8>,
    msgapp: Vec<u8>,
    pipelined: Vec<Message>,
}

impl Default for Outbound {
    fn default() -> Self {
        Outbound {
            pipeline: None,
            heartbeat_at: Instant::now(),
            message: Vec::new(),
            msgapp: Vec::new(),
            pipelined: Vec::new(),
        }
    }
}

/// `major.minor` of a version header (`3.5.1`).
fn major_minor(v: &[u8]) -> Option<(u64, u64)> {
    let v = std::str::from_utf8(v).ok()?;
    let mut parts = v.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// etcd's `checkClusterCompatibilityFromHeader`: the peer's versions must overlap this member's,
/// and the peer must be of this cluster. The refusal, if any.
fn compat_refusal(req: &Request, cluster: u64) -> Option<Response> {
    let version = |name: &str| req.header(name).map_or(Some((2, 0)), major_minor);
    let local = major_minor(SERVER_VERSION.as_bytes()).expect("the server's version parses");
    let min_local = major_minor(MIN_CLUSTER_VERSION.as_bytes()).expect("the minimum version parses");
    let compatible = match (version("X-Server-Version"), version("X-Min-Cluster-Version")) {
        (Some(server), Some(min_cluster)) => server >= min_local && min_cluster <= local,
        // etcd's handler panics on a version it cannot parse (the connection drops).
        _ => false,
    };
    if !compatible {
        return Some(Response::error(412, "incompatible version"));
    }
    if req.header("X-Etcd-Cluster-ID") != Some(format!("{cluster:x}").as_bytes()) {
        return Some(Response::error(412, "cluster ID mismatch"));
    }
    None
}

/// A scratch file, removed when dropped (if it is still there).
struct Scratch(std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A number no other scratch file of this process has.
fn scratch_seq() -> u64 {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Writes `data` as one chunk of a chunked body, and flushes.
fn write_chunk(w: &mut impl Write, data: &[u8]) -> io::Result<()> {
    w.write_all(format!("{:x}\r\n", data.len()).as_bytes())?;
    w.write_all(data)?;
    w.write_all(b"\r\n")?;
    w.flush()
}

/// Whether `e` says the other end closed the connection (rather than that it did not answer in
/// time).
fn closed_by_peer(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::InvalidData
    )
}

impl Transport {
    /// Whether peer `id` speaks etcd's rafthttp.
    pub(super) fn is_etcd(&self, id: u64) -> bool {
        self.etcd_peers.read().contains(&id)
    }

    /// Peer `id` is an etcd member: from now on it is spoken to in rafthttp, and its streams to
    /// this member are dialed.
    pub(super) fn mark_etcd(&self, id: u64) {
        if !self.etcd_peers.write().insert(id) {
            return;
        }
        tracing::info!(peer = %MemberId(id), "the peer is an etcd member: speaking etcd's rafthttp with it");
        for kind in [StreamKind::Message, StreamKind::MsgApp] {
            let Some(t) = self.this.upgrade() else { return };
            let _ = std::thread::Builder::new()
                .name(format!("etcd-{}", kind.name()))
                .spawn(move || t.read_streams(id, kind));
        }
    }

    fn attached_of(&self, id: u64) -> Arc<Mutex<Attached>> {
        self.attached.lock().entry(id).or_default().clone()
    }

    fn addr_of(&self, id: u64) -> io::Result<super::super::peer_stream::PeerAddr> {
        self.addrs.read().get(&id).cloned().ok_or_else(|| io::Error::other("no address"))
    }

    /// An HTTP connection to a peer, as etcd's round-trippers dial one: a write may wait
    /// [`RW_TIMEOUT`](super::super::peer_http::RW_TIMEOUT), a read `read_timeout`.
    fn dial_http(
        &self,
        addr: &super::super::peer_stream::PeerAddr,
        read_timeout: Duration,
    ) -> io::Result<HttpConn<PeerStream>> {
        let s = PeerStream::dial(addr, &self.tls, DIAL_TIMEOUT, DIAL_TIMEOUT)?;
        s.tcp().set_read_timeout(Some(read_timeout))?;
        s.tcp().set_write_timeout(Some(super::super::peer_http::RW_TIMEOUT))?;
        Ok(HttpConn::new(s, &[]))
    }

    /// The headers rafthttp's requests carry: `to`, the dialed member, on stream requests; a
    /// post's content type.
    fn rafthttp_headers(&self, to: Option<u64>, content_type: Option<&str>) -> String {
        let mut h = format!(
            "X-Server-From: {:x}\r\nX-Server-Version: {SERVER_VERSION}\r\nX-Min-Cluster-Version: {MIN_CLUSTER_VERSION}\r\nX-Etcd-Cluster-ID: {:x}\r\n",
            self.me.0, self.cluster.0
        );
        if let Some(to) = to {
            h.push_str(&format!("X-Raft-To: {to:x}\r\n"));
        }
        if let Some(t) = content_type {
            h.push_str(&format!("Content-Type: {t}\r\n"));
        }
        h
    }

    /// Sends `first` and what else is queued for etcd peer `to`: on the streams it opened here, or
    /// else one by one through its pipeline; and a link heartbeat on each stream when due.
    pub(super) fn etcd_send(
        &self,
        to: MemberId,
        first: Option<Message>,
        rx: &Receiver<Message>,
        out: &mut Outbound,
        sent: &prometheus::IntCounter,
        failures: &prometheus::IntCounter,
    ) {
        out.message.clear();
        out.msgapp.clear();
        out.pipelined.clear();
        let slot = self.attached_of(to.0);
        let mut a = slot.lock();
        let mut next = first;
        let mut taken = 0;
        while let Some(m) = next.take() {
            if m.get_msg_type() == MessageType::MsgAppend
                && let Some((_, enc)) = a.msgapp.as_mut()
            {
                enc.encode(&m, &mut out.msgapp);
            } else if a.message.is_some() {
                encode_framed(&m, &mut out.message);
            } else {
                out.pipelined.push(m);
            }
            taken += 1;
            if taken < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if out.heartbeat_at.elapsed() >= LINK_HEARTBEAT_EVERY {
            out.heartbeat_at = Instant::now();
            if a.message.is_some() {
                encode_framed(&link_heartbeat(), &mut out.message);
            }
            if let Some((_, enc)) = a.msgapp.as_mut() {
                enc.encode(&link_heartbeat(), &mut out.msgapp);
            }
        }
        let mut lost = false;
        if !out.message.is_empty()
            && let Some(s) = a.message.as_mut()
        {
            match write_chunk(s, &out.message) {
                Ok(()) => sent.inc_by(out.message.len() as u64),
                Err(e) => {
                    tracing::debug!(to = %to, error = %e, "writing the message stream failed");
                    a.message = None;
                    lost = true;
                }
            }
        }
        if !out.msgapp.is_empty()
            && let Some((s, _)) = a.msgapp.as_mut()
        {
            match write_chunk(s, &out.msgapp) {
                Ok(()) => sent.inc_by(out.msgapp.len() as u64),
                Err(e) => {
                    tracing::debug!(to = %to, error = %e, "writing the msgapp stream failed");
                    a.msgapp = None;
                    lost = true;
                }
            }
        }
        drop(a);
        for m in std::mem::take(&mut out.pipelined) {
            match self.post(to, &m, &mut out.pipeline) {
                Ok(n) => sent.inc_by(n as u64),
                Err(e) => {
                    tracing::debug!(to = %to, error = %e, "pipeline post failed");
                    lost = true;
                    // What is left is dropped: Raft sends it again.
                    break;
                }
            }
        }
        if lost {
            failures.inc();
            let _ = self.raft_tx.send(RaftInput::Unreachable(to.0));
        }
    }

    /// `POST /raft` of one message to etcd peer `to` (a connection kept between posts, dialed
    /// again once if etcd closed it while idle); the body's length.
    fn post(&self, to: MemberId, m: &Message, conn: &mut Option<HttpConn<PeerStream>>) -> io::Result<usize> {
        let body = super::super::rafthttp::encode_message(m);
        let headers = self.rafthttp_headers(None, Some("application/protobuf"));
        for attempt in 0..2 {
            let addr = self.addr_of(to.0)?;
            let kept = conn.is_some();
            if conn.is_none() {
                *conn = Some(self.dial_http(&addr, PIPELINE_TIMEOUT)?);
            }
            let c = conn.as_mut().expect("dialed above");
            let answer = c.send_request("POST", &addr.addr.to_string(), "/raft", &headers, &body).and_then(|()| {
                let mut resp = c.read_response_head()?;
                c.read_response_body(&mut resp, false)?;
                Ok(resp)
            });
            match answer {
                Ok(resp) => {
                    if resp.header("connection").is_some_and(|v| v.eq_ignore_ascii_case(b"close")) {
                        *conn = None;
                    }
                    return self.post_answered(to, &resp).map(|()| body.len());
                }
                // A kept connection etcd closed while it was idle (etcd never saw the message):
                // once more on a new one. Not after a timeout: etcd may have stepped it.
                Err(e) if attempt == 0 && kept && closed_by_peer(&e) => *conn = None,
                Err(e) => {
                    *conn = None;
                    return Err(e);
                }
            }
        }
        unreachable!("the loop returns")
    }

    /// Dials etcd peer `peer`'s stream of `kind` to this member and steps what arrives, again
    /// and again (at most every [`DIAL_EVERY`]) while the peer is one.
    fn read_streams(self: Arc<Self>, peer: u64, kind: StreamKind) {
        let mut dialed: Option<Instant> = None;
        loop {
            if let Some(t) = dialed {
                std::thread::sleep(DIAL_EVERY.saturating_sub(t.elapsed()));
            }
            if self.stopped.load(std::sync::atomic::Ordering::Acquire) || !self.addrs.read().contains_key(&peer) {
                return;
            }
            dialed = Some(Instant::now());
            if let Err(e) = self.read_stream(peer, kind) {
                tracing::debug!(peer = %MemberId(peer), stream = kind.name(), error = %e, "stream from an etcd peer ended");
            }
        }
    }

    fn read_stream(&self, peer: u64, kind: StreamKind) -> io::Result<()> {
        let addr = self.addr_of(peer)?;
        let mut conn = self.dial_http(&addr, STREAM_READ_TIMEOUT)?;
        let path = format!("/raft/stream/{}/{:x}", kind.name(), self.me.0);
        conn.send_request("GET", &addr.addr.to_string(), &path, &self.rafthttp_headers(Some(peer), None), &[])?;
        let mut resp = conn.read_response_head()?;
        match resp.status {
            200 => {}
            410 => {
                self.removed_by_peer(MemberId(peer));
                return Err(io::Error::other("removed member"));
            }
            s => {
                let _ = conn.read_response_body(&mut resp, false);
                return Err(io::Error::other(format!(
                    "the peer answered {s}: {}",
                    String::from_utf8_lossy(&resp.body).trim()
                )));
            }
        }
        if !resp.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case(b"chunked")) {
            return Err(io::Error::other("a stream answer that is not chunked"));
        }
        tracing::info!(peer = %MemberId(peer), stream = kind.name(), "receiving from an etcd peer");
        let label = MemberId(peer).to_string();
        let received = crate::metrics::PEER_RECEIVED_BYTES.with_label_values(&[label.as_str()]);
        let mut noted = Instant::now() - super::HEARD_EVERY;
        let mut buf = BytesMut::new();
        let mut message = MessageStreamDecoder;
        let mut msgapp = MsgAppV2Decoder::new(self.me.0, peer);
        loop {
            let before = buf.len();
            if !conn.next_chunk(&mut buf)? {
                return Ok(());
            }
            received.inc_by((buf.len() - before) as u64);
            loop {
                let m = match kind {
                    StreamKind::Message => message.decode(&mut buf),
                    StreamKind::MsgApp => msgapp.decode(&mut buf),
                }
                .map_err(io::Error::other)?;
                let Some(m) = m else { break };
                if is_link_heartbeat(&m) {
                    continue;
                }
                if !self.deliver(peer, m, &label, &mut noted) {
                    return Ok(());
                }
            }
            if self.stopped.load(std::sync::atomic::Ordering::Acquire) {
                return Ok(());
            }
        }
    }

    /// `GET /raft/stream/{message,msgapp}/<from>` from an etcd peer: checked as etcd checks it,
    /// then the connection carries this member's messages to it until a write fails or the peer
    /// dials again.
    pub(super) fn attach_stream(&self, req: Request, mut conn: HttpConn<PeerStream>) -> io::Result<()> {
        let headers =
            [("X-Server-Version", SERVER_VERSION.to_string()), ("X-Etcd-Cluster-Id", format!("{:x}", self.cluster.0))];
        let refuse = |conn: &mut HttpConn<PeerStream>, resp: Response| {
            let resp = headers.iter().fold(resp, |r, (n, v)| r.with(n, v.clone()));
            conn.respond(&resp, &req)
        };
        if let Some(resp) = compat_refusal(&req, self.cluster.0) {
            return refuse(&mut conn, resp);
        }
        let (dir, base) = req.path().rsplit_once('/').unwrap_or_default();
        let kind = match dir {
            "/raft/stream/msgapp" => StreamKind::MsgApp,
            "/raft/stream/message" => StreamKind::Message,
            _ => return refuse(&mut conn, Response::error(404, "invalid path")),
        };
        let Ok(from) = u64::from_str_radix(base, 16) else {
            return refuse(&mut conn, Response::error(404, "invalid from"));
        };
        if self.removed.read().contains(&from) {
            return refuse(&mut conn, Response::error(410, "removed member"));
        }
        if !self.addrs.read().contains_key(&from) {
            return refuse(&mut conn, Response::error(404, "error sender not found"));
        }
        if req.header("X-Raft-To") != Some(format!("{:x}", self.me.0).as_bytes()) {
            return refuse(&mut conn, Response::error(412, "to field mismatch"));
        }
        let mut head = String::from("HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n");
        for (n, v) in &headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
        conn.stream().write_all(head.as_bytes())?;
        conn.stream().flush()?;
        let (stream, _) = conn.into_parts();
        stream.tcp().set_read_timeout(None)?;
        stream.tcp().set_write_timeout(Some(super::super::peer_http::RW_TIMEOUT))?;
        tracing::info!(peer = %MemberId(from), stream = kind.name(), "an etcd peer opened a stream to receive from this member");
        self.mark_etcd(from);
        let slot = self.attached_of(from);
        let mut a = slot.lock();
        match kind {
            StreamKind::Message => a.message = Some(stream),
            StreamKind::MsgApp => a.msgapp = Some((stream, MsgAppV2Encoder::default())),
        }
        Ok(())
    }
}

impl Transport {
    /// `POST /raft/snapshot` from an etcd leader (etcd's `snapshotHandler`): the body is a u64
    /// length, the MsgSnap, then etcd's backend file to the end. The file becomes the backend
    /// snapshot Raft installs (imported as the takeover imports etcd's backend), then the message
    /// is stepped and answered `204`.
    pub(super) fn receive_etcd_snapshot(&self, req: Request, mut conn: HttpConn<PeerStream>) -> io::Result<()> {
        let cluster = ("X-Etcd-Cluster-Id", format!("{:x}", self.cluster.0));
        let answer = match self.take_etcd_snapshot(&req, &mut conn) {
            Ok(()) => Response { status: 204, headers: Vec::new(), body: Vec::new() },
            Err(resp) => resp,
        };
        let mut req = req;
        // Whatever is left of a refused body is not read: the connection closes after the answer.
        req.keep_alive = false;
        conn.respond(&answer.with(cluster.0, cluster.1), &req)
    }

    fn take_etcd_snapshot(&self, req: &Request, conn: &mut HttpConn<PeerStream>) -> Result<(), Response> {
        if let Some(resp) = compat_refusal(req, self.cluster.0) {
            return Err(resp);
        }
        let bad = |what: String| Response::error(400, &format!("failed to decode raft message ({what})"));
        let mut framing = req.framing;
        let mut buf = BytesMut::new();
        // The message: its length, then itself.
        let message_len = loop {
            if buf.len() >= 8 {
                let len = u64::from_be_bytes(buf[..8].try_into().expect("8 bytes"));
                if len > super::super::rafthttp::MAX_MESSAGE_BYTES {
                    return Err(bad(format!("a message of {len} bytes")));
                }
                if buf.len() as u64 >= 8 + len {
                    break len as usize;
                }
            }
            match conn.next_body_piece(&mut framing, &mut buf) {
                Ok(true) => {}
                Ok(false) => return Err(bad("unexpected EOF".into())),
                Err(e) => return Err(bad(e.to_string())),
            }
        };
        let m = decode_message(&buf[8..8 + message_len]).map_err(|e| bad(e.to_string()))?;
        if m.get_msg_type() != MessageType::MsgSnapshot {
            return Err(Response::error(400, "wrong raft message type"));
        }
        if self.removed.read().contains(&m.from) {
            return Err(Response::new(
                403,
                "application/json",
                "{\"message\":\"cannot process message from removed member\"}",
            ));
        }
        let meta = m.get_snapshot().get_metadata();
        let (index, term) = (meta.index, meta.term);
        let v2 = oxcd_datadir::etcd_v2store::read(m.get_snapshot().get_data()).map_err(bad)?;
        let _ = buf.split_to(8 + message_len);
        // The backend file, to the end of the body, under a scratch name of its own (removed
        // however this ends, and by a restart).
        let save = |e: String| Response::error(500, &format!("failed to save KV snapshot ({e})"));
        std::fs::create_dir_all(&self.snap_dir).map_err(|e| save(e.to_string()))?;
        let received = Scratch(self.snap_dir.join(format!("{index:016x}-{}.etcd.snapshot.tmp", scratch_seq())));
        let mut file = std::fs::File::create(&received.0).map_err(|e| save(e.to_string()))?;
        loop {
            file.write_all(&buf).map_err(|e| save(e.to_string()))?;
            buf.clear();
            match conn.next_body_piece(&mut framing, &mut buf) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Err(save(e.to_string())),
            }
        }
        drop(file);
        self.import_etcd_snapshot(&received.0, index, term, &v2).map_err(|e| save(e.to_string()))?;
        drop(received);
        tracing::info!(from = %MemberId(m.from), index, term, "received a snapshot from an etcd member");
        let label = MemberId(m.from).to_string();
        let mut noted = Instant::now() - super::HEARD_EVERY;
        if !self.deliver(m.from, m, &label, &mut noted) {
            return Err(Response::error(500, "failed to process raft message (the member is stopping)"));
        }
        Ok(())
    }

    /// etcd's backend file at `received` as the backend snapshot Raft installs at `index`.
    fn import_etcd_snapshot(
        &self,
        received: &std::path::Path,
        index: u64,
        term: u64,
        v2: &oxcd_datadir::etcd_v2store::V2Membership,
    ) -> io::Result<()> {
        let data = std::fs::read(received)?;
        let db = oxcd_backend::bolt::Reader::open(&data).map_err(io::Error::other)?;
        let dest = super::snapshot_db_path(&self.snap_dir, term, index);
        let tmp = Scratch(self.snap_dir.join(format!("{term:016x}-{index:016x}-{}.snap.tmp", scratch_seq())));
        oxcd_datadir::etcd_datadir::import_db(&db, &tmp.0, index, term, Some(v2)).map_err(io::Error::other)?;
        crate::datadir::rename_durably(&tmp.0, &dest)
    }
}

impl Transport {
    /// Sends snapshot message `m` to an etcd member as etcd's leader does (`POST /raft/snapshot`,
    /// docs/etcd-peer-protocol.md §4.3, §4.5): the message, its data the v2 store with the
    /// members and the cluster version (etcd's members read their membership from there), then
    /// the backend now as etcd's backend file (applied at or past the snapshot's index, as etcd's
    /// own are).
    pub(super) fn send_etcd_snapshot(&self, mut m: Message) -> io::Result<()> {
        let to = MemberId(m.to);
        let api = self.api.get().ok_or_else(|| io::Error::other("the member's state is not there yet"))?;
        let mut removed: Vec<MemberId> = self.removed.read().iter().map(|id| MemberId(*id)).collect();
        removed.sort();
        let v2 = oxcd_datadir::etcd_v2store::write(&api.members(), &removed, api.cluster_version().as_deref());
        m.mut_snapshot().set_data(v2.into());
        std::fs::create_dir_all(&self.snap_dir)?;
        let index = m.get_snapshot().get_metadata().index;
        // Of its own (two followers may need the same snapshot at once), and a scratch name a
        // restart removes.
        let file = self.snap_dir.join(format!("{index:016x}-{:x}-{}.to-etcd.snapshot.tmp", to.0, scratch_seq()));
        let file = Scratch(file);
        oxcd_datadir::etcd_snapshot::write_etcd_db(&(self.backend)(), &file.0).map_err(io::Error::other)?;
        self.post_snapshot(to, &m, &file.0)?;
        tracing::info!(to = %to, index, "sent a snapshot to an etcd member");
        Ok(())
    }

    fn post_snapshot(&self, to: MemberId, m: &Message, file: &std::path::Path) -> io::Result<()> {
        use std::io::Read as _;
        let addr = self.addr_of(to.0)?;
        // etcd answers once it has stored the file and stepped the message.
        let mut conn = self.dial_http(&addr, Duration::from_secs(60))?;
        let head = format!(
            "POST /raft/snapshot HTTP/1.1\r\nHost: {}\r\nUser-Agent: oxcd\r\n{}Transfer-Encoding: chunked\r\n\r\n",
            addr.addr,
            self.rafthttp_headers(None, Some("application/octet-stream"))
        );
        let w = conn.stream();
        w.write_all(head.as_bytes())?;
        let mut first = Vec::new();
        encode_framed(m, &mut first);
        write_chunk(w, &first)?;
        let mut db = std::fs::File::open(file)?;
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = db.read(&mut buf)?;
            if n == 0 {
                break;
            }
            write_chunk(w, &buf[..n])?;
        }
        w.write_all(b"0\r\n\r\n")?;
        w.flush()?;
        let mut resp = conn.read_response_head()?;
        let _ = conn.read_response_body(&mut resp, false);
        self.post_answered(to, &resp)
    }

    /// What etcd's answer to a post says (etcd's `checkPostResponse`): `204` is success, `403`
    /// means this member was removed (it stops), anything else an error.
    fn post_answered(&self, to: MemberId, resp: &super::super::peer_http::ClientResponse) -> io::Result<()> {
        match resp.status {
            204 => Ok(()),
            403 => {
                self.removed_by_peer(to);
                Err(io::Error::other("this member was removed from the cluster"))
            }
            s => Err(io::Error::other(format!(
                "unexpected http status {s}: {}",
                String::from_utf8_lossy(&resp.body).trim()
            ))),
        }
    }
}

impl RaftHttp for Transport {
    /// etcd's `pipelineHandler`: one message, stepped, then `204 No Content`.
    fn pipeline(&self, req: &Request) -> Response {
        let cluster = ("X-Etcd-Cluster-Id", format!("{:x}", self.cluster.0));
        if let Some(resp) = compat_refusal(req, self.cluster.0) {
            return resp.with(cluster.0, cluster.1);
        }
        let m = match decode_message(&req.body) {
            Ok(m) => m,
            Err(_) => return Response::error(400, "error unmarshalling raft message").with(cluster.0, cluster.1),
        };
        let from = m.from;
        if self.removed.read().contains(&from) {
            return Response::new(
                403,
                "application/json",
                "{\"message\":\"cannot process message from removed member\"}",
            )
            .with(cluster.0, cluster.1);
        }
        if self.addrs.read().contains_key(&from) {
            self.mark_etcd(from);
        }
        let label = MemberId(from).to_string();
        let mut noted = Instant::now() - super::HEARD_EVERY;
        crate::metrics::PEER_RECEIVED_BYTES.with_label_values(&[label.as_str()]).inc_by(req.body.len() as u64);
        if !self.deliver(from, m, &label, &mut noted) {
            return Response::error(500, "error processing raft message").with(cluster.0, cluster.1);
        }
        Response { status: 204, headers: vec![cluster], body: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request {
        Request {
            method: "POST".into(),
            target: "/raft".into(),
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect(),
            framing: super::super::super::peer_http::Framing::None,
            body: Vec::new(),
            keep_alive: true,
            minor: 1,
        }
    }

    #[test]
    fn peers_are_checked_as_etcd_checks_them() {
        let ok = [("X-Server-Version", "3.5.1"), ("X-Min-Cluster-Version", "3.0.0"), ("X-Etcd-Cluster-ID", "ab12")];
        assert_eq!(compat_refusal(&request(&ok), 0xab12), None);
        // etcd 3.4 names the same minimum.
        let v34 = [("X-Server-Version", "3.4.23"), ("X-Min-Cluster-Version", "3.0.0"), ("X-Etcd-Cluster-ID", "ab12")];
        assert_eq!(compat_refusal(&request(&v34), 0xab12), None);
        let refused = |h: &[(&str, &str)]| compat_refusal(&request(h), 0xab12).map(|r| (r.status, r.body));
        let incompatible = Some((412, b"incompatible version\n".to_vec()));
        // Missing versions count as 2.0.0: too old.
        assert_eq!(refused(&[("X-Etcd-Cluster-ID", "ab12")]), incompatible);
        assert_eq!(
            refused(&[
                ("X-Server-Version", "3.6.0"),
                ("X-Min-Cluster-Version", "3.6.0"),
                ("X-Etcd-Cluster-ID", "ab12")
            ]),
            incompatible
        );
        assert_eq!(
            refused(&[("X-Server-Version", "x"), ("X-Min-Cluster-Version", "3.0.0"), ("X-Etcd-Cluster-ID", "ab12")]),
            incompatible
        );
        assert_eq!(
            refused(&[
                ("X-Server-Version", "3.5.1"),
                ("X-Min-Cluster-Version", "3.0.0"),
                ("X-Etcd-Cluster-ID", "AB12")
            ]),
            Some((412, b"cluster ID mismatch\n".to_vec()))
        );
    }

    #[test]
    fn chunks_are_framed_as_http_reads_them() {
        let mut out = Vec::new();
        write_chunk(&mut out, b"0123456789abcdefg").unwrap();
        assert_eq!(out, b"11\r\n0123456789abcdefg\r\n");
        let mut conn = HttpConn::new(io::Cursor::new(Vec::new()), &out);
        let mut buf = BytesMut::new();
        assert!(conn.next_chunk(&mut buf).unwrap());
        assert_eq!(&buf[..], b"0123456789abcdefg");
    }
}
