//! The KV service through a real client (the `etcd-client` crate) against real `oxcd` processes, on
//! one member and on a follower of three: every field of Range, Put, DeleteRange, Txn and Compact,
//! and every error etcd returns for bad input.

mod common;

use common::{assert_etcd_error, cluster, status};
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, SortOrder, SortTarget, Txn,
    TxnOp, TxnOpResponse,
};
use tonic::Code;

fn keys(r: &etcd_client::GetResponse) -> Vec<String> {
    r.kvs().iter().map(|kv| kv.key_str().unwrap().to_string()).collect()
}

fn values(r: &etcd_client::GetResponse) -> Vec<String> {
    r.kvs().iter().map(|kv| kv.value_str().unwrap().to_string()).collect()
}

/// Every field of every KV request, checked against etcd's documented semantics. Runs on a fresh
/// cluster: the first write is revision 2.
async fn every_field(c: &mut Client) {
    // Put and the response header.
    let r = c.put("a", "1", None).await.unwrap();
    let h = r.header().unwrap();
    assert_eq!(h.revision(), 2, "first write of a fresh store is revision 2");
    assert_ne!(h.cluster_id(), 0);
    assert_ne!(h.member_id(), 0);
    assert!(h.raft_term() >= 2);
    c.put("b", "2", None).await.unwrap(); // 3
    c.put("c", "3", None).await.unwrap(); // 4
    c.put("ab", "4", None).await.unwrap(); // 5

    // prev_kv; identical value still bumps revision and version.
    let r = c.put("a", "1", Some(PutOptions::new().with_prev_key())).await.unwrap(); // 6
    let prev = r.prev_key().unwrap();
    assert_eq!((prev.value_str().unwrap(), prev.mod_revision(), prev.version()), ("1", 2, 1));
    let g = c.get("a", None).await.unwrap();
    assert_eq!((g.kvs()[0].create_revision(), g.kvs()[0].mod_revision(), g.kvs()[0].version()), (2, 6, 2));
    assert_eq!(g.header().unwrap().revision(), 6);

    // ignore_value keeps the value, ignore_lease keeps the (absent) lease.
    c.put("a", "", Some(PutOptions::new().with_ignore_value())).await.unwrap(); // 7
    assert_eq!(values(&c.get("a", None).await.unwrap()), ["1"]);
    c.put("a", "9", Some(PutOptions::new().with_ignore_lease())).await.unwrap(); // 8
    let g = c.get("a", None).await.unwrap();
    assert_eq!((g.kvs()[0].value_str().unwrap(), g.kvs()[0].lease(), g.kvs()[0].version()), ("9", 0, 4));

    // Range conventions: single key, prefix, from-key ("\0" end), every key, explicit end.
    assert_eq!(keys(&c.get("a", Some(GetOptions::new().with_prefix())).await.unwrap()), ["a", "ab"]);
    assert_eq!(keys(&c.get("ab", Some(GetOptions::new().with_from_key())).await.unwrap()), ["ab", "b", "c"]);
    assert_eq!(keys(&c.get("", Some(GetOptions::new().with_all_keys())).await.unwrap()), ["a", "ab", "b", "c"]);
    assert_eq!(keys(&c.get("a", Some(GetOptions::new().with_range("b"))).await.unwrap()), ["a", "ab"]);
    assert!(c.get("c", Some(GetOptions::new().with_range("a"))).await.unwrap().kvs().is_empty());

    // limit, more, count (count ignores the limit).
    let g = c.get("", Some(GetOptions::new().with_all_keys().with_limit(2))).await.unwrap();
    assert_eq!((keys(&g), g.more(), g.count()), (vec!["a".to_string(), "ab".into()], true, 4));
    let g = c.get("", Some(GetOptions::new().with_all_keys().with_limit(4))).await.unwrap();
    assert_eq!((g.kvs().len(), g.more(), g.count()), (4, false, 4));

    // revision: historical reads; header revision stays the current one.
    let g = c.get("a", Some(GetOptions::new().with_revision(3))).await.unwrap();
    assert_eq!((values(&g), g.header().unwrap().revision()), (vec!["1".to_string()], 8));
    assert!(c.get("c", Some(GetOptions::new().with_revision(3))).await.unwrap().kvs().is_empty());

    // Sorting: every target, both orders; a non-key target without order sorts ascending.
    let all = || GetOptions::new().with_all_keys();
    let sorted = |t, o| all().with_sort(t, o);
    assert_eq!(
        keys(&c.get("", Some(sorted(SortTarget::Key, SortOrder::Descend))).await.unwrap()),
        ["c", "b", "ab", "a"]
    );
    assert_eq!(
        keys(&c.get("", Some(sorted(SortTarget::Mod, SortOrder::Descend))).await.unwrap()),
        ["a", "ab", "c", "b"]
    );
    assert_eq!(
        keys(&c.get("", Some(sorted(SortTarget::Create, SortOrder::Ascend))).await.unwrap()),
        ["a", "b", "c", "ab"]
    );
    assert_eq!(
        keys(&c.get("", Some(sorted(SortTarget::Value, SortOrder::Descend))).await.unwrap()),
        ["a", "ab", "c", "b"]
    );
    assert_eq!(
        keys(&c.get("", Some(sorted(SortTarget::Version, SortOrder::None))).await.unwrap()),
        ["ab", "b", "c", "a"]
    );
    let g = c.get("", Some(sorted(SortTarget::Mod, SortOrder::Descend).with_limit(1))).await.unwrap();
    assert_eq!((keys(&g), g.more(), g.count()), (vec!["a".to_string()], true, 4));

    // serializable, keys_only, count_only.
    assert_eq!(values(&c.get("b", Some(GetOptions::new().with_serializable())).await.unwrap()), ["2"]);
    let g = c.get("a", Some(GetOptions::new().with_prefix().with_keys_only())).await.unwrap();
    assert_eq!(keys(&g), ["a", "ab"]);
    assert!(g.kvs().iter().all(|kv| kv.value().is_empty()));
    let g = c.get("", Some(all().with_count_only())).await.unwrap();
    assert_eq!((g.kvs().len(), g.count()), (0, 4));

    // min/max mod/create revision filters; count is taken before filtering.
    let g = c.get("", Some(all().with_min_mod_revision(4))).await.unwrap();
    assert_eq!((keys(&g), g.count()), (vec!["a".to_string(), "ab".into(), "c".into()], 4));
    assert_eq!(keys(&c.get("", Some(all().with_max_mod_revision(4))).await.unwrap()), ["b", "c"]);
    assert_eq!(keys(&c.get("", Some(all().with_min_create_revision(3))).await.unwrap()), ["ab", "b", "c"]);
    assert_eq!(keys(&c.get("", Some(all().with_max_create_revision(3))).await.unwrap()), ["a", "b"]);

    // DeleteRange: prev_kv, deleted; deleting nothing keeps the revision.
    let d = c.delete("zzz", None).await.unwrap();
    assert_eq!((d.deleted(), d.header().unwrap().revision()), (0, 8));
    let d = c.delete("a", Some(DeleteOptions::new().with_prefix().with_prev_key())).await.unwrap(); // 9
    assert_eq!(d.deleted(), 2);
    assert_eq!(d.header().unwrap().revision(), 9);
    let prev: Vec<_> = d.prev_kvs().iter().map(|kv| kv.key_str().unwrap().to_string()).collect();
    assert_eq!(prev, ["a", "ab"]);
    // A re-created key starts a new generation.
    c.put("a", "new", None).await.unwrap(); // 10
    let g = c.get("a", None).await.unwrap();
    assert_eq!((g.kvs()[0].create_revision(), g.kvs()[0].version()), (10, 1));

    // Txn: every compare target and result; the chosen branch's responses.
    let t = Txn::new()
        .when([
            Compare::version("a", CompareOp::Equal, 1),
            Compare::create_revision("a", CompareOp::Greater, 9),
            Compare::mod_revision("a", CompareOp::Less, 11),
            Compare::value("a", CompareOp::NotEqual, "old"),
            Compare::lease("a", CompareOp::Equal, 0),
        ])
        .and_then([TxnOp::put("t1", "x", None), TxnOp::get("a", None), TxnOp::delete("b", None)])
        .or_else([TxnOp::put("t2", "y", None)]);
    let r = c.txn(t).await.unwrap(); // 11
    assert!(r.succeeded());
    assert_eq!(r.header().unwrap().revision(), 11);
    match &r.op_responses()[..] {
        [TxnOpResponse::Put(p), TxnOpResponse::Get(g), TxnOpResponse::Delete(d)] => {
            assert_eq!(p.header().unwrap().revision(), 11);
            assert_eq!(values(g), ["new"]);
            assert_eq!(d.deleted(), 1);
        }
        other => panic!("unexpected responses {other:?}"),
    }
    // All writes of a txn share one revision.
    let g = c.get("t1", None).await.unwrap();
    assert_eq!(g.kvs()[0].mod_revision(), 11);

    // A failing compare runs the else branch; VALUE on a missing key always fails.
    let t = Txn::new().when([Compare::value("missing", CompareOp::NotEqual, "x")]).or_else([TxnOp::get("t1", None)]);
    let r = c.txn(t).await.unwrap();
    assert!(!r.succeeded());
    assert_eq!(r.header().unwrap().revision(), 11, "a read-only branch does not bump the revision");
    // A missing key compares as version 0 and create revision 0.
    let t = Txn::new()
        .when([
            Compare::version("missing", CompareOp::Equal, 0),
            Compare::create_revision("missing", CompareOp::Equal, 0),
        ])
        .and_then([TxnOp::put("created", "1", None)]);
    assert!(c.txn(t).await.unwrap().succeeded()); // 12

    // range_end compares: every key in the range must match.
    let t = Txn::new().when([Compare::version("t", CompareOp::Greater, 0).with_prefix()]).and_then([]);
    assert!(c.txn(t).await.unwrap().succeeded());
    let t = Txn::new().when([Compare::mod_revision("\0", CompareOp::Less, 11).with_range("\0")]).and_then([]);
    assert!(!c.txn(t).await.unwrap().succeeded());

    // Nested txns: inner compares see the state before the outer writes.
    let inner = Txn::new()
        .when([Compare::version("n", CompareOp::Equal, 0)])
        .and_then([TxnOp::put("n_inner", "then", None)])
        .or_else([TxnOp::put("n_inner", "else", None)]);
    let t = Txn::new().when([]).and_then([TxnOp::put("n", "1", None), TxnOp::txn(inner)]);
    let r = c.txn(t).await.unwrap(); // 13
    assert!(r.succeeded());
    match &r.op_responses()[..] {
        [TxnOpResponse::Put(_), TxnOpResponse::Txn(inner)] => assert!(inner.succeeded()),
        other => panic!("unexpected responses {other:?}"),
    }
    assert_eq!(values(&c.get("n_inner", None).await.unwrap()), ["then"]);

    // Compact: physical; reading below fails, at the compacted revision works.
    let rev = c.get("a", None).await.unwrap().header().unwrap().revision();
    assert_eq!(rev, 13);
    let r = c.compact(10, Some(CompactionOptions::new().with_physical())).await.unwrap();
    assert_eq!(r.header().unwrap().revision(), 13);
    assert_etcd_error(
        c.get("a", Some(GetOptions::new().with_revision(9))).await,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    );
    assert_eq!(values(&c.get("a", Some(GetOptions::new().with_revision(10))).await.unwrap()), ["new"]);
    assert_etcd_error(
        c.compact(10, None).await,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    );
    assert_etcd_error(
        c.compact(100, None).await,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    );
    c.compact(13, None).await.unwrap();
}

#[tokio::test]
async fn every_kv_field_on_one_member() {
    let cl = cluster(1).await;
    let mut c = cl.client(0).await.unwrap();
    every_field(&mut c).await;
}

#[tokio::test]
async fn every_kv_field_through_a_follower_of_three() {
    let cl = cluster(3).await;
    let leader = cl.leader().await.unwrap();
    let follower = (leader + 1) % 3;
    let mut c = cl.client(follower).await.unwrap();
    every_field(&mut c).await;
    // Every member applied the same history (a linearizable read first: a member may still be
    // applying it).
    for i in 0..3 {
        let mut c = cl.client(i).await.unwrap();
        c.get("barrier", None).await.unwrap();
        let g = c.get("", Some(GetOptions::new().with_all_keys().with_serializable())).await.unwrap();
        assert_eq!(keys(&g), ["a", "c", "created", "n", "n_inner", "t1"], "member {i}");
    }
}

#[tokio::test]
async fn bad_requests_get_etcds_errors() {
    let cl = cluster(1).await;
    let mut c = cl.client(0).await.unwrap();
    c.put("k", "v", None).await.unwrap(); // 2

    let empty = "etcdserver: key is not provided";
    assert_etcd_error(c.put("", "v", None).await, Code::InvalidArgument, empty);
    assert_etcd_error(c.get("", None).await, Code::InvalidArgument, empty);
    assert_etcd_error(c.delete("", None).await, Code::InvalidArgument, empty);
    assert_etcd_error(
        c.txn(Txn::new().when([Compare::version("", CompareOp::Equal, 0)])).await,
        Code::InvalidArgument,
        empty,
    );

    let too_many: Vec<_> = (0..129).map(|i| TxnOp::put(format!("k{i}"), "v", None)).collect();
    assert_etcd_error(
        c.txn(Txn::new().and_then(too_many)).await,
        Code::InvalidArgument,
        "etcdserver: too many operations in txn request",
    );
    let max: Vec<_> = (0..128).map(|i| TxnOp::put(format!("k{i}"), "v", None)).collect();
    c.txn(Txn::new().and_then(max)).await.unwrap(); // 3

    assert_etcd_error(
        c.txn(Txn::new().and_then([TxnOp::put("d", "1", None), TxnOp::put("d", "2", None)])).await,
        Code::InvalidArgument,
        "etcdserver: duplicate key given in txn request",
    );
    assert_etcd_error(
        c.txn(
            Txn::new()
                .and_then([TxnOp::put("d5", "1", None), TxnOp::delete("d", Some(DeleteOptions::new().with_prefix()))]),
        )
        .await,
        Code::InvalidArgument,
        "etcdserver: duplicate key given in txn request",
    );

    assert_etcd_error(
        c.get("k", Some(GetOptions::new().with_revision(100))).await,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    );
    assert_etcd_error(
        c.txn(Txn::new().and_then([TxnOp::get("k", Some(GetOptions::new().with_revision(100)))])).await,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    );

    assert_etcd_error(
        c.put("k", "v", Some(PutOptions::new().with_lease(0x1234))).await,
        Code::NotFound,
        "etcdserver: requested lease not found",
    );
    assert_etcd_error(
        c.txn(Txn::new().and_then([TxnOp::put("k", "v", Some(PutOptions::new().with_lease(7)))])).await,
        Code::NotFound,
        "etcdserver: requested lease not found",
    );
    assert_etcd_error(
        c.put("missing", "", Some(PutOptions::new().with_ignore_value())).await,
        Code::InvalidArgument,
        "etcdserver: key not found",
    );
    assert_etcd_error(
        c.put("k", "v", Some(PutOptions::new().with_ignore_value())).await,
        Code::InvalidArgument,
        "etcdserver: value is provided",
    );
    assert_etcd_error(
        c.put("k", "v", Some(PutOptions::new().with_ignore_lease().with_lease(5))).await,
        Code::InvalidArgument,
        "etcdserver: lease is provided",
    );

    // --max-request-bytes (1.5 MiB): just above is etcd's error; far above is gRPC's size error.
    let big = vec![b'x'; 1_572_864];
    assert_etcd_error(c.put("big", big, None).await, Code::InvalidArgument, "etcdserver: request is too large");
    let huge = vec![b'x'; 3 << 20];
    let (code, msg) = status(c.put("huge", huge, None).await.unwrap_err());
    assert_eq!(code, Code::ResourceExhausted);
    assert!(msg.starts_with("grpc: received message larger than max"), "{msg}");
    // Far above (9 MiB), and on any service: Go gRPC's error, with the message's length and the
    // limit (--max-request-bytes + 512 KiB), as etcd answers; the message is never read.
    let giant = vec![b'x'; 9 << 20];
    let (code, msg) = status(c.put("giant", giant, None).await.unwrap_err());
    assert_eq!(
        (code, msg.as_str()),
        (Code::ResourceExhausted, "grpc: received message larger than max (9437196 vs. 2097152)")
    );
    let name = "u".repeat(3 << 20);
    let (code, msg) = status(c.auth_client().user_add(name, "pw", None).await.unwrap_err());
    assert_eq!(
        (code, msg.as_str()),
        (Code::ResourceExhausted, "grpc: received message larger than max (3145737 vs. 2097152)")
    );
    // Just below the limit is fine.
    c.put("fits", vec![b'x'; 1_500_000], None).await.unwrap();

    // Failed requests did not move the revision: 2 puts + 1 txn + "fits".
    assert_eq!(c.get("k", None).await.unwrap().header().unwrap().revision(), 4);
}

#[tokio::test]
async fn leader_required_requests_fail_fast_without_a_leader() {
    let mut cl = cluster(3).await;
    let leader = cl.leader().await.unwrap();
    let survivor = (leader + 1) % 3;
    for i in (0..3).filter(|i| *i != survivor) {
        cl.kill(i);
    }
    let opts =
        etcd_client::ConnectOptions::new().with_require_leader(true).with_timeout(std::time::Duration::from_secs(10));
    let mut c = etcd_client::Client::connect([cl.endpoint(survivor)], Some(opts)).await.unwrap();
    // Within a couple of election timeouts the survivor notices it lost its leader.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match c.put("k", "v", None).await {
            Err(e) => {
                let (code, msg) = status(e);
                if msg == "etcdserver: no leader" {
                    assert_eq!(code, Code::Unavailable);
                    break;
                }
            }
            Ok(_) => panic!("a write succeeded without a quorum"),
        }
        assert!(std::time::Instant::now() < deadline, "never reported no leader");
    }
    // Without leader-required metadata a write waits for a leader until the request timeout
    // (5 s + 2 × election timeout), then fails as etcd's does.
    let mut plain = cl.client(survivor).await.unwrap();
    let started = std::time::Instant::now();
    assert_etcd_error(plain.put("k", "v", None).await, Code::Unavailable, "etcdserver: request timed out");
    assert!(started.elapsed() >= std::time::Duration::from_secs(5), "gave up after {:?}", started.elapsed());
    // With leader required, even serializable reads fail; without it they are served locally.
    assert_etcd_error(
        c.get("k", Some(GetOptions::new().with_serializable())).await,
        Code::Unavailable,
        "etcdserver: no leader",
    );
    assert!(plain.get("k", Some(GetOptions::new().with_serializable())).await.unwrap().kvs().is_empty());
}

#[tokio::test]
async fn grpc_health_service_reports_serving() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let cl = cluster(1).await;
    let ch =
        tonic::transport::Channel::from_shared(format!("http://{}", cl.endpoint(0))).unwrap().connect().await.unwrap();
    let mut h = HealthClient::new(ch);
    let r = h.check(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    assert_eq!(r.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    // Only the server as a whole is registered, as etcd registers it: another name is unknown.
    let unknown = h.check(HealthCheckRequest { service: "etcdserverpb.KV".into() }).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    // Watch answers with the status at once, as grpc-go's health server does.
    let mut w = h.watch(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    let first = w.message().await.unwrap().expect("a status");
    assert_eq!(first.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
}

#[tokio::test]
async fn auth_status_reports_a_new_cluster_as_etcd_does() {
    use oxcd_api::etcdserverpb::AuthStatusRequest;
    use oxcd_api::etcdserverpb::auth_client::AuthClient;
    let cl = cluster(1).await;
    let ch =
        tonic::transport::Channel::from_shared(format!("http://{}", cl.endpoint(0))).unwrap().connect().await.unwrap();
    let r = AuthClient::new(ch).auth_status(AuthStatusRequest {}).await.unwrap().into_inner();
    // etcd 3.5 on a new cluster: {"header":{..., "revision":1}, "authRevision":1}, enabled omitted.
    assert!(!r.enabled);
    assert_eq!(r.auth_revision, 1);
    assert_eq!(r.header.unwrap().revision, 1);
}

/// Txns nested as deep as etcd 3.5 takes them (50, 51, 60, 100 levels) are applied on every
/// member (they used to be accepted and never applied at 50, refused at 51); deeper than
/// oxcd's bound, refused at the edge before decoding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_txns_are_applied_everywhere() {
    let cl = cluster(3).await;
    let mut c = cl.client(0).await.unwrap();
    let nested = |depth: usize, key: String| {
        let mut t = Txn::new().and_then([TxnOp::put(key, "v", None)]);
        for _ in 1..depth {
            t = Txn::new().and_then([TxnOp::txn(t)]);
        }
        t
    };
    let max = oxcd_api::codec::MAX_TXN_DEPTH;
    for depth in [50, 51, 60, 100, max] {
        let r = tokio::time::timeout(std::time::Duration::from_secs(5), c.txn(nested(depth, format!("d{depth}"))))
            .await
            .unwrap_or_else(|_| panic!("txn {depth} deep timed out"))
            .unwrap_or_else(|e| panic!("txn {depth} deep: {e}"));
        assert!(r.succeeded());
    }
    for i in 0..3 {
        let mut m = cl.client(i).await.unwrap();
        let got = m.get("d", Some(GetOptions::new().with_prefix().with_serializable())).await.unwrap();
        assert_eq!(got.kvs().len(), 5, "member {i}");
    }
    let (code, msg) = status(c.txn(nested(max + 1, "too-deep".into())).await.unwrap_err());
    assert_eq!((code, msg), (Code::InvalidArgument, format!("etcdserver: txn nested deeper than {max} levels")));
}
