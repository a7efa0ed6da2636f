//! The peer port against strangers: bytes that are not a peer's handshake get etcd's peer-port
//! answer (`400 Bad Request`) and the connection is closed; connections that never finish their
//! handshake are closed after its deadline, and beyond a limit new ones are closed at once, so a
//! flood cannot hold the member's descriptors.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use oxcd_testkit::{Cluster, ClusterOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_on_the_peer_port_are_answered_and_closed() {
    let c = Cluster::start(common::oxcd(), ClusterOptions::default()).await.unwrap();
    let peer = c.peer_url(0).trim_start_matches("http://").to_string();
    let pid = c.pid(0).unwrap();
    let base = common::open_fds(pid);

    // Garbage: etcd's answer, then the connection closes.
    let mut s = TcpStream::connect(&peer).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&[0x5a; 64]).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n") && answer.ends_with("400 Bad Request"), "{answer}");

    // 300 connections that say nothing: at most 256 are held, until the handshake deadline.
    let silent: Vec<TcpStream> = (0..300).map(|_| TcpStream::connect(&peer).unwrap()).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = common::open_fds(pid) - base;
    assert!(held <= 2 * 256 + 8, "{held} descriptors held for 300 silent connections");
    let deadline = Instant::now() + Duration::from_secs(15);
    while common::open_fds(pid) > base + 4 {
        assert!(Instant::now() < deadline, "silent connections still held: {} over {base}", common::open_fds(pid));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(silent);
    // The member still serves.
    let mut client = c.client(0).await.unwrap();
    client.put("k", "v", None).await.unwrap();
}
