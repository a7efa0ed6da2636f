//! Connections as clientv3 makes them for etcdctl: dial the endpoints within `--dial-timeout`,
//! authenticate when `--user` is given (the token rides on every call), and bound each short call by
//! `--command-timeout`.

use std::future::Future;
use std::time::Duration;

use oxcd_api::etcdserverpb::auth_client::AuthClient;
use oxcd_api::etcdserverpb::cluster_client::ClusterClient;
use oxcd_api::etcdserverpb::kv_client::KvClient;
use oxcd_api::etcdserverpb::lease_client::LeaseClient;
use oxcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use oxcd_api::etcdserverpb::watch_client::WatchClient;
use oxcd_api::etcdserverpb::{AuthenticateRequest, MemberListRequest};
use oxcd_api::v3electionpb::election_client::ElectionClient;
use oxcd_api::v3lockpb::lock_client::LockClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use crate::cli::Global;
use crate::error::{CtlError, EXIT_BAD_CONNECTION, Result};

/// Adds the auth token (when logged in) to every call.
#[derive(Clone, Default)]
pub struct Token(Option<MetadataValue<Ascii>>);

impl Interceptor for Token {
    fn call(&mut self, mut r: Request<()>) -> std::result::Result<Request<()>, Status> {
        if let Some(t) = &self.0 {
            r.metadata_mut().insert("token", t.clone());
        }
        Ok(r)
    }
}

pub type Svc = InterceptedService<Channel, Token>;

/// One connection to the cluster (or to one endpoint).
#[derive(Clone)]
pub struct Conn {
    channel: Channel,
    token: Token,
    pub timeout: Duration,
}

macro_rules! clients {
    ($($name:ident: $client:ident),* $(,)?) => {
        impl Conn {
            $(pub fn $name(&self) -> $client<Svc> {
                $client::with_interceptor(self.channel.clone(), self.token.clone())
                    .max_decoding_message_size(usize::MAX)
                    .max_encoding_message_size(usize::MAX)
            })*
        }
    };
}

clients! {
    kv: KvClient, watch: WatchClient, lease: LeaseClient, cluster: ClusterClient,
    maintenance: MaintenanceClient, auth: AuthClient, lock: LockClient, election: ElectionClient,
}

impl Conn {
    /// Runs a short call within `--command-timeout`.
    pub async fn call<T, F>(&self, f: F) -> Result<T>
    where
        F: Future<Output = std::result::Result<tonic::Response<T>, Status>>,
    {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(s.into()),
            Err(_) => Err(CtlError::error("context deadline exceeded")),
        }
    }
}

fn endpoint(g: &Global, ep: &str) -> Result<Endpoint> {
    // TLS is ours (see `tls`), so the channel itself always speaks plain HTTP/2 over the stream.
    let host = ep.split_once("://").map_or(ep, |(_, h)| h);
    let e = Endpoint::from_shared(format!("http://{host}"))
        .map_err(|e| CtlError::new(EXIT_BAD_CONNECTION, e.to_string()))?;
    // gRPC-Go (etcdctl's) never pings more often than every 10 s, whatever --keepalive-time says,
    // nor on a connection without a stream: etcd sends away connections that ping more often than
    // --grpc-keepalive-min-time (5 s), or than every 2 hours with no stream open.
    Ok(e.connect_timeout(g.dial_timeout)
        .http2_keep_alive_interval(g.keepalive_time.max(std::time::Duration::from_secs(10)))
        .keep_alive_timeout(g.keepalive_timeout)
        .keep_alive_while_idle(false))
}

/// Dials one endpoint: TLS when the endpoint is `https://`, when TLS material is given, or when
/// `--insecure-transport=false`; plain TCP otherwise.
async fn dial(g: &Global, ep: &str) -> Result<Channel> {
    let e = endpoint(g, ep)?;
    let wants_tls = ep.starts_with("https://")
        || !g.cacert.is_empty()
        || !g.cert.is_empty()
        || !g.key.is_empty()
        || !g.insecure_transport;
    if !wants_tls {
        return e.connect().await.map_err(|err| CtlError::new(EXIT_BAD_CONNECTION, err.to_string()));
    }
    let config = std::sync::Arc::new(crate::tls::client_config(g)?);
    let connector = tower::service_fn(move |uri: tonic::codegen::http::Uri| {
        let config = config.clone();
        async move {
            let host = uri.host().unwrap_or("localhost").trim_matches(['[', ']']).to_string();
            let port = uri.port_u16().unwrap_or(2379);
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            let name = rustls::pki_types::ServerName::try_from(host)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    e.connect_with_connector(connector).await.map_err(|err| CtlError::new(EXIT_BAD_CONNECTION, err.to_string()))
}

/// Dials the first reachable endpoint of `endpoints` (all tried within `--dial-timeout`), then
/// logs in if `--user` is set.
pub async fn connect_to(g: &Global, endpoints: &[String]) -> Result<Conn> {
    let deadline = tokio::time::Instant::now() + g.dial_timeout;
    let mut channel = None;
    for ep in endpoints {
        match tokio::time::timeout_at(deadline, dial(g, ep)).await {
            Ok(Ok(ch)) => {
                channel = Some(ch);
                break;
            }
            // Bad TLS material is the user's error, not the network's.
            Ok(Err(e)) if e.code == crate::error::EXIT_BAD_ARGS => return Err(e),
            _ => {}
        }
    }
    let Some(channel) = channel else {
        // etcdctl's client does not block on dialing: the first call times out (exit 1), or
        // the login does (exit 2).
        let code = if g.user.is_empty() { crate::error::EXIT_ERROR } else { EXIT_BAD_CONNECTION };
        return Err(CtlError::new(code, "context deadline exceeded"));
    };
    let mut conn = Conn { channel, token: Token::default(), timeout: g.command_timeout };
    if !g.user.is_empty() {
        let (name, password) = credentials(g)?;
        let r = conn
            .call(conn.auth().authenticate(AuthenticateRequest { name, password }))
            .await
            .map_err(|e| CtlError::new(EXIT_BAD_CONNECTION, e.msg))?;
        let token = MetadataValue::try_from(r.token.as_str())
            .map_err(|_| CtlError::new(EXIT_BAD_CONNECTION, "invalid auth token"))?;
        conn.token = Token(Some(token));
    }
    Ok(conn)
}

/// Connects to the cluster through `--endpoints`.
pub async fn connect(g: &Global) -> Result<Conn> {
    connect_to(g, &g.endpoints).await
}

/// `--user name[:password]` and `--password`, prompting when no password is given.
fn credentials(g: &Global) -> Result<(String, String)> {
    if !g.password.is_empty() {
        if g.user.contains(':') {
            return Err(CtlError::bad_args("--user flag must not contain password if --password flag is set"));
        }
        return Ok((g.user.clone(), g.password.clone()));
    }
    match g.user.split_once(':') {
        Some((u, p)) => Ok((u.to_string(), p.to_string())),
        None => {
            let p = crate::prompt::password("Password: ")?;
            Ok((g.user.clone(), p))
        }
    }
}

/// The client URLs of every member (for `--cluster`).
pub async fn cluster_endpoints(g: &Global) -> Result<Vec<String>> {
    let conn = connect(g).await?;
    let r = conn
        .call(conn.cluster().member_list(MemberListRequest::default()))
        .await
        .map_err(|e| CtlError::error(format!("failed to fetch endpoints from etcd cluster member list: {}", e.msg)))?;
    let mut eps = Vec::new();
    for m in r.members {
        eps.extend(m.client_ur_ls);
    }
    Ok(eps)
}
