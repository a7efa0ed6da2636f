//! Snapshots across the two servers, through real processes and real tools: oxcd sends an etcd
//! backend file that etcdctl 3.4 saves, reads and restores into a real etcd; an etcd snapshot
//! restores with oxcdctl into a 3-member oxcd cluster; oxcd to oxcd round-trips. Each time the keys
//! come back with their revisions, versions and leases, history and compaction included. And
//! `defrag --data-dir` compacts a stopped member's backend.

use std::path::Path;
use std::process::{Command, Output};

use oxcd_testkit::{Binary, Cluster, ClusterOptions, ETCD_34, ETCDCTL_34, free_port};

const OXCDCTL: &str = env!("CARGO_BIN_EXE_oxcdctl");

fn oxcd_binary() -> std::path::PathBuf {
    oxcd_testkit::oxcd_beside(OXCDCTL)
}

fn ctl(bin: &str, dir: &Path, endpoint: &str, args: &[&str]) -> Output {
    oxcd_testkit::ctl_command(bin).current_dir(dir).arg(format!("--endpoints={endpoint}")).args(args).output().unwrap()
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// Keys with history: overwrites, a deletion, keys on a lease, a compaction, a multi-key txn.
/// Returns the lease id (hex).
fn write_history(dir: &Path, ep: &str) -> String {
    for i in 0..40 {
        ok(ctl(ETCDCTL_34, dir, ep, &["put", &format!("k/{i:02}"), &format!("v{i}")]));
    }
    for i in 0..10 {
        ok(ctl(ETCDCTL_34, dir, ep, &["put", &format!("k/{i:02}"), &format!("again{i}")]));
    }
    ok(ctl(ETCDCTL_34, dir, ep, &["put", "big", &"x".repeat(10_000)]));
    ok(ctl(ETCDCTL_34, dir, ep, &["del", "k/3", "--prefix"]));
    let lease = ok(ctl(ETCDCTL_34, dir, ep, &["lease", "grant", "3000"]));
    let id = lease.split_whitespace().nth(1).unwrap().to_string();
    ok(ctl(ETCDCTL_34, dir, ep, &["put", "leased", "yes", "--lease", &id]));
    ok(ctl(ETCDCTL_34, dir, ep, &["compaction", "30"]));
    let txn = ok(oxcd_testkit::ctl_command(ETCDCTL_34)
        .arg(format!("--endpoints={ep}"))
        .arg("txn")
        .stdin(
            std::fs::File::open({
                let p = dir.join("txn.in");
                std::fs::write(&p, "\nput t1 a\nput t2 b\n\n\n").unwrap();
                p
            })
            .unwrap(),
        )
        .output()
        .unwrap());
    assert!(txn.starts_with("SUCCESS"), "{txn}");
    id
}

/// What a store holds, as etcdctl 3.4 prints it: every key with its revisions, the keys at a
/// revision after the compaction, and the leases.
fn contents(dir: &Path, ep: &str) -> Vec<String> {
    let mut out = Vec::new();
    for args in [
        &["get", "", "--from-key", "-w", "json"][..],
        &["get", "k/", "--prefix", "--rev", "45", "-w", "json"],
        &["get", "k/", "--prefix", "--rev", "10"],
        &["lease", "list"],
    ] {
        let o = ctl(ETCDCTL_34, dir, ep, args);
        let err = String::from_utf8_lossy(&o.stderr);
        let err: Vec<&str> = err.lines().filter(|l| !l.starts_with("{\"level\"")).collect();
        let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), err.join("\n"));
        // Headers name the member and cluster, and raft_term counts elections: not the data.
        out.push(without_header(&text));
    }
    out
}

fn without_header(s: &str) -> String {
    match (s.find("\"header\":{"), s.find("},\"kvs\"")) {
        (Some(a), Some(b)) => {
            let rev = &s[a..b];
            let rev = rev.split(',').find(|f| f.starts_with("\"revision\"")).unwrap_or("").to_string();
            format!("{}{rev}{}", &s[..a], &s[b + 1..])
        }
        _ => s.to_string(),
    }
}

fn status_revision(dir: &Path, file: &str) -> i64 {
    let json = ok(oxcd_testkit::ctl_command(ETCDCTL_34)
        .current_dir(dir)
        .args(["-w", "json", "snapshot", "status", file])
        .output()
        .unwrap());
    let at = json.find("\"revision\":").unwrap() + "\"revision\":".len();
    json[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

/// Restores `file` for member `m{i}` of an `n`-member cluster on `ports` into `dir/m{i}`.
fn restore(bin: &str, work: &Path, file: &str, dir: &Path, ports: &[(u16, u16)]) {
    let ic: Vec<String> = ports.iter().enumerate().map(|(i, p)| format!("m{i}=http://127.0.0.1:{}", p.1)).collect();
    for (i, p) in ports.iter().enumerate() {
        let out = oxcd_testkit::ctl_command(bin)
            .current_dir(work)
            .args(["snapshot", "restore", file])
            .arg(format!("--data-dir={}", dir.join(format!("m{i}")).display()))
            .arg(format!("--name=m{i}"))
            .arg(format!("--initial-cluster={}", ic.join(",")))
            .arg("--initial-cluster-token=test-cluster")
            .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{}", p.1))
            .output()
            .unwrap();
        assert!(out.status.success(), "{bin} restore: {}", String::from_utf8_lossy(&out.stderr));
    }
}

fn ports(n: usize) -> Vec<(u16, u16)> {
    (0..n).map(|_| (free_port(), free_port())).collect()
}

/// A move between servers: `from` gets the history, `saver` saves its snapshot as `s.db`, `check`
/// looks at the file (with the work directory and `from`'s endpoint), `restorer` restores it for
/// `members` members, and `to` starts on the restored directories. Returns what `from` held, the
/// new cluster and the work directory.
async fn carry_over(
    from: Binary,
    saver: &'static str,
    check: fn(&Path, &str),
    restorer: &'static str,
    to: Binary,
    members: usize,
) -> (Vec<String>, Cluster, tempfile::TempDir) {
    let old = Cluster::start(from, ClusterOptions::default()).await.unwrap();
    let ep = old.endpoint(0);
    let work = tempfile::tempdir().unwrap();
    let w = work.path().to_path_buf();
    let (want, ports) = tokio::task::spawn_blocking(move || {
        write_history(&w, &ep);
        assert_eq!(ok(ctl(saver, &w, &ep, &["snapshot", "save", "s.db"])), "Snapshot saved at s.db\n");
        assert!(!w.join("s.db.part").exists());
        check(&w, &ep);
        let ports = ports(members);
        restore(restorer, &w, "s.db", &w.join("restored"), &ports);
        (contents(&w, &ep), ports)
    })
    .await
    .unwrap();
    drop(old);
    let dir = tempfile::Builder::new().tempdir().unwrap();
    for i in 0..members {
        std::fs::rename(work.path().join(format!("restored/m{i}")), dir.path().join(format!("m{i}"))).unwrap();
    }
    let opts = ClusterOptions { size: members, ports, ..Default::default() };
    (want, Cluster::start_in(to, opts, dir).await.unwrap(), work)
}

/// Every member of `cl` holds `want`, and the next write gets the next revision.
async fn holds(cl: &Cluster, work: &Path, want: Vec<String>) {
    let (eps, w) = (cl.endpoints(), work.to_path_buf());
    tokio::task::spawn_blocking(move || {
        for ep in &eps {
            assert_eq!(contents(&w, ep), want, "member {ep}");
        }
        let put = ok(ctl(ETCDCTL_34, &w, &eps[eps.len() - 1], &["put", "after", "1", "-w", "json"]));
        assert!(put.contains("\"revision\":56"), "{put}");
        let members = ok(ctl(ETCDCTL_34, &w, &eps[0], &["member", "list"]));
        assert_eq!(members.lines().count(), eps.len(), "{members}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oxcd_snapshot_restores_into_real_etcd() {
    let check = |w: &Path, ep: &str| {
        // etcdctl 3.4 saved oxcd's stream (checking nothing but the transfer); it reads the file
        // with the real bbolt, and oxcdctl reads it the same way.
        let rev = ok(ctl(ETCDCTL_34, w, ep, &["get", "t1", "-w", "json"]));
        assert!(rev.contains("\"revision\":55"), "{rev}");
        assert_eq!(status_revision(w, "s.db"), 55);
        for format in ["simple", "json", "table", "fields"] {
            let theirs = ctl(ETCDCTL_34, w, ep, &["-w", format, "snapshot", "status", "s.db"]);
            let ours = ctl(OXCDCTL, w, ep, &["-w", format, "snapshot", "status", "s.db"]);
            assert_eq!(ours.stdout, theirs.stdout, "-w {format}");
        }
    };
    let oxcd = Binary::Oxcd(oxcd_binary());
    let etcd = Binary::Etcd(ETCD_34.into());
    let (want, cl, work) = carry_over(oxcd, ETCDCTL_34, check, ETCDCTL_34, etcd, 1).await;
    holds(&cl, work.path(), want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_snapshot_restores_into_three_oxcd_members() {
    let oxcd = Binary::Oxcd(oxcd_binary());
    let etcd = Binary::Etcd(ETCD_34.into());
    let (want, cl, work) = carry_over(etcd, ETCDCTL_34, |_, _| {}, OXCDCTL, oxcd, 3).await;
    holds(&cl, work.path(), want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oxcdctl_saves_and_restores_oxcd_and_fails_as_etcdctl_does() {
    let check = |w: &Path, ep: &str| {
        // The same failures, word for word, from both tools.
        let full = std::fs::read(w.join("s.db")).unwrap();
        std::fs::write(w.join("nohash.db"), &full[..full.len() - 32]).unwrap();
        let mut bad = full.clone();
        bad[5000] ^= 0xff;
        std::fs::write(w.join("badhash.db"), &bad).unwrap();
        let cases: &[&[&str]] = &[
            &["snapshot", "restore"],
            &["snapshot", "restore", "nofile.db", "--data-dir", "e1"],
            &["snapshot", "restore", "nohash.db", "--data-dir", "e2"],
            &["snapshot", "restore", "badhash.db", "--data-dir", "e3"],
            &["snapshot", "restore", "s.db", "--name", "foo", "--data-dir", "e4"],
            &["snapshot", "restore", "s.db", "--data-dir", "w"],
        ];
        std::fs::create_dir_all(w.join("w")).unwrap();
        for args in cases {
            // Ours first: unlike etcdctl, a failed restore leaves no directory behind.
            let ours = ctl(OXCDCTL, w, ep, args);
            for d in ["e1", "e2", "e3", "e4"] {
                assert!(!w.join(d).exists(), "{args:?} left {d}");
            }
            let theirs = ctl(ETCDCTL_34, w, ep, args);
            for d in ["e1", "e2", "e3", "e4"] {
                let _ = std::fs::remove_dir_all(w.join(d));
            }
            let errors = |o: &Output| {
                let err = String::from_utf8_lossy(&o.stderr);
                let lines: Vec<String> =
                    err.lines().filter(|l| !l.starts_with("{\"level\"")).map(String::from).collect();
                (String::from_utf8_lossy(&o.stdout).into_owned(), lines, o.status.code())
            };
            assert_eq!(errors(&ours), errors(&theirs), "{args:?}");
        }
    };
    let oxcd = || Binary::Oxcd(oxcd_binary());
    let (want, cl, work) = carry_over(oxcd(), OXCDCTL, check, OXCDCTL, oxcd(), 1).await;
    holds(&cl, work.path(), want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defrag_data_dir_compacts_a_stopped_members_backend() {
    let mut oxcd = Cluster::start(Binary::Oxcd(oxcd_binary()), ClusterOptions::default()).await.unwrap();
    let mut c = oxcd.client(0).await.unwrap();
    let value = "v".repeat(4000);
    for i in 0..2000 {
        c.put(format!("bulk/{i:05}"), value.as_str(), None).await.unwrap();
    }
    c.delete("bulk/", Some(etcd_client::DeleteOptions::new().with_prefix())).await.unwrap();
    c.put("kept", "yes", None).await.unwrap();
    let rev = c.get("kept", None).await.unwrap().header().unwrap().revision();
    c.compact(rev, Some(etcd_client::CompactionOptions::new().with_physical())).await.unwrap();
    let data_dir = oxcd.data_dir(0);
    let data = data_dir.display().to_string();
    let db = data_dir.join("member/snap/db");
    let defrag = |dir: &str| Command::new(OXCDCTL).args(["defrag", "--data-dir", dir]).output().unwrap();

    // While the member runs, its file is locked.
    let busy = defrag(&data);
    assert_eq!(busy.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&busy.stderr).starts_with(&format!("Failed to defragment etcd data[{data}] (")));

    assert_eq!(oxcd.stop(0), Some(0));
    let before = std::fs::metadata(&db).unwrap().len();
    let done = defrag(&data);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    assert!(done.stdout.is_empty() && done.stderr.is_empty());
    let after = std::fs::metadata(&db).unwrap().len();
    assert!(after < before / 2, "{before} -> {after} bytes");

    let missing = defrag("no/such/dir");
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr),
        "Failed to defragment etcd data[no/such/dir] (cannot open database at no/such/dir/member/snap/db: no such file)\n"
    );

    oxcd.restart(0).unwrap();
    oxcd.wait_ready(std::time::Duration::from_secs(30)).await.unwrap();
    let mut c = oxcd.client(0).await.unwrap();
    let r = c.get("kept", None).await.unwrap();
    assert_eq!(r.kvs()[0].value(), b"yes");
    assert_eq!(r.header().unwrap().revision(), rev);
    assert_eq!(c.put("next", "1", None).await.unwrap().header().unwrap().revision(), rev + 1);
}
