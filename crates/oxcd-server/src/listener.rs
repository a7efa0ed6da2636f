//! The client port: one listener per address of `--listen-client-urls` (and
//! `--listen-client-http-urls`), serving etcd's gRPC services (`grpc/`) and, on the same port as
//! etcd does, the JSON gateway (`gateway/`), `/version` and `/health`, over HTTP/2 or HTTP/1.1, in
//! plain text, TLS, or both (an address listed as `http://` and `https://`: each connection is
//! told apart by its first byte, as etcd's cmux does). In front of them all, the learner guard.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use oxcd_api::EtcdError;
use oxcd_api::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer, lease_server::LeaseServer,
    maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use oxcd_api::v3electionpb::election_server::ElectionServer;
use oxcd_api::v3lockpb::lock_server::LockServer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::accept_failures::{ACCEPT_RETRY, AcceptFailures};
use crate::config::{ConfigError, GRPC_OVERHEAD_BYTES, ServerConfig, is_https, parse_url, split_urls};
use crate::grpc::{
    AuthService, ClusterService, ElectionService, KvService, LeaseService, LockService, MaintenanceService,
    WatchService, served_by_learners,
};
use crate::keepalive_policy::Policed;
use crate::metrics::grpc::{Call, ResponseBody, unmetered};
use crate::server::EtcdServer;
use crate::tls::ServerTls;
use oxcd_api::coalesce::Coalesce;

/// How long a client has to finish its TLS handshake (etcd's `tlsHandshakeTimeout`).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What one client address serves.
pub struct ClientPort {
    pub addr: SocketAddr,
    /// TLS, if an `https://` URL names the address.
    pub tls: Option<Arc<ServerTls>>,
    /// Plain text, if an `http://` URL names the address.
    pub plain: bool,
    /// gRPC (all of `--listen-client-urls` unless `--listen-client-http-urls` is set).
    pub grpc: bool,
    /// The HTTP endpoints: gateway, `/version`, `/health`.
    pub http: bool,
}

/// The client addresses `cfg` lists, with the TLS they need (loaded once here: bad files stop the
/// start).
pub fn client_ports(cfg: &ServerConfig) -> Result<Vec<ClientPort>, ConfigError> {
    let http_only = split_urls(&cfg.listen_client_http_urls);
    let mut tls = None;
    let mut ports: Vec<ClientPort> = Vec::new();
    let both = split_urls(&cfg.listen_client_urls).into_iter().map(|u| (u, false));
    for (url, is_http_only) in both.chain(http_only.iter().cloned().map(|u| (u, true))) {
        let addr = parse_url(&url)?;
        let secure = is_https(&url);
        if secure && tls.is_none() {
            tls = Some(ServerTls::new(&cfg.client_transport_security, cfg, &[b"h2", b"http/1.1"])?);
        }
        if !secure && cfg.client_transport_security.has_cert() {
            tracing::warn!(client_url = %url, "scheme is http while key and cert files are present; ignoring key and cert files");
        }
        let port = match ports.iter_mut().find(|p| p.addr == addr) {
            Some(p) if is_http_only && p.grpc => {
                return Err(ConfigError::Tls(format!(
                    "cannot bind both --listen-client-urls and --listen-client-http-urls on the same url {url}"
                )));
            }
            Some(p) => p,
            None => {
                ports.push(ClientPort { addr, tls: None, plain: false, grpc: !is_http_only, http: true });
                ports.last_mut().expect("just pushed")
            }
        };
        if secure {
            port.tls = tls.clone();
        } else {
            port.plain = true;
        }
    }
    if !http_only.is_empty() {
        // etcd 3.5: with HTTP URLs of their own, the client URLs serve gRPC alone.
        for p in ports.iter_mut().filter(|p| p.grpc) {
            p.http = false;
        }
    }
    Ok(ports)
}

/// Binds a client listener.
pub async fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    if !reuse_port {
        return TcpListener::bind(addr).await;
    }
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Serves the client services on `listener` until the member stops: gRPC (HTTP/2) and, on the
/// same port as etcd does, the JSON gateway and `/version`, `/health` (HTTP/1.1 or HTTP/2), as
/// `port` says.
pub async fn serve(
    server: Arc<EtcdServer>,
    listener: TcpListener,
    port: &ClientPort,
) -> Result<(), tonic::transport::Error> {
    // The front service refuses a larger message with etcd's error before tonic reads it.
    let decode_limit = server.cfg.max_request_bytes + GRPC_OVERHEAD_BYTES;
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("", tonic_health::ServingStatus::Serving).await;
    let mut routes = tonic::service::RoutesBuilder::default();
    routes
        .add_service(
            KvServer::new(KvService::new(server.clone()))
                .max_decoding_message_size(decode_limit)
                .max_encoding_message_size(usize::MAX),
        )
        .add_service(ClusterServer::new(ClusterService::new(server.clone())).max_decoding_message_size(decode_limit))
        .add_service(
            MaintenanceServer::new(MaintenanceService::new(server.clone()))
                .max_decoding_message_size(decode_limit)
                .max_encoding_message_size(usize::MAX),
        )
        .add_service(
            WatchServer::new(WatchService::new(server.clone()))
                .max_decoding_message_size(decode_limit)
                .max_encoding_message_size(usize::MAX),
        )
        .add_service(LeaseServer::new(LeaseService::new(server.clone())).max_decoding_message_size(decode_limit))
        .add_service(AuthServer::new(AuthService::new(server.clone())).max_decoding_message_size(decode_limit))
        .add_service(LockServer::new(LockService::new(server.clone())).max_decoding_message_size(decode_limit))
        .add_service(ElectionServer::new(ElectionService::new(server.clone())).max_decoding_message_size(decode_limit))
        .add_service(health_service);
    let mut routes = if port.grpc { routes.routes() } else { tonic::service::RoutesBuilder::default().routes() };
    if port.http {
        let grpc = std::mem::take(routes.axum_router_mut());
        *routes.axum_router_mut() =
            grpc.merge(crate::gateway::router(server.clone())).fallback(crate::gateway::unknown_path);
    }
    let stop = server.clone();
    let router = tonic::transport::Server::builder()
        .layer(LearnerGuardLayer(server.clone()))
        .accept_http1(true)
        // --grpc-keepalive-interval, --grpc-keepalive-timeout (0 turns each off).
        .http2_keepalive_interval(Some(server.cfg.grpc_keepalive_interval).filter(|d| !d.is_zero()))
        .http2_keepalive_timeout(Some(server.cfg.grpc_keepalive_timeout).filter(|d| !d.is_zero()))
        .max_concurrent_streams(Some(server.cfg.max_concurrent_streams))
        .add_routes(routes);
    let stopped = async move { stop.stopped().await };
    // --grpc-keepalive-min-time, enforced under the coalescing (its GOAWAY goes to the socket).
    let min_ping = server.cfg.grpc_keepalive_min_time;
    match &port.tls {
        // The builder's tcp_nodelay does not reach a listener we bound ourselves: without it, Nagle
        // holds a response's last frame for the client's delayed ACK (~40 ms).
        None => {
            let incoming = plain_incoming(listener).map_ok(move |c| Coalesce::new(Policed::new(c, min_ping)));
            router.serve_with_incoming_shutdown(incoming, stopped).await
        }
        Some(tls) => {
            let incoming = secure_incoming(listener, tls.clone(), port.plain)
                .map_ok(move |c| Coalesce::new(Policed::new(c, min_ping)));
            router.serve_with_incoming_shutdown(incoming, stopped).await
        }
    }
}

/// `--listen-metrics-urls`: plain HTTP with `/metrics` and the health endpoints, until the member
/// stops.
pub async fn serve_metrics(server: Arc<EtcdServer>, listener: TcpListener) -> Result<(), tonic::transport::Error> {
    let routes = tonic::service::Routes::from(crate::gateway::metrics_router(server.clone()));
    let stop = server.clone();
    tonic::transport::Server::builder()
        .accept_http1(true)
        .add_routes(routes)
        .serve_with_incoming_shutdown(plain_incoming(listener), async move { stop.stopped().await })
        .await
}

/// The connections of a plain-text listener, with Nagle off. A failed accept is retried after
/// [`ACCEPT_RETRY`] (see [`AcceptFailures`]), so the member does not spin at its descriptor
/// limit; established connections are served meanwhile.
fn plain_incoming(listener: TcpListener) -> impl futures::Stream<Item = std::io::Result<TcpStream>> {
    let failures = AcceptFailures::new("client");
    futures::stream::unfold((listener, failures), |(listener, mut failures)| async move {
        let (tcp, _) = accept_retrying(&listener, &mut failures).await;
        Some((Ok(tcp), (listener, failures)))
    })
}

/// The next connection of `listener`, with Nagle off; a failed accept is retried after
/// [`ACCEPT_RETRY`].
async fn accept_retrying(listener: &TcpListener, failures: &mut AcceptFailures) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((tcp, remote)) => {
                let _ = tcp.set_nodelay(true);
                failures.succeeded();
                return (tcp, remote);
            }
            Err(e) => {
                failures.failed(&e);
                tokio::time::sleep(ACCEPT_RETRY).await;
            }
        }
    }
}

/// The connections of a listener that serves TLS (and plain text too if `plain`): each handshake
/// runs in a task of its own, so a slow or silent client holds up no one, and gives up after
/// [`HANDSHAKE_TIMEOUT`].
fn secure_incoming(
    listener: TcpListener,
    tls: Arc<ServerTls>,
    plain: bool,
) -> impl futures::Stream<Item = std::io::Result<ClientConn>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        let mut failures = AcceptFailures::new("client");
        loop {
            let (tcp, remote) = tokio::select! {
                c = accept_retrying(&listener, &mut failures) => c,
                // The server is gone.
                _ = tx.closed() => return,
            };
            let (tx, tls) = (tx.clone(), tls.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept(tcp, remote, tls, plain)).await {
                    Ok(Ok(conn)) => {
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%remote, error = %e, "client TLS handshake failed"),
                    Err(_) => tracing::debug!(%remote, "client TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// One accepted connection: TLS, or plain text if allowed and its first byte is not a TLS
/// handshake record's.
async fn accept(tcp: TcpStream, remote: SocketAddr, tls: Arc<ServerTls>, plain: bool) -> std::io::Result<ClientConn> {
    const TLS_HANDSHAKE_RECORD: u8 = 0x16;
    if plain {
        let mut first = [0u8; 1];
        if tcp.peek(&mut first).await? == 0 || first[0] != TLS_HANDSHAKE_RECORD {
            return Ok(ClientConn {
                io: Io::Plain(tcp),
                info: ClientConnInfo { remote, common_name: None, tls: false },
            });
        }
    }
    let stream = tokio_rustls::TlsAcceptor::from(tls.config()).accept(tcp).await?;
    let common_name = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(crate::tls::common_name);
    Ok(ClientConn { io: Io::Tls(Box::new(stream)), info: ClientConnInfo { remote, common_name, tls: true } })
}

/// A client connection of a listener that serves TLS.
pub struct ClientConn {
    io: Io,
    info: ClientConnInfo,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// What a request knows of its connection (in its extensions, through tonic's `Connected`).
#[derive(Debug, Clone)]
pub struct ClientConnInfo {
    pub remote: SocketAddr,
    /// The common name of the client's certificate, if it presented one (etcd's user name for
    /// certificate authentication).
    pub common_name: Option<String>,
    /// Whether the connection is TLS (a port serving TLS may take plain connections too).
    pub tls: bool,
}

impl tonic::transport::server::Connected for ClientConn {
    type ConnectInfo = ClientConnInfo;

    fn connect_info(&self) -> ClientConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for ClientConn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientConn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Answers the gRPC requests a learner does not serve with etcd's error, before they reach a
/// service.
#[derive(Clone)]
struct LearnerGuardLayer(Arc<EtcdServer>);

impl<S> tower::Layer<S> for LearnerGuardLayer {
    type Service = LearnerGuard<S>;

    fn layer(&self, inner: S) -> LearnerGuard<S> {
        LearnerGuard { inner, server: self.0.clone() }
    }
}

#[derive(Clone)]
struct LearnerGuard<S> {
    inner: S,
    server: Arc<EtcdServer>,
}

impl<S, R> tower::Service<axum::http::Request<tonic::body::Body>> for LearnerGuard<S>
where
    S: tower::Service<axum::http::Request<tonic::body::Body>, Response = axum::http::Response<R>>,
    R: Default,
{
    type Response = axum::http::Response<ResponseBody<R>>;
    type Error = S::Error;
    type Future = futures::future::Either<futures::future::Ready<Result<Self::Response, S::Error>>, Timed<S::Future>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: axum::http::Request<tonic::body::Body>) -> Self::Future {
        // gRPC methods are `/<package>.<Service>/<Method>`; the gateway's paths (`/v3/...`) and
        // `/version`, `/health` have no dot and are guarded by the gateway.
        let path = req.uri().path();
        let grpc = path.split('/').nth(1).is_some_and(|service| service.contains('.'));
        if grpc && self.server.is_learner() && !served_by_learners(path) {
            let refused = EtcdError::NotSupportedForLearner.to_status().into_http();
            return futures::future::Either::Left(futures::future::ready(Ok(unmetered(refused))));
        }
        // Unary calls are timed for --experimental-warning-unary-request-duration (a stream's
        // response starts at once and lasts as long as the client wants).
        let unary = !is_stream(path);
        let slow = unary.then(|| (self.server.cfg.warning_unary_request_duration, req.uri().clone()));
        let mut call = if grpc { self.server.metrics.grpc.method(path).map(Call::start) } else { None };
        if let (Some(call), Some(tracer)) = (&mut call, &self.server.tracer) {
            let ext = req.extensions();
            let peer = ext
                .get::<ClientConnInfo>()
                .map(|c| c.remote)
                .or_else(|| ext.get::<tonic::transport::server::TcpConnectInfo>().and_then(|c| c.remote_addr()));
            if let Some(span) = tracer.span(path, req.headers(), peer) {
                call.trace(span);
            }
        }
        let req = match &call {
            Some(call) => {
                let limit = self.server.cfg.max_request_bytes + GRPC_OVERHEAD_BYTES;
                req.map(|body| tonic::body::Body::new(call.request_body(body, limit)))
            }
            None => req,
        };
        futures::future::Either::Right(Timed { inner: self.inner.call(req), started: Instant::now(), slow, call })
    }
}

/// The streaming methods, by gRPC path or gateway path.
fn is_stream(path: &str) -> bool {
    let gateway = path.strip_prefix("/v3/").or_else(|| path.strip_prefix("/v3beta/"));
    matches!(
        path,
        "/etcdserverpb.Watch/Watch"
            | "/etcdserverpb.Lease/LeaseKeepAlive"
            | "/etcdserverpb.Maintenance/Snapshot"
            | "/v3electionpb.Election/Observe"
    ) || matches!(gateway, Some("watch" | "lease/keepalive" | "maintenance/snapshot" | "election/observe"))
}

pin_project_lite::pin_project! {
    /// A request's answer, timed: one that took longer than the threshold logs etcd's
    /// "request stats" warning.
    pub struct Timed<F> {
        #[pin]
        inner: F,
        started: Instant,
        slow: Option<(Duration, axum::http::Uri)>,
        // The gRPC call's metrics, handed to the response body.
        call: Option<Call>,
    }
}

impl<F, R, E> std::future::Future for Timed<F>
where
    F: std::future::Future<Output = Result<axum::http::Response<R>, E>>,
{
    type Output = Result<axum::http::Response<ResponseBody<R>>, E>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        if let Some((threshold, path)) = this.slow.take() {
            let spent = this.started.elapsed();
            if spent > threshold {
                let path = path.path();
                // etcd's field names, spaces and all.
                tracing::warn!("time spent" = ?spent, "expected-duration" = ?threshold, "response type" = %path, "request stats");
            } else {
                // Every request's time, at --log-level debug (a level check otherwise).
                tracing::debug!("time spent" = ?spent, "response type" = %path.path(), "request stats");
            }
        }
        Poll::Ready(out.map(|resp| match this.call.take() {
            Some(call) => call.response(resp),
            None => unmetered(resp),
        }))
    }
}
