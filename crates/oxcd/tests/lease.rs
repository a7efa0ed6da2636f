//! Leases through the `etcd-client` crate against real `oxcd` processes: grant, revoke, keep-alive,
//! TimeToLive, listing, keys deleted on revoke and expiry (one revision, seen by watchers, the same
//! on every member), persistence across restarts, forwarding from followers, remaining TTLs kept
//! across leader changes, and a mass expiry under write load.

mod common;

use std::time::{Duration, Instant};

use common::{assert_etcd_error, cluster, cluster_with};
use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, LeaseGrantOptions, PutOptions, Txn, TxnOp, WatchOptions,
};
use oxcd_testkit::ClusterOptions;
use tonic::Code;

async fn exists(c: &mut Client, key: &str) -> bool {
    !c.get(key, Some(GetOptions::new().with_serializable())).await.unwrap().kvs().is_empty()
}

#[tokio::test]
async fn grant_revoke_keep_alive_time_to_live_and_list() {
    let cl = cluster(1).await; // election timeout 500 ms: minimum TTL 1 s
    let mut c = cl.client(0).await.unwrap();

    // Server-chosen and client-chosen ids (a TTL below the minimum is raised: see the end).
    let g = c.lease_grant(60, None).await.unwrap();
    assert!(g.id() > 0);
    assert_eq!(g.ttl(), 60);
    let g2 = c.lease_grant(60, Some(LeaseGrantOptions::new().with_id(0x7777))).await.unwrap();
    assert_eq!((g2.id(), g2.ttl()), (0x7777, 60));
    assert_etcd_error(
        c.lease_grant(30, Some(LeaseGrantOptions::new().with_id(0x7777))).await,
        Code::FailedPrecondition,
        "etcdserver: lease already exists",
    );
    assert_etcd_error(c.lease_grant(9_000_000_001, None).await, Code::OutOfRange, "etcdserver: too large lease TTL");

    // Keys attach; TimeToLive reports them; LeaseLeases lists every lease.
    c.put("a", "1", Some(PutOptions::new().with_lease(g.id()))).await.unwrap();
    c.put("b", "1", Some(PutOptions::new().with_lease(g.id()))).await.unwrap();
    c.put("b", "2", Some(PutOptions::new().with_ignore_lease())).await.unwrap();
    let t = c.lease_time_to_live(g.id(), Some(etcd_client::LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
    assert_eq!(t.granted_ttl(), 60);
    assert!((58..=60).contains(&t.ttl()), "{}", t.ttl());
    let mut keys: Vec<_> = t.keys().iter().map(|k| String::from_utf8(k.clone()).unwrap()).collect();
    keys.sort();
    assert_eq!(keys, ["a", "b"]);
    let unknown = c.lease_time_to_live(0x1234, None).await.unwrap();
    assert_eq!(unknown.ttl(), -1, "unknown leases are TTL -1, not an error");
    let mut ids: Vec<i64> = c.leases().await.unwrap().leases().iter().map(|l| l.id()).collect();
    ids.sort();
    assert_eq!(ids, {
        let mut v = vec![g.id(), 0x7777];
        v.sort();
        v
    });

    // Txn compare on LEASE.
    let r = c
        .txn(Txn::new().when([Compare::lease("a", CompareOp::Equal, g.id())]).and_then([TxnOp::put("seen", "y", None)]))
        .await
        .unwrap();
    assert!(r.succeeded());

    // Keep-alive through etcd-client's keeper, then many leases on one raw stream; an unknown
    // lease renews to TTL 0.
    // (etcd-client reads the first answer itself and fails on TTL 0.)
    let (mut keeper, mut stream) = c.lease_keep_alive(g.id()).await.unwrap();
    keeper.keep_alive().await.unwrap();
    assert_eq!(stream.message().await.unwrap().unwrap().ttl(), 60);
    let raw = raw_keep_alive(&cl, &[g.id(), 0x7777, 0x4242]).await;
    assert_eq!(raw, vec![(g.id(), 60), (0x7777, 60), (0x4242, 0)]);

    // Revoke: attached keys go in one revision, and watchers see the deletes.
    let mut w = c.watch("", Some(WatchOptions::new().with_all_keys())).await.unwrap();
    w.message().await.unwrap(); // created
    let rev = c.lease_revoke(g.id()).await.unwrap().header().unwrap().revision();
    let ev = w.message().await.unwrap().unwrap();
    assert_eq!(ev.events().len(), 2, "both keys in one response");
    assert!(ev.events().iter().all(|e| e.event_type() == EventType::Delete && e.kv().unwrap().mod_revision() == rev));
    assert!(!exists(&mut c, "a").await && !exists(&mut c, "b").await);
    assert_etcd_error(c.lease_revoke(g.id()).await, Code::NotFound, "etcdserver: requested lease not found");
    assert_etcd_error(
        c.put("c", "1", Some(PutOptions::new().with_lease(g.id()))).await,
        Code::NotFound,
        "etcdserver: requested lease not found",
    );

    // A TTL below the minimum is raised to it (1 s here); that lease, with a key, expires, and
    // keep-alive of it then answers TTL 0. (Nothing else happens in its one second.)
    let short = c.lease_grant(0, Some(LeaseGrantOptions::new().with_id(0x7778))).await.unwrap();
    assert_eq!((short.id(), short.ttl()), (0x7778, 1));
    c.put("short", "1", Some(PutOptions::new().with_lease(0x7778))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!exists(&mut c, "short").await, "the key of an expired lease is deleted");
    assert_eq!(raw_keep_alive(&cl, &[0x7778]).await, vec![(0x7778, 0)]);
}

/// Renews `ids` on one keep-alive stream of the generated client; returns (id, TTL) answers.
async fn raw_keep_alive(cl: &oxcd_testkit::Cluster, ids: &[i64]) -> Vec<(i64, i64)> {
    use oxcd_api::etcdserverpb::LeaseKeepAliveRequest;
    use oxcd_api::etcdserverpb::lease_client::LeaseClient;
    let ch =
        tonic::transport::Channel::from_shared(format!("http://{}", cl.endpoint(0))).unwrap().connect().await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(ids.len() + 1);
    for id in ids {
        tx.send(LeaseKeepAliveRequest { id: *id }).await.unwrap();
    }
    let mut s = LeaseClient::new(ch)
        .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    for _ in ids {
        let r = s.message().await.unwrap().unwrap();
        out.push((r.id, r.ttl));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expiry_is_the_same_revision_everywhere_and_followers_forward_keep_alives() {
    let cl = cluster(3).await;
    let leader = cl.leader().await.unwrap();
    let follower = (leader + 1) % 3;
    let mut f = cl.client(follower).await.unwrap();
    let short = f.lease_grant(2, None).await.unwrap().id();
    let kept = f.lease_grant(2, None).await.unwrap().id();
    f.put("short/k", "v", Some(PutOptions::new().with_lease(short))).await.unwrap();
    f.put("kept/k", "v", Some(PutOptions::new().with_lease(kept))).await.unwrap();
    // Keep `kept` alive through the follower (forwarded to the leader) for 4 s.
    let (mut keeper, mut stream) = f.lease_keep_alive(kept).await.unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        keeper.keep_alive().await.unwrap();
        assert_eq!(stream.message().await.unwrap().unwrap().ttl(), 2);
    }
    // TimeToLive through the follower is the leader's answer.
    let t = f.lease_time_to_live(kept, None).await.unwrap();
    assert!((1..=2).contains(&t.ttl()), "{}", t.ttl());
    let mut revs = Vec::new();
    for i in 0..3 {
        // Renewed again before each member is asked: the checks take time on a slow machine.
        keeper.keep_alive().await.unwrap();
        assert_eq!(stream.message().await.unwrap().unwrap().ttl(), 2);
        let mut c = cl.client(i).await.unwrap();
        c.get("barrier", None).await.unwrap();
        assert!(!exists(&mut c, "short/k").await, "member {i} still has the expired key");
        assert!(exists(&mut c, "kept/k").await, "member {i} lost the renewed key");
        // The delete happened at the same revision on every member.
        let w = c.watch("short/", Some(WatchOptions::new().with_prefix().with_start_revision(1))).await.unwrap();
        let (_, mut ws) = w.split();
        let mut del = None;
        while del.is_none() {
            let r = ws.message().await.unwrap().unwrap();
            del =
                r.events().iter().find(|e| e.event_type() == EventType::Delete).map(|e| e.kv().unwrap().mod_revision());
        }
        revs.push(del.unwrap());
    }
    assert!(revs.windows(2).all(|w| w[0] == w[1]), "delete revisions differ: {revs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_survive_member_and_cluster_restarts() {
    let mut cl = cluster(3).await;
    let mut c = cl.client_all().await.unwrap();
    let id = c.lease_grant(30, None).await.unwrap().id();
    c.put("k", "v", Some(PutOptions::new().with_lease(id))).await.unwrap();
    let short = c.lease_grant(3, None).await.unwrap().id();
    c.put("s", "v", Some(PutOptions::new().with_lease(short))).await.unwrap();
    // One member restarts.
    cl.kill(0);
    cl.restart(0).unwrap();
    cl.wait_ready(Duration::from_secs(30)).await.unwrap();
    // The whole cluster restarts.
    for i in 0..3 {
        cl.kill(i);
    }
    for i in 0..3 {
        cl.restart(i).unwrap();
    }
    cl.wait_ready(Duration::from_secs(30)).await.unwrap();
    let mut c = cl.client_all().await.unwrap();
    let t = c.lease_time_to_live(id, Some(etcd_client::LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
    assert_eq!(t.granted_ttl(), 30);
    assert!(t.ttl() > 0 && t.ttl() <= 30, "{}", t.ttl());
    assert_eq!(t.keys(), [b"k".to_vec()]);
    assert!(exists(&mut c, "k").await);
    // The short lease still expires after the restarts.
    let deadline = Instant::now() + Duration::from_secs(15);
    while exists(&mut c, "s").await {
        assert!(Instant::now() < deadline, "the 3 s lease outlived the restarts by far");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// etcd #9395: a leader change must not reset remaining TTLs, or keys never expire under frequent
/// elections. A 10 s lease, two leader changes within it, and the key goes within a second or two
/// of the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn remaining_ttl_survives_two_leader_changes() {
    let opts = ClusterOptions { size: 3, heartbeat_ms: 100, election_ms: 1000, ..Default::default() };
    let mut cl = cluster_with(opts).await;
    let mut c = cl.client_all().await.unwrap();
    let id = c.lease_grant(10, None).await.unwrap().id();
    let granted = Instant::now();
    c.put("ttl", "v", Some(PutOptions::new().with_lease(id))).await.unwrap();
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let leader = cl.leader().await.unwrap();
        cl.kill(leader);
        // A new leader among the others.
        let deadline = Instant::now() + Duration::from_secs(10);
        while cl.leader().await.unwrap() == leader {
            assert!(Instant::now() < deadline);
        }
        cl.restart(leader).unwrap();
    }
    // No wait for the restarted member: a slow start must not delay the first look.
    let mut c = cl.client_all().await.unwrap();
    let gone = loop {
        // A failed read (a member still starting) says nothing; ask again.
        if let Ok(r) = c.get("ttl", Some(GetOptions::new().with_serializable())).await
            && r.kvs().is_empty()
        {
            break granted.elapsed();
        }
        assert!(granted.elapsed() < Duration::from_secs(25), "the key outlived its lease by far");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("10 s lease with two leader changes: key gone after {:.2} s", gone.as_secs_f64());
    assert!(gone >= Duration::from_secs(10), "expired early: {gone:?}");
    assert!(
        gone <= Duration::from_secs(12),
        "expired {:.1} s late (leader changes reset the TTL?)",
        gone.as_secs_f64() - 10.0
    );
}

/// 10,000 leases of 10 keys each expire at once while clients keep writing: writes keep being
/// served (their latency is printed) and every attached key is gone afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mass_expiry_does_not_stop_writes() {
    const LEASES: usize = 10_000;
    const KEYS_PER_LEASE: usize = 10;
    let cl = cluster(1).await;
    let c = cl.client(0).await.unwrap();
    // All leases get the same TTL, granted as fast as possible so they expire close together.
    let ttl = 20;
    let setup = Instant::now();
    let tasks = 32;
    let ids = common::grant_leases(&c, LEASES, ttl, tasks).await;
    let granted = setup.elapsed();
    let ids = std::sync::Arc::new(ids);
    let attachers: Vec<_> = (0..tasks)
        .map(|w| {
            let mut c = c.clone();
            let ids = ids.clone();
            tokio::spawn(async move {
                for i in (w..LEASES).step_by(tasks) {
                    let ops: Vec<_> = (0..KEYS_PER_LEASE)
                        .map(|k| {
                            TxnOp::put(format!("leased/{i:05}/{k}"), "v", Some(PutOptions::new().with_lease(ids[i])))
                        })
                        .collect();
                    c.txn(Txn::new().and_then(ops)).await.unwrap();
                }
            })
        })
        .collect();
    for a in attachers {
        a.await.unwrap();
    }
    eprintln!(
        "granted {LEASES} leases in {:.1} s, attached keys by {:.1} s",
        granted.as_secs_f64(),
        setup.elapsed().as_secs_f64()
    );
    assert!(setup.elapsed() < Duration::from_secs(ttl as u64 - 2), "setup took longer than the TTL allows");
    let mut c2 = cl.client(0).await.unwrap();
    let n = c2.get("leased/", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap().count();
    assert_eq!(n as usize, LEASES * KEYS_PER_LEASE);
    // Writers run through the expiry, until every attached key is gone, recording latencies.
    let until = setup + Duration::from_secs(ttl as u64 + 10);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let mut c = c.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < until {
                    let t = Instant::now();
                    c.put(format!("writer/{w}"), "x", None).await.unwrap();
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<Duration> = Vec::new();
    for w in writers {
        lat.extend(w.await.unwrap());
    }
    lat.sort();
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
    eprintln!(
        "writes during the expiry of {LEASES} leases x {KEYS_PER_LEASE} keys: {} writes, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lat.len(),
        p(0.5),
        p(0.99),
        p(1.0)
    );
    assert!(lat.len() > 100, "writes stalled during the expiry");
    assert!(p(1.0) < 3000.0, "a write waited {:.0} ms", p(1.0));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = c2.get("leased/", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap().count();
        if n == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{n} attached keys left after the expiry");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(c2.leases().await.unwrap().leases().is_empty());
}

/// Revoking one lease with 100,000 keys deletes them all in one revision; the time it holds up
/// other writes is printed (the deletes are one backend transaction; see docs/design.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoking_a_lease_with_100k_keys_is_one_revision() {
    const KEYS: usize = 100_000;
    let cl = cluster(1).await;
    let c = cl.client(0).await.unwrap();
    let id = c.clone().lease_grant(600, None).await.unwrap().id();
    let attachers: Vec<_> = (0..8)
        .map(|w| {
            let mut c = c.clone();
            tokio::spawn(async move {
                for t in (w..KEYS / 100).step_by(8) {
                    let ops: Vec<_> = (0..100)
                        .map(|i| {
                            TxnOp::put(format!("big/{:06}", t * 100 + i), "v", Some(PutOptions::new().with_lease(id)))
                        })
                        .collect();
                    c.txn(Txn::new().and_then(ops)).await.unwrap();
                }
            })
        })
        .collect();
    for a in attachers {
        a.await.unwrap();
    }
    let mut w = c.clone().watch("big/", Some(WatchOptions::new().with_prefix())).await.unwrap();
    w.message().await.unwrap(); // created
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let mut c = c.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                c.put("other", "x", None).await.unwrap();
                worst = worst.max(t.elapsed());
            }
            worst
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    let rev = c.clone().lease_revoke(id).await.unwrap().header().unwrap().revision();
    let took = t.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let worst = writer.await.unwrap();
    eprintln!(
        "revoke of a lease with {KEYS} keys: {} ms; slowest concurrent write {} ms",
        took.as_millis(),
        worst.as_millis()
    );
    let mut n = 0;
    while n < KEYS {
        let r = w.message().await.unwrap().unwrap();
        assert!(
            r.events().iter().all(|e| e.event_type() == EventType::Delete && e.kv().unwrap().mod_revision() == rev)
        );
        n += r.events().len();
    }
    assert_eq!(n, KEYS, "every key deleted, all at revision {rev}");
    assert!(worst < Duration::from_secs(5), "a write waited {worst:?} behind the revoke");
}
