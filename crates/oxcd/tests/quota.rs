//! The backend quota and the NOSPACE alarm, on real processes, as etcd's docs walk through them:
//! writes stop at `--quota-backend-bytes` with etcd's error, the alarm is raised on every member and
//! survives a restart, deletes and reads go on, and compaction + defragmentation + `alarm disarm`
//! bring writes back. etcdctl 3.4 prints the alarm as it does for etcd.

mod common;

use std::time::Duration;

use common::{assert_etcd_error, cluster_with, status};
use etcd_client::{AlarmAction, AlarmType, CompactionOptions, DeleteOptions, GetOptions, Txn, TxnOp};
use oxcd_testkit::ClusterOptions;
use tonic::Code;

const NO_SPACE: &str = "etcdserver: mvcc: database space exceeded";

fn etcdctl_run(endpoint: &str, args: &[&str]) -> (String, String, i32) {
    let out = common::etcdctl(endpoint).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let err: Vec<&str> = err.lines().filter(|l| !l.starts_with("{\"level\"")).collect();
    (String::from_utf8(out.stdout).unwrap(), err.join("\n"), out.status.code().unwrap_or(-1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_stop_at_the_quota_and_come_back_after_compaction_defrag_and_disarm() {
    // The quota: what a fresh backend takes, plus 2 MiB.
    let probe = cluster_with(ClusterOptions::default()).await;
    let fresh = probe.client(0).await.unwrap().status().await.unwrap().db_size() as u64;
    drop(probe);
    let quota = (fresh + (2 << 20)).to_string();
    let opts =
        ClusterOptions { size: 3, extra_args: vec!["--quota-backend-bytes".into(), quota], ..Default::default() };
    let mut cl = cluster_with(opts).await;
    let leader = cl.leader().await.unwrap();
    let mut c = cl.client(leader).await.unwrap();
    let me = c.status().await.unwrap().header().unwrap().member_id();

    let value = "v".repeat(20_000);
    let mut written = 0;
    let refused = loop {
        match c.put(format!("k{written:04}"), value.as_str(), None).await {
            Ok(_) => written += 1,
            Err(e) => break status(e),
        }
        assert!(written < 2000, "the quota never stopped writes");
    };
    assert_eq!(refused, (Code::ResourceExhausted, NO_SPACE.to_string()));
    assert!(written > 5, "{written} puts before the quota");
    eprintln!("{written} puts of 20 kB before the quota");

    // Raised on every member, through Raft; listed as etcd lists it.
    let alarms = c.alarm(AlarmAction::Get, AlarmType::None, None).await.unwrap();
    assert_eq!(alarms.alarms().len(), 1);
    assert_eq!((alarms.alarms()[0].member_id(), alarms.alarms()[0].alarm()), (me, AlarmType::Nospace));
    let ep = cl.endpoint(leader);
    let want = format!("memberID:{me} alarm:NOSPACE \n");
    let (out, _, code) = tokio::task::block_in_place(|| etcdctl_run(&ep, &["alarm", "list"]));
    assert_eq!((out.as_str(), code), (want.as_str(), 0));
    for i in 0..3 {
        let mut m = cl.client(i).await.unwrap();
        // A follower applies the alarm a moment after the leader answered.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while m.status().await.unwrap().errors().is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The leader's alarm, and maybe a follower's: a follower whose own backend reached the quota
        // raises its own when the put below reaches it first (etcd's quota check is per member too).
        let errors = m.status().await.unwrap().errors().to_vec();
        assert!(errors.contains(&want.trim_end_matches('\n').to_string()), "{errors:?}");
        assert!(errors.iter().all(|e| e.ends_with("alarm:NOSPACE ")), "{errors:?}");
        // Every member refuses what takes space, whatever its own backend's size.
        assert_etcd_error(m.put("small", "x", None).await, Code::ResourceExhausted, NO_SPACE);
    }
    let put_txn = Txn::new().and_then([TxnOp::put("t", "1", None)]);
    assert_etcd_error(c.txn(put_txn.clone()).await, Code::ResourceExhausted, NO_SPACE);
    assert_etcd_error(c.lease_grant(60, None).await, Code::ResourceExhausted, NO_SPACE);
    // What frees or only reads space goes on.
    assert!(c.txn(Txn::new().and_then([TxnOp::get("k0000", None)])).await.unwrap().succeeded());
    assert_eq!(c.get("k", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap().count(), written);
    c.delete("k", Some(DeleteOptions::new().with_prefix())).await.unwrap();

    // The alarm outlives a restart.
    cl.kill(leader);
    cl.restart(leader).unwrap();
    cl.wait_ready(Duration::from_secs(30)).await.unwrap();
    let mut c = cl.client(leader).await.unwrap();
    assert_etcd_error(c.put("small", "x", None).await, Code::ResourceExhausted, NO_SPACE);

    // etcd's way out: compact, defragment every member, disarm.
    let rev = c.get("k", None).await.unwrap().header().unwrap().revision();
    c.compact(rev, Some(CompactionOptions::new().with_physical())).await.unwrap();
    for i in 0..3 {
        cl.client(i).await.unwrap().defragment().await.unwrap();
    }
    let (raised, _, _) = tokio::task::block_in_place(|| etcdctl_run(&ep, &["alarm", "list"]));
    assert!(raised.contains(&want), "{raised}");
    let (out, err, code) = tokio::task::block_in_place(|| etcdctl_run(&ep, &["alarm", "disarm"]));
    assert_eq!((out.as_str(), err.as_str(), code), (raised.as_str(), "", 0));
    let (out, _, code) = tokio::task::block_in_place(|| etcdctl_run(&ep, &["alarm", "disarm"]));
    assert_eq!((out.as_str(), code), ("", 0));
    assert!(c.alarm(AlarmAction::Get, AlarmType::None, None).await.unwrap().alarms().is_empty());
    c.put("small", "x", None).await.unwrap();
    c.txn(put_txn).await.unwrap();
    c.lease_grant(60, None).await.unwrap();
}
