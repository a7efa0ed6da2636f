//! The backend's Prometheus metrics, with etcd 3.5's names, types and buckets. Process-wide, as
//! etcd's are: the server registers them with [`register`].

use std::sync::LazyLock;

use prometheus::{Histogram, HistogramOpts, IntGauge, Registry, exponential_buckets};

fn histogram(name: &str, help: &str, start: f64, count: usize) -> Histogram {
    let buckets = exponential_buckets(start, 2.0, count).expect("valid buckets");
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid histogram")
}

/// `etcd_disk_backend_commit_duration_seconds`: each commit of a write transaction.
pub static COMMIT_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    histogram(
        "etcd_disk_backend_commit_duration_seconds",
        "The latency distributions of commit called by backend.",
        0.001,
        14,
    )
});

/// `etcd_disk_backend_defrag_duration_seconds`: each defragmentation.
pub static DEFRAG_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    histogram(
        "etcd_disk_backend_defrag_duration_seconds",
        "The latency distribution of backend defragmentation.",
        0.1,
        13,
    )
});

/// `etcd_disk_backend_snapshot_duration_seconds`: each snapshot of the backend written out.
pub static SNAPSHOT_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    histogram("etcd_disk_backend_snapshot_duration_seconds", "The latency distribution of backend snapshots.", 0.01, 17)
});

/// `etcd_disk_defrag_inflight`: 1 while a defragmentation runs.
pub static DEFRAG_INFLIGHT: LazyLock<IntGauge> = LazyLock::new(|| {
    IntGauge::new(
        "etcd_disk_defrag_inflight",
        "Whether or not defrag is active on the member. 1 means active, 0 means not.",
    )
    .expect("valid gauge")
});

/// Adds the backend's metrics to `registry`.
pub fn register(registry: &Registry) -> prometheus::Result<()> {
    registry.register(Box::new(COMMIT_SECONDS.clone()))?;
    registry.register(Box::new(DEFRAG_SECONDS.clone()))?;
    registry.register(Box::new(SNAPSHOT_SECONDS.clone()))?;
    registry.register(Box::new(DEFRAG_INFLIGHT.clone()))
}
