//! Latency collection and the report, in etcd benchmark's shape: summary, histogram, percentiles.

use std::fmt::Write;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Latencies of one or more clients (microseconds).
pub struct Latencies {
    hist: Histogram<u64>,
    sum_us: f64,
    sum_sq_us: f64,
    errors: u64,
}

impl Latencies {
    pub fn new() -> Latencies {
        Latencies {
            hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"),
            sum_us: 0.0,
            sum_sq_us: 0.0,
            errors: 0,
        }
    }

    pub fn record(&mut self, d: Duration, ok: bool) {
        if !ok {
            self.errors += 1;
            return;
        }
        let us = (d.as_micros() as u64).clamp(1, 60_000_000);
        self.hist.record(us).expect("within bounds");
        self.sum_us += us as f64;
        self.sum_sq_us += (us as f64) * (us as f64);
    }

    pub fn merge(&mut self, other: Latencies) {
        self.hist.add(&other.hist).expect("same bounds");
        self.sum_us += other.sum_us;
        self.sum_sq_us += other.sum_sq_us;
        self.errors += other.errors;
    }

    pub fn errors(&self) -> u64 {
        self.errors
    }

    pub fn summary(&self, elapsed: Duration) -> Summary {
        let n = self.hist.len();
        let avg = if n > 0 { self.sum_us / n as f64 } else { 0.0 };
        let var = if n > 0 { (self.sum_sq_us / n as f64 - avg * avg).max(0.0) } else { 0.0 };
        Summary {
            total_secs: elapsed.as_secs_f64(),
            requests: n,
            errors: self.errors,
            slowest: self.hist.max() as f64 / 1e6,
            fastest: if n > 0 { self.hist.min() as f64 / 1e6 } else { 0.0 },
            average: avg / 1e6,
            stddev: var.sqrt() / 1e6,
            rps: n as f64 / elapsed.as_secs_f64().max(1e-9),
            percentiles: [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99]
                .iter()
                .map(|p| (*p, self.hist.value_at_quantile(p / 100.0) as f64 / 1e6))
                .collect(),
            histogram: self.buckets(),
        }
    }

    /// Ten equal-width buckets between fastest and slowest, as etcd's report draws them.
    fn buckets(&self) -> Vec<(f64, u64)> {
        if self.hist.is_empty() {
            return Vec::new();
        }
        let (lo, hi) = (self.hist.min(), self.hist.max());
        let step = ((hi - lo) / 10).max(1);
        let n = ((hi - lo) / step + 1) as usize;
        let mut counts = vec![0u64; n];
        for v in self.hist.iter_recorded() {
            let at = self.hist.median_equivalent(v.value_iterated_to()).clamp(lo, hi);
            counts[((at - lo) / step) as usize] += v.count_at_value();
        }
        counts.into_iter().enumerate().map(|(i, c)| ((lo + i as u64 * step) as f64 / 1e6, c)).collect()
    }
}

/// The result of a run.
pub struct Summary {
    pub total_secs: f64,
    pub requests: u64,
    pub errors: u64,
    pub slowest: f64,
    pub fastest: f64,
    pub average: f64,
    pub stddev: f64,
    pub rps: f64,
    pub percentiles: Vec<(f64, f64)>,
    pub histogram: Vec<(f64, u64)>,
}

impl Summary {
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "\nSummary:");
        let _ = writeln!(s, "  Total:\t{:.4} secs.", self.total_secs);
        let _ = writeln!(s, "  Slowest:\t{:.4} secs.", self.slowest);
        let _ = writeln!(s, "  Fastest:\t{:.4} secs.", self.fastest);
        let _ = writeln!(s, "  Average:\t{:.4} secs.", self.average);
        let _ = writeln!(s, "  Stddev:\t{:.4} secs.", self.stddev);
        let _ = writeln!(s, "  Requests/sec:\t{:.4}", self.rps);
        let _ = writeln!(s, "\nResponse time histogram:");
        let max = self.histogram.iter().map(|b| b.1).max().unwrap_or(1).max(1);
        for (mark, count) in &self.histogram {
            let bar = "∎".repeat((count * 40 / max) as usize);
            let _ = writeln!(s, "  {mark:.4} [{count}]\t|{bar}");
        }
        let _ = writeln!(s, "\nLatency distribution:");
        for (p, v) in &self.percentiles {
            let _ = writeln!(s, "  {p}% in {v:.4} secs.");
        }
        s
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "total_secs": self.total_secs,
            "requests": self.requests,
            "errors": self.errors,
            "slowest_secs": self.slowest,
            "fastest_secs": self.fastest,
            "average_secs": self.average,
            "stddev_secs": self.stddev,
            "requests_per_sec": self.rps,
            "percentiles": self.percentiles.iter().map(|(p, v)| serde_json::json!({"percent": p, "secs": v})).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_known_latencies() {
        let mut l = Latencies::new();
        for ms in 1..=100u64 {
            l.record(Duration::from_millis(ms), true);
        }
        l.record(Duration::from_millis(5), false);
        let s = l.summary(Duration::from_secs(2));
        assert_eq!((s.requests, s.errors), (100, 1));
        assert!((s.average - 0.0505).abs() < 0.001, "{}", s.average);
        assert!((s.rps - 50.0).abs() < 1e-9);
        let p50 = s.percentiles.iter().find(|(p, _)| *p == 50.0).unwrap().1;
        assert!((p50 - 0.050).abs() < 0.001, "{p50}");
        assert_eq!(s.histogram.iter().map(|b| b.1).sum::<u64>(), 100);
    }
}
