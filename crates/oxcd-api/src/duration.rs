//! Go's duration syntax, as etcd's and etcdctl's flags take it: `10m0s`, `1h2m3.5s`, `500ms`, `2s`.

use std::time::Duration;

/// Parses a Go duration string (units ns, us, µs, ms, s, m, h; "0" alone is zero).
pub fn parse(s: &str) -> Result<Duration, String> {
    let bad = || format!("time: invalid duration \"{s}\"");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(|| format!("time: missing unit in duration \"{s}\""))?;
        if n == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let secs = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            unit => return Err(format!("time: unknown unit \"{unit}\" in duration \"{s}\"")),
        };
        total += value * secs;
        rest = &rest[u..];
    }
    Ok(Duration::from_secs_f64(total))
}

/// Go's `time.Duration.String()`: `1.234567ms`, `850µs`, `2.5s`, `1m30s`.
pub fn format(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".to_string();
    }
    let trim = |v: String| -> String {
        if v.contains('.') { v.trim_end_matches('0').trim_end_matches('.').to_string() } else { v }
    };
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}µs", trim(format!("{}.{:03}", ns / 1_000, ns % 1_000)));
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", trim(format!("{}.{:06}", ns / 1_000_000, ns % 1_000_000)));
    }
    let total_s = ns / 1_000_000_000;
    let frac = ns % 1_000_000_000;
    let (h, m, s) = (total_s / 3600, (total_s / 60) % 60, total_s % 60);
    let secs = trim(format!("{s}.{frac:09}"));
    match (h, m) {
        (0, 0) => format!("{secs}s"),
        (0, m) => format!("{m}m{secs}s"),
        (h, m) => format!("{h}h{m}m{secs}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse("10m0s"), Ok(Duration::from_secs(600)));
        assert_eq!(parse("1h2m3.5s"), Ok(Duration::from_secs_f64(3723.5)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert!(parse("5").is_err());
        assert!(parse("5x").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn durations_print_as_go() {
        assert_eq!(format(Duration::from_nanos(1_234_567)), "1.234567ms");
        assert_eq!(format(Duration::from_micros(850)), "850µs");
        assert_eq!(format(Duration::from_millis(2500)), "2.5s");
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
        assert_eq!(format(Duration::from_nanos(12)), "12ns");
    }
}
