//! The member's configuration, with etcd's flag names and defaults. The `oxcd` binary fills it from
//! flags, `ETCD_*` environment variables or an etcd-format YAML file (whose keys are the flag names).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// etcd's default backend quota when `--quota-backend-bytes` is 0: 2 GiB.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// `--log-rotation-config-json`'s default, etcd's.
pub const DEFAULT_LOG_ROTATION: &str =
    r#"{"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}"#;
/// What gRPC accepts beyond `--max-request-bytes` before refusing to decode (etcd: 512 KiB).
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// Errors of configuration validation.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// Election timeout below five heartbeats.
    #[error("--election-timeout[{election}ms] should be at least as 5 times as --heartbeat-interval[{heartbeat}ms]")]
    ElectionTooShort { election: u64, heartbeat: u64 },
    /// Election timeout above 50 s.
    #[error("--election-timeout[{0}ms] is too long, and should be set less than 50000ms")]
    ElectionTooLong(u64),
    /// Heartbeat of zero.
    #[error("--heartbeat-interval must be positive")]
    ZeroHeartbeat,
    /// A URL that is not `http://host:port`.
    #[error("invalid url {0:?}: {1}")]
    BadUrl(String, String),
    /// `--initial-cluster` entry that is not `name=url`.
    #[error("invalid --initial-cluster entry {0:?}")]
    BadInitialCluster(String),
    /// This member's name is not in `--initial-cluster`.
    #[error("couldn't find local name {0:?} in the initial cluster configuration")]
    NameNotInCluster(String),
    /// This member's advertised peer URLs differ from its `--initial-cluster` entry.
    #[error(
        "--initial-cluster has {name}={cluster_urls} but missing from --initial-advertise-peer-urls={advertised} \
         (\"{name}\" member's advertised peer URLs do not match --initial-cluster)"
    )]
    PeerUrlMismatch { name: String, cluster_urls: String, advertised: String },
    /// `--initial-cluster-state` other than new or existing.
    #[error("unexpected value {0:?} for --initial-cluster-state (expected \"new\" or \"existing\")")]
    BadClusterState(String),
    /// `--max-txn-ops` or `--max-request-bytes` of zero.
    #[error("{0} must be positive")]
    NotPositive(&'static str),
    /// An `https://` listen URL without a certificate and key (or auto TLS).
    #[error(
        "TLS key/cert (--{flag_prefix}cert-file, --{flag_prefix}key-file) must be provided for {port} url {url} with HTTPS scheme"
    )]
    TlsMissing { flag_prefix: &'static str, port: &'static str, url: String },
    /// A TLS setting that cannot be honoured (etcd's wording where etcd has one).
    #[error("{0}")]
    Tls(String),
    /// Any other setting etcd refuses, in etcd's words.
    #[error("{0}")]
    Invalid(String),
}

/// What `--auto-compaction-mode` and `--auto-compaction-retention` ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Keep this much history (by time).
    Periodic(Duration),
    /// Keep this many revisions.
    Revision(i64),
}

/// etcd 3.6's feature gates that oxcd reads; the others name what oxcd always does.
const FEATURE_GATES: &[&str] = &[
    "InitialCorruptCheck",
    "CompactHashCheck",
    "LeaseCheckpoint",
    "LeaseCheckpointPersist",
    "StopGRPCServiceOnDefrag",
    "TxnModeWriteWithSharedBuffer",
    "SetMemberLocalAddr",
    "AllMembersAttach",
];

/// The configuration of one member. Field doc comments give the etcd flag, default and bounds.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct ServerConfig {
    /// `--name`: human-readable member name. Default `default`.
    pub name: String,
    /// `--data-dir`: where the WAL and backend live. Default `${name}.oxcd`.
    pub data_dir: Option<PathBuf>,
    /// `--listen-client-urls`: comma-separated URLs to serve clients on. Default `http://localhost:2379`.
    pub listen_client_urls: String,
    /// `--advertise-client-urls`: client URLs published to the cluster. Default `http://localhost:2379`.
    pub advertise_client_urls: String,
    /// `--listen-peer-urls`: URLs to serve peers on. Default `http://localhost:2380`.
    pub listen_peer_urls: String,
    /// `--initial-advertise-peer-urls`: this member's peer URLs. Default `http://localhost:2380`.
    pub initial_advertise_peer_urls: String,
    /// `--initial-cluster`: `name=url,...` of every first member. Default `${name}=${initial-advertise-peer-urls}`.
    pub initial_cluster: Option<String>,
    /// `--initial-cluster-state`: `new` or `existing`. Default `new`.
    pub initial_cluster_state: String,
    /// `--initial-cluster-token`: mixed into member and cluster ids. Default `etcd-cluster`.
    pub initial_cluster_token: String,
    /// `--heartbeat-interval` in ms: one Raft tick. Default 100.
    pub heartbeat_interval: u64,
    /// `--election-timeout` in ms: at least 5 heartbeats, at most 50000. Default 1000.
    pub election_timeout: u64,
    /// `--snapshot-count`: applied entries between snapshots (WAL compaction). Default 10000 (etcd 3.6).
    pub snapshot_count: u64,
    /// `--snapshot-catchup-entries`: entries kept in memory after a snapshot for slow followers. Default 5000.
    #[serde(alias = "experimental-snapshot-catchup-entries")]
    pub snapshot_catchup_entries: u64,
    /// `--max-request-bytes`: largest request accepted. Default 1572864 (1.5 MiB).
    pub max_request_bytes: usize,
    /// `--max-txn-ops`: most compares or ops per txn branch. Default 128.
    pub max_txn_ops: usize,
    /// `--quota-backend-bytes`: backend size at which writes stop (NOSPACE). 0 means 2 GiB.
    pub quota_backend_bytes: u64,
    /// `--backend-batch-interval`: longest time between durable backend commits; 0 means the
    /// default, 1s (etcd: 100ms; see docs/design.md).
    #[serde(deserialize_with = "de_duration")]
    pub backend_batch_interval: Duration,
    /// `--backend-batch-limit`: most operations between durable backend commits; 0 or less means
    /// the default, 10000.
    pub backend_batch_limit: i64,
    /// `--log-level`: debug, info, warn, error, panic or fatal. Default info.
    pub log_level: String,
    /// `--watch-progress-notify-interval` (etcd 3.4/3.5: `--experimental-...`): how often watchers
    /// that asked for progress notifications get one. Default 10m; at least 100ms (smaller values
    /// are raised, as etcd does).
    #[serde(alias = "experimental-watch-progress-notify-interval", deserialize_with = "de_duration")]
    pub watch_progress_notify_interval: Duration,
    /// `--enable-grpc-gateway`: serve the JSON gateway (`/v3/...`) on the client port. Default true,
    /// in a config file too (etcd's config file defaults it to false, which has cost Patroni and
    /// APISIX users their gateway; `enable-grpc-gateway: false` still turns it off).
    pub enable_grpc_gateway: bool,
    /// `--enable-console` (oxcd's): the web console at `/ui` on the client port. Default true.
    pub enable_console: bool,
    /// `--listen-client-http-urls` (etcd 3.5): URLs serving the HTTP endpoints (gateway, `/health`,
    /// `/version`) but not gRPC, so that `--listen-client-urls` serves gRPC alone. Default none.
    pub listen_client_http_urls: String,
    /// The client port's TLS (`--cert-file`, `--key-file`, `--trusted-ca-file`, `--client-cert-auth`,
    /// `--auto-tls`, `--client-crl-file`; YAML: `client-transport-security`).
    pub client_transport_security: TransportSecurity,
    /// The peer port's TLS (`--peer-cert-file`, ..., `--peer-cert-allowed-cn`,
    /// `--peer-cert-allowed-hostname`, `--peer-crl-file`; YAML: `peer-transport-security`).
    pub peer_transport_security: TransportSecurity,
    /// `--cipher-suites`: TLS 1.2 cipher suites allowed, by Go's names (TLS 1.3's are always on, as
    /// in Go). Default: rustls' safe defaults.
    #[serde(deserialize_with = "de_list")]
    pub cipher_suites: Vec<String>,
    /// `--tls-min-version`: `TLS1.2` (default) or `TLS1.3`.
    pub tls_min_version: String,
    /// `--tls-max-version`: `TLS1.2` or `TLS1.3`; empty: the newest.
    pub tls_max_version: String,
    /// `--self-signed-cert-validity`: years an auto TLS certificate is valid. Default 1.
    pub self_signed_cert_validity: u32,
    /// `--auth-token`: `simple` (default) or `jwt,pub-key=...,priv-key=...,sign-method=...[,ttl=...]`.
    pub auth_token: String,
    /// `--auth-token-ttl`: seconds a simple token lives after its last use. Default 300.
    pub auth_token_ttl: u64,
    /// `--bcrypt-cost`: the cost of password hashes (4 to 31). Default 10.
    pub bcrypt_cost: u32,
    /// `--wal-dir`: a dedicated WAL directory (instead of `member/wal` in the data directory).
    pub wal_dir: Option<PathBuf>,
    /// `--listen-metrics-urls`: plain-HTTP URLs serving `/health`, `/livez`, `/readyz`, `/version`
    /// (and `/metrics`) only. Default none.
    pub listen_metrics_urls: String,
    /// `--max-concurrent-streams`: HTTP/2 streams a client connection may open at once. Default
    /// unlimited (2^32-1).
    pub max_concurrent_streams: u32,
    /// `--grpc-keepalive-min-time`: the shortest wait between a client's pings; a client that
    /// pings sooner three times is sent GOAWAY `too_many_pings` (0: gRPC's default, 5m). Default 5s.
    #[serde(deserialize_with = "de_duration")]
    pub grpc_keepalive_min_time: Duration,
    /// `--grpc-keepalive-interval`: how often the server pings an idle client connection; 0
    /// disables. Default 2h.
    #[serde(deserialize_with = "de_duration")]
    pub grpc_keepalive_interval: Duration,
    /// `--grpc-keepalive-timeout`: how long a ping may go unanswered before the connection is
    /// closed; 0 disables. Default 20s.
    #[serde(deserialize_with = "de_duration")]
    pub grpc_keepalive_timeout: Duration,
    /// `--socket-reuse-port`: SO_REUSEPORT on the client and peer listeners. Default false.
    pub socket_reuse_port: bool,
    /// `--strict-reconfig-check`: refuse a membership change that would leave the cluster without a
    /// started (or active) quorum. Default true.
    pub strict_reconfig_check: bool,
    /// `--pre-vote`: Raft's pre-vote phase. Default true.
    pub pre_vote: bool,
    /// `--auto-compaction-mode`: `periodic` (retention is a duration, hours if bare) or `revision`
    /// (retention is a revision count). Default periodic.
    pub auto_compaction_mode: String,
    /// `--auto-compaction-retention`: what to keep; 0 turns auto compaction off. Default 0.
    #[serde(deserialize_with = "de_text")]
    pub auto_compaction_retention: String,
    /// `--experimental-peer-skip-client-san-verification` (3.6: `--peer-skip-client-san-verification`):
    /// do not check that a connecting peer's certificate names its address. Default false.
    #[serde(alias = "experimental-peer-skip-client-san-verification")]
    pub peer_skip_client_san_verification: bool,
    /// `--logger`: `zap` (the only one etcd 3.5 has). Default zap.
    pub logger: String,
    /// `--log-outputs`: `default`, `stderr`, `stdout` or file paths (`default` is stderr). Default default.
    #[serde(deserialize_with = "de_list")]
    pub log_outputs: Vec<String>,
    /// `--enable-log-rotation`: rotate the one file of `--log-outputs` as etcd does. Default false.
    pub enable_log_rotation: bool,
    /// `--log-rotation-config-json`: lumberjack's settings (`maxsize` MiB, `maxage` days,
    /// `maxbackups`, `localtime`, `compress`).
    pub log_rotation_config_json: String,
    /// `--experimental-enable-distributed-tracing` (3.6: `--enable-distributed-tracing`): export
    /// a span per gRPC call over OTLP. Default false.
    #[serde(alias = "experimental-enable-distributed-tracing")]
    pub enable_distributed_tracing: bool,
    /// `--experimental-distributed-tracing-address`: the OTLP/gRPC collector. Default localhost:4317.
    #[serde(alias = "experimental-distributed-tracing-address")]
    pub distributed_tracing_address: String,
    /// `--experimental-distributed-tracing-service-name`: the spans' `service.name`. Default etcd.
    #[serde(alias = "experimental-distributed-tracing-service-name")]
    pub distributed_tracing_service_name: String,
    /// `--experimental-distributed-tracing-instance-id`: the spans' `service.instance.id` (none
    /// when empty). Default empty.
    #[serde(alias = "experimental-distributed-tracing-instance-id")]
    pub distributed_tracing_instance_id: String,
    /// `--experimental-distributed-tracing-sampling-rate`: traces started per million calls that
    /// carry no sampled parent, 0 to 1000000. Default 0.
    #[serde(alias = "experimental-distributed-tracing-sampling-rate")]
    pub distributed_tracing_sampling_rate: i64,
    /// `--metrics`: `basic`, or `extensive` to add the gRPC handling-time histogram
    /// (`grpc_server_handling_seconds`). Default basic.
    pub metrics: String,
    /// `--log-format` (3.6): `json` (etcd's zap lines) or `console`. Default json.
    pub log_format: String,
    /// `--experimental-compaction-batch-limit` (3.6: `--compaction-batch-limit`): revisions deleted
    /// per backend commit by a compaction. Default 1000.
    #[serde(alias = "experimental-compaction-batch-limit")]
    pub compaction_batch_limit: i64,
    /// `--experimental-compaction-sleep-interval` (3.6: `--compaction-sleep-interval`): the pause
    /// between two compaction batches. Default 10ms.
    #[serde(alias = "experimental-compaction-sleep-interval", deserialize_with = "de_duration")]
    pub compaction_sleep_interval: Duration,
    /// `--experimental-warning-apply-duration` (3.6: `--warning-apply-duration`): an entry applied
    /// slower than this logs "apply request took too long". Default 100ms.
    #[serde(alias = "experimental-warning-apply-duration", deserialize_with = "de_duration")]
    pub warning_apply_duration: Duration,
    /// `--experimental-warning-unary-request-duration` (3.6: `--warning-unary-request-duration`):
    /// a unary request answered slower than this logs "request stats". Default 300ms.
    #[serde(alias = "experimental-warning-unary-request-duration", deserialize_with = "de_duration")]
    pub warning_unary_request_duration: Duration,
    /// `--experimental-memory-mlock` (3.6: `--memory-mlock`): lock the process's memory in RAM.
    #[serde(alias = "experimental-memory-mlock")]
    pub memory_mlock: bool,
    /// `--experimental-bootstrap-defrag-threshold-megabytes`: at start, defragment the backend if
    /// that frees at least this many MB. 0 (default) never.
    #[serde(alias = "experimental-bootstrap-defrag-threshold-megabytes")]
    pub bootstrap_defrag_threshold_megabytes: u64,
    /// `--experimental-max-learners` (3.6: `--max-learners`): learners the cluster may hold. Default 1.
    #[serde(alias = "experimental-max-learners")]
    pub max_learners: i64,
    /// `--feature-gates` (3.6): `Name=bool,...`; `InitialCorruptCheck` and `CompactHashCheck` are
    /// read, the others are what oxcd always does.
    pub feature_gates: String,
    /// `--cors`: origins whose browsers may call the HTTP endpoints (`*`: all). Default `*`.
    #[serde(deserialize_with = "de_list")]
    pub cors: Vec<String>,
    /// `--host-whitelist`: `Host` headers plain-HTTP requests may carry (`*`: all; DNS rebinding
    /// protection, CVE-2018-5702). Default `*`.
    #[serde(deserialize_with = "de_list")]
    pub host_whitelist: Vec<String>,
    /// `--experimental-initial-corrupt-check`: before serving, compare this member's HashKV with
    /// its peers' and refuse to start if they differ. Default false.
    pub experimental_initial_corrupt_check: bool,
    /// `--experimental-corrupt-check-time` (3.6: `--corrupt-check-time`): how often the leader
    /// compares every member's HashKV; 0 (default) never.
    #[serde(alias = "experimental-corrupt-check-time", deserialize_with = "de_duration")]
    pub corrupt_check_time: Duration,
    /// `--experimental-compact-hash-check-enabled` (3.6: feature gate `CompactHashCheck`): the
    /// leader compares the hashes members computed at their compactions. Default false.
    pub experimental_compact_hash_check_enabled: bool,
    /// `--experimental-compact-hash-check-time` (3.6: `--compact-hash-check-time`). Default 1m.
    #[serde(alias = "experimental-compact-hash-check-time", deserialize_with = "de_duration")]
    pub compact_hash_check_time: Duration,
    /// `--unsafe-no-fsync`: never fsync the WAL or the backend (data loss on a crash). Default false.
    pub unsafe_no_fsync: bool,
    /// `--force-new-cluster`: start as the only member of a new one-member cluster, keeping the data.
    pub force_new_cluster: bool,
}

/// One port's TLS settings (etcd's `TLSInfo` as its flags and YAML give it).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", default)]
pub struct TransportSecurity {
    /// The certificate this member serves (PEM, with its chain).
    pub cert_file: String,
    /// The certificate's private key (PEM).
    pub key_file: String,
    /// The certificate this member presents as a client to other members, if not `cert_file`.
    pub client_cert_file: String,
    pub client_key_file: String,
    /// Whether connecting clients must present a certificate signed by `trusted_ca_file`.
    pub client_cert_auth: bool,
    /// The CAs that sign clients' certificates (PEM bundle). Given alone it also makes a client
    /// certificate required, as in etcd.
    pub trusted_ca_file: String,
    /// Serve a self-signed certificate generated in the data directory.
    pub auto_tls: bool,
    /// A certificate revocation list (PEM or DER) checked at each handshake.
    pub crl_file: String,
    /// Client certificates accepted only with one of these common names (peer port).
    #[serde(deserialize_with = "de_list")]
    pub allowed_cn: Vec<String>,
    /// Client certificates accepted only if valid for one of these host names (peer port).
    #[serde(deserialize_with = "de_list")]
    pub allowed_hostname: Vec<String>,
}

impl TransportSecurity {
    /// Whether a certificate and key are configured (etcd's `!TLSInfo.Empty()`).
    pub fn has_cert(&self) -> bool {
        !self.cert_file.is_empty() && !self.key_file.is_empty()
    }
}

/// A YAML value that is a list or one string (etcd 3.5's `allowed-cn` was a string, then a list).
fn de_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<Raw>::deserialize(d)? {
        None => Vec::new(),
        Some(Raw::One(s)) => split_urls(&s),
        Some(Raw::Many(v)) => v,
    })
}

/// A YAML value read as text (`auto-compaction-retention: 1` and `"1h"` alike).
fn de_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(i64),
        Float(f64),
        Text(String),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::Int(n) => n.to_string(),
        Raw::Float(f) => f.to_string(),
        Raw::Text(t) => t,
    })
}

/// The smallest progress notify interval (etcd's `minWatchProgressInterval`).
pub const MIN_WATCH_PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// Durations in etcd's YAML: a Go duration string (`10m0s`) or nanoseconds.
fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Nanos(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Nanos(n) => Ok(Duration::from_nanos(n)),
        Raw::Text(t) => oxcd_api::duration::parse(&t).map_err(serde::de::Error::custom),
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            name: "default".into(),
            data_dir: None,
            listen_client_urls: "http://localhost:2379".into(),
            advertise_client_urls: "http://localhost:2379".into(),
            listen_peer_urls: "http://localhost:2380".into(),
            initial_advertise_peer_urls: "http://localhost:2380".into(),
            initial_cluster: None,
            initial_cluster_state: "new".into(),
            initial_cluster_token: "etcd-cluster".into(),
            heartbeat_interval: 100,
            election_timeout: 1000,
            snapshot_count: 10_000,
            snapshot_catchup_entries: 5_000,
            max_request_bytes: 1_572_864,
            max_txn_ops: 128,
            quota_backend_bytes: 0,
            backend_batch_interval: Duration::from_secs(1),
            backend_batch_limit: 10_000,
            log_level: "info".into(),
            watch_progress_notify_interval: Duration::from_secs(600),
            enable_grpc_gateway: true,
            enable_console: true,
            listen_client_http_urls: String::new(),
            client_transport_security: TransportSecurity::default(),
            peer_transport_security: TransportSecurity::default(),
            cipher_suites: Vec::new(),
            tls_min_version: "TLS1.2".into(),
            tls_max_version: String::new(),
            self_signed_cert_validity: 1,
            auth_token: "simple".into(),
            auth_token_ttl: 300,
            bcrypt_cost: 10,
            wal_dir: None,
            listen_metrics_urls: String::new(),
            max_concurrent_streams: u32::MAX,
            grpc_keepalive_min_time: Duration::from_secs(5),
            grpc_keepalive_interval: Duration::from_secs(2 * 60 * 60),
            grpc_keepalive_timeout: Duration::from_secs(20),
            socket_reuse_port: false,
            strict_reconfig_check: true,
            pre_vote: true,
            auto_compaction_mode: "periodic".into(),
            auto_compaction_retention: "0".into(),
            peer_skip_client_san_verification: false,
            logger: "zap".into(),
            log_outputs: vec!["default".into()],
            log_format: "json".into(),
            enable_log_rotation: false,
            enable_distributed_tracing: false,
            distributed_tracing_address: "localhost:4317".into(),
            distributed_tracing_service_name: "etcd".into(),
            distributed_tracing_instance_id: String::new(),
            distributed_tracing_sampling_rate: 0,
            log_rotation_config_json: DEFAULT_LOG_ROTATION.into(),
            metrics: "basic".into(),
            compaction_batch_limit: 1000,
            compaction_sleep_interval: Duration::from_millis(10),
            warning_apply_duration: Duration::from_millis(100),
            warning_unary_request_duration: Duration::from_millis(300),
            memory_mlock: false,
            bootstrap_defrag_threshold_megabytes: 0,
            max_learners: 1,
            feature_gates: String::new(),
            cors: vec!["*".into()],
            host_whitelist: vec!["*".into()],
            experimental_initial_corrupt_check: false,
            corrupt_check_time: Duration::ZERO,
            experimental_compact_hash_check_enabled: false,
            compact_hash_check_time: Duration::from_secs(60),
            unsafe_no_fsync: false,
            force_new_cluster: false,
        }
    }
}

/// One entry of `--initial-cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    pub name: String,
    pub peer_urls: Vec<String>,
}

impl ServerConfig {
    /// The data directory, `${name}.oxcd` unless set.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("{}.oxcd", self.name)))
    }

    /// The election timeout in Raft ticks.
    pub fn election_ticks(&self) -> usize {
        (self.election_timeout / self.heartbeat_interval.max(1)) as usize
    }

    /// One Raft tick.
    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval)
    }

    /// The smallest lease TTL: ceil(1.5 × election timeout) in seconds (etcd's `minLeaseTTL`).
    pub fn min_lease_ttl_secs(&self) -> i64 {
        (3 * self.election_timeout).div_ceil(2000) as i64
    }

    /// The progress notify interval, raised to etcd's minimum.
    pub fn progress_notify_interval(&self) -> Duration {
        self.watch_progress_notify_interval.max(MIN_WATCH_PROGRESS_INTERVAL)
    }

    /// How long a request waits for its result: 5 s + 2 × election timeout (etcd's ReqTimeout).
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(5) + Duration::from_millis(2 * self.election_timeout)
    }

    /// The backend quota in bytes.
    pub fn quota_bytes(&self) -> u64 {
        if self.quota_backend_bytes == 0 { DEFAULT_QUOTA_BYTES } else { self.quota_backend_bytes }
    }

    /// `--initial-cluster`, parsed; members keep the order given, URLs of one name are merged.
    pub fn initial_members(&self) -> Result<Vec<InitialMember>, ConfigError> {
        let spec = match &self.initial_cluster {
            Some(s) if !s.trim().is_empty() => s.clone(),
            _ => format!("{}={}", self.name, self.initial_advertise_peer_urls),
        };
        let mut out: Vec<InitialMember> = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, url) = part.split_once('=').ok_or_else(|| ConfigError::BadInitialCluster(part.into()))?;
            parse_url(url)?;
            match out.iter_mut().find(|m| m.name == name) {
                Some(m) => m.peer_urls.push(url.to_string()),
                None => out.push(InitialMember { name: name.to_string(), peer_urls: vec![url.to_string()] }),
            }
        }
        Ok(out)
    }

    /// `--auto-compaction-*`: `None` when off (etcd's `parseCompactionRetention`: a bare number
    /// is hours in periodic mode and revisions in revision mode, anything else a Go duration).
    pub fn auto_compaction(&self) -> Result<Option<AutoCompaction>, ConfigError> {
        let r = self.auto_compaction_retention.trim();
        let mode = self.auto_compaction_mode.as_str();
        if !matches!(mode, "" | "periodic" | "revision") {
            return Err(ConfigError::Invalid(format!("unknown auto-compaction-mode {mode:?}")));
        }
        let out = match r.parse::<i64>() {
            Ok(n) if n >= 0 => match mode {
                "revision" => AutoCompaction::Revision(n),
                "periodic" => AutoCompaction::Periodic(Duration::from_secs(n as u64 * 3600)),
                _ => return Err(ConfigError::Invalid("--auto-compaction-mode is undefined".into())),
            },
            _ => {
                let d = oxcd_api::duration::parse(r)
                    .map_err(|e| ConfigError::Invalid(format!("error parsing CompactionRetention: {e}")))?;
                match mode {
                    "revision" => AutoCompaction::Revision(d.as_nanos() as i64),
                    _ => AutoCompaction::Periodic(d),
                }
            }
        };
        Ok(match out {
            AutoCompaction::Periodic(d) if d.is_zero() => None,
            AutoCompaction::Revision(0) => None,
            other => Some(other),
        })
    }

    /// `--feature-gates` (etcd 3.6): `InitialCorruptCheck` and `CompactHashCheck` turn on what their
    /// 3.5 flags do; the other known gates name what oxcd always does.
    pub fn apply_feature_gates(&mut self) -> Result<(), ConfigError> {
        for part in self.feature_gates.clone().split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| ConfigError::Invalid(format!("missing bool value for feature-gate key:{part}")))?;
            let on = match value.trim() {
                "true" => true,
                "false" => false,
                v => {
                    return Err(ConfigError::Invalid(format!(
                        "invalid value of {name}={v}, err: strconv.ParseBool: parsing {v:?}: invalid syntax"
                    )));
                }
            };
            match name.trim() {
                "InitialCorruptCheck" => self.experimental_initial_corrupt_check = on,
                "CompactHashCheck" => self.experimental_compact_hash_check_enabled = on,
                n if FEATURE_GATES.contains(&n) => {}
                n => return Err(ConfigError::Invalid(format!("unrecognized feature gate: {n}"))),
            }
        }
        Ok(())
    }

    /// The WAL directory: `--wal-dir`, or `member/wal` in the data directory.
    pub fn layout(&self) -> crate::layout::Layout {
        let mut layout = crate::layout::Layout::new(&self.data_dir());
        if let Some(w) = &self.wal_dir {
            layout.wal = w.clone();
        }
        layout
    }

    /// Checks every setting; returns the first problem, with etcd's wording where etcd has one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.auto_compaction()?;
        if self.max_learners < 1 {
            return Err(ConfigError::Invalid(format!(
                "--experimental-max-learners must be greater than 0 (got {})",
                self.max_learners
            )));
        }
        if self.heartbeat_interval == 0 {
            return Err(ConfigError::ZeroHeartbeat);
        }
        if self.election_timeout < 5 * self.heartbeat_interval {
            return Err(ConfigError::ElectionTooShort {
                election: self.election_timeout,
                heartbeat: self.heartbeat_interval,
            });
        }
        if self.election_timeout > 50_000 {
            return Err(ConfigError::ElectionTooLong(self.election_timeout));
        }
        if self.max_txn_ops == 0 {
            return Err(ConfigError::NotPositive("--max-txn-ops"));
        }
        if self.max_request_bytes == 0 {
            return Err(ConfigError::NotPositive("--max-request-bytes"));
        }
        if self.watch_progress_notify_interval.is_zero() {
            return Err(ConfigError::NotPositive("--watch-progress-notify-interval"));
        }
        match self.initial_cluster_state.as_str() {
            "new" | "existing" => {}
            other => return Err(ConfigError::BadClusterState(other.into())),
        }
        for list in [
            &self.listen_client_urls,
            &self.listen_client_http_urls,
            &self.advertise_client_urls,
            &self.listen_peer_urls,
            &self.initial_advertise_peer_urls,
            &self.listen_metrics_urls,
        ] {
            for u in split_urls(list) {
                parse_url(&u)?;
            }
        }
        if let Some(u) = split_urls(&self.listen_metrics_urls).into_iter().find(|u| is_https(u)) {
            return Err(ConfigError::Invalid(format!(
                "--listen-metrics-urls {u}: oxcd serves metrics URLs over plain http:// only"
            )));
        }
        self.validate_tls()?;
        let members = self.initial_members()?;
        let me = members
            .iter()
            .find(|m| m.name == self.name)
            .ok_or_else(|| ConfigError::NameNotInCluster(self.name.clone()))?;
        let mut advertised = split_urls(&self.initial_advertise_peer_urls);
        let mut in_cluster = me.peer_urls.clone();
        advertised.sort();
        in_cluster.sort();
        if advertised != in_cluster {
            return Err(ConfigError::PeerUrlMismatch {
                name: self.name.clone(),
                cluster_urls: me.peer_urls.join(","),
                advertised: self.initial_advertise_peer_urls.clone(),
            });
        }
        Ok(())
    }
}

impl ServerConfig {
    /// The TLS settings: every `https://` listen URL has a certificate (or auto TLS), versions and
    /// cipher suites make sense together (etcd's checks and wording).
    fn validate_tls(&self) -> Result<(), ConfigError> {
        let client = &self.client_transport_security;
        for u in split_urls(&self.listen_client_urls).into_iter().chain(split_urls(&self.listen_client_http_urls)) {
            if is_https(&u) && !client.has_cert() && !client.auto_tls {
                return Err(ConfigError::TlsMissing { flag_prefix: "", port: "client", url: u });
            }
        }
        let peer = &self.peer_transport_security;
        for u in split_urls(&self.listen_peer_urls) {
            if is_https(&u) && !peer.has_cert() && !peer.auto_tls {
                return Err(ConfigError::TlsMissing { flag_prefix: "peer-", port: "peer", url: u });
            }
        }
        for sec in [client, peer] {
            if sec.cert_file.is_empty() != sec.key_file.is_empty() {
                return Err(ConfigError::Tls(format!(
                    "KeyFile and CertFile must both be present[key: {}, cert: {}]",
                    sec.key_file, sec.cert_file
                )));
            }
            if sec.client_cert_file.is_empty() != sec.client_key_file.is_empty() {
                return Err(ConfigError::Tls(format!(
                    "ClientKeyFile and ClientCertFile must both be present or both absent: key: {}, cert: {}]",
                    sec.client_key_file, sec.client_cert_file
                )));
            }
            if !sec.allowed_cn.is_empty() && !sec.allowed_hostname.is_empty() {
                return Err(ConfigError::Tls(format!(
                    "AllowedCNs and AllowedHostnames are mutually exclusive (cns={:?}, hostnames={:?})",
                    sec.allowed_cn, sec.allowed_hostname
                )));
            }
        }
        let min = tls_version(&self.tls_min_version)?;
        let max = tls_version(&self.tls_max_version)?;
        if let (Some(min), Some(max)) = (min, max)
            && min > max
        {
            return Err(ConfigError::Tls(format!(
                "min version ({}) is greater than max version ({})",
                self.tls_min_version, self.tls_max_version
            )));
        }
        if min == Some(TlsVersion::Tls13) && !self.cipher_suites.is_empty() {
            return Err(ConfigError::Tls("cipher suites cannot be configured when only TLS1.3 is enabled".into()));
        }
        Ok(())
    }
}

/// A TLS protocol version etcd lets one pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// Parses `--tls-min-version`/`--tls-max-version` (empty: not set).
pub fn tls_version(v: &str) -> Result<Option<TlsVersion>, ConfigError> {
    match v {
        "" => Ok(None),
        "TLS1.2" => Ok(Some(TlsVersion::Tls12)),
        "TLS1.3" => Ok(Some(TlsVersion::Tls13)),
        // Go accepts these; rustls does not speak them.
        "TLS1.0" | "TLS1.1" => {
            Err(ConfigError::Tls(format!("unsupported TLS version {v:?}: oxcd speaks TLS1.2 and TLS1.3")))
        }
        _ => Err(ConfigError::Tls(format!("unexpected TLS version {v:?} (must be one of: TLS1.2, TLS1.3)"))),
    }
}

/// Whether a URL asks for TLS.
pub fn is_https(url: &str) -> bool {
    url.starts_with("https://")
}

/// Splits a comma-separated URL list.
pub fn split_urls(list: &str) -> Vec<String> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

/// The host (without an IPv6 address's brackets) and port of `http://host:port` or
/// `https://host:port`, as written.
pub fn url_host_port(url: &str) -> Result<(&str, u16), ConfigError> {
    let bad = |why: &str| ConfigError::BadUrl(url.to_string(), why.to_string());
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| bad("only http:// and https:// URLs are served"))?;
    let hostport = rest.trim_end_matches('/');
    if hostport.contains('/') {
        return Err(bad("URL must not have a path"));
    }
    let (host, port) = hostport.rsplit_once(':').ok_or_else(|| bad("missing port"))?;
    let port: u16 = port.parse().map_err(|_| bad("bad port"))?;
    Ok((host.trim_start_matches('[').trim_end_matches(']'), port))
}

/// Resolves `http://host:port` or `https://host:port` to a socket address (`localhost` is
/// 127.0.0.1).
pub fn parse_url(url: &str) -> Result<SocketAddr, ConfigError> {
    let bad = |why: &str| ConfigError::BadUrl(url.to_string(), why.to_string());
    let (host, port) = url_host_port(url)?;
    let host = if host == "localhost" { "127.0.0.1" } else { host };
    (host, port).to_socket_addrs().map_err(|e| bad(&e.to_string()))?.next().ok_or_else(|| bad("does not resolve"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_etcds() {
        let c = ServerConfig::default();
        c.validate().unwrap();
        assert_eq!(c.data_dir(), PathBuf::from("default.oxcd"));
        assert_eq!(c.election_ticks(), 10);
        assert_eq!(c.request_timeout(), Duration::from_secs(7));
        assert_eq!(c.quota_bytes(), 2 << 30);
        assert_eq!(c.min_lease_ttl_secs(), 2);
        assert_eq!(ServerConfig { election_timeout: 500, ..Default::default() }.min_lease_ttl_secs(), 1);
        assert_eq!(
            c.initial_members().unwrap(),
            vec![InitialMember { name: "default".into(), peer_urls: vec!["http://localhost:2380".into()] }]
        );
        assert_eq!(parse_url("http://localhost:2379").unwrap(), "127.0.0.1:2379".parse().unwrap());
    }

    #[test]
    fn validation_errors() {
        let c = ServerConfig { election_timeout: 400, ..Default::default() };
        assert_eq!(c.validate(), Err(ConfigError::ElectionTooShort { election: 400, heartbeat: 100 }));
        let c = ServerConfig { initial_cluster: Some("other=http://127.0.0.1:1".into()), ..Default::default() };
        assert_eq!(c.validate(), Err(ConfigError::NameNotInCluster("default".into())));
        let c = ServerConfig { listen_client_urls: "unix://x:1".into(), ..Default::default() };
        assert!(matches!(c.validate(), Err(ConfigError::BadUrl(..))));
        let c = ServerConfig { listen_client_urls: "https://127.0.0.1:1".into(), ..Default::default() };
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:1 with HTTPS scheme"
        );
        let tls = TransportSecurity { cert_file: "c".into(), key_file: "k".into(), ..Default::default() };
        let c = ServerConfig {
            listen_client_urls: "https://127.0.0.1:1".into(),
            client_transport_security: tls.clone(),
            tls_min_version: "TLS1.3".into(),
            cipher_suites: vec!["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into()],
            ..Default::default()
        };
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "cipher suites cannot be configured when only TLS1.3 is enabled"
        );
        let c =
            ServerConfig { tls_min_version: "TLS1.3".into(), tls_max_version: "TLS1.2".into(), ..Default::default() };
        assert_eq!(c.validate().unwrap_err().to_string(), "min version (TLS1.3) is greater than max version (TLS1.2)");
        let c = ServerConfig { tls_max_version: "TLS9".into(), ..Default::default() };
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "unexpected TLS version \"TLS9\" (must be one of: TLS1.2, TLS1.3)"
        );
        let c = ServerConfig { initial_cluster_state: "old".into(), ..Default::default() };
        assert_eq!(c.validate(), Err(ConfigError::BadClusterState("old".into())));
    }

    #[test]
    fn yaml_uses_flag_names() {
        let c: ServerConfig = serde_yaml::from_str(
            "name: m1\ndata-dir: /tmp/x\nheartbeat-interval: 50\nelection-timeout: 500\n\
             initial-cluster: m1=http://127.0.0.1:2380\ninitial-advertise-peer-urls: http://127.0.0.1:2380\n\
             experimental-watch-progress-notify-interval: 5s\n\
             client-transport-security:\n  cert-file: /c.pem\n  key-file: /k.pem\n  client-cert-auth: true\n\
             peer-transport-security:\n  auto-tls: true\n  allowed-cn: m2\n\
             cipher-suites: [TLS_AES_128_GCM_SHA256]\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.name, "m1");
        assert_eq!(c.election_ticks(), 10);
        assert_eq!(c.max_txn_ops, 128);
        assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(5));
        let client = &c.client_transport_security;
        assert_eq!(
            (client.cert_file.as_str(), client.key_file.as_str(), client.client_cert_auth),
            ("/c.pem", "/k.pem", true)
        );
        assert!(c.peer_transport_security.auto_tls);
        assert_eq!(c.peer_transport_security.allowed_cn, ["m2"]);
        assert_eq!(c.cipher_suites, ["TLS_AES_128_GCM_SHA256"]);
        let c: ServerConfig = serde_yaml::from_str("watch-progress-notify-interval: 1000000\n").unwrap();
        assert_eq!(c.progress_notify_interval(), MIN_WATCH_PROGRESS_INTERVAL, "1 ms is raised to 100 ms");
    }
}
