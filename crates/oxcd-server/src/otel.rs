//! Distributed tracing as etcd 3.5 does it (`--experimental-enable-distributed-tracing`): one
//! OpenTelemetry server span per gRPC call, exported over OTLP/gRPC (insecure) to
//! `--experimental-distributed-tracing-address`.
//!
//! - Spans are what etcd's otelgrpc interceptor makes: named after the method
//!   (`etcdserverpb.KV/Put`), kind SERVER, with `rpc.system`, `rpc.service`, `rpc.method`,
//!   `net.sock.peer.addr`, `net.sock.peer.port` and `rpc.grpc.status_code`, and an error status
//!   (with the gRPC message) for the codes otelgrpc counts as server errors. A span lasts from the
//!   request's headers to its `grpc-status`, so a stream's span lasts as long as the stream.
//! - The parent comes from the request's W3C `traceparent` (and `tracestate`) metadata. Sampling
//!   is etcd's: parent-based (a sampled parent's spans are kept, an unsampled one's dropped), and
//!   a call without a parent starts a trace with probability
//!   `--experimental-distributed-tracing-sampling-rate` per million (default 0: none).
//! - The resource carries `service.name` (`--experimental-distributed-tracing-service-name`) and
//!   `service.instance.id` when `--experimental-distributed-tracing-instance-id` is set.
//! - Export is the OpenTelemetry SDK's batch processor: a queue of 2048 spans (a span that finds
//!   it full is dropped, never waited for), sent in batches of at most 512 every
//!   `OTEL_BSP_SCHEDULE_DELAY` ms (default 5000) or when a batch is full, each export bounded by
//!   `OTEL_BSP_EXPORT_TIMEOUT` ms (default 30000). A collector that is down costs a warning a
//!   minute, and nothing else; spans dropped on a full queue are counted in a warning.
//!
//! With tracing off (the default) none of this exists: the request path checks one `Option`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

/// The OTLP messages oxcd sends (opentelemetry-proto's `collector/trace/v1`, `trace/v1`,
/// `common/v1` and `resource/v1`; only the fields oxcd fills).
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportTraceServiceRequest {
        #[prost(message, repeated, tag = "1")]
        pub resource_spans: Vec<ResourceSpans>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportTraceServiceResponse {}

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceSpans {
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
        #[prost(message, repeated, tag = "2")]
        pub scope_spans: Vec<ScopeSpans>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Resource {
        #[prost(message, repeated, tag = "1")]
        pub attributes: Vec<KeyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeSpans {
        #[prost(message, optional, tag = "1")]
        pub scope: Option<InstrumentationScope>,
        #[prost(message, repeated, tag = "2")]
        pub spans: Vec<Span>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InstrumentationScope {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub version: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Span {
        #[prost(bytes = "vec", tag = "1")]
        pub trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub span_id: Vec<u8>,
        #[prost(string, tag = "3")]
        pub trace_state: String,
        #[prost(bytes = "vec", tag = "4")]
        pub parent_span_id: Vec<u8>,
        #[prost(string, tag = "5")]
        pub name: String,
        /// SpanKind: 2 is SERVER.
        #[prost(int32, tag = "6")]
        pub kind: i32,
        #[prost(fixed64, tag = "7")]
        pub start_time_unix_nano: u64,
        #[prost(fixed64, tag = "8")]
        pub end_time_unix_nano: u64,
        #[prost(message, repeated, tag = "9")]
        pub attributes: Vec<KeyValue>,
        #[prost(message, optional, tag = "15")]
        pub status: Option<Status>,
        /// W3C trace flags (bit 0: sampled) and bits 8-9: whether the parent is remote.
        #[prost(fixed32, tag = "16")]
        pub flags: u32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        #[prost(string, tag = "2")]
        pub message: String,
        /// StatusCode: 0 unset, 1 ok, 2 error.
        #[prost(int32, tag = "3")]
        pub code: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<AnyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AnyValue {
        #[prost(oneof = "any_value::Value", tags = "1, 3")]
        pub value: Option<any_value::Value>,
    }

    pub mod any_value {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            #[prost(string, tag = "1")]
            StringValue(String),
            #[prost(int64, tag = "3")]
            IntValue(i64),
        }
    }

    pub(crate) fn string(key: &str, v: impl Into<String>) -> KeyValue {
        KeyValue { key: key.into(), value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }) }
    }

    pub(crate) fn int(key: &str, v: i64) -> KeyValue {
        KeyValue { key: key.into(), value: Some(AnyValue { value: Some(any_value::Value::IntValue(v)) }) }
    }
}

const QUEUE: usize = 2048;
const BATCH: usize = 512;
const SERVER: i32 = 2;
const STATUS_ERROR: i32 = 2;
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// The settings of `--experimental-distributed-tracing-*`.
#[derive(Debug, Clone)]
pub struct TracingConfig {
    pub address: String,
    pub service_name: String,
    pub instance_id: String,
    /// Traces started per million calls without a parent (0 to 1,000,000).
    pub sampling_rate: u32,
}

/// Makes the spans of one member and hands them to its exporter.
pub struct Tracer {
    /// A trace id whose low 63 bits are below this starts a trace (TraceIDRatioBased).
    threshold: u64,
    queue: mpsc::Sender<proto::Span>,
    /// Spans dropped because the queue was full; the exporter reports them.
    dropped: Arc<AtomicU64>,
}

/// A call's span, open until its status goes out.
pub struct ActiveSpan {
    tracer: Arc<Tracer>,
    span: proto::Span,
    started: Instant,
    started_at: SystemTime,
}

impl Tracer {
    /// Starts the exporter (on the current tokio runtime). `OTEL_BSP_*` variables are read as
    /// the OpenTelemetry SDK reads them.
    pub fn start(cfg: TracingConfig) -> Arc<Tracer> {
        let (queue, rx) = mpsc::channel(QUEUE);
        let delay = env_ms("OTEL_BSP_SCHEDULE_DELAY", 5000);
        let timeout = env_ms("OTEL_BSP_EXPORT_TIMEOUT", 30_000);
        let threshold = ((cfg.sampling_rate.min(1_000_000) as f64 / 1e6) * (1u64 << 63) as f64) as u64;
        tracing::info!(
            address = %cfg.address,
            service_name = %cfg.service_name,
            service_instance_id = %cfg.instance_id,
            "distributed tracing enabled"
        );
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(export(rx, dropped.clone(), cfg, delay, timeout));
        Arc::new(Tracer { threshold, queue, dropped })
    }

    /// The span of a call to the gRPC method at `path`, if it is sampled.
    pub fn span(
        self: &Arc<Tracer>,
        path: &str,
        headers: &http::HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Option<ActiveSpan> {
        let parent = headers.get("traceparent").and_then(|v| parse_traceparent(v.as_bytes()));
        let (trace_id, parent_span_id, sampled) = match parent {
            Some(p) => (p.trace_id, p.span_id.to_vec(), p.sampled),
            None => {
                let id = random_trace_id();
                let low = u64::from_be_bytes(id[8..].try_into().unwrap_or_default()) >> 1;
                (id, Vec::new(), low < self.threshold)
            }
        };
        if !sampled {
            return None;
        }
        let trace_state = match parent {
            Some(_) => headers.get("tracestate").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string(),
            None => String::new(),
        };
        let name = path.strip_prefix('/').unwrap_or(path);
        let (service, method) = name.split_once('/').unwrap_or((name, ""));
        let mut attributes = vec![
            proto::string("rpc.system", "grpc"),
            proto::string("rpc.service", service),
            proto::string("rpc.method", method),
        ];
        if let Some(peer) = peer {
            attributes.push(proto::string("net.sock.peer.addr", peer.ip().to_string()));
            attributes.push(proto::int("net.sock.peer.port", peer.port().into()));
        }
        // Sampled, and bits 8 and 9: the parent's remoteness is known, and it is remote.
        let flags = 1 | if parent.is_some() { 0x300 } else { 0x100 };
        let span = proto::Span {
            trace_id: trace_id.to_vec(),
            span_id: random_u64().max(1).to_be_bytes().to_vec(),
            trace_state,
            parent_span_id,
            name: name.to_string(),
            kind: SERVER,
            attributes,
            flags,
            ..Default::default()
        };
        Some(ActiveSpan { tracer: self.clone(), span, started: Instant::now(), started_at: SystemTime::now() })
    }
}

impl ActiveSpan {
    /// Ends the span with the call's gRPC status (`message` is the `grpc-message`, decoded).
    pub fn end(mut self, code: usize, message: &str) {
        let start = unix_nanos(self.started_at);
        self.span.start_time_unix_nano = start;
        self.span.end_time_unix_nano = start + self.started.elapsed().as_nanos() as u64;
        self.span.attributes.push(proto::int("rpc.grpc.status_code", code as i64));
        // otelgrpc's server errors: Unknown, DeadlineExceeded, Unimplemented, Internal,
        // Unavailable, DataLoss; other codes are the client's doing and leave the status unset.
        if matches!(code, 2 | 4 | 12 | 13 | 14 | 15) {
            self.span.status = Some(proto::Status { message: message.to_string(), code: STATUS_ERROR });
        }
        if self.tracer.queue.try_send(self.span).is_err() {
            self.tracer.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A W3C `traceparent`: `00-<trace id, 32 hex>-<parent span id, 16 hex>-<flags, 2 hex>`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct TraceParent {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    sampled: bool,
}

fn parse_traceparent(v: &[u8]) -> Option<TraceParent> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let mut parts = s.split('-');
    let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    // Version 00 has exactly four parts; a later version may add more.
    if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    let trace_id: [u8; 16] = hex(trace)?.try_into().ok()?;
    let span_id: [u8; 8] = hex(span)?.try_into().ok()?;
    let flags = hex(flags)?;
    if trace_id == [0; 16] || span_id == [0; 8] || flags.len() != 1 || hex(version).is_none() {
        return None;
    }
    Some(TraceParent { trace_id, span_id, sampled: flags[0] & 1 == 1 })
}

/// Lower-case hex only, as W3C Trace Context requires.
fn hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

/// 64 unpredictable bits (not for secrets): SipHash with the process's random keys over a counter.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

fn random_trace_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&random_u64().to_be_bytes());
    id[8..].copy_from_slice(&random_u64().to_be_bytes());
    if id == [0; 16] { random_trace_id() } else { id }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn env_ms(name: &str, default: u64) -> Duration {
    let ms = std::env::var(name).ok().and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(default);
    Duration::from_millis(ms.max(1))
}

/// The batch processor and the OTLP exporter: batches from the queue, sent until the queue
/// closes (the member stopped), then what is left.
async fn export(
    mut rx: mpsc::Receiver<proto::Span>,
    dropped: Arc<AtomicU64>,
    cfg: TracingConfig,
    delay: Duration,
    timeout: Duration,
) {
    let uri = if cfg.address.contains("://") { cfg.address.clone() } else { format!("http://{}", cfg.address) };
    let channel = match tonic::transport::Endpoint::from_shared(uri) {
        Ok(e) => e.connect_timeout(timeout).connect_lazy(),
        Err(e) => {
            tracing::warn!(address = %cfg.address, error = %e, "distributed tracing: bad collector address");
            return;
        }
    };
    let mut client = tonic::client::Grpc::new(channel);
    let mut resource = vec![proto::string("service.name", cfg.service_name.clone())];
    if !cfg.instance_id.is_empty() {
        resource.push(proto::string("service.instance.id", cfg.instance_id.clone()));
    }
    let scope = proto::InstrumentationScope { name: "oxcd/grpc".into(), version: env!("CARGO_PKG_VERSION").into() };
    let mut last_warning: Option<Instant> = None;
    let mut open = true;
    while open {
        let mut spans = Vec::new();
        let tick = tokio::time::sleep(delay);
        tokio::pin!(tick);
        while spans.len() < BATCH {
            tokio::select! {
                s = rx.recv() => match s {
                    Some(s) => spans.push(s),
                    None => { open = false; break; }
                },
                _ = &mut tick => break,
            }
        }
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            tracing::warn!(spans = lost, "distributed tracing: spans dropped, the export queue was full");
        }
        if spans.is_empty() {
            continue;
        }
        let count = spans.len();
        let req = proto::ExportTraceServiceRequest {
            resource_spans: vec![proto::ResourceSpans {
                resource: Some(proto::Resource { attributes: resource.clone() }),
                scope_spans: vec![proto::ScopeSpans { scope: Some(scope.clone()), spans }],
            }],
        };
        let sent = tokio::time::timeout(timeout, async {
            client.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            let codec =
                tonic_prost::ProstCodec::<proto::ExportTraceServiceRequest, proto::ExportTraceServiceResponse>::default(
                );
            let path = http::uri::PathAndQuery::from_static(EXPORT_PATH);
            client.unary(tonic::Request::new(req), path, codec).await
        })
        .await;
        let error = match sent {
            Ok(Ok(_)) => continue,
            Ok(Err(status)) => status.to_string(),
            Err(_) => "context deadline exceeded".to_string(),
        };
        if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            last_warning = Some(Instant::now());
            tracing::warn!(address = %cfg.address, spans = count, error = %error, "distributed tracing: failed to export spans");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_read_as_w3c_writes_it() {
        let p = parse_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(p.trace_id[0], 0x4b);
        assert_eq!(p.span_id, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert!(p.sampled);
        let p = parse_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!p.sampled);
        for bad in [
            &b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"[..],
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            b"00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
            b"garbage",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        // A later version may carry more parts.
        assert!(parse_traceparent(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more").is_some());
    }

    #[tokio::test]
    async fn sampling_follows_the_parent_then_the_rate() {
        let cfg = |rate| TracingConfig {
            address: "127.0.0.1:1".into(),
            service_name: "etcd".into(),
            instance_id: String::new(),
            sampling_rate: rate,
        };
        let none = Tracer::start(cfg(0));
        let all = Tracer::start(cfg(1_000_000));
        let empty = http::HeaderMap::new();
        let mut sampled = http::HeaderMap::new();
        sampled.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
        sampled.insert("tracestate", "vendor=x".parse().unwrap());
        let mut unsampled = http::HeaderMap::new();
        unsampled.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00".parse().unwrap());
        assert!(none.span("/etcdserverpb.KV/Put", &empty, None).is_none());
        assert!(all.span("/etcdserverpb.KV/Put", &unsampled, None).is_none());
        let s = none.span("/etcdserverpb.KV/Put", &sampled, Some("127.0.0.1:5000".parse().unwrap())).unwrap();
        assert_eq!(s.span.trace_id[..2], [0x4b, 0xf9]);
        assert_eq!(s.span.parent_span_id, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert_eq!((s.span.name.as_str(), s.span.trace_state.as_str()), ("etcdserverpb.KV/Put", "vendor=x"));
        let root = all.span("/etcdserverpb.KV/Range", &empty, None).unwrap();
        assert!(root.span.parent_span_id.is_empty() && root.span.trace_id != s.span.trace_id);
        // About half of the roots at 500,000 per million.
        let half = Tracer::start(cfg(500_000));
        let kept = (0..4000).filter(|_| half.span("/etcdserverpb.KV/Range", &empty, None).is_some()).count();
        assert!((1700..2300).contains(&kept), "{kept} of 4000");
    }
}
