//! Go's `encoding/json` of etcd's gogo-generated structs, which is what `etcdctl -w json` prints:
//! fields in declaration order under their proto names, `omitempty` on every field, 64-bit integers
//! as plain numbers, enums as numbers, `[]byte` as padded base64, and a oneof as
//! `"Response":{"ResponseRange":{...}}` (the Go interface field and wrapper struct names).

use oxcd_api::authpb::Permission;
use oxcd_api::etcdserverpb::*;
use oxcd_api::mvccpb::{Event, KeyValue};

/// A value that encodes as one JSON object.
pub trait GoJson {
    fn fields(&self, o: &mut Obj);

    fn to_json(&self) -> String {
        let mut o = Obj::default();
        self.fields(&mut o);
        o.finish()
    }
}

/// A JSON object built field by field.
#[derive(Default)]
pub struct Obj {
    out: String,
}

impl Obj {
    /// A field whose value is already JSON, always written.
    pub fn raw(&mut self, k: &str, v: &str) {
        self.out.push(if self.out.is_empty() { '{' } else { ',' });
        self.out.push_str(&quote(k));
        self.out.push(':');
        self.out.push_str(v);
    }

    pub fn finish(self) -> String {
        if self.out.is_empty() { "{}".to_string() } else { self.out + "}" }
    }

    pub fn num(&mut self, k: &str, v: impl Into<i128>) {
        let v = v.into();
        if v != 0 {
            self.raw(k, &v.to_string());
        }
    }

    pub fn boolean(&mut self, k: &str, v: bool) {
        if v {
            self.raw(k, "true");
        }
    }

    pub fn string(&mut self, k: &str, v: &str) {
        if !v.is_empty() {
            self.raw(k, &quote(v));
        }
    }

    pub fn bytes(&mut self, k: &str, v: &[u8]) {
        if !v.is_empty() {
            self.raw(k, &format!("\"{}\"", base64(v)));
        }
    }

    pub fn msg<T: GoJson>(&mut self, k: &str, v: &Option<T>) {
        if let Some(v) = v {
            self.raw(k, &v.to_json());
        }
    }

    pub fn msgs<T: GoJson>(&mut self, k: &str, v: &[T]) {
        if !v.is_empty() {
            self.raw(k, &array(v.iter().map(GoJson::to_json)));
        }
    }

    pub fn strings(&mut self, k: &str, v: &[String]) {
        if !v.is_empty() {
            self.raw(k, &array(v.iter().map(|s| quote(s))));
        }
    }

    pub fn bytes_list(&mut self, k: &str, v: &[bytes::Bytes]) {
        if !v.is_empty() {
            self.raw(k, &array(v.iter().map(|b| format!("\"{}\"", base64(b)))));
        }
    }
}

pub fn array(items: impl Iterator<Item = String>) -> String {
    format!("[{}]", items.collect::<Vec<_>>().join(","))
}

/// Implements [`GoJson`] for a message: `"json name" => rust_field: kind`, in declaration order.
macro_rules! go_json {
    ($($t:ty { $($name:literal => $field:ident : $kind:ident),* $(,)? })*) => {
        $(impl GoJson for $t {
            fn fields(&self, o: &mut Obj) {
                $(go_json!(@field o, $name, self.$field, $kind);)*
            }
        })*
    };
    (@field $o:ident, $name:literal, $v:expr, num) => { $o.num($name, $v) };
    (@field $o:ident, $name:literal, $v:expr, boolean) => { $o.boolean($name, $v) };
    (@field $o:ident, $name:literal, $v:expr, string) => { $o.string($name, &$v) };
    (@field $o:ident, $name:literal, $v:expr, bytes) => { $o.bytes($name, &$v) };
    (@field $o:ident, $name:literal, $v:expr, msg) => { $o.msg($name, &$v) };
    (@field $o:ident, $name:literal, $v:expr, msgs) => { $o.msgs($name, &$v) };
    (@field $o:ident, $name:literal, $v:expr, strings) => { $o.strings($name, &$v) };
    (@field $o:ident, $name:literal, $v:expr, bytes_list) => { $o.bytes_list($name, &$v) };
}

go_json! {
    ResponseHeader { "cluster_id" => cluster_id: num, "member_id" => member_id: num, "revision" => revision: num,
        "raft_term" => raft_term: num }
    KeyValue { "key" => key: bytes, "create_revision" => create_revision: num, "mod_revision" => mod_revision: num,
        "version" => version: num, "value" => value: bytes, "lease" => lease: num }
    Event { "type" => r#type: num, "kv" => kv: msg, "prev_kv" => prev_kv: msg }
    RangeResponse { "header" => header: msg, "kvs" => kvs: msgs, "more" => more: boolean, "count" => count: num }
    PutResponse { "header" => header: msg, "prev_kv" => prev_kv: msg }
    DeleteRangeResponse { "header" => header: msg, "deleted" => deleted: num, "prev_kvs" => prev_kvs: msgs }
    TxnResponse { "header" => header: msg, "succeeded" => succeeded: boolean, "responses" => responses: msgs }
    CompactionResponse { "header" => header: msg }
    LeaseGrantResponse { "header" => header: msg, "ID" => id: num, "TTL" => ttl: num, "error" => error: string }
    LeaseRevokeResponse { "header" => header: msg }
    LeaseKeepAliveResponse { "header" => header: msg, "ID" => id: num, "TTL" => ttl: num }
    LeaseTimeToLiveResponse { "header" => header: msg, "ID" => id: num, "TTL" => ttl: num,
        "grantedTTL" => granted_ttl: num, "keys" => keys: bytes_list }
    LeaseLeasesResponse { "header" => header: msg, "leases" => leases: msgs }
    LeaseStatus { "ID" => id: num }
    Member { "ID" => id: num, "name" => name: string, "peerURLs" => peer_ur_ls: strings,
        "clientURLs" => client_ur_ls: strings, "isLearner" => is_learner: boolean }
    MemberAddResponse { "header" => header: msg, "member" => member: msg, "members" => members: msgs }
    MemberRemoveResponse { "header" => header: msg, "members" => members: msgs }
    MemberUpdateResponse { "header" => header: msg, "members" => members: msgs }
    MemberListResponse { "header" => header: msg, "members" => members: msgs }
    MemberPromoteResponse { "header" => header: msg, "members" => members: msgs }
    // etcd 3.4's StatusResponse ends at isLearner.
    StatusResponse { "header" => header: msg, "version" => version: string, "dbSize" => db_size: num,
        "leader" => leader: num, "raftIndex" => raft_index: num, "raftTerm" => raft_term: num,
        "raftAppliedIndex" => raft_applied_index: num, "errors" => errors: strings,
        "dbSizeInUse" => db_size_in_use: num, "isLearner" => is_learner: boolean }
    HashKvResponse { "header" => header: msg, "hash" => hash: num, "compact_revision" => compact_revision: num }
    AlarmResponse { "header" => header: msg, "alarms" => alarms: msgs }
    AlarmMember { "memberID" => member_id: num, "alarm" => alarm: num }
    MoveLeaderResponse { "header" => header: msg }
    DefragmentResponse { "header" => header: msg }
    AuthEnableResponse { "header" => header: msg }
    AuthDisableResponse { "header" => header: msg }
    AuthStatusResponse { "header" => header: msg, "enabled" => enabled: boolean, "authRevision" => auth_revision: num }
    AuthUserAddResponse { "header" => header: msg }
    AuthUserGetResponse { "header" => header: msg, "roles" => roles: strings }
    AuthUserDeleteResponse { "header" => header: msg }
    AuthUserChangePasswordResponse { "header" => header: msg }
    AuthUserGrantRoleResponse { "header" => header: msg }
    AuthUserRevokeRoleResponse { "header" => header: msg }
    AuthUserListResponse { "header" => header: msg, "users" => users: strings }
    AuthRoleAddResponse { "header" => header: msg }
    AuthRoleGetResponse { "header" => header: msg, "perm" => perm: msgs }
    AuthRoleListResponse { "header" => header: msg, "roles" => roles: strings }
    AuthRoleDeleteResponse { "header" => header: msg }
    AuthRoleGrantPermissionResponse { "header" => header: msg }
    AuthRoleRevokePermissionResponse { "header" => header: msg }
    Permission { "permType" => perm_type: num, "key" => key: bytes, "range_end" => range_end: bytes }
}

impl GoJson for ResponseOp {
    fn fields(&self, o: &mut Obj) {
        use response_op::Response;
        let Some(r) = &self.response else { return };
        let (name, json) = match r {
            Response::ResponseRange(r) => ("ResponseRange", r.to_json()),
            Response::ResponsePut(r) => ("ResponsePut", r.to_json()),
            Response::ResponseDeleteRange(r) => ("ResponseDeleteRange", r.to_json()),
            Response::ResponseTxn(r) => ("ResponseTxn", r.to_json()),
        };
        let mut inner = Obj::default();
        inner.raw(name, &json);
        o.raw("Response", &inner.finish());
    }
}

/// A JSON string literal as Go writes it: `<`, `>` and `&` escaped for HTML, U+2028/9 escaped,
/// invalid UTF-8 (already replaced by the caller) as U+FFFD.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Standard base64 with padding (Go's encoding of `[]byte` in JSON).
pub fn base64(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for chunk in b.chunks(3) {
        let n = match chunk.len() {
            3 => (chunk[0] as u32) << 16 | (chunk[1] as u32) << 8 | chunk[2] as u32,
            2 => (chunk[0] as u32) << 16 | (chunk[1] as u32) << 8,
            _ => (chunk[0] as u32) << 16,
        };
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_go() {
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"bar2"), "YmFyMg==");
        assert_eq!(base64(b"\0"), "AA==");
        assert_eq!(base64(b"ab"), "YWI=");
    }

    #[test]
    fn objects_omit_zero_values_and_keep_declaration_order() {
        let h = ResponseHeader { cluster_id: u64::MAX, member_id: 0, revision: 5, raft_term: 2 };
        assert_eq!(h.to_json(), r#"{"cluster_id":18446744073709551615,"revision":5,"raft_term":2}"#);
        assert_eq!(ResponseHeader::default().to_json(), "{}");
        let op = ResponseOp {
            response: Some(response_op::Response::ResponsePut(PutResponse { header: Some(h), prev_kv: None })),
        };
        assert_eq!(
            op.to_json(),
            r#"{"Response":{"ResponsePut":{"header":{"cluster_id":18446744073709551615,"revision":5,"raft_term":2}}}}"#
        );
    }

    #[test]
    fn strings_escape_as_go_does() {
        assert_eq!(quote("a<b>&\"\\\n\u{1}"), r#""a\u003cb\u003e\u0026\"\\\n\u0001""#);
    }
}
