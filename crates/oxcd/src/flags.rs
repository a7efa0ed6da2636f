//! etcd 3.5's command line, parsed as Go's `flag` package parses it (etcd's own parser): `-name`
//! and `--name`, `=value` or the next argument, bare booleans, `--` ends the flags; the same error
//! texts and exit codes (2 for what the parser refuses, 1 for what etcd's checks after it refuse).
//!
//! Every flag etcd 3.5 lists is in [`FLAGS`], with the 3.6 names of its experimental flags. Each
//! one sets a configuration key (it is implemented), or is refused with the reason when set to
//! anything but its default (it cannot apply to oxcd), or is accepted with a warning that says why
//! it changes nothing (etcd itself ignores it, or oxcd always behaves as it asks). The flags, the
//! `ETCD_*` variables and the YAML file all end in one JSON object with the configuration's keys,
//! which serde turns into a `ServerConfig`.

use serde_json::{Map, Value};

/// How a flag's value is parsed (Go's flag types, and etcd's own `flag.Value`s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Bool,
    /// Go's `uint` (and `uint64`).
    Uint,
    Uint32,
    Int,
    Duration,
    /// Comma-separated URLs (etcd's `UniqueURLs`): each `scheme://host:port`, no path.
    Urls,
    /// Comma-separated strings.
    Strings,
    /// Comma-separated URLs or `*` (`--cors`).
    Origins,
    /// One of these values (etcd's `SelectiveStringValue`).
    Choice(&'static [&'static str]),
}

/// What oxcd does with a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Sets this key of the configuration (`a.b` for a nested one).
    Key(&'static str),
    /// Accepted; when set to anything but its default, a warning gives this reason.
    NoOp(&'static str),
    /// Start fails, with this reason, when it is set to anything but its default.
    Refused(&'static str),
    /// The binary itself reads it (`--config-file`, `--version`).
    Binary,
}

/// One flag of etcd's command line.
#[derive(Debug)]
pub struct Flag {
    pub name: &'static str,
    pub kind: Kind,
    /// The default, as `etcd --help` shows it.
    pub default: &'static str,
    pub use_: Use,
    pub help: &'static str,
}

const fn f(name: &'static str, kind: Kind, default: &'static str, use_: Use, help: &'static str) -> Flag {
    Flag { name, kind, default, use_, help }
}

use Kind::*;
use Use::*;

const V2: &str = "oxcd serves the v3 API only (etcd 3.6 removed v2 too)";
const PROXY: &str = "oxcd has no v2 proxy mode";
const DISCOVERY: &str = "oxcd cannot bootstrap through a discovery service; list the members with --initial-cluster";
const IGNORED: &str = "a flag of etcd 0.4, which etcd ignores too";

/// Every flag etcd 3.5 accepts, then the 3.6 names of its experimental ones.
pub static FLAGS: &[Flag] = &[
    f(
        "config-file",
        Str,
        "",
        Binary,
        "Path to the server configuration file. Note that if a configuration file is provided, other command line flags and environment variables will be ignored.",
    ),
    f("version", Bool, "false", Binary, "Print the version and exit."),
    // Member.
    f("name", Str, "default", Key("name"), "Human-readable name for this member."),
    f("data-dir", Str, "${name}.oxcd", Key("data-dir"), "Path to the data directory."),
    f("wal-dir", Str, "", Key("wal-dir"), "Path to the dedicated wal directory."),
    f(
        "snapshot-count",
        Uint,
        "10000",
        Key("snapshot-count"),
        "Number of committed transactions to trigger a snapshot to disk.",
    ),
    f("heartbeat-interval", Uint, "100", Key("heartbeat-interval"), "Time (in milliseconds) of a heartbeat interval."),
    f("election-timeout", Uint, "1000", Key("election-timeout"), "Time (in milliseconds) for an election to timeout."),
    f(
        "initial-election-tick-advance",
        Bool,
        "true",
        NoOp("oxcd never fast-forwards election ticks at boot (a member alone campaigns at once)"),
        "Whether to fast-forward initial election ticks on boot for faster election.",
    ),
    f(
        "listen-peer-urls",
        Urls,
        "http://localhost:2380",
        Key("listen-peer-urls"),
        "List of URLs to listen on for peer traffic.",
    ),
    f(
        "listen-client-urls",
        Urls,
        "http://localhost:2379",
        Key("listen-client-urls"),
        "List of URLs to listen on for client grpc traffic and http as long as --listen-client-http-urls is not specified.",
    ),
    f(
        "listen-client-http-urls",
        Urls,
        "",
        Key("listen-client-http-urls"),
        "List of URLs to listen on for http only client traffic. Enabling this flag removes http services from --listen-client-urls.",
    ),
    f(
        "listen-metrics-urls",
        Urls,
        "",
        Key("listen-metrics-urls"),
        "List of URLs to listen on for the metrics and health endpoints.",
    ),
    f(
        "max-snapshots",
        Uint,
        "5",
        NoOp("oxcd keeps one snapshot record in its WAL and no .snap files"),
        "Maximum number of snapshot files to retain (0 is unlimited).",
    ),
    f(
        "max-wals",
        Uint,
        "5",
        NoOp("oxcd removes WAL segments as soon as a snapshot covers them"),
        "Maximum number of wal files to retain (0 is unlimited).",
    ),
    f(
        "quota-backend-bytes",
        Int,
        "0",
        Key("quota-backend-bytes"),
        "Raise alarms when backend size exceeds the given quota (0 defaults to low space quota).",
    ),
    f(
        "backend-bbolt-freelist-type",
        Choice(&["map", "array"]),
        "map",
        NoOp("oxcd's backend is not bbolt; its free list has one type"),
        "BackendFreelistType specifies the type of freelist that boltdb backend uses(array and map are supported types).",
    ),
    f(
        "backend-batch-interval",
        Duration,
        "1s",
        Key("backend-batch-interval"),
        "BackendBatchInterval is the maximum time before commit the backend transaction.",
    ),
    f(
        "backend-batch-limit",
        Int,
        "10000",
        Key("backend-batch-limit"),
        "BackendBatchLimit is the maximum operations before commit the backend transaction.",
    ),
    f("max-txn-ops", Uint, "128", Key("max-txn-ops"), "Maximum number of operations permitted in a transaction."),
    f(
        "max-request-bytes",
        Uint,
        "1572864",
        Key("max-request-bytes"),
        "Maximum client request size in bytes the server will accept.",
    ),
    f(
        "max-concurrent-streams",
        Uint32,
        "4294967295",
        Key("max-concurrent-streams"),
        "Maximum concurrent streams that each client can open at a time.",
    ),
    f(
        "grpc-keepalive-min-time",
        Duration,
        "5s",
        Key("grpc-keepalive-min-time"),
        "Minimum interval duration that a client should wait before pinging server.",
    ),
    f(
        "grpc-keepalive-interval",
        Duration,
        "2h0m0s",
        Key("grpc-keepalive-interval"),
        "Frequency duration of server-to-client ping to check if a connection is alive (0 to disable).",
    ),
    f(
        "grpc-keepalive-timeout",
        Duration,
        "20s",
        Key("grpc-keepalive-timeout"),
        "Additional duration of wait before closing a non-responsive connection (0 to disable).",
    ),
    f(
        "socket-reuse-port",
        Bool,
        "false",
        Key("socket-reuse-port"),
        "Enable to set socket option SO_REUSEPORT on listeners allowing rebinding of a port already in use.",
    ),
    f(
        "socket-reuse-address",
        Bool,
        "false",
        NoOp("oxcd's listeners always set SO_REUSEADDR"),
        "Enable to set socket option SO_REUSEADDR on listeners allowing binding to an address in `TIME_WAIT` state.",
    ),
    f(
        "raft-read-timeout",
        Duration,
        "5s",
        NoOp("oxcd's peer streams detect a dead peer by its missing heartbeats"),
        "Read timeout set on each rafthttp connection",
    ),
    f(
        "raft-write-timeout",
        Duration,
        "5s",
        NoOp("oxcd's peer streams detect a dead peer by its missing heartbeats"),
        "Write timeout set on each rafthttp connection",
    ),
    // Clustering.
    f(
        "initial-advertise-peer-urls",
        Urls,
        "http://localhost:2380",
        Key("initial-advertise-peer-urls"),
        "List of this member's peer URLs to advertise to the rest of the cluster.",
    ),
    f(
        "initial-cluster",
        Str,
        "default=http://localhost:2380",
        Key("initial-cluster"),
        "Initial cluster configuration for bootstrapping.",
    ),
    f(
        "initial-cluster-state",
        Choice(&["new", "existing"]),
        "new",
        Key("initial-cluster-state"),
        "Initial cluster state ('new' or 'existing').",
    ),
    f(
        "initial-cluster-token",
        Str,
        "etcd-cluster",
        Key("initial-cluster-token"),
        "Initial cluster token for the etcd cluster during bootstrap.",
    ),
    f(
        "advertise-client-urls",
        Urls,
        "http://localhost:2379",
        Key("advertise-client-urls"),
        "List of this member's client URLs to advertise to the public.",
    ),
    f("discovery", Str, "", Refused(DISCOVERY), "Discovery URL used to bootstrap the cluster."),
    f(
        "discovery-fallback",
        Choice(&["exit", "proxy"]),
        "proxy",
        NoOp("it applies to discovery, which oxcd does not do"),
        "Expected behavior ('exit' or 'proxy') when discovery services fails.",
    ),
    f("discovery-proxy", Str, "", Refused(DISCOVERY), "HTTP proxy to use for traffic to discovery service."),
    f("discovery-srv", Str, "", Refused(DISCOVERY), "DNS domain used to bootstrap initial cluster."),
    f("discovery-srv-name", Str, "", Refused(DISCOVERY), "Service name to query when using DNS discovery."),
    f(
        "strict-reconfig-check",
        Bool,
        "true",
        Key("strict-reconfig-check"),
        "Reject reconfiguration requests that would cause quorum loss.",
    ),
    f("pre-vote", Bool, "true", Key("pre-vote"), "Enable to run an additional Raft election phase."),
    f(
        "auto-compaction-retention",
        Str,
        "0",
        Key("auto-compaction-retention"),
        "Auto compaction retention for mvcc key value store. 0 means disable auto compaction.",
    ),
    f(
        "auto-compaction-mode",
        Str,
        "periodic",
        Key("auto-compaction-mode"),
        "interpret 'auto-compaction-retention' one of: 'periodic', 'revision'. 'periodic' for duration based retention, defaulting to hours if no time unit is provided (e.g. '5m'). 'revision' for revision number based retention.",
    ),
    f("enable-v2", Bool, "false", Refused(V2), "Accept etcd V2 client requests."),
    f("experimental-enable-v2v3", Str, "", Refused(V2), "v3 prefix for serving emulated v2 state."),
    f(
        "v2-deprecation",
        Choice(&["not-yet", "write-only", "write-only-drop-data", "gone"]),
        "not-yet",
        NoOp("oxcd has no v2 store: every stage holds"),
        "v2store deprecation stage.",
    ),
    // Proxy (v2).
    f(
        "proxy",
        Choice(&["off", "readonly", "on"]),
        "off",
        Refused(PROXY),
        "Proxy mode setting ('off', 'readonly' or 'on').",
    ),
    f(
        "proxy-failure-wait",
        Uint,
        "5000",
        NoOp(PROXY),
        "Time (in milliseconds) an endpoint will be held in a failed state.",
    ),
    f(
        "proxy-refresh-interval",
        Uint,
        "30000",
        NoOp(PROXY),
        "Time (in milliseconds) of the endpoints refresh interval.",
    ),
    f("proxy-dial-timeout", Uint, "1000", NoOp(PROXY), "Time (in milliseconds) for a dial to timeout."),
    f("proxy-write-timeout", Uint, "5000", NoOp(PROXY), "Time (in milliseconds) for a write to timeout."),
    f("proxy-read-timeout", Uint, "0", NoOp(PROXY), "Time (in milliseconds) for a read to timeout."),
    // Security.
    f("cert-file", Str, "", Key("client-transport-security.cert-file"), "Path to the client server TLS cert file."),
    f("key-file", Str, "", Key("client-transport-security.key-file"), "Path to the client server TLS key file."),
    f(
        "client-cert-file",
        Str,
        "",
        Key("client-transport-security.client-cert-file"),
        "Path to an explicit peer client TLS cert file otherwise cert file will be used when client auth is required.",
    ),
    f(
        "client-key-file",
        Str,
        "",
        Key("client-transport-security.client-key-file"),
        "Path to an explicit peer client TLS key file otherwise key file will be used when client auth is required.",
    ),
    f(
        "client-cert-auth",
        Bool,
        "false",
        Key("client-transport-security.client-cert-auth"),
        "Enable client cert authentication.",
    ),
    f(
        "client-crl-file",
        Str,
        "",
        Key("client-transport-security.crl-file"),
        "Path to the client certificate revocation list file.",
    ),
    f(
        "client-cert-allowed-hostname",
        Strings,
        "",
        Key("client-transport-security.allowed-hostname"),
        "Comma-separated list of allowed SAN hostnames for client cert authentication.",
    ),
    f(
        "trusted-ca-file",
        Str,
        "",
        Key("client-transport-security.trusted-ca-file"),
        "Path to the client server TLS trusted CA cert file.",
    ),
    f("auto-tls", Bool, "false", Key("client-transport-security.auto-tls"), "Client TLS using generated certificates."),
    f("peer-cert-file", Str, "", Key("peer-transport-security.cert-file"), "Path to the peer server TLS cert file."),
    f("peer-key-file", Str, "", Key("peer-transport-security.key-file"), "Path to the peer server TLS key file."),
    f(
        "peer-client-cert-file",
        Str,
        "",
        Key("peer-transport-security.client-cert-file"),
        "Path to an explicit peer client TLS cert file otherwise peer cert file will be used when client auth is required.",
    ),
    f(
        "peer-client-key-file",
        Str,
        "",
        Key("peer-transport-security.client-key-file"),
        "Path to an explicit peer client TLS key file otherwise peer key file will be used when client auth is required.",
    ),
    f(
        "peer-client-cert-auth",
        Bool,
        "false",
        Key("peer-transport-security.client-cert-auth"),
        "Enable peer client cert authentication.",
    ),
    f(
        "peer-trusted-ca-file",
        Str,
        "",
        Key("peer-transport-security.trusted-ca-file"),
        "Path to the peer server TLS trusted CA file.",
    ),
    f(
        "peer-auto-tls",
        Bool,
        "false",
        Key("peer-transport-security.auto-tls"),
        "Peer TLS using generated certificates.",
    ),
    f(
        "self-signed-cert-validity",
        Uint,
        "1",
        Key("self-signed-cert-validity"),
        "The validity period of the client and peer certificates, unit is year.",
    ),
    f(
        "peer-crl-file",
        Str,
        "",
        Key("peer-transport-security.crl-file"),
        "Path to the peer certificate revocation list file.",
    ),
    f(
        "peer-cert-allowed-cn",
        Strings,
        "",
        Key("peer-transport-security.allowed-cn"),
        "Comma-separated list of allowed CNs for inter-peer TLS authentication.",
    ),
    f(
        "peer-cert-allowed-hostname",
        Strings,
        "",
        Key("peer-transport-security.allowed-hostname"),
        "Comma-separated list of allowed SAN hostnames for inter-peer TLS authentication.",
    ),
    f(
        "cipher-suites",
        Strings,
        "",
        Key("cipher-suites"),
        "Comma-separated list of supported TLS cipher suites between client/server and peers (empty will be auto-populated).",
    ),
    f(
        "experimental-peer-skip-client-san-verification",
        Bool,
        "false",
        Key("peer-skip-client-san-verification"),
        "Skip verification of SAN field in client certificate for peer connections.",
    ),
    f(
        "tls-min-version",
        Str,
        "TLS1.2",
        Key("tls-min-version"),
        "Minimum TLS version supported by etcd. Possible values: TLS1.2, TLS1.3.",
    ),
    f(
        "tls-max-version",
        Str,
        "",
        Key("tls-max-version"),
        "Maximum TLS version supported by etcd. Possible values: TLS1.2, TLS1.3 (empty: the newest).",
    ),
    f(
        "cors",
        Origins,
        "*",
        Key("cors"),
        "Comma-separated white list of origins for CORS, or cross-origin resource sharing, (empty or * means allow all).",
    ),
    f(
        "host-whitelist",
        Strings,
        "*",
        Key("host-whitelist"),
        "Comma-separated acceptable hostnames from HTTP client requests, if server is not secure (empty means allow all).",
    ),
    // Auth.
    f("auth-token", Str, "simple", Key("auth-token"), "Specify auth token specific options."),
    f("bcrypt-cost", Uint, "10", Key("bcrypt-cost"), "Specify bcrypt algorithm cost factor for auth password hashing."),
    f("auth-token-ttl", Uint, "300", Key("auth-token-ttl"), "The lifetime in seconds of the auth token."),
    // Profiling, monitoring, logging.
    f(
        "enable-pprof",
        Bool,
        "false",
        Refused("pprof profiles Go programs; profile oxcd with perf"),
        "Enable runtime profiling data via HTTP server.",
    ),
    f(
        "metrics",
        Str,
        "basic",
        Key("metrics"),
        "Set level of detail for exported metrics, specify 'extensive' to include server side grpc histogram metrics.",
    ),
    f("logger", Str, "zap", Key("logger"), "Currently only supports 'zap' for structured logging."),
    f(
        "log-outputs",
        Strings,
        "default",
        Key("log-outputs"),
        "Specify 'stdout' or 'stderr' to skip journald logging even when running under systemd, or list of comma separated output targets.",
    ),
    f(
        "log-level",
        Str,
        "info",
        Key("log-level"),
        "Configures log level. Only supports debug, info, warn, error, panic, or fatal.",
    ),
    f(
        "enable-log-rotation",
        Bool,
        "false",
        Key("enable-log-rotation"),
        "Enable log rotation of a single log-outputs file target.",
    ),
    f(
        "log-rotation-config-json",
        Str,
        oxcd_server::config::DEFAULT_LOG_ROTATION,
        Key("log-rotation-config-json"),
        "Configures log rotation if enabled with a JSON logger config.",
    ),
    f(
        "experimental-enable-distributed-tracing",
        Bool,
        "false",
        Key("enable-distributed-tracing"),
        "Enable experimental distributed tracing using OpenTelemetry Tracing.",
    ),
    f(
        "experimental-distributed-tracing-address",
        Str,
        "localhost:4317",
        Key("distributed-tracing-address"),
        "Address for distributed tracing used for OpenTelemetry Tracing.",
    ),
    f(
        "experimental-distributed-tracing-service-name",
        Str,
        "etcd",
        Key("distributed-tracing-service-name"),
        "Configures service name for distributed tracing to be used to define service name for OpenTelemetry Tracing.",
    ),
    f(
        "experimental-distributed-tracing-instance-id",
        Str,
        "",
        Key("distributed-tracing-instance-id"),
        "Configures service instance ID for distributed tracing to be used to define service instance ID key for OpenTelemetry Tracing.",
    ),
    f(
        "experimental-distributed-tracing-sampling-rate",
        Int,
        "0",
        Key("distributed-tracing-sampling-rate"),
        "Number of samples to collect per million spans for OpenTelemetry Tracing.",
    ),
    // Experimental (3.5 names).
    f(
        "experimental-initial-corrupt-check",
        Bool,
        "false",
        Key("experimental-initial-corrupt-check"),
        "Enable to check data corruption before serving any client/peer traffic.",
    ),
    f(
        "experimental-corrupt-check-time",
        Duration,
        "0s",
        Key("corrupt-check-time"),
        "Duration of time between cluster corruption check passes.",
    ),
    f(
        "experimental-compact-hash-check-enabled",
        Bool,
        "false",
        Key("experimental-compact-hash-check-enabled"),
        "Enable leader to periodically check followers compaction hashes.",
    ),
    f(
        "experimental-compact-hash-check-time",
        Duration,
        "1m0s",
        Key("compact-hash-check-time"),
        "Duration of time between leader checks followers compaction hashes.",
    ),
    f(
        "experimental-enable-lease-checkpoint",
        Bool,
        "false",
        NoOp("oxcd always keeps a lease's remaining TTL across leader changes"),
        "Enable leader to send regular checkpoints to other members to prevent reset of remaining TTL on leader change.",
    ),
    f(
        "experimental-enable-lease-checkpoint-persist",
        Bool,
        "false",
        NoOp("oxcd always keeps a lease's remaining TTL across restarts"),
        "Enable persisting remainingTTL to prevent indefinite auto-renewal of long lived leases.",
    ),
    f(
        "experimental-compaction-batch-limit",
        Int,
        "1000",
        Key("compaction-batch-limit"),
        "Sets the maximum revisions deleted in each compaction batch.",
    ),
    f(
        "experimental-compaction-sleep-interval",
        Duration,
        "10ms",
        Key("compaction-sleep-interval"),
        "Sets the sleep interval between each compaction batch.",
    ),
    f(
        "experimental-watch-progress-notify-interval",
        Duration,
        "10m0s",
        Key("watch-progress-notify-interval"),
        "Duration of periodic watch progress notifications.",
    ),
    f(
        "experimental-downgrade-check-time",
        Duration,
        "5s",
        NoOp("oxcd never has a downgrade in flight (Downgrade ENABLE is refused)"),
        "Duration of time between two downgrade status checks.",
    ),
    f(
        "experimental-warning-apply-duration",
        Duration,
        "100ms",
        Key("warning-apply-duration"),
        "Time duration after which a warning is generated if request takes more time.",
    ),
    f(
        "experimental-memory-mlock",
        Bool,
        "false",
        Key("memory-mlock"),
        "Enable to enforce etcd pages (in particular bbolt) to stay in RAM.",
    ),
    f(
        "experimental-txn-mode-write-with-shared-buffer",
        Bool,
        "true",
        NoOp("oxcd's read-only txns never copy a shared buffer"),
        "Enable the write transaction to use a shared buffer in its readonly check operations.",
    ),
    f(
        "experimental-stop-grpc-service-on-defrag",
        Bool,
        "false",
        NoOp("oxcd serves reads during a defragmentation"),
        "Enable etcd gRPC service to stop serving client requests on defragmentation.",
    ),
    f(
        "experimental-bootstrap-defrag-threshold-megabytes",
        Uint,
        "0",
        Key("bootstrap-defrag-threshold-megabytes"),
        "Enable the defrag during etcd server bootstrap on condition that it will free at least the provided threshold of disk space. Needs to be set to non-zero value to take effect.",
    ),
    f(
        "experimental-snapshot-catchup-entries",
        Uint,
        "5000",
        Key("snapshot-catchup-entries"),
        "Number of entries for a slow follower to catch up after compacting the raft storage entries.",
    ),
    f(
        "experimental-warning-unary-request-duration",
        Duration,
        "300ms",
        Key("warning-unary-request-duration"),
        "Time duration after which a warning is generated if a unary request takes more time.",
    ),
    f(
        "experimental-max-learners",
        Int,
        "1",
        Key("max-learners"),
        "Sets the maximum number of learners that can be available in the cluster membership.",
    ),
    f("unsafe-no-fsync", Bool, "false", Key("unsafe-no-fsync"), "Disables fsync, unsafe, will cause data loss."),
    f("force-new-cluster", Bool, "false", Key("force-new-cluster"), "Force to create a new one member cluster."),
    // Flags of etcd 3.6 only (its new names of 3.5's experimental flags are in RENAMED).
    f("enable-grpc-gateway", Bool, "true", Key("enable-grpc-gateway"), "Enable GRPC gateway."),
    f(
        "log-format",
        Choice(&["json", "console"]),
        "json",
        Key("log-format"),
        "Configures log format. Only supports json, console.",
    ),
    f(
        "feature-gates",
        Str,
        "",
        Key("feature-gates"),
        "A set of key=value pairs that describe server level feature gates for alpha/experimental features (InitialCorruptCheck, CompactHashCheck, LeaseCheckpoint, LeaseCheckpointPersist, StopGRPCServiceOnDefrag, TxnModeWriteWithSharedBuffer).",
    ),
    // oxcd's own.
    f(
        "enable-console",
        Bool,
        "true",
        Key("enable-console"),
        "Serve oxcd's web console at /ui on the client port (behind auth and TLS when they are on).",
    ),
    // etcd 0.4's flags, which etcd still accepts and ignores.
    f("cluster-active-size", Bool, "false", NoOp(IGNORED), ""),
    f("cluster-remove-delay", Bool, "false", NoOp(IGNORED), ""),
    f("cluster-sync-interval", Bool, "false", NoOp(IGNORED), ""),
    f("config", Bool, "false", NoOp(IGNORED), ""),
    f("force", Bool, "false", NoOp(IGNORED), ""),
    f("max-result-buffer", Bool, "false", NoOp(IGNORED), ""),
    f("max-retry-attempts", Bool, "false", NoOp(IGNORED), ""),
    f("peer-heartbeat-interval", Bool, "false", NoOp(IGNORED), ""),
    f("peer-election-timeout", Bool, "false", NoOp(IGNORED), ""),
    f("retry-interval", Bool, "false", NoOp(IGNORED), ""),
    f("snapshot", Bool, "false", NoOp(IGNORED), ""),
    f("v", Bool, "false", NoOp(IGNORED), ""),
    f("vv", Bool, "false", NoOp(IGNORED), ""),
];

/// etcd 3.6's names of etcd 3.5's experimental flags: (3.6 name, 3.5 name). Either name sets the
/// flag, on the command line and as an `ETCD_*` variable.
pub static RENAMED: &[(&str, &str)] = &[
    ("corrupt-check-time", "experimental-corrupt-check-time"),
    ("compact-hash-check-time", "experimental-compact-hash-check-time"),
    ("compaction-batch-limit", "experimental-compaction-batch-limit"),
    ("compaction-sleep-interval", "experimental-compaction-sleep-interval"),
    ("watch-progress-notify-interval", "experimental-watch-progress-notify-interval"),
    ("downgrade-check-time", "experimental-downgrade-check-time"),
    ("warning-apply-duration", "experimental-warning-apply-duration"),
    ("warning-unary-request-duration", "experimental-warning-unary-request-duration"),
    ("memory-mlock", "experimental-memory-mlock"),
    ("bootstrap-defrag-threshold-megabytes", "experimental-bootstrap-defrag-threshold-megabytes"),
    ("snapshot-catchup-entries", "experimental-snapshot-catchup-entries"),
    ("peer-skip-client-san-verification", "experimental-peer-skip-client-san-verification"),
    ("max-learners", "experimental-max-learners"),
    ("enable-distributed-tracing", "experimental-enable-distributed-tracing"),
    ("distributed-tracing-address", "experimental-distributed-tracing-address"),
    ("distributed-tracing-service-name", "experimental-distributed-tracing-service-name"),
    ("distributed-tracing-instance-id", "experimental-distributed-tracing-instance-id"),
    ("distributed-tracing-sampling-rate", "experimental-distributed-tracing-sampling-rate"),
];

/// The flag called `name` (by its etcd 3.5 name or its 3.6 one).
pub fn lookup(name: &str) -> Option<&'static Flag> {
    let name = RENAMED.iter().find(|(new, _)| *new == name).map_or(name, |(_, old)| old);
    FLAGS.iter().find(|f| f.name == name)
}

/// The 3.6 name of a flag etcd 3.6 renamed.
fn new_name(flag: &str) -> Option<&'static str> {
    RENAMED.iter().find(|(_, old)| *old == flag).map(|(new, _)| *new)
}

/// `ETCD_` and the name in capitals with `_` for `-` (etcd's `FlagToEnv`).
pub fn env_name(flag: &str) -> String {
    format!("ETCD_{}", flag.to_uppercase().replace('-', "_"))
}

/// The result of reading the command line.
#[derive(Debug)]
pub enum Command {
    /// `-h`, `--help`: print [`help`] and exit 0.
    Help,
    /// `--version`: print the version and exit 0.
    Version,
    /// Run a member with these flags (each with its value as given, in order).
    Run(Vec<(&'static Flag, String)>),
}

/// What stops the start, with the exit code etcd uses for it.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
    /// 2: refused by Go's flag parser (it prints the usage line too); 1: by etcd's checks.
    pub code: i32,
}

impl Refusal {
    fn usage(message: String) -> Refusal {
        Refusal { message, code: 2 }
    }
    pub fn check(message: impl Into<String>) -> Refusal {
        Refusal { message: message.into(), code: 1 }
    }
}

/// Reads the command line (without the program name) as Go's `flag.Parse` does.
pub fn parse_args(args: &[String]) -> Result<Command, Refusal> {
    let mut set: Vec<(&'static Flag, String)> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let s = &args[i];
        if s.len() < 2 || !s.starts_with('-') {
            break;
        }
        let minuses = if s.starts_with("--") { 2 } else { 1 };
        if s == "--" {
            i += 1;
            break;
        }
        let body = &s[minuses..];
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            return Err(Refusal::usage(format!("bad flag syntax: {s}")));
        }
        i += 1;
        let (name, inline) = match body[1..].find('=') {
            Some(p) => (&body[..p + 1], Some(body[p + 2..].to_string())),
            None => (body, None),
        };
        let Some(flag) = lookup(name) else {
            if name == "help" || name == "h" {
                return Ok(Command::Help);
            }
            return Err(Refusal::usage(format!("flag provided but not defined: -{name}")));
        };
        let value = if flag.kind == Bool {
            let v = inline.unwrap_or_else(|| "true".into());
            parse_bool(&v)
                .ok_or_else(|| Refusal::usage(format!("invalid boolean value {v:?} for -{name}: parse error")))?;
            v
        } else {
            let v = match inline {
                Some(v) => v,
                None if i < args.len() => {
                    i += 1;
                    args[i - 1].clone()
                }
                None => return Err(Refusal::usage(format!("flag needs an argument: -{name}"))),
            };
            check_value(flag, &v).map_err(|e| Refusal::usage(format!("invalid value {v:?} for flag -{name}: {e}")))?;
            v
        };
        set.push((flag, value));
    }
    if let Some(extra) = args.get(i) {
        return Err(Refusal::check(format!("'{extra}' is not a valid flag")));
    }
    if set.iter().rev().find(|(f, _)| f.name == "version").is_some_and(|(_, v)| parse_bool(v) == Some(true)) {
        return Ok(Command::Version);
    }
    Ok(Command::Run(set))
}

/// Adds the `ETCD_*` variables of the flags not given on the command line (etcd's
/// `SetFlagsFromEnv`); a variable shadowed by a flag given on the command line stops the start,
/// as in etcd 3.5. Returns warnings for `ETCD_*` variables that name no flag.
pub fn add_env(set: &mut Vec<(&'static Flag, String)>, env: &[(String, String)]) -> Result<Vec<String>, Refusal> {
    let given: Vec<String> =
        set.iter().flat_map(|(f, _)| std::iter::once(f.name).chain(new_name(f.name))).map(env_name).collect();
    let mut warnings = Vec::new();
    for (key, value) in env {
        if !key.starts_with("ETCD_") || value.is_empty() {
            continue;
        }
        if given.contains(key) {
            return Err(Refusal::check(format!(
                "conflicting environment variable is shadowed by corresponding command-line flag (either unset environment variable or disable flag)) environment-variable={key}"
            )));
        }
        let named = |n: &str| env_name(n) == *key;
        match FLAGS.iter().find(|f| named(f.name) || new_name(f.name).is_some_and(named)) {
            Some(flag) => {
                if let Err(why) = check_value(flag, value) {
                    return Err(Refusal::check(format!("invalid value {value:?} for {key}: {why}")));
                }
                set.push((flag, value.clone()));
            }
            None if key == "ETCD_VERSION" => {
                warnings.push(format!("cannot set special environment variable {key}={value}"));
            }
            None => warnings.push(format!("unrecognized environment variable {key}={value}")),
        }
    }
    Ok(warnings)
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.ParseUint(s, 0, 64)` / `ParseInt`: decimal, `0x`, `0o`, `0b` or leading-0 octal,
/// `_` between digits.
fn parse_go_int(s: &str, signed: bool) -> Result<i128, &'static str> {
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') if signed => (true, &s[1..]),
        Some(b'+') if signed => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, body) = if let Some(r) = digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        (16, r)
    } else if let Some(r) = digits.strip_prefix("0o").or_else(|| digits.strip_prefix("0O")) {
        (8, r)
    } else if let Some(r) = digits.strip_prefix("0b").or_else(|| digits.strip_prefix("0B")) {
        (2, r)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    let body: String = if radix != 10 || body.contains('_') {
        if body.starts_with('_') || body.ends_with('_') || body.contains("__") {
            return Err("parse error");
        }
        body.replace('_', "")
    } else {
        body.to_string()
    };
    if body.is_empty() {
        return Err("parse error");
    }
    let v = u128::from_str_radix(&body, radix).map_err(|_| "parse error")?;
    if v > u64::MAX as u128 {
        return Err("value out of range");
    }
    let v = v as i128;
    Ok(if neg { -v } else { v })
}

/// Checks a flag's value as its Go type's `Set` does; the error is the text after the flag name.
pub fn check_value(flag: &Flag, v: &str) -> Result<(), String> {
    match flag.kind {
        Str => Ok(()),
        Bool => parse_bool(v).map(drop).ok_or_else(|| "parse error".into()),
        Uint => parse_go_int(v, false).map(drop).map_err(String::from),
        Uint32 => match parse_go_int(v, false) {
            Ok(n) if n <= u32::MAX as i128 => Ok(()),
            Ok(_) => Err(format!("strconv.ParseUint: parsing {v:?}: value out of range")),
            Err(_) => Err(format!("strconv.ParseUint: parsing {v:?}: invalid syntax")),
        },
        Int => match parse_go_int(v, true) {
            Ok(n) if n >= i64::MIN as i128 && n <= i64::MAX as i128 => Ok(()),
            Ok(_) => Err("value out of range".into()),
            Err(e) => Err(e.into()),
        },
        Duration => parse_duration(v).map(drop).map_err(|_| "parse error".into()),
        Urls => check_urls(v),
        Origins => match v.split(',').any(|u| u.trim() == "*") {
            true => Ok(()),
            false => check_urls(v),
        },
        Strings => Ok(()),
        Choice(valid) => {
            if valid.contains(&v) {
                Ok(())
            } else {
                Err("invalid value".into())
            }
        }
    }
}

/// Go's `time.ParseDuration`, with its sign.
pub fn parse_duration(v: &str) -> Result<std::time::Duration, String> {
    let unsigned = v.strip_prefix('+').unwrap_or(v);
    if let Some(rest) = unsigned.strip_prefix('-') {
        // A negative duration: etcd treats it as no time at all where it takes one.
        return oxcd_api::duration::parse(rest).map(|_| std::time::Duration::ZERO);
    }
    oxcd_api::duration::parse(unsigned)
}

/// etcd's `types.NewURLs`: every comma-separated URL is `http`, `https`, `unix` or `unixs`, has a
/// `host:port` and no path.
fn check_urls(v: &str) -> Result<(), String> {
    for u in v.split(',') {
        let u = u.trim();
        let Some((scheme, rest)) = u.split_once("://") else {
            return Err(format!("URL scheme must be http, https, unix, or unixs: {u}"));
        };
        if !matches!(scheme, "http" | "https" | "unix" | "unixs") {
            return Err(format!("URL scheme must be http, https, unix, or unixs: {u}"));
        }
        let (host, path) = match rest.find('/') {
            Some(p) => (&rest[..p], &rest[p..]),
            None => (rest, ""),
        };
        let has_port = match host.rfind(':') {
            Some(p) => !host[..p].is_empty() || host.starts_with('['),
            None => false,
        };
        if !has_port {
            return Err(format!("URL address does not have the form \"host:port\": {u}"));
        }
        if !path.is_empty() {
            return Err(format!("URL must not contain a path: {u}"));
        }
    }
    Ok(())
}

/// The flags as the configuration's keys (a JSON object serde reads into a `ServerConfig`), and
/// what the flags that set no key say: the first refusal, and the warnings.
pub fn to_config(set: &[(&'static Flag, String)]) -> Result<(Map<String, Value>, Vec<String>), Refusal> {
    let mut root = Map::new();
    let mut warnings = Vec::new();
    for (flag, raw) in set {
        match flag.use_ {
            Key(key) => insert(&mut root, key, typed(flag, raw)),
            _ if !is_default(flag, raw) => {
                judge(flag, &format!("--{}", flag.name), &format!("--{}={raw}", flag.name), &mut warnings)?
            }
            _ => {}
        }
    }
    // etcd: --listen-client-urls without --advertise-client-urls advertises nothing, which its
    // checks refuse.
    let given = |n: &str| set.iter().any(|(f, _)| f.name == n);
    if given("listen-client-urls") && !given("advertise-client-urls") {
        return Err(Refusal::check("--advertise-client-urls is required when --listen-client-urls is set explicitly"));
    }
    Ok((root, warnings))
}

/// Whether `raw` means the flag's default (so that a refused flag given its default is fine).
fn is_default(flag: &Flag, raw: &str) -> bool {
    match flag.kind {
        Bool => parse_bool(raw) == parse_bool(flag.default),
        Duration => parse_duration(raw).ok() == parse_duration(flag.default).ok(),
        Uint | Int | Uint32 => parse_go_int(raw, true).ok() == parse_go_int(flag.default, true).ok(),
        _ => raw == flag.default,
    }
}

/// The flag's value as the configuration's YAML would hold it.
fn typed(flag: &Flag, raw: &str) -> Value {
    match flag.kind {
        Bool => Value::Bool(parse_bool(raw).unwrap_or(false)),
        Uint | Uint32 => parse_go_int(raw, false).map(|n| Value::from(n as u64)).unwrap_or(Value::Null),
        Int => parse_go_int(raw, true).map(|n| Value::from(n as i64)).unwrap_or(Value::Null),
        Duration => parse_duration(raw).map(|d| Value::from(d.as_nanos() as u64)).unwrap_or(Value::Null),
        Strings | Origins => Value::Array(
            raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| Value::String(s.into())).collect(),
        ),
        Str | Urls | Choice(_) => Value::String(raw.to_string()),
    }
}

fn insert(root: &mut Map<String, Value>, key: &str, v: Value) {
    match key.split_once('.') {
        Some((outer, inner)) => {
            let entry = root.entry(outer.to_string()).or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = entry {
                insert(m, inner, v);
            }
        }
        None => {
            root.insert(key.to_string(), v);
        }
    }
}

/// What a YAML configuration file's keys say beyond the configuration itself: refused keys
/// (set to anything but their default) stop the start, keys of no-op flags warn.
pub fn check_yaml_keys(doc: &serde_yaml::Mapping) -> Result<Vec<String>, Refusal> {
    let mut warnings = Vec::new();
    for (k, v) in doc {
        let (Some(k), Some(flag)) = (k.as_str(), k.as_str().and_then(lookup)) else { continue };
        let raw = match v {
            serde_yaml::Value::Bool(b) => b.to_string(),
            serde_yaml::Value::Number(n) => n.to_string(),
            serde_yaml::Value::String(s) => s.clone(),
            serde_yaml::Value::Null => continue,
            other => serde_yaml::to_string(other).unwrap_or_default().trim().to_string(),
        };
        let default = is_default(flag, &raw) || raw.is_empty();
        if !default {
            judge(flag, k, &format!("{k}: {raw}"), &mut warnings)?;
        }
    }
    Ok(warnings)
}

/// What a flag that sets no configuration key says when given something but its default
/// (`name` as given, `setting` with its value): a refusal, or a warning added to `warnings`.
fn judge(flag: &Flag, name: &str, setting: &str, warnings: &mut Vec<String>) -> Result<(), Refusal> {
    match flag.use_ {
        Refused(why) => return Err(Refusal::check(format!("{name} is not supported: {why}"))),
        NoOp(why) => warnings.push(format!("{setting} changes nothing: {why}")),
        Key(_) | Binary => {}
    }
    Ok(())
}

/// `etcd --help`'s text: the usage line, then every flag with its default and what it does.
pub fn help() -> String {
    let mut out = String::from(
        "Usage:\n\n  oxcd [flags]\n    Start an etcd-compatible server.\n\n  oxcd --version\n    Show the version.\n\n  oxcd -h | --help\n    Show the help information about oxcd.\n\n  oxcd --config-file\n    Path to the server configuration file (etcd's YAML format).\n\nFlags (etcd 3.5's; --experimental-* also by their etcd 3.6 names):\n",
    );
    for f in FLAGS.iter().filter(|f| !f.help.is_empty()) {
        let note = match f.use_ {
            NoOp(why) => format!(" [accepted, changes nothing: {why}]"),
            Refused(why) => format!(" [refused unless '{}': {why}]", f.default),
            _ => String::new(),
        };
        let renamed = new_name(f.name).map(|n| format!(" (etcd 3.6: --{n})")).unwrap_or_default();
        out.push_str(&format!("  --{} '{}'{renamed}\n      {}{note}\n", f.name, f.default, f.help));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn run(s: &str) -> Vec<(&'static str, String)> {
        match parse_args(&args(s)).unwrap() {
            Command::Run(v) => v.into_iter().map(|(f, v)| (f.name, v)).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn go_flag_syntax() {
        assert_eq!(
            run("-name a --data-dir=/x --client-cert-auth --pre-vote=false"),
            vec![
                ("name", "a".into()),
                ("data-dir", "/x".into()),
                ("client-cert-auth", "true".into()),
                ("pre-vote", "false".into())
            ]
        );
        assert_eq!(run("--name a --"), vec![("name", "a".into())]);
        // What follows `--` is not flags, and etcd takes no arguments.
        assert_eq!(
            parse_args(&args("--name a -- --data-dir x")).unwrap_err(),
            Refusal::check("'--data-dir' is not a valid flag")
        );
        assert!(matches!(parse_args(&args("-h")), Ok(Command::Help)));
        assert!(matches!(parse_args(&args("--version")), Ok(Command::Version)));
        assert!(matches!(parse_args(&args("--version=false")), Ok(Command::Run(_))));
    }

    #[test]
    fn go_flag_errors_have_gos_words_and_exit_2() {
        let err = |s: &str| parse_args(&args(s)).unwrap_err();
        assert_eq!(err("--foo"), Refusal::usage("flag provided but not defined: -foo".into()));
        assert_eq!(
            err("--snapshot-count abc"),
            Refusal::usage("invalid value \"abc\" for flag -snapshot-count: parse error".into())
        );
        assert_eq!(
            err("--heartbeat-interval=-1"),
            Refusal::usage("invalid value \"-1\" for flag -heartbeat-interval: parse error".into())
        );
        assert_eq!(
            err("--client-cert-auth=maybe"),
            Refusal::usage("invalid boolean value \"maybe\" for -client-cert-auth: parse error".into())
        );
        assert_eq!(err("--name"), Refusal::usage("flag needs an argument: -name".into()));
        assert_eq!(err("---x"), Refusal::usage("bad flag syntax: ---x".into()));
        assert_eq!(
            err("--initial-cluster-state=old"),
            Refusal::usage("invalid value \"old\" for flag -initial-cluster-state: invalid value".into())
        );
        assert_eq!(
            err("--listen-client-urls=ftp://a:1"),
            Refusal::usage(
                "invalid value \"ftp://a:1\" for flag -listen-client-urls: URL scheme must be http, https, unix, or unixs: ftp://a:1".into()
            )
        );
        // A bare boolean followed by a value: the value ends the flags (Go's rule), etcd refuses it.
        assert_eq!(err("--client-cert-auth false"), Refusal::check("'false' is not a valid flag"));
    }

    #[test]
    fn etcd_36_names_set_the_same_flags() {
        assert_eq!(run("--corrupt-check-time 1s"), vec![("experimental-corrupt-check-time", "1s".into())]);
        let mut set = Vec::new();
        add_env(&mut set, &[("ETCD_MAX_LEARNERS".to_string(), "2".to_string())]).unwrap();
        assert_eq!(set[0].0.name, "experimental-max-learners");
        for (new, old) in RENAMED {
            assert!(lookup(old).is_some() && lookup(new).is_some(), "{old}");
        }
    }

    #[test]
    fn yaml_keys_are_judged_as_their_flags() {
        let doc: serde_yaml::Mapping =
            serde_yaml::from_str("initial-election-tick-advance: false\nmax-wals: 5\nenable-v2: false\nname: x\n")
                .unwrap();
        // A boolean that defaults to true, set false, changes something etcd does: warned.
        assert_eq!(check_yaml_keys(&doc).unwrap().len(), 1);
        let refused: serde_yaml::Mapping = serde_yaml::from_str("enable-v2: true\n").unwrap();
        assert_eq!(check_yaml_keys(&refused).unwrap_err().code, 1);
    }

    #[test]
    fn numbers_as_go_reads_them() {
        assert_eq!(parse_go_int("0x10", false), Ok(16));
        assert_eq!(parse_go_int("010", false), Ok(8));
        assert_eq!(parse_go_int("1_000", false), Ok(1000));
        assert_eq!(parse_go_int("-5", true), Ok(-5));
        assert!(parse_go_int("-5", false).is_err());
        assert_eq!(parse_go_int("99999999999999999999999", false), Err("value out of range"));
    }

    #[test]
    fn environment_fills_what_the_command_line_left() {
        let mut set = match parse_args(&args("--name a")).unwrap() {
            Command::Run(v) => v,
            _ => unreachable!(),
        };
        let env = vec![
            ("ETCD_DATA_DIR".to_string(), "/d".to_string()),
            ("ETCD_UNKNOWN_THING".to_string(), "1".to_string()),
            ("PATH".to_string(), "/bin".to_string()),
        ];
        let warnings = add_env(&mut set, &env).unwrap();
        assert_eq!(set.last().map(|(f, v)| (f.name, v.as_str())), Some(("data-dir", "/d")));
        assert_eq!(warnings.len(), 1);
        let shadowed = vec![("ETCD_NAME".to_string(), "b".to_string())];
        assert_eq!(add_env(&mut set, &shadowed).unwrap_err().code, 1);
        let bad = vec![("ETCD_SNAPSHOT_COUNT".to_string(), "x".to_string())];
        let mut fresh = Vec::new();
        assert_eq!(
            add_env(&mut fresh, &bad).unwrap_err().message,
            "invalid value \"x\" for ETCD_SNAPSHOT_COUNT: parse error"
        );
    }

    #[test]
    fn flags_become_configuration_keys() {
        let set = match parse_args(&args(
            "--cert-file c --peer-cert-allowed-cn a,b --experimental-corrupt-check-time 1m --max-wals 3 --enable-v2=false",
        ))
        .unwrap()
        {
            Command::Run(v) => v,
            _ => unreachable!(),
        };
        let (map, warnings) = to_config(&set).unwrap();
        assert_eq!(map["client-transport-security"]["cert-file"], "c");
        assert_eq!(map["peer-transport-security"]["allowed-cn"], serde_json::json!(["a", "b"]));
        assert_eq!(map["corrupt-check-time"], 60_000_000_000u64);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let refused = [(lookup("enable-v2").unwrap(), "true".to_string())];
        assert_eq!(to_config(&refused).unwrap_err().code, 1);
    }

    #[test]
    fn every_flag_name_is_listed_once_and_every_default_parses() {
        for (i, f) in FLAGS.iter().enumerate() {
            assert!(FLAGS[..i].iter().all(|g| g.name != f.name), "{} twice", f.name);
            if f.use_ != Binary && !f.default.contains('$') && !f.default.is_empty() && f.kind != Urls {
                check_value(f, f.default).unwrap_or_else(|e| panic!("{}: {e}", f.name));
            }
        }
    }
}
