//! Runtime reconfiguration with real processes: growing a cluster from one member to three (a
//! voter that joins, a learner that catches up and is promoted), restarts after the changes,
//! removing members, and etcd's errors (compared with real etcd 3.4).

mod common;

use std::time::{Duration, Instant};

use common::{cluster, oxcd, status};
use etcd_client::{Client, GetOptions, MemberAddOptions};
use oxcd_testkit::{Binary, Cluster, ClusterOptions, ETCD_34};

/// Every key and value a member has (serializable: what it applied itself).
async fn contents(c: &mut Client) -> Vec<(String, String)> {
    let r = c.get("", Some(GetOptions::new().with_all_keys().with_serializable())).await.unwrap();
    r.kvs().iter().map(|kv| (kv.key_str().unwrap().into(), kv.value_str().unwrap().into())).collect()
}

/// Waits until member `i` has applied `want` (it is catching up from a snapshot or the log).
async fn wait_contents(cl: &Cluster, i: usize, want: &[(String, String)]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut c) = cl.client(i).await
            && let Ok(r) = c.get("", Some(GetOptions::new().with_all_keys().with_serializable())).await
        {
            let got: Vec<(String, String)> =
                r.kvs().iter().map(|kv| (kv.key_str().unwrap().into(), kv.value_str().unwrap().into())).collect();
            if got == want {
                return;
            }
        }
        assert!(Instant::now() < deadline, "member {i} never caught up:\n{}", cl.log_tail(i, 30));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (name, is_learner) of every member, sorted by name, as member `i` lists them.
async fn members(cl: &Cluster, i: usize) -> Vec<(String, bool)> {
    let mut c = cl.client(i).await.unwrap();
    let mut m: Vec<(String, bool)> =
        c.member_list().await.unwrap().members().iter().map(|m| (m.name().to_string(), m.is_learner())).collect();
    m.sort();
    m
}

async fn wait_members(cl: &Cluster, i: usize, want: &[(&str, bool)]) {
    let want: Vec<(String, bool)> = want.iter().map(|(n, l)| (n.to_string(), *l)).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while members(cl, i).await != want {
        assert!(Instant::now() < deadline, "member {i} lists {:?}, not {want:?}", members(cl, i).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until a write succeeds: after removing the leader, a write in flight to it is lost (and
/// times out, as with etcd) until the members left elect a leader.
async fn writable(c: &mut Client) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.put("writable", "1", None).await.is_err() {
        assert!(Instant::now() < deadline, "no leader after the removal");
    }
}

async fn write(cl: &Cluster, c: &mut Client, prefix: &str, n: usize) {
    for k in 0..n {
        if let Err(e) = c.put(format!("{prefix}/{k:03}"), format!("v{k}"), None).await {
            let logs: Vec<String> = (0..cl.len()).map(|i| format!("--- member {i}\n{}", cl.log_tail(i, 40))).collect();
            panic!("put {prefix}/{k:03}: {e}\n{}", logs.join("\n"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_grows_from_one_to_three_members_and_shrinks_again() {
    let mut cl = cluster(1).await;
    let mut c = cl.client(0).await.unwrap();
    write(&cl, &mut c, "a", 50).await;

    // A voter: added (not started: no name yet), then started; it catches up and serves.
    let m1 = cl.add_slot();
    let added = c.member_add([cl.peer_url(m1)], None).await.unwrap();
    let id1 = added.member().unwrap().id();
    assert_eq!(added.member().unwrap().name(), "");
    assert_eq!(added.member_list().len(), 2);
    cl.start_joining(m1).unwrap();
    cl.wait_ready(Duration::from_secs(30)).await.unwrap();
    write(&cl, &mut c, "b", 20).await;
    let want = contents(&mut c).await;
    wait_contents(&cl, m1, &want).await;
    wait_members(&cl, 0, &[("m0", false), ("m1", false)]).await;
    wait_members(&cl, m1, &[("m0", false), ("m1", false)]).await;
    assert!(c.member_list().await.unwrap().members().iter().any(|m| m.id() == id1 && m.name() == "m1"));

    // A learner: catches up without voting, then is promoted once in sync.
    let m2 = cl.add_slot();
    let added = c.member_add([cl.peer_url(m2)], Some(MemberAddOptions::new().with_is_learner())).await.unwrap();
    let id2 = added.member().unwrap().id();
    assert!(added.member().unwrap().is_learner());
    cl.start_joining(m2).unwrap();
    wait_contents(&cl, m2, &want).await;
    // A learner serves Status and serializable reads, and refuses the rest with etcd's error
    // (etcd 3.4 answers a learner's put, linearizable get and member list with these).
    let mut l = cl.client(m2).await.unwrap();
    assert!(l.status().await.unwrap().is_learner());
    l.get("a/000", Some(GetOptions::new().with_serializable())).await.unwrap();
    let refused = (tonic::Code::Unavailable, "etcdserver: rpc not supported for learner".to_string());
    assert_eq!(status(l.put("x", "y", None).await.unwrap_err()), refused);
    assert_eq!(status(l.get("a/000", None).await.unwrap_err()), refused);
    assert_eq!(status(l.member_list().await.unwrap_err()), refused);
    assert_eq!(status(l.lease_grant(10, None).await.unwrap_err()), refused);
    wait_members(&cl, 0, &[("m0", false), ("m1", false), ("m2", true)]).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match c.member_promote(id2).await {
            Ok(r) => {
                assert!(r.members().iter().all(|m| !m.is_learner()));
                break;
            }
            Err(e) => {
                let (_, msg) = status(e);
                assert_eq!(msg, "etcdserver: can only promote a learner member which is in sync with leader");
                assert!(Instant::now() < deadline, "the learner never caught up");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    for i in 0..3 {
        wait_members(&cl, i, &[("m0", false), ("m1", false), ("m2", false)]).await;
    }

    // Three voters: losing one (the first member, whatever its role) leaves a quorum.
    cl.kill(0);
    let mut c2 = cl.client(m2).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while c2.put("after-kill", "1", None).await.is_err() {
        assert!(Instant::now() < deadline, "no quorum without member 0");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every member restarts from its own data (the configuration changes replayed from the WAL).
    cl.restart(0).unwrap();
    cl.kill(m1);
    cl.kill(m2);
    cl.restart(m1).unwrap();
    cl.restart(m2).unwrap();
    cl.wait_ready(Duration::from_secs(30)).await.unwrap();
    let mut c = cl.client(0).await.unwrap();
    c.get("barrier", None).await.unwrap();
    let want = contents(&mut c).await;
    assert!(want.iter().any(|(k, _)| k == "after-kill"));
    for i in 0..3 {
        wait_contents(&cl, i, &want).await;
    }

    // A member removed while it is down does not come back: restarted, it is refused by its
    // former peers and stops by itself (etcd's "permanently removed").
    let leader = cl.leader().await.unwrap();
    let gone = (leader + 1) % 3;
    let gone_id = cl.client(gone).await.unwrap().status().await.unwrap().header().unwrap().member_id();
    cl.kill(gone);
    let mut c = cl.client(leader).await.unwrap();
    assert_eq!(c.member_remove(gone_id).await.unwrap().members().len(), 2);
    cl.restart(gone).unwrap();
    wait_exit(&cl, gone).await;

    // Removing the leader, asked through the other member while a client writes to it: the
    // leader steps down (the other is elected at once), stops by itself, and writes go on.
    let other = (0..3).find(|i| *i != leader && *i != gone).unwrap();
    let leader_id = c.status().await.unwrap().header().unwrap().member_id();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, mut w) = (stop.clone(), cl.client(other).await.unwrap());
        tokio::spawn(async move {
            let mut ok = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // A write in flight to the removed leader is lost and times out, as with etcd.
                ok += usize::from(w.put(format!("w/{ok}"), "v", None).await.is_ok());
            }
            ok
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut c = cl.client(other).await.unwrap();
    assert_eq!(c.member_remove(leader_id).await.unwrap().members().len(), 1);
    wait_exit(&cl, leader).await;
    writable(&mut c).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(writer.await.unwrap() > 0);
    // Alone again, it serves.
    write(&cl, &mut c, "c", 10).await;
    assert_eq!(c.member_list().await.unwrap().members().len(), 1);
}

/// Waits until member `i` stops by itself because it was removed (not because it failed).
async fn wait_exit(cl: &Cluster, i: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cl.has_exited(i) {
        assert!(Instant::now() < deadline, "the removed member {i} kept running:\n{}", cl.log_tail(i, 20));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = cl.log_tail(i, 50);
    assert!(log.contains("permanently removed") && !log.contains("panicked"), "{log}");
}

/// Bad membership requests get etcd's codes and messages (etcd 3.4 answers the same session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_errors_are_etcds() {
    let opts = ClusterOptions::default();
    let etcd = Cluster::start(Binary::Etcd(ETCD_34.into()), opts.clone()).await.expect("real etcd starts");
    let ours = Cluster::start(oxcd(), opts).await.expect("oxcd starts");
    let session = |cl: &Cluster| {
        let ep = cl.endpoint(0);
        let own_peer = cl.peer_url(0);
        async move {
            let mut c = Client::connect([ep], None).await.unwrap();
            let me = c.member_list().await.unwrap().members()[0].id();
            let mut out = Vec::new();
            let mut say = |what: &str, r: Result<String, etcd_client::Error>| {
                out.push(match r {
                    Ok(v) => format!("{what}: ok {v}"),
                    Err(e) => format!("{what}: {:?}", status(e)),
                })
            };
            say("add own URL", c.member_add([own_peer.as_str()], None).await.map(|_| String::new()));
            say("add bad URL", c.member_add(["http://no-port"], None).await.map(|_| String::new()));
            let learner = c.member_add(["http://127.0.0.1:1"], Some(MemberAddOptions::new().with_is_learner())).await;
            let learner = learner.unwrap().member().unwrap().id();
            say(
                "second learner",
                c.member_add(["http://127.0.0.1:2"], Some(MemberAddOptions::new().with_is_learner()))
                    .await
                    .map(|_| String::new()),
            );
            say("promote learner behind", c.member_promote(learner).await.map(|_| String::new()));
            say("promote voter", c.member_promote(me).await.map(|_| String::new()));
            say("promote unknown", c.member_promote(0x1234).await.map(|_| String::new()));
            say("remove unknown", c.member_remove(0x1234).await.map(|_| String::new()));
            say(
                "update unknown",
                c.member_update(0x1234, ["http://127.0.0.1:3".to_string()]).await.map(|_| String::new()),
            );
            say("update to a used URL", c.member_update(learner, [own_peer.clone()]).await.map(|_| String::new()));
            say(
                "update learner",
                c.member_update(learner, ["http://127.0.0.1:4".to_string()]).await.map(|r| {
                    let mut urls: Vec<String> = r.members().iter().flat_map(|m| m.peer_urls().to_vec()).collect();
                    urls.retain(|u| u.ends_with(":4"));
                    format!("{urls:?}")
                }),
            );
            say("remove learner", c.member_remove(learner).await.map(|r| r.members().len().to_string()));
            say("remove learner again", c.member_remove(learner).await.map(|_| String::new()));
            out
        }
    };
    let want = session(&etcd).await;
    let got = session(&ours).await;
    assert_eq!(got, want);
}
