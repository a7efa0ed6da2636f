//! get, put, del and compaction: etcdctl's argument rules, checked before anything is sent, then one
//! request and its printout.

use std::io::Read;

use bytes::Bytes;
use oxcd_api::etcdserverpb::{CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest, range_request};

use crate::cli::{DelArgs, GetArgs, Global, PutArgs};
use crate::client;
use crate::error::{CtlError, EXIT_BAD_FEATURE, EXIT_ERROR, Result};
use crate::printer::{Format, Printer};

/// Go's `strconv.ParseInt(s, base, 64)`, with its error text.
pub fn parse_int(s: &str, base: u32) -> std::result::Result<i64, String> {
    let syntax = || format!("strconv.ParseInt: parsing {}: invalid syntax", crate::gojson::quote(s));
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(base)) {
        return Err(syntax());
    }
    let text = if neg { format!("-{digits}") } else { digits.to_string() };
    i64::from_str_radix(&text, base)
        .map_err(|_| format!("strconv.ParseInt: parsing {}: value out of range", crate::gojson::quote(s)))
}

/// Go's `strconv.ParseUint(s, base, 64)`, with its error text.
pub fn parse_uint(s: &str, base: u32) -> std::result::Result<u64, String> {
    if s.is_empty() || !s.chars().all(|c| c.is_digit(base)) {
        return Err(format!("strconv.ParseUint: parsing {}: invalid syntax", crate::gojson::quote(s)));
    }
    u64::from_str_radix(s, base)
        .map_err(|_| format!("strconv.ParseUint: parsing {}: value out of range", crate::gojson::quote(s)))
}

/// The end of the range covering every key with prefix `key` (clientv3's `GetPrefixRangeEnd`).
pub fn prefix_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Key and range end for `--prefix` / `--from-key` / an explicit end, as etcdctl derives them.
fn key_range(key: &str, end: Option<&String>, prefix: bool, from_key: bool) -> (Bytes, Bytes) {
    let mut key = key.as_bytes().to_vec();
    let mut range_end = end.map(|e| e.as_bytes().to_vec()).unwrap_or_default();
    if prefix {
        if key.is_empty() {
            key = vec![0];
            range_end = vec![0];
        } else {
            range_end = prefix_end(&key);
        }
    }
    if from_key {
        if key.is_empty() {
            key = vec![0];
        }
        range_end = vec![0];
    }
    (Bytes::from(key), Bytes::from(range_end))
}

const RANGE_ARGS_CONFLICT: &str = "`--prefix` and `--from-key` cannot be set at the same time, choose one";
const TOO_MANY_WITH_PREFIX: &str =
    "too many arguments, only accept one argument when `--prefix` or `--from-key` is set";

/// etcdctl's `getGetOp`: the request a `get` command line asks for.
pub fn get_request(a: &GetArgs) -> Result<RangeRequest> {
    if a.args.is_empty() {
        return Err(CtlError::bad_args("get command needs one argument as key and an optional argument as range_end"));
    }
    if a.prefix && a.from_key {
        return Err(CtlError::bad_args(RANGE_ARGS_CONFLICT));
    }
    let serializable = match a.consistency.as_str() {
        "s" => true,
        "l" => false,
        other => {
            return Err(CtlError::new(
                EXIT_BAD_FEATURE,
                format!("unknown consistency flag {}", crate::gojson::quote(other)),
            ));
        }
    };
    if a.args.len() > 1 && (a.prefix || a.from_key) {
        return Err(CtlError::bad_args(TOO_MANY_WITH_PREFIX));
    }
    let sort_order = match a.order.to_uppercase().as_str() {
        "ASCEND" => range_request::SortOrder::Ascend,
        "DESCEND" => range_request::SortOrder::Descend,
        "" => range_request::SortOrder::None,
        _ => return Err(CtlError::new(EXIT_BAD_FEATURE, format!("bad sort order {}", a.order))),
    };
    let sort_target = match a.sort_by.to_uppercase().as_str() {
        "CREATE" => range_request::SortTarget::Create,
        "KEY" | "" => range_request::SortTarget::Key,
        "MODIFY" => range_request::SortTarget::Mod,
        "VALUE" => range_request::SortTarget::Value,
        "VERSION" => range_request::SortTarget::Version,
        _ => return Err(CtlError::new(EXIT_BAD_FEATURE, format!("bad sort target {}", a.sort_by))),
    };
    // clientv3's WithSort: ascending by key is the server's natural order, sent as no sort.
    let sort_order = if sort_target == range_request::SortTarget::Key && sort_order == range_request::SortOrder::Ascend
    {
        range_request::SortOrder::None
    } else {
        sort_order
    };
    let (key, range_end) = key_range(&a.args[0], a.args.get(1), a.prefix, a.from_key);
    Ok(RangeRequest {
        key,
        range_end,
        limit: a.limit,
        revision: a.rev.max(0),
        sort_order: sort_order as i32,
        sort_target: sort_target as i32,
        serializable,
        keys_only: a.keys_only,
        count_only: a.count_only,
        ..Default::default()
    })
}

/// etcdctl's `getPutOp`. `stdin` supplies the value when none is given.
pub fn put_request(a: &PutArgs, stdin: &mut dyn Read) -> Result<PutRequest> {
    const NEEDS: &str = "put command needs 1 argument and input from stdin or 2 arguments";
    let Some(key) = a.args.first() else { return Err(CtlError::bad_args(NEEDS)) };
    if a.ignore_value && a.args.len() > 1 {
        return Err(CtlError::bad_args("put command needs only 1 argument when 'ignore-value' is set"));
    }
    let value = if a.ignore_value {
        Vec::new()
    } else if let Some(v) = a.args.get(1) {
        v.as_bytes().to_vec()
    } else {
        let mut v = Vec::new();
        if stdin.read_to_end(&mut v).is_err() || v.is_empty() {
            return Err(CtlError::bad_args(NEEDS));
        }
        v
    };
    let lease =
        parse_int(&a.lease, 16).map_err(|e| CtlError::bad_args(format!("bad lease ID ({e}), expecting ID in Hex")))?;
    Ok(PutRequest {
        key: Bytes::from(key.clone()),
        value: Bytes::from(value),
        lease,
        prev_kv: a.prev_kv,
        ignore_value: a.ignore_value,
        ignore_lease: a.ignore_lease,
    })
}

/// etcdctl's `getDelOp`.
pub fn del_request(a: &DelArgs) -> Result<DeleteRangeRequest> {
    if a.args.is_empty() || a.args.len() > 2 {
        return Err(CtlError::bad_args("del command needs one argument as key and an optional argument as range_end"));
    }
    if a.prefix && a.from_key {
        return Err(CtlError::bad_args(RANGE_ARGS_CONFLICT));
    }
    if a.args.len() > 1 && (a.prefix || a.from_key) {
        return Err(CtlError::bad_args(TOO_MANY_WITH_PREFIX));
    }
    let (key, range_end) = key_range(&a.args[0], a.args.get(1), a.prefix, a.from_key);
    Ok(DeleteRangeRequest { key, range_end, prev_kv: a.prev_kv })
}

pub async fn get(g: &Global, p: &mut Printer, a: GetArgs) -> Result<()> {
    let req = get_request(&a)?;
    let conn = client::connect(g).await?;
    let resp = conn.call(conn.kv().range(req)).await?;
    if a.print_value_only && p.format != Format::Simple {
        return Err(CtlError::bad_args("print-value-only is only for `--write-out=simple`"));
    }
    p.get(&resp, a.print_value_only)
}

pub async fn put(g: &Global, p: &mut Printer, a: PutArgs) -> Result<()> {
    let req = put_request(&a, &mut std::io::stdin())?;
    let conn = client::connect(g).await?;
    let resp = conn.call(conn.kv().put(req)).await?;
    p.put(&resp)
}

pub async fn del(g: &Global, p: &mut Printer, a: DelArgs) -> Result<()> {
    let req = del_request(&a)?;
    let conn = client::connect(g).await?;
    let resp = conn.call(conn.kv().delete_range(req)).await?;
    p.del(&resp)
}

pub async fn compaction(g: &Global, p: &mut Printer, physical: bool, args: &[String]) -> Result<()> {
    if args.len() != 1 {
        return Err(CtlError::bad_args("compaction command needs 1 argument"));
    }
    let revision = parse_int(&args[0], 10).map_err(|e| CtlError::new(EXIT_ERROR, e))?;
    let conn = client::connect(g).await?;
    conn.call(conn.kv().compact(CompactionRequest { revision, physical })).await?;
    crate::printer::outln!(p, "compacted revision {revision}");
    Ok(())
}
