//! The lessor: which leases exist, their TTLs, and which keys are attached to each.
//!
//! The MVCC store attaches a key to its lease on put and detaches it on delete or overwrite; the
//! applier asks [`Lessor::lookup`] before accepting a put with a lease. Granting, revoking, expiry
//! and keep-alive arrive with the Lease service; their deletes of attached keys go through the
//! applier, so this crate depends on neither the server nor the MVCC store.

use std::collections::{HashMap, HashSet};
use std::fmt;

use parking_lot::RwLock;

/// A lease id; 0 means "no lease". Shown in hex, as etcd does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub i64);

impl LeaseId {
    /// The absence of a lease.
    pub const NONE: LeaseId = LeaseId(0);
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

#[derive(Debug, Default)]
struct Lease {
    ttl_secs: i64,
    keys: HashSet<Box<[u8]>>,
}

/// The set of leases of this member.
#[derive(Debug, Default)]
pub struct Lessor {
    leases: RwLock<HashMap<LeaseId, Lease>>,
}

impl Lessor {
    pub fn new() -> Lessor {
        Lessor::default()
    }

    /// Whether no lease exists (then no key can be attached to one).
    pub fn is_empty(&self) -> bool {
        self.leases.read().is_empty()
    }

    /// Whether the lease exists.
    pub fn lookup(&self, id: LeaseId) -> bool {
        self.leases.read().contains_key(&id)
    }

    /// Creates a lease; false if the id is taken.
    pub fn grant(&self, id: LeaseId, ttl_secs: i64) -> bool {
        let mut leases = self.leases.write();
        if id == LeaseId::NONE || leases.contains_key(&id) {
            return false;
        }
        leases.insert(id, Lease { ttl_secs, keys: HashSet::new() });
        true
    }

    /// Removes a lease and returns its attached keys (sorted), or `None` if it did not exist.
    pub fn revoke(&self, id: LeaseId) -> Option<Vec<Box<[u8]>>> {
        let lease = self.leases.write().remove(&id)?;
        let mut keys: Vec<_> = lease.keys.into_iter().collect();
        keys.sort();
        Some(keys)
    }

    /// The TTL a lease was granted with.
    pub fn ttl_secs(&self, id: LeaseId) -> Option<i64> {
        self.leases.read().get(&id).map(|l| l.ttl_secs)
    }

    /// Attaches `key` to lease `id` (no-op for [`LeaseId::NONE`] or an unknown lease).
    pub fn attach(&self, id: LeaseId, key: &[u8]) {
        if id == LeaseId::NONE {
            return;
        }
        if let Some(l) = self.leases.write().get_mut(&id) {
            l.keys.insert(key.into());
        }
    }

    /// Detaches `key` from lease `id`.
    pub fn detach(&self, id: LeaseId, key: &[u8]) {
        if id == LeaseId::NONE {
            return;
        }
        if let Some(l) = self.leases.write().get_mut(&id) {
            l.keys.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_detach_revoke() {
        let l = Lessor::new();
        let id = LeaseId(0x1234);
        assert!(!l.lookup(id));
        assert!(l.grant(id, 10));
        assert!(!l.grant(id, 10), "duplicate id");
        assert!(!l.grant(LeaseId::NONE, 10), "id 0 means no lease");
        l.attach(id, b"b");
        l.attach(id, b"a");
        l.detach(id, b"b");
        assert_eq!(l.ttl_secs(id), Some(10));
        assert_eq!(l.revoke(id), Some(vec![b"a".to_vec().into_boxed_slice()]));
        assert_eq!(l.revoke(id), None);
        assert_eq!(LeaseId(0x1234).to_string(), "1234");
    }
}
