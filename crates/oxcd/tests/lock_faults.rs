//! Fault test of the Lock service (a test binary without the test harness, so it can run copies of
//! itself as lock clients that the test can SIGSTOP).
//!
//! Five client processes contend for one lock on a three-member cluster for 60 s, each holding it
//! briefly and releasing it, while members are killed (-9) and restarted and one client is paused
//! past its lease TTL. Afterwards the lock keys' whole history is read back from the cluster and
//! checked: every grant came after every earlier holder's key was deleted (no two holders overlap,
//! by the server's own revisions), and fencing tokens (the keys' create revisions) strictly
//! increase in grant order.
//!
//! `lock_faults client <endpoints> <id>` is the client mode.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, EventType, LockOptions, WatchOptions};

const NAME: &str = "fault-lock";
const CLIENTS: usize = 5;
const RUN: Duration = Duration::from_secs(60);
const LEASE_TTL: i64 = 2;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    if args.get(1).map(String::as_str) == Some("client") {
        rt.block_on(client(args[2].split(',').map(String::from).collect(), args[3].parse().unwrap()));
    } else {
        rt.block_on(run());
        println!("lock_faults: ok");
    }
}

/// A lock client: keeps one lease alive, locks, holds briefly, unlocks, repeats; prints each grant
/// and release. Survives members going away by retrying.
async fn client(endpoints: Vec<String>, id: usize) {
    let opts = ConnectOptions::new().with_connect_timeout(Duration::from_millis(500));
    let mut c = loop {
        if let Ok(c) = Client::connect(&endpoints, Some(opts.clone())).await {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let out = std::io::stdout();
    let mut lease: Option<(i64, tokio::task::JoinHandle<()>)> = None;
    loop {
        if lease.as_ref().is_some_and(|(_, k)| k.is_finished()) {
            lease = None;
        }
        let id_lease = match &lease {
            Some((l, _)) => *l,
            None => match c.lease_grant(LEASE_TTL, None).await {
                Ok(g) => {
                    let l = g.id();
                    let mut kc = c.clone();
                    // Renew every TTL/3; stop when the lease is gone.
                    let keeper = tokio::spawn(async move {
                        loop {
                            tokio::time::sleep(Duration::from_millis(600)).await;
                            match kc.lease_keep_alive(l).await {
                                Ok(_) => {}
                                Err(etcd_client::Error::LeaseKeepAliveError(_)) => return,
                                Err(_) => {}
                            }
                        }
                    });
                    lease = Some((l, keeper));
                    l
                }
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        match c.lock(NAME, Some(LockOptions::new().with_lease(id_lease))).await {
            Ok(r) => {
                let key = String::from_utf8_lossy(r.key()).into_owned();
                let rev = r.header().map(|h| h.revision()).unwrap_or(0);
                writeln!(out.lock(), "GRANT {id} {key} {rev}").unwrap();
                tokio::time::sleep(Duration::from_millis(50 + (id as u64 * 37) % 150)).await;
                if c.unlock(key.clone()).await.is_ok() {
                    writeln!(out.lock(), "RELEASE {id} {key}").unwrap();
                }
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, sig) };
}

async fn run() {
    let mut cl = common::cluster(3).await;
    let endpoints = cl.endpoints().join(",");
    let exe = std::env::current_exe().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut clients: Vec<Child> = (0..CLIENTS)
        .map(|i| {
            Command::new(&exe)
                .args(["client", &endpoints, &i.to_string()])
                .stdout(std::fs::File::create(dir.path().join(format!("client-{i}"))).unwrap())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let started = Instant::now();
    let mut round = 0;
    let mut paused = false;
    while started.elapsed() < RUN {
        tokio::time::sleep(Duration::from_secs(4)).await;
        round += 1;
        // Kill a member (the leader on even rounds), then bring it back.
        let leader = cl.leader().await.unwrap_or(0);
        let victim = if round % 2 == 0 { leader } else { (leader + 1) % 3 };
        cl.kill(victim);
        tokio::time::sleep(Duration::from_secs(2)).await;
        cl.restart(victim).unwrap();
        // Once, pause a client well past its lease TTL.
        if round == 3 && !paused {
            signal(&clients[0], libc::SIGSTOP);
            tokio::time::sleep(Duration::from_secs(3 * LEASE_TTL as u64)).await;
            signal(&clients[0], libc::SIGCONT);
            paused = true;
        }
    }
    for c in &mut clients {
        let _ = c.kill();
        let _ = c.wait();
    }
    cl.wait_ready(Duration::from_secs(30)).await.unwrap();

    // What the clients were told.
    let mut grants: Vec<(i64, String, usize)> = Vec::new();
    for i in 0..CLIENTS {
        let f = std::fs::File::open(dir.path().join(format!("client-{i}"))).unwrap();
        for line in std::io::BufReader::new(f).lines() {
            let line = line.unwrap();
            let parts: Vec<&str> = line.split(' ').collect();
            if parts[0] == "GRANT" {
                grants.push((parts[3].parse().unwrap(), parts[2].to_string(), i));
            }
        }
    }
    assert!(grants.len() >= 20, "only {} grants in {RUN:?}: the lock barely moved", grants.len());

    // What happened, by the server's revisions: every lock key's lives (create, delete).
    let mut c = cl.client_all().await.unwrap();
    let now = c.get("x", None).await.unwrap().header().unwrap().revision();
    let stream =
        c.watch(format!("{NAME}/"), Some(WatchOptions::new().with_prefix().with_start_revision(1))).await.unwrap();
    let (mut ctl, mut events) = stream.split();
    let mut lives: BTreeMap<String, Vec<(i64, Option<i64>)>> = BTreeMap::new();
    let mut last = 0;
    while last < now {
        ctl.request_progress().await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(10), events.message()).await.unwrap().unwrap().unwrap();
        if r.watch_id() == -1 && r.events().is_empty() {
            last = last.max(r.header().unwrap().revision());
        }
        for e in r.events() {
            let kv = e.kv().unwrap();
            let key = kv.key_str().unwrap().to_string();
            let l = lives.entry(key).or_default();
            match e.event_type() {
                EventType::Put if kv.version() == 1 => l.push((kv.create_revision(), None)),
                EventType::Put => {}
                EventType::Delete => {
                    if let Some(life) = l.last_mut() {
                        life.1 = Some(kv.mod_revision());
                    }
                }
            }
            last = last.max(kv.mod_revision());
        }
    }
    grants.sort();
    let mut prev: (i64, &str, usize) = (0, "", usize::MAX);
    for (g_rev, key, client) in &grants {
        // The life of this key that the grant belongs to: created at or before the grant.
        let life = lives[key]
            .iter()
            .rev()
            .find(|(c, _)| c <= g_rev)
            .unwrap_or_else(|| panic!("grant of {key} at {g_rev} has no key"));
        let token = life.0;
        assert!(life.1.is_none_or(|d| d >= *g_rev), "{key} granted at {g_rev} after it was deleted at {:?}", life.1);
        // A client whose Unlock failed (its member was killed) still holds the lock and gets the same
        // key back when it locks again with the same lease: a repeat grant, not a new holder.
        let repeat = token == prev.0 && key == prev.1 && *client == prev.2;
        assert!(
            token > prev.0 || repeat,
            "fencing token {token} of client {client} ({key}) not above the previous holder's {prev:?}"
        );
        prev = (token, key, *client);
        // Every key created before this one was gone by the grant.
        for (other, others) in &lives {
            for (c, d) in others {
                if *c < token {
                    assert!(
                        d.is_some_and(|d| d <= *g_rev),
                        "{key} granted at {g_rev} while {other} (created {c}, deleted {d:?}) still held or waited before it"
                    );
                }
            }
        }
    }
    eprintln!("lock_faults: {} grants over {RUN:?} with kills, restarts and a paused client; no overlap", grants.len());
}
