use std::time::Duration;

use oxcd_backend::{Backend, BatchConfig};
use oxcd_lease::{LeaseId, Lessor};

use super::*;

struct Fx {
    _dir: tempfile::TempDir,
    backend: Arc<Backend>,
    store: Arc<Store>,
    hub: Arc<WatchableStore>,
}

/// A small ring, so tests reach the backend path without writing a hundred thousand revisions.
const TEST_RING_REVS: usize = 64;

fn fx_with(max_response_bytes: usize) -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(Backend::open(dir.path().join("db"), BatchConfig::default()).unwrap());
    let (store, _) = Store::open(backend.clone(), Arc::new(Lessor::new())).unwrap();
    let store = Arc::new(store);
    let hub = WatchableStore::with_ring(store.clone(), max_response_bytes, TEST_RING_REVS, RING_BYTES);
    Fx { _dir: dir, backend, store, hub }
}

fn fx() -> Fx {
    fx_with(1 << 20)
}

impl Fx {
    /// One write request the way the applier runs it: txn, commit, publish to readers and watchers.
    fn write(&self, f: impl FnOnce(&mut crate::TxnWrite<'_, '_>)) -> i64 {
        let wtx = self.backend.write().unwrap();
        let (rev, events) = {
            let mut t = self.store.write(&wtx).unwrap();
            f(&mut t);
            t.end()
        };
        wtx.commit().unwrap();
        self.store.publish();
        if !events.is_empty() {
            self.hub.publish(rev, events);
        }
        rev
    }

    fn put(&self, k: &str, v: &str) -> i64 {
        self.write(|t| {
            t.put(k.as_bytes(), Bytes::copy_from_slice(v.as_bytes()), LeaseId::NONE).unwrap();
        })
    }

    fn del(&self, k: &str) -> i64 {
        self.write(|t| {
            t.delete_range(k.as_bytes(), None).unwrap();
        })
    }
}

fn create(key: &str, end: &str, start: i64) -> WatchSpec {
    WatchSpec {
        key: Bytes::copy_from_slice(key.as_bytes()),
        range_end: Bytes::copy_from_slice(end.as_bytes()),
        start_revision: start,
        ..Default::default()
    }
}

/// Polls until nothing is left to do; returns everything produced.
fn drain(ws: &mut WatchStream) -> Vec<Notice> {
    let mut out = Vec::new();
    for _ in 0..10_000 {
        out.extend(ws.poll());
        if !ws.has_work() {
            return out;
        }
    }
    panic!("watch stream never settled");
}

/// (revision, type, key, value) of every event, in order.
fn events(rs: &[Notice]) -> Vec<(i64, i32, String, String)> {
    rs.iter()
        .flat_map(|r| r.events().iter())
        .map(|e| {
            let kv = e.kv.as_ref().unwrap();
            (
                kv.mod_revision,
                e.r#type,
                String::from_utf8_lossy(&kv.key).into(),
                String::from_utf8_lossy(&kv.value).into(),
            )
        })
        .collect()
}

const PUT: i32 = EventType::Put as i32;
const DEL: i32 = EventType::Delete as i32;

#[test]
fn a_watcher_from_now_sees_later_revisions_one_response_each() {
    let f = fx();
    f.put("a", "0"); // 2
    let mut ws = f.hub.open_stream();
    let created = ws.create(create("a", "", 0));
    assert_eq!(created, Notice::new(0, 2, NoticeKind::Created));
    f.put("a", "1"); // 3
    f.put("b", "x"); // 4: another key
    f.write(|t| {
        t.put(b"a", Bytes::from_static(b"2"), LeaseId::NONE).unwrap();
        t.put(b"c", Bytes::from_static(b"y"), LeaseId::NONE).unwrap();
    }); // 5
    f.del("a"); // 6
    let out = drain(&mut ws);
    assert_eq!(out.len(), 3, "one response per revision with matching events");
    assert_eq!(
        events(&out),
        vec![(3, PUT, "a".into(), "1".into()), (5, PUT, "a".into(), "2".into()), (6, DEL, "a".into(), "".into())]
    );
    assert!(out.iter().all(|r| r.watch_id == 0));
}

#[test]
fn a_historical_watcher_replays_then_follows_without_gaps_or_repeats() {
    let f = fx();
    for i in 0..50 {
        f.put(&format!("k{i:02}"), &i.to_string()); // revisions 2..=51
    }
    let mut ws = f.hub.open_stream();
    ws.create(create("k", "l", 10));
    // Revisions published while the watcher catches up.
    let mut out = ws.poll();
    f.put("k99", "late"); // 52
    out.extend(drain(&mut ws));
    f.put("k98", "later"); // 53
    out.extend(drain(&mut ws));
    let revs: Vec<i64> = events(&out).iter().map(|e| e.0).collect();
    assert_eq!(revs, (10..=53).collect::<Vec<_>>());
}

#[test]
fn catch_up_reads_from_the_backend_beyond_the_ring() {
    let f = fx();
    // A watcher from revision 2 while the ring only holds the newest revisions.
    let n = TEST_RING_REVS as i64 * 3 + CATCHUP_REVS + 7;
    for i in 0..n {
        f.put("hot", &i.to_string());
    }
    let mut ws = f.hub.open_stream();
    ws.create(create("hot", "", 2));
    let out = drain(&mut ws);
    let evs = events(&out);
    assert_eq!(evs.len() as i64, n);
    assert_eq!(evs.first().unwrap().0, 2);
    assert_eq!(evs.last().unwrap().0, n + 1);
    assert!(evs.windows(2).all(|w| w[1].0 == w[0].0 + 1));
}

#[test]
fn ranges_prefixes_and_filters() {
    let f = fx();
    let mut ws = f.hub.open_stream();
    ws.create(create("", "\0", 0)); // everything (empty key is "\0")
    ws.create(WatchSpec { no_put: true, ..create("p/", "p0", 0) });
    ws.create(WatchSpec { no_delete: true, ..create("p/", "p0", 0) });
    f.put("p/1", "a"); // 2
    f.put("q", "b"); // 3
    f.del("p/1"); // 4
    let out = drain(&mut ws);
    let by = |id: i64| events(&out.iter().filter(|r| r.watch_id == id).cloned().collect::<Vec<_>>());
    assert_eq!(by(0).iter().map(|e| e.0).collect::<Vec<_>>(), vec![2, 3, 4]);
    assert_eq!(by(1), vec![(4, DEL, "p/1".into(), "".into())]);
    assert_eq!(by(2), vec![(2, PUT, "p/1".into(), "a".into())]);
}

#[test]
fn prev_kv_is_attached_except_on_create() {
    let f = fx();
    let mut ws = f.hub.open_stream();
    ws.create(WatchSpec { prev_kv: true, ..create("k", "", 0) });
    f.put("k", "1");
    f.put("k", "2");
    f.del("k");
    let out = drain(&mut ws);
    let prevs: Vec<Option<String>> = out
        .iter()
        .flat_map(|r| r.events())
        .map(|e| e.prev_kv.as_ref().map(|p| String::from_utf8_lossy(&p.value).into_owned()))
        .collect();
    assert_eq!(prevs, vec![None, Some("1".into()), Some("2".into())]);
}

#[test]
fn duplicate_ids_compacted_starts_and_cancel() {
    let f = fx();
    for i in 0..5 {
        f.put("k", &i.to_string());
    }
    let mut ws = f.hub.open_stream();
    ws.create(WatchSpec { watch_id: 7, ..create("k", "", 0) });
    let dup = ws.create(WatchSpec { watch_id: 7, ..create("k", "", 0) });
    let refused = NoticeKind::Refused("mvcc: duplicate watch ID provided on the WatchStream".into());
    assert_eq!((dup.watch_id, dup.kind), (-1, refused));
    // Auto ids skip ids in use.
    assert_eq!(ws.create(create("k", "", 0)).watch_id, 0);

    let wtx = f.backend.write().unwrap();
    f.store.compact(&wtx, 4).unwrap();
    wtx.commit().unwrap();
    let r = ws.create(create("k", "", 3));
    assert_eq!(r.kind, NoticeKind::Created);
    let id = r.watch_id;
    let out = drain(&mut ws);
    let cancel = out.iter().find(|r| r.watch_id == id).unwrap();
    assert_eq!(cancel.kind, NoticeKind::Canceled { compact_revision: 4, reason: String::new() });
    assert_eq!(cancel.revision, 0, "etcd's header carries no revision there");
    // Watching from the compacted revision itself is allowed.
    ws.create(create("k", "", 4));
    assert!(drain(&mut ws).iter().all(|r| !r.is_canceled()));

    let c = ws.cancel(7).unwrap();
    assert!(c.is_canceled());
    assert_eq!(ws.cancel(7), None, "unknown ids are ignored");
    f.put("k", "after");
    assert!(drain(&mut ws).iter().all(|r| r.watch_id != 7));
}

#[test]
fn an_overflowing_stream_catches_up_with_nothing_lost_or_repeated() {
    let f = fx();
    let mut ws = f.hub.open_stream();
    ws.create(create("k", "", 0));
    // The client does not read while more than MAX_PENDING revisions arrive.
    let n = MAX_PENDING as i64 + 100;
    for i in 0..n {
        f.put("k", &i.to_string());
    }
    assert!(ws.shared.pending.lock().overflowed);
    assert!(ws.shared.pending.lock().queue.is_empty(), "the queue is dropped, not kept");
    let revs: Vec<i64> = events(&drain(&mut ws)).iter().map(|e| e.0).collect();
    assert_eq!(revs, (2..n + 2).collect::<Vec<_>>());
    // And it follows live again afterwards.
    f.put("k", "live");
    assert_eq!(events(&drain(&mut ws)).len(), 1);
}

#[test]
fn progress_requests_wait_until_every_watcher_is_synced() {
    let f = fx();
    for i in 0..10 {
        f.put("k", &i.to_string());
    }
    let mut ws = f.hub.open_stream();
    ws.create(create("k", "", 2)); // unsynced: must catch up first
    assert_eq!(ws.request_progress(), None, "deferred while a watcher catches up");
    let out = drain(&mut ws);
    let progress = out.last().unwrap();
    assert_eq!(*progress, Notice::new(-1, 11, NoticeKind::Progress));
    assert_eq!(events(&out).len(), 10, "every event up to the progress revision came first");
    assert_eq!(ws.request_progress().map(|r| r.watch_id), Some(-1), "answered at once when synced");
}

#[test]
fn large_revisions_are_fragmented_only_when_allowed() {
    let f = fx_with(1000);
    let mut ws = f.hub.open_stream();
    ws.create(WatchSpec { fragment: true, ..create("k", "l", 0) });
    ws.create(create("k", "l", 0));
    f.write(|t| {
        for i in 0..10 {
            t.put(format!("k{i}").as_bytes(), Bytes::from(vec![b'v'; 300]), LeaseId::NONE).unwrap();
        }
    });
    let out = drain(&mut ws);
    let frags: Vec<bool> = out
        .iter()
        .filter(|r| r.watch_id == 0)
        .map(|r| match r.kind {
            NoticeKind::Events { fragment, .. } => fragment,
            _ => panic!("only events: {r:?}"),
        })
        .collect();
    assert!(frags.len() > 1);
    assert!(frags[..frags.len() - 1].iter().all(|f| *f) && !frags.last().unwrap());
    assert_eq!(out.iter().filter(|r| r.watch_id == 0).map(|r| r.events().len()).sum::<usize>(), 10);
    assert_eq!(out.iter().filter(|r| r.watch_id == 1).count(), 1, "without fragment: one response");
}

#[tokio::test]
async fn ready_wakes_on_published_events() {
    let f = fx();
    let mut ws = f.hub.open_stream();
    ws.create(create("k", "", 0));
    let hub = f.hub.clone();
    let store = f.store.clone();
    let backend = f.backend.clone();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        let wtx = backend.write().unwrap();
        let (rev, evs) = {
            let mut t = store.write(&wtx).unwrap();
            t.put(b"k", Bytes::from_static(b"v"), LeaseId::NONE).unwrap();
            t.end()
        };
        wtx.commit().unwrap();
        store.publish();
        hub.publish(rev, evs);
    });
    tokio::time::timeout(Duration::from_secs(5), ws.ready()).await.expect("woken");
    assert_eq!(events(&ws.poll()).len(), 1);
    writer.join().unwrap();
}
