//! Differential test: the same etcdctl 3.4 session (Debian's etcdctl) against real etcd 3.4 and
//! against oxcd; stdout, stderr and exit codes must match once member/cluster ids and raft terms are
//! normalised. Revisions are compared as they are. Each session runs once more over TLS (both
//! ports, client certificates required), against etcd and oxcd with the same certificates.

mod common;

use std::io::Write;
use std::process::Stdio;

use oxcd_testkit::tls::Certs;
use oxcd_testkit::{Binary, Cluster, ClusterOptions, ETCD_34, mask_remaining_ttl, sort_list};

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
    // etcd's hash of the history hashes the same bytes: equal histories, equal hashes.
    call(&["endpoint", "hashkv"]),
    call(&["endpoint", "hashkv", "--rev", "9", "-w", "json"]),
    call(&["endpoint", "hashkv", "-w", "table"]),
    call(&["endpoint", "hashkv", "--rev", "3"]),
    call(&["endpoint", "hashkv", "--rev", "1000"]),
    call(&["put", "", "empty"]),
    call(&["get", "", "--from-key", "--keys-only", "-w", "json"]),
    call(&["get", "", "--prefix", "-w", "fields"]),
];

/// Runs the session against `endpoint`; returns one normalised transcript per call.
fn run_session(endpoint: &Ep) -> Vec<String> {
    SESSION
        .iter()
        .map(|c| {
            let mut child = endpoint
                .ctl()
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
            normalize(&transcript.replace(&endpoint.url, "<endpoint>"))
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

/// Writes oxcd's transcript where `OXCD_DIFF_TRANSCRIPT` says, then requires every part of it to
/// equal etcd's.
fn assert_same(want: &[String], got: &[String]) {
    if let Ok(path) = std::env::var("OXCD_DIFF_TRANSCRIPT") {
        std::fs::write(path, got.concat()).unwrap();
    }
    assert_eq!(want.len(), got.len(), "the sessions ran different numbers of steps");
    let mismatches: Vec<String> = want
        .iter()
        .zip(got)
        .filter(|(w, g)| w != g)
        .map(|(w, g)| format!("=== etcd 3.4:\n{w}=== oxcd:\n{g}"))
        .collect();
    assert!(mismatches.is_empty(), "{} of {} differ:\n{}", mismatches.len(), want.len(), mismatches.join("\n"));
}

/// Where etcdctl reaches one member: its URL, and the client certificate when it serves TLS.
#[derive(Clone)]
struct Ep {
    url: String,
    tls: Option<Certs>,
}

impl Ep {
    fn of(c: &Cluster, i: usize, tls: &Option<Certs>) -> Ep {
        Ep { url: if tls.is_some() { c.client_url(i) } else { c.endpoint(i) }, tls: tls.clone() }
    }

    /// etcdctl 3.4 pointed at the member, ready for arguments.
    fn ctl(&self) -> std::process::Command {
        let mut c = common::etcdctl(&self.url);
        if let Some(certs) = &self.tls {
            c.arg(format!("--cacert={}", certs.file("ca.crt")))
                .arg(format!("--cert={}", certs.file("client.crt")))
                .arg(format!("--key={}", certs.file("client.key")));
        }
        c
    }
}

/// Certificates for a run over TLS (in a directory that lives as long as the test).
fn tls_certs(dir: &tempfile::TempDir) -> Option<Certs> {
    Some(oxcd_testkit::tls::make_certs(dir.path()))
}

/// Real etcd and oxcd clusters of `size` members with the same timing (serving TLS with `tls`).
async fn start_both(size: usize, tls: &Option<Certs>) -> (Cluster, Cluster) {
    let opts = ClusterOptions { size, heartbeat_ms: 100, election_ms: 1000, tls: tls.clone(), ..Default::default() };
    let etcd = Cluster::start(Binary::Etcd(ETCD_34.into()), opts.clone()).await.expect("real etcd starts");
    let oxcd = Cluster::start(common::oxcd(), opts).await.expect("oxcd starts");
    (etcd, oxcd)
}

/// Runs a session that needs a scratch directory against one-member etcd and oxcd at the same
/// time, and compares.
async fn compare_concurrently(session: fn(&Ep, &std::path::Path) -> Vec<String>, tls: Option<Certs>) {
    let (etcd, oxcd) = start_both(1, &tls).await;
    let (e_ep, o_ep) = (Ep::of(&etcd, 0, &tls), Ep::of(&oxcd, 0, &tls));
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (d1, d2) = (dirs.0.path().to_path_buf(), dirs.1.path().to_path_buf());
    let (want, got) = tokio::task::spawn_blocking(move || {
        let e = std::thread::spawn(move || session(&e_ep, &d1));
        let o = std::thread::spawn(move || session(&o_ep, &d2));
        (e.join().unwrap(), o.join().unwrap())
    })
    .await
    .unwrap();
    assert_same(&want, &got);
}

/// Runs the session against both servers (through member `via` of each) and compares.
async fn compare(size: usize, via: impl Fn(usize) -> usize, tls: Option<Certs>) {
    let (etcd, oxcd) = start_both(size, &tls).await;
    let e_ep = Ep::of(&etcd, via(etcd.leader().await.unwrap()), &tls);
    let o_ep = Ep::of(&oxcd, via(oxcd.leader().await.unwrap()), &tls);
    let (want, got) = tokio::task::spawn_blocking(move || (run_session(&e_ep), run_session(&o_ep))).await.unwrap();
    assert_same(&want, &got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_session_matches_real_etcd_on_one_member() {
    compare(1, |leader| leader, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_session_over_tls_matches_real_etcd_through_a_follower_of_three() {
    let dir = tempfile::tempdir().unwrap();
    compare(3, |leader| (leader + 1) % 3, tls_certs(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_session_matches_real_etcd_through_a_follower_of_three() {
    compare(3, |leader| (leader + 1) % 3, None).await;
}

/// `etcdctl watch` in its forms (key, prefix with prev-kv, range, from a revision, interactive, exec)
/// while a fixed sequence of writes runs; what each watcher printed is compared.
fn run_watch_session(endpoint: &Ep, dir: &std::path::Path) -> Vec<String> {
    let ctl = |args: &[&str]| {
        let out = endpoint.ctl().args(args).output().unwrap();
        assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    ctl(&["put", "a", "1"]); // 2
    ctl(&["put", "b", "1"]); // 3
    let watchers: &[(&[&str], &str)] = &[
        (&["watch", "a"], ""),
        (&["watch", "a", "--prefix", "--prev-kv"], ""),
        (&["watch", "a", "c"], ""),
        (&["watch", "a", "--rev", "2"], ""),
        (&["watch", "-i"], "watch b\nwatch a --prev-kv\n"),
        (
            &[
                "watch",
                "b",
                "--",
                "sh",
                "-c",
                "echo exec $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_REVISION $ETCD_WATCH_VALUE",
            ],
            "",
        ),
    ];
    let mut children = Vec::new();
    for (i, (args, stdin)) in watchers.iter().enumerate() {
        let out = std::fs::File::create(dir.join(format!("w{i}.out"))).unwrap();
        let mut child = endpoint
            .ctl()
            .args(*args)
            .stdin(Stdio::piped())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).unwrap();
        // Keep stdin open: interactive watch exits on EOF.
        children.push((child, input));
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    ctl(&["put", "a", "2"]); // 4
    ctl(&["put", "ab", "3"]); // 5
    ctl(&["put", "b", "2"]); // 6
    ctl(&["del", "a"]); // 7
    ctl(&["put", "b", "3"]); // 8
    std::thread::sleep(std::time::Duration::from_millis(1500));
    for (mut child, input) in children {
        // Kill before closing stdin: interactive watch would race to report the EOF.
        let _ = child.kill();
        let _ = child.wait();
        drop(input);
    }
    // A watch from a compacted revision: etcdctl reports the cancel and exits.
    ctl(&["compaction", "5"]);
    let out = endpoint.ctl().args(["watch", "a", "--rev", "3"]).output().unwrap();
    let mut transcripts: Vec<String> = (0..watchers.len())
        .map(|i| {
            format!(
                "$ etcdctl {}\n{}",
                watchers[i].0.join(" "),
                std::fs::read_to_string(dir.join(format!("w{i}.out"))).unwrap()
            )
        })
        .collect();
    transcripts.push(normalize(&format!(
        "$ etcdctl watch a --rev 3\n{}--- stderr\n{}--- exit {}\n",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        out.status.code().unwrap_or(-1)
    )));
    transcripts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_watch_matches_real_etcd() {
    compare_concurrently(run_watch_session, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_watch_over_tls_matches_real_etcd() {
    let dir = tempfile::tempdir().unwrap();
    compare_concurrently(run_watch_session, tls_certs(&dir)).await;
}

/// `etcdctl lease` and `put --lease` against both servers; lease ids (hex and decimal) are
/// normalised, everything else must match.
fn run_lease_session(endpoint: &Ep) -> Vec<String> {
    let ctl = |args: &[String]| -> (String, String, i32) {
        let out = endpoint.ctl().args(args).output().unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .filter(|l| !l.starts_with("{\"level\""))
                .collect::<Vec<_>>()
                .join("\n"),
            out.status.code().unwrap_or(-1),
        )
    };
    // "lease 694d7b4d53a3a00c granted with TTL(60s)"
    let (granted, _, _) = ctl(&["lease".into(), "grant".into(), "60".into()]);
    let id = granted.split_whitespace().nth(1).unwrap().to_string();
    let dec = i64::from_str_radix(&id, 16).unwrap().to_string();
    let script: &[&str] = &[
        "put k1 v1 --lease={id}",
        "put k2 v2 --lease={id}",
        "lease timetolive {id}",
        "lease timetolive {id} --keys",
        "lease timetolive {id} --keys -w json",
        "lease list",
        "lease keep-alive --once {id}",
        "get k1 -w json",
        "lease grant 1",
        "lease grant 9000000001",
        "lease revoke 1234",
        "put k3 v --lease=1234",
        "lease timetolive 1234",
        "lease revoke {id}",
        "get k --prefix",
        "lease timetolive {id}",
        "lease keep-alive --once {id}",
    ];
    let mut out = vec![normalize_lease(&granted, &id, &dec)];
    for line in script {
        let line = line.replace("{id}", &id);
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        let (stdout, stderr, code) = ctl(&args);
        let t = format!("$ etcdctl {line}\n{stdout}--- stderr\n{stderr}\n--- exit {code}\n");
        out.push(normalize_lease(&normalize(&t), &id, &dec));
    }
    out
}

/// Lease ids differ between two clusters: the session's lease and any other granted one. etcd lists
/// a lease's keys in Go map order (random), so key lists are sorted.
fn normalize_lease(s: &str, hex: &str, dec: &str) -> String {
    let s = sort_list(&sort_list(s, "attached keys([", "])", " "), "\"keys\":[", "]", ",");
    let mut t = mask_remaining_ttl(&s).replace(hex, "LEASE").replace(dec, "LEASE-DEC");
    // Other leases granted in the session ("lease <hex> granted", "ID":<dec>).
    for key in ["\"ID\":", "\"lease\":"] {
        t = replace_number_after(&t, key);
    }
    let words: Vec<String> = t
        .split(' ')
        .map(|w| {
            if (10..=16).contains(&w.len()) && w.chars().all(|c| c.is_ascii_hexdigit()) {
                "OTHER".to_string()
            } else {
                w.to_string()
            }
        })
        .collect();
    words.join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_lease_matches_real_etcd() {
    compare_leases(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_lease_over_tls_matches_real_etcd() {
    let dir = tempfile::tempdir().unwrap();
    compare_leases(tls_certs(&dir)).await;
}

async fn compare_leases(tls: Option<Certs>) {
    let (etcd, oxcd) = start_both(1, &tls).await;
    let (e_ep, o_ep) = (Ep::of(&etcd, 0, &tls), Ep::of(&oxcd, 0, &tls));
    let (want, got) =
        tokio::task::spawn_blocking(move || (run_lease_session(&e_ep), run_lease_session(&o_ep))).await.unwrap();
    assert_same(&want, &got);
}

/// `etcdctl lock` (with and without an exec command) and `etcdctl elect` (campaign and `--listen`)
/// against both servers. These are etcdctl's own client-side recipes over KV, leases and watch.
fn run_lock_elect_session(endpoint: &Ep, dir: &std::path::Path) -> Vec<String> {
    let spawn = |name: &str, args: &[&str]| {
        let out = std::fs::File::create(dir.join(name)).unwrap();
        endpoint.ctl().args(args).stdin(Stdio::null()).stdout(out.try_clone().unwrap()).stderr(out).spawn().unwrap()
    };
    let interrupt = |child: &mut std::process::Child| {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let _ = child.wait();
    };
    let pause = |ms| std::thread::sleep(std::time::Duration::from_millis(ms));
    // A lock held by one etcdctl while a second waits with an exec command.
    let mut holder = spawn("lock1", &["lock", "mylock"]);
    pause(1500);
    let mut second = spawn("lock2", &["lock", "mylock", "--", "sh", "-c", "echo exec $ETCD_LOCK_KEY"]);
    pause(1500);
    interrupt(&mut holder);
    let _ = second.wait();
    // An election: a campaigner, then a listener, then a second campaigner waiting behind it.
    let mut leader = spawn("elect1", &["elect", "myelection", "p1"]);
    pause(1500);
    let mut listener = spawn("elect-listen", &["elect", "-l", "myelection"]);
    let mut follower = spawn("elect2", &["elect", "myelection", "p2"]);
    pause(1500);
    interrupt(&mut leader);
    pause(1500);
    interrupt(&mut follower);
    pause(500);
    interrupt(&mut listener);
    ["lock1", "lock2", "elect1", "elect-listen", "elect2"]
        .iter()
        .map(|n| {
            let text = std::fs::read_to_string(dir.join(n)).unwrap();
            // Keys carry lease ids, which differ between the two clusters.
            let text: String = text
                .split('\n')
                .map(|l| match l.rsplit_once('/') {
                    Some((pfx, id)) if !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()) => {
                        format!("{pfx}/LEASE")
                    }
                    _ => l.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n");
            format!("$ {n}\n{}", normalize(&text))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_lock_and_elect_match_real_etcd() {
    compare_concurrently(run_lock_elect_session, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_lock_and_elect_over_tls_match_real_etcd() {
    let dir = tempfile::tempdir().unwrap();
    compare_concurrently(run_lock_elect_session, tls_certs(&dir)).await;
}
