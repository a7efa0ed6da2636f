//! etcdctl's five output formats. `simple` is for people (values printed as the raw bytes they
//! are), `json` is Go's encoding of the response ([`crate::gojson`]), `fields` prints
//! `"Name" : value` lines with Go-quoted strings, `protobuf` the response's wire encoding, and
//! `table` boxes for the commands that have one. Everything is written to one buffer and flushed at
//! the end, as bytes.

use std::io::Write;

use prost::Message;

use oxcd_api::etcdserverpb::*;
use oxcd_api::mvccpb::KeyValue;

use crate::error::{CtlError, EXIT_BAD_FEATURE, Result};
use crate::gojson::GoJson;

/// `-w`: how responses are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Simple,
    Json,
    Fields,
    Protobuf,
    Table,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Simple => "simple",
            Format::Json => "json",
            Format::Fields => "fields",
            Format::Protobuf => "protobuf",
            Format::Table => "table",
        }
    }
}

/// Prints responses in one format; `out` collects the bytes.
pub struct Printer {
    pub format: Format,
    pub hex: bool,
    pub out: Vec<u8>,
}

/// A line of text into a printer's buffer.
macro_rules! outln {
    ($p:expr, $($arg:tt)*) => {{
        let _ = std::io::Write::write_fmt(&mut $p.out, format_args!($($arg)*));
        $p.out.push(b'\n');
    }};
}
pub(crate) use outln;

impl Printer {
    pub fn new(format: Format, hex: bool) -> Printer {
        Printer { format, hex, out: Vec::new() }
    }

    /// Writes what was printed so far to stdout.
    pub fn flush(&mut self) {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(&self.out);
        let _ = stdout.flush();
        self.out.clear();
    }

    /// The error for a format a command does not have.
    pub fn unsupported(&self) -> CtlError {
        CtlError::new(EXIT_BAD_FEATURE, format!("{} not supported as output format", self.format.name()))
    }

    pub fn json(&mut self, v: &impl GoJson) {
        outln!(self, "{}", v.to_json());
    }

    pub fn protobuf(&mut self, m: &impl Message) {
        self.out.extend_from_slice(&m.encode_to_vec());
    }

    /// Raw bytes, or `\xNN` for every byte with `--hex`, then a newline.
    pub fn bytes_line(&mut self, b: &[u8]) {
        if self.hex {
            for c in b {
                let _ = write!(self.out, "\\x{c:02x}");
            }
        } else {
            self.out.extend_from_slice(b);
        }
        self.out.push(b'\n');
    }

    fn simple_kv(&mut self, kv: &KeyValue, value_only: bool) {
        if !value_only {
            self.bytes_line(&kv.key);
        }
        self.bytes_line(&kv.value);
    }

    pub fn fields_header(&mut self, h: &Option<ResponseHeader>) {
        let h = h.unwrap_or_default();
        outln!(self, "\"ClusterID\" : {}", h.cluster_id);
        outln!(self, "\"MemberID\" : {}", h.member_id);
        outln!(self, "\"Revision\" : {}", h.revision);
        outln!(self, "\"RaftTerm\" : {}", h.raft_term);
    }

    pub fn fields_kv(&mut self, prefix: &str, kv: &KeyValue) {
        outln!(self, "\"{prefix}Key\" : {}", go_quote(&kv.key));
        outln!(self, "\"{prefix}CreateRevision\" : {}", kv.create_revision);
        outln!(self, "\"{prefix}ModRevision\" : {}", kv.mod_revision);
        outln!(self, "\"{prefix}Version\" : {}", kv.version);
        outln!(self, "\"{prefix}Value\" : {}", go_quote(&kv.value));
        outln!(self, "\"{prefix}Lease\" : {}", kv.lease);
    }

    // ---- KV

    pub fn get(&mut self, r: &RangeResponse, value_only: bool) -> Result<()> {
        match self.format {
            Format::Simple => r.kvs.iter().for_each(|kv| self.simple_kv(kv, value_only)),
            Format::Json => self.json(r),
            Format::Protobuf => self.protobuf(r),
            Format::Fields => self.fields_range(r),
            Format::Table => return Err(self.unsupported()),
        }
        Ok(())
    }

    fn fields_range(&mut self, r: &RangeResponse) {
        self.fields_header(&r.header);
        for kv in &r.kvs {
            self.fields_kv("", kv);
        }
        outln!(self, "\"More\" : {}", r.more);
        outln!(self, "\"Count\" : {}", r.count);
    }

    pub fn put(&mut self, r: &PutResponse) -> Result<()> {
        match self.format {
            Format::Simple => self.simple_put(r),
            Format::Json => self.json(r),
            Format::Protobuf => self.protobuf(r),
            Format::Fields => self.fields_put(r),
            Format::Table => return Err(self.unsupported()),
        }
        Ok(())
    }

    fn simple_put(&mut self, r: &PutResponse) {
        outln!(self, "OK");
        if let Some(kv) = &r.prev_kv {
            self.simple_kv(kv, false);
        }
    }

    fn fields_put(&mut self, r: &PutResponse) {
        self.fields_header(&r.header);
        if let Some(kv) = &r.prev_kv {
            self.fields_kv("Prev", kv);
        }
    }

    pub fn del(&mut self, r: &DeleteRangeResponse) -> Result<()> {
        match self.format {
            Format::Simple => self.simple_del(r),
            Format::Json => self.json(r),
            Format::Protobuf => self.protobuf(r),
            Format::Fields => self.fields_del(r),
            Format::Table => return Err(self.unsupported()),
        }
        Ok(())
    }

    fn simple_del(&mut self, r: &DeleteRangeResponse) {
        outln!(self, "{}", r.deleted);
        for kv in &r.prev_kvs {
            self.simple_kv(kv, false);
        }
    }

    fn fields_del(&mut self, r: &DeleteRangeResponse) {
        self.fields_header(&r.header);
        outln!(self, "\"Deleted\" : {}", r.deleted);
        for kv in &r.prev_kvs {
            self.fields_kv("Prev", kv);
        }
    }

    pub fn txn(&mut self, r: &TxnResponse) -> Result<()> {
        match self.format {
            Format::Simple => self.simple_txn(r),
            Format::Json => self.json(r),
            Format::Protobuf => self.protobuf(r),
            Format::Fields => self.fields_txn(r),
            Format::Table => return Err(self.unsupported()),
        }
        Ok(())
    }

    fn simple_txn(&mut self, r: &TxnResponse) {
        outln!(self, "{}", if r.succeeded { "SUCCESS" } else { "FAILURE" });
        for op in &r.responses {
            outln!(self, "");
            match &op.response {
                Some(response_op::Response::ResponsePut(p)) => self.simple_put(p),
                Some(response_op::Response::ResponseRange(g)) => {
                    g.kvs.iter().for_each(|kv| self.simple_kv(kv, false));
                }
                Some(response_op::Response::ResponseDeleteRange(d)) => self.simple_del(d),
                Some(response_op::Response::ResponseTxn(t)) => self.simple_txn(t),
                None => {}
            }
        }
    }

    fn fields_txn(&mut self, r: &TxnResponse) {
        self.fields_header(&r.header);
        outln!(self, "\"Succeeded\" : {}", r.succeeded);
        for op in &r.responses {
            match &op.response {
                Some(response_op::Response::ResponsePut(p)) => self.fields_put(p),
                Some(response_op::Response::ResponseRange(g)) => self.fields_range(g),
                Some(response_op::Response::ResponseDeleteRange(d)) => self.fields_del(d),
                Some(response_op::Response::ResponseTxn(t)) => self.fields_txn(t),
                None => {}
            }
        }
    }
}

/// Go's `%q` of a byte string (`strconv.Quote`): printable characters as they are, the usual
/// backslash escapes, `\xNN` for bytes that are not UTF-8, `\uNNNN`/`\UNNNNNNNN` for other runes.
pub fn go_quote(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len() + 2);
    out.push('"');
    let mut rest = b;
    while !rest.is_empty() {
        let (c, len) = match decode_utf8(rest) {
            Some(v) => v,
            None => {
                out.push_str(&format!("\\x{:02x}", rest[0]));
                rest = &rest[1..];
                continue;
            }
        };
        rest = &rest[len..];
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// The first UTF-8 character of `b` and its length, if `b` starts with a valid one.
fn decode_utf8(b: &[u8]) -> Option<(char, usize)> {
    let len = match b[0] {
        0x00..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return None,
    };
    let s = std::str::from_utf8(b.get(..len)?).ok()?;
    s.chars().next().map(|c| (c, len))
}

/// Go's `unicode.IsPrint`, closely enough: graphic characters and the ASCII space.
fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    !(c.is_control() || c.is_whitespace() || ('\u{fff9}'..='\u{fffb}').contains(&c) || c == '\u{feff}' || c == '\u{ad}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_quote_matches_strconv_quote() {
        assert_eq!(go_quote(b"foo"), r#""foo""#);
        assert_eq!(go_quote(b"\x01\xffab\n"), r#""\x01\xffab\n""#);
        assert_eq!(go_quote("a\"b\\é\u{7f}".as_bytes()), r#""a\"b\\é\x7f""#);
        assert_eq!(go_quote("\u{a0}".as_bytes()), r#""\u00a0""#);
    }
}
