//! etcdctl's output formats. `simple` is the human one; `json` is Go's encoding/json of the
//! response structs: snake_case names, int64 as numbers, bytes as base64, zero values omitted.

use std::fmt::Write;

use oxcd_api::etcdserverpb::{DeleteRangeResponse, PutResponse, RangeResponse, ResponseHeader};
use oxcd_api::mvccpb::KeyValue;

/// `-w`: how responses are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Simple,
    Json,
}

pub struct Printer {
    pub format: Format,
    pub hex: bool,
}

impl Printer {
    pub fn range(&self, r: &RangeResponse, value_only: bool) {
        match self.format {
            Format::Simple => {
                for kv in &r.kvs {
                    if !value_only {
                        println!("{}", self.bytes(&kv.key));
                    }
                    println!("{}", self.bytes(&kv.value));
                }
            }
            Format::Json => {
                let mut j = Obj::default();
                j.obj("header", header(r.header.as_ref()));
                if !r.kvs.is_empty() {
                    j.raw("kvs", &format!("[{}]", r.kvs.iter().map(kv_json).collect::<Vec<_>>().join(",")));
                }
                j.bool("more", r.more);
                j.int("count", r.count);
                println!("{}", j.finish());
            }
        }
    }

    pub fn put(&self, r: &PutResponse) {
        match self.format {
            Format::Simple => {
                println!("OK");
                if let Some(kv) = &r.prev_kv {
                    println!("{}", self.bytes(&kv.key));
                    println!("{}", self.bytes(&kv.value));
                }
            }
            Format::Json => {
                let mut j = Obj::default();
                j.obj("header", header(r.header.as_ref()));
                if let Some(kv) = &r.prev_kv {
                    j.raw("prev_kv", &kv_json(kv));
                }
                println!("{}", j.finish());
            }
        }
    }

    pub fn delete(&self, r: &DeleteRangeResponse) {
        match self.format {
            Format::Simple => {
                println!("{}", r.deleted);
                for kv in &r.prev_kvs {
                    println!("{}", self.bytes(&kv.key));
                    println!("{}", self.bytes(&kv.value));
                }
            }
            Format::Json => {
                let mut j = Obj::default();
                j.obj("header", header(r.header.as_ref()));
                j.int("deleted", r.deleted);
                if !r.prev_kvs.is_empty() {
                    j.raw("prev_kvs", &format!("[{}]", r.prev_kvs.iter().map(kv_json).collect::<Vec<_>>().join(",")));
                }
                println!("{}", j.finish());
            }
        }
    }

    fn bytes(&self, b: &[u8]) -> String {
        if self.hex {
            b.iter().fold(String::new(), |mut s, c| {
                let _ = write!(s, "\\x{c:02x}");
                s
            })
        } else {
            String::from_utf8_lossy(b).into_owned()
        }
    }
}

/// A JSON object written field by field, omitting zero values as Go's `omitempty` does.
#[derive(Default)]
struct Obj {
    fields: Vec<String>,
}

impl Obj {
    fn raw(&mut self, k: &str, v: &str) {
        self.fields.push(format!("\"{k}\":{v}"));
    }
    fn int(&mut self, k: &str, v: impl Into<i128>) {
        let v = v.into();
        if v != 0 {
            self.raw(k, &v.to_string());
        }
    }
    fn bool(&mut self, k: &str, v: bool) {
        if v {
            self.raw(k, "true");
        }
    }
    fn bytes(&mut self, k: &str, v: &[u8]) {
        if !v.is_empty() {
            self.raw(k, &format!("\"{}\"", base64(v)));
        }
    }
    fn obj(&mut self, k: &str, v: Option<String>) {
        if let Some(v) = v {
            self.raw(k, &v);
        }
    }
    fn finish(self) -> String {
        format!("{{{}}}", self.fields.join(","))
    }
}

fn header(h: Option<&ResponseHeader>) -> Option<String> {
    let h = h?;
    let mut j = Obj::default();
    j.int("cluster_id", h.cluster_id);
    j.int("member_id", h.member_id);
    j.int("revision", h.revision);
    j.int("raft_term", h.raft_term);
    Some(j.finish())
}

fn kv_json(kv: &KeyValue) -> String {
    let mut j = Obj::default();
    j.bytes("key", &kv.key);
    j.int("create_revision", kv.create_revision);
    j.int("mod_revision", kv.mod_revision);
    j.int("version", kv.version);
    j.bytes("value", &kv.value);
    j.int("lease", kv.lease);
    j.finish()
}

/// Standard base64 with padding (Go's encoding of `[]byte` in JSON).
fn base64(b: &[u8]) -> String {
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
}
