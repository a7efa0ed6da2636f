//! The WAL's Prometheus metrics, with etcd 3.5's names, types and buckets. Process-wide, as etcd's
//! are: the server registers them with [`register`].

use std::sync::LazyLock;

use prometheus::{Histogram, HistogramOpts, IntGauge, Registry, exponential_buckets};

/// `etcd_disk_wal_fsync_duration_seconds`: the latency of each WAL `fdatasync`.
pub static FSYNC_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    let opts =
        HistogramOpts::new("etcd_disk_wal_fsync_duration_seconds", "The latency distributions of fsync called by WAL.")
            .buckets(exponential_buckets(0.001, 2.0, 14).expect("valid buckets"));
    Histogram::with_opts(opts).expect("valid histogram")
});

/// `etcd_disk_wal_write_bytes_total`: bytes written to WAL files (a gauge in etcd 3.5).
pub static WRITE_BYTES: LazyLock<IntGauge> = LazyLock::new(|| {
    IntGauge::new("etcd_disk_wal_write_bytes_total", "Total number of bytes written in WAL.").expect("valid gauge")
});

/// Adds the WAL's metrics to `registry`.
pub fn register(registry: &Registry) -> prometheus::Result<()> {
    registry.register(Box::new(FSYNC_SECONDS.clone()))?;
    registry.register(Box::new(WRITE_BYTES.clone()))
}
