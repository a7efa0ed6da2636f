//! The MVCC store's Prometheus metrics, with etcd 3.5's names, types and buckets, counted as etcd
//! counts them: every range, put and delete-range a request makes of the store (a transaction's
//! compares are ranges), and a transaction when a request made more than one of them. Process-wide,
//! as etcd's are: the server registers them with [`register`].

use std::sync::LazyLock;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry, exponential_buckets};

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).expect("valid counter")
}

fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).expect("valid gauge")
}

fn histogram(name: &str, help: &str, start: f64, count: usize) -> Histogram {
    let buckets = exponential_buckets(start, 2.0, count).expect("valid buckets");
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid histogram")
}

pub static RANGE: LazyLock<IntCounter> =
    LazyLock::new(|| counter("etcd_mvcc_range_total", "Total number of ranges seen by this member."));
pub static RANGE_DEBUGGING: LazyLock<IntCounter> =
    LazyLock::new(|| counter("etcd_debugging_mvcc_range_total", "Total number of ranges seen by this member."));
pub static PUT: LazyLock<IntCounter> =
    LazyLock::new(|| counter("etcd_mvcc_put_total", "Total number of puts seen by this member."));
pub static DELETE: LazyLock<IntCounter> =
    LazyLock::new(|| counter("etcd_mvcc_delete_total", "Total number of deletes seen by this member."));
pub static TXN: LazyLock<IntCounter> =
    LazyLock::new(|| counter("etcd_mvcc_txn_total", "Total number of txns seen by this member."));
pub static PUT_SIZE: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge("etcd_debugging_mvcc_total_put_size_in_bytes", "The total size of put kv pairs seen by this member.")
});
pub static COMPACTION_KEYS: LazyLock<IntCounter> =
    LazyLock::new(|| counter("etcd_debugging_mvcc_db_compaction_keys_total", "Total number of db keys compacted."));
pub static COMPACTION_LAST: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge("etcd_debugging_mvcc_db_compaction_last", "The unix time of the last db compaction. Resets to 0 on start.")
});
pub static COMPACTION_TOTAL_MS: LazyLock<Histogram> = LazyLock::new(|| {
    histogram(
        "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds",
        "Bucketed histogram of db compaction total duration.",
        100.0,
        14,
    )
});
pub static COMPACTION_PAUSE_MS: LazyLock<Histogram> = LazyLock::new(|| {
    histogram(
        "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
        "Bucketed histogram of db compaction pause duration.",
        1.0,
        13,
    )
});
pub static HASH_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    histogram("etcd_mvcc_hash_duration_seconds", "The latency distribution of storage hash operation.", 0.01, 15)
});
pub static HASH_REV_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    histogram(
        "etcd_mvcc_hash_rev_duration_seconds",
        "The latency distribution of storage hash by revision operation.",
        0.01,
        15,
    )
});
pub static EVENTS: LazyLock<IntCounter> =
    LazyLock::new(|| counter("etcd_debugging_mvcc_events_total", "Total number of events sent by this member."));
pub static WATCH_STREAMS: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("etcd_debugging_mvcc_watch_stream_total", "Total number of watch streams."));
pub static WATCHERS: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("etcd_debugging_mvcc_watcher_total", "Total number of watchers."));
pub static SLOW_WATCHERS: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("etcd_debugging_mvcc_slow_watcher_total", "Total number of unsynced slow watchers."));

/// What one request did to the store, added to the counters when it ends (etcd's
/// `metricsTxnWrite`).
#[derive(Debug, Default)]
pub(crate) struct OpCounts {
    /// Internal reads (a watcher's previous values) count nothing, as in etcd.
    pub internal: bool,
    pub ranges: std::cell::Cell<u32>,
    pub puts: u32,
    pub deletes: u32,
    pub put_bytes: usize,
}

impl OpCounts {
    pub fn range(&self) {
        self.ranges.set(self.ranges.get() + 1);
    }

    /// Adds these counts to the metrics.
    pub fn flush(&self) {
        if self.internal {
            return;
        }
        let ranges = self.ranges.get();
        if ranges + self.puts + self.deletes > 1 {
            TXN.inc();
        }
        if ranges > 0 {
            RANGE.inc_by(ranges.into());
            RANGE_DEBUGGING.inc_by(ranges.into());
        }
        if self.puts > 0 {
            PUT.inc_by(self.puts.into());
            PUT_SIZE.add(self.put_bytes as i64);
        }
        if self.deletes > 0 {
            DELETE.inc_by(self.deletes.into());
        }
    }
}

/// Adds the store's metrics to `registry`.
pub fn register(registry: &Registry) -> prometheus::Result<()> {
    for c in [&RANGE, &RANGE_DEBUGGING, &PUT, &DELETE, &TXN, &COMPACTION_KEYS, &EVENTS] {
        registry.register(Box::new(IntCounter::clone(c)))?;
    }
    for g in [&PUT_SIZE, &COMPACTION_LAST, &WATCH_STREAMS, &WATCHERS, &SLOW_WATCHERS] {
        registry.register(Box::new(IntGauge::clone(g)))?;
    }
    for h in [&COMPACTION_TOTAL_MS, &COMPACTION_PAUSE_MS, &HASH_SECONDS, &HASH_REV_SECONDS] {
        registry.register(Box::new(Histogram::clone(h)))?;
    }
    Ok(())
}
