//! Prometheus metrics with etcd 3.5's names, types, labels and buckets, served at `/metrics` on the
//! client port and on `--listen-metrics-urls`.
//!
//! Built on the `prometheus` crate (tikv's, maintained, the same data model and text format as
//! Go's client that etcd uses): its counters and histograms are lock-free atomics, so the request
//! paths pay an atomic add per event and no allocation, and its process collector gives the
//! `process_*` metrics under the names Go's client uses. The `metrics` facade would add a
//! registry lookup per event (or handles kept anyway) and a second layer of names.
//!
//! Metrics are process-wide, as etcd's are: each crate keeps its own (`oxcd_wal::metrics`,
//! `oxcd_backend::metrics`, `oxcd_mvcc::metrics`, the statics here), counted where the event
//! happens. What is a state rather than an event (leadership, revisions, database size, the
//! applied index) is read from the member when scraped ([`Metrics::render`]), so that it costs
//! nothing in between. gRPC's metrics (`grpc_server_*`) are in [`grpc`].

pub mod grpc;

use std::sync::LazyLock;
use std::sync::atomic::Ordering;

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::server::EtcdServer;

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).expect("valid counter")
}

fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).expect("valid gauge")
}

fn gauge_vec(name: &str, help: &str, label: &str) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), &[label]).expect("valid gauge")
}

// Events, counted where they happen.

pub static LEADER_CHANGES: LazyLock<IntCounter> =
    LazyLock::new(|| counter("etcd_server_leader_changes_seen_total", "The number of leader changes seen."));
pub static PROPOSALS_PENDING: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("etcd_server_proposals_pending", "The current number of pending proposals to commit."));
pub static PROPOSALS_FAILED: LazyLock<IntCounter> =
    LazyLock::new(|| counter("etcd_server_proposals_failed_total", "The total number of failed proposals seen."));
pub static SLOW_APPLY: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "etcd_server_slow_apply_total",
        "The total number of slow apply requests (likely overloaded from slow disk).",
    )
});
pub static HEARTBEAT_SEND_FAILURES: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "etcd_server_heartbeat_send_failures_total",
        "The total number of leader heartbeat send failures (likely overloaded from slow disk).",
    )
});
pub static READ_INDEXES_FAILED: LazyLock<IntCounter> =
    LazyLock::new(|| counter("etcd_server_read_indexes_failed_total", "The total number of failed read indexes seen."));
pub static SLOW_READ_INDEXES: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "etcd_server_slow_read_indexes_total",
        "The total number of pending read indexes not in sync with leader's or timed out read index requests.",
    )
});
pub static HEALTH_SUCCESS: LazyLock<IntCounter> =
    LazyLock::new(|| counter("etcd_server_health_success", "The total number of successful health checks"));
pub static HEALTH_FAILURES: LazyLock<IntCounter> =
    LazyLock::new(|| counter("etcd_server_health_failures", "The total number of failed health checks"));
pub static LEARNER_PROMOTE_SUCCESSES: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "etcd_server_learner_promote_successes",
        "The total number of successful learner promotions while this member is leader.",
    )
});
pub static LEARNER_PROMOTE_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "etcd_server_learner_promote_failures",
            "The total number of failed learner promotions (likely learner not ready) while this member is leader.",
        ),
        &["Reason"],
    )
    .expect("valid counter")
});
pub static SNAPSHOT_APPLY_IN_PROGRESS: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "etcd_server_snapshot_apply_in_progress_total",
        "1 if the server is applying the incoming snapshot. 0 if none.",
    )
});
pub static LEASE_EXPIRED: LazyLock<IntCounter> =
    LazyLock::new(|| counter("etcd_debugging_server_lease_expired_total", "The total number of expired leases."));
pub static PEER_SENT_BYTES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new("etcd_network_peer_sent_bytes_total", "The total number of bytes sent to peers."),
        &["To"],
    )
    .expect("valid counter")
});
pub static PEER_RECEIVED_BYTES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new("etcd_network_peer_received_bytes_total", "The total number of bytes received from peers."),
        &["From"],
    )
    .expect("valid counter")
});
pub static PEER_SENT_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new("etcd_network_peer_sent_failures_total", "The total number of send failures from peers."),
        &["To"],
    )
    .expect("valid counter")
});
pub static PEER_ROUND_TRIP: LazyLock<prometheus::HistogramVec> = LazyLock::new(|| {
    let buckets = prometheus::exponential_buckets(0.0001, 2.0, 16).expect("valid buckets");
    prometheus::HistogramVec::new(
        prometheus::HistogramOpts::new(
            "etcd_network_peer_round_trip_time_seconds",
            "Round-Trip-Time histogram between peers",
        )
        .buckets(buckets),
        &["To"],
    )
    .expect("valid histogram")
});

/// `etcd_server_apply_duration_seconds`: each applied request's time, by `op` (etcd's names: `Put`,
/// `Txn`, `LeaseGrant`, ...) and `success` (`version` is always `v3`).
pub static APPLY_SECONDS: LazyLock<prometheus::HistogramVec> = LazyLock::new(|| {
    let buckets = prometheus::exponential_buckets(0.0001, 2.0, 20).expect("valid buckets");
    prometheus::HistogramVec::new(
        prometheus::HistogramOpts::new(
            "etcd_server_apply_duration_seconds",
            "The latency distributions of v2 apply called by backend.",
        )
        .buckets(buckets),
        &["version", "op", "success"],
    )
    .expect("valid histogram")
});

/// The member's metrics: the registry `/metrics` renders, with the gauges read at each scrape.
pub struct Metrics {
    registry: Registry,
    pub grpc: grpc::GrpcMetrics,
    has_leader: IntGauge,
    is_leader: IntGauge,
    is_learner: IntGauge,
    proposals_committed: IntGauge,
    proposals_applied: IntGauge,
    quota_backend_bytes: IntGauge,
    db_size: IntGauge,
    db_size_in_use: IntGauge,
    current_revision: IntGauge,
    compact_revision: IntGauge,
    keys: IntGauge,
    auth_revision: IntGauge,
    /// When the size in use was last measured: it walks the backend's pages under its write lock
    /// (tens of milliseconds on a large database), so it is measured at most every
    /// [`IN_USE_EVERY`], not on every scrape.
    in_use_at: parking_lot::Mutex<Option<std::time::Instant>>,
}

/// How often a scrape measures the database's size in use.
const IN_USE_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

impl Metrics {
    /// Registers every metric of the process, labelled for member `id`.
    pub fn new(id: crate::ids::MemberId, extensive: bool) -> Metrics {
        let registry = Registry::new();
        let grpc = grpc::GrpcMetrics::new(&registry, extensive).expect("gRPC metrics register once");
        let m = Metrics {
            grpc,
            has_leader: gauge("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not."),
            is_leader: gauge("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise."),
            is_learner: gauge(
                "etcd_server_is_learner",
                "Whether or not this member is a learner. 1 if is, 0 otherwise.",
            ),
            proposals_committed: gauge(
                "etcd_server_proposals_committed_total",
                "The total number of consensus proposals committed.",
            ),
            proposals_applied: gauge(
                "etcd_server_proposals_applied_total",
                "The total number of consensus proposals applied.",
            ),
            quota_backend_bytes: gauge(
                "etcd_server_quota_backend_bytes",
                "Current backend storage quota size in bytes.",
            ),
            db_size: gauge(
                "etcd_mvcc_db_total_size_in_bytes",
                "Total size of the underlying database physically allocated in bytes.",
            ),
            db_size_in_use: gauge(
                "etcd_mvcc_db_total_size_in_use_in_bytes",
                "Total size of the underlying database logically in use in bytes.",
            ),
            current_revision: gauge("etcd_debugging_mvcc_current_revision", "The current revision of store."),
            compact_revision: gauge(
                "etcd_debugging_mvcc_compact_revision",
                "The revision of the last compaction in store.",
            ),
            keys: gauge("etcd_debugging_mvcc_keys_total", "Total number of keys."),
            auth_revision: gauge("etcd_debugging_auth_revision", "The current revision of auth store."),
            in_use_at: parking_lot::Mutex::new(None),
            registry,
        };
        m.register_all(id).expect("metrics register once");
        m
    }

    fn register_all(&self, id: crate::ids::MemberId) -> prometheus::Result<()> {
        let r = &self.registry;
        oxcd_wal::metrics::register(r)?;
        oxcd_backend::metrics::register(r)?;
        oxcd_mvcc::metrics::register(r)?;
        for g in [
            &self.has_leader,
            &self.is_leader,
            &self.is_learner,
            &self.proposals_committed,
            &self.proposals_applied,
            &self.quota_backend_bytes,
            &self.db_size,
            &self.db_size_in_use,
            &self.current_revision,
            &self.compact_revision,
            &self.keys,
            &self.auth_revision,
            &PROPOSALS_PENDING,
            &SNAPSHOT_APPLY_IN_PROGRESS,
        ] {
            r.register(Box::new(IntGauge::clone(g)))?;
        }
        for c in [
            &LEADER_CHANGES,
            &PROPOSALS_FAILED,
            &SLOW_APPLY,
            &HEARTBEAT_SEND_FAILURES,
            &READ_INDEXES_FAILED,
            &SLOW_READ_INDEXES,
            &HEALTH_SUCCESS,
            &HEALTH_FAILURES,
            &LEARNER_PROMOTE_SUCCESSES,
            &LEASE_EXPIRED,
        ] {
            r.register(Box::new(IntCounter::clone(c)))?;
        }
        for v in [&PEER_SENT_BYTES, &PEER_RECEIVED_BYTES, &PEER_SENT_FAILURES, &LEARNER_PROMOTE_FAILURES] {
            r.register(Box::new(IntCounterVec::clone(v)))?;
        }
        r.register(Box::new(PEER_ROUND_TRIP.clone()))?;
        r.register(Box::new(APPLY_SECONDS.clone()))?;
        // Constant labels: which member, which version (etcd's `etcd_server_id`, `_version`).
        let constants = [
            (
                "etcd_server_version",
                "Which version is running. 1 for 'server_version' label with current version.",
                "server_version",
                crate::grpc::SERVER_VERSION.to_string(),
            ),
            (
                "etcd_cluster_version",
                "Which version is running. 1 for 'cluster_version' label with current cluster version",
                "cluster_version",
                crate::grpc::CLUSTER_VERSION.to_string(),
            ),
            (
                "etcd_server_id",
                "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
                "server_id",
                id.to_string(),
            ),
        ];
        for (name, help, label, value) in constants {
            let g = gauge_vec(name, help, label);
            g.with_label_values(&[value.as_str()]).set(1);
            r.register(Box::new(g))?;
        }
        r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
    }

    /// The text exposition of every metric, with the member's state read now.
    pub fn render(&self, server: &EtcdServer) -> String {
        let raft = &server.raft;
        let leader = raft.leader();
        self.has_leader.set((leader != 0) as i64);
        self.is_leader.set((leader == server.member_id().0) as i64);
        self.is_learner.set(server.is_learner() as i64);
        self.proposals_committed.set(raft.committed.load(Ordering::Acquire) as i64);
        self.proposals_applied.set(server.applied.load(Ordering::Acquire) as i64);
        self.quota_backend_bytes.set(server.cfg.quota_bytes() as i64);
        let store = server.store();
        self.current_revision.set(store.current_rev());
        self.compact_revision.set(store.compact_rev());
        self.keys.set(store.key_count() as i64);
        let backend = server.backend();
        self.db_size.set(backend.size_bytes() as i64);
        let mut at = self.in_use_at.lock();
        if at.is_none_or(|t| t.elapsed() >= IN_USE_EVERY)
            && let Ok(in_use) = backend.size_in_use_bytes()
        {
            self.db_size_in_use.set(in_use as i64);
            *at = Some(std::time::Instant::now());
        }
        drop(at);
        self.auth_revision.set(server.auth().revision() as i64);
        let mut out = String::with_capacity(64 << 10);
        if let Err(e) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }
}

/// Prometheus's text format, as Go's client serves it.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
