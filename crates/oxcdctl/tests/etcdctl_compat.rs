//! oxcdctl against etcdctl 3.4: the same session, run by each against its own fresh real etcd 3.4,
//! must print the same stdout and exit the same way (ids and raft terms normalised).

use std::process::Command;

use oxcd_testkit::{Binary, Cluster, ClusterOptions, ETCD_34, ETCDCTL_34};

const SESSION: &[&[&str]] = &[
    &["put", "foo", "bar"],
    &["put", "foo", "bar2", "--prev-kv"],
    &["put", "foo", "bar3", "--prev-kv", "-w", "json"],
    &["put", "fop", "x"],
    &["put", "zeta", "z"],
    &["get", "foo"],
    &["get", "foo", "-w", "json"],
    &["get", "fo", "--prefix"],
    &["get", "fo", "--prefix", "--limit", "1", "-w", "json"],
    &["get", "foo", "--from-key", "--keys-only"],
    &["get", "foo", "zeta", "--print-value-only"],
    &["get", "foo", "--rev", "2", "-w", "json"],
    &["get", "", "--prefix", "--sort-by", "MODIFY", "--order", "DESCEND"],
    &["get", "", "--prefix", "--sort-by", "VERSION", "-w", "json"],
    &["get", "missing", "-w", "json"],
    &["get", "foo", "--consistency", "s"],
    &["get", "foo", "--hex"],
    &["del", "missing"],
    &["del", "foo", "--prev-kv"],
    &["del", "f", "--prefix", "-w", "json"],
    &["get", "", "--from-key", "-w", "json"],
    &["get", "zeta", "--rev", "100"],
    &["put", "", "empty"],
];

fn run(bin: &str, endpoint: &str, args: &[&str]) -> String {
    let out =
        Command::new(bin).env("ETCDCTL_API", "3").arg(format!("--endpoints={endpoint}")).args(args).output().unwrap();
    let stderr: Vec<_> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.starts_with("{\"level\""))
        .map(String::from)
        .collect();
    let text = format!(
        "$ {}\n{}--- stderr\n{}\n--- exit {}\n",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        stderr.join("\n"),
        out.status.code().unwrap_or(-1)
    );
    normalize(&text)
}

fn normalize(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    let keys = ["\"cluster_id\":", "\"member_id\":", "\"raft_term\":"];
    while let Some((pos, key)) = keys.iter().filter_map(|k| rest.find(k).map(|p| (p, *k))).min() {
        out.push_str(&rest[..pos + key.len()]);
        rest = &rest[pos + key.len()..];
        rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
        out.push('N');
    }
    out.push_str(rest);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oxcdctl_prints_what_etcdctl_prints() {
    let opts = ClusterOptions { size: 1, heartbeat_ms: 100, election_ms: 1000, ..Default::default() };
    let a = Cluster::start(Binary::Etcd(ETCD_34.into()), opts.clone()).await.unwrap();
    let b = Cluster::start(Binary::Etcd(ETCD_34.into()), opts).await.unwrap();
    let (ea, eb) = (a.endpoint(0), b.endpoint(0));
    let (want, got) = tokio::task::spawn_blocking(move || {
        let want: Vec<String> = SESSION.iter().map(|c| run(ETCDCTL_34, &ea, c)).collect();
        let got: Vec<String> = SESSION.iter().map(|c| run(env!("CARGO_BIN_EXE_oxcdctl"), &eb, c)).collect();
        (want, got)
    })
    .await
    .unwrap();
    let diffs: Vec<String> = want
        .iter()
        .zip(&got)
        .filter(|(w, g)| w != g)
        .map(|(w, g)| format!("=== etcdctl:\n{w}=== oxcdctl:\n{g}"))
        .collect();
    assert!(diffs.is_empty(), "{} of {} differ:\n{}", diffs.len(), want.len(), diffs.join("\n"));
}
