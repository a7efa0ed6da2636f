//! The Lock and Election services through the `etcd-client` crate against real `oxcd` processes.

mod common;

use std::time::Duration;

use common::{assert_etcd_error, cluster};
use etcd_client::{Client, LockOptions, ProclaimOptions, ResignOptions};
use tonic::Code;

async fn lease(c: &mut Client, ttl: i64) -> i64 {
    c.lease_grant(ttl, None).await.unwrap().id()
}

/// The create revision of a key (the fencing token of a lock).
async fn create_rev(c: &mut Client, key: &[u8]) -> i64 {
    c.get(key, None).await.unwrap().kvs()[0].create_revision()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lock_is_held_by_the_oldest_waiter_and_passes_on_unlock() {
    let cl = cluster(1).await;
    let mut a = cl.client(0).await.unwrap();
    let la = lease(&mut a, 60).await;
    let held = a.lock("m", Some(LockOptions::new().with_lease(la))).await.unwrap();
    assert_eq!(held.key(), format!("m/{la:x}").as_bytes(), "the key is <name>/<lease in hex>");
    // Locking again with the same lease returns at once with the same key.
    assert_eq!(a.lock("m", Some(LockOptions::new().with_lease(la))).await.unwrap().key(), held.key());

    let mut b = cl.client(0).await.unwrap();
    let lb = lease(&mut b, 60).await;
    let waiter = tokio::spawn(async move { b.lock("m", Some(LockOptions::new().with_lease(lb))).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiter.is_finished(), "a second session got the lock while it was held");
    let token_a = create_rev(&mut a, held.key()).await;
    a.unlock(held.key()).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("waiter granted").unwrap().unwrap();
    assert_eq!(got.key(), format!("m/{lb:x}").as_bytes());
    let token_b = create_rev(&mut a, got.key()).await;
    assert!(token_b > token_a, "fencing tokens increase: {token_a} then {token_b}");
    // The grant's header revision is at or after the previous holder's release.
    assert!(got.header().unwrap().revision() > token_b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_holder_loses_the_lock_and_an_expired_waiter_never_gets_it() {
    let cl = cluster(1).await; // minimum TTL 1 s
    let mut a = cl.client(0).await.unwrap();
    // A holds with a lease nobody keeps alive: when it expires, the next waiter gets the lock.
    let la = lease(&mut a, 2).await;
    a.lock("x", Some(LockOptions::new().with_lease(la))).await.unwrap();
    let mut b = cl.client(0).await.unwrap();
    let lb = lease(&mut b, 60).await;
    let got = tokio::time::timeout(Duration::from_secs(10), b.lock("x", Some(LockOptions::new().with_lease(lb))))
        .await
        .expect("granted after the holder's lease expired")
        .unwrap();
    assert_eq!(got.key(), format!("x/{lb:x}").as_bytes());

    // C waits behind B with a short lease that expires while it waits: when B unlocks, C is told
    // its session expired instead of being granted (etcd #11456).
    let mut c = cl.client(0).await.unwrap();
    let lc = lease(&mut c, 1).await;
    let waiter = tokio::spawn(async move { c.lock("x", Some(LockOptions::new().with_lease(lc))).await });
    tokio::time::sleep(Duration::from_secs(3)).await;
    b.unlock(got.key()).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("waiter answered").unwrap();
    assert_etcd_error(r, Code::Unknown, "mutex: session is expired");
    assert!(a.get("x/", Some(etcd_client::GetOptions::new().with_prefix())).await.unwrap().kvs().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lock_errors_and_cancellation_cleanup() {
    let cl = cluster(1).await;
    let mut a = cl.client(0).await.unwrap();
    // etcd 3.5 answers code Unknown (its Lock service passes its inner client's error on).
    assert_etcd_error(
        a.lock("e", Some(LockOptions::new().with_lease(0x999))).await,
        Code::Unknown,
        "etcdserver: requested lease not found",
    );
    assert_etcd_error(a.campaign("e", "v", 0x999).await, Code::Unknown, "etcdserver: requested lease not found");
    let la = lease(&mut a, 60).await;
    let held = a.lock("e", Some(LockOptions::new().with_lease(la))).await.unwrap();
    // A waiter that gives up (its call is dropped) leaves no key behind.
    let mut b = cl.client(0).await.unwrap();
    let lb = lease(&mut b, 60).await;
    let waiter = tokio::spawn(async move { b.lock("e", Some(LockOptions::new().with_lease(lb))).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    waiter.abort();
    let mut gone = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if a.get(format!("e/{lb:x}"), None).await.unwrap().kvs().is_empty() {
            gone = true;
            break;
        }
    }
    assert!(gone, "the abandoned waiter's key was left behind");
    a.unlock(held.key()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn election_campaign_proclaim_observe_leader_resign() {
    let cl = cluster(3).await;
    let leader = cl.leader().await.unwrap();
    // Served on a follower too.
    let mut a = cl.client((leader + 1) % 3).await.unwrap();
    assert_etcd_error(a.leader("e").await, Code::Unknown, "election: no leader");
    let mut observe = a.observe("e").await.unwrap();

    let la = lease(&mut a, 60).await;
    let won = a.campaign("e", "a1", la).await.unwrap();
    let key_a = won.leader().unwrap().clone();
    assert_eq!(key_a.key(), format!("e/{la:x}").as_bytes());
    assert_eq!(key_a.name(), b"e");
    assert_eq!(key_a.lease(), la);
    assert_eq!(a.leader("e").await.unwrap().kv().unwrap().value(), b"a1");

    // A second candidate waits.
    let mut b = cl.client(leader).await.unwrap();
    let lb = lease(&mut b, 60).await;
    let candidate = tokio::spawn(async move { b.campaign("e", "b1", lb).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!candidate.is_finished());

    a.proclaim("a2", Some(ProclaimOptions::new().with_leader(key_a.clone()))).await.unwrap();
    assert_eq!(a.leader("e").await.unwrap().kv().unwrap().value(), b"a2");
    a.resign(Some(ResignOptions::new().with_leader(key_a.clone()))).await.unwrap();
    let won_b = tokio::time::timeout(Duration::from_secs(10), candidate).await.unwrap().unwrap().unwrap();
    assert_eq!(won_b.leader().unwrap().key(), format!("e/{lb:x}").as_bytes());
    assert_eq!(a.leader("e").await.unwrap().kv().unwrap().value(), b"b1");

    // A leader key that lost the election cannot proclaim.
    assert_etcd_error(
        a.proclaim("stale", Some(ProclaimOptions::new().with_leader(key_a))).await,
        Code::Unknown,
        "election: not leader",
    );
    // Observe saw every leader value, in order.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let r = tokio::time::timeout(Duration::from_secs(10), observe.message()).await.unwrap().unwrap().unwrap();
        seen.push(String::from_utf8(r.kv().unwrap().value().to_vec()).unwrap());
    }
    assert_eq!(seen, ["a1", "a2", "b1"]);
}

#[tokio::test]
async fn proclaim_and_resign_need_a_leader_key() {
    let cl = cluster(1).await;
    let ch =
        tonic::transport::Channel::from_shared(format!("http://{}", cl.endpoint(0))).unwrap().connect().await.unwrap();
    let mut e = oxcd_api::v3electionpb::election_client::ElectionClient::new(ch);
    let err =
        e.proclaim(oxcd_api::v3electionpb::ProclaimRequest { leader: None, value: "v".into() }).await.unwrap_err();
    assert_eq!((err.code(), err.message()), (Code::Unknown, "\"leader\" field must be provided"));
    let err = e.resign(oxcd_api::v3electionpb::ResignRequest { leader: None }).await.unwrap_err();
    assert_eq!(err.message(), "\"leader\" field must be provided");
}
