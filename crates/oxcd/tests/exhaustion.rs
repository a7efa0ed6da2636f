//! Resource exhaustion: a disk that fills up (a small tmpfs), a member out of file descriptors,
//! thousands of streams on one connection, a million leases. The member answers, or stops with a
//! non-zero exit and one clear line, and nothing it acknowledged is lost after a restart. (A
//! client that never reads its watch is in `watch.rs`, 10,000 leases expiring at once in
//! `lease.rs`.)

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions, WatchOptions};
use oxcd_testkit::{Cluster, ClusterOptions};

/// A tmpfs of `size` mounted on `at` (this test runs as root, as CI does), unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(at).output();
        let out = out.expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs (the full-disk test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .expect("run mount");
        assert!(st.success(), "remounting the tmpfs");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The member's data directory on a 160 MB tmpfs (its log outside): 512 KiB puts until the disk
/// is full. The member stops with exit status 1 and a line naming the failed write and "No space
/// left on device"; with room again, it restarts with every acknowledged put.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_member_with_status_1_and_loses_nothing() {
    let dir = tempfile::Builder::new().prefix("oxcd-full-disk-").tempdir().unwrap();
    // Cluster::start_in keeps member 0's data in dir/m0: that is the tmpfs.
    let disk = Tmpfs::mount(&dir.path().join("m0"), "160m");
    let mut cl = Cluster::start_in(common::oxcd(), ClusterOptions::default(), dir).await.unwrap();
    let mut c = cl.client(0).await.unwrap();
    let value = vec![b'v'; 512 << 10];
    let mut acked = Vec::new();
    for i in 0..600 {
        let key = format!("full/{i:04}");
        match tokio::time::timeout(Duration::from_secs(10), c.put(key.as_str(), value.clone(), None)).await {
            Ok(Ok(_)) => acked.push(key),
            _ => break,
        }
    }
    assert!(acked.len() > 50 && acked.len() < 600, "{} puts acknowledged on a 160 MB disk", acked.len());
    assert!(cl.wait_exit(0, Duration::from_secs(20)).await, "the member still runs on a full disk");
    let code = cl.exit_status(0).and_then(|st| st.code());
    let log = cl.log_tail(0, 5);
    assert_eq!(code, Some(1), "exit status on a full disk; log:\n{log}");
    assert!(log.contains("No space left on device"), "the log does not say the disk is full:\n{log}");

    disk.resize("512m");
    cl.restart(0).unwrap();
    cl.wait_ready(Duration::from_secs(30)).await.unwrap();
    let mut c = cl.client(0).await.unwrap();
    let got = c.get("full/", Some(GetOptions::new().with_prefix().with_keys_only())).await.unwrap();
    let have: Vec<String> = got.kvs().iter().map(|kv| kv.key_str().unwrap().to_string()).collect();
    for key in &acked {
        assert!(
            have.contains(key),
            "acknowledged {key} lost after the full disk ({} of {} there)",
            have.len(),
            acked.len()
        );
    }
    // And it takes writes again.
    c.put("full/after", "v", None).await.unwrap();
    drop(cl);
    drop(disk);
}

/// User + system CPU seconds of process `pid` (from /proc).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// The member limited to 200 file descriptors (prlimit) gets up to 400 connections that say nothing:
/// the accepts it cannot make wait (without spinning), its established client keeps being served,
/// and once the connections close a new client connects. The member never exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_the_member_keeps_serving() {
    let cl = common::cluster(1).await;
    let pid = cl.pid(0).unwrap();
    let st = Command::new("prlimit").arg(format!("--pid={pid}")).arg("--nofile=200:200").status().unwrap();
    assert!(st.success(), "prlimit");
    let mut established = cl.client(0).await.unwrap();
    established.put("fd/before", "v", None).await.unwrap();
    let base = common::open_fds(pid);

    // Until the listener's backlog is full too (then a connect would wait for minutes). A connect
    // made while the backlog is momentarily full has its SYN retried after a second: the timeout
    // lets that retry happen, so only a backlog that stays full ends the flood.
    let addr: std::net::SocketAddr = cl.endpoint(0).parse().unwrap();
    let flood: Vec<std::net::TcpStream> =
        (0..400).map_while(|_| std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(2500)).ok()).collect();
    // Enough to take every descriptor the member has left (its limit is 200).
    assert!(flood.len() >= 190, "only {} connections made", flood.len());
    // At its limit, the member waits between accepts: it does not spin (it used to retry the
    // failing accept at once, a whole core for as long as the flood lasted).
    let before = cpu_secs(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = cpu_secs(pid) - before;
    assert!(spent < 0.5, "the member used {spent:.2} s of CPU in 2 idle seconds at its descriptor limit");
    assert!(
        common::open_fds(pid) >= 190,
        "the member should be at its descriptor limit: {} open",
        common::open_fds(pid)
    );
    for i in 0..20 {
        let put =
            tokio::time::timeout(Duration::from_secs(5), established.put(format!("fd/during{i}"), "v", None)).await;
        assert!(matches!(put, Ok(Ok(_))), "the established client was not served at the limit: {put:?}");
    }
    assert!(!cl.has_exited(0), "the member exited out of descriptors:\n{}", cl.log_tail(0, 20));
    drop(flood);

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let fresh = tokio::time::timeout(Duration::from_secs(2), async {
            let mut c = cl.client(0).await?;
            c.get("fd/during19", None).await?;
            anyhow::Ok(())
        })
        .await;
        if matches!(fresh, Ok(Ok(()))) {
            break;
        }
        assert!(Instant::now() < deadline, "no new client served after the flood closed: {fresh:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The backlog's connections are accepted, read to their end and closed one by one after the
    // flood is gone: wait for that, the way a supervisor would look a little later.
    let deadline = Instant::now() + Duration::from_secs(15);
    while common::open_fds(pid) >= base + 20 {
        assert!(Instant::now() < deadline, "descriptors not released: {} (was {base})", common::open_fds(pid));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// 5,000 watch streams on one client connection: every stream is created, each sees the next put,
/// and the member still answers a read meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_streams_on_one_connection() {
    const STREAMS: usize = 5_000;
    let cl = common::cluster(1).await;
    let c = cl.client(0).await.unwrap();
    let mut streams = Vec::with_capacity(STREAMS);
    for _ in 0..STREAMS {
        let mut w = c.clone();
        streams.push(w.watch("streams/k", Some(WatchOptions::new())).await.unwrap());
    }
    let mut writer = c.clone();
    let put = writer.put("streams/k", "v", None).await.unwrap();
    let rev = put.header().unwrap().revision();
    for (i, s) in streams.iter_mut().enumerate() {
        // The creation's answer first, then the put's event.
        let seen = loop {
            let resp = match tokio::time::timeout(Duration::from_secs(10), s.message()).await {
                Ok(Ok(Some(r))) => r,
                other => panic!("stream {i} of {STREAMS}: {other:?}"),
            };
            if let Some(e) = resp.events().first() {
                break e.kv().map(|kv| kv.mod_revision());
            }
        };
        assert_eq!(seen, Some(rev), "stream {i}");
    }
    let mut reader = Client::connect([cl.endpoint(0)], None).await.unwrap();
    assert_eq!(reader.get("streams/k", None).await.unwrap().kvs().len(), 1);
}

/// A million leases (granted by 100 clients at once, an hour each): the member keeps serving
/// writes, its memory per lease is printed, and after a restart every lease is there with its
/// TTL counting from the restart (a sample of them asked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_leases_survive_a_restart() {
    const LEASES: usize = 1_000_000;
    const CLIENTS: usize = 100;
    let mut cl = common::cluster(1).await;
    let c = cl.client(0).await.unwrap();
    let (rss_before, _) = cl.rss_kib(0).unwrap();
    let started = Instant::now();
    let ids = common::grant_leases(&c, LEASES, 3600, CLIENTS).await;
    let granted_in = started.elapsed();
    let (rss_after, _) = cl.rss_kib(0).unwrap();
    eprintln!(
        "{LEASES} leases granted in {granted_in:?}; RSS {} MiB -> {} MiB ({} B a lease)",
        rss_before / 1024,
        rss_after / 1024,
        (rss_after.saturating_sub(rss_before) * 1024) / LEASES as u64
    );
    let mut w = c.clone();
    w.put("leases/after", "v", None).await.unwrap();

    cl.stop(0);
    let restarted = Instant::now();
    cl.restart(0).unwrap();
    cl.wait_ready(Duration::from_secs(120)).await.unwrap();
    eprintln!("restarted with {LEASES} leases in {:?}", restarted.elapsed());
    let mut c = cl.client(0).await.unwrap();
    for id in ids.iter().step_by(LEASES / 1000) {
        let ttl = c.lease_time_to_live(*id, None).await.unwrap();
        assert!(ttl.ttl() > 3000 && ttl.granted_ttl() == 3600, "lease {id} after the restart: {ttl:?}");
    }
    assert_eq!(c.get("leases/after", None).await.unwrap().kvs().len(), 1);
}
