//! Lease requests as the applier carries them out, and the lease records of the backend's `lease`
//! bucket (id, 8 bytes big-endian → `oxcdpb.Lease`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use oxcd_api::EtcdError;
use oxcd_api::etcdserverpb::{LeaseGrantRequest, LeaseGrantResponse, ResponseHeader};
use oxcd_api::oxcdpb::{Lease, LeaseCheckpointRequest};
use oxcd_backend::{Backend, BackendError, BucketRead, LEASE, WriteTxn};
use oxcd_lease::{GrantError, LeaseId, Lessor};
use oxcd_mvcc::Store;
use prost::Message;

use super::fatal;
use super::request::Result;
use crate::wait::Response;

fn save(wtx: &WriteTxn<'_>, id: LeaseId, ttl_secs: i64, remaining: Duration) -> std::result::Result<(), BackendError> {
    let rec = Lease { id: id.0, ttl: ttl_secs, remaining_ms: remaining.as_millis() as i64 };
    wtx.bucket(LEASE)?.put(&id.0.to_be_bytes(), &rec.encode_to_vec())
}

/// Removes a lease record.
pub(super) fn delete(wtx: &WriteTxn<'_>, id: LeaseId) -> std::result::Result<(), BackendError> {
    wtx.bucket(LEASE)?.delete(&id.0.to_be_bytes()).map(|_| ())
}

/// Restores every lease of a backend into `lessor`; remaining TTLs count from `now`.
pub fn load_leases(backend: &Backend, lessor: &Lessor, now: Instant) -> std::result::Result<usize, BackendError> {
    let rtx = backend.read()?;
    let mut n = 0;
    rtx.bucket(LEASE)?.visit(&[], None, &mut |_, v| {
        if let Ok(l) = Lease::decode(v) {
            lessor.restore(LeaseId(l.id), l.ttl, Duration::from_millis(l.remaining_ms.max(0) as u64), now);
            n += 1;
        }
        true
    })?;
    Ok(n)
}

/// LeaseGrant: the id is chosen before proposing (by the member that received the request).
pub(super) fn grant(
    lessor: &Lessor,
    wtx: &WriteTxn<'_>,
    store: &Arc<Store>,
    g: &LeaseGrantRequest,
    now: Instant,
) -> Result<Response> {
    let id = LeaseId(g.id);
    let ttl = lessor.grant(id, g.ttl, now).map_err(|e| match e {
        GrantError::Exists => EtcdError::LeaseExist,
        GrantError::TtlTooLarge => EtcdError::LeaseTtlTooLarge,
    })?;
    save(wtx, id, ttl, Duration::from_secs(ttl as u64)).map_err(fatal)?;
    Ok(Response::LeaseGrant(LeaseGrantResponse {
        header: Some(ResponseHeader { revision: store.write_rev(), ..Default::default() }),
        id: g.id,
        ttl,
        error: String::new(),
    }))
}

/// LeaseCheckpoint: what renewed leases had left when the leader proposed it.
pub(super) fn checkpoint(lessor: &Lessor, wtx: &WriteTxn<'_>, c: &LeaseCheckpointRequest, now: Instant) -> Result<()> {
    for cp in &c.checkpoints {
        let id = LeaseId(cp.id);
        let Some(ttl) = lessor.ttl_secs(id) else { continue };
        let remaining = Duration::from_millis(cp.remaining_ms.max(0) as u64);
        lessor.checkpoint(id, remaining, now);
        save(wtx, id, ttl, remaining).map_err(fatal)?;
    }
    Ok(())
}
