//! Latency collection and the report, in the shape and number format of etcd's benchmark report:
//! summary, ten-bucket response time histogram, latency distribution, error distribution and, with
//! `--sample`, a per-second time series. `--output json` gives the same figures to machines.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The percentiles etcd's report prints.
const PERCENTILES: [f64; 8] = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9];

/// How numbers print: etcd's `%4.4f`, or `%g` (every digit) with `--precise`.
#[derive(Clone, Copy, Debug)]
pub struct Format {
    pub precise: bool,
    pub sample: bool,
}

impl Format {
    fn num(self, x: f64) -> String {
        if self.precise { go_g(x) } else { format!("{x:4.4}") }
    }

    fn secs(self, x: f64) -> String {
        format!("{} secs", self.num(x))
    }
}

/// Go's `%g` / `%v` for a float64: the shortest digits that read back exactly, in exponent form
/// when the decimal exponent is below -4 or at least 6 (`1.23e-05`, `1.234567e+06`).
pub fn go_g(x: f64) -> String {
    if x == 0.0 {
        return "0".to_string();
    }
    if x.is_nan() {
        return "NaN".to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("integer exponent");
    if (-4..6).contains(&exp) {
        format!("{x}")
    } else {
        format!("{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    }
}

/// The wall clock at one instant, to turn request start instants into unix seconds.
fn unix_secs(t: Instant) -> i64 {
    static BASE: OnceLock<(Instant, Duration)> = OnceLock::new();
    let (at, unix) =
        BASE.get_or_init(|| (Instant::now(), SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()));
    let d = if t >= *at { *unix + (t - *at) } else { unix.saturating_sub(*at - t) };
    d.as_secs() as i64
}

/// Latencies of the requests started in one second.
#[derive(Clone, Copy, Debug)]
struct Second {
    min: Duration,
    max: Duration,
    total: Duration,
    count: u64,
}

impl Second {
    fn one(d: Duration) -> Second {
        Second { min: d, max: d, total: d, count: 1 }
    }

    /// Adds `other`'s requests. etcd keeps the first latency as the minimum, then ignores zeros.
    fn add(&mut self, other: Second) {
        if other.min < self.min && !other.min.is_zero() {
            self.min = other.min;
        }
        self.max = self.max.max(other.max);
        self.total += other.total;
        self.count += other.count;
    }
}

/// The results one worker collects; workers' recorders are merged into the report at the end.
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    lats: Vec<f64>,
    errors: BTreeMap<String, u64>,
    seconds: Option<BTreeMap<i64, Second>>,
}

impl Recorder {
    pub fn new(format: Format) -> Recorder {
        Recorder { seconds: format.sample.then(BTreeMap::new), ..Recorder::default() }
    }

    /// A request that started at `start` and ended at `end`, or failed with an error message.
    pub fn record(&mut self, start: Instant, end: Instant, result: Result<(), String>) {
        if let Err(e) = result {
            *self.errors.entry(e).or_default() += 1;
            return;
        }
        let d = end.saturating_duration_since(start);
        self.lats.push(d.as_secs_f64());
        if let Some(seconds) = &mut self.seconds {
            seconds.entry(unix_secs(start)).and_modify(|s| s.add(Second::one(d))).or_insert(Second::one(d));
        }
    }

    pub fn merge(&mut self, other: Recorder) {
        self.lats.extend(other.lats);
        for (e, n) in other.errors {
            *self.errors.entry(e).or_default() += n;
        }
        if let (Some(mine), Some(theirs)) = (&mut self.seconds, other.seconds) {
            for (sec, s) in theirs {
                mine.entry(sec).and_modify(|m| m.add(s)).or_insert(s);
            }
        }
    }
}

/// A report's clock runs from its creation (etcd starts it before the first request) to `finish`.
pub struct Report {
    format: Format,
    started: Instant,
}

impl Report {
    pub fn start(format: Format) -> Report {
        Report { format, started: Instant::now() }
    }

    pub fn recorder(&self) -> Recorder {
        Recorder::new(self.format)
    }

    pub fn finish(&self, mut all: Recorder) -> Summary {
        let total = self.started.elapsed().as_secs_f64();
        all.lats.sort_by(f64::total_cmp);
        let n = all.lats.len();
        let sum: f64 = all.lats.iter().sum();
        let average = if n > 0 { sum / n as f64 } else { 0.0 };
        let var = if n > 0 { all.lats.iter().map(|l| (l - average).powi(2)).sum::<f64>() / n as f64 } else { 0.0 };
        Summary {
            format: self.format,
            total,
            fastest: all.lats.first().copied().unwrap_or(0.0),
            slowest: all.lats.last().copied().unwrap_or(0.0),
            average,
            stddev: var.sqrt(),
            rps: n as f64 / total.max(1e-9),
            lats: all.lats,
            errors: all.errors,
            seconds: all.seconds,
        }
    }
}

/// The figures of a finished run.
pub struct Summary {
    format: Format,
    pub total: f64,
    pub fastest: f64,
    pub slowest: f64,
    pub average: f64,
    pub stddev: f64,
    pub rps: f64,
    /// Successful requests' latencies in seconds, ascending.
    pub lats: Vec<f64>,
    pub errors: BTreeMap<String, u64>,
    seconds: Option<BTreeMap<i64, Second>>,
}

impl Summary {
    /// etcd's percentiles: the first latency whose rank reaches each percentile (0 if none does).
    pub fn percentiles(&self) -> Vec<(f64, f64)> {
        let mut out = PERCENTILES.iter().map(|p| (*p, 0.0)).collect::<Vec<_>>();
        let n = self.lats.len();
        let mut j = 0;
        for (i, lat) in self.lats.iter().enumerate() {
            if j >= out.len() {
                break;
            }
            if i as f64 * 100.0 / n as f64 >= out[j].0 {
                out[j].1 = *lat;
                j += 1;
            }
        }
        out
    }

    /// Ten buckets of equal width between fastest and slowest, each labelled by its upper bound
    /// (the first holds only the fastest), plus one ending at the slowest.
    pub fn histogram(&self) -> Vec<(f64, u64)> {
        let bs = (self.slowest - self.fastest) / 10.0;
        let mut buckets: Vec<(f64, u64)> = (0..10).map(|i| (self.fastest + bs * i as f64, 0)).collect();
        buckets.push((self.slowest, 0));
        let mut bi = 0;
        let mut i = 0;
        while i < self.lats.len() {
            if self.lats[i] <= buckets[bi].0 {
                buckets[bi].1 += 1;
                i += 1;
            } else if bi < buckets.len() - 1 {
                bi += 1;
            } else {
                // Only reachable through rounding; count it in the last bucket.
                buckets[bi].1 += 1;
                i += 1;
            }
        }
        buckets
    }

    /// etcd's report text, number for number.
    pub fn to_text(&self) -> String {
        let f = self.format;
        let mut s = String::new();
        if !self.lats.is_empty() {
            let _ = write!(s, "\nSummary:\n");
            let _ = writeln!(s, "  Total:\t{}.", f.secs(self.total));
            let _ = writeln!(s, "  Slowest:\t{}.", f.secs(self.slowest));
            let _ = writeln!(s, "  Fastest:\t{}.", f.secs(self.fastest));
            let _ = writeln!(s, "  Average:\t{}.", f.secs(self.average));
            let _ = writeln!(s, "  Stddev:\t{}.", f.secs(self.stddev));
            let _ = writeln!(s, "  Requests/sec:\t{}", f.num(self.rps));
            let _ = write!(s, "\nResponse time histogram:\n");
            let hist = self.histogram();
            let max = hist.iter().map(|b| b.1).max().unwrap_or(0);
            for (mark, count) in hist {
                let bar = "∎".repeat((count * 40).checked_div(max).unwrap_or(0) as usize);
                let _ = writeln!(s, "  {} [{count}]\t|{bar}", f.num(mark));
            }
            let _ = write!(s, "\nLatency distribution:\n");
            for (p, v) in self.percentiles() {
                if v > 0.0 {
                    let _ = writeln!(s, "  {}% in {}.", go_g(p), f.secs(v));
                }
            }
            if let Some(seconds) = &self.seconds {
                let _ = write!(s, "\nSample in one second (unix latency throughput):\n");
                let _ = writeln!(s, "UNIX-SECOND,MIN-LATENCY-MS,AVG-LATENCY-MS,MAX-LATENCY-MS,AVG-THROUGHPUT");
                for (sec, p) in time_series(seconds) {
                    let avg = if p.count > 0 { p.total / p.count as u32 } else { Duration::ZERO };
                    let _ = writeln!(
                        s,
                        "{sec},{},{},{},{}",
                        oxcd_api::duration::format(p.min),
                        oxcd_api::duration::format(avg),
                        oxcd_api::duration::format(p.max),
                        p.count
                    );
                }
                s.push('\n');
            }
        }
        if !self.errors.is_empty() {
            let _ = write!(s, "\nError distribution:\n");
            for (e, n) in &self.errors {
                let _ = writeln!(s, "  [{n}]\t{e}");
            }
        }
        s
    }

    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "total_secs": self.total,
            "requests": self.lats.len(),
            "errors": self.errors.values().sum::<u64>(),
            "slowest_secs": self.slowest,
            "fastest_secs": self.fastest,
            "average_secs": self.average,
            "stddev_secs": self.stddev,
            "requests_per_sec": self.rps,
            "histogram": self.histogram().iter().map(|(le, n)| serde_json::json!({"le_secs": le, "count": n})).collect::<Vec<_>>(),
            "percentiles": self.percentiles().iter().map(|(p, v)| serde_json::json!({"percent": p, "secs": v})).collect::<Vec<_>>(),
            "error_distribution": self.errors,
        });
        if let Some(seconds) = &self.seconds {
            v["samples"] = time_series(seconds)
                .into_iter()
                .map(|(sec, p)| {
                    serde_json::json!({"unix_second": sec, "min_secs": p.min.as_secs_f64(), "max_secs": p.max.as_secs_f64(),
                        "avg_secs": if p.count > 0 { p.total.as_secs_f64() / p.count as f64 } else { 0.0 }, "count": p.count})
                })
                .collect();
        }
        v
    }
}

/// Every second from the first to the last, empty seconds included.
fn time_series(seconds: &BTreeMap<i64, Second>) -> Vec<(i64, Second)> {
    let (Some(first), Some(last)) = (seconds.keys().next(), seconds.keys().next_back()) else { return Vec::new() };
    let zero = Second { min: Duration::ZERO, max: Duration::ZERO, total: Duration::ZERO, count: 0 };
    (*first..=*last).map(|sec| (sec, seconds.get(&sec).copied().unwrap_or(zero))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary_of(ms: &[u64], errors: &[&str], format: Format) -> Summary {
        let report = Report::start(format);
        let mut rec = report.recorder();
        let t = Instant::now();
        for m in ms {
            rec.record(t, t + Duration::from_millis(*m), Ok(()));
        }
        for e in errors {
            rec.record(t, t, Err(e.to_string()));
        }
        report.finish(rec)
    }

    #[test]
    fn go_float_format() {
        assert_eq!(go_g(0.000123), "0.000123");
        assert_eq!(go_g(0.0000123), "1.23e-05");
        assert_eq!(go_g(12345.678901234), "12345.678901234");
        assert_eq!(go_g(1234567.0), "1.234567e+06");
        assert_eq!(go_g(99.9), "99.9");
        assert_eq!(go_g(10.0), "10");
        assert_eq!(go_g(0.0), "0");
    }

    #[test]
    fn percentiles_and_histogram_as_etcd() {
        let ms: Vec<u64> = (1..=100).collect();
        let s = summary_of(&ms, &[], Format { precise: false, sample: false });
        let p = s.percentiles();
        // The first latency whose rank i*100/n reaches p: index 10 for p10, 50 for p50, 99 for p99.
        assert_eq!(p[0], (10.0, 0.011));
        assert_eq!(p[2], (50.0, 0.051));
        assert_eq!(p[6], (99.0, 0.1));
        assert_eq!(p[7], (99.9, 0.0), "no rank reaches 99.9 with 100 samples");
        let h = s.histogram();
        assert_eq!(h.len(), 11);
        assert_eq!(h[0], (0.001, 1), "the first bucket holds only the fastest");
        assert_eq!(h.iter().map(|b| b.1).sum::<u64>(), 100);
        assert!((s.average - 0.0505).abs() < 1e-12);
    }

    #[test]
    fn text_matches_etcds_layout() {
        let s = summary_of(
            &[2, 2, 4],
            &["etcdserver: too many operations in txn request"],
            Format { precise: false, sample: false },
        );
        let text = s.to_text();
        assert!(text.starts_with("\nSummary:\n  Total:\t"), "{text}");
        assert!(text.contains("  Slowest:\t0.0040 secs.\n  Fastest:\t0.0020 secs.\n"), "{text}");
        assert!(
            text.contains("\nResponse time histogram:\n  0.0020 [2]\t|∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎\n"),
            "{text}"
        );
        assert!(text.contains("\nLatency distribution:\n  10% in 0.0020 secs.\n"), "{text}");
        assert!(
            text.ends_with("\nError distribution:\n  [1]\tetcdserver: too many operations in txn request\n"),
            "{text}"
        );
        let precise = summary_of(&[2], &[], Format { precise: true, sample: false }).to_text();
        assert!(precise.contains("  Fastest:\t0.002 secs.\n"), "{precise}");
    }

    #[test]
    fn errors_only_print_no_summary() {
        let s = summary_of(&[], &["x"], Format { precise: false, sample: false });
        assert_eq!(s.to_text(), "\nError distribution:\n  [1]\tx\n");
    }

    #[test]
    fn samples_per_second() {
        let s = summary_of(&[1, 3], &[], Format { precise: false, sample: true });
        let text = s.to_text();
        assert!(text.contains("UNIX-SECOND,MIN-LATENCY-MS,AVG-LATENCY-MS,MAX-LATENCY-MS,AVG-THROUGHPUT\n"));
        assert!(text.contains(",1ms,2ms,3ms,2\n"), "{text}");
    }
}
