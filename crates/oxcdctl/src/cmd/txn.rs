//! `txn`: etcdctl's line grammar, read from standard input. Compares, a blank line, success ops, a
//! blank line, failure ops, a blank line; each op is a put/get/del command line with its flags.
//!
//! ```text
//! mod("key1") > "0"
//! value("key2") = "v"
//!
//! put key1 "new value"
//! get --prefix key
//!
//! del key2
//!
//! ```

use std::io::BufRead;

use bytes::Bytes;
use clap::Parser;
use oxcd_api::etcdserverpb::{Compare, RequestOp, TxnRequest, compare, request_op};

use crate::cli::{DelArgs, GetArgs, Global, PutArgs};
use crate::client;
use crate::error::{CtlError, EXIT_INVALID_INPUT, Result};
use crate::printer::Printer;

fn invalid(msg: impl Into<String>) -> CtlError {
    CtlError::new(EXIT_INVALID_INPUT, msg)
}

pub async fn run(g: &Global, p: &mut Printer, interactive: bool, args: &[String]) -> Result<()> {
    if !args.is_empty() {
        return Err(CtlError::bad_args("txn command does not accept argument"));
    }
    let conn = client::connect(g).await?;
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let prompt = |p: &mut Printer, s: &str| {
        if interactive {
            crate::printer::outln!(p, "{s}");
            p.flush();
        }
    };
    prompt(p, "compares:");
    let compare = read_section(&mut input, parse_compare)?;
    prompt(p, "success requests (get, put, del):");
    let success = read_section(&mut input, parse_op)?;
    prompt(p, "failure requests (get, put, del):");
    let failure = read_section(&mut input, parse_op)?;
    let resp = conn.call(conn.kv().txn(TxnRequest { compare, success, failure })).await?;
    p.txn(&resp)
}

/// Lines up to a blank one, each parsed by `parse`. A section must end with a newline: end of
/// input is an error (`EOF`), as in etcdctl.
fn read_section<T>(input: &mut dyn BufRead, mut parse: impl FnMut(&str) -> Result<T>) -> Result<Vec<T>> {
    let mut out = Vec::new();
    loop {
        let mut line = String::new();
        let n = input.read_line(&mut line).map_err(|e| invalid(e.to_string()))?;
        if n == 0 || !line.ends_with('\n') {
            return Err(invalid("EOF"));
        }
        let line = line.trim();
        if line.is_empty() {
            return Ok(out);
        }
        out.push(parse(line)?);
    }
}

/// `target("key") op "value"`, targets `ver`/`version`, `c`/`create`, `m`/`mod`, `val`/`value`,
/// `lease`; ops `=`, `!=`, `<`, `>`.
pub fn parse_compare(line: &str) -> Result<Compare> {
    let Some((target, rest)) = line.split_once('(') else {
        return Err(invalid(format!("malformed comparison: {line}")));
    };
    let (n, key, op, val) = scan_compare(rest);
    if n != 3 {
        return Err(invalid(format!(
            "malformed comparison: {line}; got {target}({}) {op} {}",
            crate::gojson::quote(&key),
            crate::gojson::quote(&val)
        )));
    }
    use compare::{CompareTarget as T, TargetUnion as U};
    let int =
        |v: &str| crate::cmd::kv::parse_int(v, 10).map_err(|_| invalid(format!("invalid txn compare request: {line}")));
    let (t, union) = match target {
        "ver" | "version" => (T::Version, U::Version(int(&val)?)),
        "c" | "create" => (T::Create, U::CreateRevision(int(&val)?)),
        "m" | "mod" => (T::Mod, U::ModRevision(int(&val)?)),
        "val" | "value" => (T::Value, U::Value(Bytes::from(val.clone()))),
        "lease" => {
            // A lease id in hex (as etcdctl prints them) or decimal.
            let id = crate::cmd::kv::parse_int(&val, 16)
                .or_else(|_| crate::cmd::kv::parse_int(&val, 10))
                .map_err(|_| invalid(format!("invalid txn compare request: {line}")))?;
            (T::Lease, U::Lease(id))
        }
        _ => return Err(invalid(format!("malformed comparison: {line} (unknown target {target})"))),
    };
    let result = match op.as_str() {
        "=" => compare::CompareResult::Equal,
        "!=" => compare::CompareResult::NotEqual,
        ">" => compare::CompareResult::Greater,
        "<" => compare::CompareResult::Less,
        _ => return Err(CtlError::new(2, "panic: Unknown result op")),
    };
    Ok(Compare {
        result: result as i32,
        target: t as i32,
        key: Bytes::from(key),
        range_end: Bytes::new(),
        target_union: Some(union),
    })
}

/// Go's `fmt.Sscanf(s, "%q) %s %q", &key, &op, &val)`: how many of the three were read, and them.
fn scan_compare(s: &str) -> (usize, String, String, String) {
    let mut rest = s;
    let Some((key, r)) = scan_quoted(rest) else { return (0, String::new(), String::new(), String::new()) };
    rest = r;
    let Some(r) = rest.strip_prefix(')') else { return (1, key, String::new(), String::new()) };
    rest = r.trim_start_matches([' ', '\t']);
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if end == 0 {
        return (1, key, String::new(), String::new());
    }
    let op = rest[..end].to_string();
    rest = rest[end..].trim_start_matches([' ', '\t']);
    match scan_quoted(rest) {
        Some((val, _)) => (3, key, op, val),
        None => (2, key, op, String::new()),
    }
}

/// A Go quoted string (`"..."` with escapes, or a `` `raw` `` one) after optional spaces; its
/// value and what follows it.
fn scan_quoted(s: &str) -> Option<(String, &str)> {
    let s = s.trim_start_matches([' ', '\t']);
    if let Some(raw) = s.strip_prefix('`') {
        let end = raw.find('`')?;
        return Some((raw[..end].to_string(), &raw[end + 1..]));
    }
    let body = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &body[i + 1..])),
            '\\' => {
                let (_, e) = chars.next()?;
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'a' => out.push('\x07'),
                    'b' => out.push('\x08'),
                    'f' => out.push('\x0c'),
                    'v' => out.push('\x0b'),
                    '\\' | '"' | '\'' => out.push(e),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = (0..n).filter_map(|_| chars.next().map(|(_, c)| c)).collect();
                        let v = u32::from_str_radix(&hex, 16).ok()?;
                        out.push(char::from_u32(v)?);
                    }
                    _ => return None,
                }
            }
            '\n' => return None,
            c => out.push(c),
        }
    }
    None
}

/// Splits an op line as etcdctl's `argify` does: `"double quoted"` (with escapes), `'single
/// quoted'`, or runs of non-space characters.
pub fn argify(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'"' {
            // "(?:[^"\\]|\\.)*"
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            if j < b.len() {
                let tok = &s[i..=j];
                out.push(scan_quoted(tok).map(|(v, _)| v).unwrap_or_else(|| tok.to_string()));
                i = j + 1;
                continue;
            }
        } else if c == b'\'' {
            if let Some(end) = s[i + 1..].find('\'') {
                out.push(s[i + 1..i + 1 + end].to_string());
                i += end + 2;
                continue;
            }
        } else if !c.is_ascii_whitespace() {
            let end = s[i..].find(|c: char| c.is_whitespace()).map_or(s.len(), |e| i + e);
            out.push(s[i..end].to_string());
            i = end;
            continue;
        }
        i += 1;
    }
    out
}

/// One op line: a put, get or del command line.
#[derive(Parser)]
#[command(no_binary_name = true)]
enum Op {
    Put(PutArgs),
    Get(GetArgs),
    Del(DelArgs),
}

fn parse_op(line: &str) -> Result<RequestOp> {
    let args = argify(line);
    if args.len() < 2 {
        return Err(invalid(format!("invalid txn compare request: {line}")));
    }
    let op = Op::try_parse_from(&args).map_err(|_| invalid(format!("invalid txn request: {line}")))?;
    let request = match op {
        Op::Put(a) => request_op::Request::RequestPut(super::kv::put_request(&a, &mut std::io::empty())?),
        Op::Get(a) => request_op::Request::RequestRange(super::kv::get_request(&a)?),
        Op::Del(a) => request_op::Request::RequestDeleteRange(super::kv::del_request(&a)?),
    };
    Ok(RequestOp { request: Some(request) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argify_splits_like_etcdctl() {
        assert_eq!(argify(r#"put t/x "x value""#), ["put", "t/x", "x value"]);
        assert_eq!(argify("put k 'a b'"), ["put", "k", "a b"]);
        assert_eq!(argify(r#"put k "a\"b""#), ["put", "k", "a\"b"]);
        assert_eq!(argify("  get   --prefix k "), ["get", "--prefix", "k"]);
    }

    #[test]
    fn compares_parse_and_fail_as_etcdctl() {
        let c = parse_compare(r#"mod("t/a") > "0""#).unwrap();
        assert_eq!(c.target, compare::CompareTarget::Mod as i32);
        assert_eq!(c.result, compare::CompareResult::Greater as i32);
        assert_eq!(parse_compare("value t/a = 1").unwrap_err().msg, "malformed comparison: value t/a = 1");
        assert_eq!(
            parse_compare("value(t/a) = 1").unwrap_err().msg,
            r#"malformed comparison: value(t/a) = 1; got value("")  """#
        );
        assert_eq!(
            parse_compare(r#"mod("t/a") >"#).unwrap_err().msg,
            r#"malformed comparison: mod("t/a") >; got mod("t/a") > """#
        );
        assert_eq!(
            parse_compare(r#"foo("t/a") = "1""#).unwrap_err().msg,
            r#"malformed comparison: foo("t/a") = "1" (unknown target foo)"#
        );
        assert_eq!(
            parse_compare(r#"mod("t/a") > "abc""#).unwrap_err().msg,
            r#"invalid txn compare request: mod("t/a") > "abc""#
        );
    }
}
