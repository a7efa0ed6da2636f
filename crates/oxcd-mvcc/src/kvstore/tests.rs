use super::*;
use oxcd_backend::BatchConfig;

struct Fixture {
    _dir: tempfile::TempDir,
    backend: Arc<Backend>,
    lessor: Arc<Lessor>,
    store: Store,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(Backend::open(dir.path().join("db"), BatchConfig::default()).unwrap());
    let lessor = Arc::new(Lessor::new());
    let (store, pending) = Store::open(backend.clone(), lessor.clone()).unwrap();
    assert_eq!(pending, None);
    Fixture { _dir: dir, backend, lessor, store }
}

impl Fixture {
    /// Runs one write request the way the applier does: a txn, commit, publish.
    fn write<R>(&self, f: impl FnOnce(&mut TxnWrite<'_, '_>) -> R) -> (R, i64) {
        let wtx = self.backend.write().unwrap();
        let (r, rev) = {
            let mut txn = self.store.write(&wtx).unwrap();
            let r = f(&mut txn);
            (r, txn.end().0)
        };
        wtx.commit().unwrap();
        self.store.publish();
        (r, rev)
    }

    fn put(&self, k: &str, v: &str) -> i64 {
        self.write(|t| t.put(k.as_bytes(), Bytes::copy_from_slice(v.as_bytes()), LeaseId::NONE).unwrap()).0
    }

    fn range(&self, k: &str, end: Option<&str>, opts: RangeOptions) -> Result<RangeResult> {
        self.store.read().unwrap().range(k.as_bytes(), end.map(str::as_bytes), opts)
    }

    fn values(&self, k: &str, end: Option<&str>, rev: i64) -> Vec<(String, String, i64, i64, i64)> {
        self.range(k, end, RangeOptions { rev, ..Default::default() })
            .unwrap()
            .kvs
            .into_iter()
            .map(|kv| {
                (
                    String::from_utf8(kv.key.to_vec()).unwrap(),
                    String::from_utf8(kv.value.to_vec()).unwrap(),
                    kv.create_revision,
                    kv.mod_revision,
                    kv.version,
                )
            })
            .collect()
    }
}

#[test]
fn empty_store_is_at_revision_one_and_first_write_is_two() {
    let f = fixture();
    assert_eq!(f.store.current_rev(), 1);
    assert_eq!(f.put("a", "1"), 2);
    assert_eq!(f.store.current_rev(), 2);
}

#[test]
fn versions_create_and_mod_revisions_follow_etcd() {
    let f = fixture();
    f.put("a", "1"); // 2
    f.put("a", "2"); // 3
    f.put("a", "2"); // 4: identical value still bumps
    assert_eq!(f.values("a", None, 0), vec![("a".into(), "2".into(), 2, 4, 3)]);
    let (n, rev) = f.write(|t| t.delete_range(b"a", None).unwrap());
    assert_eq!((n, rev), (1, 5));
    assert!(f.values("a", None, 0).is_empty());
    f.put("a", "3"); // 6: new generation
    assert_eq!(f.values("a", None, 0), vec![("a".into(), "3".into(), 6, 6, 1)]);
    // History is still there.
    assert_eq!(f.values("a", None, 3), vec![("a".into(), "2".into(), 2, 3, 2)]);
    assert!(f.values("a", None, 5).is_empty());
}

#[test]
fn deleting_nothing_does_not_bump_the_revision() {
    let f = fixture();
    f.put("a", "1");
    let (n, rev) = f.write(|t| t.delete_range(b"zzz", None).unwrap());
    assert_eq!((n, rev), (0, 2));
    assert_eq!(f.store.current_rev(), 2);
}

#[test]
fn one_txn_is_one_revision_with_sub_revisions() {
    let f = fixture();
    let (_, rev) = f.write(|t| {
        t.put(b"a", Bytes::from_static(b"1"), LeaseId::NONE).unwrap();
        t.put(b"b", Bytes::from_static(b"2"), LeaseId::NONE).unwrap();
        // Reads inside the txn see its own writes.
        assert_eq!(t.range(b"a", Some(b"c"), RangeOptions::default()).unwrap().kvs.len(), 2);
        assert_eq!(t.changes().len(), 2);
    });
    assert_eq!(rev, 2);
    assert_eq!(f.values("a", Some(""), 0).len(), 2);
}

#[test]
fn limit_count_and_count_only() {
    let f = fixture();
    for k in ["a", "b", "c", "d"] {
        f.put(k, k);
    }
    let r = f.range("a", Some("\u{0}"), RangeOptions { limit: 2, ..Default::default() });
    // "\0" is taken literally here: the caller maps "\0" to Some(empty).
    assert!(r.unwrap().kvs.is_empty());
    let r = f.store.read().unwrap().range(b"a", Some(b""), RangeOptions { limit: 2, ..Default::default() }).unwrap();
    assert_eq!((r.kvs.len(), r.count, r.rev), (2, 4, 5));
    let r = f.range("b", Some("d"), RangeOptions { count_only: true, ..Default::default() }).unwrap();
    assert_eq!((r.kvs.len(), r.count), (0, 2));
}

#[test]
fn future_and_compacted_revisions_are_errors() {
    let f = fixture();
    for i in 0..5 {
        f.put("k", &i.to_string());
    }
    assert!(matches!(f.range("k", None, RangeOptions { rev: 7, ..Default::default() }), Err(MvccError::FutureRev)));
    f.write(|t| {
        let _ = t;
    });
    let wtx = f.backend.write().unwrap();
    f.store.compact(&wtx, 4).unwrap();
    assert!(matches!(f.store.compact(&wtx, 4), Err(MvccError::Compacted)));
    assert!(matches!(f.store.compact(&wtx, 7), Err(MvccError::FutureRev)));
    wtx.commit().unwrap();
    f.store.run_compaction(4, 1000, Duration::ZERO).unwrap();
    assert!(matches!(f.range("k", None, RangeOptions { rev: 3, ..Default::default() }), Err(MvccError::Compacted)));
    // Reading exactly at the compacted revision is allowed.
    assert_eq!(f.values("k", None, 4), vec![("k".into(), "2".into(), 2, 4, 3)]);
    assert_eq!(f.values("k", None, 0), vec![("k".into(), "4".into(), 2, 6, 5)]);
}

#[test]
fn restart_rebuilds_index_and_finishes_an_interrupted_compaction() {
    let f = fixture();
    f.put("a", "1"); // 2
    f.put("a", "2"); // 3
    f.put("b", "1"); // 4
    f.write(|t| t.delete_range(b"b", None).unwrap()); // 5
    let wtx = f.backend.write().unwrap();
    f.store.compact(&wtx, 5).unwrap();
    wtx.commit_durable().unwrap();
    // Crash before the compaction ran: reopen.
    let Fixture { _dir, backend, lessor, store } = f;
    drop(store);
    let (store, pending) = Store::open(backend.clone(), lessor.clone()).unwrap();
    assert_eq!(pending, Some(5));
    assert_eq!(store.current_rev(), 5);
    assert_eq!(store.compact_rev(), 5);
    store.run_compaction(5, 2, Duration::ZERO).unwrap();
    let (store, pending) = Store::open(backend.clone(), lessor).unwrap();
    assert_eq!(pending, None);
    // b's whole history is gone, a keeps its newest revision; the revision never goes back.
    assert_eq!(store.key_count(), 1);
    assert_eq!(store.current_rev(), 5);
    let r = store.read().unwrap().range(b"a", Some(b""), RangeOptions::default()).unwrap();
    assert_eq!(r.kvs.len(), 1);
    assert_eq!(r.kvs[0].mod_revision, 3);
    let mut left = 0;
    backend
        .read()
        .unwrap()
        .bucket(KEY)
        .unwrap()
        .visit(&[], None, &mut |_, _| {
            left += 1;
            true
        })
        .unwrap();
    assert_eq!(left, 1, "only a@3 remains in the key bucket");
}

#[test]
fn leases_are_attached_and_detached() {
    let f = fixture();
    let l = LeaseId(7);
    assert!(f.lessor.grant(l, 10, std::time::Instant::now()).is_ok());
    f.write(|t| t.put(b"a", Bytes::from_static(b"1"), l).unwrap());
    f.write(|t| t.put(b"b", Bytes::from_static(b"1"), l).unwrap());
    f.write(|t| t.put(b"a", Bytes::from_static(b"2"), LeaseId::NONE).unwrap());
    f.write(|t| t.delete_range(b"b", None).unwrap());
    f.write(|t| t.put(b"c", Bytes::from_static(b"1"), l).unwrap());
    assert_eq!(f.lessor.revoke(l), Some(vec![b"c".to_vec().into_boxed_slice()]));
}
