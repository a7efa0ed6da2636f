//! Locks and elections, served in the member with etcd's `concurrency` package semantics, over the
//! member's own KV operations and watchable store (no loopback client).
//!
//! A lock or election named `n` is the key prefix `n/`; a contender's key is `n/<lease id in hex>`,
//! attached to its lease. The holder (leader) is the key with the smallest create revision; a
//! contender waits until every key of the prefix with a smaller create revision is deleted.
//!
//! The fix for etcd #11456 (Jepsen, etcd 3.4.3): before a waiter is told it holds the lock, the
//! member checks that its key still exists **and** that its lease is still alive — on the leader,
//! by its deadline, not only by whether the revocation was applied yet. A lock is never granted to
//! a session whose lease has expired.

use std::time::Instant;

use bytes::Bytes;
use oxcd_api::EtcdError;
use oxcd_api::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, ResponseHeader, TxnRequest, TxnResponse, compare,
    range_request, request_op, response_op,
};
use oxcd_api::mvccpb::{KeyValue, event::EventType};
use oxcd_lease::LeaseId;
use oxcd_mvcc::watchable::WatchSpec;

use crate::error::ServeError;
use crate::server::EtcdServer;
use oxcd_auth::AuthInfo;

/// The end of the range of keys with prefix `p`.
fn prefix_end(p: &[u8]) -> Bytes {
    let mut end = p.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Bytes::from(end);
        }
    }
    Bytes::from_static(&[0])
}

fn range_op(r: RangeRequest) -> RequestOp {
    RequestOp { request: Some(request_op::Request::RequestRange(r)) }
}

/// The first (smallest create revision) or last key of a prefix, below `max_create` if not 0.
fn by_create(prefix: &[u8], order: range_request::SortOrder, max_create: i64) -> RangeRequest {
    RangeRequest {
        key: Bytes::copy_from_slice(prefix),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: order as i32,
        sort_target: range_request::SortTarget::Create as i32,
        max_create_revision: max_create,
        ..Default::default()
    }
}

fn create_rev_is(key: &[u8], rev: i64) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Create as i32,
        key: Bytes::copy_from_slice(key),
        target_union: Some(compare::TargetUnion::CreateRevision(rev)),
        range_end: Bytes::new(),
    }
}

fn put_op(key: &[u8], value: Bytes, lease: i64) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: Bytes::copy_from_slice(key),
            value,
            lease,
            ..Default::default()
        })),
    }
}

/// The kvs of the `i`th response of a txn, if it is a range.
fn range_kvs(resp: &TxnResponse, i: usize) -> &[KeyValue] {
    match resp.responses.get(i).and_then(|r| r.response.as_ref()) {
        Some(response_op::Response::ResponseRange(r)) => &r.kvs,
        _ => &[],
    }
}

impl EtcdServer {
    /// Waits until `key` is deleted, watching from revision `rev`.
    async fn wait_delete(&self, key: &[u8], rev: i64) -> Result<(), ServeError> {
        let mut ws = self.watchable.open_stream();
        ws.create(WatchSpec { key: Bytes::copy_from_slice(key), start_revision: rev, ..Default::default() });
        loop {
            for r in ws.poll() {
                if r.is_canceled() {
                    return Err(EtcdError::Compacted.into());
                }
                if r.events().iter().any(|e| e.r#type == EventType::Delete as i32) {
                    return Ok(());
                }
            }
            tokio::select! {
                _ = ws.ready() => {}
                _ = self.stopped() => return Err(EtcdError::Stopped.into()),
            }
        }
    }

    /// Waits until every key of `prefix` created at or below `max_create` is deleted (etcd's
    /// `waitDeletes`).
    async fn wait_deletes(&self, who: &AuthInfo, prefix: &[u8], max_create: i64) -> Result<ResponseHeader, ServeError> {
        loop {
            let r = self.range(who, by_create(prefix, range_request::SortOrder::Descend, max_create)).await?;
            let Some(last) = r.kvs.first() else { return Ok(r.header.unwrap_or_default()) };
            let rev = r.header.as_ref().map(|h| h.revision).unwrap_or(0);
            self.wait_delete(&last.key.clone(), rev).await?;
        }
    }

    /// Whether a lease is alive: applied on this member, and not past its deadline on the leader.
    fn lease_alive(&self, id: i64) -> bool {
        let lessor = self.lessor();
        if !lessor.lookup(LeaseId(id)) {
            return false;
        }
        if self.raft.leader() == self.member_id().0 {
            lessor.promote(Instant::now());
        }
        lessor.is_live(LeaseId(id), Instant::now())
    }

    /// Lock: returns the header and the key that holds the lock.
    pub async fn lock(&self, who: &AuthInfo, name: &[u8], lease: i64) -> Result<(ResponseHeader, Bytes), ServeError> {
        let mut prefix = name.to_vec();
        prefix.push(b'/');
        let my_key = Bytes::from([prefix.as_slice(), format!("{lease:x}").as_bytes()].concat());
        // Join the queue (or find our key from an earlier call) and learn the holder in one txn.
        let owner = range_op(by_create(&prefix, range_request::SortOrder::Ascend, 0));
        let txn = TxnRequest {
            compare: vec![create_rev_is(&my_key, 0)],
            success: vec![put_op(&my_key, Bytes::new(), lease), owner.clone()],
            failure: vec![range_op(RangeRequest { key: my_key.clone(), ..Default::default() }), owner],
        };
        let resp = self.txn(who, txn).await?;
        let header = resp.header.unwrap_or_default();
        let my_rev = if resp.succeeded {
            header.revision
        } else {
            range_kvs(&resp, 0).first().map(|kv| kv.create_revision).unwrap_or(header.revision)
        };
        if range_kvs(&resp, 1).first().is_none_or(|kv| kv.create_revision == my_rev) {
            return Ok((header, my_key));
        }
        // Wait for every earlier waiter; if this call is dropped (client gone) or fails, leave.
        let guard = DeleteOnDrop { server: self, key: Some(my_key.clone()) };
        self.wait_deletes(who, &prefix, my_rev - 1).await?;
        // etcd #11456: the key must still exist and its lease must still be alive.
        let g = self.range(who, RangeRequest { key: my_key.clone(), ..Default::default() }).await?;
        if g.kvs.is_empty() || !self.lease_alive(lease) {
            return Err(EtcdError::LockSessionExpired.into());
        }
        guard.disarm();
        Ok((g.header.unwrap_or_default(), my_key))
    }

    /// Unlock: deletes the lock key.
    pub async fn unlock(&self, who: &AuthInfo, key: Bytes) -> Result<ResponseHeader, ServeError> {
        let r = self.delete_range(who, DeleteRangeRequest { key, ..Default::default() }).await?;
        Ok(r.header.unwrap_or_default())
    }

    /// Campaign: waits until elected; returns the header, the leader key and its create revision.
    pub async fn campaign(
        &self,
        who: &AuthInfo,
        name: &[u8],
        lease: i64,
        value: Bytes,
    ) -> Result<(ResponseHeader, Bytes, i64), ServeError> {
        let mut prefix = name.to_vec();
        prefix.push(b'/');
        let key = Bytes::from([prefix.as_slice(), format!("{lease:x}").as_bytes()].concat());
        let txn = TxnRequest {
            compare: vec![create_rev_is(&key, 0)],
            success: vec![put_op(&key, value.clone(), lease)],
            failure: vec![range_op(RangeRequest { key: key.clone(), ..Default::default() })],
        };
        let resp = self.txn(who, txn).await?;
        let header = resp.header.unwrap_or_default();
        let mut rev = header.revision;
        if !resp.succeeded {
            let kv = range_kvs(&resp, 0).first().cloned().unwrap_or_default();
            rev = kv.create_revision;
            if kv.value != value {
                // Already campaigning with another value: proclaim the new one.
                if let Err(e) = self.proclaim(who, &key, rev, lease, value).await {
                    let _ = self.resign(who, &key, rev).await;
                    return Err(e);
                }
            }
        }
        let guard = DeleteOnDrop { server: self, key: Some(key.clone()) };
        self.wait_deletes(who, &prefix, rev - 1).await?;
        guard.disarm();
        Ok((header, key, rev))
    }

    /// Proclaim: updates the leader's value while it is still the leader.
    pub async fn proclaim(
        &self,
        who: &AuthInfo,
        key: &[u8],
        rev: i64,
        lease: i64,
        value: Bytes,
    ) -> Result<ResponseHeader, ServeError> {
        let txn = TxnRequest {
            compare: vec![create_rev_is(key, rev)],
            success: vec![put_op(key, value, lease)],
            failure: vec![],
        };
        let resp = self.txn(who, txn).await?;
        if !resp.succeeded {
            return Err(EtcdError::ElectionNotLeader.into());
        }
        Ok(resp.header.unwrap_or_default())
    }

    /// Resign: gives up leadership (deletes the key if it is still ours).
    pub async fn resign(&self, who: &AuthInfo, key: &[u8], rev: i64) -> Result<ResponseHeader, ServeError> {
        let del = RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                key: Bytes::copy_from_slice(key),
                ..Default::default()
            })),
        };
        let resp = self
            .txn(who, TxnRequest { compare: vec![create_rev_is(key, rev)], success: vec![del], failure: vec![] })
            .await?;
        Ok(resp.header.unwrap_or_default())
    }

    /// Leader: the current leader's key-value.
    pub async fn election_leader(&self, who: &AuthInfo, name: &[u8]) -> Result<(ResponseHeader, KeyValue), ServeError> {
        let mut prefix = name.to_vec();
        prefix.push(b'/');
        let r = self.range(who, by_create(&prefix, range_request::SortOrder::Ascend, 0)).await?;
        let kv = r.kvs.into_iter().next().ok_or(EtcdError::ElectionNoLeader)?;
        Ok((r.header.unwrap_or_default(), kv))
    }

    /// Observe: sends every leader value in order (etcd's `observe`), until `send` fails.
    pub async fn observe<F, Fut>(&self, who: &AuthInfo, name: &[u8], mut send: F) -> Result<(), ServeError>
    where
        F: FnMut(ResponseHeader, KeyValue) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let mut prefix = name.to_vec();
        prefix.push(b'/');
        loop {
            let r = self.range(who, by_create(&prefix, range_request::SortOrder::Ascend, 0)).await?;
            let mut header = r.header.unwrap_or_default();
            let kv = match r.kvs.into_iter().next() {
                Some(kv) => kv,
                None => {
                    // No leader yet: wait for the first put on the prefix.
                    let kv = self.next_put(&prefix, header.revision).await?;
                    header.revision = kv.mod_revision;
                    kv
                }
            };
            if !send(header, kv.clone()).await {
                return Ok(());
            }
            // Follow this leader's key until it is deleted, sending each new value.
            let mut ws = self.watchable.open_stream();
            ws.create(WatchSpec { key: kv.key.clone(), start_revision: header.revision + 1, ..Default::default() });
            'leader: loop {
                for r in ws.poll() {
                    if r.is_canceled() {
                        return Err(EtcdError::Compacted.into());
                    }
                    let revision = r.revision;
                    for ev in r.into_events() {
                        if ev.r#type == EventType::Delete as i32 {
                            break 'leader;
                        }
                        let h = ResponseHeader { revision, ..Default::default() };
                        if !send(h, ev.kv.unwrap_or_default()).await {
                            return Ok(());
                        }
                    }
                }
                tokio::select! {
                    _ = ws.ready() => {}
                    _ = self.stopped() => return Err(EtcdError::Stopped.into()),
                }
            }
        }
    }

    /// The first PUT on `prefix` from revision `rev` on.
    async fn next_put(&self, prefix: &[u8], rev: i64) -> Result<KeyValue, ServeError> {
        let mut ws = self.watchable.open_stream();
        ws.create(WatchSpec {
            key: Bytes::copy_from_slice(prefix),
            range_end: prefix_end(prefix),
            start_revision: rev,
            ..Default::default()
        });
        loop {
            for r in ws.poll() {
                if r.is_canceled() {
                    return Err(EtcdError::Compacted.into());
                }
                if let Some(ev) = r.into_events().into_iter().find(|e| e.r#type == EventType::Put as i32) {
                    return Ok(ev.kv.unwrap_or_default());
                }
            }
            tokio::select! {
                _ = ws.ready() => {}
                _ = self.stopped() => return Err(EtcdError::Stopped.into()),
            }
        }
    }
}

/// Deletes a waiter's key if the wait ends without success (error, or the caller went away), as
/// etcd's `Mutex.Lock` and `Election.Campaign` clean up on a canceled context.
struct DeleteOnDrop<'a> {
    server: &'a EtcdServer,
    key: Option<Bytes>,
}

impl DeleteOnDrop<'_> {
    fn disarm(mut self) {
        self.key = None;
    }
}

impl Drop for DeleteOnDrop<'_> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        let proposal = oxcd_api::oxcdpb::internal_raft_request::Request::DeleteRange(DeleteRangeRequest {
            key,
            ..Default::default()
        });
        // The future may be gone; the member lives on: propose from a task of its own.
        let server = self.server.handle();
        tokio::spawn(async move {
            let _ = server.propose(proposal).await;
        });
    }
}
