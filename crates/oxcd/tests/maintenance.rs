//! Maintenance RPCs through the `etcd-client` crate on real processes: MoveLeader, HashKV across
//! members and against real etcd, the Snapshot stream (an etcd backend file and its SHA-256), and
//! Defragment under write load.

mod common;

use common::{assert_etcd_error, cluster};
use etcd_client::CompactionOptions;
use oxcd_testkit::{Binary, Cluster, ClusterOptions, ETCD_34};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_leader_hands_over_and_refuses_what_etcd_refuses() {
    let cl = cluster(3).await;
    let leader = cl.leader().await.unwrap();
    let follower = (leader + 1) % 3;
    let mut at_leader = cl.client(leader).await.unwrap();
    let mut at_follower = cl.client(follower).await.unwrap();
    let target = at_follower.status().await.unwrap().header().unwrap().member_id();

    assert_etcd_error(at_follower.move_leader(target).await, Code::FailedPrecondition, "etcdserver: not leader");
    assert_etcd_error(at_leader.move_leader(42).await, Code::FailedPrecondition, "etcdserver: bad leader transferee");

    at_leader.put("before", "1", None).await.unwrap();
    at_leader.move_leader(target).await.unwrap();
    // Done means done: the target leads when the call returns, and the cluster serves writes.
    assert_eq!(at_follower.status().await.unwrap().leader(), target);
    assert_eq!(cl.leader().await.unwrap(), follower);
    at_follower.put("after", "2", None).await.unwrap();
    assert_eq!(at_leader.get("after", None).await.unwrap().kvs()[0].value(), b"2");
}

/// The same writes on every member of oxcd and on real etcd: HashKV is etcd's hash of the same bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_kv_equals_etcds_on_every_member_and_revision() {
    let opts = ClusterOptions { size: 3, ..Default::default() };
    let oxcd = Cluster::start(common::oxcd(), opts.clone()).await.unwrap();
    let etcd = Cluster::start(Binary::Etcd(ETCD_34.into()), opts).await.unwrap();
    let mut hashes = Vec::new();
    for cl in [&etcd, &oxcd] {
        let mut c = cl.client(0).await.unwrap();
        for i in 0..30 {
            c.put(format!("k{}", i % 7), format!("v{i}"), None).await.unwrap();
        }
        c.delete("k3", None).await.unwrap();
        c.put("k3", "back", None).await.unwrap();
        c.delete("k5", None).await.unwrap();
        c.compact(20, Some(CompactionOptions::new().with_physical())).await.unwrap();
        c.put("last", "x", None).await.unwrap();
        let mut per_server = Vec::new();
        for i in 0..3 {
            let mut m = cl.client(i).await.unwrap();
            // A follower may be a moment behind: its serializable view reaches the revision first.
            while m
                .get("last", Some(etcd_client::GetOptions::new().with_serializable()))
                .await
                .unwrap()
                .kvs()
                .is_empty()
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            for rev in [0, 21, 25, 33, 35] {
                let h = m.hash_kv(rev).await.unwrap();
                per_server.push((rev, h.hash(), h.compact_version(), h.header().unwrap().revision()));
            }
            // At the compacted revision itself too, as etcd 3.4 and 3.5 answer.
            assert_etcd_error(
                m.hash_kv(20).await,
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            );
            assert_etcd_error(
                m.hash_kv(19).await,
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            );
            assert_etcd_error(
                m.hash_kv(100).await,
                Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision",
            );
        }
        // Every member agrees.
        assert_eq!(per_server[..5], per_server[5..10]);
        assert_eq!(per_server[..5], per_server[10..]);
        hashes.push(per_server);
    }
    assert_eq!(hashes[1], hashes[0], "oxcd's hashes (right) differ from etcd's (left)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_stream_is_a_backend_file_and_its_sha256() {
    use sha2::{Digest, Sha256};
    let cl = cluster(1).await;
    let mut c = cl.client(0).await.unwrap();
    // More than one 32 KiB message.
    for i in 0..50 {
        c.put(format!("k{i}"), "v".repeat(2000), None).await.unwrap();
    }
    let mut stream = c.snapshot().await.unwrap();
    let mut messages = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        messages.push((m.remaining_bytes(), m.blob().to_vec()));
    }
    let (digest, data) = messages.split_last().unwrap();
    let file: Vec<u8> = data.iter().flat_map(|(_, b)| b.clone()).collect();
    assert!(data.len() > 2, "{} messages", data.len());
    assert_eq!(file.len() % 4096, 0, "whole bbolt pages");
    // remaining_bytes counts down to zero, then the digest.
    let mut left = file.len() as u64;
    for (remaining, blob) in data {
        left -= blob.len() as u64;
        assert_eq!(*remaining, left);
        assert!(blob.len() <= 32 * 1024);
    }
    assert_eq!(digest.0, 0);
    assert_eq!(digest.1, Sha256::digest(&file).to_vec());
    // A bbolt file: its meta page's magic.
    assert_eq!(u32::from_le_bytes(file[16..20].try_into().unwrap()), 0xED0C_DAED);
    // Nothing left behind in the data directory.
    let snap_dir = cl.data_dir(0).join("member/snap");
    let names: Vec<_> = std::fs::read_dir(snap_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["db"], "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defragment_shrinks_the_file_while_writes_go_on() {
    use etcd_client::{DeleteOptions, GetOptions};
    let mut cl = cluster(1).await;
    let mut c = cl.client(0).await.unwrap();
    let value = "v".repeat(4000);
    for i in 0..2000 {
        c.put(format!("bulk/{i:05}"), value.as_str(), None).await.unwrap();
    }
    c.delete("bulk/", Some(DeleteOptions::new().with_prefix())).await.unwrap();
    let rev = c.put("kept", "yes", None).await.unwrap().header().unwrap().revision();
    c.compact(rev, Some(CompactionOptions::new().with_physical())).await.unwrap();
    let before = c.status().await.unwrap().db_size();

    // A writer keeps going while the file is rewritten; every acknowledged write must be there.
    let mut w = cl.client(0).await.unwrap();
    let writer = tokio::spawn(async move {
        let mut acked = 0;
        for i in 0..300 {
            w.put(format!("during/{i:03}"), "x", None).await.unwrap();
            acked += 1;
        }
        acked
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    c.defragment().await.unwrap();
    c.defragment().await.unwrap();
    assert_eq!(writer.await.unwrap(), 300);
    let after = c.status().await.unwrap().db_size();
    assert!(after < before / 2, "{before} -> {after} bytes");
    let during = GetOptions::new().with_prefix().with_count_only();
    assert_eq!(c.get("during/", Some(during.clone())).await.unwrap().count(), 300);
    let names: Vec<_> =
        std::fs::read_dir(cl.data_dir(0).join("member/snap")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["db"], "{names:?}");

    // The new file is the one a restart reads, after kill -9.
    cl.kill(0);
    cl.restart(0).unwrap();
    cl.wait_ready(std::time::Duration::from_secs(30)).await.unwrap();
    let mut c = cl.client(0).await.unwrap();
    assert_eq!(c.get("during/", Some(during)).await.unwrap().count(), 300);
    assert_eq!(c.get("kept", None).await.unwrap().kvs()[0].value(), b"yes");
    let last = c.put("next", "1", None).await.unwrap().header().unwrap().revision();
    assert_eq!(last, rev + 301);
}
