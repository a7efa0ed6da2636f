//! The long-running tools: `make-mirror` (etcd to oxcd), `check perf` (against oxcd, by oxcdctl and
//! by etcdctl 3.4) and `check datascale` (against etcd, whose `/metrics` it reads).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oxcd_testkit::{Binary, Cluster, ClusterOptions, ETCD_34, ETCDCTL_34};

const OXCDCTL: &str = env!("CARGO_BIN_EXE_oxcdctl");

fn oxcd() -> Binary {
    Binary::Oxcd(oxcd_testkit::oxcd_beside(OXCDCTL))
}

fn ctl(bin: &str, endpoint: &str, args: &[&str]) -> (String, String, i32) {
    let out = oxcd_testkit::ctl_command(bin).arg(format!("--endpoints={endpoint}")).args(args).output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

fn opts() -> ClusterOptions {
    ClusterOptions { size: 1, heartbeat_ms: 100, election_ms: 1000, ..Default::default() }
}

/// The base copy, then live puts and deletes, land under the destination prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn make_mirror_copies_and_follows_a_prefix() {
    let src = Cluster::start(Binary::Etcd(ETCD_34.into()), opts()).await.unwrap();
    let dst = Cluster::start(oxcd(), opts()).await.unwrap();
    let (s, d) = (src.endpoint(0), dst.endpoint(0));
    tokio::task::spawn_blocking(move || {
        for i in 0..1500 {
            ctl(ETCDCTL_34, &s, &["put", &format!("p/{i:04}"), &format!("v{i}")]);
        }
        ctl(ETCDCTL_34, &s, &["put", "other", "x"]);
        let mut mirror = Command::new(OXCDCTL)
            .args([&format!("--endpoints={s}"), "make-mirror", "--prefix", "p/", "--dest-prefix", "q/", &d])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Waits (on a slow disk the base copy takes seconds: a put per key) until the
        // destination holds what `pred` wants, or 60 s pass.
        let wait_dest = |pred: &dyn Fn(&str) -> bool| {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let (got, _, _) = ctl(OXCDCTL, &d, &["get", "--prefix", "q/"]);
                if pred(&got.replace("q/", "p/")) || Instant::now() > deadline {
                    return got.replace("q/", "p/");
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        };
        wait_dest(&|got| got.lines().count() == 2 * 1500);
        ctl(ETCDCTL_34, &s, &["put", "p/new", "n"]);
        ctl(ETCDCTL_34, &s, &["del", "p/0000"]);
        let (want, _, _) = ctl(ETCDCTL_34, &s, &["get", "--prefix", "p/"]);
        let got = wait_dest(&|got| got == want);
        let _ = mirror.kill();
        let _ = mirror.wait();
        assert_eq!(got, want, "the destination must hold the source prefix");
        let (other, _, _) = ctl(OXCDCTL, &d, &["get", "other"]);
        assert_eq!(other, "", "keys outside the prefix are not mirrored");
    })
    .await
    .unwrap();
}

/// `check perf --load=s` against oxcd, run by oxcdctl and by etcdctl 3.4: both print the same
/// verdict lines. Whether each check passes depends on the machine (a loaded CI runner may see a
/// 500 ms fsync stall), so PASS and FAIL are masked; the exit code must agree with the verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_perf_runs_against_oxcd() {
    let cl = Cluster::start(oxcd(), opts()).await.unwrap();
    let ep = cl.endpoint(0);
    let verdicts = tokio::task::spawn_blocking(move || {
        [OXCDCTL, ETCDCTL_34].map(|bin| {
            let (out, err, code) = ctl(bin, &ep, &["check", "perf", "--load=s", "--auto-compact"]);
            // The verdict: what follows the progress line (which has no newline), numbers masked.
            let keys = ["Compact", "Defrag", "PASS", "FAIL", "Slowest", "Stddev"];
            let lines: Vec<String> = out
                .split(['\n', '\r'])
                .filter_map(|l| keys.iter().filter_map(|k| l.find(k)).min().map(|i| &l[i..]))
                .map(|l| l.chars().map(|c| if c.is_ascii_digit() { 'N' } else { c }).collect::<String>())
                .map(|l| l.replace("NN", "N").replace("NN", "N").replace("NN", "N"))
                .collect();
            let passed = lines.last().is_some_and(|l| l == "PASS");
            assert_eq!(code == 0, passed, "{bin}: exit code {code} against the verdict:\n{out}\n{err}");
            lines.iter().map(|l| mask_verdict(l)).collect::<Vec<_>>()
        })
    })
    .await
    .unwrap();
    assert_eq!(
        verdicts[0],
        [
            "Compacting with revision N",
            "Compacted with revision N",
            "<verdict> Throughput",
            "<verdict> Slowest request",
            "<verdict> Stddev",
            "<verdict>"
        ]
    );
    assert_eq!(verdicts[0], verdicts[1], "oxcdctl and etcdctl print the same verdict");
    // The check cleaned up after itself.
    let (left, _, _) = ctl(OXCDCTL, &cl.endpoint(0), &["get", "--prefix", "/etcdctl-check-perf/", "--keys-only"]);
    assert_eq!(left, "");
}

/// `check datascale --load=s` against etcd (which serves `/metrics`): the same lines as etcdctl,
/// the memory figure aside; and a refusal when the prefix already has keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_datascale_matches_etcdctl() {
    let cl = Cluster::start(Binary::Etcd(ETCD_34.into()), opts()).await.unwrap();
    let ep = cl.endpoint(0);
    tokio::task::spawn_blocking(move || {
        let outputs = [ETCDCTL_34, OXCDCTL].map(|bin| {
            let (out, err, code) = ctl(bin, &ep, &["check", "datascale", "--load=s"]);
            assert_eq!(code, 0, "{bin} check datascale failed:\n{out}\n{err}");
            let lines: Vec<String> = out
                .split(['\n', '\r'])
                .filter(|l| l.starts_with("Start") || l.starts_with("PASS") || l.starts_with("FAIL"))
                .map(|l| match l.split_once(": ") {
                    Some(("PASS", rest)) => format!("PASS: {}", rest.split(':').next().unwrap_or("")),
                    _ => l.to_string(),
                })
                .collect();
            lines
        });
        assert_eq!(outputs[0], outputs[1]);
        ctl(ETCDCTL_34, &ep, &["put", "/etcdctl-check-datascale/x", "1"]);
        let refused = [ETCDCTL_34, OXCDCTL].map(|bin| {
            let (_, err, code) = ctl(bin, &ep, &["check", "datascale"]);
            (err.lines().filter(|l| l.starts_with("Error")).collect::<Vec<_>>().join("\n"), code)
        });
        assert_eq!(refused[0], refused[1]);
        assert_eq!(refused[1].1, 3);
    })
    .await
    .unwrap();
}

/// One of etcdctl's check-perf verdict lines with its outcome masked: "PASS: Throughput is N
/// writes/s" and "FAIL: Throughput too low: N writes/s" both become "<verdict> Throughput", "PASS:
/// Stddev is N.Ns" and "Stddev too high: N.Ns" both "<verdict> Stddev".
fn mask_verdict(line: &str) -> String {
    if line == "PASS" || line == "FAIL" {
        return "<verdict>".to_string();
    }
    let rest = line.strip_prefix("PASS: ").or_else(|| line.strip_prefix("FAIL: ")).unwrap_or(line);
    match ["Throughput", "Slowest request", "Stddev"].into_iter().find(|w| rest.starts_with(w)) {
        Some(w) => format!("<verdict> {w}"),
        None => line.to_string(),
    }
}
