//! Crash tests at every durable step: a member built with failpoints (`--features failpoints`,
//! see `oxcd-fail`) is killed between two durable steps, or fails one of them with an I/O error,
//! while clients write; restarted, it must hold every write a client saw acknowledged, with
//! revisions that count them. A follower is crashed at each step of installing a snapshot from
//! its leader, and must then catch up.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Acked, check_converged, cluster_with, start_writers};
use oxcd_testkit::{Cluster, ClusterOptions};

/// Crashes (or fails) member `i` at `point` by `action` (fail's syntax), under the writers' load,
/// and starts it again without failpoints.
async fn crash_at(cl: &mut Cluster, i: usize, point: &str, action: &str) {
    cl.kill(i);
    cl.set_env(i, &[("FAILPOINTS", &format!("{point}={action}"))]);
    cl.restart(i).unwrap();
    let exited = cl.wait_exit(i, Duration::from_secs(60)).await;
    assert!(exited, "member {i} never reached failpoint {point}:\n{}", cl.log_tail(i, 30));
    let log = std::fs::read_to_string(cl.log_path(i)).unwrap();
    let expected = if action.contains("error") { "injected I/O error" } else { "crashing" };
    assert!(
        log.contains(&format!("failpoint {point}: {expected}")),
        "member {i} ended otherwise:\n{}",
        cl.log_tail(i, 30)
    );
    if action.contains("error") {
        // A member stopped by a failed write exits non-zero, so that a supervisor restarts it.
        assert_eq!(cl.stop(i), Some(1), "exit status after {point}:\n{}", cl.log_tail(i, 30));
    }
    cl.set_env(i, &[]);
    cl.restart(i).unwrap();
    cl.wait_ready(Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("restart after {point}: {e}\n{}", cl.log_tail(i, 30)));
}

/// One member, crashed at each durable step in turn while four clients write and another
/// defragments now and then: after each restart, nothing acknowledged is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_crashed_at_each_durable_step_loses_no_acknowledged_write() {
    let opts = ClusterOptions {
        size: 1,
        extra_args: ["--snapshot-count", "100"].map(String::from).to_vec(),
        ..Default::default()
    };
    let mut cl = cluster_with(opts).await;
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Acked = Arc::default();
    let writers = start_writers(cl.endpoints(), 4, stop.clone(), acked.clone());
    let defrag = {
        let (stop, endpoint) = (stop.clone(), cl.endpoint(0));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if let Ok(mut c) = etcd_client::Client::connect([&endpoint], None).await {
                    let _ = c.defragment().await;
                }
            }
        })
    };
    // Steps met on every Ready or backend batch: crash once the member is under load.
    let every_batch = [
        "raftBeforeSave",
        "walBeforeSync",
        "walAfterFdatasync",
        "raftAfterSave",
        "applyBeforeConsistentIndex",
        "backendBeforeCommit",
        "backendAfterCommit",
    ];
    // Steps met now and then (a WAL snapshot every 100 entries, a defragmentation): the first time.
    let now_and_then =
        ["raftBeforeSaveSnap", "raftAfterSaveSnap", "raftAfterWALRelease", "defragBeforeCopy", "defragBeforeRename"];
    let mut before = 0;
    for point in every_batch {
        crash_at(&mut cl, 0, point, "50*off->return").await;
        let now = acked.lock().await.len();
        assert!(now > before, "no write acknowledged around {point}");
        before = now;
    }
    for point in now_and_then {
        crash_at(&mut cl, 0, point, "return").await;
    }
    // Injected I/O errors: the member stops on them, as on a failing disk.
    for point in ["walBeforeSync", "backendBeforeCommit"] {
        crash_at(&mut cl, 0, point, "50*off->return(error)").await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    defrag.await.unwrap();
    let acked = acked.lock().await.clone();
    eprintln!("acknowledged writes: {}", acked.len());
    check_converged(&cl, &acked).await;
}

/// A follower that fell behind the leader's compacted log is crashed at each step of installing
/// the leader's snapshot (before its WAL records it, after, after the backend file is replaced);
/// restarted, it catches up and holds every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_crashed_while_installing_a_snapshot_catches_up() {
    let opts = ClusterOptions {
        size: 3,
        extra_args: ["--snapshot-count", "100", "--snapshot-catchup-entries", "10"].map(String::from).to_vec(),
        ..Default::default()
    };
    let mut cl = cluster_with(opts).await;
    let mut acked = BTreeMap::new();
    for (round, point) in ["raftBeforeApplySnap", "raftAfterApplySnap", "applyAfterInstallSnap"].into_iter().enumerate()
    {
        let leader = cl.leader().await.unwrap();
        let follower = (leader + 1) % 3;
        cl.kill(follower);
        let mut c = cl.client(leader).await.unwrap();
        for i in 0..300 {
            let (k, v) = (format!("r{round}-{i:04}"), format!("v{i}"));
            c.put(k.clone(), v.clone(), None).await.unwrap();
            acked.insert(k, v);
        }
        // The follower gets a snapshot at its restart, and crashes at the step.
        cl.set_env(follower, &[("FAILPOINTS", &format!("{point}=return"))]);
        cl.restart(follower).unwrap();
        assert!(
            cl.wait_exit(follower, Duration::from_secs(60)).await,
            "follower never reached {point}:\n{}",
            cl.log_tail(follower, 30)
        );
        let log = std::fs::read_to_string(cl.log_path(follower)).unwrap();
        assert!(log.contains(&format!("failpoint {point}: crashing")), "{}", cl.log_tail(follower, 30));
        cl.set_env(follower, &[]);
        cl.restart(follower).unwrap();
        check_converged(&cl, &acked).await;
    }
}

/// A WAL fsync made slow by a failpoint is logged as etcd logs it ("slow fdatasync", with the
/// time taken and the threshold), and lands in the top buckets of the fsync histogram.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_fsync_is_logged_and_measured() {
    let mut cl = cluster_with(ClusterOptions { size: 1, ..Default::default() }).await;
    cl.kill(0);
    // The first fsyncs after the restart are quick, then one takes 1.2 s.
    cl.set_env(0, &[("FAILPOINTS", "walAfterFdatasync=3*off->1*sleep(1200)")]);
    cl.restart(0).unwrap();
    cl.wait_ready(Duration::from_secs(30)).await.unwrap();
    let mut c = cl.client(0).await.unwrap();
    for i in 0..5 {
        c.put(format!("k{i}"), "v", None).await.unwrap();
    }
    let log = std::fs::read_to_string(cl.log_path(0)).unwrap();
    let line = log.lines().find(|l| l.contains("\"msg\":\"slow fdatasync\"")).unwrap_or_else(|| {
        panic!("no slow fdatasync line:\n{}", cl.log_tail(0, 30));
    });
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["level"], "warn", "{line}");
    assert_eq!(v["expected-duration"], "1s", "{line}");
    let port: u16 = cl.client_url(0).rsplit(':').next().unwrap().parse().unwrap();
    let metrics = common::http_get(port, "/metrics").await;
    let count = |series: &str| -> f64 {
        let line = metrics.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("no {series}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let under_1s = count("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"1.024\"}");
    let all = count("etcd_disk_wal_fsync_duration_seconds_count");
    assert_eq!(all - under_1s, 1.0, "one fsync over 1.024 s");
}
