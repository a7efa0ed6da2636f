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

/// Configures the failpoints named in `FAILPOINTS`; keep the result for as long as the process
/// runs. Without the feature, nothing.
#[cfg(feature = "failpoints")]
pub fn setup() -> fail::FailScenario<'static> {
    fail::FailScenario::setup()
}

/// Configures the failpoints named in `FAILPOINTS`: compiled out.
#[cfg(not(feature = "failpoints"))]
pub fn setup() -> NoFailpoints {
    NoFailpoints
}

/// What [`setup`] returns in a build without failpoints.
#[cfg(not(feature = "failpoints"))]
pub struct NoFailpoints;
