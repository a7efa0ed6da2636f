//! Request validation done at the edge, before anything is proposed: the same checks, in the same
//! order, as etcd's `v3rpc/key.go`, so the same bad request gets the same error.

use std::collections::HashSet;

use crate::EtcdError;
use crate::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, range_request, request_op,
};

/// Range: non-empty key, known sort order and sort target.
pub fn check_range(r: &RangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if range_request::SortOrder::try_from(r.sort_order).is_err()
        || range_request::SortTarget::try_from(r.sort_target).is_err()
    {
        return Err(EtcdError::InvalidSortOption);
    }
    Ok(())
}

/// Put: non-empty key; ignore_value excludes a value and ignore_lease excludes a lease.
pub fn check_put(r: &PutRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

/// DeleteRange: non-empty key.
pub fn check_delete(r: &DeleteRangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

/// Txn: at most `max_txn_ops` compares and ops per branch (nested txns get what is left), non-empty
/// compare keys, valid ops, then no overlapping writes in either branch.
pub fn check_txn(r: &TxnRequest, max_txn_ops: usize) -> Result<(), EtcdError> {
    check_txn_ops(r, max_txn_ops as i64)?;
    // Overlap checks come after the op checks so a huge request fails cheaply first.
    check_intervals(&r.success)?;
    check_intervals(&r.failure)?;
    Ok(())
}

fn check_txn_ops(r: &TxnRequest, max_txn_ops: i64) -> Result<(), EtcdError> {
    let opc = r.compare.len().max(r.success.len()).max(r.failure.len()) as i64;
    if opc > max_txn_ops {
        return Err(EtcdError::TooManyOps);
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(EtcdError::EmptyKey);
    }
    for op in r.success.iter().chain(r.failure.iter()) {
        check_request_op(op, max_txn_ops - opc)?;
    }
    Ok(())
}

fn check_request_op(op: &RequestOp, max_txn_ops: i64) -> Result<(), EtcdError> {
    match &op.request {
        Some(request_op::Request::RequestRange(r)) => check_range(r),
        Some(request_op::Request::RequestPut(r)) => check_put(r),
        Some(request_op::Request::RequestDeleteRange(r)) => check_delete(r),
        Some(request_op::Request::RequestTxn(r)) => check_txn_ops(r, max_txn_ops),
        None => Err(EtcdError::KeyNotFound),
    }
}

/// A delete's key span: a point, or `[key, end)` compared bytewise (etcd's affine string interval;
/// a `"\0"` end is taken literally, as etcd does).
#[derive(Clone)]
struct Span {
    key: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Span {
    fn contains(&self, k: &[u8]) -> bool {
        match &self.end {
            None => self.key == k,
            Some(end) => self.key.as_slice() <= k && k < end.as_slice(),
        }
    }
}

/// Puts and deletes of one branch, for the overlap check of the enclosing level.
type Writes = (HashSet<Vec<u8>>, Vec<Span>);

/// etcd's `checkIntervals`: a put may not overlap another put or a delete in the same branch,
/// including through nested txns; puts in the then and else branches of one nested txn may repeat
/// (they are mutually exclusive). Deletes may overlap deletes.
fn check_intervals(reqs: &[RequestOp]) -> Result<Writes, EtcdError> {
    let mut dels: Vec<Span> = reqs
        .iter()
        .filter_map(|op| match &op.request {
            Some(request_op::Request::RequestDeleteRange(d)) => {
                Some(Span { key: d.key.to_vec(), end: (!d.range_end.is_empty()).then(|| d.range_end.to_vec()) })
            }
            _ => None,
        })
        .collect();
    let hits = |dels: &[Span], k: &[u8]| dels.iter().any(|s| s.contains(k));

    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    for op in reqs {
        let Some(request_op::Request::RequestTxn(t)) = &op.request else { continue };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || hits(&dels, k) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        for k in &puts_else {
            if puts.contains(k) && !puts_then.contains(k) {
                return Err(EtcdError::DuplicateKey);
            }
            if hits(&dels, k) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in reqs {
        let Some(request_op::Request::RequestPut(p)) = &op.request else { continue };
        let k = p.key.to_vec();
        if puts.contains(&k) || hits(&dels, &k) {
            return Err(EtcdError::DuplicateKey);
        }
        puts.insert(k);
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etcdserverpb::Compare;

    fn put(k: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: k.as_bytes().to_vec().into(),
                ..Default::default()
            })),
        }
    }
    fn del(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                key: k.as_bytes().to_vec().into(),
                range_end: end.as_bytes().to_vec().into(),
                ..Default::default()
            })),
        }
    }
    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
        TxnRequest { compare: vec![], success, failure }
    }
    fn nested(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp { request: Some(request_op::Request::RequestTxn(txn(success, failure))) }
    }

    #[test]
    fn txn_validation_table() {
        let cases: Vec<(&str, TxnRequest, Result<(), EtcdError>)> = vec![
            ("distinct puts", txn(vec![put("a"), put("b")], vec![]), Ok(())),
            ("same key twice", txn(vec![put("a"), put("a")], vec![]), Err(EtcdError::DuplicateKey)),
            ("put inside deleted range", txn(vec![put("b"), del("a", "c")], vec![]), Err(EtcdError::DuplicateKey)),
            ("put at range end is outside", txn(vec![put("c"), del("a", "c")], vec![]), Ok(())),
            ("deletes may overlap", txn(vec![del("a", "c"), del("b", "d")], vec![]), Ok(())),
            ("same key in success and failure", txn(vec![put("a")], vec![put("a")]), Ok(())),
            ("nested then/else may repeat", txn(vec![nested(vec![put("a")], vec![put("a")])], vec![]), Ok(())),
            (
                "nested put overlaps outer put",
                txn(vec![put("a"), nested(vec![put("a")], vec![])], vec![]),
                Err(EtcdError::DuplicateKey),
            ),
            (
                "nested delete overlaps outer put",
                txn(vec![put("b"), nested(vec![del("a", "z")], vec![])], vec![]),
                Err(EtcdError::DuplicateKey),
            ),
            ("empty op", txn(vec![RequestOp { request: None }], vec![]), Err(EtcdError::KeyNotFound)),
            ("empty put key", txn(vec![put("")], vec![]), Err(EtcdError::EmptyKey)),
            (
                "too many ops",
                txn((0..129).map(|i| put(&format!("k{i}"))).collect(), vec![]),
                Err(EtcdError::TooManyOps),
            ),
            ("max ops", txn((0..128).map(|i| put(&format!("k{i}"))).collect(), vec![]), Ok(())),
        ];
        for (name, req, want) in cases {
            assert_eq!(check_txn(&req, 128), want, "{name}");
        }
    }

    #[test]
    fn empty_compare_key_is_rejected() {
        let req = TxnRequest { compare: vec![Compare::default()], success: vec![], failure: vec![] };
        assert_eq!(check_txn(&req, 128), Err(EtcdError::EmptyKey));
    }

    #[test]
    fn nested_txn_budget_is_what_is_left() {
        // Outer uses 100 ops, so a nested txn may use at most 28.
        let inner: Vec<_> = (0..29).map(|i| put(&format!("n{i}"))).collect();
        let mut outer: Vec<_> = (0..99).map(|i| put(&format!("o{i}"))).collect();
        outer.push(nested(inner, vec![]));
        assert_eq!(check_txn(&txn(outer, vec![]), 128), Err(EtcdError::TooManyOps));
    }

    #[test]
    fn put_and_range_checks() {
        let p = PutRequest { key: "k".into(), value: "v".into(), ignore_value: true, ..Default::default() };
        assert_eq!(check_put(&p), Err(EtcdError::ValueProvided));
        let p = PutRequest { key: "k".into(), lease: 5, ignore_lease: true, ..Default::default() };
        assert_eq!(check_put(&p), Err(EtcdError::LeaseProvided));
        let r = RangeRequest { key: "k".into(), sort_order: 7, ..Default::default() };
        assert_eq!(check_range(&r), Err(EtcdError::InvalidSortOption));
        assert_eq!(check_range(&RangeRequest::default()), Err(EtcdError::EmptyKey));
    }
}
