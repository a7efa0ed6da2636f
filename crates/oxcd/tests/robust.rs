//! The fault suite's short run (`oxcd-robust`; the long one is in the README): 10 clients on a
//! 3-member cluster while its members are killed, paused, partitioned, replaced and all killed at
//! once, and a watcher that resumes wherever its stream breaks; the history is linearizable,
//! every acknowledged write is there, the watcher saw every event once and in order, and the
//! members agree. Built with failpoints (`--features failpoints`, as scripts/test runs it a second
//! time), the faults also include a slow disk and I/O errors, after which a member must exit 1.

use std::time::Duration;

use oxcd_robust::{Options, run};
use oxcd_testkit::Binary;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_under_faults_stays_linearizable() {
    // Long enough for every kind of fault to come round once (9, or 12 with failpoints).
    let failpoints = cfg!(feature = "failpoints");
    let duration = Duration::from_secs(if failpoints { 60 } else { 40 });
    let opts = Options { duration, failpoints, clock_jumps: true, ..Default::default() };
    let report = run(Binary::Oxcd(env!("CARGO_BIN_EXE_oxcd").into()), &opts).await.unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("{report:?}");
    assert!(report.faults.len() >= 5, "{report:?}");
    assert!(report.faults.iter().any(|f| f.starts_with("partition")), "{report:?}");
    assert!(report.faults.iter().any(|f| f.contains("replaced by a new member")), "{report:?}");
    assert!(report.faults.iter().any(|f| f.contains("wall clock")), "{report:?}");
    if failpoints {
        assert!(report.faults.iter().any(|f| f.starts_with("I/O error")), "{report:?}");
    }
    assert!(report.acknowledged_writes > 50, "{report:?}");
    assert!(report.watched_events > 50 && report.watch_resumes > 0, "{report:?}");
}

/// The checker itself, on a history recorded against a healthy cluster: it must pass (the
/// checker's own self-test with planted anomalies is in `oxcd-robust`'s unit tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_healthy_cluster_passes() {
    let opts = Options { duration: Duration::from_secs(5), faults: false, ..Default::default() };
    let report = run(Binary::Oxcd(env!("CARGO_BIN_EXE_oxcd").into()), &opts).await.unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(report.unknown, 0, "{report:?}");
    assert!(report.ok > 100, "{report:?}");
}

/// The suite's partitions are real: a leader cut off from the others by the peer proxies loses
/// its quorum (its linearizable reads stop), the others elect a new leader and take writes, and
/// once healed the old leader follows and has those writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partitioned_leader_is_replaced() {
    use oxcd_testkit::{Cluster, ClusterOptions};
    let opts = ClusterOptions { size: 3, peer_proxy: true, ..Default::default() };
    let cl = Cluster::start(Binary::Oxcd(env!("CARGO_BIN_EXE_oxcd").into()), opts).await.unwrap();
    let old = cl.leader().await.unwrap();
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    cl.partition(&[vec![old], others.clone()]).await.unwrap();

    // The majority elects one of its own and takes a write.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (new_id, old_id) = loop {
        let mut c = cl.client(others[0]).await.unwrap();
        let st = c.status().await.unwrap();
        let mut o = cl.client(old).await.unwrap();
        let old_id = o.status().await.unwrap().header().unwrap().member_id();
        if st.leader() != 0 && st.leader() != old_id {
            break (st.leader(), old_id);
        }
        assert!(std::time::Instant::now() < deadline, "no new leader in the majority");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(new_id, old_id);
    let mut majority = cl.client(others[1]).await.unwrap();
    majority.put("robust/partitioned", "written in the majority", None).await.unwrap();
    // The isolated member cannot serve a linearizable read.
    let mut isolated = cl.client(old).await.unwrap();
    let read = tokio::time::timeout(Duration::from_secs(3), isolated.get("robust/partitioned", None)).await;
    assert!(!matches!(read, Ok(Ok(_))), "a member cut off from the majority answered a linearizable read: {read:?}");

    cl.heal();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut c = cl.client(old).await.unwrap();
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(2), c.get("robust/partitioned", None)).await
            && r.kvs().len() == 1
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the healed member never caught up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
