//! Crash tests with real processes: members are killed with SIGKILL while clients write; every write
//! a client saw acknowledged must be there after restart, and every member must end with the same
//! revision and the same data. A lagging follower must catch up through a streamed snapshot.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Acked, check_converged, cluster, cluster_with, start_writers};
use etcd_client::{Client, GetOptions};
use oxcd_testkit::ClusterOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_members_killed_under_load_lose_no_acknowledged_write() {
    let mut cl = cluster(3).await;
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Acked = Arc::default();
    let writers = start_writers(cl.endpoints(), 6, stop.clone(), acked.clone());

    for round in 0..4 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let leader = cl.leader().await.unwrap();
        // Alternate: the leader, then a follower.
        let victim = if round % 2 == 0 { leader } else { (leader + 1) % 3 };
        cl.kill(victim);
        tokio::time::sleep(Duration::from_millis(700)).await;
        cl.restart(victim).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().await.clone();
    eprintln!("acknowledged writes: {}", acked.len());
    assert!(acked.len() > 50, "too few writes were acknowledged ({}) for the test to mean much", acked.len());
    check_converged(&cl, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_member_killed_mid_write_loses_nothing_acknowledged() {
    let mut cl = cluster(1).await;
    let acked: Acked = Arc::default();
    for _ in 0..3 {
        let stop = Arc::new(AtomicBool::new(false));
        let writers = start_writers(cl.endpoints(), 4, stop.clone(), acked.clone());
        tokio::time::sleep(Duration::from_millis(800)).await;
        // Killed while writes are in flight.
        cl.kill(0);
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.await.unwrap();
        }
        cl.restart(0).unwrap();
        cl.wait_ready(Duration::from_secs(30)).await.unwrap();
    }
    let acked = acked.lock().await.clone();
    eprintln!("acknowledged writes: {}", acked.len());
    assert!(acked.len() > 50, "too few acknowledged writes ({})", acked.len());
    check_converged(&cl, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lagging_follower_catches_up_from_a_streamed_snapshot() {
    let opts = ClusterOptions {
        size: 3,
        extra_args: ["--snapshot-count", "200", "--snapshot-catchup-entries", "20"].map(String::from).to_vec(),
        ..Default::default()
    };
    let mut cl = cluster_with(opts).await;
    let leader = cl.leader().await.unwrap();
    let lagging = (leader + 1) % 3;
    cl.kill(lagging);
    let mut c = cl.client(leader).await.unwrap();
    let mut acked = BTreeMap::new();
    for i in 0..1000 {
        let (k, v) = (format!("k{i:04}"), format!("v{i}"));
        c.put(k.clone(), v.clone(), None).await.unwrap();
        acked.insert(k, v);
    }
    c.compact(500, None).await.unwrap();
    cl.restart(lagging).unwrap();
    check_converged(&cl, &acked).await;
    let log = std::fs::read_to_string(cl.log_path(lagging)).unwrap();
    assert!(
        log.contains("installed backend snapshot"),
        "follower caught up without a snapshot:\n{}",
        cl.log_tail(lagging, 40)
    );
    // The follower's history starts at the compaction like everyone else's.
    let mut f = cl.client(lagging).await.unwrap();
    let err = f.get("k0001", Some(GetOptions::new().with_revision(100).with_serializable())).await.unwrap_err();
    assert_eq!(common::status(err).1, "etcdserver: mvcc: required revision has been compacted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_members_keep_serving_with_two_down_and_stop_without_quorum() {
    let mut cl = common::cluster(5).await;
    for i in 0..5 {
        cl.client(i).await.unwrap().put(format!("from-{i}"), "x", None).await.unwrap();
    }
    let leader = cl.leader().await.unwrap();
    // The leader and one follower go down: three of five is still a quorum.
    cl.kill(leader);
    cl.kill((leader + 1) % 5);
    let alive: Vec<usize> = (0..5).filter(|i| cl.is_running(*i)).collect();
    let mut c = cl.client(alive[0]).await.unwrap();
    let mut acked = BTreeMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while acked.len() < 20 {
        let k = format!("after-{}", acked.len());
        if c.put(k.clone(), "y", None).await.is_ok() {
            acked.insert(k, "y".to_string());
        }
        assert!(std::time::Instant::now() < deadline, "no progress with three of five members");
    }
    // A third member down: no quorum, writes fail (with leader required: at once).
    cl.kill(alive[1]);
    let opts = etcd_client::ConnectOptions::new().with_require_leader(true).with_timeout(Duration::from_secs(15));
    let mut c = Client::connect([cl.endpoint(alive[0])], Some(opts)).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        match c.put("no-quorum", "z", None).await {
            Ok(_) => panic!("write acknowledged without a quorum"),
            Err(e) => {
                if common::status(e).1 == "etcdserver: no leader" {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "never noticed the lost quorum");
            }
        }
    }
    // Everyone comes back and converges.
    for i in 0..5 {
        if !cl.is_running(i) {
            cl.restart(i).unwrap();
        }
    }
    for i in 0..5 {
        acked.insert(format!("from-{i}"), "x".to_string());
    }
    check_converged(&cl, &acked).await;
}
