//! Shared by the process-level tests of the `oxcd` binary.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use etcd_client::{Client, Error, GetOptions};
use oxcd_testkit::{Binary, Cluster, ClusterOptions};
use tokio::sync::Mutex;
use tonic::Code;

/// Debian's etcdctl 3.4 (API v3) pointed at `endpoint`, ready for arguments.
pub fn etcdctl(endpoint: &str) -> std::process::Command {
    let mut c = oxcd_testkit::ctl_command(oxcd_testkit::ETCDCTL_34);
    c.arg(format!("--endpoints={endpoint}"));
    c
}

pub fn oxcd() -> Binary {
    Binary::Oxcd(env!("CARGO_BIN_EXE_oxcd").into())
}

pub async fn cluster(size: usize) -> Cluster {
    Cluster::start(oxcd(), ClusterOptions { size, ..Default::default() }).await.expect("cluster starts")
}

pub async fn cluster_with(opts: ClusterOptions) -> Cluster {
    Cluster::start(oxcd(), opts).await.expect("cluster starts")
}

/// The gRPC code and message of a client error.
pub fn status(e: Error) -> (Code, String) {
    match e {
        Error::GRpcStatus(s) => (s.code(), s.message().to_string()),
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

/// Asserts that `r` failed with exactly etcd's code and message.
#[track_caller]
pub fn assert_etcd_error<T: std::fmt::Debug>(r: Result<T, Error>, code: Code, msg: &str) {
    match r {
        Ok(v) => panic!("expected {code:?} {msg:?}, got Ok({v:?})"),
        Err(e) => assert_eq!(status(e), (code, msg.to_string())),
    }
}

/// What the writers saw acknowledged: key -> value.
pub type Acked = Arc<Mutex<BTreeMap<String, String>>>;

/// Writers that each put their own keys, moving to another member when theirs fails, and record
/// what was acknowledged.
pub fn start_writers(
    endpoints: Vec<String>,
    writers: usize,
    stop: Arc<AtomicBool>,
    acked: Acked,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..writers)
        .map(|w| {
            let endpoints = endpoints.clone();
            let stop = stop.clone();
            let acked = acked.clone();
            tokio::spawn(async move {
                let mut target = w % endpoints.len();
                let mut client: Option<Client> = None;
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if client.is_none() {
                        let opts = etcd_client::ConnectOptions::new()
                            .with_connect_timeout(Duration::from_millis(500))
                            .with_timeout(Duration::from_secs(3));
                        client = Client::connect([&endpoints[target]], Some(opts)).await.ok();
                        if client.is_none() {
                            target = (target + 1) % endpoints.len();
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    }
                    let key = format!("w{w:02}-{i:06}");
                    let value = format!("v{i}");
                    match client.as_mut().expect("connected").put(key.clone(), value.clone(), None).await {
                        Ok(_) => {
                            acked.lock().await.insert(key, value);
                            i += 1;
                        }
                        Err(_) => {
                            // Outcome unknown: maybe applied. Use a new key so the check stays exact.
                            i += 1;
                            client = None;
                            target = (target + 1) % endpoints.len();
                        }
                    }
                }
            })
        })
        .collect()
}

/// Every member's full key space and revision, read locally after a linearizable barrier.
pub async fn dump(cl: &Cluster, i: usize) -> (i64, BTreeMap<String, String>) {
    let mut c = cl.client(i).await.unwrap();
    // A linearizable read first: the member has applied everything committed before it.
    c.get("barrier", None).await.unwrap();
    let r = c.get("\0", Some(GetOptions::new().with_from_key().with_serializable())).await.unwrap();
    let data =
        r.kvs().iter().map(|kv| (kv.key_str().unwrap().to_string(), kv.value_str().unwrap().to_string())).collect();
    (r.header().unwrap().revision(), data)
}

/// Waits until every member holds the same revision and data, then checks every acknowledged
/// write is there and the revision counts them.
pub async fn check_converged(cl: &Cluster, acked: &BTreeMap<String, String>) {
    cl.wait_ready(Duration::from_secs(30)).await.unwrap();
    // Members converge once they applied the same log; give followers a moment.
    let mut last = None;
    for _ in 0..50 {
        let mut dumps = Vec::new();
        for i in 0..cl.len() {
            dumps.push(dump(cl, i).await);
        }
        if dumps.windows(2).all(|w| w[0] == w[1]) {
            last = Some(dumps.swap_remove(0));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (rev, data) = last.expect("members never converged to the same revision and data");
    for (k, v) in acked {
        assert_eq!(data.get(k), Some(v), "acknowledged write {k} lost");
    }
    assert!(rev as usize > acked.len(), "revision {rev} below {} acknowledged writes", acked.len());
}

/// `GET path` on 127.0.0.1:`port` over plain HTTP/1.1: the whole answer (status line, headers,
/// body), or "" if nothing listens.
pub async fn http_get(port: u16, path: &str) -> String {
    http(port, format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")).await
}

/// `POST path` of a JSON `body`, as [`http_get`].
pub async fn http_post(port: u16, path: &str, body: &str) -> String {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    http(port, head + body).await
}

/// Sends `request` to 127.0.0.1:`port` and reads the answer until the server closes.
async fn http(port: u16, request: String) -> String {
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = s.write_all(request.as_bytes());
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    })
    .await
    .unwrap_or_default()
}

/// Grants `n` leases of `ttl` seconds from `tasks` concurrent clients; their ids.
pub async fn grant_leases(c: &Client, n: usize, ttl: i64, tasks: usize) -> Vec<i64> {
    let granters: Vec<_> = (0..tasks)
        .map(|w| {
            let mut c = c.clone();
            tokio::spawn(async move {
                let mut ids = Vec::with_capacity(n / tasks + 1);
                for _ in (w..n).step_by(tasks) {
                    ids.push(c.lease_grant(ttl, None).await.unwrap().id());
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::with_capacity(n);
    for g in granters {
        ids.extend(g.await.unwrap());
    }
    ids
}

/// File descriptors process `pid` holds open (from /proc).
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}
