//! What each KV request does to the store, exactly as etcd's applier does it: Range (with etcd's
//! sort, filter and limit rules), Put, DeleteRange and Txn (compares, nested txns, the checks that
//! run before any write). Shared by the applier (writes, on [`TxnWrite`]) and the read path
//! (ranges and read-only txns, on a [`ReadView`]).
//!
//! Errors that etcd reports to the client come back as `Err(Reject)` before anything is written;
//! an error from the store once writing started is a broken backend and comes back as `Err(Fatal)`.

use std::cmp::Ordering;

use bytes::Bytes;
use oxcd_api::EtcdError;
use oxcd_api::etcdserverpb::{
    Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    ResponseHeader, ResponseOp, TxnRequest, TxnResponse, compare, range_request, request_op, response_op,
};
use oxcd_api::mvccpb::KeyValue;
use oxcd_lease::{LeaseId, Lessor};
use oxcd_mvcc::{KvRead, MvccError, RangeOptions, TxnWrite};

/// Why a request did not apply.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The request is refused with this etcd error; nothing was written.
    #[error(transparent)]
    Reject(#[from] EtcdError),
    /// The store failed; the member must stop.
    #[error("store failure: {0}")]
    Fatal(MvccError),
}

impl From<MvccError> for ApplyError {
    fn from(e: MvccError) -> Self {
        match e {
            MvccError::Compacted => ApplyError::Reject(EtcdError::Compacted),
            MvccError::FutureRev => ApplyError::Reject(EtcdError::FutureRev),
            other => ApplyError::Fatal(other),
        }
    }
}

pub type Result<T> = std::result::Result<T, ApplyError>;

/// Writes the applier can make; a read view makes none (read-only txns never call these).
pub trait KvWrite: KvRead {
    fn put(&mut self, key: &[u8], value: Bytes, lease: LeaseId) -> std::result::Result<i64, MvccError>;
    fn delete_range(&mut self, key: &[u8], end: Option<&[u8]>) -> std::result::Result<i64, MvccError>;
    /// Closes a phase of the request for the store's metrics (see [`TxnWrite::end_phase`]).
    fn end_phase(&mut self) {}
}

impl KvWrite for TxnWrite<'_, '_> {
    fn end_phase(&mut self) {
        TxnWrite::end_phase(self)
    }

    fn put(&mut self, key: &[u8], value: Bytes, lease: LeaseId) -> std::result::Result<i64, MvccError> {
        TxnWrite::put(self, key, value, lease)
    }

    fn delete_range(&mut self, key: &[u8], end: Option<&[u8]>) -> std::result::Result<i64, MvccError> {
        TxnWrite::delete_range(self, key, end)
    }
}

/// etcd's range-end conventions: empty is the single key, `"\0"` is "to the end of the keyspace".
pub fn range_end(end: &[u8]) -> Option<&[u8]> {
    match end {
        [] => None,
        [0] => Some(&[]),
        e => Some(e),
    }
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

/// Range, with etcd's rules: with a sort order or a revision filter the whole range is read, then
/// filtered, sorted and cut to the limit; otherwise `limit + 1` keys are read to learn `more`.
/// `count` is the number of keys in the range before filters and limit.
pub fn range(kv: &impl KvRead, r: &RangeRequest) -> Result<RangeResponse> {
    use range_request::{SortOrder, SortTarget};
    let order = SortOrder::try_from(r.sort_order).map_err(|_| EtcdError::InvalidSortOption)?;
    let target = SortTarget::try_from(r.sort_target).map_err(|_| EtcdError::InvalidSortOption)?;
    let filtered =
        r.min_mod_revision != 0 || r.max_mod_revision != 0 || r.min_create_revision != 0 || r.max_create_revision != 0;
    let mut limit = r.limit;
    if order != SortOrder::None || filtered {
        limit = 0;
    }
    if limit > 0 {
        limit += 1;
    }
    let rr =
        kv.range(&r.key, range_end(&r.range_end), RangeOptions { limit, rev: r.revision, count_only: r.count_only })?;
    let mut kvs = rr.kvs;
    if filtered {
        kvs.retain(|kv| {
            !(r.max_mod_revision != 0 && kv.mod_revision > r.max_mod_revision
                || r.min_mod_revision != 0 && kv.mod_revision < r.min_mod_revision
                || r.max_create_revision != 0 && kv.create_revision > r.max_create_revision
                || r.min_create_revision != 0 && kv.create_revision < r.min_create_revision)
        });
    }
    // Results come key-ascending; a non-key target without an order sorts ascending.
    let order = if target != SortTarget::Key && order == SortOrder::None { SortOrder::Ascend } else { order };
    if order != SortOrder::None {
        let cmp = |a: &KeyValue, b: &KeyValue| -> Ordering {
            match target {
                SortTarget::Key => a.key.cmp(&b.key),
                SortTarget::Version => a.version.cmp(&b.version),
                SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                SortTarget::Value => a.value.cmp(&b.value),
            }
        };
        // Stable, like etcd's sort of small result sets: ties keep key order in both directions.
        match order {
            SortOrder::Descend => kvs.sort_by(|a, b| cmp(b, a)),
            _ => kvs.sort_by(cmp),
        }
    }
    let mut more = false;
    if r.limit > 0 && kvs.len() as i64 > r.limit {
        kvs.truncate(r.limit as usize);
        more = true;
    }
    if r.keys_only {
        for kv in &mut kvs {
            kv.value = Bytes::new();
        }
    }
    Ok(RangeResponse { header: header(rr.rev), kvs, more, count: rr.count })
}

/// Put as one step of a write (lease and ignore_* checks done by the caller or [`check_put`]).
fn put(kv: &mut impl KvWrite, p: &PutRequest) -> Result<PutResponse> {
    let mut value = p.value.clone();
    let mut lease = LeaseId(p.lease);
    let mut prev_kv = None;
    if p.ignore_value || p.ignore_lease || p.prev_kv {
        let rr = kv.range(&p.key, None, RangeOptions::default())?;
        let prev = rr.kvs.into_iter().next();
        if (p.ignore_value || p.ignore_lease) && prev.is_none() {
            return Err(EtcdError::KeyNotFound.into());
        }
        if let Some(prev) = prev {
            if p.ignore_value {
                value = prev.value.clone();
            }
            if p.ignore_lease {
                lease = LeaseId(prev.lease);
            }
            if p.prev_kv {
                prev_kv = Some(prev);
            }
        }
    }
    let rev = kv.put(&p.key, value, lease).map_err(ApplyError::Fatal)?;
    Ok(PutResponse { header: header(rev), prev_kv })
}

fn delete_range(kv: &mut impl KvWrite, d: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
    let end = range_end(&d.range_end);
    let prev_kvs = if d.prev_kv { kv.range(&d.key, end, RangeOptions::default())?.kvs } else { Vec::new() };
    let deleted = kv.delete_range(&d.key, end).map_err(ApplyError::Fatal)?;
    Ok(DeleteRangeResponse { header: header(kv.rev()), deleted, prev_kvs })
}

/// A top-level Put: the lease must exist; ignore_value/ignore_lease need the key.
pub fn apply_put(kv: &mut impl KvWrite, lessor: &Lessor, p: &PutRequest) -> Result<PutResponse> {
    if p.lease != 0 && !lessor.lookup(LeaseId(p.lease)) {
        return Err(EtcdError::LeaseNotFound.into());
    }
    put(kv, p)
}

/// A top-level DeleteRange.
pub fn apply_delete_range(kv: &mut impl KvWrite, d: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
    delete_range(kv, d)
}

/// A txn that writes nothing in either branch, nested txns included: what a member answers from a
/// read view, without Raft. Only [`ReadOnlyTxn::new`] makes one.
#[derive(Clone, Copy)]
pub struct ReadOnlyTxn<'a>(&'a TxnRequest);

impl<'a> ReadOnlyTxn<'a> {
    /// `t`, if it writes nothing.
    pub fn new(t: &'a TxnRequest) -> Option<ReadOnlyTxn<'a>> {
        is_txn_readonly(t).then_some(ReadOnlyTxn(t))
    }

    /// Whether every range in it is serializable (then no ReadIndex is needed).
    pub fn is_serializable(self) -> bool {
        is_txn_serializable(self.0)
    }
}

/// Whether a txn writes nothing in either branch, nested txns included.
fn is_txn_readonly(t: &TxnRequest) -> bool {
    t.success.iter().chain(t.failure.iter()).all(|op| match &op.request {
        Some(request_op::Request::RequestPut(_)) | Some(request_op::Request::RequestDeleteRange(_)) => false,
        Some(request_op::Request::RequestTxn(t)) => is_txn_readonly(t),
        _ => true,
    })
}

/// Whether every range of a txn is serializable.
fn is_txn_serializable(t: &TxnRequest) -> bool {
    t.success.iter().chain(t.failure.iter()).all(|op| match &op.request {
        Some(request_op::Request::RequestRange(r)) => r.serializable,
        Some(request_op::Request::RequestTxn(t)) => is_txn_serializable(t),
        _ => true,
    })
}

/// Txn: compares (nested ones too) are evaluated first, against the state before any write; then the
/// chosen branches are checked (puts: lease exists, ignore_* keys exist; ranges: revision valid);
/// then the ops run in order, all at one new revision.
pub fn apply_txn(kv: &mut impl KvWrite, lessor: &Lessor, t: &TxnRequest) -> Result<TxnResponse> {
    let path = compare_to_path(kv, t)?;
    check_requests(t, &path, &mut |op| check_put(kv, lessor, op))?;
    let (rev, first_rev) = (kv.rev(), kv.compact_rev());
    check_requests(t, &path, &mut |op| check_range(rev, first_rev, op))?;
    let mut resp = new_txn_resp(t, &path).0;
    if !is_txn_readonly(t) {
        // etcd reads the compares in a read transaction of their own, then writes in another.
        kv.end_phase();
    }
    run_txn(kv, t, &path, &mut resp, &mut write_op)?;
    resp.header = header(kv.rev());
    Ok(resp)
}

/// A read-only txn, on a read view: compares, range checks, ranges.
pub fn read_txn(kv: &mut impl KvRead, t: ReadOnlyTxn) -> Result<TxnResponse> {
    let t = t.0;
    let path = compare_to_path(kv, t)?;
    let (rev, first_rev) = (kv.rev(), kv.compact_rev());
    check_requests(t, &path, &mut |op| check_range(rev, first_rev, op))?;
    let mut resp = new_txn_resp(t, &path).0;
    // A ReadOnlyTxn has no put or delete to run.
    run_txn(kv, t, &path, &mut resp, &mut |_, _, _| Ok(()))?;
    resp.header = header(kv.rev());
    Ok(resp)
}

/// The branch each compare chooses, nested txns too, depth first; a store error while reading a
/// compare's keys fails the txn (never reads as "compare false").
fn compare_to_path(kv: &impl KvRead, t: &TxnRequest) -> Result<Vec<bool>> {
    let mut ok = true;
    for c in &t.compare {
        if !apply_compare(kv, c)? {
            ok = false;
            break;
        }
    }
    let mut path = vec![ok];
    let ops = if ok { &t.success } else { &t.failure };
    for op in ops {
        if let Some(request_op::Request::RequestTxn(nested)) = &op.request {
            path.extend(compare_to_path(kv, nested)?);
        }
    }
    Ok(path)
}

/// One compare over every key in its range; a missing key compares as a zero KeyValue, except for
/// VALUE compares, which fail on missing keys.
fn apply_compare(kv: &impl KvRead, c: &Compare) -> Result<bool> {
    let rr = kv.range(&c.key, range_end(&c.range_end), RangeOptions::default())?;
    if rr.kvs.is_empty() {
        if c.target == compare::CompareTarget::Value as i32 {
            return Ok(false);
        }
        return Ok(compare_kv(c, &KeyValue::default()));
    }
    Ok(rr.kvs.iter().all(|k| compare_kv(c, k)))
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    use compare::{CompareResult, CompareTarget, TargetUnion};
    let ord = match CompareTarget::try_from(c.target) {
        Ok(CompareTarget::Value) => {
            let want: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value[..].cmp(want)
        }
        Ok(CompareTarget::Create) => kv.create_revision.cmp(&union_int(c, |u| match u {
            TargetUnion::CreateRevision(v) => Some(*v),
            _ => None,
        })),
        Ok(CompareTarget::Mod) => kv.mod_revision.cmp(&union_int(c, |u| match u {
            TargetUnion::ModRevision(v) => Some(*v),
            _ => None,
        })),
        Ok(CompareTarget::Version) => kv.version.cmp(&union_int(c, |u| match u {
            TargetUnion::Version(v) => Some(*v),
            _ => None,
        })),
        Ok(CompareTarget::Lease) => kv.lease.cmp(&union_int(c, |u| match u {
            TargetUnion::Lease(v) => Some(*v),
            _ => None,
        })),
        Err(_) => Ordering::Equal,
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ord == Ordering::Equal,
        Ok(CompareResult::NotEqual) => ord != Ordering::Equal,
        Ok(CompareResult::Greater) => ord == Ordering::Greater,
        Ok(CompareResult::Less) => ord == Ordering::Less,
        Err(_) => true,
    }
}

/// The compare's integer operand when its union holds the matching field, else 0.
fn union_int(c: &Compare, pick: impl Fn(&compare::TargetUnion) -> Option<i64>) -> i64 {
    c.target_union.as_ref().and_then(pick).unwrap_or(0)
}

/// Runs `check` on every op of the branches `path` chooses, nested txns included.
fn check_requests(t: &TxnRequest, path: &[bool], check: &mut dyn FnMut(&RequestOp) -> Result<()>) -> Result<usize> {
    let ops = if path[0] { &t.success } else { &t.failure };
    let mut rest = &path[1..];
    let mut txns = 0;
    for op in ops {
        if let Some(request_op::Request::RequestTxn(nested)) = &op.request {
            let n = check_requests(nested, rest, check)?;
            txns += n + 1;
            rest = &rest[n + 1..];
            continue;
        }
        check(op)?;
    }
    Ok(txns)
}

fn check_put(kv: &impl KvRead, lessor: &Lessor, op: &RequestOp) -> Result<()> {
    let Some(request_op::Request::RequestPut(p)) = &op.request else { return Ok(()) };
    if p.ignore_value || p.ignore_lease {
        let rr = kv.range(&p.key, None, RangeOptions::default())?;
        if rr.kvs.is_empty() {
            return Err(EtcdError::KeyNotFound.into());
        }
    }
    if p.lease != 0 && !lessor.lookup(LeaseId(p.lease)) {
        return Err(EtcdError::LeaseNotFound.into());
    }
    Ok(())
}

fn check_range(rev: i64, compact_rev: i64, op: &RequestOp) -> Result<()> {
    let Some(request_op::Request::RequestRange(r)) = &op.request else { return Ok(()) };
    if r.revision == 0 {
        return Ok(());
    }
    if r.revision > rev {
        return Err(EtcdError::FutureRev.into());
    }
    if r.revision < compact_rev {
        return Err(EtcdError::Compacted.into());
    }
    Ok(())
}

/// The response skeleton of the chosen branches; nested txn responses carry an empty header.
fn new_txn_resp(t: &TxnRequest, path: &[bool]) -> (TxnResponse, usize) {
    let ops = if path[0] { &t.success } else { &t.failure };
    let mut rest = &path[1..];
    let mut txns = 0;
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let r = match &op.request {
            Some(request_op::Request::RequestRange(_)) => {
                Some(response_op::Response::ResponseRange(Default::default()))
            }
            Some(request_op::Request::RequestPut(_)) => Some(response_op::Response::ResponsePut(Default::default())),
            Some(request_op::Request::RequestDeleteRange(_)) => {
                Some(response_op::Response::ResponseDeleteRange(Default::default()))
            }
            Some(request_op::Request::RequestTxn(nested)) => {
                let (resp, n) = new_txn_resp(nested, rest);
                rest = &rest[n + 1..];
                txns += n + 1;
                Some(response_op::Response::ResponseTxn(resp))
            }
            None => None,
        };
        responses.push(ResponseOp { response: r });
    }
    (TxnResponse { header: Some(ResponseHeader::default()), succeeded: path[0], responses }, txns)
}

/// Runs a txn's write op (a put or a delete) into its response.
type WriteOp<'f, K> = dyn FnMut(&mut K, &request_op::Request, &mut response_op::Response) -> Result<()> + 'f;

/// What the applier runs for a txn's put or delete.
fn write_op<K: KvWrite>(kv: &mut K, op: &request_op::Request, out: &mut response_op::Response) -> Result<()> {
    match (op, out) {
        (request_op::Request::RequestPut(p), response_op::Response::ResponsePut(o)) => *o = put(kv, p)?,
        (request_op::Request::RequestDeleteRange(d), response_op::Response::ResponseDeleteRange(o)) => {
            *o = delete_range(kv, d)?
        }
        _ => {}
    }
    Ok(())
}

/// Runs the chosen branches in order: ranges and nested txns here, puts and deletes by `write`.
fn run_txn<K: KvRead>(
    kv: &mut K,
    t: &TxnRequest,
    path: &[bool],
    resp: &mut TxnResponse,
    write: &mut WriteOp<'_, K>,
) -> Result<usize> {
    let ops = if path[0] { &t.success } else { &t.failure };
    let mut rest = &path[1..];
    let mut txns = 0;
    for (op, out) in ops.iter().zip(resp.responses.iter_mut()) {
        match (&op.request, &mut out.response) {
            (Some(request_op::Request::RequestRange(r)), Some(response_op::Response::ResponseRange(o))) => {
                *o = range(kv, r)?;
            }
            (Some(request_op::Request::RequestTxn(nested)), Some(response_op::Response::ResponseTxn(o))) => {
                let n = run_txn(kv, nested, rest, o, write)?;
                txns += n + 1;
                rest = &rest[n + 1..];
            }
            (Some(op), Some(out)) => write(kv, op, out)?,
            _ => {}
        }
    }
    Ok(txns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(r: request_op::Request) -> RequestOp {
        RequestOp { request: Some(r) }
    }

    /// A txn is read-only only if neither branch writes, at any depth: a put in a nested txn's
    /// failure branch makes the whole txn go through Raft.
    #[test]
    fn a_read_only_txn_writes_nothing_at_any_depth() {
        let range =
            op(request_op::Request::RequestRange(RangeRequest { key: Bytes::from_static(b"k"), ..Default::default() }));
        let put =
            op(request_op::Request::RequestPut(PutRequest { key: Bytes::from_static(b"k"), ..Default::default() }));
        let reads = TxnRequest { success: vec![range.clone()], failure: vec![range.clone()], ..Default::default() };
        assert!(ReadOnlyTxn::new(&reads).is_some());
        let nested_put = TxnRequest { failure: vec![put], ..Default::default() };
        let outer =
            TxnRequest { success: vec![range, op(request_op::Request::RequestTxn(nested_put))], ..Default::default() };
        assert!(ReadOnlyTxn::new(&outer).is_none());
        let serializable = RangeRequest { key: Bytes::from_static(b"k"), serializable: true, ..Default::default() };
        let s = TxnRequest { success: vec![op(request_op::Request::RequestRange(serializable))], ..Default::default() };
        assert!(ReadOnlyTxn::new(&s).is_some_and(|t| t.is_serializable()));
        assert!(!ReadOnlyTxn::new(&reads).is_some_and(|t| t.is_serializable()));
    }
}
