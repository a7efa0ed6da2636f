//! Network partitions between the members of a test cluster, made by a proxy in front of each
//! member's peer port.
//!
//! A proxied member listens for peers on its own port but advertises the proxy's, so every
//! connection a member opens to another goes through the proxy of the member it reaches. An oxcd
//! peer connection starts with a handshake that names the sender's member id (the magic
//! `OXCDPEER`, then the id as u64 little-endian); the proxy reads it, and refuses or cuts the
//! connection while the pair (sender, receiver) is blocked. Blocking both directions of every pair
//! across two groups is a partition; blocking one direction only is an asymmetric one.
//!
//! Connections that do not start with the handshake (etcd's HTTP, TLS) pass unblocked: the
//! proxy cannot tell who sends them.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const MAGIC: &[u8; 8] = b"OXCDPEER";
const HELLO_LEN: usize = 25;

#[derive(Default)]
struct State {
    /// Directed pairs (sender index, receiver index) whose connections are refused.
    blocked: Mutex<HashSet<(usize, usize)>>,
    /// Member id to member index, as learnt from the cluster's member list.
    ids: Mutex<HashMap<u64, usize>>,
    /// Open proxied connections: sender's id (when it said), receiver, and both sockets to cut them.
    conns: Mutex<Vec<Proxied>>,
    stop: AtomicBool,
}

struct Proxied {
    /// The sender's member id, from the handshake.
    from: Option<u64>,
    to: usize,
    sockets: [TcpStream; 2],
    open: Arc<AtomicBool>,
}

/// The proxies in front of a cluster's peer ports; stopped when dropped.
pub struct PeerProxies {
    state: Arc<State>,
    ports: Vec<u16>,
}

impl PeerProxies {
    pub fn new() -> PeerProxies {
        PeerProxies { state: Arc::default(), ports: Vec::new() }
    }

    /// Starts a proxy for member `index` (the next one) forwarding to `127.0.0.1:peer_port`;
    /// returns the port it listens on, which the member advertises.
    pub fn add(&mut self, peer_port: u16) -> std::io::Result<u16> {
        let to = self.ports.len();
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let state = self.state.clone();
        std::thread::spawn(move || accept_loop(listener, to, peer_port, state));
        self.ports.push(port);
        Ok(port)
    }

    /// The port member `i` advertises to its peers.
    pub fn port(&self, i: usize) -> u16 {
        self.ports[i]
    }

    /// Records which member index has which member id (from the member list; names `m{i}`).
    pub fn learn(&self, ids: impl IntoIterator<Item = (u64, usize)>) {
        self.state.ids.lock().unwrap().extend(ids);
    }

    /// Whether the ids of these members (indexes) are known (see [`PeerProxies::learn`]); a
    /// member removed from the cluster before its id was learnt never will be.
    pub fn knows(&self, members: &[usize]) -> bool {
        let ids = self.state.ids.lock().unwrap();
        members.iter().all(|&i| ids.values().any(|&v| v == i))
    }

    /// Blocks the directed pairs given, cutting their open connections.
    pub fn block(&self, pairs: impl IntoIterator<Item = (usize, usize)>) {
        let mut blocked = self.state.blocked.lock().unwrap();
        blocked.extend(pairs);
        let ids = self.state.ids.lock().unwrap();
        let mut conns = self.state.conns.lock().unwrap();
        conns.retain(|c| c.open.load(Ordering::Relaxed));
        for c in conns.iter() {
            if c.from.and_then(|id| ids.get(&id)).is_some_and(|&f| blocked.contains(&(f, c.to))) {
                for s in &c.sockets {
                    let _ = s.shutdown(Shutdown::Both);
                }
            }
        }
    }

    /// Cuts the network between the groups: no member of one reaches a member of another.
    pub fn partition(&self, groups: &[Vec<usize>]) {
        let mut pairs = Vec::new();
        for (a, ga) in groups.iter().enumerate() {
            for (b, gb) in groups.iter().enumerate() {
                if a != b {
                    pairs.extend(ga.iter().flat_map(|&x| gb.iter().map(move |&y| (x, y))));
                }
            }
        }
        self.block(pairs);
    }

    /// Lifts every block.
    pub fn heal(&self) {
        self.state.blocked.lock().unwrap().clear();
    }
}

impl Default for PeerProxies {
    fn default() -> Self {
        PeerProxies::new()
    }
}

impl Drop for PeerProxies {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        for c in self.state.conns.lock().unwrap().iter() {
            for s in &c.sockets {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

fn accept_loop(listener: TcpListener, to: usize, peer_port: u16, state: Arc<State>) {
    while !state.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((conn, _)) => {
                let state = state.clone();
                std::thread::spawn(move || {
                    let _ = forward(conn, to, peer_port, &state);
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// One connection: the sender read from its handshake, refused if blocked, else relayed both
/// ways until either side closes or a block cuts it.
fn forward(mut inbound: TcpStream, to: usize, peer_port: u16, state: &State) -> std::io::Result<()> {
    inbound.set_nonblocking(false)?;
    inbound.set_read_timeout(Some(Duration::from_secs(5)))?;
    // The handshake, or as much of something else as arrives at first.
    let mut hello = [0u8; HELLO_LEN];
    let mut got = 0;
    while got < HELLO_LEN {
        let n = inbound.read(&mut hello[got..])?;
        if n == 0 {
            return Ok(());
        }
        got += n;
        if hello[..got.min(MAGIC.len())] != MAGIC[..got.min(MAGIC.len())] {
            break;
        }
    }
    inbound.set_read_timeout(None)?;
    let from = (got == HELLO_LEN && &hello[..8] == MAGIC)
        .then(|| u64::from_le_bytes(hello[8..16].try_into().expect("8 bytes")));
    let open = Arc::new(AtomicBool::new(true));
    let mut outbound = {
        // Checked, connected and registered under the lock `block` takes, so a block never
        // misses it; a blocked sender never reaches the member.
        let blocked = state.blocked.lock().unwrap();
        let sender = from.and_then(|id| state.ids.lock().unwrap().get(&id).copied());
        if sender.is_some_and(|f| blocked.contains(&(f, to))) {
            return Ok(());
        }
        let outbound = TcpStream::connect_timeout(&([127, 0, 0, 1], peer_port).into(), Duration::from_secs(1))?;
        state.conns.lock().unwrap().push(Proxied {
            from,
            to,
            sockets: [inbound.try_clone()?, outbound.try_clone()?],
            open: open.clone(),
        });
        outbound
    };
    outbound.set_nodelay(true)?;
    inbound.set_nodelay(true)?;
    outbound.write_all(&hello[..got])?;
    let (mut in_r, mut out_w) = (inbound.try_clone()?, outbound.try_clone()?);
    let back = std::thread::spawn(move || {
        let _ = std::io::copy(&mut outbound, &mut inbound);
        let _ = inbound.shutdown(Shutdown::Both);
        let _ = outbound.shutdown(Shutdown::Both);
    });
    let _ = std::io::copy(&mut in_r, &mut out_w);
    let _ = in_r.shutdown(Shutdown::Both);
    let _ = out_w.shutdown(Shutdown::Both);
    let _ = back.join();
    open.store(false, Ordering::Relaxed);
    Ok(())
}
