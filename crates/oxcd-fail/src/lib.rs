//! Failpoints at oxcd's durable steps, so that tests can crash a member, or fail its I/O, between
//! any two of them. Built on tikv's `fail` crate and compiled in only with the `failpoints`
//! feature: without it, [`point`] is an inlined `Ok(())` and costs nothing.
//!
//! A member built with the feature reads `FAILPOINTS` at start (see [`setup`]):
//! `FAILPOINTS='raftAfterSave=20*off->return;backendBeforeCommit=return(error)'`. The actions:
//!
//! - `return` (or `return(crash)`): the process is killed with SIGKILL at that point, as `kill -9`
//!   would leave it: nothing buffered is written, no destructor runs;
//! - `return(error)`: the step fails with an injected I/O error (the member then stops, as it does
//!   on a real one: it never acknowledges what it could not persist);
//! - and `fail`'s own: `off`, `sleep(ms)`, `pause`, `panic`, `print`, counts (`20*`), chances
//!   (`5%`), chained with `->`.
//!
//! With `GOFAIL_HTTP=127.0.0.1:port` set, the member also takes failpoints while it runs, over
//! HTTP as etcd's gofail does (the fault suite makes a disk slow or failing that way).
//!
//! Where there is an etcd failpoint at the same step, the point has etcd's name (gofail's
//! `raftBeforeSave`, `raftAfterSave`, `defragBeforeRename`, ...). Every point is listed in
//! [`POINTS`], which the crash tests walk.

/// Every failpoint, in the order a member meets them: (name, the step it precedes or follows).
pub const POINTS: &[(&str, &str)] = &[
    ("raftBeforeSave", "the Raft thread is about to append entries and the HardState to the WAL and sync"),
    ("walBeforeSync", "the WAL is about to write its buffer and fdatasync (an I/O error here fails the sync)"),
    ("walAfterFdatasync", "the WAL's fdatasync returned, its latency not yet measured (a `sleep` makes it slow)"),
    ("raftAfterSave", "the WAL synced; messages that depend on it not yet sent, entries not yet applied"),
    ("applyBeforeConsistentIndex", "the applier wrote a batch of entries, not yet the consistent index"),
    ("backendBeforeCommit", "a backend transaction is about to commit (an I/O error here fails the commit)"),
    ("backendAfterCommit", "a backend transaction committed (durably or not, by the batch policy)"),
    ("raftBeforeSaveSnap", "the backend is durable to an index; the WAL snapshot record not yet written"),
    ("raftAfterSaveSnap", "the WAL snapshot record is synced; old segments not yet released"),
    ("raftAfterWALRelease", "WAL segments before the snapshot deleted"),
    ("raftBeforeApplySnap", "a follower received a backend snapshot; its WAL record not yet written"),
    ("raftAfterApplySnap", "the follower's WAL records the snapshot; the applier has not installed the file"),
    ("applyAfterInstallSnap", "the received backend file replaced the member's backend"),
    ("defragBeforeCopy", "defragmentation is about to copy the backend into a new file"),
    ("defragBeforeRename", "the defragmented copy is written, not yet renamed over the backend"),
];

/// Evaluates failpoint `name`: `Ok(())` unless a test configured it (see the crate docs).
#[cfg(feature = "failpoints")]
pub fn point(name: &str) -> std::io::Result<()> {
    debug_assert!(POINTS.iter().any(|(p, _)| *p == name), "failpoint {name} is not in POINTS");
    match fail::eval(name, |arg| arg) {
        None => Ok(()),
        Some(Some(arg)) if arg == "error" => {
            Err(std::io::Error::other(format!("failpoint {name}: injected I/O error")))
        }
        Some(_) => {
            eprintln!("failpoint {name}: crashing");
            // SAFETY: kill(2) on our own pid; the process ends here, as kill -9 ends it.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            unreachable!("SIGKILL delivered")
        }
    }
}

/// Evaluates failpoint `name`: compiled out, always `Ok(())`.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn point(_name: &str) -> std::io::Result<()> {
    Ok(())
}

/// Configures the failpoints named in `FAILPOINTS`, and serves `GOFAIL_HTTP` when it is set (see
/// [`serve_http`]); keep the result for as long as the process runs. Without the feature, nothing.
#[cfg(feature = "failpoints")]
pub fn setup() -> fail::FailScenario<'static> {
    let scenario = fail::FailScenario::setup();
    if let Ok(addr) = std::env::var("GOFAIL_HTTP") {
        match std::net::TcpListener::bind(&addr) {
            Ok(listener) => {
                std::thread::Builder::new()
                    .name("failpoint-http".into())
                    .spawn(move || serve_http(listener))
                    .expect("spawn the failpoint HTTP thread");
            }
            Err(e) => eprintln!("GOFAIL_HTTP {addr}: cannot listen: {e}"),
        }
    }
    scenario
}

/// Failpoints set while the member runs, over HTTP as etcd's gofail serves them on `GOFAIL_HTTP`:
/// `PUT /<name>` with the action as body (`curl -X PUT -d 'sleep(200)' host/walAfterFdatasync`),
/// `GET /<name>` its action, `GET /` every `name=action`, `DELETE /<name>` switches it off.
/// One request per connection; for tests only (a build without the feature has no such port).
#[cfg(feature = "failpoints")]
fn serve_http(listener: std::net::TcpListener) {
    use std::io::{BufRead, BufReader, Read, Write};
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
        let mut reader = BufReader::new(match stream.try_clone() {
            Ok(s) => s,
            Err(_) => continue,
        });
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = header.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0).min(1 << 16);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            continue;
        }
        let name = path.trim_start_matches('/');
        let known = POINTS.iter().any(|(p, _)| *p == name);
        let (status, text) = match (method, name) {
            ("GET", "") => {
                let mut list = fail::list();
                list.sort();
                ("200 OK", list.iter().map(|(n, a)| format!("{n}={a}\n")).collect())
            }
            (_, _) if !known => ("404 Not Found", format!("no failpoint {name}\n")),
            ("GET", _) => match fail::list().into_iter().find(|(n, _)| n == name) {
                Some((_, action)) => ("200 OK", format!("{action}\n")),
                None => ("404 Not Found", format!("failpoint {name} is not set\n")),
            },
            ("PUT", _) => match fail::cfg(name, String::from_utf8_lossy(&body).trim()) {
                Ok(()) => ("204 No Content", String::new()),
                Err(e) => ("400 Bad Request", format!("{e}\n")),
            },
            ("DELETE", _) => {
                fail::remove(name);
                ("204 No Content", String::new())
            }
            _ => ("405 Method Not Allowed", String::new()),
        };
        let _ =
            write!(stream, "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}", text.len());
    }
}

/// Configures the failpoints named in `FAILPOINTS`: compiled out.
#[cfg(not(feature = "failpoints"))]
pub fn setup() -> NoFailpoints {
    NoFailpoints
}

/// What [`setup`] returns in a build without failpoints.
#[cfg(not(feature = "failpoints"))]
pub struct NoFailpoints;
