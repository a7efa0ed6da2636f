//! etcd's own code reads what oxcd writes in etcd's log format: a small Go program built against
//! etcd 3.4.23's source (Debian's `golang-etcd-server-dev`, GOPATH mode) parses each entry as
//! etcd's applier does (`scripts/etcd-log-judge/main.go`), and this test checks that etcd sees the
//! request or configuration change oxcd meant: the same fields, ids, users and members, the v2
//! form where etcd 3.4 members could not apply the v3 one, and no entry etcd would panic on.

use std::io::Write;
use std::process::{Command, Stdio};

use oxcd_api::etcdserverpb::{
    AlarmRequest, AuthUserAddRequest, CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest,
    PutRequest, RequestOp, TxnRequest, request_op,
};
use oxcd_api::oxcdpb::internal_raft_request::Request;
use oxcd_api::oxcdpb::{
    ClusterVersionSetRequest, InternalAuthenticateRequest, LeaseCheckpoint, LeaseCheckpointRequest,
    MemberAttrSetRequest, RequestHeader,
};
use oxcd_datadir::etcd_log;
use oxcd_datadir::ids::MemberId;
use oxcd_datadir::membership::{Member, MemberChange};
use serde_json::{Value, json};

const GOPATH: &str = "/usr/share/gocode";

/// Builds the judge and has it read `entries` ("normal" or "confchange", data): etcd's reading
/// of each, in order.
fn etcd_reads(entries: &[(&str, Vec<u8>)]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("etcd-log-judge");
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/etcd-log-judge/main.go");
    assert!(
        std::path::Path::new(GOPATH).join("src/go.etcd.io/etcd/etcdserver").is_dir(),
        "etcd's Go source is needed: apt-get install golang-go golang-etcd-server-dev"
    );
    let built = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(src)
        .env("GO111MODULE", "off")
        .env("GOPATH", GOPATH)
        .env("GOCACHE", dir.path().join("cache"))
        .env("GOFLAGS", "-mod=")
        .output()
        .expect("go (apt-get install golang-go)");
    assert!(built.status.success(), "building the judge: {}", String::from_utf8_lossy(&built.stderr));
    let mut child = Command::new(&bin).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut input = String::new();
    for (kind, data) in entries {
        let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
        input.push_str(&format!("{kind} {hex}\n"));
    }
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the judge failed");
    let lines: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), entries.len());
    lines
}

fn b64(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in s.as_bytes().chunks(3) {
        let n = c.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= c.len() { T[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

#[test]
fn etcd_applies_what_oxcd_writes_in_its_format() {
    let user = |id| RequestHeader { id, username: "alice".into(), auth_revision: 7, system: false };
    let root = RequestHeader { id: 12, username: "root".into(), auth_revision: 9, system: false };
    let system = RequestHeader { id: 13, system: true, ..Default::default() };
    let put = |k: &str, v: &str| PutRequest {
        key: k.as_bytes().to_vec().into(),
        value: v.as_bytes().to_vec().into(),
        ..Default::default()
    };
    let requests: Vec<(RequestHeader, Request)> = vec![
        (user(1), Request::Put(PutRequest { lease: 0x55, prev_kv: true, ..put("k", "v") })),
        (
            user(2),
            Request::DeleteRange(DeleteRangeRequest { key: "a".into(), range_end: "b".into(), ..Default::default() }),
        ),
        (
            user(3),
            Request::Txn(TxnRequest {
                success: vec![RequestOp { request: Some(request_op::Request::RequestPut(put("t", "1"))) }],
                ..Default::default()
            }),
        ),
        (user(4), Request::Compaction(CompactionRequest { revision: 40, physical: true })),
        (user(5), Request::LeaseGrant(LeaseGrantRequest { ttl: 60, id: 0x77 })),
        (root.clone(), Request::LeaseRevoke(LeaseRevokeRequest { id: 0x77 })),
        (system.clone(), Request::Alarm(AlarmRequest { action: 1, member_id: 0x1f, alarm: 1 })),
        (
            system.clone(),
            Request::LeaseCheckpoint(LeaseCheckpointRequest {
                checkpoints: vec![LeaseCheckpoint { id: 0x77, remaining_ms: 4_900 }],
            }),
        ),
        (
            root.clone(),
            Request::AuthUserAdd(AuthUserAddRequest {
                name: "bob".into(),
                hashed_password: "h".into(),
                ..Default::default()
            }),
        ),
        (
            user(6),
            Request::Authenticate(InternalAuthenticateRequest {
                name: "alice".into(),
                password: String::new(),
                simple_token: "tok".into(),
            }),
        ),
        (
            RequestHeader { id: 14, ..Default::default() },
            Request::MemberAttrSet(MemberAttrSetRequest {
                member_id: 0x1f,
                name: "m1".into(),
                client_urls: vec!["http://127.0.0.1:2379".into()],
            }),
        ),
        (
            RequestHeader { id: 15, ..Default::default() },
            Request::ClusterVersionSet(ClusterVersionSetRequest { ver: "3.5.0".into() }),
        ),
    ];
    let urls = vec!["http://127.0.0.1:2380".to_string()];
    let member = |id, is_learner| Member {
        id: MemberId(id),
        name: String::new(),
        peer_urls: urls.clone(),
        client_urls: vec![],
        is_learner,
    };
    let changes = [
        MemberChange::Add(member(0x10, false)),
        MemberChange::Add(member(0x10, true)),
        MemberChange::Promote(MemberId(0x10)),
        MemberChange::Remove(MemberId(0x10)),
        MemberChange::Update(MemberId(0x10), urls.clone()),
    ];
    let mut entries: Vec<(&str, Vec<u8>)> =
        requests.iter().map(|(h, r)| ("normal", etcd_log::encode(h, r).unwrap())).collect();
    entries.extend(changes.iter().enumerate().map(|(i, c)| ("confchange", c.etcd_proposal(100 + i as u64))));
    let read = etcd_reads(&entries);

    // Every v3 request: its header as given (no `system`, which etcd would drop), and the request.
    let v3 = |i: usize, field: &str| -> Value {
        let r = &read[i]["v3"];
        assert!(r.is_object(), "entry {i} is etcd's v3 request: {}", read[i]);
        let h = &requests[i].0;
        assert_eq!(r["header"]["ID"], json!(h.id), "entry {i}: {}", read[i]);
        assert_eq!(r["header"]["username"].as_str().unwrap_or(""), h.username, "entry {i}");
        assert_eq!(r["header"]["auth_revision"].as_u64().unwrap_or(0), h.auth_revision, "entry {i}");
        let known = r.as_object().unwrap().iter().filter(|(k, v)| *k != "header" && !v.is_null()).count();
        assert_eq!(known, 1, "entry {i} sets exactly one request (etcd panics on none): {}", read[i]);
        r[field].clone()
    };
    let p = v3(0, "put");
    assert_eq!((p["key"].as_str(), p["value"].as_str()), (Some(b64("k").as_str()), Some(b64("v").as_str())));
    assert_eq!((p["lease"].as_i64(), p["prev_kv"].as_bool()), (Some(0x55), Some(true)));
    let d = v3(1, "delete_range");
    assert_eq!((d["key"].as_str(), d["range_end"].as_str()), (Some(b64("a").as_str()), Some(b64("b").as_str())));
    let t = v3(2, "txn");
    assert_eq!(t["success"][0]["Request"]["RequestPut"]["key"].as_str(), Some(b64("t").as_str()), "{t}");
    let c = v3(3, "compaction");
    assert_eq!((c["revision"].as_i64(), c["physical"].as_bool()), (Some(40), Some(true)));
    let g = v3(4, "lease_grant");
    assert_eq!((g["TTL"].as_i64(), g["ID"].as_i64()), (Some(60), Some(0x77)));
    assert_eq!(v3(5, "lease_revoke")["ID"].as_i64(), Some(0x77));
    let a = v3(6, "alarm");
    assert_eq!((a["action"].as_i64(), a["memberID"].as_u64(), a["alarm"].as_i64()), (Some(1), Some(0x1f), Some(1)));
    // The checkpoint in whole seconds, rounded up as etcd rounds (oxcd's milliseconds are skipped).
    let cp = v3(7, "lease_checkpoint");
    assert_eq!(
        (cp["checkpoints"][0]["ID"].as_i64(), cp["checkpoints"][0]["remaining_TTL"].as_i64()),
        (Some(0x77), Some(5))
    );
    assert_eq!(v3(8, "auth_user_add")["name"].as_str(), Some("bob"));
    let auth = v3(9, "authenticate");
    assert_eq!((auth["name"].as_str(), auth["simple_token"].as_str()), (Some("alice"), Some("tok")));

    // A member's attributes and the cluster version: etcd's raw v2 PUTs, as 3.5.1 writes them.
    let v2 = |i: usize| {
        let r = &read[i]["v2"];
        assert!(r.is_object(), "entry {i} is a v2 request: {}", read[i]);
        (
            r["ID"].as_u64().unwrap(),
            r["Method"].as_str().unwrap().to_string(),
            r["Path"].as_str().unwrap().to_string(),
            r["Val"].as_str().unwrap().to_string(),
        )
    };
    let (id, method, path, val) = v2(10);
    assert_eq!((id, method.as_str(), path.as_str()), (14, "PUT", "/0/members/1f/attributes"));
    assert_eq!(
        serde_json::from_str::<Value>(&val).unwrap(),
        json!({"name": "m1", "clientURLs": ["http://127.0.0.1:2379"]})
    );
    assert_eq!(v2(11), (15, "PUT".into(), "/0/version".into(), "3.5.0".into()));

    // Configuration changes: etcd's type names, the request id, the member as etcd reads it.
    let cc = |i: usize| &read[requests.len() + i];
    let expect = |i: usize, kind: &str, context: Option<Value>| {
        let r = cc(i);
        assert_eq!(
            (r["type"].as_str(), r["node"].as_u64(), r["id"].as_u64()),
            (Some(kind), Some(0x10), Some(100 + i as u64)),
            "{r}"
        );
        assert!(r.get("context_error").is_none(), "etcd reads the context: {r}");
        match context {
            Some(c) => assert_eq!(r["context"], c, "change {i}"),
            None => assert!(r.get("context").is_none(), "change {i}: {r}"),
        }
    };
    let ctx = |is_learner: bool, is_promote: bool, peer_urls: Value| {
        let mut m = json!({"id": 16, "peerURLs": peer_urls, "isPromote": is_promote});
        if is_learner {
            m["isLearner"] = json!(true);
        }
        Some(m)
    };
    let peer = json!(urls);
    expect(0, "ConfChangeAddNode", ctx(false, false, peer.clone()));
    expect(1, "ConfChangeAddLearnerNode", ctx(true, false, peer.clone()));
    expect(2, "ConfChangeAddNode", ctx(false, true, json!([])));
    expect(3, "ConfChangeRemoveNode", None);
    expect(4, "ConfChangeUpdateNode", ctx(false, false, peer));
}
