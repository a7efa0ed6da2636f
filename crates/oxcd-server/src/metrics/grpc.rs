//! gRPC's server metrics as etcd exports them (go-grpc-prometheus): `grpc_server_started_total`,
//! `grpc_server_handled_total` (by code), `grpc_server_msg_received_total`,
//! `grpc_server_msg_sent_total`, with `--metrics extensive` `grpc_server_handling_seconds`, and
//! etcd's `etcd_network_client_grpc_{received,sent}_bytes_total` (message payload bytes).
//!
//! Every series of etcd's own services exists from the start (every code too), as
//! go-grpc-prometheus pre-registers them; each method's counters are resolved once, so a call
//! costs a map lookup by path and atomic adds. Messages and their bytes are counted from the
//! gRPC framing of the request and response bodies (`[flag][length u32][message]`), without
//! decoding anything; a call is handled when its `grpc-status` goes out (in the trailers, or in
//! the headers of a trailers-only answer), or as `Canceled` if the client went away first.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

/// gRPC's codes, by number, as Go names them in the `grpc_code` label.
const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];
const CANCELED: usize = 1;

const UNARY: &str = "unary";
const SERVER_STREAM: &str = "server_stream";
const BIDI_STREAM: &str = "bidi_stream";

/// Every method served, by service: (service, [(method, type)]).
const METHODS: &[(&str, &[(&str, &str)])] = &[
    (
        "etcdserverpb.KV",
        &[("Range", UNARY), ("Put", UNARY), ("DeleteRange", UNARY), ("Txn", UNARY), ("Compact", UNARY)],
    ),
    ("etcdserverpb.Watch", &[("Watch", BIDI_STREAM)]),
    (
        "etcdserverpb.Lease",
        &[
            ("LeaseGrant", UNARY),
            ("LeaseRevoke", UNARY),
            ("LeaseKeepAlive", BIDI_STREAM),
            ("LeaseTimeToLive", UNARY),
            ("LeaseLeases", UNARY),
        ],
    ),
    (
        "etcdserverpb.Cluster",
        &[
            ("MemberAdd", UNARY),
            ("MemberRemove", UNARY),
            ("MemberUpdate", UNARY),
            ("MemberList", UNARY),
            ("MemberPromote", UNARY),
        ],
    ),
    (
        "etcdserverpb.Maintenance",
        &[
            ("Alarm", UNARY),
            ("Status", UNARY),
            ("Defragment", UNARY),
            ("Hash", UNARY),
            ("HashKV", UNARY),
            ("Snapshot", SERVER_STREAM),
            ("MoveLeader", UNARY),
            ("Downgrade", UNARY),
        ],
    ),
    (
        "etcdserverpb.Auth",
        &[
            ("AuthEnable", UNARY),
            ("AuthDisable", UNARY),
            ("AuthStatus", UNARY),
            ("Authenticate", UNARY),
            ("UserAdd", UNARY),
            ("UserGet", UNARY),
            ("UserList", UNARY),
            ("UserDelete", UNARY),
            ("UserChangePassword", UNARY),
            ("UserGrantRole", UNARY),
            ("UserRevokeRole", UNARY),
            ("RoleAdd", UNARY),
            ("RoleGet", UNARY),
            ("RoleList", UNARY),
            ("RoleDelete", UNARY),
            ("RoleGrantPermission", UNARY),
            ("RoleRevokePermission", UNARY),
        ],
    ),
    ("grpc.health.v1.Health", &[("Check", UNARY), ("Watch", SERVER_STREAM)]),
    ("v3lockpb.Lock", &[("Lock", UNARY), ("Unlock", UNARY)]),
    (
        "v3electionpb.Election",
        &[("Campaign", UNARY), ("Proclaim", UNARY), ("Leader", UNARY), ("Observe", SERVER_STREAM), ("Resign", UNARY)],
    ),
];

/// One method's counters, resolved once.
pub struct MethodMetrics {
    started: IntCounter,
    received: IntCounter,
    sent: IntCounter,
    handled: [IntCounter; 17],
    handling: Option<Histogram>,
    received_bytes: IntCounter,
    sent_bytes: IntCounter,
}

/// The gRPC metrics of the member, by service and method, in [`METHODS`]' order (the busiest
/// first: a lookup compares a few short strings, mostly by length).
pub struct GrpcMetrics {
    /// (`/service/`, its methods).
    services: Vec<(String, Vec<(&'static str, &'static MethodMetrics)>)>,
}

impl GrpcMetrics {
    /// Registers the families in `registry`, with every series of every method.
    pub fn new(registry: &Registry, extensive: bool) -> prometheus::Result<GrpcMetrics> {
        let labels = ["grpc_type", "grpc_service", "grpc_method"];
        let vec = |name: &str, help: &str, extra: Option<&str>| -> prometheus::Result<IntCounterVec> {
            let mut l = labels.to_vec();
            l.extend(extra);
            let v = IntCounterVec::new(Opts::new(name, help), &l)?;
            registry.register(Box::new(v.clone()))?;
            Ok(v)
        };
        let started = vec("grpc_server_started_total", "Total number of RPCs started on the server.", None)?;
        let handled = vec(
            "grpc_server_handled_total",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            Some("grpc_code"),
        )?;
        let received =
            vec("grpc_server_msg_received_total", "Total number of RPC stream messages received on the server.", None)?;
        let sent = vec("grpc_server_msg_sent_total", "Total number of gRPC stream messages sent by the server.", None)?;
        let handling = if extensive {
            let v = HistogramVec::new(
                HistogramOpts::new(
                    "grpc_server_handling_seconds",
                    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
                ),
                &labels,
            )?;
            registry.register(Box::new(v.clone()))?;
            Some(v)
        } else {
            None
        };
        let received_bytes = IntCounter::new(
            "etcd_network_client_grpc_received_bytes_total",
            "The total number of bytes received from grpc clients.",
        )?;
        let sent_bytes = IntCounter::new(
            "etcd_network_client_grpc_sent_bytes_total",
            "The total number of bytes sent to grpc clients.",
        )?;
        registry.register(Box::new(received_bytes.clone()))?;
        registry.register(Box::new(sent_bytes.clone()))?;
        let mut services = Vec::new();
        for (service, list) in METHODS {
            let mut methods = Vec::new();
            for (method, kind) in *list {
                let l = [*kind, *service, *method];
                let m = MethodMetrics {
                    started: started.with_label_values(&l),
                    received: received.with_label_values(&l),
                    sent: sent.with_label_values(&l),
                    handled: CODES.map(|code| handled.with_label_values(&[*kind, *service, *method, code])),
                    handling: handling.as_ref().map(|h| h.with_label_values(&l)),
                    received_bytes: received_bytes.clone(),
                    sent_bytes: sent_bytes.clone(),
                };
                // One set per member for the life of the process: leaked, so that a call holds
                // a plain reference rather than a counted one.
                methods.push((*method, &*Box::leak(Box::new(m))));
            }
            services.push((format!("/{service}/"), methods));
        }
        Ok(GrpcMetrics { services })
    }

    /// The counters of the method at `path` (`/etcdserverpb.KV/Put`), if it is one of the
    /// served gRPC methods.
    pub fn method(&self, path: &str) -> Option<&'static MethodMetrics> {
        let (method, methods) = self.services.iter().find_map(|(s, m)| Some((path.strip_prefix(s.as_str())?, m)))?;
        methods.iter().find(|(m, _)| *m == method).map(|(_, m)| *m)
    }
}

/// A call being served: counted as started now, as handled when its status goes out.
pub struct Call {
    m: &'static MethodMetrics,
    /// When it started, if its handling time is measured (`--metrics extensive`).
    started: Option<Instant>,
    handled: bool,
    /// The call's trace span, when distributed tracing sampled it.
    span: Option<crate::otel::ActiveSpan>,
}

impl Call {
    pub fn start(m: &'static MethodMetrics) -> Call {
        m.started.inc();
        let started = m.handling.is_some().then(Instant::now);
        Call { m, started, handled: false, span: None }
    }

    /// Traces the call in `span`, which ends with the call's status.
    pub fn trace(&mut self, span: crate::otel::ActiveSpan) {
        self.span = Some(span);
    }

    /// Wraps the request body, counting its messages and refusing one over `limit` bytes.
    pub fn request_body(&self, body: tonic::body::Body, limit: usize) -> RequestBody {
        RequestBody { inner: body, m: self.m, frames: FrameCounter::default(), limit }
    }

    /// Wraps the response: a trailers-only answer (an error before any message) is handled at
    /// once; otherwise the body counts its messages and the trailers' status.
    pub fn response<B>(mut self, resp: http::Response<B>) -> http::Response<ResponseBody<B>> {
        if let Some(code) = status_code(resp.headers()) {
            self.handle(code, Some(resp.headers()));
        }
        resp.map(|inner| ResponseBody { inner, call: Some(self), frames: FrameCounter::default() })
    }

    fn handle(&mut self, code: usize, headers: Option<&http::HeaderMap>) {
        if std::mem::replace(&mut self.handled, true) {
            return;
        }
        if let Some(span) = self.span.take() {
            let message = headers.and_then(|h| h.get("grpc-message")).map(|v| percent_decode(v.as_bytes()));
            span.end(code, message.as_deref().unwrap_or(if code == CANCELED { "context canceled" } else { "" }));
        }
        self.m.handled[code.min(CODES.len() - 1)].inc();
        if let (Some(h), Some(started)) = (&self.m.handling, self.started) {
            h.observe(started.elapsed().as_secs_f64());
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // The answer never got its status out: the client went away (or the connection did).
        self.handle(CANCELED, None);
    }
}

/// gRPC's percent-encoded `grpc-message`, decoded (as tonic decodes it; a `%` that starts no
/// escape stays as it is).
fn percent_decode(v: &[u8]) -> String {
    percent_encoding::percent_decode(v).decode_utf8_lossy().into_owned()
}

/// A response that is not a gRPC call's (the gateway's, `/metrics`), in the same type.
pub fn unmetered<B>(resp: http::Response<B>) -> http::Response<ResponseBody<B>> {
    resp.map(|inner| ResponseBody { inner, call: None, frames: FrameCounter::default() })
}

/// The `grpc-status` header of `headers`, if any.
fn status_code(headers: &http::HeaderMap) -> Option<usize> {
    // A scan, not a lookup: a gRPC answer has a header or three, and hashing the name costs more.
    let (_, v) = headers.iter().find(|(name, _)| name.as_str() == "grpc-status")?;
    Some(std::str::from_utf8(v.as_bytes()).ok()?.parse().unwrap_or(2))
}

/// Counts the messages of a gRPC body from its framing, as the data goes by.
#[derive(Default)]
struct FrameCounter {
    header: [u8; 5],
    have: usize,
    /// Bytes of the current message still to come.
    remaining: u64,
}

impl FrameCounter {
    /// Feeds `data`; returns the messages that started in it and the message bytes it carried.
    fn feed(&mut self, data: &[u8]) -> (u64, u64) {
        let (messages, bytes, _) = self.feed_checked(data, u64::MAX);
        (messages, bytes)
    }

    /// [`FrameCounter::feed`], which also returns the length of a message over `limit` that
    /// starts in `data` (the first), if any.
    fn feed_checked(&mut self, mut data: &[u8], limit: u64) -> (u64, u64, Option<u64>) {
        let (mut messages, mut bytes, mut over) = (0, 0, None);
        while !data.is_empty() {
            if self.remaining > 0 {
                let take = self.remaining.min(data.len() as u64);
                self.remaining -= take;
                bytes += take;
                data = &data[take as usize..];
                continue;
            }
            let take = (5 - self.have).min(data.len());
            self.header[self.have..self.have + take].copy_from_slice(&data[..take]);
            self.have += take;
            data = &data[take..];
            if self.have == 5 {
                self.have = 0;
                messages += 1;
                self.remaining =
                    u32::from_be_bytes([self.header[1], self.header[2], self.header[3], self.header[4]]).into();
                if self.remaining > limit && over.is_none() {
                    over = Some(self.remaining);
                }
            }
        }
        (messages, bytes, over)
    }
}

pin_project_lite::pin_project! {
    /// A request body whose messages are counted, and which fails with Go gRPC's error as soon
    /// as a message's header announces more than the limit (`--max-request-bytes` plus gRPC's
    /// overhead, as etcd sets its server's `MaxRecvMsgSize`): the message is never read.
    pub struct RequestBody {
        #[pin]
        inner: tonic::body::Body,
        m: &'static MethodMetrics,
        frames: FrameCounter,
        limit: usize,
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        if let Some(Ok(f)) = &frame
            && let Some(data) = f.data_ref()
        {
            let (messages, bytes, over) = this.frames.feed_checked(data.chunk(), *this.limit as u64);
            this.m.received.inc_by(messages);
            this.m.received_bytes.inc_by(bytes);
            if let Some(len) = over {
                let msg = format!("grpc: received message larger than max ({len} vs. {})", this.limit);
                return Poll::Ready(Some(Err(tonic::Status::resource_exhausted(msg))));
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A response body whose messages and final status are counted (if it answers a gRPC call).
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
        frames: FrameCounter,
    }
}

impl<B: Body<Data = Bytes>> Body for ResponseBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        let Some(call) = this.call else { return Poll::Ready(frame) };
        match &frame {
            Some(Ok(f)) => {
                if let Some(data) = f.data_ref() {
                    let (messages, bytes) = this.frames.feed(data.chunk());
                    call.m.sent.inc_by(messages);
                    call.m.sent_bytes.inc_by(bytes);
                } else if let Some(trailers) = f.trailers_ref()
                    && let Some(code) = status_code(trailers)
                {
                    call.handle(code, Some(trailers));
                }
            }
            Some(Err(_)) => call.handle(CANCELED, None),
            None => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_messages_are_percent_decoded() {
        assert_eq!(percent_decode(b"etcdserver: key is not provided"), "etcdserver: key is not provided");
        assert_eq!(percent_decode(b"100%25 %E2%9C%93 %zz%"), "100% \u{2713} %zz%");
    }

    #[test]
    fn frames_are_counted_across_any_split() {
        let mut wire = Vec::new();
        for len in [0u32, 3, 70_000, 1] {
            wire.push(0);
            wire.extend_from_slice(&len.to_be_bytes());
            wire.extend(std::iter::repeat_n(7u8, len as usize));
        }
        for chunk in [1, 2, 5, 6, 4096, wire.len()] {
            let mut c = FrameCounter::default();
            let (mut messages, mut bytes) = (0, 0);
            for part in wire.chunks(chunk) {
                let (m, b) = c.feed(part);
                messages += m;
                bytes += b;
            }
            assert_eq!((messages, bytes), (4, 70_004), "chunks of {chunk}");
        }
    }

    #[test]
    fn every_method_has_every_code_from_the_start() {
        let registry = Registry::new();
        let m = GrpcMetrics::new(&registry, false).unwrap();
        let families = registry.gather();
        let handled = families.iter().find(|f| f.name() == "grpc_server_handled_total").unwrap();
        let methods: usize = METHODS.iter().map(|(_, l)| l.len()).sum();
        assert_eq!(handled.get_metric().len(), methods * CODES.len());
        assert!(m.method("/etcdserverpb.KV/Put").is_some());
        assert!(m.method("/v3/kv/put").is_none());
        assert!(!families.iter().any(|f| f.name() == "grpc_server_handling_seconds"));
    }

    #[test]
    fn a_call_dropped_before_its_status_is_canceled() {
        let registry = Registry::new();
        let m = GrpcMetrics::new(&registry, true).unwrap();
        let put = m.method("/etcdserverpb.KV/Put").unwrap();
        drop(Call::start(put));
        let mut ok = Call::start(put);
        ok.handle(0, None);
        drop(ok);
        assert_eq!(put.started.get(), 2);
        assert_eq!(put.handled[CANCELED].get(), 1);
        assert_eq!(put.handled[0].get(), 1);
        assert_eq!(put.handling.as_ref().unwrap().get_sample_count(), 2);
    }
}
