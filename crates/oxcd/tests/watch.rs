//! The Watch service through the `etcd-client` crate against real `oxcd` processes: every create
//! option, cancel, progress, atomic revisions, compaction, in-band errors, leader loss, every member
//! of a cluster, resuming across leader changes and restarts, and bounded memory under a client that
//! never reads.

mod common;

use std::time::{Duration, Instant};

use common::{cluster, cluster_with};
use etcd_client::{
    Client, DeleteOptions, EventType, GetOptions, Txn, TxnOp, WatchFilterType, WatchOptions, WatchResponse, WatchStream,
};
use oxcd_testkit::ClusterOptions;

/// The next response, or a panic after 10 s.
async fn next(s: &mut WatchStream) -> WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), s.message())
        .await
        .expect("a watch response within 10 s")
        .expect("stream open")
        .expect("a response")
}

/// Reads responses until `n` events arrived; returns (revision, type, key, value) per event and the
/// number of responses they came in.
async fn events(s: &mut WatchStream, n: usize) -> (Vec<(i64, EventType, String, String)>, usize) {
    let mut out = Vec::new();
    let mut responses = 0;
    while out.len() < n {
        let r = next(s).await;
        assert!(!r.canceled(), "unexpected cancel: {r:?}");
        if r.events().is_empty() {
            continue;
        }
        responses += 1;
        for e in r.events() {
            let kv = e.kv().unwrap();
            out.push((
                kv.mod_revision(),
                e.event_type(),
                kv.key_str().unwrap().to_string(),
                kv.value_str().unwrap().to_string(),
            ));
        }
    }
    (out, responses)
}

/// Opens a watch and checks its created response.
async fn watch(c: &mut Client, key: &str, opts: WatchOptions) -> WatchStream {
    let mut s = c.watch(key, Some(opts)).await.unwrap();
    let created = next(&mut s).await;
    assert!(created.created(), "first response must be the created one: {created:?}");
    s
}

#[tokio::test]
async fn create_options_select_keys_revisions_and_event_types() {
    let cl = cluster(1).await;
    let mut c = cl.client(0).await.unwrap();
    c.put("a", "0", None).await.unwrap(); // 2
    let mut key = watch(&mut c, "a", WatchOptions::new()).await;
    let mut prefix = watch(&mut c, "p/", WatchOptions::new().with_prefix().with_prev_key()).await;
    let mut range = watch(&mut c, "b", WatchOptions::new().with_range("d")).await;
    let mut all = watch(&mut c, "", WatchOptions::new().with_all_keys()).await;
    let mut from_key = watch(&mut c, "c", WatchOptions::new().with_from_key()).await;
    let mut no_put =
        watch(&mut c, "p/", WatchOptions::new().with_prefix().with_filters([WatchFilterType::NoPut])).await;
    let mut no_del =
        watch(&mut c, "p/", WatchOptions::new().with_prefix().with_filters([WatchFilterType::NoDelete])).await;
    let mut history = watch(&mut c, "a", WatchOptions::new().with_start_revision(2)).await;

    c.put("a", "1", None).await.unwrap(); // 3
    c.put("p/x", "1", None).await.unwrap(); // 4
    c.put("p/x", "2", None).await.unwrap(); // 5
    c.put("c", "3", None).await.unwrap(); // 6
    c.delete("p/x", None).await.unwrap(); // 7
    c.put("z", "4", None).await.unwrap(); // 8

    assert_eq!(events(&mut key, 1).await.0, vec![(3, EventType::Put, "a".into(), "1".into())]);
    let (ev, _) = events(&mut prefix, 3).await;
    assert_eq!(
        ev.iter().map(|e| (e.0, e.1)).collect::<Vec<_>>(),
        vec![(4, EventType::Put), (5, EventType::Put), (7, EventType::Delete)]
    );
    assert_eq!(events(&mut range, 1).await.0, vec![(6, EventType::Put, "c".into(), "3".into())]);
    assert_eq!(events(&mut all, 6).await.0.iter().map(|e| e.0).collect::<Vec<_>>(), vec![3, 4, 5, 6, 7, 8]);
    // Keys >= "c": "p/x" sorts after "c".
    let (ev, _) = events(&mut from_key, 5).await;
    assert_eq!(
        ev.iter().map(|e| (e.0, e.2.as_str())).collect::<Vec<_>>(),
        [(4, "p/x"), (5, "p/x"), (6, "c"), (7, "p/x"), (8, "z")]
    );
    assert_eq!(events(&mut no_put, 1).await.0, vec![(7, EventType::Delete, "p/x".into(), "".into())]);
    assert_eq!(events(&mut no_del, 2).await.0.iter().map(|e| e.0).collect::<Vec<_>>(), vec![4, 5]);
    assert_eq!(events(&mut history, 2).await.0.iter().map(|e| e.0).collect::<Vec<_>>(), vec![2, 3]);

    // prev_kv: none on create, the old value on update and delete; DELETE carries key + revision.
    let mut s = watch(&mut c, "q", WatchOptions::new().with_prev_key()).await;
    c.put("q", "1", None).await.unwrap();
    c.put("q", "2", None).await.unwrap();
    c.delete("q", None).await.unwrap();
    let mut prevs = Vec::new();
    while prevs.len() < 3 {
        let r = next(&mut s).await;
        for e in r.events() {
            prevs.push(e.prev_kv().map(|p| p.value_str().unwrap().to_string()));
            if e.event_type() == EventType::Delete {
                let kv = e.kv().unwrap();
                assert_eq!(
                    (kv.key_str().unwrap(), kv.value(), kv.version(), kv.create_revision()),
                    ("q", &b""[..], 0, 0)
                );
            } else if prevs.len() == 1 {
                assert_eq!(e.kv().unwrap().version(), 1, "a create event has version 1");
            }
        }
    }
    assert_eq!(prevs, vec![None, Some("1".into()), Some("2".into())]);
}

#[tokio::test]
async fn one_revision_is_one_response_for_txns_and_range_deletes() {
    let cl = cluster(1).await;
    let mut c = cl.client(0).await.unwrap();
    let mut s = watch(&mut c, "k/", WatchOptions::new().with_prefix()).await;
    let ops: Vec<TxnOp> = (0..100).map(|i| TxnOp::put(format!("k/{i:03}"), "v", None)).collect();
    c.txn(Txn::new().and_then(ops)).await.unwrap(); // 2
    c.delete("k/", Some(DeleteOptions::new().with_prefix())).await.unwrap(); // 3
    let r = next(&mut s).await;
    assert_eq!(r.events().len(), 100, "all puts of the txn in one response");
    assert!(r.events().iter().all(|e| e.kv().unwrap().mod_revision() == 2));
    // Events of one txn keep op order.
    let keys: Vec<_> = r.events().iter().map(|e| e.kv().unwrap().key_str().unwrap().to_string()).collect();
    assert_eq!(keys, (0..100).map(|i| format!("k/{i:03}")).collect::<Vec<_>>());
    let r = next(&mut s).await;
    assert_eq!(r.events().len(), 100, "all deletes of the range in one response");
    assert!(r.events().iter().all(|e| e.event_type() == EventType::Delete && e.kv().unwrap().mod_revision() == 3));
}

#[tokio::test]
async fn cancel_progress_ids_and_compaction() {
    let cl = cluster(1).await;
    let mut c = cl.client(0).await.unwrap();
    for i in 0..5 {
        c.put("k", i.to_string(), None).await.unwrap(); // 2..=6
    }
    let mut s = watch(&mut c, "k", WatchOptions::new().with_watch_id(42)).await;
    // A second watcher on the same stream with the same id: in-band error.
    s.watch("k", Some(WatchOptions::new().with_watch_id(42))).await.unwrap();
    let dup = next(&mut s).await;
    assert_eq!((dup.watch_id(), dup.created(), dup.canceled()), (-1, true, true));
    assert_eq!(dup.cancel_reason(), "mvcc: duplicate watch ID provided on the WatchStream");

    // Progress: watch id -1 and the store revision.
    s.request_progress().await.unwrap();
    let p = next(&mut s).await;
    assert_eq!((p.watch_id(), p.header().unwrap().revision()), (-1, 6));

    // Cancel.
    s.cancel(42).await.unwrap();
    let r = next(&mut s).await;
    assert_eq!((r.watch_id(), r.canceled()), (42, true));
    c.put("k", "after-cancel", None).await.unwrap(); // 7
    s.request_progress().await.unwrap();
    let p = next(&mut s).await;
    assert!(p.events().is_empty() && p.watch_id() == -1, "no events after cancel: {p:?}");

    // A start revision below the compaction: created, then canceled with compact_revision.
    c.compact(5, None).await.unwrap();
    let mut s = c.watch("k", Some(WatchOptions::new().with_start_revision(3))).await.unwrap();
    assert!(next(&mut s).await.created());
    let r = next(&mut s).await;
    assert!(r.canceled());
    assert_eq!(r.compact_revision(), 5);
    // At the compacted revision itself: replayed.
    let mut s = watch(&mut c, "k", WatchOptions::new().with_start_revision(5)).await;
    assert_eq!(events(&mut s, 3).await.0.iter().map(|e| e.0).collect::<Vec<_>>(), vec![5, 6, 7]);
}

#[tokio::test]
async fn periodic_progress_notifications_follow_the_interval() {
    let opts = ClusterOptions {
        extra_args: vec!["--watch-progress-notify-interval".into(), "200ms".into()],
        ..Default::default()
    };
    let cl = cluster_with(opts).await;
    let mut c = cl.client(0).await.unwrap();
    c.put("k", "v", None).await.unwrap(); // 2
    let mut s = watch(&mut c, "k", WatchOptions::new().with_progress_notify()).await;
    let started = Instant::now();
    let r = next(&mut s).await;
    assert!(r.events().is_empty());
    assert_eq!((r.watch_id(), r.header().unwrap().revision()), (0, 2));
    assert!(started.elapsed() < Duration::from_secs(2));
    // And then every 200 ms: four more in well under etcd's default interval (10 minutes), but
    // not faster than the interval (the first came at most one interval after the watch).
    for _ in 0..4 {
        let r = next(&mut s).await;
        assert!(r.events().is_empty() && r.watch_id() == 0, "{r:?}");
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(600), "five notifications in {took:?}: faster than every 200 ms");
    assert!(took < Duration::from_secs(5), "five notifications took {took:?}");
    // A watcher that did not ask gets none.
    let mut quiet = watch(&mut c, "k", WatchOptions::new()).await;
    assert!(tokio::time::timeout(Duration::from_millis(600), quiet.message()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_requiring_a_leader_is_canceled_when_the_member_loses_it() {
    let mut cl = cluster(3).await;
    let leader = cl.leader().await.unwrap();
    let follower = (leader + 1) % 3;
    let opts = etcd_client::ConnectOptions::new().with_require_leader(true);
    let mut c = Client::connect([cl.endpoint(follower)], Some(opts)).await.unwrap();
    let mut s = watch(&mut c, "k", WatchOptions::new()).await;
    for i in (0..3).filter(|i| *i != follower) {
        cl.kill(i);
    }
    let r = tokio::time::timeout(Duration::from_secs(15), s.message()).await.expect("stream ended in time");
    match r {
        Err(e) => assert_eq!(common::status(e).1, "etcdserver: no leader"),
        other => panic!("expected the stream to fail with no leader, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_member_serves_watches_and_resumes_across_leader_change_and_restart() {
    let mut cl = cluster(3).await;
    let mut writer = cl.client_all().await.unwrap();
    let mut streams = Vec::new();
    for i in 0..3 {
        let mut c = cl.client(i).await.unwrap();
        streams.push(watch(&mut c, "r/", WatchOptions::new().with_prefix()).await);
    }
    for i in 0..10 {
        writer.put(format!("r/{i}"), "v", None).await.unwrap();
    }
    let mut last = 0;
    for s in &mut streams {
        let (ev, _) = events(s, 10).await;
        assert_eq!(ev.iter().map(|e| e.0).collect::<Vec<_>>(), (2..12).collect::<Vec<_>>());
        last = ev.last().unwrap().0;
    }
    drop(streams);

    // Leader change, writes during it, then resume from last + 1 on another member.
    let leader = cl.leader().await.unwrap();
    cl.kill(leader);
    let survivor = (leader + 1) % 3;
    let mut w = cl.client(survivor).await.unwrap();
    let mut written = 0;
    while written < 10 {
        if w.put(format!("r/after-{written}"), "v", None).await.is_ok() {
            written += 1;
        }
    }
    let mut c = cl.client(survivor).await.unwrap();
    let mut s = watch(&mut c, "r/", WatchOptions::new().with_prefix().with_start_revision(last + 1)).await;
    let (ev, _) = events(&mut s, 10).await;
    assert_eq!(ev.iter().map(|e| e.0).collect::<Vec<_>>(), (last + 1..last + 11).collect::<Vec<_>>());
    let last = ev.last().unwrap().0;

    // The old leader restarts and serves the same history from its own log.
    cl.restart(leader).unwrap();
    cl.wait_ready(Duration::from_secs(30)).await.unwrap();
    let mut c = cl.client(leader).await.unwrap();
    let mut s = watch(&mut c, "r/", WatchOptions::new().with_prefix().with_start_revision(2)).await;
    let (ev, _) = events(&mut s, 20).await;
    assert_eq!(ev.iter().map(|e| e.0).collect::<Vec<_>>(), (2..=last).collect::<Vec<_>>());
    w.put("r/live", "v", None).await.unwrap();
    assert_eq!(events(&mut s, 1).await.0[0].2, "r/live");
}

/// A client that never reads its stream while 100,000 events are written: the server's memory
/// stays bounded and watchers on other streams keep receiving everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_never_reads_cannot_grow_server_memory() {
    const EVENTS: usize = 100_000;
    const PER_TXN: usize = 100;
    const VALUE: usize = 4096;
    /// What the member may use at most (ring 32 MiB, backend cache 64 MiB, index and buffers);
    /// the events written total 400 MiB, so buffering them for the stalled client would show.
    const BOUND_MIB: u64 = 300;

    let cl = cluster(1).await;
    let mut stalled_client = cl.client(0).await.unwrap();
    // Opened and never read again.
    let _stalled = stalled_client.watch("big/", Some(WatchOptions::new().with_prefix().with_prev_key())).await.unwrap();

    let mut reader_client = cl.client(0).await.unwrap();
    let mut reader = watch(&mut reader_client, "big/", WatchOptions::new().with_prefix()).await;
    let counting = tokio::spawn(async move {
        let mut n = 0;
        let mut last_rev = 0;
        while n < EVENTS {
            let r = next(&mut reader).await;
            for e in r.events() {
                let rev = e.kv().unwrap().mod_revision();
                assert!(rev >= last_rev, "events out of order");
                last_rev = rev;
            }
            n += r.events().len();
        }
        n
    });

    let writer = cl.client(0).await.unwrap();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let mut c = writer.clone();
            tokio::spawn(async move {
                for t in (w..EVENTS / PER_TXN).step_by(4) {
                    let ops: Vec<_> = (0..PER_TXN)
                        .map(|i| TxnOp::put(format!("big/{:06}", t * PER_TXN + i), vec![b'v'; VALUE], None))
                        .collect();
                    c.txn(Txn::new().and_then(ops)).await.unwrap();
                }
            })
        })
        .collect();
    let mut peak = 0;
    let mut done = false;
    while !done {
        done = writers.iter().all(|w| w.is_finished());
        if let Some((rss, _)) = cl.rss_kib(0) {
            peak = peak.max(rss);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for w in writers {
        w.await.unwrap();
    }
    let received = tokio::time::timeout(Duration::from_secs(60), counting).await.expect("reader kept up").unwrap();
    assert_eq!(received, EVENTS);
    let (rss, hwm) = cl.rss_kib(0).unwrap();
    eprintln!(
        "stalled watcher + {EVENTS} events of {VALUE} B: RSS {} MiB, peak {} MiB (sampled {} MiB)",
        rss / 1024,
        hwm / 1024,
        peak / 1024
    );
    assert!(hwm / 1024 < BOUND_MIB, "peak RSS {} MiB above the {BOUND_MIB} MiB bound", hwm / 1024);
    // The server still answers.
    let mut c = cl.client(0).await.unwrap();
    let r = c.get("big/", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap();
    assert_eq!(r.count(), EVENTS as i64);
}

/// A revision larger than --max-request-bytes reaches a watcher that allows fragments in pieces
/// marked `fragment` but the last; etcd-client has no accessor for the flag, so this uses the raw
/// generated client.
#[tokio::test]
async fn large_revisions_are_fragmented_when_the_watcher_allows_it() {
    use oxcd_api::etcdserverpb::watch_client::WatchClient;
    use oxcd_api::etcdserverpb::{WatchCreateRequest, WatchRequest, watch_request};
    use prost::Message;
    let cl = cluster(1).await;
    let mut c = cl.client(0).await.unwrap();
    // 2,000 keys of 1 KiB: deleting them is one revision of 2,000 events, over 2 MiB with prev_kv.
    for t in 0..20 {
        let ops: Vec<_> =
            (0..100).map(|i| TxnOp::put(format!("f/{:05}", t * 100 + i), vec![b'x'; 1024], None)).collect();
        c.txn(Txn::new().and_then(ops)).await.unwrap();
    }
    let ch =
        tonic::transport::Channel::from_shared(format!("http://{}", cl.endpoint(0))).unwrap().connect().await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let create = WatchCreateRequest {
        key: "f/".into(),
        range_end: "f0".into(),
        prev_kv: true,
        fragment: true,
        ..Default::default()
    };
    tx.send(WatchRequest { request_union: Some(watch_request::RequestUnion::CreateRequest(create)) }).await.unwrap();
    let mut s = WatchClient::new(ch)
        .max_decoding_message_size(usize::MAX)
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    assert!(s.message().await.unwrap().unwrap().created);
    c.delete("f/", Some(DeleteOptions::new().with_prefix())).await.unwrap();
    let (mut n, mut fragments) = (0, Vec::new());
    while n < 2000 {
        let r = s.message().await.unwrap().unwrap();
        assert!(r.encoded_len() <= 1_572_864 + 64 * 1024, "a fragment of {} bytes", r.encoded_len());
        n += r.events.len();
        fragments.push(r.fragment);
    }
    assert_eq!(n, 2000);
    assert!(fragments.len() > 1, "a 2 MiB revision came in one response");
    assert!(fragments[..fragments.len() - 1].iter().all(|f| *f) && !fragments.last().unwrap());
}
