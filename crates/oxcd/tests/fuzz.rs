//! Bad input across the whole surface: every gRPC method of every service, the peer port and the
//! JSON gateway get random bytes and mutated valid requests (proptest's cases: bytes flipped,
//! cut, inserted, a stray field appended), and after each one the member is still up and a key
//! written before reads back. The key may change only through a write that the case itself had
//! acknowledged (a mutated put or delete may land on it); anything else is a defect.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use oxcd_testkit::Cluster;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use prost::bytes::{Buf, BufMut};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

const KNOWN: &str = "fuzz/known";
const KNOWN_VALUE: &str = "the value written before the fuzzing";

/// Protobuf by hand: a length-delimited field, a varint field.
fn bytes_field(tag: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint(&mut out, u64::from(tag << 3 | 2));
    varint(&mut out, payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

fn varint_field(tag: u32, v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    varint(&mut out, u64::from(tag << 3));
    varint(&mut out, v);
    out
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// Every method of etcd's gRPC API with a valid request to mutate, and whether it can change a
/// key (so that a changed known key after it is no defect when the call succeeded).
fn methods() -> Vec<(&'static str, Vec<u8>, bool)> {
    let key = |k: &str| bytes_field(1, k.as_bytes());
    let range = cat(&[key("fuzz/a"), bytes_field(2, b"fuzz/z"), varint_field(3, 10)]);
    let put = cat(&[key("fuzz/a"), bytes_field(2, b"x"), varint_field(4, 1)]);
    let compare = cat(&[varint_field(1, 0), varint_field(2, 0), bytes_field(3, b"fuzz/a"), varint_field(4, 1)]);
    let txn = cat(&[
        bytes_field(1, &compare),
        bytes_field(2, &bytes_field(2, &put)),
        bytes_field(3, &bytes_field(1, &range)),
    ]);
    let watch = bytes_field(1, &cat(&[key("fuzz/"), bytes_field(2, b"fuzz0"), varint_field(3, 1)]));
    let leader_key = cat(&[key("fuzz/e"), bytes_field(2, b"fuzz/e/1"), varint_field(3, 1), varint_field(4, 7)]);
    let perm = cat(&[varint_field(1, 2), bytes_field(2, b"fuzz/"), bytes_field(3, b"fuzz0")]);
    vec![
        ("/etcdserverpb.KV/Range", range.clone(), false),
        ("/etcdserverpb.KV/Put", put.clone(), true),
        ("/etcdserverpb.KV/DeleteRange", cat(&[key("fuzz/a"), bytes_field(2, b"fuzz/b")]), true),
        ("/etcdserverpb.KV/Txn", txn, true),
        ("/etcdserverpb.KV/Compact", varint_field(1, 1), false),
        ("/etcdserverpb.Watch/Watch", watch, false),
        ("/etcdserverpb.Lease/LeaseGrant", cat(&[varint_field(1, 30), varint_field(2, 77)]), false),
        ("/etcdserverpb.Lease/LeaseRevoke", varint_field(1, 77), true),
        ("/etcdserverpb.Lease/LeaseKeepAlive", varint_field(1, 77), false),
        ("/etcdserverpb.Lease/LeaseTimeToLive", cat(&[varint_field(1, 77), varint_field(2, 1)]), false),
        ("/etcdserverpb.Lease/LeaseLeases", Vec::new(), false),
        ("/etcdserverpb.Cluster/MemberAdd", cat(&[bytes_field(1, b"http://127.0.0.1:1"), varint_field(2, 1)]), false),
        ("/etcdserverpb.Cluster/MemberRemove", varint_field(1, 12345), false),
        ("/etcdserverpb.Cluster/MemberUpdate", cat(&[varint_field(1, 12345), bytes_field(2, b"http://h:1")]), false),
        ("/etcdserverpb.Cluster/MemberList", varint_field(1, 1), false),
        ("/etcdserverpb.Cluster/MemberPromote", varint_field(1, 12345), false),
        ("/etcdserverpb.Maintenance/Alarm", cat(&[varint_field(1, 0), varint_field(3, 1)]), false),
        ("/etcdserverpb.Maintenance/Status", Vec::new(), false),
        ("/etcdserverpb.Maintenance/Defragment", Vec::new(), false),
        ("/etcdserverpb.Maintenance/Hash", Vec::new(), false),
        ("/etcdserverpb.Maintenance/HashKV", varint_field(1, 0), false),
        ("/etcdserverpb.Maintenance/Snapshot", Vec::new(), false),
        ("/etcdserverpb.Maintenance/MoveLeader", varint_field(1, 12345), false),
        ("/etcdserverpb.Maintenance/Downgrade", cat(&[varint_field(1, 0), bytes_field(2, b"3.4.0")]), false),
        ("/etcdserverpb.Auth/AuthEnable", Vec::new(), false),
        ("/etcdserverpb.Auth/AuthDisable", Vec::new(), false),
        ("/etcdserverpb.Auth/AuthStatus", Vec::new(), false),
        ("/etcdserverpb.Auth/Authenticate", cat(&[key("fuzz-user"), bytes_field(2, b"pw")]), false),
        ("/etcdserverpb.Auth/UserAdd", cat(&[key("fuzz-user"), bytes_field(2, b"pw")]), false),
        ("/etcdserverpb.Auth/UserGet", key("fuzz-user"), false),
        ("/etcdserverpb.Auth/UserList", Vec::new(), false),
        ("/etcdserverpb.Auth/UserDelete", key("fuzz-user"), false),
        ("/etcdserverpb.Auth/UserChangePassword", cat(&[key("fuzz-user"), bytes_field(2, b"pw2")]), false),
        ("/etcdserverpb.Auth/UserGrantRole", cat(&[key("fuzz-user"), bytes_field(2, b"fuzz-role")]), false),
        ("/etcdserverpb.Auth/UserRevokeRole", cat(&[key("fuzz-user"), bytes_field(2, b"fuzz-role")]), false),
        ("/etcdserverpb.Auth/RoleAdd", key("fuzz-role"), false),
        ("/etcdserverpb.Auth/RoleGet", key("fuzz-role"), false),
        ("/etcdserverpb.Auth/RoleList", Vec::new(), false),
        ("/etcdserverpb.Auth/RoleDelete", key("fuzz-role"), false),
        ("/etcdserverpb.Auth/RoleGrantPermission", cat(&[key("fuzz-role"), bytes_field(2, &perm)]), false),
        (
            "/etcdserverpb.Auth/RoleRevokePermission",
            cat(&[key("fuzz-role"), bytes_field(2, b"fuzz/"), bytes_field(3, b"fuzz0")]),
            false,
        ),
        ("/v3lockpb.Lock/Lock", key("fuzz/lock"), true),
        ("/v3lockpb.Lock/Unlock", key("fuzz/lock/1"), true),
        ("/v3electionpb.Election/Campaign", cat(&[key("fuzz/e"), bytes_field(3, b"me")]), true),
        ("/v3electionpb.Election/Proclaim", cat(&[bytes_field(1, &leader_key), bytes_field(2, b"v")]), true),
        ("/v3electionpb.Election/Leader", key("fuzz/e"), false),
        ("/v3electionpb.Election/Observe", key("fuzz/e"), false),
        ("/v3electionpb.Election/Resign", bytes_field(1, &leader_key), true),
    ]
}

/// How a case damages its valid request.
#[derive(Debug, Clone)]
enum Damage {
    /// Random bytes instead of the request.
    Random(Vec<u8>),
    /// Bytes at (position, value) overwritten.
    Flip(Vec<(usize, u8)>),
    /// Cut at a position.
    Cut(usize),
    /// Bytes inserted at a position.
    Insert(usize, Vec<u8>),
    /// A field appended: tag (any wire type) and raw bytes after it.
    Append(u32, Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..120).prop_map(Damage::Random),
        prop::collection::vec((any::<usize>(), any::<u8>()), 1..6).prop_map(Damage::Flip),
        any::<usize>().prop_map(Damage::Cut),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(p, b)| Damage::Insert(p, b)),
        (any::<u32>(), prop::collection::vec(any::<u8>(), 0..24)).prop_map(|(t, b)| Damage::Append(t, b)),
    ]
}

fn apply(d: &Damage, valid: &[u8]) -> Vec<u8> {
    let mut out = valid.to_vec();
    match d {
        Damage::Random(b) => return b.clone(),
        Damage::Flip(flips) if !out.is_empty() => {
            for (p, v) in flips {
                let n = out.len();
                out[p % n] = *v;
            }
        }
        Damage::Flip(_) => {}
        Damage::Cut(p) => out.truncate(p % (out.len() + 1)),
        Damage::Insert(p, b) => {
            let at = p % (out.len() + 1);
            out.splice(at..at, b.iter().copied());
        }
        Damage::Append(tag, b) => {
            varint(&mut out, u64::from(*tag));
            out.extend_from_slice(b);
        }
    }
    out
}

/// A gRPC codec that sends and receives bytes as they are.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

/// Sends `body` to `path` as one message of a stream (the same bytes on the wire as a unary
/// call) and reads the first answer: whether it was OK. A call that waits (a lock held, a watch)
/// is given up after a second.
async fn call(channel: &tonic::transport::Channel, path: &'static str, body: Vec<u8>) -> bool {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    let attempt = async {
        grpc.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
        let request = tonic::Request::new(tokio_stream::iter([body]));
        let mut answer =
            grpc.streaming(request, tonic::codegen::http::uri::PathAndQuery::from_static(path), RawCodec).await?;
        answer.get_mut().message().await.map(|_| ())
    };
    matches!(tokio::time::timeout(Duration::from_secs(1), attempt).await, Ok(Ok(())))
}

/// The known key still reads back as written — or the case acknowledged a write that may have
/// changed it, and it is written again. Alarms a mutated Alarm request raised are cleared.
async fn check_known(cl: &Cluster, case: &str, wrote: bool) {
    assert!(!cl.has_exited(0), "the member exited after {case}:\n{}", cl.log_tail(0, 30));
    let mut c = cl.client(0).await.unwrap_or_else(|e| panic!("no client after {case}: {e}"));
    let got = tokio::time::timeout(Duration::from_secs(10), c.get(KNOWN, None))
        .await
        .unwrap_or_else(|_| panic!("reading the known key timed out after {case}"))
        .unwrap_or_else(|e| panic!("reading the known key failed after {case}: {e}"));
    let value = got.kvs().first().map(|kv| kv.value().to_vec());
    if value.as_deref() == Some(KNOWN_VALUE.as_bytes()) {
        return;
    }
    assert!(wrote, "the known key reads {value:?} after {case}, which wrote nothing");
    let alarms = c.alarm(etcd_client::AlarmAction::Get, etcd_client::AlarmType::None, None).await.unwrap();
    for a in alarms.alarms() {
        let mut member = etcd_client::AlarmOptions::new();
        member.with_member(a.member_id());
        c.alarm(etcd_client::AlarmAction::Deactivate, a.alarm(), Some(member)).await.unwrap();
    }
    c.put(KNOWN, KNOWN_VALUE, None).await.unwrap_or_else(|e| panic!("writing the known key again after {case}: {e}"));
}

async fn known_cluster() -> Cluster {
    let cl = common::cluster(1).await;
    cl.client(0).await.unwrap().put(KNOWN, KNOWN_VALUE, None).await.unwrap();
    cl
}

#[test]
fn every_grpc_method_survives_random_and_mutated_requests() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let cl = rt.block_on(known_cluster());
    let channel = rt
        .block_on(async { tonic::transport::Channel::from_shared(cl.client_url(0)).unwrap().connect().await.unwrap() });
    let methods = methods();
    let mut runner = TestRunner::new(Config { cases: 1500, failure_persistence: None, ..Config::default() });
    let answered = std::cell::Cell::new(0usize);
    runner
        .run(&(0..methods.len(), damage()), |(m, d)| {
            let (path, valid, writes) = &methods[m];
            let body = apply(&d, valid);
            if adds_a_voter(path, &body) {
                // A second voter that never starts takes the one-member cluster's quorum (etcd
                // allows this add too): every later case would find no leader.
                return Ok(());
            }
            let case = format!("{path} with {body:02x?}");
            rt.block_on(async {
                if call(&channel, path, body).await {
                    answered.set(answered.get() + 1);
                }
                check_known(&cl, &case, *writes).await;
            });
            Ok(())
        })
        .unwrap();
    eprintln!("{} of 1500 damaged requests answered OK", answered.get());
    // The damage is not all refused: many mutations are still valid requests.
    assert!(answered.get() > 100, "only {} of 1500 cases answered", answered.get());
    // Every valid request, undamaged, still answers.
    rt.block_on(async {
        for (path, valid, writes) in methods {
            call(&channel, path, valid).await;
            check_known(&cl, path, writes).await;
        }
    });
}

/// Whether `body`, sent to `path`, is a readable MemberAdd asking for a voter (not a learner).
fn adds_a_voter(path: &str, body: &[u8]) -> bool {
    use prost::Message;
    path == "/etcdserverpb.Cluster/MemberAdd"
        && oxcd_api::etcdserverpb::MemberAddRequest::decode(body).is_ok_and(|r| !r.is_learner)
}

/// Writes `bytes` to `addr`, then reads whatever comes back until the peer closes or a second
/// passes; returns it.
fn exchange(addr: &str, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn the_peer_port_survives_random_and_mutated_handshakes() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let cl = rt.block_on(known_cluster());
    let (member, cluster) = rt.block_on(async {
        let st = cl.client(0).await.unwrap().status().await.unwrap();
        let h = st.header().unwrap();
        (h.member_id(), h.cluster_id())
    });
    let peer = cl.peer_url(0).trim_start_matches("http://").to_string();
    // A handshake of each kind from a stranger and from the member itself, each followed by a
    // frame of random content.
    let mut valid = Vec::new();
    for sender in [0x1234_5678_9abc_def0u64, member] {
        for kind in 1..=4u8 {
            let mut h = b"OXCDPEER".to_vec();
            h.extend_from_slice(&sender.to_le_bytes());
            h.extend_from_slice(&cluster.to_le_bytes());
            h.push(kind);
            h.extend_from_slice(&8u32.to_le_bytes());
            h.extend_from_slice(&[0x08, 0x03, 0x10, 0x01, 0x18, 0x02, 0x20, 0x05]);
            valid.push(h);
        }
    }
    let mut runner = TestRunner::new(Config { cases: 300, failure_persistence: None, ..Config::default() });
    runner
        .run(&(0..valid.len(), damage()), |(v, d)| {
            let body = apply(&d, &valid[v]);
            exchange(&peer, &body);
            rt.block_on(check_known(&cl, &format!("peer bytes {body:02x?}"), false));
            Ok(())
        })
        .unwrap();
}

#[test]
fn the_gateway_survives_random_and_mutated_json() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let cl = rt.block_on(known_cluster());
    let addr = cl.endpoint(0);
    // fuzz/a, fuzz/z and fuzz/ in base64.
    let requests: Vec<(&str, &str, bool)> = vec![
        ("/v3/kv/range", r#"{"key":"ZnV6ei9h","range_end":"ZnV6ei96","limit":"10"}"#, false),
        ("/v3/kv/put", r#"{"key":"ZnV6ei9h","value":"eA==","prev_kv":true}"#, true),
        ("/v3/kv/deleterange", r#"{"key":"ZnV6ei9h"}"#, true),
        (
            "/v3/kv/txn",
            r#"{"compare":[{"key":"ZnV6ei9h","result":"EQUAL","target":"VERSION","version":"1"}],"success":[{"request_put":{"key":"ZnV6ei9h","value":"eQ=="}}],"failure":[{"request_range":{"key":"ZnV6ei9h"}}]}"#,
            true,
        ),
        ("/v3/kv/compaction", r#"{"revision":"1"}"#, false),
        ("/v3/watch", r#"{"create_request":{"key":"ZnV6ei8=","start_revision":"1"}}"#, false),
        ("/v3/lease/grant", r#"{"TTL":"30","ID":"77"}"#, false),
        ("/v3/lease/revoke", r#"{"ID":"77"}"#, true),
        ("/v3/lease/timetolive", r#"{"ID":"77","keys":true}"#, false),
        ("/v3/lease/leases", "{}", false),
        ("/v3/cluster/member/list", "{}", false),
        ("/v3/maintenance/status", "{}", false),
        ("/v3/maintenance/alarm", r#"{"action":"GET"}"#, false),
        ("/v3/auth/status", "{}", false),
        ("/v3/auth/authenticate", r#"{"name":"fuzz","password":"pw"}"#, false),
        ("/v3/lock/lock", r#"{"name":"ZnV6ei9sb2Nr"}"#, true),
        ("/v3/election/leader", r#"{"name":"ZnV6ei9l"}"#, false),
        ("/v3/kv/nothing", "{}", false),
    ];
    let mut runner = TestRunner::new(Config { cases: 800, failure_persistence: None, ..Config::default() });
    runner
        .run(&(0..requests.len(), damage(), any::<bool>()), |(r, d, mutate_path)| {
            let (path, json, writes) = requests[r];
            let body = apply(&d, json.as_bytes());
            let path = if mutate_path {
                String::from_utf8_lossy(&apply(&d, path.as_bytes())).into_owned()
            } else {
                path.into()
            };
            let mut request = format!(
                "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            request.extend_from_slice(&body);
            exchange(&addr, &request);
            let case = format!("POST {path:?} with {:?}", String::from_utf8_lossy(&body));
            rt.block_on(check_known(&cl, &case, writes));
            Ok(())
        })
        .unwrap();
}
