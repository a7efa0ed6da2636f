//! The client port: one listener per `--listen-client-urls`, serving etcd's gRPC services (`grpc/`)
//! and, on the same port as etcd does, the JSON gateway (`gateway/`), `/version` and `/health`,
//! over HTTP/2 or HTTP/1.1. In front of them all, the learner guard.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use oxcd_api::EtcdError;
use oxcd_api::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer, lease_server::LeaseServer,
    maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use oxcd_api::v3electionpb::election_server::ElectionServer;
use oxcd_api::v3lockpb::lock_server::LockServer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use crate::config::GRPC_OVERHEAD_BYTES;
use crate::grpc::{
    AuthService, ClusterService, ElectionService, KvService, LeaseService, LockService, MaintenanceService,
    WatchService, served_by_learners,
};
use crate::server::EtcdServer;

/// What gRPC decodes at most: far above etcd's limit, so requests between etcd's limit and this
/// get etcd's (Go gRPC's) error text from [`check_size`] rather than tonic's.
const DECODE_LIMIT_FACTOR: usize = 4;

/// Binds a client listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves the client services on `listener` until the member stops: gRPC (HTTP/2) and, on the
/// same port as etcd does, the JSON gateway and `/version`, `/health` (HTTP/1.1 or HTTP/2).
pub async fn serve(server: Arc<EtcdServer>, listener: TcpListener) -> Result<(), tonic::transport::Error> {
    let decode_limit = (server.cfg.max_request_bytes + GRPC_OVERHEAD_BYTES) * DECODE_LIMIT_FACTOR;
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
    let mut routes = routes.routes();
    let grpc = std::mem::take(routes.axum_router_mut());
    *routes.axum_router_mut() = grpc.merge(crate::gateway::router(server.clone()));
    let stop = server.clone();
    tonic::transport::Server::builder()
        .layer(LearnerGuardLayer(server.clone()))
        .accept_http1(true)
        .http2_keepalive_interval(Some(Duration::from_secs(2 * 60 * 60)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .add_routes(routes)
        // The builder's tcp_nodelay does not reach a listener we bound ourselves: without it, Nagle
        // holds a response's last frame for the client's delayed ACK (~40 ms).
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), async move {
            stop.stopped().await
        })
        .await
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

impl<S, B, R> tower::Service<axum::http::Request<B>> for LearnerGuard<S>
where
    S: tower::Service<axum::http::Request<B>, Response = axum::http::Response<R>>,
    R: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::Either<futures::future::Ready<Result<S::Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        // gRPC methods are `/<package>.<Service>/<Method>`; the gateway's paths (`/v3/...`) and
        // `/version`, `/health` have no dot and are guarded by the gateway.
        let path = req.uri().path();
        let grpc = path.split('/').nth(1).is_some_and(|service| service.contains('.'));
        if grpc && self.server.is_learner() && !served_by_learners(path) {
            let refused = EtcdError::NotSupportedForLearner.to_status().into_http();
            return futures::future::Either::Left(futures::future::ready(Ok(refused)));
        }
        futures::future::Either::Right(self.inner.call(req))
    }
}
