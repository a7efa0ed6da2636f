use super::*;

fn open(dir: &tempfile::TempDir) -> Backend {
    Backend::open(dir.path().join("db"), BatchConfig::default()).unwrap()
}

#[test]
fn non_durable_commits_are_visible_to_readers() {
    let dir = tempfile::tempdir().unwrap();
    let be = open(&dir);
    let tx = be.write().unwrap();
    tx.bucket(KEY).unwrap().put(b"a", b"1").unwrap();
    tx.commit().unwrap();
    assert_eq!(be.read().unwrap().bucket(KEY).unwrap().get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
}

#[test]
fn durable_commit_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let be = open(&dir);
        let tx = be.write().unwrap();
        tx.bucket(META).unwrap().put(b"consistent_index", &7u64.to_be_bytes()).unwrap();
        tx.commit().unwrap();
        be.flush().unwrap();
    }
    let be = open(&dir);
    let v = be.read().unwrap().bucket(META).unwrap().get(b"consistent_index").unwrap();
    assert_eq!(v.as_deref(), Some(&7u64.to_be_bytes()[..]));
}

#[test]
fn visit_respects_bounds_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let be = open(&dir);
    let tx = be.write().unwrap();
    {
        let mut b = tx.bucket(KEY).unwrap();
        for k in ["a", "b", "c", "d"] {
            b.put(k.as_bytes(), b"v").unwrap();
        }
    }
    tx.commit().unwrap();
    let rb = be.read().unwrap().bucket(KEY).unwrap();
    let mut seen = Vec::new();
    rb.visit(b"b", Some(b"d"), &mut |k, _| {
        seen.push(k.to_vec());
        true
    })
    .unwrap();
    assert_eq!(seen, vec![b"b".to_vec(), b"c".to_vec()]);
    let mut n = 0;
    rb.visit(b"a", None, &mut |_, _| {
        n += 1;
        n < 2
    })
    .unwrap();
    assert_eq!(n, 2);
}

#[test]
fn snapshot_round_trip_and_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let be = open(&dir);
    let tx = be.write().unwrap();
    {
        let mut k = tx.bucket(KEY).unwrap();
        for i in 0..1000u32 {
            k.put(&i.to_be_bytes(), format!("value-{i}").as_bytes()).unwrap();
        }
        tx.bucket(META).unwrap().put(b"consistent_index", &42u64.to_be_bytes()).unwrap();
    }
    tx.commit().unwrap();
    let mut buf = Vec::new();
    be.snapshot_to(&mut buf).unwrap();

    let dest = dir.path().join("restored");
    restore_snapshot(&buf[..], &dest).unwrap();
    let be2 = Backend::open(&dest, BatchConfig::default()).unwrap();
    let rtx = be2.read().unwrap();
    assert_eq!(rtx.bucket(KEY).unwrap().get(&7u32.to_be_bytes()).unwrap().as_deref(), Some(&b"value-7"[..]));
    assert_eq!(rtx.bucket(META).unwrap().get(b"consistent_index").unwrap().as_deref(), Some(&42u64.to_be_bytes()[..]));

    let mut bad = buf.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    assert!(restore_snapshot(&bad[..], &dir.path().join("bad")).is_err());
}

fn entries(be: &Backend, bucket: &str) -> usize {
    let mut n = 0;
    be.read()
        .unwrap()
        .bucket(bucket)
        .unwrap()
        .visit(&[], None, &mut |_, _| {
            n += 1;
            true
        })
        .unwrap();
    n
}

#[test]
fn defrag_under_concurrent_writers_and_readers_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let be = std::sync::Arc::new(open(&dir));
    {
        // Garbage to reclaim.
        let tx = be.write().unwrap();
        let mut b = tx.bucket(KEY).unwrap();
        for i in 0..5000u32 {
            b.put(&i.to_be_bytes(), &[7u8; 1000]).unwrap();
        }
        drop(b);
        tx.commit().unwrap();
        let tx = be.write().unwrap();
        let mut b = tx.bucket(KEY).unwrap();
        for i in 0..5000u32 {
            b.delete(&i.to_be_bytes()).unwrap();
        }
        drop(b);
        tx.commit_durable().unwrap();
    }
    let before = be.size_bytes();
    let old_reader = be.read().unwrap().bucket(META).unwrap();
    let writers: Vec<_> = (0..2u8)
        .map(|w| {
            let be = be.clone();
            std::thread::spawn(move || {
                for i in 0..400u32 {
                    let tx = be.write().unwrap();
                    tx.bucket(META).unwrap().put(&[&[w][..], &i.to_be_bytes()].concat(), b"x").unwrap();
                    tx.commit().unwrap();
                }
            })
        })
        .collect();
    for _ in 0..5 {
        be.defrag().unwrap();
    }
    for w in writers {
        w.join().unwrap();
    }
    be.defrag().unwrap();
    assert_eq!(entries(&be, META), 800, "every commit made during the defragmentations is in the file");
    assert!(be.size_bytes() < before / 2, "{before} -> {}", be.size_bytes());
    // A reader from before still reads its snapshot of the old file: none of the writes.
    let mut seen = 0;
    old_reader
        .visit(&[], None, &mut |_, _| {
            seen += 1;
            true
        })
        .unwrap();
    assert_eq!(seen, 0);
    drop(old_reader);
    // And the file on disk is the new one.
    let path = be.path().to_path_buf();
    drop(be);
    let reopened = Backend::open(&path, BatchConfig::default()).unwrap();
    assert_eq!(entries(&reopened, META), 800);
    assert!(!path.with_extension("defrag").exists());
}

#[test]
fn copies_cross_transaction_batches_without_losing_an_entry() {
    // More entries than one copy transaction takes, in two buckets, so both the snapshot restore
    // and the defragmentation commit mid-bucket and go on in a new transaction.
    let dir = tempfile::tempdir().unwrap();
    let be = open(&dir);
    let tx = be.write().unwrap();
    {
        let mut k = tx.bucket(KEY).unwrap();
        for i in 0..120_001u32 {
            k.put(&i.to_be_bytes(), b"v").unwrap();
        }
        let mut m = tx.bucket(META).unwrap();
        for i in 0..3u8 {
            m.put(&[i], b"m").unwrap();
        }
    }
    tx.commit().unwrap();
    let mut buf = Vec::new();
    be.snapshot_to(&mut buf).unwrap();
    let dest = dir.path().join("restored");
    restore_snapshot(&buf[..], &dest).unwrap();
    let restored = Backend::open(&dest, BatchConfig::default()).unwrap();
    assert_eq!((entries(&restored, KEY), entries(&restored, META)), (120_001, 3));
    be.defrag().unwrap();
    assert_eq!((entries(&be, KEY), entries(&be, META)), (120_001, 3));
}
