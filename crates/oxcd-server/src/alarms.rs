//! Alarms and the backend quota, as etcd has them.
//!
//! An alarm is a (member, type) pair raised and cleared through Raft, so every member holds the
//! same set; it is kept in the backend's `alarm` bucket as etcd keeps it (key: the encoded
//! `AlarmMember`, empty value), so it survives restarts and travels in snapshots.
//!
//! The quota (`--quota-backend-bytes`, 2 GiB by default): a Put, a Txn that puts or a LeaseGrant
//! whose cost (etcd's: 256 bytes + key + value per put, the larger branch of a txn, 64 bytes per
//! lease) would take the backend file to the quota raises NOSPACE and is refused with "etcdserver:
//! mvcc: database space exceeded". While NOSPACE is raised the applier refuses the same requests,
//! whatever the size; deletes, compactions, revokes and reads go on, so space can be won back
//! (compact, defragment) before `alarm disarm`.

use std::collections::BTreeSet;

use oxcd_api::etcdserverpb::{AlarmMember, AlarmType, PutRequest, TxnRequest, request_op};
use oxcd_backend::{ALARM, BackendError, BucketRead, ReadTxn, WriteTxn};
use prost::Message;

/// etcd's `kvOverhead`: what a put costs beyond its key and value.
const KV_OVERHEAD: usize = 256;
/// etcd's `leaseOverhead`: what a lease grant costs.
pub const LEASE_OVERHEAD: usize = 64;

/// The quota cost of a put.
pub fn put_cost(p: &PutRequest) -> usize {
    KV_OVERHEAD + p.key.len() + p.value.len()
}

/// The quota cost of a txn: the puts of its costlier branch (nested txns cost nothing, as in etcd).
pub fn txn_cost(t: &TxnRequest) -> usize {
    let branch = |ops: &[oxcd_api::etcdserverpb::RequestOp]| -> usize {
        ops.iter()
            .map(|op| match &op.request {
                Some(request_op::Request::RequestPut(p)) => put_cost(p),
                _ => 0,
            })
            .sum()
    };
    branch(&t.success).max(branch(&t.failure))
}

/// The raised alarms of the cluster.
#[derive(Debug, Clone, Default)]
pub struct Alarms {
    /// (alarm type, member id).
    set: BTreeSet<(i32, u64)>,
}

fn member(alarm: i32, member_id: u64) -> AlarmMember {
    AlarmMember { member_id, alarm }
}

impl Alarms {
    /// Reads the `alarm` bucket.
    pub fn load(rtx: &ReadTxn) -> Result<Alarms, BackendError> {
        let mut set = BTreeSet::new();
        rtx.bucket(ALARM)?.visit(&[], None, &mut |k, _| {
            if let Ok(m) = AlarmMember::decode(k) {
                set.insert((m.alarm, m.member_id));
            }
            true
        })?;
        Ok(Alarms { set })
    }

    /// The alarms of type `alarm` (NONE: all), by type then member.
    pub fn get(&self, alarm: i32) -> Vec<AlarmMember> {
        self.set
            .iter()
            .filter(|(a, _)| alarm == AlarmType::None as i32 || *a == alarm)
            .map(|(a, m)| member(*a, *m))
            .collect()
    }

    /// Raises `alarm` for `member_id` (kept if it already was); returns it.
    pub fn activate(&mut self, wtx: &WriteTxn<'_>, member_id: u64, alarm: i32) -> Result<AlarmMember, BackendError> {
        let m = member(alarm, member_id);
        if self.set.insert((alarm, member_id)) {
            wtx.bucket(ALARM)?.put(&m.encode_to_vec(), &[])?;
        }
        Ok(m)
    }

    /// Clears `alarm` of `member_id`; returns it if it was raised.
    pub fn deactivate(
        &mut self,
        wtx: &WriteTxn<'_>,
        member_id: u64,
        alarm: i32,
    ) -> Result<Option<AlarmMember>, BackendError> {
        if !self.set.remove(&(alarm, member_id)) {
            return Ok(None);
        }
        let m = member(alarm, member_id);
        wtx.bucket(ALARM)?.delete(&m.encode_to_vec())?;
        Ok(Some(m))
    }

    /// Whether CORRUPT is raised: writes are refused (etcd's corrupt applier).
    pub fn corrupt(&self) -> bool {
        self.set.iter().any(|(a, _)| *a == AlarmType::Corrupt as i32)
    }

    /// The raised alarms: (alarm type, member id), in order.
    pub fn raised(&self) -> impl Iterator<Item = (i32, u64)> + '_ {
        self.set.iter().copied()
    }

    /// Whether writes that take space are refused.
    pub fn no_space(&self) -> bool {
        self.set.iter().any(|(a, _)| *a == AlarmType::Nospace as i32)
    }

    /// The alarms as etcd's Status lists them (`memberID:1 alarm:NOSPACE `, Go's text format).
    pub fn status_errors(&self) -> Vec<String> {
        self.set
            .iter()
            .map(|(a, m)| {
                let name = AlarmType::try_from(*a).map_or_else(|_| a.to_string(), |t| t.as_str_name().to_string());
                format!("memberID:{m} alarm:{name} ")
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxcd_api::etcdserverpb::RequestOp;
    use oxcd_backend::Backend;

    #[test]
    fn costs_are_etcds() {
        let put = |k: &str, v: &str| PutRequest {
            key: k.as_bytes().to_vec().into(),
            value: v.as_bytes().to_vec().into(),
            ..Default::default()
        };
        assert_eq!(put_cost(&put("key", "value")), 256 + 3 + 5);
        let op = |p: PutRequest| RequestOp { request: Some(request_op::Request::RequestPut(p)) };
        let t = TxnRequest {
            success: vec![op(put("a", "1")), op(put("b", "22"))],
            failure: vec![op(put("c", &"x".repeat(300)))],
            ..Default::default()
        };
        assert_eq!(txn_cost(&t), 256 + 1 + 300);
        assert_eq!(txn_cost(&TxnRequest::default()), 0);
    }

    #[test]
    fn alarms_persist_and_print_as_etcd() {
        let dir = tempfile::tempdir().unwrap();
        let b = Backend::open(dir.path().join("db"), Default::default()).unwrap();
        let mut a = Alarms::default();
        let wtx = b.write().unwrap();
        let nospace = AlarmType::Nospace as i32;
        assert_eq!(a.activate(&wtx, 7, nospace).unwrap(), member(nospace, 7));
        assert_eq!(a.activate(&wtx, 7, nospace).unwrap(), member(nospace, 7));
        a.activate(&wtx, 3, AlarmType::Corrupt as i32).unwrap();
        wtx.commit().unwrap();
        assert!(a.no_space());
        assert_eq!(a.status_errors(), ["memberID:7 alarm:NOSPACE ", "memberID:3 alarm:CORRUPT "]);
        let loaded = Alarms::load(&b.read().unwrap()).unwrap();
        assert_eq!(loaded.get(AlarmType::None as i32), a.get(AlarmType::None as i32));
        assert_eq!(loaded.get(nospace), [member(nospace, 7)]);
        let wtx = b.write().unwrap();
        assert_eq!(a.deactivate(&wtx, 7, nospace).unwrap(), Some(member(nospace, 7)));
        assert_eq!(a.deactivate(&wtx, 7, nospace).unwrap(), None);
        wtx.commit().unwrap();
        assert!(!a.no_space());
        assert_eq!(Alarms::load(&b.read().unwrap()).unwrap().get(nospace), []);
    }
}
