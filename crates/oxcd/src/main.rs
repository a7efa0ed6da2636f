//! The `oxcd` binary: etcd's flags and `ETCD_*` environment variables (or an etcd-format YAML
//! `--config-file`), logging, signals and graceful shutdown around one member.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use oxcd_server::ServerConfig;
use oxcd_server::config::TransportSecurity;

/// A distributed, reliable key-value store that speaks the etcd v3 API.
#[derive(Debug, Parser)]
#[command(name = "oxcd", version, about, long_about = None, args_override_self = true)]
struct Flags {
    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    name: String,
    /// Path to the data directory [default: ${name}.oxcd].
    #[arg(long, env = "ETCD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// List of URLs to listen on for client traffic.
    #[arg(long, env = "ETCD_LISTEN_CLIENT_URLS", default_value = "http://localhost:2379")]
    listen_client_urls: String,
    /// List of this member's client URLs to advertise to the public.
    #[arg(long, env = "ETCD_ADVERTISE_CLIENT_URLS", default_value = "http://localhost:2379")]
    advertise_client_urls: String,
    /// List of URLs to listen on for peer traffic.
    #[arg(long, env = "ETCD_LISTEN_PEER_URLS", default_value = "http://localhost:2380")]
    listen_peer_urls: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(long, env = "ETCD_INITIAL_ADVERTISE_PEER_URLS", default_value = "http://localhost:2380")]
    initial_advertise_peer_urls: String,
    /// Initial cluster configuration for bootstrapping: name=url,... [default: ${name}=${initial-advertise-peer-urls}].
    #[arg(long, env = "ETCD_INITIAL_CLUSTER")]
    initial_cluster: Option<String>,
    /// Initial cluster state ('new' or 'existing').
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_STATE", default_value = "new")]
    initial_cluster_state: String,
    /// Initial cluster token for the etcd cluster during bootstrap.
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_TOKEN", default_value = "etcd-cluster")]
    initial_cluster_token: String,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL", default_value_t = 100)]
    heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, env = "ETCD_ELECTION_TIMEOUT", default_value_t = 1000)]
    election_timeout: u64,
    /// Number of committed transactions to trigger a snapshot to disk.
    #[arg(long, env = "ETCD_SNAPSHOT_COUNT", default_value_t = 10_000)]
    snapshot_count: u64,
    /// Number of entries kept in memory after a snapshot for slow followers.
    #[arg(long, env = "ETCD_SNAPSHOT_CATCHUP_ENTRIES", default_value_t = 5_000)]
    snapshot_catchup_entries: u64,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = 1_572_864)]
    max_request_bytes: usize,
    /// Maximum number of operations permitted in a transaction.
    #[arg(long, env = "ETCD_MAX_TXN_OPS", default_value_t = 128)]
    max_txn_ops: usize,
    /// Raise alarms when backend size exceeds the given quota (0 defaults to low space quota).
    #[arg(long, env = "ETCD_QUOTA_BACKEND_BYTES", default_value_t = 0)]
    quota_backend_bytes: u64,
    /// Maximum time (in milliseconds) before committing the backend transaction.
    #[arg(long, env = "ETCD_BACKEND_BATCH_INTERVAL", default_value_t = 1000)]
    backend_batch_interval: u64,
    /// Maximum operations before committing the backend transaction.
    #[arg(long, env = "ETCD_BACKEND_BATCH_LIMIT", default_value_t = 10_000)]
    backend_batch_limit: usize,
    /// Log level: debug, info, warn, error, panic or fatal.
    #[arg(long, env = "ETCD_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Duration of periodic watch progress notifications (etcd 3.4/3.5 name: --experimental-watch-progress-notify-interval).
    #[arg(
        long,
        alias = "experimental-watch-progress-notify-interval",
        env = "ETCD_WATCH_PROGRESS_NOTIFY_INTERVAL",
        default_value = "10m0s",
        value_parser = oxcd_api::duration::parse
    )]
    watch_progress_notify_interval: std::time::Duration,
    /// Enable GRPC gateway.
    #[arg(
        long,
        env = "ETCD_ENABLE_GRPC_GATEWAY",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    enable_grpc_gateway: bool,
    /// List of URLs to listen on for HTTP traffic (gateway, /health, /version) only; the client URLs then serve gRPC alone.
    #[arg(long, env = "ETCD_LISTEN_CLIENT_HTTP_URLS", default_value = "")]
    listen_client_http_urls: String,
    /// Path to the client server TLS cert file.
    #[arg(long, env = "ETCD_CERT_FILE", default_value = "")]
    cert_file: String,
    /// Path to the client server TLS key file.
    #[arg(long, env = "ETCD_KEY_FILE", default_value = "")]
    key_file: String,
    /// Path to an explicit client TLS cert file otherwise cert file will be used when client auth is required.
    #[arg(long, env = "ETCD_CLIENT_CERT_FILE", default_value = "")]
    client_cert_file: String,
    /// Path to an explicit client TLS key file otherwise key file will be used when client auth is required.
    #[arg(long, env = "ETCD_CLIENT_KEY_FILE", default_value = "")]
    client_key_file: String,
    /// Enable client cert authentication.
    #[arg(long, env = "ETCD_CLIENT_CERT_AUTH", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    client_cert_auth: bool,
    /// Path to the client certificate revocation list file.
    #[arg(long, env = "ETCD_CLIENT_CRL_FILE", default_value = "")]
    client_crl_file: String,
    /// Comma-separated list of allowed SAN hostnames for client cert authentication.
    #[arg(long, env = "ETCD_CLIENT_CERT_ALLOWED_HOSTNAME", value_delimiter = ',')]
    client_cert_allowed_hostname: Vec<String>,
    /// Path to the client server TLS trusted CA cert file.
    #[arg(long, env = "ETCD_TRUSTED_CA_FILE", default_value = "")]
    trusted_ca_file: String,
    /// Client TLS using generated certificates.
    #[arg(long, env = "ETCD_AUTO_TLS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    auto_tls: bool,
    /// Path to the peer server TLS cert file.
    #[arg(long, env = "ETCD_PEER_CERT_FILE", default_value = "")]
    peer_cert_file: String,
    /// Path to the peer server TLS key file.
    #[arg(long, env = "ETCD_PEER_KEY_FILE", default_value = "")]
    peer_key_file: String,
    /// Path to an explicit peer client TLS cert file otherwise peer cert file will be used when client auth is required.
    #[arg(long, env = "ETCD_PEER_CLIENT_CERT_FILE", default_value = "")]
    peer_client_cert_file: String,
    /// Path to an explicit peer client TLS key file otherwise peer key file will be used when client auth is required.
    #[arg(long, env = "ETCD_PEER_CLIENT_KEY_FILE", default_value = "")]
    peer_client_key_file: String,
    /// Enable peer client cert authentication.
    #[arg(long, env = "ETCD_PEER_CLIENT_CERT_AUTH", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    peer_client_cert_auth: bool,
    /// Path to the peer server TLS trusted CA file.
    #[arg(long, env = "ETCD_PEER_TRUSTED_CA_FILE", default_value = "")]
    peer_trusted_ca_file: String,
    /// Peer TLS using generated certificates.
    #[arg(long, env = "ETCD_PEER_AUTO_TLS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    peer_auto_tls: bool,
    /// Path to the peer certificate revocation list file.
    #[arg(long, env = "ETCD_PEER_CRL_FILE", default_value = "")]
    peer_crl_file: String,
    /// Comma-separated list of allowed CNs for inter-peer TLS authentication.
    #[arg(long, env = "ETCD_PEER_CERT_ALLOWED_CN", value_delimiter = ',')]
    peer_cert_allowed_cn: Vec<String>,
    /// Comma-separated list of allowed SAN hostnames for inter-peer TLS authentication.
    #[arg(long, env = "ETCD_PEER_CERT_ALLOWED_HOSTNAME", value_delimiter = ',')]
    peer_cert_allowed_hostname: Vec<String>,
    /// The validity period of the client and peer certificates, unit is year.
    #[arg(long, env = "ETCD_SELF_SIGNED_CERT_VALIDITY", default_value_t = 1)]
    self_signed_cert_validity: u32,
    /// Comma-separated list of supported TLS cipher suites between client/server and peers (empty will be auto-populated).
    #[arg(long, env = "ETCD_CIPHER_SUITES", value_delimiter = ',')]
    cipher_suites: Vec<String>,
    /// Minimum TLS version supported by etcd. Possible values: TLS1.2, TLS1.3.
    #[arg(long, env = "ETCD_TLS_MIN_VERSION", default_value = "TLS1.2")]
    tls_min_version: String,
    /// Maximum TLS version supported by etcd. Possible values: TLS1.2, TLS1.3 (empty: the newest).
    #[arg(long, env = "ETCD_TLS_MAX_VERSION", default_value = "")]
    tls_max_version: String,
    /// Specify auth token type and its options ('simple' or 'jwt,pub-key=...,priv-key=...,sign-method=...').
    #[arg(long, env = "ETCD_AUTH_TOKEN", default_value = "simple")]
    auth_token: String,
    /// Time (in seconds) of the auth-token-ttl.
    #[arg(long, env = "ETCD_AUTH_TOKEN_TTL", default_value_t = 300)]
    auth_token_ttl: u64,
    /// Specify bcrypt algorithm cost factor for auth password hashing.
    #[arg(long, env = "ETCD_BCRYPT_COST", default_value_t = 10)]
    bcrypt_cost: u32,
    /// Path to an etcd-format YAML configuration file; when given, other flags and environment
    /// variables are ignored (as etcd does).
    #[arg(long, env = "ETCD_CONFIG_FILE")]
    config_file: Option<PathBuf>,
}

impl Flags {
    fn into_config(self) -> anyhow::Result<ServerConfig> {
        if let Some(path) = &self.config_file {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            return serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()));
        }
        Ok(ServerConfig {
            name: self.name,
            data_dir: self.data_dir,
            listen_client_urls: self.listen_client_urls,
            advertise_client_urls: self.advertise_client_urls,
            listen_peer_urls: self.listen_peer_urls,
            initial_advertise_peer_urls: self.initial_advertise_peer_urls,
            initial_cluster: self.initial_cluster,
            initial_cluster_state: self.initial_cluster_state,
            initial_cluster_token: self.initial_cluster_token,
            heartbeat_interval: self.heartbeat_interval,
            election_timeout: self.election_timeout,
            snapshot_count: self.snapshot_count,
            snapshot_catchup_entries: self.snapshot_catchup_entries,
            max_request_bytes: self.max_request_bytes,
            max_txn_ops: self.max_txn_ops,
            quota_backend_bytes: self.quota_backend_bytes,
            backend_batch_interval: self.backend_batch_interval,
            backend_batch_limit: self.backend_batch_limit,
            log_level: self.log_level,
            watch_progress_notify_interval: self.watch_progress_notify_interval,
            enable_grpc_gateway: self.enable_grpc_gateway,
            listen_client_http_urls: self.listen_client_http_urls,
            client_transport_security: TransportSecurity {
                cert_file: self.cert_file,
                key_file: self.key_file,
                client_cert_file: self.client_cert_file,
                client_key_file: self.client_key_file,
                client_cert_auth: self.client_cert_auth,
                trusted_ca_file: self.trusted_ca_file,
                auto_tls: self.auto_tls,
                crl_file: self.client_crl_file,
                allowed_cn: Vec::new(),
                allowed_hostname: self.client_cert_allowed_hostname,
            },
            peer_transport_security: TransportSecurity {
                cert_file: self.peer_cert_file,
                key_file: self.peer_key_file,
                client_cert_file: self.peer_client_cert_file,
                client_key_file: self.peer_client_key_file,
                client_cert_auth: self.peer_client_cert_auth,
                trusted_ca_file: self.peer_trusted_ca_file,
                auto_tls: self.peer_auto_tls,
                crl_file: self.peer_crl_file,
                allowed_cn: self.peer_cert_allowed_cn,
                allowed_hostname: self.peer_cert_allowed_hostname,
            },
            cipher_suites: self.cipher_suites,
            tls_min_version: self.tls_min_version,
            tls_max_version: self.tls_max_version,
            self_signed_cert_validity: self.self_signed_cert_validity,
            auth_token: self.auth_token,
            auth_token_ttl: self.auth_token_ttl,
            bcrypt_cost: self.bcrypt_cost,
        })
    }
}

/// Go's flag package (and so etcd) accepts `-name value` as well as `--name value`.
fn normalize_args() -> Vec<String> {
    std::env::args()
        .enumerate()
        .map(
            |(i, a)| {
                if i > 0 && a.starts_with('-') && !a.starts_with("--") && a.len() > 2 { format!("-{a}") } else { a }
            },
        )
        .collect()
}

fn init_logging(level: &str) {
    let level = match level {
        "debug" => "debug",
        "warn" => "warn",
        "error" | "panic" | "fatal" => "error",
        _ => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("OXCD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},raft={level}")));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = Flags::parse_from(normalize_args());
    let cfg = flags.into_config()?;
    init_logging(&cfg.log_level);
    // Failpoints named in FAILPOINTS (only in a build with the `failpoints` feature).
    let _failpoints = oxcd_fail::setup();
    let member = match oxcd_server::start(cfg).await {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "failed to start");
            std::process::exit(1);
        }
    };
    let server = member.server.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("signal handler");
        let mut int = signal(SignalKind::interrupt()).expect("signal handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("received signal; shutting down");
        server.stop();
    });
    member.wait().await;
    Ok(())
}
