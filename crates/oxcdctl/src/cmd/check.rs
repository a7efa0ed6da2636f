//! `check perf` (a paced write load for 60 s, judged on throughput, slowest request and spread) and
//! `check datascale` (a fixed number of writes, judged on the server's resident memory growth read
//! from its `/metrics`), with etcdctl's workloads and verdict lines.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use oxcd_api::etcdserverpb::{CompactionRequest, DefragmentRequest, DeleteRangeRequest, PutRequest, RangeRequest};

use crate::cli::{CheckCleanup, CheckCmd, Global};
use crate::client::{self, Conn};
use crate::error::{CtlError, EXIT_BAD_FEATURE, EXIT_ERROR, EXIT_INVALID_INPUT, Result};
use crate::printer::{Printer, outln};

fn model(load: &str) -> Result<&'static str> {
    Ok(match load {
        "s" | "small" => "s",
        "m" | "medium" => "m",
        "l" | "large" => "l",
        "xl" | "xLarge" => "xl",
        _ => return Err(CtlError::new(EXIT_BAD_FEATURE, format!("unknown load option {load}"))),
    })
}

/// Latencies and errors of a run.
#[derive(Default)]
struct Report {
    lat: Vec<f64>,
    errors: BTreeMap<String, u64>,
}

struct Stats {
    rps: f64,
    slowest: f64,
    stddev: f64,
}

impl Report {
    fn stats(&self, total: Duration) -> Stats {
        let n = self.lat.len().max(1) as f64;
        let mean = self.lat.iter().sum::<f64>() / n;
        let var = self.lat.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / n;
        Stats {
            rps: self.lat.len() as f64 / total.as_secs_f64(),
            slowest: self.lat.iter().copied().fold(0.0, f64::max),
            stddev: var.sqrt(),
        }
    }
}

/// A random 8-byte-varint key under `prefix`, padded to `size` bytes, as etcdctl makes them.
fn random_key(prefix: &str, size: usize, rng: &mut u64) -> Bytes {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    let mut k = prefix.as_bytes().to_vec();
    let mut v = ((*rng >> 1) as i64 as u64) << 1;
    let mut buf = vec![0u8; size];
    let mut i = 0;
    while v >= 0x80 && i < size {
        buf[i] = v as u8 | 0x80;
        v >>= 7;
        i += 1;
    }
    if i < size {
        buf[i] = v as u8;
    }
    k.extend_from_slice(&buf);
    Bytes::from(k)
}

/// `clients` writers sharing connections; `next` hands out the writes (None ends a writer).
async fn run_load(
    conns: &[Conn],
    clients: usize,
    next: Arc<dyn Fn() -> Option<PutRequest> + Send + Sync>,
    wait: Option<Arc<tokio::sync::Semaphore>>,
    progress: impl Fn() + Send + Sync + 'static,
) -> Report {
    let report = Arc::new(Mutex::new(Report::default()));
    let progress = Arc::new(progress);
    let mut tasks = Vec::new();
    for i in 0..clients {
        let conn = conns[i % conns.len()].clone();
        let (report, next, wait, progress) = (report.clone(), next.clone(), wait.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                if let Some(w) = &wait {
                    match w.acquire().await {
                        Ok(permit) => permit.forget(),
                        Err(_) => return,
                    }
                }
                let Some(req) = next() else { return };
                let st = Instant::now();
                let r = conn.kv().put(req).await;
                let took = st.elapsed().as_secs_f64();
                let mut rep = report.lock().expect("report");
                match r {
                    Ok(_) => rep.lat.push(took),
                    Err(e) => *rep.errors.entry(crate::error::status_text(&e)).or_default() += 1,
                }
                drop(rep);
                progress();
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Arc::try_unwrap(report).map(|m| m.into_inner().expect("report")).unwrap_or_default()
}

async fn ensure_empty(conn: &Conn, prefix: &str) -> Result<()> {
    let key = Bytes::from(prefix.to_string());
    let end = Bytes::from(super::kv::prefix_end(prefix.as_bytes()));
    let r = conn.call(conn.kv().range(RangeRequest { key, range_end: end, limit: 1, ..Default::default() })).await?;
    if !r.kvs.is_empty() {
        return Err(CtlError::new(
            EXIT_INVALID_INPUT,
            format!(
                "prefix {} has keys. Delete with etcdctl del --prefix {prefix} first",
                crate::gojson::quote(prefix)
            ),
        ));
    }
    Ok(())
}

/// Deletes the prefix; compacts (physically) to that revision if asked; defragments if asked.
async fn cleanup(g: &Global, conn: &Conn, prefix: &str, compact: bool, defrag: bool) -> Result<()> {
    let key = Bytes::from(prefix.to_string());
    let range_end = Bytes::from(super::kv::prefix_end(prefix.as_bytes()));
    let d = conn.call(conn.kv().delete_range(DeleteRangeRequest { key, range_end, prev_kv: false })).await?;
    if compact {
        let revision = d.header.unwrap_or_default().revision;
        println!("Compacting with revision {revision}");
        conn.call(conn.kv().compact(CompactionRequest { revision, physical: true })).await?;
        println!("Compacted with revision {revision}");
    }
    if defrag {
        for ep in &g.endpoints {
            println!("Defragmenting {}", crate::gojson::quote(ep));
            let c = client::connect_to(g, std::slice::from_ref(ep)).await?;
            match c.call(c.maintenance().defragment(DefragmentRequest {})).await {
                Ok(_) => println!("Defragmented {}", crate::gojson::quote(ep)),
                Err(e) => eprintln!("Failed to defragment etcd member[{ep}] ({})", e.msg),
            }
        }
    }
    Ok(())
}

pub async fn run(g: &Global, p: &mut Printer, cmd: CheckCmd) -> Result<()> {
    match cmd {
        CheckCmd::Perf(a) => perf(g, p, &a.load, &a.prefix, &a.cleanup).await,
        CheckCmd::Datascale(a) => datascale(g, p, &a.load, &a.prefix, &a.cleanup).await,
    }
}

async fn connections(g: &Global, n: usize) -> Result<Vec<Conn>> {
    let mut conns = Vec::new();
    for _ in 0..n.clamp(1, 16) {
        conns.push(client::connect(g).await?);
    }
    Ok(conns)
}

async fn perf(g: &Global, p: &mut Printer, load: &str, prefix: &str, c: &CheckCleanup) -> Result<()> {
    let (limit, clients) = match model(load)? {
        "s" => (150, 50),
        "m" => (1000, 200),
        "l" => (8000, 500),
        _ => (15000, 1000),
    };
    let duration = Duration::from_secs(60);
    let prefix = prefix.to_string();
    let conns = connections(g, clients).await?;
    ensure_empty(&conns[0], &prefix).await?;
    // A token bucket: `limit` writes a second for the duration.
    let tokens = Arc::new(tokio::sync::Semaphore::new(0));
    let started = Instant::now();
    let filler = {
        let tokens = tokens.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1) / limit);
            while started.elapsed() < duration {
                tick.tick().await;
                tokens.add_permits(1);
            }
            tokens.close();
        })
    };
    // The progress line as etcdctl's progress bar draws it without a terminal: `\r 12 / 60   20.00%
    // 00m48s`, once a second, and no newline (the verdict follows on the same line).
    let bar = tokio::spawn(async move {
        for i in 1..=60u64 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let left = 60 - i;
            let eta = if left > 0 { format!(" {:02}m{:02}s", left / 60, left % 60) } else { String::new() };
            print!("\r {i} / 60 {:6.2}%{eta}", i as f64 * 100.0 / 60.0);
            let _ = std::io::stdout().flush();
        }
    });
    let value = Bytes::from(vec![0u8; 1024]);
    let rng = Arc::new(Mutex::new(0x9E37_79B9_7F4A_7C15u64 ^ started.elapsed().as_nanos() as u64));
    let next = {
        let prefix = prefix.clone();
        Arc::new(move || {
            let key = random_key(&prefix, 256, &mut rng.lock().expect("rng"));
            Some(PutRequest { key, value: value.clone(), ..Default::default() })
        })
    };
    let report = run_load(&conns, clients, next, Some(tokens), || {}).await;
    let total = started.elapsed();
    let _ = filler.await;
    let _ = bar.await;
    cleanup(g, &conns[0], &prefix, c.auto_compact, c.auto_defrag).await?;
    let s = report.stats(total);
    let mut ok = true;
    if !report.errors.is_empty() {
        outln!(p, "FAIL: too many errors");
        for (k, v) in &report.errors {
            outln!(p, "FAIL: ERROR({k}) -> {v}");
        }
        ok = false;
    }
    if s.rps / limit as f64 <= 0.9 {
        outln!(p, "FAIL: Throughput too low: {} writes/s", s.rps as i64 + 1);
        ok = false;
    } else {
        outln!(p, "PASS: Throughput is {} writes/s", s.rps as i64 + 1);
    }
    if s.slowest > 0.5 {
        outln!(p, "Slowest request took too long: {:.6}s", s.slowest);
        ok = false;
    } else {
        outln!(p, "PASS: Slowest request took {:.6}s", s.slowest);
    }
    if s.stddev > 0.1 {
        outln!(p, "Stddev too high: {:.6}s", s.stddev);
        ok = false;
    } else {
        outln!(p, "PASS: Stddev is {:.6}s", s.stddev);
    }
    if ok {
        outln!(p, "PASS");
        Ok(())
    } else {
        outln!(p, "FAIL");
        p.flush();
        std::process::exit(EXIT_ERROR);
    }
}

/// `process_resident_memory_bytes` from the endpoint's `/metrics`, or 0 (after saying why).
fn resident_memory(p: &mut Printer, endpoint: &str) -> f64 {
    let host = endpoint.trim_start_matches("http://");
    let url = format!("http://{host}/metrics");
    let fetched = (|| -> std::io::Result<String> {
        let mut s = std::net::TcpStream::connect(host)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(s, "GET /metrics HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
        let mut body = String::new();
        s.read_to_string(&mut body)?;
        Ok(body)
    })();
    let body = match fetched {
        Ok(b) => b,
        Err(e) => {
            outln!(p, "fetch error: Get {}: {e}", crate::gojson::quote(&url));
            return 0.0;
        }
    };
    const KEY: &str = "process_resident_memory_bytes";
    let Some(v) = body.lines().find_map(|l| l.strip_prefix(KEY)) else {
        outln!(p, "could not find: {KEY}");
        return 0.0;
    };
    v.trim().parse().unwrap_or_else(|e| {
        outln!(p, "parse error: {e}");
        0.0
    })
}

async fn datascale(g: &Global, p: &mut Printer, load: &str, prefix: &str, c: &CheckCleanup) -> Result<()> {
    let (limit, clients) = match model(load)? {
        "s" => (10_000u64, 50),
        "m" => (100_000, 200),
        "l" => (1_000_000, 500),
        _ => (3_000_000, 1000),
    };
    let prefix = prefix.to_string();
    let conns = connections(g, clients).await?;
    ensure_empty(&conns[0], &prefix).await?;
    let before = resident_memory(p, &g.endpoints[0]);
    if before == 0.0 {
        outln!(p, "FAIL: Could not read process_resident_memory_bytes before the put operations.");
        p.flush();
        std::process::exit(EXIT_ERROR);
    }
    outln!(
        p,
        "Start data scale check for work load [{limit} key-value pairs, 1024 bytes per key-value, {clients} concurrent clients]."
    );
    p.flush();
    let value = Bytes::from(vec![0u8; 512]);
    let issued = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let rng = Arc::new(Mutex::new(0xD1B5_4A32_D192_ED03u64 ^ Instant::now().elapsed().as_nanos() as u64));
    let next = {
        let (prefix, issued) = (prefix.clone(), issued.clone());
        Arc::new(move || {
            if issued.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= limit {
                return None;
            }
            let key = random_key(&prefix, 512, &mut rng.lock().expect("rng"));
            Some(PutRequest { key, value: value.clone(), ..Default::default() })
        })
    };
    let report = run_load(&conns, clients, next, None, || {}).await;
    let after = resident_memory(p, &g.endpoints[0]);
    if after == 0.0 {
        outln!(p, "FAIL: Could not read process_resident_memory_bytes after the put operations.");
        p.flush();
        std::process::exit(EXIT_ERROR);
    }
    cleanup(g, &conns[0], &prefix, c.auto_compact, c.auto_defrag).await?;
    if !report.errors.is_empty() {
        outln!(p, "FAIL: too many errors");
        for (k, v) in &report.errors {
            outln!(p, "FAIL: ERROR({k}) -> {v}");
        }
        p.flush();
        std::process::exit(EXIT_ERROR);
    }
    outln!(p, "PASS: Approximate system memory used : {:.2} MB.", (after - before) / (1024.0 * 1024.0));
    Ok(())
}
