//! Real-process clusters: each member is an `oxcd` (or `etcd`) process with its own data directory
//! and log file under one temporary directory.

use std::collections::hash_map::RandomState;
use std::fs::OpenOptions;
use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use etcd_client::{Client, ConnectOptions};

/// Which server binary to run.
#[derive(Debug, Clone)]
pub enum Binary {
    /// An `oxcd` binary (tests pass `env!("CARGO_BIN_EXE_oxcd")`).
    Oxcd(PathBuf),
    /// A real `etcd` binary, the oracle.
    Etcd(PathBuf),
}

impl Binary {
    fn path(&self) -> &Path {
        match self {
            Binary::Oxcd(p) | Binary::Etcd(p) => p,
        }
    }

    /// `oxcd` or `etcd`.
    pub fn name(&self) -> &'static str {
        match self {
            Binary::Oxcd(_) => "oxcd",
            Binary::Etcd(_) => "etcd",
        }
    }
}

/// A free port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    bound_port().expect("bind a port on 127.0.0.1").1
}

/// A listener on a free port of 127.0.0.1, and the port.
///
/// Ports come from below the kernel's ephemeral range (`ip_local_port_range`), walking up from
/// a random start: the kernel never gives those to outgoing connections, so a port released here
/// stays free until a member binds it (a port from the ephemeral range can be taken in between by
/// any connection's local end, which made members die on "address already in use").
fn bound_port() -> std::io::Result<(TcpListener, u16)> {
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let (lo, hi) = quiet_ports();
    if lo < hi {
        let span = u32::from(hi - lo);
        if NEXT.load(Ordering::Relaxed) == u32::MAX {
            let seed = RandomState::new().build_hasher().finish() as u32;
            let _ = NEXT.compare_exchange(u32::MAX, seed % span, Ordering::Relaxed, Ordering::Relaxed);
        }
        for _ in 0..span {
            let port = lo + (NEXT.fetch_add(1, Ordering::Relaxed) % span) as u16;
            if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
                return Ok((l, port));
            }
        }
    }
    let l = TcpListener::bind("127.0.0.1:0")?;
    let port = l.local_addr()?.port();
    Ok((l, port))
}

/// Ports no outgoing connection takes: from 10000 up to the start of the ephemeral range (empty
/// when that range starts low).
fn quiet_ports() -> (u16, u16) {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(0);
    (10_000, ephemeral_start.max(10_000))
}

/// Settings of a test cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub size: usize,
    pub heartbeat_ms: u64,
    pub election_ms: u64,
    /// Extra flags for every member.
    pub extra_args: Vec<String>,
    /// Extra flags of member `i` (after `extra_args`).
    pub member_args: Vec<Vec<String>>,
    /// (client, peer) ports of each member; free ports when empty. Two clusters started one after
    /// the other on the same ports get the same member and cluster ids.
    pub ports: Vec<(u16, u16)>,
    /// Serve both ports with TLS and require client certificates ([`crate::tls::make_certs`]'s
    /// files): URLs are `https://`, and clients present `client.crt`.
    pub tls: Option<crate::tls::Certs>,
    /// Put a proxy in front of every member's peer port, so that [`Cluster::partition`] can cut
    /// the network between members (oxcd only; see [`crate::partition`]).
    pub peer_proxy: bool,
    /// Give every member a port for failpoints set while it runs (`GOFAIL_HTTP`; a member built
    /// with the `failpoints` feature serves it): see [`Cluster::set_failpoint`].
    pub failpoint_http: bool,
    /// Run every member under libfaketime (Debian's `faketime`), so that
    /// [`Cluster::jump_clock`] can move its wall clock (its monotonic clock stays real, as on a
    /// host whose clock NTP steps).
    pub fake_clock: bool,
}

/// Debian's libfaketime (package `faketime`), which [`ClusterOptions::fake_clock`] preloads.
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            size: 1,
            heartbeat_ms: 50,
            election_ms: 500,
            extra_args: Vec::new(),
            member_args: Vec::new(),
            ports: Vec::new(),
            tls: None,
            peer_proxy: false,
            failpoint_http: false,
            fake_clock: false,
        }
    }
}

struct MemberProc {
    name: String,
    client_port: u16,
    peer_port: u16,
    /// The peer port others reach it on: its proxy's, or its own.
    advertised_peer_port: u16,
    child: Option<Child>,
    paused: bool,
    /// Started with `--initial-cluster-state existing` (added by `member add`).
    joining: bool,
    /// Environment variables set for this member's next starts.
    env: Vec<(String, String)>,
    /// The port of its failpoint HTTP endpoint (`GOFAIL_HTTP`), when the cluster has them.
    failpoint_port: Option<u16>,
    /// Removed from the cluster (`member remove`): never started again.
    retired: bool,
}

impl MemberProc {
    /// Slot `i` (named `m{i}`) on its (client, peer, advertised peer) ports, not started.
    fn new(i: usize, ports: (u16, u16, u16), failpoint_port: Option<u16>, joining: bool) -> MemberProc {
        let (client_port, peer_port, advertised_peer_port) = ports;
        MemberProc {
            name: format!("m{i}"),
            client_port,
            peer_port,
            advertised_peer_port,
            child: None,
            paused: false,
            joining,
            env: Vec::new(),
            failpoint_port,
            retired: false,
        }
    }
}

/// A cluster of real processes; killed when dropped.
pub struct Cluster {
    binary: Binary,
    dir: tempfile::TempDir,
    opts: ClusterOptions,
    members: Vec<MemberProc>,
    proxies: Option<crate::partition::PeerProxies>,
}

impl Cluster {
    /// Starts `opts.size` members and waits until every one serves a linearizable read.
    ///
    /// Ports come from [`free_port`], which releases them before the member binds; another
    /// process binding one in between is unlikely (they lie outside the ephemeral range) but not
    /// impossible. A cluster whose member died on a taken port is started again on fresh ports
    /// (when the caller did not choose the ports).
    pub async fn start(binary: Binary, opts: ClusterOptions) -> anyhow::Result<Cluster> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let dir = tempfile::Builder::new().prefix("oxcd-test-").tempdir()?;
            let c = Cluster::spawn_all(binary.clone(), opts.clone(), dir)?;
            match c.wait_ready(Duration::from_secs(30)).await {
                Ok(()) => return Ok(c),
                Err(_) if attempts < 4 && opts.ports.is_empty() && c.lost_a_port() => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Starts a cluster on data prepared in `dir`: member `i` is named `m{i}`, keeps its data in
    /// `dir/m{i}` and belongs to cluster token `test-cluster` (so a restored snapshot must say so).
    pub async fn start_in(binary: Binary, opts: ClusterOptions, dir: tempfile::TempDir) -> anyhow::Result<Cluster> {
        let c = Cluster::spawn_all(binary, opts, dir)?;
        c.wait_ready(Duration::from_secs(30)).await?;
        Ok(c)
    }

    fn spawn_all(binary: Binary, opts: ClusterOptions, dir: tempfile::TempDir) -> anyhow::Result<Cluster> {
        // The listeners stay bound until every port is chosen, so no two members share one.
        let mut held = Vec::new();
        let mut port = || -> anyhow::Result<u16> {
            let (l, p) = bound_port()?;
            held.push(l);
            Ok(p)
        };
        let mut members = Vec::with_capacity(opts.size);
        let mut proxies = opts.peer_proxy.then(crate::partition::PeerProxies::new);
        for i in 0..opts.size {
            let (client_port, peer_port) = match opts.ports.get(i) {
                Some(p) => *p,
                None => (port()?, port()?),
            };
            let advertised_peer_port = match &mut proxies {
                Some(p) => p.add(peer_port)?,
                None => peer_port,
            };
            let failpoint_port = if opts.failpoint_http { Some(port()?) } else { None };
            members.push(MemberProc::new(i, (client_port, peer_port, advertised_peer_port), failpoint_port, false));
        }
        drop(held);
        let mut c = Cluster { binary, dir, opts, members, proxies };
        for i in 0..c.members.len() {
            c.spawn(i)?;
        }
        Ok(c)
    }

    /// Whether a member exited because its port was taken (oxcd and etcd both log the OS's words).
    fn lost_a_port(&self) -> bool {
        (0..self.members.len()).any(|i| {
            self.has_exited(i)
                && std::fs::read_to_string(self.log_path(i))
                    .is_ok_and(|log| log.to_ascii_lowercase().contains("address already in use"))
        })
    }

    /// Whether member `i`'s process has ended (by itself or killed) — a zombie counts as ended.
    pub fn has_exited(&self, i: usize) -> bool {
        let Some(pid) = self.pid(i) else { return false };
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state follows the parenthesised command name.
            Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
            Err(_) => true,
        }
    }

    /// `--initial-cluster`: the members not removed (etcd checks that a joining member names
    /// exactly the cluster's members).
    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .filter(|m| !m.retired)
            .map(|m| format!("{}={}://127.0.0.1:{}", m.name, self.scheme(), m.advertised_peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Adds a member slot (named `m{n}`, on fresh ports) without starting it, and returns its
    /// index: `member add` it with [`Cluster::peer_url`], then [`Cluster::start_joining`].
    pub fn add_slot(&mut self) -> usize {
        let (client_port, peer_port) = (free_port(), free_port());
        let advertised_peer_port = match &mut self.proxies {
            Some(p) => p.add(peer_port).expect("a proxy on 127.0.0.1"),
            None => peer_port,
        };
        let failpoint_port = self.opts.failpoint_http.then(free_port);
        let i = self.members.len();
        self.members.push(MemberProc::new(i, (client_port, peer_port, advertised_peer_port), failpoint_port, true));
        i
    }

    /// Member `i`'s peer URL (the one it advertises).
    pub fn peer_url(&self, i: usize) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.members[i].advertised_peer_port)
    }

    /// `https` when the cluster serves TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.opts.tls.is_some() { "https" } else { "http" }
    }

    /// Member `i`'s client URL.
    pub fn client_url(&self, i: usize) -> String {
        format!("{}://{}", self.scheme(), self.endpoint(i))
    }

    /// Starts an added member: it joins the running cluster (`--initial-cluster-state existing`).
    pub fn start_joining(&mut self, i: usize) -> anyhow::Result<()> {
        self.spawn(i)
    }

    /// The data directory of member `i`.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(&self.members[i].name)
    }

    /// The log file of member `i`.
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("{}.log", self.members[i].name))
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        if self.members[i].retired {
            bail!("member {i} was removed from the cluster");
        }
        let ic = self.initial_cluster();
        let data_dir = self.data_dir(i);
        let log = OpenOptions::new().create(true).append(true).open(self.log_path(i))?;
        let m = &self.members[i];
        let client = format!("{}://127.0.0.1:{}", self.scheme(), m.client_port);
        let peer = format!("{}://127.0.0.1:{}", self.scheme(), m.peer_port);
        let advertised_peer = format!("{}://127.0.0.1:{}", self.scheme(), m.advertised_peer_port);
        let tls_flags = self.opts.tls.as_ref().map(|c| c.server_flags()).unwrap_or_default();
        let mut cmd = Command::new(self.binary.path());
        cmd.arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--listen-client-urls")
            .arg(&client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&advertised_peer)
            .arg("--initial-cluster")
            .arg(&ic)
            .arg("--initial-cluster-token")
            .arg("test-cluster")
            .arg("--heartbeat-interval")
            .arg(self.opts.heartbeat_ms.to_string())
            .arg("--election-timeout")
            .arg(self.opts.election_ms.to_string())
            .args(if m.joining { &["--initial-cluster-state", "existing"][..] } else { &[] })
            .args(&tls_flags)
            .args(&self.opts.extra_args)
            .args(self.opts.member_args.get(i).into_iter().flatten())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        cmd.envs(m.env.iter().map(|(k, v)| (k, v)));
        if let Some(port) = m.failpoint_port {
            cmd.env("GOFAIL_HTTP", format!("127.0.0.1:{port}"));
        }
        if self.opts.fake_clock {
            anyhow::ensure!(Path::new(LIBFAKETIME).exists(), "fake_clock needs {LIBFAKETIME} (Debian's faketime)");
            let offset = self.clock_file(i);
            if !offset.exists() {
                std::fs::write(&offset, "+0s\n")?;
            }
            // The offset file is read again at most every second; the monotonic clock is left alone.
            cmd.env("LD_PRELOAD", LIBFAKETIME)
                .env("FAKETIME_TIMESTAMP_FILE", &offset)
                .env("FAKETIME_CACHE_DURATION", "1")
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        if let Binary::Etcd(_) = self.binary {
            cmd.env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH);
        }
        let child = cmd.spawn().with_context(|| format!("spawning {}", self.binary.path().display()))?;
        self.members[i].child = Some(child);
        self.members[i].paused = false;
        Ok(())
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// `127.0.0.1:port` of member `i`'s client listener.
    pub fn endpoint(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.members[i].client_port)
    }

    /// Every member's client endpoint (not those of retired members).
    pub fn endpoints(&self) -> Vec<String> {
        self.members().into_iter().map(|i| self.endpoint(i)).collect()
    }

    /// A client connected to member `i` only.
    pub async fn client(&self, i: usize) -> anyhow::Result<Client> {
        Ok(Client::connect([self.client_url(i)], Some(self.connect_options()?)).await?)
    }

    /// A client connected to every member.
    pub async fn client_all(&self) -> anyhow::Result<Client> {
        let urls: Vec<String> = self.members().into_iter().map(|i| self.client_url(i)).collect();
        Ok(Client::connect(urls, Some(self.connect_options()?)).await?)
    }

    fn connect_options(&self) -> anyhow::Result<ConnectOptions> {
        let opts =
            ConnectOptions::new().with_connect_timeout(Duration::from_secs(2)).with_timeout(Duration::from_secs(15));
        let Some(certs) = &self.opts.tls else { return Ok(opts) };
        let read = |f: &str| std::fs::read(certs.file(f));
        let tls = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(read("ca.crt")?))
            .identity(etcd_client::Identity::from_pem(read("client.crt")?, read("client.key")?));
        Ok(opts.with_tls(tls))
    }

    /// Whether member `i`'s process runs (not killed).
    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    /// Waits until every running member has a leader and serves a linearizable read.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        for i in (0..self.members.len()).filter(|i| self.is_running(*i) && !self.members[*i].paused) {
            loop {
                let probe = async {
                    let mut c = self.client(i).await?;
                    let st = c.status().await?;
                    if st.leader() == 0 {
                        bail!("no leader yet");
                    }
                    c.get("ready-probe", None).await?;
                    anyhow::Ok(())
                };
                let exit = async {
                    while !self.has_exited(i) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                };
                let ok = tokio::select! {
                    r = probe => r,
                    () = exit => Err(anyhow::anyhow!("the process ended")),
                };
                match ok {
                    Ok(()) => break,
                    Err(e) if self.has_exited(i) => {
                        bail!("member {i} exited before it was ready: {e}\n{}", self.log_tail(i, 30))
                    }
                    Err(e) if Instant::now() > deadline => {
                        bail!("member {i} not ready after {timeout:?}: {e}\n{}", self.log_tail(i, 30))
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
        Ok(())
    }

    /// Index of the member that currently leads (asking the running members).
    pub async fn leader(&self) -> anyhow::Result<usize> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for i in (0..self.members.len()).filter(|i| self.is_running(*i) && !self.members[*i].paused) {
                let Ok(mut c) = self.client(i).await else { continue };
                let Ok(st) = c.status().await else { continue };
                let me = st.header().map(|h| h.member_id()).unwrap_or(0);
                if st.leader() != 0 && st.leader() == me {
                    return Ok(i);
                }
            }
            if Instant::now() > deadline {
                bail!("no leader among running members");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id of member `i`, if it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(|c| c.id())
    }

    /// Resident memory of member `i` now and at its peak, in KiB (from /proc).
    pub fn rss_kib(&self, i: usize) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid(i)?)).ok()?;
        let field =
            |name: &str| status.lines().find(|l| l.starts_with(name))?.split_whitespace().nth(1)?.parse::<u64>().ok();
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// kill -9 member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            if self.members[i].paused {
                signal(&child, libc::SIGCONT);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.members[i].paused = false;
    }

    /// The binary the next start of any member runs (etcd's data directories taken over by oxcd).
    pub fn set_binary(&mut self, binary: Binary) {
        self.binary = binary;
    }

    /// Starts member `i` again on its data directory (after [`Cluster::kill`]).
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        if self.members[i].child.is_some() {
            self.kill(i);
        }
        self.spawn(i)
    }

    /// Sets member `i`'s environment for its next starts (empty: the tests' own, unchanged), such
    /// as `FAILPOINTS` for a member built with failpoints.
    pub fn set_env(&mut self, i: usize, vars: &[(&str, &str)]) {
        self.members[i].env = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    }

    /// How member `i`'s process ended, once it has ended by itself (`None` while it runs); the
    /// member then counts as not running.
    pub fn exit_status(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        if !self.has_exited(i) {
            return None;
        }
        // Its main thread is a zombie; the others may take a moment more to end: wait for them.
        let status = self.members[i].child.as_mut()?.wait().ok()?;
        self.members[i].child = None;
        Some(status)
    }

    /// Waits until member `i`'s process has exited (it crashed or stopped), at most `timeout`.
    pub async fn wait_exit(&mut self, i: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.has_exited(i) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    fn clock_file(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("{}.faketime", self.members[i].name))
    }

    /// Sets member `i`'s wall clock `seconds` away from the real one (0: back to it), within a
    /// second, for as long as it runs and across restarts (needs [`ClusterOptions::fake_clock`]).
    pub fn jump_clock(&self, i: usize, seconds: i64) -> anyhow::Result<()> {
        anyhow::ensure!(self.opts.fake_clock, "the cluster was started without fake_clock");
        std::fs::write(self.clock_file(i), format!("{seconds:+}s\n"))?;
        Ok(())
    }

    /// Kills member `i` for good, once it was removed from the cluster (`member remove`): it is
    /// never started again, and [`Cluster::members`] leaves it out.
    pub fn retire(&mut self, i: usize) {
        self.kill(i);
        self.members[i].retired = true;
    }

    /// The indexes of the cluster's members: every slot but the retired ones.
    pub fn members(&self) -> Vec<usize> {
        (0..self.members.len()).filter(|&i| !self.members[i].retired).collect()
    }

    /// Sets failpoint `name` of running member `i` to `action` (`sleep(200)`, `return(error)`),
    /// or switches it off when `action` is `None`, through its `GOFAIL_HTTP` port (needs
    /// [`ClusterOptions::failpoint_http`] and a member built with failpoints).
    pub async fn set_failpoint(&self, i: usize, name: &str, action: Option<&str>) -> anyhow::Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let port = self.members[i].failpoint_port.context("the cluster was started without failpoint_http")?;
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let request = match action {
            Some(a) => format!("PUT /{name} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{a}", a.len()),
            None => format!("DELETE /{name} HTTP/1.1\r\nHost: x\r\n\r\n"),
        };
        s.write_all(request.as_bytes()).await?;
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut answer)).await??;
        if !answer.starts_with("HTTP/1.1 204") {
            bail!("setting failpoint {name} of member {i}: {answer}");
        }
        Ok(())
    }

    /// SIGSTOP member `i`.
    pub fn pause(&mut self, i: usize) {
        if let Some(child) = &self.members[i].child {
            signal(child, libc::SIGSTOP);
            self.members[i].paused = true;
        }
    }

    /// SIGCONT member `i`.
    pub fn resume(&mut self, i: usize) {
        if let Some(child) = &self.members[i].child {
            signal(child, libc::SIGCONT);
            self.members[i].paused = false;
        }
    }

    /// Sends SIGTERM to member `i` and waits for it to exit; returns its exit code.
    pub fn stop(&mut self, i: usize) -> Option<i32> {
        let mut child = self.members[i].child.take()?;
        signal(&child, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Cuts the network between groups of members (indexes): no member of one group reaches a
    /// member of another until [`Cluster::heal`]. Clients still reach every member. Needs
    /// [`ClusterOptions::peer_proxy`], and a running member to learn the member ids from.
    pub async fn partition(&self, groups: &[Vec<usize>]) -> anyhow::Result<()> {
        self.learn_member_ids().await?;
        self.proxies.as_ref().context("the cluster was started without peer_proxy")?.partition(groups);
        Ok(())
    }

    /// Blocks what member `from` sends to member `to`, not the way back (an asymmetric partition).
    pub async fn block_one_way(&self, from: usize, to: usize) -> anyhow::Result<()> {
        self.learn_member_ids().await?;
        self.proxies.as_ref().context("the cluster was started without peer_proxy")?.block([(from, to)]);
        Ok(())
    }

    /// Lifts every partition and block.
    pub fn heal(&self) {
        if let Some(p) = &self.proxies {
            p.heal();
        }
    }

    async fn learn_member_ids(&self) -> anyhow::Result<()> {
        let Some(proxies) = &self.proxies else { return Ok(()) };
        let members = self.members();
        if proxies.knows(&members) {
            return Ok(());
        }
        for i in (0..self.members.len()).filter(|&i| self.is_running(i) && !self.members[i].paused) {
            let Ok(mut c) = self.client(i).await else { continue };
            let Ok(list) = c.member_list().await else { continue };
            let index = |name: &str| self.members.iter().position(|m| m.name == name);
            proxies.learn(list.members().iter().filter_map(|m| Some((m.id(), index(m.name())?))));
            if proxies.knows(&members) {
                return Ok(());
            }
        }
        bail!("could not learn every member's id from the member list")
    }

    /// The last `n` lines of member `i`'s log (for failure messages).
    pub fn log_tail(&self, i: usize, n: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on the pid of a child we own and have not reaped.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
