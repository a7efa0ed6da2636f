//! `oxcd-robust`: one run of the fault suite against a cluster of the oxcd built beside it.
//!
//!     cargo build --release -p oxcd -p oxcd-robust [--features oxcd/failpoints]
//!     target/release/oxcd-robust [--duration SECS] [--members N] [--clients N] [--keys N]
//!                                [--no-faults] [--failpoints] [--clock-jumps]
//!
//! `--failpoints` adds the faults made through failpoints (a slow disk, I/O errors): the oxcd
//! beside it must be built with them. `--clock-jumps` runs the members under libfaketime (Debian's
//! `faketime`) and steps the leader's wall clock.
//!
//! Exits 0 when every check holds, 1 with what was violated otherwise.

use std::time::Duration;

use oxcd_robust::{Options, run};
use oxcd_testkit::Binary;

#[tokio::main]
async fn main() {
    let mut opts = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> u64 {
            args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
                eprintln!("{name} needs a number");
                std::process::exit(2)
            })
        };
        match a.as_str() {
            "--duration" => opts.duration = Duration::from_secs(num("--duration")),
            "--members" => opts.members = num("--members") as usize,
            "--clients" => opts.clients = num("--clients") as usize,
            "--keys" => opts.keys = num("--keys") as usize,
            "--no-faults" => opts.faults = false,
            "--failpoints" => opts.failpoints = true,
            "--clock-jumps" => opts.clock_jumps = true,
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2)
            }
        }
    }
    let me = std::env::current_exe().expect("the path of this binary");
    let binary = Binary::Oxcd(oxcd_testkit::oxcd_beside(&me.to_string_lossy()));
    match run(binary, &opts).await {
        Ok(r) => {
            println!(
                "ok: {} operations answered, {} unknown, {} acknowledged writes all present, {} watched \
                 events in order through {} resumes; {} faults:",
                r.ok,
                r.unknown,
                r.acknowledged_writes,
                r.watched_events,
                r.watch_resumes,
                r.faults.len()
            );
            for f in &r.faults {
                println!("  {f}");
            }
        }
        Err(e) => {
            eprintln!("violation: {e:#}");
            std::process::exit(1);
        }
    }
}
