//! etcd's replicated-log format for normal entries, read and written (docs/etcd-peer-protocol.md
//! §3.2, §3.3).
//!
//! oxcd's own `InternalRaftRequest` keeps etcd's field numbers and messages for every request both
//! apply, and differs in these places: its header's `system` flag (field 100 of the header, which
//! etcd drops), a lease checkpoint's remaining time (milliseconds; etcd's `remaining_TTL` is in
//! seconds), field 1301 (oxcd: `{member_ID, name, client_urls}`; etcd: `{member_ID,
//! member_attributes: {name, client_urls}}`), field 1302 (oxcd: new peer URLs; etcd: a downgrade),
//! and etcd's two older forms, the top-level `ID` and the v2 `etcdserverpb.Request`, raw or in
//! field 2, which etcd 3.5.1 still proposes for a member's attributes and the cluster version.
//!
//! A normal entry's bytes do not say which format they are in, so the format belongs to the log
//! position: the backend's `meta` bucket records the first index from which the log is etcd's
//! ([`LOG_FROM`]; absent, the whole log is oxcd's). Configuration changes say it themselves (etcd's
//! context is member JSON or nothing; see `membership::MemberChange::decode`).
//!
//! In etcd's format oxcd proposes what etcd proposes: the v2 form for a member's attributes and the
//! cluster version (etcd 3.4 members panic on 1300 and 1301), checkpoints in whole seconds rounded
//! up as etcd's lessor rounds (and in milliseconds in a field of oxcd's, which etcd skips), headers without `system` (the proposer puts the `root` user on a
//! lease revoked by expiry, as etcd's `WithRoot` does, when auth is on), and new peer URLs as a
//! configuration change (UpdateNode) instead of a request.

use oxcd_api::oxcdpb::internal_raft_request::Request;
use oxcd_api::oxcdpb::{
    ClusterVersionSetRequest, InternalRaftRequest, LeaseCheckpoint, LeaseCheckpointRequest, MemberAttrSetRequest,
    RequestHeader,
};
use prost::Message;

/// The key in the backend's `meta` bucket (8 bytes, big-endian) holding the first log index from
/// which normal entries are in etcd's format.
pub const LOG_FROM: &[u8] = b"oxcd_etcd_log_from";

/// oxcd's field in etcd's `LeaseCheckpoint`: the remaining time in milliseconds, beside etcd's
/// whole seconds (etcd skips fields it does not know).
const CHECKPOINT_MS: u32 = 1000;

/// The methods of etcd's v2 `Request`: a normal entry whose top-level field 2 is one of these
/// names is a raw v2 request, not an `InternalRaftRequest` (etcd tells them apart by the parse of
/// the method as a message failing; this is the same test, made explicit).
const V2_METHODS: [&[u8]; 7] = [b"GET", b"PUT", b"POST", b"DELETE", b"QGET", b"SYNC", b"HEAD"];

/// One field of a protobuf message: its number and its bytes as they were (tag included).
pub(crate) struct Field<'a> {
    pub number: u64,
    pub wire: u8,
    /// The value's bytes (a length-delimited field's content; a varint's bytes).
    pub value: &'a [u8],
    /// The whole field: tag and value.
    pub raw: &'a [u8],
}

pub(crate) fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut x = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        x |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(x);
        }
    }
    None
}

fn varint_of(f: &Field<'_>) -> u64 {
    varint(f.value, &mut 0).unwrap_or(0)
}

pub(crate) fn fields(b: &[u8]) -> Result<Vec<Field<'_>>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() {
        let start = at;
        let tag = varint(b, &mut at).ok_or("a damaged field tag")?;
        let wire = (tag & 7) as u8;
        let vstart = at;
        let value = match wire {
            0 => {
                varint(b, &mut at).ok_or("a damaged varint")?;
                &b[vstart..at]
            }
            1 | 5 => {
                at += if wire == 1 { 8 } else { 4 };
                b.get(vstart..at).ok_or("a truncated field")?
            }
            2 => {
                let n = varint(b, &mut at).ok_or("a damaged length")? as usize;
                let v = b.get(at..at.checked_add(n).ok_or("a damaged length")?).ok_or("a truncated field")?;
                at += n;
                v
            }
            w => return Err(format!("wire type {w}")),
        };
        out.push(Field { number: tag >> 3, wire, value, raw: &b[start..at] });
    }
    Ok(out)
}

/// A normal entry's data in etcd's format, as oxcd's request. What oxcd does not apply (a range, a
/// downgrade, a v2 request other than a member's attributes and the cluster version) comes back
/// without a request: the entry is a no-op that only carries its id.
pub fn decode(data: &[u8]) -> Result<InternalRaftRequest, String> {
    if same_as_oxcds(data) {
        // Only fields both formats share (the common case: a KV, lease or auth request and its
        // header): read in place.
        return InternalRaftRequest::decode(data).map_err(|e| format!("a request: {e}"));
    }
    let top = fields(data)?;
    if top.iter().any(|f| f.number == 2 && f.wire == 2 && V2_METHODS.contains(&f.value)) {
        return v2(data);
    }
    let mut out = Vec::with_capacity(data.len());
    let mut id = 0;
    let mut older = None;
    for f in top {
        match f.number {
            100 | 4..=10 | 1000..=1300 => out.extend_from_slice(f.raw),
            1 if f.wire == 0 => id = varint_of(&f),
            2 => older = Some(v2(f.value)?),
            11 => {
                let mut req = LeaseCheckpointRequest::default();
                for c in fields(f.value)?.into_iter().filter(|c| c.number == 1) {
                    let mut cp = LeaseCheckpoint::default();
                    let mut ms = None;
                    for g in fields(c.value)? {
                        match g.number {
                            1 => cp.id = varint_of(&g) as i64,
                            2 => cp.remaining_ms = (varint_of(&g) as i64).saturating_mul(1000),
                            n if n == u64::from(CHECKPOINT_MS) => ms = Some(varint_of(&g) as i64),
                            _ => {}
                        }
                    }
                    cp.remaining_ms = ms.unwrap_or(cp.remaining_ms);
                    req.checkpoints.push(cp);
                }
                prost::encoding::message::encode(11, &req, &mut out);
            }
            1301 => {
                let mut m = MemberAttrSetRequest::default();
                for g in fields(f.value)? {
                    match g.number {
                        1 => m.member_id = varint_of(&g),
                        2 => {
                            for a in fields(g.value)? {
                                let s = String::from_utf8_lossy(a.value).into_owned();
                                match a.number {
                                    1 => m.name = s,
                                    2 => m.client_urls.push(s),
                                    _ => {}
                                }
                            }
                        }
                        _ => {}
                    }
                }
                prost::encoding::message::encode(1301, &m, &mut out);
            }
            _ => {} // 3: a range; 1302: a downgrade; anything newer: not applied by oxcd.
        }
    }
    let mut req = InternalRaftRequest::decode(&out[..]).map_err(|e| format!("a request: {e}"))?;
    if let Some(v2) = older {
        req.request = req.request.or(v2.request);
        req.header = req.header.or(v2.header);
    }
    // etcd wakes the proposer with the top-level ID when there is one, else the header's.
    if id != 0 || req.header.is_none() {
        req.header.get_or_insert_with(Default::default).id = id;
    }
    Ok(req)
}

/// Whether every top-level field of `data` means the same in oxcd's format: the header and the
/// requests both apply alike (a scan of the tags, skipping values, without allocating).
fn same_as_oxcds(data: &[u8]) -> bool {
    let mut at = 0;
    while at < data.len() {
        let Some(tag) = varint(data, &mut at) else { return false };
        if !matches!(tag >> 3, 4..=10 | 100 | 1000..=1300) {
            return false;
        }
        let skipped = match tag & 7 {
            0 => varint(data, &mut at).map(drop),
            2 => varint(data, &mut at).and_then(|n| at.checked_add(n as usize)).map(|end| at = end),
            _ => None,
        };
        if skipped.is_none() || at > data.len() {
            return false;
        }
    }
    true
}

/// etcd's v2 `Request`: `PUT /0/members/<id>/attributes` (a member published its name and client
/// URLs) and `PUT /0/version` (the cluster version) as oxcd's requests; the others change nothing
/// oxcd keeps.
fn v2(req: &[u8]) -> Result<InternalRaftRequest, String> {
    let (mut id, mut method, mut path, mut val) = (0, String::new(), String::new(), String::new());
    for f in fields(req)? {
        let s = || String::from_utf8_lossy(f.value).into_owned();
        match f.number {
            1 => id = varint_of(&f),
            2 => method = s(),
            3 => path = s(),
            4 => val = s(),
            _ => {}
        }
    }
    let header = Some(RequestHeader { id, ..Default::default() });
    let request = if method != "PUT" {
        None
    } else if path == "/0/version" {
        Some(Request::ClusterVersionSet(ClusterVersionSetRequest { ver: val }))
    } else if let Some(hex) = path.strip_prefix("/0/members/").and_then(|p| p.strip_suffix("/attributes")) {
        let member_id = u64::from_str_radix(hex, 16).map_err(|e| format!("member id {hex:?}: {e}"))?;
        let a: Attributes = serde_json::from_str(&val).map_err(|e| format!("member attributes: {e}"))?;
        Some(Request::MemberAttrSet(MemberAttrSetRequest { member_id, name: a.name, client_urls: a.client_urls }))
    } else {
        None
    };
    Ok(InternalRaftRequest { header, request })
}

/// etcd's `membership.Attributes` as JSON (both fields `omitempty`).
#[derive(serde::Serialize, serde::Deserialize)]
struct Attributes {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(rename = "clientURLs", default, skip_serializing_if = "Vec::is_empty")]
    client_urls: Vec<String>,
}

/// `header` and `req` as etcd 3.5.1 would propose them. New peer URLs are not a request in
/// etcd's format (they are a configuration change): refused.
pub fn encode(header: &RequestHeader, req: &Request) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::new();
    match req {
        Request::ClusterVersionSet(v) => v2_put(header.id, "/0/version", &v.ver, &mut out),
        Request::MemberAttrSet(m) => {
            let a = Attributes { name: m.name.clone(), client_urls: m.client_urls.clone() };
            let json = serde_json::to_string(&a).expect("attributes serialise");
            v2_put(header.id, &format!("/0/members/{:x}/attributes", m.member_id), &json, &mut out);
        }
        Request::MemberUpdate(_) => return Err("new peer URLs are a configuration change in etcd's log"),
        other => {
            // In field order, as etcd's generated code writes: the KV and lease requests (4 to
            // 11) before the header (100), the auth and membership ones (1000 on) after it.
            let h = RequestHeader { system: false, ..header.clone() };
            let before_header = matches!(
                other,
                Request::Put(_)
                    | Request::DeleteRange(_)
                    | Request::Txn(_)
                    | Request::Compaction(_)
                    | Request::LeaseGrant(_)
                    | Request::LeaseRevoke(_)
                    | Request::Alarm(_)
                    | Request::LeaseCheckpoint(_)
            );
            out.reserve(other.encoded_len() + h.encoded_len() + 4);
            if !before_header {
                prost::encoding::message::encode(100, &h, &mut out);
            }
            if let Request::LeaseCheckpoint(c) = other {
                let mut cps = Vec::new();
                for cp in &c.checkpoints {
                    let mut one = Vec::new();
                    prost::encoding::int64::encode(1, &cp.id, &mut one);
                    // Whole seconds for etcd, rounded up as etcd's lessor does; the
                    // milliseconds for oxcd in a field etcd skips (oxcd checkpoints every lease
                    // every few seconds, and rounding either way would move deadlines each time).
                    let ms = cp.remaining_ms.max(0);
                    prost::encoding::int64::encode(2, &((ms + 999) / 1000), &mut one);
                    prost::encoding::int64::encode(CHECKPOINT_MS, &ms, &mut one);
                    prost::encoding::bytes::encode(1, &one, &mut cps);
                }
                prost::encoding::bytes::encode(11, &cps, &mut out);
            } else {
                other.encode(&mut out);
            }
            if before_header {
                prost::encoding::message::encode(100, &h, &mut out);
            }
        }
    }
    Ok(out)
}

/// A raw v2 `PUT` as etcd's publish and cluster-version proposals are written.
fn v2_put(id: u64, path: &str, val: &str, out: &mut Vec<u8>) {
    prost::encoding::uint64::encode(1, &id, out);
    prost::encoding::string::encode(2, &"PUT".to_string(), out);
    prost::encoding::string::encode(3, &path.to_string(), out);
    prost::encoding::string::encode(4, &val.to_string(), out);
}

#[cfg(test)]
mod tests {
    use oxcd_api::etcdserverpb::{LeaseRevokeRequest, PutRequest};

    use super::*;

    fn header(id: u64) -> RequestHeader {
        RequestHeader { id, username: "u".into(), auth_revision: 3, system: false }
    }

    #[test]
    fn requests_both_apply_keep_their_bytes() {
        let put =
            Request::Put(PutRequest { key: b"k".to_vec().into(), value: b"v".to_vec().into(), ..Default::default() });
        let etcd = encode(&header(5), &put).unwrap();
        // etcd's order: the put (4), then the header (100).
        let mut want = Vec::new();
        put.encode(&mut want);
        prost::encoding::message::encode(100, &header(5), &mut want);
        assert_eq!(etcd, want);
        assert!(same_as_oxcds(&etcd), "a put is read in place");
        assert_eq!(decode(&etcd).unwrap(), InternalRaftRequest { header: Some(header(5)), request: Some(put) });
    }

    #[test]
    fn etcds_forms_are_read() {
        // 3.5's member attributes (field 1301 with etcd's shape).
        let mut attrs = Vec::new();
        prost::encoding::string::encode(1, &"m1".to_string(), &mut attrs);
        prost::encoding::string::encode(2, &"http://c:2379".to_string(), &mut attrs);
        let mut req = Vec::new();
        prost::encoding::uint64::encode(1, &0xabc, &mut req);
        prost::encoding::bytes::encode(2, &attrs, &mut req);
        let mut etcd = Vec::new();
        prost::encoding::message::encode(100, &RequestHeader { id: 9, ..Default::default() }, &mut etcd);
        prost::encoding::bytes::encode(1301, &req, &mut etcd);
        let ox = decode(&etcd).unwrap();
        assert_eq!(ox.header.unwrap().id, 9);
        let want =
            MemberAttrSetRequest { member_id: 0xabc, name: "m1".into(), client_urls: vec!["http://c:2379".into()] };
        assert_eq!(ox.request, Some(Request::MemberAttrSet(want)));

        // v2 requests: wrapped in field 2 with a top-level ID (3.4), and raw (3.5.1's publish).
        let v2_req = |path: &str, val: &str| {
            let mut r = Vec::new();
            v2_put(0, path, val, &mut r);
            r
        };
        let mut wrapped = Vec::new();
        prost::encoding::uint64::encode(1, &77, &mut wrapped);
        prost::encoding::bytes::encode(2, &v2_req("/0/version", "3.4.0"), &mut wrapped);
        let v = decode(&wrapped).unwrap();
        assert_eq!(v.header.unwrap().id, 77);
        assert_eq!(v.request, Some(Request::ClusterVersionSet(ClusterVersionSetRequest { ver: "3.4.0".into() })));
        let mut raw = Vec::new();
        v2_put(78, "/0/members/abc/attributes", r#"{"name":"m1","clientURLs":["http://c:2379"]}"#, &mut raw);
        let p = decode(&raw).unwrap();
        assert_eq!(p.header.unwrap().id, 78);
        assert!(matches!(p.request, Some(Request::MemberAttrSet(m)) if m.member_id == 0xabc && m.name == "m1"));
        let other = decode(&v2_req("/0/other", "x")).unwrap();
        assert_eq!(other.request, None);
        // A SYNC (etcd's leader expiring v2 keys) is a no-op with its id.
        let mut sync = Vec::new();
        prost::encoding::uint64::encode(1, &5, &mut sync);
        prost::encoding::string::encode(2, &"SYNC".to_string(), &mut sync);
        assert_eq!(
            decode(&sync).unwrap(),
            InternalRaftRequest { header: Some(RequestHeader { id: 5, ..Default::default() }), request: None }
        );
        // A downgrade (1302 in etcd) is not oxcd's peer URL update.
        let mut down = Vec::new();
        prost::encoding::message::encode(100, &RequestHeader { id: 6, ..Default::default() }, &mut down);
        prost::encoding::bytes::encode(1302, &vec![0x08, 1, 0x12, 3, b'3', b'.', b'4'], &mut down);
        assert_eq!(decode(&down).unwrap().request, None);
    }

    #[test]
    fn oxcds_proposals_are_written_as_etcd_writes_them() {
        // The system flag is etcd's unknown field: never written.
        let system = RequestHeader { id: 1, system: true, ..Default::default() };
        let revoke = Request::LeaseRevoke(LeaseRevokeRequest { id: 42 });
        let bytes = encode(&system, &revoke).unwrap();
        let back = decode(&bytes).unwrap();
        assert_eq!(back.header, Some(RequestHeader { id: 1, ..Default::default() }));
        assert_eq!(back.request, Some(revoke));

        // Checkpoints in whole seconds rounded up for etcd, in milliseconds for oxcd (field 1000).
        let cps = Request::LeaseCheckpoint(LeaseCheckpointRequest {
            checkpoints: vec![
                LeaseCheckpoint { id: 7, remaining_ms: 1500 },
                LeaseCheckpoint { id: 8, remaining_ms: 3000 },
            ],
        });
        let bytes = encode(&header(2), &cps).unwrap();
        let mut etcd = Vec::new();
        let ms = |v: u16| [0xc0, 0x3e, (v & 0x7f) as u8 | 0x80, (v >> 7) as u8];
        let mut cps_bytes = vec![0x0a, 8, 0x08, 7, 0x10, 2];
        cps_bytes.extend(ms(1500));
        cps_bytes.extend([0x0a, 8, 0x08, 8, 0x10, 3]);
        cps_bytes.extend(ms(3000));
        prost::encoding::bytes::encode(11, &cps_bytes, &mut etcd);
        prost::encoding::message::encode(100, &header(2), &mut etcd);
        assert_eq!(bytes, etcd);
        let back = decode(&bytes).unwrap().request;
        assert_eq!(back.as_ref(), Some(&cps), "oxcd reads back the milliseconds");
        // etcd's own checkpoint (seconds only) reads as seconds.
        let mut theirs = Vec::new();
        prost::encoding::bytes::encode(11, &vec![0x0a, 4, 0x08, 7, 0x10, 2], &mut theirs);
        let want = vec![LeaseCheckpoint { id: 7, remaining_ms: 2000 }];
        let read = decode(&theirs).unwrap().request;
        assert_eq!(read, Some(Request::LeaseCheckpoint(LeaseCheckpointRequest { checkpoints: want })));

        // A member's attributes and the cluster version as raw v2 PUTs, as 3.5.1 publishes them.
        let attrs =
            MemberAttrSetRequest { member_id: 0x1f, name: "m".into(), client_urls: vec!["http://c:2379".into()] };
        let bytes = encode(&header(3), &Request::MemberAttrSet(attrs.clone())).unwrap();
        let mut want = Vec::new();
        v2_put(3, "/0/members/1f/attributes", r#"{"name":"m","clientURLs":["http://c:2379"]}"#, &mut want);
        assert_eq!(bytes, want);
        assert_eq!(decode(&bytes).unwrap().request, Some(Request::MemberAttrSet(attrs)));
        let ver = Request::ClusterVersionSet(ClusterVersionSetRequest { ver: "3.5.0".into() });
        let bytes = encode(&header(4), &ver).unwrap();
        assert_eq!(
            decode(&bytes).unwrap(),
            InternalRaftRequest { header: Some(RequestHeader { id: 4, ..Default::default() }), request: Some(ver) }
        );
        // Peer URLs are a configuration change.
        let update = Request::MemberUpdate(Default::default());
        assert!(encode(&header(5), &update).is_err());
    }
}
