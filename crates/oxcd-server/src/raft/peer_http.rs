//! etcd's peer HTTP API on the peer port, beside oxcd's own peer protocol: a connection whose
//! first bytes are not `OXCDPEER` is read as HTTP/1.1, as etcd's peer port (Go's HTTP server)
//! reads every connection.
//!
//! Served: what etcd members and operators ask a peer outside Raft, with etcd 3.5's bodies,
//! headers, status codes and error texts — `GET /version`, `GET /members`, `/raft/probing`,
//! `GET /downgrade/enabled` (after a linearizable read) and `GET /members/hashkv` — and, through
//! the transport ([`RaftHttp`]), rafthttp's pipeline and streams. Every other path gets Go's
//! `404 page not found`; rafthttp's snapshot endpoint, the lease and promote forwarding are still
//! to come (docs/etcd-peer-protocol.md §8).
//!
//! Connections stay open between requests as with Go's server, and, as on etcd's peer listener,
//! no single read or write may wait more than [`RW_TIMEOUT`].

use std::io::{self, Read, Write};
use std::time::Duration;

use oxcd_api::EtcdError;
use oxcd_api::etcdserverpb::{
    HashKvResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
    ResponseHeader,
};
use oxcd_datadir::etcd_snapshot::EtcdMember;
use oxcd_datadir::membership::Member;
use oxcd_lease::RenewError;
use prost::Message as _;

use super::transport::HashAnswer;
use crate::ids::ClusterId;

/// etcd's peer listener sets this deadline before every read and every write.
pub const RW_TIMEOUT: Duration = Duration::from_secs(5);
/// Go's `DefaultMaxHeaderBytes`.
const MAX_HEADER_BYTES: usize = 1 << 20;
/// Largest request body read (none of the endpoints served takes more than a few bytes).
const MAX_BODY_BYTES: usize = 4 << 20;
/// What Go's server reads and drops of a body its handler left unread, so that the connection
/// can serve the next request (`maxPostHandlerReadBytes`); a longer body, or one that does not
/// come, closes the connection after the answer.
const MAX_DISCARD_BYTES: usize = 256 << 10;
/// Longest line of a chunked body's framing.
const MAX_CHUNK_LINE: usize = 4096;

/// What the peer HTTP API answers from: the member's state.
pub trait PeerApi: Send + Sync {
    /// Every member (voters, learners, and members not started yet).
    fn members(&self) -> Vec<Member>;
    /// The version the members agreed on (`3.5.0`), once decided.
    fn cluster_version(&self) -> Option<String>;
    /// Waits until a local read is linearizable (etcd's `linearizableReadNotify`), with etcd's
    /// request timeout; the error's text when it fails.
    fn read_barrier(&self) -> Result<(), String>;
    /// The member's HashKV at `rev` (0: the current revision); with `compactions`, the hash
    /// kept from a compaction at `rev` when there is one (later etcd 3.5 releases' answer, which
    /// oxcd's members ask for), else as etcd 3.5.1 answers (its compaction revision is compacted).
    fn hash_kv(&self, rev: i64, compactions: bool) -> Result<HashKvResponse, HashAnswer>;
    /// `POST /members/promote/<id>` (a follower forwarding `member promote`): learner `id`
    /// promoted by this member as the leader, and the members after it; `None` when this member
    /// does not lead.
    fn promote(&self, id: u64) -> Option<Result<Vec<Member>, EtcdError>>;
    /// `POST /leases` (a follower forwarding a keep-alive): lease `id` renewed by this member's
    /// lessor, its TTL.
    fn lease_renew(&self, id: i64) -> Result<i64, RenewError>;
    /// `POST /leases/internal` (a follower forwarding TimeToLive): `None` for an unknown lease.
    fn lease_time_to_live(&self, id: i64, keys: bool) -> Option<LeaseTimeToLiveResponse>;
}

/// leasepb's `LeaseInternalRequest`, what `POST /leases/internal` carries.
#[derive(Clone, PartialEq, prost::Message)]
struct LeaseInternalRequest {
    #[prost(message, optional, tag = "1")]
    request: Option<LeaseTimeToLiveRequest>,
}

/// leasepb's `LeaseInternalResponse`.
#[derive(Clone, PartialEq, prost::Message)]
struct LeaseInternalResponse {
    #[prost(message, optional, tag = "1")]
    response: Option<LeaseTimeToLiveResponse>,
}

/// How a request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body, or its bytes already read.
    None,
    Length(u64),
    Chunked,
}

/// One request; its body is read when a handler asks for it.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The request target as sent (path and query).
    pub target: String,
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body not read yet.
    pub framing: Framing,
    /// The body, once read.
    pub body: Vec<u8>,
    /// Whether the connection stays open after the answer (HTTP/1.1 unless `Connection: close`;
    /// HTTP/1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// HTTP/1.0 or 1.1: the answer's status line says the same.
    pub minor: u8,
}

impl Request {
    pub fn path(&self) -> &str {
        self.target.split(['?', '#']).next().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&[u8]> {
        find_header(&self.headers, name)
    }
}

/// A header's value, its name matched without regard to case.
fn find_header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
}

/// Headers as httparse read them, owned.
fn owned_headers(headers: &[httparse::Header<'_>]) -> Vec<(String, Vec<u8>)> {
    headers.iter().map(|h| (h.name.to_string(), h.value.to_vec())).collect()
}

/// Why no request could be read.
#[derive(Debug)]
pub enum ReadError {
    /// The client closed the connection between requests.
    Closed,
    Io(io::Error),
    /// Not HTTP/1.x, or a framing Go's server refuses: answered `400 Bad Request`, then closed.
    Bad,
    /// An HTTP/1.1 request without `Host`, which Go's server refuses.
    MissingHost,
    /// Headers over Go's limit: `431 Request Header Fields Too Large`, then closed.
    HeadersTooLarge,
    /// A body over [`MAX_BODY_BYTES`]: `413 Request Entity Too Large`, then closed.
    BodyTooLarge,
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

impl ReadError {
    /// What Go's server writes before closing a connection it could not read a request from.
    pub fn answer(&self) -> Option<&'static [u8]> {
        match self {
            ReadError::Closed | ReadError::Io(_) => None,
            ReadError::Bad => Some(
                b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request",
            ),
            ReadError::MissingHost => Some(
                b"HTTP/1.1 400 Bad Request: missing required Host header\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request: missing required Host header",
            ),
            ReadError::HeadersTooLarge => Some(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n431 Request Header Fields Too Large",
            ),
            ReadError::BodyTooLarge => Some(
                b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n413 Request Entity Too Large",
            ),
        }
    }
}

impl From<ReadError> for io::Error {
    fn from(e: ReadError) -> io::Error {
        match e {
            ReadError::Io(e) => e,
            ReadError::Closed => io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"),
            e => io::Error::new(io::ErrorKind::InvalidData, format!("bad HTTP message: {e:?}")),
        }
    }
}

/// An answer to [`get`].
#[derive(Debug)]
pub struct ClientResponse {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl ClientResponse {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        find_header(&self.headers, name)
    }
}

/// Largest answer body [`get`] reads (etcd's member list of a large cluster is a few KiB).
const MAX_CLIENT_BODY: usize = 16 << 20;

/// `GET path` of a peer on `stream`, as etcd's members ask each other outside Raft: one request,
/// `Connection: close`, the whole answer read (by its length, chunks, or up to the close).
pub fn get<S: Read + Write>(stream: S, host: &str, path: &str) -> io::Result<ClientResponse> {
    let mut conn = HttpConn::new(stream, &[]);
    conn.send_request("GET", host, path, "Connection: close\r\n", &[])?;
    let mut resp = conn.read_response_head()?;
    conn.read_response_body(&mut resp, true)?;
    Ok(resp)
}

/// An HTTP/1.1 connection: on the server's side requests in and responses out, on the client's
/// the other way; bytes read ahead are kept for the next message (a client may pipeline).
pub struct HttpConn<S> {
    stream: S,
    buf: Vec<u8>,
}

impl<S: Read + Write> HttpConn<S> {
    /// A connection whose first bytes (read to tell the protocol) are `already`.
    pub fn new(stream: S, already: &[u8]) -> Self {
        HttpConn { stream, buf: already.to_vec() }
    }

    pub fn stream(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The connection, and the bytes read from it that no message took yet.
    pub fn into_parts(self) -> (S, Vec<u8>) {
        (self.stream, self.buf)
    }

    /// Client side: writes a request (`extra` holds whole header lines, each ending in CRLF).
    pub fn send_request(&mut self, method: &str, host: &str, path: &str, extra: &str, body: &[u8]) -> io::Result<()> {
        let mut out = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: oxcd\r\n{extra}");
        if method == "POST" {
            out.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(body);
        self.stream.write_all(&bytes)?;
        self.stream.flush()
    }

    /// Client side: the status line and headers of the answer (its body not read).
    pub fn read_response_head(&mut self) -> io::Result<ClientResponse> {
        let head_len = self.read_head(false)?;
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut parsed = httparse::Response::new(&mut headers);
        let (Ok(httparse::Status::Complete(_)), Some(status)) = (parsed.parse(&self.buf[..head_len]), parsed.code)
        else {
            return Err(ReadError::Bad.into());
        };
        let headers = owned_headers(parsed.headers);
        self.buf.drain(..head_len);
        Ok(ClientResponse { status, headers, body: Vec::new() })
    }

    /// Client side: the answer's body (by its length, its chunks, or, when `to_close`, up to
    /// the end of the connection; else a body with neither is empty).
    pub fn read_response_body(&mut self, resp: &mut ClientResponse, to_close: bool) -> io::Result<()> {
        let chunked = resp.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case(b"chunked"));
        let length =
            resp.header("content-length").and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<usize>().ok());
        match (chunked, length) {
            (true, _) => self.read_chunked(&mut resp.body, MAX_CLIENT_BODY)?,
            (false, Some(n)) if n > MAX_CLIENT_BODY => return Err(ReadError::BodyTooLarge.into()),
            (false, Some(n)) => self.take(n, &mut resp.body)?,
            (false, None) if to_close => {
                while self.more()? {
                    if self.buf.len() > MAX_CLIENT_BODY {
                        return Err(ReadError::BodyTooLarge.into());
                    }
                }
                resp.body = std::mem::take(&mut self.buf);
            }
            (false, None) => {}
        }
        Ok(())
    }

    /// A request's body read as it comes: appends what arrives next (at most what is left of it)
    /// to `out`; false once it was all read. `framing` counts down.
    pub fn next_body_piece(&mut self, framing: &mut Framing, out: &mut bytes::BytesMut) -> io::Result<bool> {
        match framing {
            Framing::None | Framing::Length(0) => Ok(false),
            Framing::Chunked => {
                let more = self.next_chunk(out)?;
                if !more {
                    // Trailers, up to an empty line.
                    while !self.line()?.is_empty() {}
                    *framing = Framing::None;
                }
                Ok(more)
            }
            Framing::Length(n) => {
                if self.buf.is_empty() && !self.more()? {
                    return Err(ReadError::Bad.into());
                }
                let take = self.buf.len().min(usize::try_from(*n).unwrap_or(usize::MAX));
                out.extend_from_slice(&self.buf[..take]);
                self.buf.drain(..take);
                *n -= take as u64;
                Ok(true)
            }
        }
    }

    /// Client side, a chunked body read as it comes: appends the next chunk's bytes to `out`;
    /// false at the last (empty) chunk.
    pub fn next_chunk(&mut self, out: &mut bytes::BytesMut) -> io::Result<bool> {
        let size = self.chunk_size()?;
        if size == 0 {
            return Ok(false);
        }
        while self.buf.len() < size {
            if !self.more()? {
                return Err(ReadError::Bad.into());
            }
        }
        out.extend_from_slice(&self.buf[..size]);
        self.buf.drain(..size);
        if !self.line()?.is_empty() {
            return Err(ReadError::Bad.into());
        }
        Ok(true)
    }

    /// Reads more bytes into the buffer; false at the end of the stream.
    fn more(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 16 << 10];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// Takes the next `n` bytes.
    fn take(&mut self, n: usize, out: &mut Vec<u8>) -> Result<(), ReadError> {
        while self.buf.len() < n {
            if !self.more()? {
                return Err(ReadError::Bad);
            }
        }
        out.extend(self.buf.drain(..n));
        Ok(())
    }

    /// Takes one CRLF-terminated line (without the CRLF).
    fn line(&mut self) -> Result<Vec<u8>, ReadError> {
        let mut searched = 0;
        loop {
            if let Some(i) = self.buf[searched..].iter().position(|&b| b == b'\n') {
                let end = searched + i;
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                if line.pop() != Some(b'\r') {
                    return Err(ReadError::Bad);
                }
                return Ok(line);
            }
            searched = self.buf.len();
            if searched > MAX_CHUNK_LINE || !self.more()? {
                return Err(ReadError::Bad);
            }
        }
    }

    /// Reads the next request, body included. The request line is checked as soon as it is
    /// complete, so bytes that cannot begin a request are refused at once, as Go's server refuses
    /// a bad request line; the head is parsed once, when it is complete (linear in its length
    /// however the client splits it).
    pub fn read_request(&mut self) -> Result<Request, ReadError> {
        let head_len = self.read_head(true)?;
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&self.buf[..head_len]) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(ReadError::Bad),
            Err(e) => return Err(refusal(e)),
        }
        let (Some(method), Some(target), Some(minor)) = (parsed.method, parsed.path, parsed.version) else {
            return Err(ReadError::Bad);
        };
        let mut req = Request {
            method: method.to_string(),
            target: target.to_string(),
            headers: owned_headers(parsed.headers),
            framing: Framing::None,
            body: Vec::new(),
            keep_alive: minor == 1,
            minor,
        };
        self.buf.drain(..head_len);
        if req.minor == 1 && req.header("host").is_none() {
            return Err(ReadError::MissingHost);
        }
        if let Some(c) = req.header("connection") {
            let c = String::from_utf8_lossy(c).to_ascii_lowercase();
            if c.split(',').any(|t| t.trim() == "close") {
                req.keep_alive = false;
            } else if c.split(',').any(|t| t.trim() == "keep-alive") {
                req.keep_alive = true;
            }
        }
        let chunked =
            req.header("transfer-encoding").map(|v| String::from_utf8_lossy(v).trim().eq_ignore_ascii_case("chunked"));
        let length =
            req.header("content-length").map(|v| std::str::from_utf8(v).ok().and_then(|s| s.parse::<u64>().ok()));
        req.framing = match (chunked, length) {
            // Chunked wins over a length, as in Go's server; other codings and bad lengths are
            // refused.
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) | (None, Some(None)) => return Err(ReadError::Bad),
            (None, Some(Some(0))) | (None, None) => Framing::None,
            (None, Some(Some(n))) => Framing::Length(n),
        };
        Ok(req)
    }

    /// Reads until the buffer holds a whole head, up to its blank line; the head's length. For a
    /// `request`, empty lines before it are skipped and its request line is checked as soon as
    /// it is complete, as Go's server does.
    fn read_head(&mut self, request: bool) -> Result<usize, ReadError> {
        let mut searched = 0;
        let mut line_checked = !request;
        loop {
            if request && searched == 0 {
                while self.buf.starts_with(b"\r\n") {
                    self.buf.drain(..2);
                }
            }
            if !line_checked && self.buf[searched..].contains(&b'\n') {
                line_checked = true;
                let mut headers = [httparse::EMPTY_HEADER; 128];
                if let Err(e) = httparse::Request::new(&mut headers).parse(&self.buf) {
                    return Err(refusal(e));
                }
            }
            let from = searched.saturating_sub(3);
            if let Some(i) = self.buf[from..].windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok(from + i + 4);
            }
            searched = self.buf.len();
            if searched > MAX_HEADER_BYTES {
                return Err(ReadError::HeadersTooLarge);
            }
            if !self.more()? {
                return Err(if self.buf.is_empty() { ReadError::Closed } else { ReadError::Bad });
            }
        }
    }

    /// Reads the request's body into `req.body`, if it is at most `limit` bytes.
    pub fn read_body(&mut self, req: &mut Request, limit: usize) -> Result<(), ReadError> {
        let framing = std::mem::replace(&mut req.framing, Framing::None);
        match framing {
            Framing::None => Ok(()),
            Framing::Length(n) if n > limit as u64 => Err(ReadError::BodyTooLarge),
            Framing::Length(n) => {
                // What the peer says is coming is not taken on trust: the buffer grows as it comes.
                req.body.reserve((n as usize).min(64 << 10));
                self.take(n as usize, &mut req.body)
            }
            Framing::Chunked => self.read_chunked(&mut req.body, limit),
        }
    }

    /// The size line of a chunk (its extensions left out).
    fn chunk_size(&mut self) -> Result<usize, ReadError> {
        let line = self.line()?;
        let size = line.split(|&b| b == b';').next().unwrap_or_default();
        std::str::from_utf8(size).ok().and_then(|s| usize::from_str_radix(s.trim(), 16).ok()).ok_or(ReadError::Bad)
    }

    fn read_chunked(&mut self, body: &mut Vec<u8>, limit: usize) -> Result<(), ReadError> {
        loop {
            let size = self.chunk_size()?;
            if size == 0 {
                // Trailers, up to an empty line.
                while !self.line()?.is_empty() {}
                return Ok(());
            }
            if body.len() + size > limit {
                return Err(ReadError::BodyTooLarge);
            }
            self.take(size, body)?;
            if !self.line()?.is_empty() {
                return Err(ReadError::Bad);
            }
        }
    }

    /// Writes the response to `req` (its body left out for `HEAD`).
    pub fn respond(&mut self, resp: &Response, req: &Request) -> io::Result<()> {
        let mut out = Vec::with_capacity(256 + resp.body.len());
        resp.write_head(&mut out, req.minor, req.keep_alive, &http_date(time::OffsetDateTime::now_utc()));
        if req.method != "HEAD" {
            out.extend_from_slice(&resp.body);
        }
        self.stream.write_all(&out)?;
        self.stream.flush()
    }
}

/// How a head httparse refuses is answered.
fn refusal(e: httparse::Error) -> ReadError {
    match e {
        httparse::Error::TooManyHeaders => ReadError::HeadersTooLarge,
        _ => ReadError::Bad,
    }
}

/// Whether the first bytes of a connection can begin an HTTP request: a method (token
/// characters; every method etcd's peers send is at most 7 long) and its space. Anything else on
/// the peer port gets `400 Bad Request` at once, without waiting for a line that may never end.
pub fn may_begin_request(first: &[u8]) -> bool {
    let tchar = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    match first.iter().position(|&b| b == b' ') {
        Some(n) => n > 0 && first[..n].iter().all(tchar),
        None => false,
    }
}

/// A response, its body whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// As Go's handlers set them (canonical names); written in Go's order, sorted.
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response { status, headers: vec![("Content-Type", content_type.to_string())], body: body.into() }
    }

    /// Go's `http.Error`: plain text with a newline, and `nosniff`.
    pub fn error(status: u16, text: &str) -> Response {
        Response::new(status, "text/plain; charset=utf-8", format!("{text}\n"))
            .with("X-Content-Type-Options", "nosniff".into())
    }

    /// Go's `http.NotFound`.
    pub fn not_found() -> Response {
        Response::error(404, "404 page not found")
    }

    /// etcd's `allowMethod`: the one method a handler takes.
    fn method_not_allowed(allow: &str) -> Response {
        Response::error(405, "Method Not Allowed").with("Allow", allow.to_string())
    }

    pub fn with(mut self, name: &'static str, value: String) -> Response {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value));
        self
    }

    fn write_head(&self, out: &mut Vec<u8>, minor: u8, keep_alive: bool, date: &str) {
        let mut headers: Vec<&(&str, String)> = self.headers.iter().collect();
        headers.sort_by_key(|(n, _)| *n);
        out.extend_from_slice(format!("HTTP/1.{minor} {} {}\r\n", self.status, reason(self.status)).as_bytes());
        for (name, value) in headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        if minor == 1 && !keep_alive {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(format!("Date: {date}\r\nContent-Length: {}\r\n\r\n", self.body.len()).as_bytes());
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        410 => "Gone",
        412 => "Precondition Failed",
        413 => "Request Entity Too Large",
        500 => "Internal Server Error",
        _ => "",
    }
}

/// The `Date` header's form (RFC 7231's IMF-fixdate).
fn http_date(t: time::OffsetDateTime) -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[t.weekday().number_days_from_monday() as usize],
        t.day(),
        MONTHS[t.month() as usize - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Go's `time.RFC3339Nano` (trailing zeros of the fraction dropped), in UTC.
fn rfc3339_nano(t: time::OffsetDateTime) -> String {
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let nanos = format!("{:09}", t.nanosecond());
    let nanos = nanos.trim_end_matches('0');
    if !nanos.is_empty() {
        s.push('.');
        s.push_str(nanos);
    }
    s.push('Z');
    s
}

/// The answer to one request: etcd 3.5's peer handler (`newPeerHandler`, rafthttp's probing).
pub fn route(api: &dyn PeerApi, cluster: ClusterId, req: &Request) -> Response {
    let cluster_header = || ("X-Etcd-Cluster-Id", format!("{:x}", cluster.0));
    let get = req.method == "GET";
    match req.path() {
        "/version" => {
            if !get {
                return Response::method_not_allowed("GET");
            }
            let version = api.cluster_version().unwrap_or_else(|| "not_decided".into());
            let body = format!(
                "{{\"etcdserver\":{},\"etcdcluster\":{}}}",
                serde_json::Value::from(crate::grpc::SERVER_VERSION),
                serde_json::Value::from(version)
            );
            Response::new(200, "application/json", body)
        }
        "/members" => {
            if !get {
                return Response::method_not_allowed("GET");
            }
            let (name, value) = cluster_header();
            let mut members: Vec<EtcdMember> = api.members().into_iter().map(EtcdMember::from).collect();
            members.sort_by_key(|m| m.id);
            let mut body = serde_json::to_vec(&members).expect("members serialize");
            body.push(b'\n');
            Response::new(200, "application/json", body).with(name, value)
        }
        "/downgrade/enabled" => {
            if !get {
                return Response::method_not_allowed("GET");
            }
            let (name, value) = cluster_header();
            match api.read_barrier() {
                // oxcd never downgrades (Maintenance.Downgrade refuses ENABLE).
                Ok(()) => Response::new(200, "text/plain", "false").with(name, value),
                Err(e) => Response::error(500, &format!("failed linearized read: {e}")).with(name, value),
            }
        }
        "/members/hashkv" => {
            if !get {
                return Response::method_not_allowed("GET");
            }
            #[derive(serde::Deserialize)]
            struct HashKvRequest {
                #[serde(default)]
                revision: i64,
            }
            let Ok(asked) = serde_json::from_slice::<HashKvRequest>(&req.body) else {
                return Response::error(400, "error unmarshalling request");
            };
            match api.hash_kv(asked.revision, false) {
                Ok(h) => {
                    let (name, value) = cluster_header();
                    Response::new(200, "application/json", hash_kv_json(&h)).with(name, value)
                }
                Err(HashAnswer::Compacted) => Response::error(400, "mvcc: required revision has been compacted"),
                Err(HashAnswer::FutureRev) => Response::error(400, "mvcc: required revision is a future revision"),
                Err(_) => Response::error(400, "mvcc: hash unavailable"),
            }
        }
        // Any method (the probing library's handler looks at none).
        "/raft/probing" => Response::new(
            200,
            "text/plain; charset=utf-8",
            format!("{{\"OK\":true,\"Now\":\"{}\"}}\n", rfc3339_nano(time::OffsetDateTime::now_utc())),
        ),
        // rafthttp's, the lease and the promote forwarding endpoints: etcd's method checks (a
        // pipeline POST and a stream GET were served before routing; the snapshot endpoint is
        // not served yet).
        "/raft" | "/raft/snapshot" if req.method != "POST" => Response::method_not_allowed("POST"),
        p if p.starts_with("/raft/stream/") && !get => Response::method_not_allowed("GET"),
        p if p.starts_with("/members/promote/") && req.method != "POST" => Response::method_not_allowed("POST"),
        p if p.starts_with("/members/promote/") => promote(api, cluster, &p["/members/promote/".len()..]),
        "/leases" | "/leases/internal" if req.method != "POST" => Response::error(405, "Method Not Allowed"),
        "/leases" => lease_renew(api, &req.body),
        "/leases/internal" => lease_time_to_live(api, &req.body),
        _ => Response::not_found(),
    }
}

/// etcd's `peerMemberPromoteHandler`: the id in decimal; the members after the promotion, or
/// etcd's codes and texts.
fn promote(api: &dyn PeerApi, cluster: ClusterId, id: &str) -> Response {
    let header = ("X-Etcd-Cluster-Id", format!("{:x}", cluster.0));
    let Ok(id) = id.parse::<u64>() else {
        return Response::error(404, &format!("member {id} not found in cluster")).with(header.0, header.1);
    };
    let resp = match api.promote(id) {
        Some(Ok(members)) => {
            let mut members: Vec<EtcdMember> = members.into_iter().map(EtcdMember::from).collect();
            members.sort_by_key(|m| m.id);
            let mut body = serde_json::to_vec(&members).expect("members serialize");
            body.push(b'\n');
            Response::new(200, "application/json", body)
        }
        Some(Err(EtcdError::MemberNotFound)) => Response::error(404, "membership: ID not found"),
        Some(Err(EtcdError::MemberNotLearner)) => Response::error(412, "membership: can only promote a learner member"),
        Some(Err(EtcdError::LearnerNotReady)) => {
            Response::error(412, "etcdserver: can only promote a learner member which is in sync with leader")
        }
        // etcd's `WriteError` of anything else (not the leader: the follower asks elsewhere).
        _ => Response::new(500, "application/json", "{\"message\":\"Internal Server Error\"}"),
    };
    resp.with(header.0, header.1)
}

/// etcd's `leaseHandler` for `/leases`: a keep-alive renewed by the leader's lessor.
fn lease_renew(api: &dyn PeerApi, body: &[u8]) -> Response {
    let Ok(req) = LeaseKeepAliveRequest::decode(body) else {
        return Response::error(400, "error unmarshalling request");
    };
    match api.lease_renew(req.id) {
        Ok(ttl) => {
            let resp = LeaseKeepAliveResponse { header: None, id: req.id, ttl };
            Response::new(200, "application/protobuf", resp.encode_to_vec())
        }
        Err(RenewError::NotFound) => Response::error(404, "lease not found"),
        Err(RenewError::NotPrimary) => Response::error(400, "not a primary lessor"),
    }
}

/// etcd's `leaseHandler` for `/leases/internal`: a lease's TimeToLive from the leader's lessor.
fn lease_time_to_live(api: &dyn PeerApi, body: &[u8]) -> Response {
    let Ok(LeaseInternalRequest { request: Some(req) }) = LeaseInternalRequest::decode(body) else {
        return Response::error(400, "error unmarshalling request");
    };
    match api.lease_time_to_live(req.id, req.keys) {
        Some(mut resp) => {
            resp.header = Some(ResponseHeader::default());
            let body = LeaseInternalResponse { response: Some(resp) }.encode_to_vec();
            Response::new(200, "application/protobuf", body)
        }
        None => Response::error(404, "lease not found"),
    }
}

/// etcd 3.5.0's `HashKVResponse` through Go's `encoding/json` (zero fields left out, the header
/// only with its revision).
fn hash_kv_json(h: &HashKvResponse) -> String {
    let mut fields = Vec::new();
    let rev = h.header.as_ref().map_or(0, |hd| hd.revision);
    if rev != 0 {
        fields.push(format!("\"header\":{{\"revision\":{rev}}}"));
    }
    if h.hash != 0 {
        fields.push(format!("\"hash\":{}", h.hash));
    }
    if h.compact_revision != 0 {
        fields.push(format!("\"compact_revision\":{}", h.compact_revision));
    }
    format!("{{{}}}", fields.join(","))
}

/// rafthttp's endpoints, served by the transport.
pub trait RaftHttp {
    /// `POST /raft`: one Raft message in the body (read whole, at most 512 MiB).
    fn pipeline(&self, req: &Request) -> Response;
}

/// Serves HTTP requests on a peer connection until the client closes it, a read times out, or
/// a request cannot be read; a rafthttp stream request (`GET /raft/stream/...`) or snapshot
/// (`POST /raft/snapshot`, its body not read) ends the serving and is answered with the
/// connection, which then carries the stream or the snapshot.
pub fn serve<S: Read + Write>(
    mut conn: HttpConn<S>,
    api: &dyn PeerApi,
    raft: &dyn RaftHttp,
    cluster: ClusterId,
) -> io::Result<Option<(Request, HttpConn<S>)>> {
    let refuse = |conn: &mut HttpConn<S>, e: ReadError| {
        if let Some(answer) = e.answer() {
            let s = conn.stream();
            let _ = s.write_all(answer);
            let _ = s.flush();
        }
        match e {
            ReadError::Closed => Ok(None),
            ReadError::Io(e) => Err(e),
            _ => Err(io::Error::other("bad HTTP request on the peer port")),
        }
    };
    loop {
        let mut req = match conn.read_request() {
            Ok(r) => r,
            Err(e) => return refuse(&mut conn, e),
        };
        let stream = req.method == "GET" && req.path().starts_with("/raft/stream/");
        if stream || (req.method == "POST" && req.path() == "/raft/snapshot") {
            return Ok(Some((req, conn)));
        }
        let pipeline = req.method == "POST" && req.path() == "/raft";
        let limit = if pipeline { super::rafthttp::MAX_MESSAGE_BYTES as usize } else { MAX_BODY_BYTES };
        if (pipeline || req.path() == "/members/hashkv")
            && let Err(e) = conn.read_body(&mut req, limit)
        {
            return refuse(&mut conn, e);
        }
        // What no handler reads is read and dropped before the answer, as Go's server does; a
        // body too long for that, or one that does not come, closes the connection after it.
        if conn.read_body(&mut req, MAX_DISCARD_BYTES).is_err() {
            req.keep_alive = false;
        }
        let resp = if pipeline { raft.pipeline(&req) } else { route(api, cluster, &req) };
        conn.respond(&resp, &req)?;
        if !req.keep_alive {
            return Ok(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's bytes in, the server's out.
    struct Pipe {
        input: io::Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            // A byte at a time: every request must be read across many reads.
            let n = buf.len().min(1);
            self.input.read(&mut buf[..n])
        }
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn conn(bytes: &[u8], already: usize) -> HttpConn<Pipe> {
        HttpConn::new(Pipe { input: io::Cursor::new(bytes[already..].to_vec()), output: Vec::new() }, &bytes[..already])
    }

    /// A request and its whole body.
    fn whole(c: &mut HttpConn<Pipe>) -> Result<Request, ReadError> {
        let mut r = c.read_request()?;
        c.read_body(&mut r, MAX_BODY_BYTES)?;
        Ok(r)
    }

    #[test]
    fn pipelined_requests_with_every_body_framing_are_read_in_order() {
        let bytes = b"GET /version HTTP/1.1\r\nHost: a\r\n\r\n\
            POST /x?y=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello\
            POST /raft/snapshot HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: x\r\n\r\n\
            GET /members HTTP/1.0\r\n\r\n";
        let mut c = conn(bytes, 8);
        let r = whole(&mut c).unwrap();
        assert_eq!(
            (r.method.as_str(), r.path(), r.keep_alive, r.header("HOST")),
            ("GET", "/version", true, Some(&b"a"[..]))
        );
        let r = whole(&mut c).unwrap();
        assert_eq!((r.path(), r.target.as_str(), r.body.as_slice()), ("/x", "/x?y=1", &b"hello"[..]));
        let r = whole(&mut c).unwrap();
        assert_eq!(r.body, b"abc0123456789abcdef");
        let r = whole(&mut c).unwrap();
        assert_eq!((r.path(), r.keep_alive), ("/members", false));
        assert!(matches!(whole(&mut c), Err(ReadError::Closed)));
    }

    #[test]
    fn what_go_refuses_is_refused() {
        for (bytes, bad) in [
            (&b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n"[..], "not HTTP"),
            (b"GET / HTTP/2.0\r\n\r\n", "HTTP/2"),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc",
                "chunked wins",
            ),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n", "bad length"),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", "unknown coding"),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nshort", "body cut short"),
            (b"GET / HTTP/1.1\r\nHost: a\r\n", "headers cut short"),
        ] {
            assert!(matches!(whole(&mut conn(bytes, 0)), Err(ReadError::Bad)), "{bad}");
        }
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEADER_BYTES));
        assert!(matches!(conn(huge.as_bytes(), 0).read_request(), Err(ReadError::HeadersTooLarge)));
        let big = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n", MAX_BODY_BYTES + 1);
        assert!(matches!(whole(&mut conn(big.as_bytes(), 0)), Err(ReadError::BodyTooLarge)));
        assert!(matches!(conn(b"GET / HTTP/1.1\r\n\r\n", 0).read_request(), Err(ReadError::MissingHost)));
        // HTTP/1.0 needs no Host.
        assert!(conn(b"GET / HTTP/1.0\r\n\r\n", 0).read_request().is_ok());
    }

    #[test]
    fn a_connection_is_told_from_its_first_bytes() {
        for yes in [&b"GET /ver"[..], b"POST /ra", b"OPTIONS ", b"HEAD / H"] {
            assert!(may_begin_request(yes), "{yes:?}");
        }
        for no in [&b"OXCDPEER"[..], b"ZZZZZZZZ", b" GET /ve", b"\x16\x03\x01\x02\x00\x01\x00\x01", b"GE\0 /ver"] {
            assert!(!may_begin_request(no), "{no:?}");
        }
    }

    #[test]
    fn responses_are_written_as_go_writes_them() {
        let mut c = conn(b"POST /version HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 0);
        let req = c.read_request().unwrap();
        let resp = Response::method_not_allowed("GET");
        c.respond(&resp, &req).unwrap();
        let text = String::from_utf8(c.stream().output.clone()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let lines: Vec<&str> = head.lines().collect();
        assert_eq!(lines[0], "HTTP/1.1 405 Method Not Allowed");
        assert_eq!(
            &lines[1..4],
            ["Allow: GET", "Content-Type: text/plain; charset=utf-8", "X-Content-Type-Options: nosniff"]
        );
        assert_eq!(lines[4], "Connection: close");
        assert!(lines[5].starts_with("Date: ") && lines[5].ends_with(" GMT"), "{}", lines[5]);
        assert_eq!(lines[6], "Content-Length: 19");
        assert_eq!(body, "Method Not Allowed\n");
    }

    #[test]
    fn get_reads_answers_of_every_framing() {
        let answers: [&[u8]; 3] = [
            b"HTTP/1.1 200 OK\r\nX-Etcd-Cluster-Id: 1f\r\nContent-Length: 3\r\n\r\n[1]trailing",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[1\r\n1\r\n]\r\n0\r\n\r\n",
            b"HTTP/1.0 404 Not Found\r\n\r\n[1]",
        ];
        for (answer, status) in answers.iter().zip([200, 200, 404]) {
            let mut pipe = Pipe { input: io::Cursor::new(answer.to_vec()), output: Vec::new() };
            let resp = get(&mut pipe, "h:1", "/members").unwrap();
            assert_eq!((resp.status, resp.body.as_slice()), (status, &b"[1]"[..]));
            assert!(pipe.output.starts_with(b"GET /members HTTP/1.1\r\nHost: h:1\r\n"));
        }
        let mut pipe = Pipe {
            input: io::Cursor::new(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort".to_vec()),
            output: Vec::new(),
        };
        assert!(get(&mut pipe, "h:1", "/members").is_err(), "a body cut short");
    }

    #[test]
    fn times_are_written_in_gos_forms() {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(1_796_662_800_123_450_000).unwrap();
        assert_eq!(http_date(t), "Mon, 07 Dec 2026 17:00:00 GMT");
        assert_eq!(rfc3339_nano(t), "2026-12-07T17:00:00.12345Z");
        let whole = time::OffsetDateTime::from_unix_timestamp(1_796_662_800).unwrap();
        assert_eq!(rfc3339_nano(whole), "2026-12-07T17:00:00Z");
    }

    #[test]
    fn hash_kv_is_encoded_as_go_encodes_etcds_response() {
        let h = HashKvResponse {
            header: Some(oxcd_api::etcdserverpb::ResponseHeader {
                cluster_id: 9,
                member_id: 8,
                revision: 12,
                raft_term: 2,
            }),
            hash: 3_000_000_000,
            compact_revision: 0,
            hash_revision: 12,
        };
        assert_eq!(hash_kv_json(&h), r#"{"header":{"revision":12},"hash":3000000000}"#);
    }
}
