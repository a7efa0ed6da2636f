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
