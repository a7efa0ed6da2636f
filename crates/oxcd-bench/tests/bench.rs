//! oxcd-bench against real servers: every subcommand runs against oxcd and against etcd 3.4 and
//! reports the requests it was asked for; the keys it writes are etcd benchmark's keys (the same
//! keys land in both stores); errors are counted as etcd's tool counts them; --target-leader finds
//! the leader of a three-member cluster.

use std::process::Command;

use etcd_client::GetOptions;
use oxcd_testkit::{Binary, Cluster, ClusterOptions, ETCD_34};
use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_oxcd-bench");

fn oxcd() -> Binary {
    Binary::Oxcd(oxcd_testkit::oxcd_beside(BENCH))
}

/// Runs oxcd-bench; returns stdout, asserting success.
fn bench(endpoints: &[String], args: &[&str]) -> String {
    let out = Command::new(BENCH).arg("--endpoints").arg(endpoints.join(",")).args(args).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "oxcd-bench {args:?} failed:\n{stdout}\n{stderr}");
    assert!(stderr.is_empty(), "oxcd-bench {args:?} complained:\n{stderr}");
    stdout.into_owned()
}

fn json(endpoints: &[String], args: &[&str]) -> Value {
    let out = bench(endpoints, &[&["--output", "json"], args].concat());
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Successful requests and errors of one json report.
fn counts(v: &Value) -> (u64, u64) {
    (v["requests"].as_u64().unwrap(), v["errors"].as_u64().unwrap())
}

async fn keys(cl: &Cluster) -> Vec<Vec<u8>> {
    let mut c = cl.client(0).await.unwrap();
    let r = c.get(vec![0u8], Some(GetOptions::new().with_from_key().with_keys_only())).await.unwrap();
    r.kvs().iter().map(|kv| kv.key().to_vec()).collect()
}

/// Every workload, small, against one server: the counts each must report.
async fn every_subcommand(cl: &Cluster) {
    let eps = cl.endpoints();
    let eps = &eps;
    let put = json(
        eps,
        &["--conns", "2", "--clients", "8", "put", "--total", "300", "--key-space-size", "100", "--sequential-keys"],
    );
    assert_eq!(counts(&put), (300, 0));
    let p = put["percentiles"].as_array().unwrap();
    assert_eq!(p.len(), 8, "etcd's percentiles: 10 .. 99.9");
    let range = json(eps, &["--clients", "4", "range", "foo", "--total", "200", "--consistency", "s"]);
    assert_eq!(counts(&range), (200, 0));
    let txn = json(eps, &["--clients", "4", "txn-put", "--txn-ops", "4", "--key-space-size", "1000", "--total", "50"]);
    assert_eq!(counts(&txn), (50, 0));
    let mixed = json(eps, &["--clients", "4", "txn-mixed", "--total", "200", "--key-space-size", "10", "--limit", "5"]);
    let (r, w) = (counts(&mixed["read"]), counts(&mixed["write"]));
    assert_eq!((r.0 + w.0, r.1 + w.1), (200, 0), "{mixed}");
    assert_eq!(counts(&mixed["all"]), (200, 0));
    assert!(r.0 > 40 && w.0 > 40, "rw-ratio 1 reads about as often as it writes: {r:?} {w:?}");
    let watch = json(
        eps,
        &[
            "--clients",
            "2",
            "--conns",
            "2",
            "watch",
            "--streams",
            "3",
            "--watch-per-stream",
            "4",
            "--watched-key-total",
            "2",
            "--key-space-size",
            "2",
            "--sequential-keys",
            "--put-total",
            "20",
        ],
    );
    assert_eq!(counts(&watch["creation"]), (12, 0));
    // 20 puts round 2 keys, each key watched by 6 of the 12 watchers.
    assert_eq!(counts(&watch["events"]), (120, 0));
    let lat = json(eps, &["--clients", "6", "--conns", "3", "watch-latency", "--total", "30", "--put-rate", "300"]);
    assert_eq!(counts(&lat), (180, 0), "every watcher sees every put");
    let distinct = json(
        eps,
        &["--clients", "6", "--conns", "3", "watch-latency", "--total", "30", "--put-rate", "300", "--distinct-keys"],
    );
    assert_eq!(counts(&distinct), (30, 0), "each put reaches its key's watcher");
    let get = json(eps, &["--clients", "2", "watch-get", "--watchers", "200", "--streams", "2", "--events", "8"]);
    assert_eq!(get["errors"], 0);
    let ka = json(eps, &["--clients", "5", "lease-keepalive", "--total", "100"]);
    assert_eq!(counts(&ka), (100, 0));
    let gr = json(eps, &["--clients", "5", "lease-grant-revoke", "--total", "40"]);
    assert_eq!(counts(&gr), (40, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subcommand_against_oxcd_and_etcd() {
    for binary in [oxcd(), Binary::Etcd(ETCD_34.into())] {
        let cl = Cluster::start(binary, ClusterOptions::default()).await.unwrap();
        every_subcommand(&cl).await;
    }
}

/// The same flags write the same keys into oxcd and etcd: PutVarint keys on one reused buffer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_match_etcds_tool_and_errors_are_counted() {
    let mut seen = Vec::new();
    for binary in [oxcd(), Binary::Etcd(ETCD_34.into())] {
        let cl = Cluster::start(binary, ClusterOptions::default()).await.unwrap();
        let eps = cl.endpoints();
        // 150 puts over 100 keys: the second round reuses the buffer the longest keys left.
        bench(&eps, &["put", "--total", "150", "--key-space-size", "100", "--sequential-keys", "--key-size", "4"]);
        let k: Vec<_> = keys(&cl).await.into_iter().filter(|k| k.len() == 4).collect();
        // Keys 64..99 take two bytes (zig-zag doubles them); the second round's one-byte keys keep
        // the 0x01 that key 99 left in the buffer, so they are 50 new keys.
        assert_eq!(k.len(), 150);
        for key in [[0x02, 0, 0, 0], [0x80, 0x01, 0, 0], [0x02, 0x01, 0, 0]] {
            assert!(k.contains(&key.to_vec()), "{key:?} missing");
        }
        // More ops than keys: each txn repeats a key, which etcd rejects.
        let out = bench(&eps, &["txn-put", "--txn-ops", "3", "--key-space-size", "2", "--total", "7"]);
        assert!(
            out.ends_with("\nError distribution:\n  [7]\tetcdserver: duplicate key given in txn request\n\n"),
            "{out}"
        );
        let text = bench(&eps, &["range", "foo", "--total", "20"]);
        assert!(text.starts_with("bench with linearizable range\n\nSummary:\n  Total:\t"), "{text}");
        assert!(
            text.contains("\nResponse time histogram:\n") && text.contains("\nLatency distribution:\n  10% in "),
            "{text}"
        );
        seen.push(k);
    }
    assert_eq!(seen[0], seen[1], "oxcd and etcd hold the same keys");
}

/// --target-leader asks any member for the leader and sends everything there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_leader_on_three_members() {
    let cl = Cluster::start(oxcd(), ClusterOptions { size: 3, ..Default::default() }).await.unwrap();
    let leader = cl.leader().await.unwrap();
    let follower = (leader + 1) % 3;
    let v = json(&[cl.endpoint(follower)], &["--target-leader", "--clients", "4", "put", "--total", "100"]);
    assert_eq!(counts(&v), (100, 0));
    let mut c = cl.client(leader).await.unwrap();
    assert_eq!(c.get(vec![0u8; 8], None).await.unwrap().kvs().len(), 1);
}

/// With `--cacert --cert --key` (etcd's tool's flags) the tool speaks TLS with a client
/// certificate, to oxcd and to etcd alike; `range` keeps its positional key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates_against_oxcd_and_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let certs = oxcd_testkit::tls::make_certs(dir.path());
    let tls = [
        format!("--cacert={}", certs.file("ca.crt")),
        format!("--cert={}", certs.file("client.crt")),
        format!("--key={}", certs.file("client.key")),
    ];
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    for binary in [oxcd(), Binary::Etcd(ETCD_34.into())] {
        let opts = ClusterOptions { tls: Some(certs.clone()), ..Default::default() };
        let cl = Cluster::start(binary, opts).await.unwrap();
        let eps = cl.endpoints();
        let put = json(&eps, &[&tls[..], &["--clients", "4", "put", "--total", "100"]].concat());
        assert_eq!(counts(&put), (100, 0));
        let range = json(&eps, &[&tls[..], &["--clients", "4", "range", "foo", "--total", "100"]].concat());
        assert_eq!(counts(&range), (100, 0));
    }
}
