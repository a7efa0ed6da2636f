//! Differential test: the same etcdctl 3.4 session (Debian's etcdctl) against real etcd 3.4 and
//! against oxcd; stdout, stderr and exit codes must match once member/cluster ids and raft terms are
//! normalised. Revisions are compared as they are.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use oxcd_testkit::{Binary, Cluster, ClusterOptions, ETCD_34, ETCDCTL_34};

/// One etcdctl invocation: arguments and what goes to its stdin.
struct Call {
    args: &'static [&'static str],
    stdin: &'static str,
}

const fn call(args: &'static [&'static str]) -> Call {
    Call { args, stdin: "" }
}

/// The session: put/get/del/txn/compaction in every output format etcdctl has for them, plus the
/// errors a script can run into.
const SESSION: &[Call] = &[
    call(&["put", "foo", "bar"]),
    call(&["put", "foo", "bar2", "--prev-kv"]),
    call(&["put", "foo", "bar3", "--prev-kv", "-w", "json"]),
    call(&["get", "foo"]),
    call(&["get", "foo", "-w", "json"]),
    call(&["get", "foo", "-w", "fields"]),
    call(&["put", "foo2", "x"]),
    call(&["put", "fop", "y"]),
    call(&["put", "zeta", "z"]),
    call(&["get", "fo", "--prefix"]),
    call(&["get", "fo", "--prefix", "--limit", "1", "-w", "json"]),
    call(&["get", "foo", "--from-key", "--keys-only"]),
    call(&["get", "foo", "zeta"]),
    call(&["get", "foo", "--rev", "2", "-w", "json"]),
    call(&["get", "", "--prefix", "--order", "DESCEND", "--sort-by", "MODIFY"]),
    call(&["get", "", "--prefix", "--sort-by", "VERSION", "-w", "json"]),
    call(&["get", "", "--prefix", "--sort-by", "CREATE", "--order", "DESCEND", "--limit", "2", "-w", "json"]),
    call(&["get", "", "--prefix", "--sort-by", "VALUE", "--order", "ASCEND"]),
    call(&["get", "foo", "--print-value-only"]),
    call(&["get", "--consistency", "s", "foo"]),
    call(&["get", "missing"]),
    call(&["get", "missing", "-w", "json"]),
    call(&["del", "missing"]),
    call(&["del", "foo", "--prev-kv"]),
    call(&["del", "fo", "--prefix", "-w", "json"]),
    call(&["put", "a", "1"]),
    call(&["put", "b", "2"]),
    call(&["put", "c", "3"]),
    Call { args: &["txn"], stdin: "value(\"a\") = \"1\"\n\nput a 11\nget b\n\nput a 111\n\n" },
    Call { args: &["txn"], stdin: "value(\"a\") = \"1\"\n\nput a 11\n\nput a 111\nget a\n\n" },
    Call { args: &["txn", "-w", "json"], stdin: "mod(\"b\") > \"0\"\nver(\"c\") = \"1\"\n\ndel b\nget c\n\n\n" },
    Call { args: &["txn"], stdin: "create(\"nope\") = \"0\"\n\nput nope yes\n\n\n" },
    Call { args: &["txn", "-w", "json"], stdin: "\nput t1 a\nput t1 b\n\n\n" },
    call(&["del", "a", "c", "--prev-kv"]),
    call(&["get", "", "--from-key", "-w", "json"]),
    call(&["compaction", "5"]),
    call(&["get", "foo", "--rev", "3"]),
    call(&["get", "foo2", "--rev", "5", "-w", "json"]),
    call(&["compaction", "5"]),
    call(&["compaction", "1000"]),
    call(&["get", "c", "--rev", "1000"]),
    call(&["compaction", "--physical", "8"]),
    call(&["put", "", "empty"]),
    call(&["get", "", "--from-key", "--keys-only", "-w", "json"]),
    call(&["get", "", "--prefix", "-w", "fields"]),
];

/// Runs the session against `endpoint`; returns one normalised transcript per call.
fn run_session(endpoint: &str) -> Vec<String> {
    SESSION
        .iter()
        .map(|c| {
            let mut child = Command::new(ETCDCTL_34)
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={endpoint}"))
                .args(c.args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run etcdctl");
            child.stdin.take().unwrap().write_all(c.stdin.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            let transcript = format!(
                "$ etcdctl {}\n{}--- stderr\n{}--- exit {}\n",
                c.args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                out.status.code().unwrap_or(-1)
            );
            normalize(&transcript)
        })
        .collect()
}

/// Replaces what legitimately differs between two clusters: ids, raft terms, client log lines.
fn normalize(s: &str) -> String {
    let mut out = String::new();
    for line in s.lines() {
        // clientv3's retry warnings carry timestamps and client uuids; the error line follows them.
        if line.starts_with("{\"level\":\"warn\"") {
            continue;
        }
        let mut l = line.to_string();
        for key in [
            "\"cluster_id\":",
            "\"member_id\":",
            "\"raft_term\":",
            "\"ClusterID\" : ",
            "\"MemberID\" : ",
            "\"RaftTerm\" : ",
        ] {
            l = replace_number_after(&l, key);
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

fn replace_number_after(line: &str, key: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(pos) = rest.find(key) {
        out.push_str(&rest[..pos + key.len()]);
        rest = &rest[pos + key.len()..];
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits > 0 {
            out.push('N');
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

/// Runs the session against both servers (through member `via` of each) and compares.
async fn compare(size: usize, via: impl Fn(usize) -> usize) {
    let opts = ClusterOptions { size, heartbeat_ms: 100, election_ms: 1000, ..Default::default() };
    let etcd = Cluster::start(Binary::Etcd(ETCD_34.into()), opts.clone()).await.expect("real etcd starts");
    let oxcd = Cluster::start(common::oxcd(), opts).await.expect("oxcd starts");
    let e_ep = etcd.endpoint(via(etcd.leader().await.unwrap()));
    let o_ep = oxcd.endpoint(via(oxcd.leader().await.unwrap()));
    let (want, got) = tokio::task::spawn_blocking(move || (run_session(&e_ep), run_session(&o_ep))).await.unwrap();
    if let Ok(path) = std::env::var("OXCD_DIFF_TRANSCRIPT") {
        std::fs::write(path, got.concat()).unwrap();
    }
    let mut mismatches = Vec::new();
    for (w, g) in want.iter().zip(&got) {
        if w != g {
            mismatches.push(format!("=== etcd 3.4:\n{w}=== oxcd:\n{g}"));
        }
    }
    assert!(mismatches.is_empty(), "{} of {} calls differ:\n{}", mismatches.len(), want.len(), mismatches.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_session_matches_real_etcd_on_one_member() {
    compare(1, |leader| leader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_session_matches_real_etcd_through_a_follower_of_three() {
    compare(3, |leader| (leader + 1) % 3).await;
}
