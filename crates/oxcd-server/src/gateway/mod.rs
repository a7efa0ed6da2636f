//! The JSON gateway: etcd's grpc-gateway on the client port, for HTTP clients (Patroni, etcd3gw,
//! APISIX, curl). `POST /v3/<service>/<method>` (and the older `/v3beta/` prefix) with the request
//! message as proto3 JSON; the response is the reply message as JSON, or for streams one
//! `{"result":...}` line per message. Plus `GET /version` and `GET /health`.
//!
//! Each request is answered by the same service code that answers gRPC, called in process: the JSON
//! is turned into the request message through the protos' descriptors (see [`json`]), and the reply
//! back the same way, with grpc-gateway v1's conventions (proto field names, 64-bit integers as
//! strings, bytes as base64, enums by name, default values left out). Errors have etcd 3.5's
//! shape: `{"error":msg,"code":grpc_code,"message":msg}` with the HTTP status grpc-gateway v1.16
//! maps the code to. Any other path is 404 (`404 page not found`), as etcd's HTTP mux answers;
//! gRPC requests for unknown methods still get gRPC's Unimplemented.

mod console;
mod health;
mod json;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use axum::routing::{any, get};
use bytes::Bytes;
use futures::StreamExt;
use futures::future::ready;
use http_body::Frame;
use http_body_util::StreamBody;
use oxcd_api::etcdserverpb::auth_server::Auth;
use oxcd_api::etcdserverpb::cluster_server::Cluster;
use oxcd_api::etcdserverpb::kv_server::Kv;
use oxcd_api::etcdserverpb::lease_server::Lease;
use oxcd_api::etcdserverpb::maintenance_server::Maintenance;
use oxcd_api::etcdserverpb::watch_server::Watch;
use oxcd_api::v3electionpb::election_server::Election;
use oxcd_api::v3lockpb::lock_server::Lock;
use prost_reflect::MessageDescriptor;
use tonic::codegen::BoxStream;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status, Streaming};

use crate::grpc::{
    AuthService, ClusterService, ElectionService, KvService, LeaseService, LockService, MaintenanceService,
    SERVER_VERSION, WatchService,
};
use crate::server::EtcdServer;
use json::Descriptors;

// The services, by their proto names.
const KV: &str = "etcdserverpb.KV";
const WATCH: &str = "etcdserverpb.Watch";
const LEASE: &str = "etcdserverpb.Lease";
const CLUSTER: &str = "etcdserverpb.Cluster";
const MAINTENANCE: &str = "etcdserverpb.Maintenance";
const AUTH: &str = "etcdserverpb.Auth";
const LOCK: &str = "v3lockpb.Lock";
const ELECTION: &str = "v3electionpb.Election";

/// The most a request body may hold: far above `--max-request-bytes`, so that the services' own
/// size check (etcd's error) answers requests between the two.
const BODY_LIMIT_FACTOR: usize = 4;

/// The HTTP routes of the client port, merged into its router next to the gRPC services:
/// `/version` and `/health`, and the gateway's unless `--enable-grpc-gateway=false`.
pub fn router(server: Arc<EtcdServer>) -> axum::Router {
    let enabled = server.cfg.enable_grpc_gateway;
    let gw = Arc::new(Gateway::new(server));
    let router = health_routes(axum::Router::new().route("/version", get(version)));
    let router = if enabled {
        router.route("/v3/{*method}", any(call)).route("/v3beta/{*method}", any(call))
    } else {
        // What etcd's HTTP mux answers without the gateway.
        let off = any(|| async { plain(StatusCode::NOT_FOUND, "404 page not found\n") });
        router.route("/v3/{*method}", off.clone()).route("/v3beta/{*method}", off)
    };
    let router = if gw.server.cfg.enable_console { console::routes(router, call) } else { router };
    router.with_state(gw.clone()).layer(axum::middleware::from_fn_with_state(gw, access))
}

/// `/health`, `/livez`, `/readyz` and the checks under them, and `/metrics`.
fn health_routes(router: axum::Router<Arc<Gateway>>) -> axum::Router<Arc<Gateway>> {
    router
        .route("/metrics", get(metrics))
        .route("/health", get(health::health))
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz))
        .route("/livez/{check}", get(health::one_check))
        .route("/readyz/{check}", get(health::one_check))
}

/// `/metrics`: Prometheus's text format (the member's state is read off the backend, which may
/// wait for a commit: off the async workers).
async fn metrics(State(gw): State<Arc<Gateway>>) -> Response {
    let server = gw.server.clone();
    match tokio::task::spawn_blocking(move || server.metrics.render(&server)).await {
        Ok(text) => {
            let mut resp = Response::new(Body::from(text));
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(crate::metrics::CONTENT_TYPE));
            resp
        }
        Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "metrics failed\n"),
    }
}

/// `--listen-metrics-urls`' routes: `/metrics`, the health endpoints, and 404 for every other
/// path.
pub fn metrics_router(server: Arc<EtcdServer>) -> axum::Router {
    let gw = Arc::new(Gateway::new(server));
    health_routes(axum::Router::new().route("/version", get(version))).fallback(unknown_path).with_state(gw)
}

/// etcd's access controller in front of every HTTP endpoint: a plain-HTTP request whose `Host` is
/// not in `--host-whitelist` is refused (DNS rebinding, CVE-2018-5702); `--cors` origins get CORS
/// headers, and `OPTIONS` is answered 200 at once.
async fn access(State(gw): State<Arc<Gateway>>, req: Request, next: axum::middleware::Next) -> Response {
    let cfg = &gw.server.cfg;
    let tls = req.extensions().get::<crate::listener::ClientConnInfo>().is_some_and(|c| c.tls);
    if !tls {
        let host = request_host(&req);
        if !listed(&cfg.host_whitelist, &host) {
            tracing::warn!(host = %host, "rejecting HTTP request to prevent DNS rebinding attacks");
            return plain_text(StatusCode::MISDIRECTED_REQUEST, format!("{}\n", dns_rebinding_text(&host)));
        }
    }
    let origin = if listed(&cfg.cors, "*") {
        Some(HeaderValue::from_static("*"))
    } else {
        req.headers().get(header::ORIGIN).filter(|o| o.to_str().is_ok_and(|o| listed(&cfg.cors, o))).cloned()
    };
    let mut resp = if req.method() == Method::OPTIONS { Response::new(Body::empty()) } else { next.run(req).await };
    if let Some(origin) = origin {
        let h = resp.headers_mut();
        h.append(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"));
        h.append(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.append(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("accept, content-type, authorization"));
    }
    resp
}

/// Whether `x` is allowed by a `--cors` or `--host-whitelist` list (empty or `*`: everything).
fn listed(list: &[String], x: &str) -> bool {
    list.is_empty() || list.iter().any(|e| e == "*" || e == x)
}

/// The request's host without its port (Go's `req.Host`, split as etcd's `GetHostname` does).
fn request_host(req: &Request) -> String {
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).map(String::from))
        .unwrap_or_default();
    match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => {
            h.trim_start_matches('[').trim_end_matches(']').to_string()
        }
        _ => host,
    }
}

/// etcd's answer to a request refused by `--host-whitelist`.
fn dns_rebinding_text(host: &str) -> String {
    format!(
        "\netcd received your request, but the Host header was unrecognized.\n\n\
         To fix this, choose one of the following options:\n\
         - Enable TLS, then any HTTPS request will be allowed.\n\
         - Add the hostname you want to use to the whitelist in settings.\n  \
         - e.g. etcd --host-whitelist {host:?}\n\n\
         This requirement has been added to help prevent \"DNS Rebinding\" attacks (CVE-2018-5702).\n"
    )
}

/// The services the gateway calls, and the descriptors it converts with.
struct Gateway {
    server: Arc<EtcdServer>,
    desc: &'static Descriptors,
    kv: KvService,
    watch: WatchService,
    lease: LeaseService,
    cluster: ClusterService,
    maintenance: MaintenanceService,
    auth: AuthService,
    lock: LockService,
    election: ElectionService,
    /// `--max-concurrent-streams` over all gateway calls, when set: etcd's gateway is one gRPC
    /// client connection of the server to itself, so its calls (a watch for as long as it lasts)
    /// share that connection's stream limit, and a call beyond it waits.
    streams: Option<Arc<tokio::sync::Semaphore>>,
}

impl Gateway {
    fn new(server: Arc<EtcdServer>) -> Gateway {
        Gateway {
            desc: Descriptors::get(),
            kv: KvService::new(server.clone()),
            watch: WatchService::new(server.clone()),
            lease: LeaseService::new(server.clone()),
            cluster: ClusterService::new(server.clone()),
            maintenance: MaintenanceService::new(server.clone()),
            auth: AuthService::new(server.clone()),
            lock: LockService::new(server.clone()),
            election: ElectionService::new(server.clone()),
            streams: (server.cfg.max_concurrent_streams != u32::MAX).then(|| {
                let n = (server.cfg.max_concurrent_streams as usize).min(tokio::sync::Semaphore::MAX_PERMITS);
                Arc::new(tokio::sync::Semaphore::new(n))
            }),
            server,
        }
    }
}

/// `POST /v3/...`: one RPC, within `--max-concurrent-streams` when set (the permit is held until
/// the response body ends).
async fn call(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    let Some(streams) = gw.streams.clone() else { return call_unlimited(gw, req).await };
    let Ok(permit) = streams.acquire_owned().await else { return call_unlimited(gw, req).await };
    let (parts, body) = call_unlimited(gw, req).await.into_parts();
    let body = body.into_data_stream().map(move |chunk| {
        let _held = &permit;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(body))
}

async fn call_unlimited(gw: Arc<Gateway>, req: Request) -> Response {
    if req.method() != Method::POST {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    }
    let path = req.uri().path();
    let method = path
        .strip_prefix("/v3/")
        .or_else(|| path.strip_prefix("/v3beta/"))
        .or_else(|| path.strip_prefix(console::API))
        .unwrap_or_default()
        .to_string();
    // A learner serves the gateway's Status and (serializable) ranges only, as its gRPC.
    if gw.server.is_learner() && !matches!(method.as_str(), "maintenance/status" | "kv/range") {
        return error_response(&oxcd_api::EtcdError::NotSupportedForLearner.to_status());
    }
    let meta = metadata(req.headers());
    let content_length: Option<usize> =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    let body = req.into_body();
    let gw = &*gw;
    let d = gw.desc;
    match method.as_str() {
        // Bidirectional streams: the body is a sequence of JSON requests.
        "watch" => gw.bidi(&d.method(WATCH, "Watch"), body, meta, |r| gw.watch.watch(r)).await,
        "lease/keepalive" => {
            gw.bidi(&d.method(LEASE, "LeaseKeepAlive"), body, meta, |r| gw.lease.lease_keep_alive(r)).await
        }
        _ => {
            let max = gw.server.cfg.max_request_bytes;
            let body = match read_body(body, max.saturating_mul(BODY_LIMIT_FACTOR)).await {
                Ok(b) => b,
                // Too large: the error gRPC gives a message above the limit, once the client has
                // sent it all (etcd's gateway reads every request whole).
                Err(Some(read)) => {
                    let limit = max + crate::config::GRPC_OVERHEAD_BYTES;
                    let len = content_length.unwrap_or(read);
                    let msg = format!("grpc: received message larger than max ({len} vs. {limit})");
                    return error_response(&Status::resource_exhausted(msg));
                }
                // The client went away.
                Err(None) => return plain(StatusCode::BAD_REQUEST, "Bad Request\n"),
            };
            gw.unary(&method, body, meta).await
        }
    }
}

/// Most bytes of an oversized request body read (and dropped) before it is answered: a client
/// that sent the request whole reads the answer without a broken pipe, one that keeps sending
/// past this is cut off.
const DRAIN_LIMIT: usize = 256 << 20;

/// The whole request body, if it is at most `limit` bytes; `Err(Some(n))` if it is larger (`n`:
/// the bytes read, the rest drained up to [`DRAIN_LIMIT`]); `Err(None)` if reading it failed.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, Option<usize>> {
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    let mut read = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| None)?;
        read += chunk.len();
        if read <= limit {
            buf.extend_from_slice(&chunk);
        } else if read > DRAIN_LIMIT {
            break;
        }
    }
    if read > limit { Err(Some(read)) } else { Ok(buf.freeze()) }
}

impl Gateway {
    /// A unary RPC (or one with a streamed reply) by its gateway path.
    async fn unary(&self, method: &str, body: Bytes, meta: MetadataMap) -> Response {
        let d = self.desc;
        let b = (body, meta);
        match method {
            "kv/range" => self.one(&d.method(KV, "Range"), b, |r| self.kv.range(r)).await,
            "kv/put" => self.one(&d.method(KV, "Put"), b, |r| self.kv.put(r)).await,
            "kv/deleterange" => self.one(&d.method(KV, "DeleteRange"), b, |r| self.kv.delete_range(r)).await,
            "kv/txn" => self.one(&d.method(KV, "Txn"), b, |r| self.kv.txn(r)).await,
            "kv/compaction" => self.one(&d.method(KV, "Compact"), b, |r| self.kv.compact(r)).await,
            "lease/grant" => self.one(&d.method(LEASE, "LeaseGrant"), b, |r| self.lease.lease_grant(r)).await,
            "lease/revoke" | "kv/lease/revoke" => {
                self.one(&d.method(LEASE, "LeaseRevoke"), b, |r| self.lease.lease_revoke(r)).await
            }
            "lease/timetolive" | "kv/lease/timetolive" => {
                self.one(&d.method(LEASE, "LeaseTimeToLive"), b, |r| self.lease.lease_time_to_live(r)).await
            }
            "lease/leases" | "kv/lease/leases" => {
                self.one(&d.method(LEASE, "LeaseLeases"), b, |r| self.lease.lease_leases(r)).await
            }
            "cluster/member/add" => self.one(&d.method(CLUSTER, "MemberAdd"), b, |r| self.cluster.member_add(r)).await,
            "cluster/member/remove" => {
                self.one(&d.method(CLUSTER, "MemberRemove"), b, |r| self.cluster.member_remove(r)).await
            }
            "cluster/member/update" => {
                self.one(&d.method(CLUSTER, "MemberUpdate"), b, |r| self.cluster.member_update(r)).await
            }
            "cluster/member/list" => {
                self.one(&d.method(CLUSTER, "MemberList"), b, |r| self.cluster.member_list(r)).await
            }
            "cluster/member/promote" => {
                self.one(&d.method(CLUSTER, "MemberPromote"), b, |r| self.cluster.member_promote(r)).await
            }
            "maintenance/alarm" => self.one(&d.method(MAINTENANCE, "Alarm"), b, |r| self.maintenance.alarm(r)).await,
            "maintenance/status" => self.one(&d.method(MAINTENANCE, "Status"), b, |r| self.maintenance.status(r)).await,
            "maintenance/defragment" => {
                self.one(&d.method(MAINTENANCE, "Defragment"), b, |r| self.maintenance.defragment(r)).await
            }
            "maintenance/hash" => self.one(&d.method(MAINTENANCE, "Hash"), b, |r| self.maintenance.hash(r)).await,
            "maintenance/hashkv" => {
                self.one(&d.method(MAINTENANCE, "HashKV"), b, |r| self.maintenance.hash_kv(r)).await
            }
            "maintenance/snapshot" => {
                self.server_stream(&d.method(MAINTENANCE, "Snapshot"), b, |r| self.maintenance.snapshot(r)).await
            }
            "maintenance/transfer-leadership" => {
                self.one(&d.method(MAINTENANCE, "MoveLeader"), b, |r| self.maintenance.move_leader(r)).await
            }
            "maintenance/downgrade" => {
                self.one(&d.method(MAINTENANCE, "Downgrade"), b, |r| self.maintenance.downgrade(r)).await
            }
            "auth/enable" => self.one(&d.method(AUTH, "AuthEnable"), b, |r| self.auth.auth_enable(r)).await,
            "auth/disable" => self.one(&d.method(AUTH, "AuthDisable"), b, |r| self.auth.auth_disable(r)).await,
            "auth/status" => self.one(&d.method(AUTH, "AuthStatus"), b, |r| self.auth.auth_status(r)).await,
            "auth/authenticate" => self.one(&d.method(AUTH, "Authenticate"), b, |r| self.auth.authenticate(r)).await,
            "auth/user/add" => self.one(&d.method(AUTH, "UserAdd"), b, |r| self.auth.user_add(r)).await,
            "auth/user/get" => self.one(&d.method(AUTH, "UserGet"), b, |r| self.auth.user_get(r)).await,
            "auth/user/list" => self.one(&d.method(AUTH, "UserList"), b, |r| self.auth.user_list(r)).await,
            "auth/user/delete" => self.one(&d.method(AUTH, "UserDelete"), b, |r| self.auth.user_delete(r)).await,
            "auth/user/changepw" => {
                self.one(&d.method(AUTH, "UserChangePassword"), b, |r| self.auth.user_change_password(r)).await
            }
            "auth/user/grant" => self.one(&d.method(AUTH, "UserGrantRole"), b, |r| self.auth.user_grant_role(r)).await,
            "auth/user/revoke" => {
                self.one(&d.method(AUTH, "UserRevokeRole"), b, |r| self.auth.user_revoke_role(r)).await
            }
            "auth/role/add" => self.one(&d.method(AUTH, "RoleAdd"), b, |r| self.auth.role_add(r)).await,
            "auth/role/get" => self.one(&d.method(AUTH, "RoleGet"), b, |r| self.auth.role_get(r)).await,
            "auth/role/list" => self.one(&d.method(AUTH, "RoleList"), b, |r| self.auth.role_list(r)).await,
            "auth/role/delete" => self.one(&d.method(AUTH, "RoleDelete"), b, |r| self.auth.role_delete(r)).await,
            "auth/role/grant" => {
                self.one(&d.method(AUTH, "RoleGrantPermission"), b, |r| self.auth.role_grant_permission(r)).await
            }
            "auth/role/revoke" => {
                self.one(&d.method(AUTH, "RoleRevokePermission"), b, |r| self.auth.role_revoke_permission(r)).await
            }
            "lock/lock" => self.one(&d.method(LOCK, "Lock"), b, |r| self.lock.lock(r)).await,
            "lock/unlock" => self.one(&d.method(LOCK, "Unlock"), b, |r| self.lock.unlock(r)).await,
            "election/campaign" => self.one(&d.method(ELECTION, "Campaign"), b, |r| self.election.campaign(r)).await,
            "election/proclaim" => self.one(&d.method(ELECTION, "Proclaim"), b, |r| self.election.proclaim(r)).await,
            "election/leader" => self.one(&d.method(ELECTION, "Leader"), b, |r| self.election.leader(r)).await,
            "election/observe" => {
                self.server_stream(&d.method(ELECTION, "Observe"), b, |r| self.election.observe(r)).await
            }
            "election/resign" => self.one(&d.method(ELECTION, "Resign"), b, |r| self.election.resign(r)).await,
            // grpc-gateway's answer to a path it has no method for.
            _ => plain(StatusCode::NOT_FOUND, "Not Found\n"),
        }
    }

    /// Request JSON → request message → the service → reply JSON.
    async fn one<Req, Resp, F, Fut>(&self, m: &json::Method, b: (Bytes, MetadataMap), f: F) -> Response
    where
        Req: prost::Message + Default,
        Resp: prost::Message,
        F: FnOnce(tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        decode_and_call(m, b, self.grpc_limit(), f, |resp| json_response(json::encode(&m.output, &resp))).await
    }

    /// The largest message etcd's gateway gets through to its gRPC server.
    fn grpc_limit(&self) -> usize {
        self.server.cfg.max_request_bytes + crate::config::GRPC_OVERHEAD_BYTES
    }

    /// A request with a streamed reply: one `{"result":...}` line per message.
    async fn server_stream<Req, Resp, F, Fut>(&self, m: &json::Method, b: (Bytes, MetadataMap), f: F) -> Response
    where
        Req: prost::Message + Default,
        Resp: prost::Message + 'static,
        F: FnOnce(tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<BoxStream<Resp>>, Status>>,
    {
        decode_and_call(m, b, self.grpc_limit(), f, |replies| stream_response(m.output.clone(), replies)).await
    }

    /// A bidirectional stream: the body's JSON requests are fed to the service as they arrive
    /// (as gRPC frames, so the service reads them exactly as it reads a gRPC client's), and its
    /// replies go out as they come. A body that ends closes the sending side only: a watch keeps
    /// delivering events until the client goes away, as with etcd.
    async fn bidi<Req, Resp, F, Fut>(&self, m: &json::Method, body: Body, meta: MetadataMap, f: F) -> Response
    where
        Req: prost::Message + Default + 'static,
        Resp: prost::Message + 'static,
        F: FnOnce(tonic::Request<Streaming<Req>>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<BoxStream<Resp>>, Status>>,
    {
        let mut requests = Box::pin(json::request_frames(m.input.clone(), body.into_data_stream()));
        // The first request is read before the call, so a malformed one gets an error reply
        // rather than an empty stream (grpc-gateway answers it with code 2, HTTP 500).
        let first = match requests.next().await {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return error_response(&Status::unknown(e.message())),
            None => return error_response(&Status::unknown("EOF")),
        };
        // A malformed later request ends the input (the service sees the client stop sending).
        let later = requests.take_while(|r| ready(r.is_ok())).filter_map(|r| ready(r.ok()));
        let frames = futures::stream::once(ready(first)).chain(later).map(|b| Ok::<_, Status>(Frame::data(b)));
        let input =
            Streaming::new_request(tonic_prost::ProstDecoder::<Req>::default(), StreamBody::new(frames), None, None);
        match f(tonic::Request::from_parts(meta, Default::default(), input)).await {
            Ok(resp) => stream_response(m.output.clone(), resp.into_inner()),
            Err(s) => error_response(&s),
        }
    }
}

/// Decodes the body as `m`'s request, calls the service, and answers with `reply` or the error.
async fn decode_and_call<Req, T, F, Fut>(
    m: &json::Method,
    (body, meta): (Bytes, MetadataMap),
    limit: usize,
    f: F,
    reply: impl FnOnce(T) -> Response,
) -> Response
where
    Req: prost::Message + Default,
    F: FnOnce(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>>,
{
    let req: Req = match json::decode_request(&m.input, &body) {
        Ok(r) => r,
        Err(e) => return error_response(&e.status()),
    };
    // etcd's gateway calls its gRPC server, whose size limit answers a message above it.
    let len = req.encoded_len();
    if len > limit {
        let msg = format!("grpc: received message larger than max ({len} vs. {limit})");
        return error_response(&Status::resource_exhausted(msg));
    }
    match f(tonic::Request::from_parts(meta, Default::default(), req)).await {
        Ok(resp) => reply(resp.into_inner()),
        Err(s) => error_response(&s),
    }
}

/// gRPC metadata from the HTTP headers: the auth token (`Authorization`, with or without
/// `Bearer `) as the `token` etcd's clients send.
fn metadata(headers: &HeaderMap) -> MetadataMap {
    let mut meta = MetadataMap::new();
    if let Some(token) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let token = token.strip_prefix("Bearer ").unwrap_or(token);
        if let Ok(v) = token.parse() {
            meta.insert("token", v);
        }
    }
    meta
}

/// Headers etcd's gateway puts on every reply (CORS, and the gRPC content type it forwards).
fn with_etcd_headers(mut resp: Response, json: bool) -> Response {
    // CORS headers come from the access layer (`access`), as `--cors` says.
    let h = resp.headers_mut();
    if json {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert("grpc-metadata-content-type", HeaderValue::from_static("application/grpc"));
    }
    resp
}

fn json_response(body: Vec<u8>) -> Response {
    with_etcd_headers(Response::new(Body::from(body)), true)
}

fn plain(code: StatusCode, text: &'static str) -> Response {
    plain_text(code, text.to_string())
}

/// A plain text answer as Go's `http.Error` writes it.
fn plain_text(code: StatusCode, text: String) -> Response {
    let mut resp = with_etcd_headers(Response::new(Body::from(text)), false);
    *resp.status_mut() = code;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    resp
}

/// A failed unary call: etcd 3.5's body and grpc-gateway v1.16's HTTP status.
fn error_response(s: &Status) -> Response {
    #[derive(serde::Serialize)]
    struct Error<'a> {
        error: &'a str,
        code: i32,
        message: &'a str,
    }
    let body = serde_json::to_vec(&Error { error: s.message(), code: s.code() as i32, message: s.message() })
        .expect("error serializes");
    let mut resp = with_etcd_headers(Response::new(Body::from(body)), true);
    resp.headers_mut().remove("grpc-metadata-content-type");
    *resp.status_mut() = http_status(s.code());
    resp
}

/// A streamed reply: `{"result":...}` per message, and `{"error":{...}}` if the stream fails.
fn stream_response<Resp: prost::Message + 'static>(desc: MessageDescriptor, replies: BoxStream<Resp>) -> Response {
    let lines = replies.scan(false, move |failed, r| {
        if *failed {
            return ready(None);
        }
        let line = match r {
            Ok(msg) => json::stream_result(&desc, &msg),
            Err(s) => {
                *failed = true;
                stream_error(&s)
            }
        };
        ready(Some(Ok::<_, Infallible>(Bytes::from(line))))
    });
    with_etcd_headers(Response::new(Body::from_stream(lines)), true)
}

/// grpc-gateway v1's error line in a stream (Patroni reads `grpc_code` and `http_code`).
fn stream_error(s: &Status) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Inner<'a> {
        grpc_code: i32,
        http_code: u16,
        message: &'a str,
        http_status: &'a str,
    }
    #[derive(serde::Serialize)]
    struct Outer<'a> {
        error: Inner<'a>,
    }
    let code = http_status(s.code());
    let inner = Inner {
        grpc_code: s.code() as i32,
        http_code: code.as_u16(),
        message: s.message(),
        http_status: code.canonical_reason().unwrap_or_default(),
    };
    let mut line = serde_json::to_vec(&Outer { error: inner }).expect("error serializes");
    line.push(b'\n');
    line
}

/// grpc-gateway v1.16's `HTTPStatusFromCode` (etcd 3.5; 3.4's v1.9 answered FailedPrecondition
/// with 412).
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::BAD_REQUEST,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// `GET /version`: the versions HTTP clients pick the gateway prefix by (Patroni, etcd3gw).
/// `etcdcluster` is the version the members agreed on (`not_decided` until the leader set it).
async fn version(State(gw): State<Arc<Gateway>>) -> Response {
    let members = gw.server.members();
    let cluster = members.version().unwrap_or("not_decided");
    let body = format!("{{\"etcdserver\":\"{SERVER_VERSION}\",\"etcdcluster\":\"{cluster}\"}}");
    json_response(body.into_bytes())
}

/// What a path no route serves gets: gRPC's Unimplemented for a gRPC request (tonic's answer),
/// etcd's `404 page not found` for anything else.
pub async fn unknown_path(req: Request) -> Response {
    let grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc {
        return Status::unimplemented("").into_http();
    }
    plain(StatusCode::NOT_FOUND, "404 page not found\n")
}
