//! The progress bar etcd's benchmark draws (` 512 / 1000 Booooom     !  51.20% 2s`), redrawn every
//! 200 ms on stdout — only when stdout is a terminal, so that redirected output is the report alone.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Bar {
    done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    total: u64,
    started: Instant,
}

impl Bar {
    pub fn start(total: u64) -> Bar {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let task = std::io::stdout().is_terminal().then(|| {
            let (done, stop) = (done.clone(), stop.clone());
            tokio::spawn(async move {
                let mut last = u64::MAX;
                while !stop.load(Ordering::Relaxed) {
                    let n = done.load(Ordering::Relaxed);
                    if n != last {
                        draw(n, total, started, false);
                        last = n;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        });
        Bar { done, stop, task: Mutex::new(task), total, started }
    }

    pub fn inc(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    /// Draws the final line (elapsed time instead of the ETA) and ends it; once.
    pub fn finish(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(task) = self.task.lock().expect("bar lock").take() {
            task.abort();
            draw(self.done.load(Ordering::Relaxed), self.total, self.started, true);
            println!();
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn draw(n: u64, total: u64, started: Instant, finished: bool) {
    let width: usize = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).unwrap_or(80);
    let elapsed = started.elapsed();
    let pct = if total > 0 { n as f64 * 100.0 / total as f64 } else { 100.0 };
    let time = if finished {
        oxcd_api::duration::format(Duration::from_secs(elapsed.as_secs()))
    } else if n > 0 && n < total {
        let left = elapsed.mul_f64((total - n) as f64 / n as f64);
        oxcd_api::duration::format(Duration::from_secs(left.as_secs()))
    } else {
        String::new()
    };
    let head = format!("{n} / {total} ");
    let tail = format!(" {pct:6.02}% {time}");
    let room = width.saturating_sub(head.len() + tail.len() + 3);
    let filled = (room as u64 * n.min(total)).checked_div(total).map_or(room, |f| f as usize);
    let bar = match filled {
        0 => " ".repeat(room),
        f => format!("{}m{}", "o".repeat(f - 1), " ".repeat(room - f)),
    };
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "\r {head}B{bar}!{tail}");
    let _ = out.flush();
}
