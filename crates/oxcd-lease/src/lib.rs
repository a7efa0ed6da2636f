//! The lessor: which leases exist, their TTLs, when they expire, and which keys are attached to each.
//!
//! Every member holds every lease (grants, revokes and checkpoints are applied from the Raft log);
//! only the leader keeps deadlines, renews on keep-alive and decides expiry (the server then
//! revokes through Raft, so every member deletes the same keys at the same revision).
//!
//! **Remaining TTLs survive leader changes** (etcd #9395). Each lease carries the remaining TTL of
//! its last grant or checkpoint and the moment (this member's monotonic clock) that was applied
//! here. A new leader sets each deadline to `applied_at + remaining` — no wall clocks are compared
//! across members, and the estimate is late only by the replication delay of the last checkpoint.
//! A lease renewed on the leader is checkpointed (its new remaining TTL) on the next checkpoint
//! round, so a renewal survives a leader change too. A new leader never expires a lease sooner than
//! one election timeout after taking over, so clients can reach it first.
//!
//! The lessor never reads the clock: callers pass `now`. It depends on neither the server nor the
//! MVCC store; the keys of a revoked lease are returned for the caller to delete.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

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

/// The largest TTL a lease may be granted (etcd's `MaxLeaseTTL`, in seconds).
pub const MAX_LEASE_TTL_SECS: i64 = 9_000_000_000;

/// Why a grant was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// The id is in use.
    #[error("lease already exists")]
    Exists,
    /// The TTL is above [`MAX_LEASE_TTL_SECS`].
    #[error("too large lease TTL")]
    TtlTooLarge,
}

/// Why a renewal was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RenewError {
    /// No such lease (or it expired and awaits revocation).
    #[error("lease not found")]
    NotFound,
    /// This member does not lead: only the leader renews.
    #[error("not the primary lessor")]
    NotPrimary,
}

/// What TimeToLive reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeToLive {
    /// Remaining seconds (truncated, never negative).
    pub remaining_secs: i64,
    pub granted_ttl_secs: i64,
    /// Attached keys, sorted.
    pub keys: Vec<Box<[u8]>>,
}

#[derive(Debug)]
struct Lease {
    ttl_secs: i64,
    /// Remaining TTL at the last grant or checkpoint applied here.
    remaining: Duration,
    /// When that grant or checkpoint was applied on this member.
    applied_at: Instant,
    /// The leader's deadline (None on followers).
    deadline: Option<Instant>,
    keys: HashSet<Box<[u8]>>,
}

impl Lease {
    fn estimated_deadline(&self) -> Instant {
        self.applied_at + self.remaining
    }
}

#[derive(Debug, Default)]
struct State {
    leases: BTreeMap<LeaseId, Lease>,
    /// The lease each attached key belongs to (so puts and deletes never read the old value).
    key_lease: HashMap<Box<[u8]>, LeaseId>,
    /// Leader only: deadlines in order.
    expiry: BTreeSet<(Instant, LeaseId)>,
    primary: bool,
    /// Leader only: leases renewed since the last checkpoint round.
    renewed: HashSet<LeaseId>,
    /// Leader only: expired leases whose revocation was proposed, and when.
    revoking: HashMap<LeaseId, Instant>,
    /// Leader only: where the round of checkpoints of every lease continues.
    checkpoint_cursor: Option<LeaseId>,
}

impl State {
    fn set_deadline(&mut self, id: LeaseId, deadline: Option<Instant>) {
        let Some(l) = self.leases.get_mut(&id) else { return };
        if let Some(old) = l.deadline {
            self.expiry.remove(&(old, id));
        }
        l.deadline = deadline;
        if let Some(d) = deadline {
            self.expiry.insert((d, id));
        }
    }
}

/// The set of leases of this member.
#[derive(Debug)]
pub struct Lessor {
    state: RwLock<State>,
    /// Grants below this TTL are raised to it (etcd: ceil(1.5 × election timeout)).
    min_ttl_secs: i64,
    /// A new leader gives every lease at least this long (one election timeout).
    promote_grace: Duration,
}

impl Default for Lessor {
    fn default() -> Self {
        Lessor::new()
    }
}

impl Lessor {
    /// A lessor with etcd's defaults (1 s election timeout: 2 s minimum TTL).
    pub fn new() -> Lessor {
        Lessor::with_limits(2, Duration::from_secs(1))
    }

    pub fn with_limits(min_ttl_secs: i64, promote_grace: Duration) -> Lessor {
        Lessor { state: RwLock::new(State::default()), min_ttl_secs, promote_grace }
    }

    /// The TTL a grant of `ttl_secs` gets.
    pub fn effective_ttl(&self, ttl_secs: i64) -> i64 {
        ttl_secs.max(self.min_ttl_secs)
    }

    /// Whether no lease exists (then no key can be attached to one).
    pub fn is_empty(&self) -> bool {
        self.state.read().leases.is_empty()
    }

    /// Whether the lease exists.
    pub fn lookup(&self, id: LeaseId) -> bool {
        self.state.read().leases.contains_key(&id)
    }

    /// Applies a grant (from the Raft log); returns the TTL granted.
    pub fn grant(&self, id: LeaseId, ttl_secs: i64, now: Instant) -> Result<i64, GrantError> {
        if ttl_secs > MAX_LEASE_TTL_SECS {
            return Err(GrantError::TtlTooLarge);
        }
        let mut st = self.state.write();
        if id == LeaseId::NONE || st.leases.contains_key(&id) {
            return Err(GrantError::Exists);
        }
        let ttl = self.effective_ttl(ttl_secs);
        let remaining = Duration::from_secs(ttl as u64);
        st.leases.insert(id, Lease { ttl_secs: ttl, remaining, applied_at: now, deadline: None, keys: HashSet::new() });
        if st.primary {
            st.set_deadline(id, Some(now + remaining));
        }
        Ok(ttl)
    }

    /// Restores a lease read back from the backend: its remaining TTL counts from `now`.
    pub fn restore(&self, id: LeaseId, ttl_secs: i64, remaining: Duration, now: Instant) {
        let mut st = self.state.write();
        st.leases.insert(id, Lease { ttl_secs, remaining, applied_at: now, deadline: None, keys: HashSet::new() });
    }

    /// Applies a revoke: removes the lease and returns its attached keys (sorted), or `None` if it
    /// did not exist.
    pub fn revoke(&self, id: LeaseId) -> Option<Vec<Box<[u8]>>> {
        let mut st = self.state.write();
        st.set_deadline(id, None);
        st.renewed.remove(&id);
        st.revoking.remove(&id);
        let lease = st.leases.remove(&id)?;
        for k in &lease.keys {
            st.key_lease.remove(k);
        }
        let mut keys: Vec<_> = lease.keys.into_iter().collect();
        keys.sort();
        Some(keys)
    }

    /// Applies a checkpoint: the lease had `remaining` left when the leader proposed it. A leader
    /// only ever moves its deadline later (a checkpoint of a renewal on the previous leader, applied
    /// after this member took over).
    pub fn checkpoint(&self, id: LeaseId, remaining: Duration, now: Instant) {
        let mut st = self.state.write();
        let primary = st.primary;
        let Some(l) = st.leases.get_mut(&id) else { return };
        l.remaining = remaining;
        l.applied_at = now;
        if primary && l.deadline.is_some_and(|d| d < now + remaining) {
            st.set_deadline(id, Some(now + remaining));
        }
    }

    /// The TTL a lease was granted with.
    pub fn ttl_secs(&self, id: LeaseId) -> Option<i64> {
        self.state.read().leases.get(&id).map(|l| l.ttl_secs)
    }

    /// Attaches `key` to lease `id` (no-op for [`LeaseId::NONE`] or an unknown lease).
    pub fn attach(&self, id: LeaseId, key: &[u8]) {
        if id == LeaseId::NONE {
            return;
        }
        let mut st = self.state.write();
        if let Some(l) = st.leases.get_mut(&id) {
            l.keys.insert(key.into());
            st.key_lease.insert(key.into(), id);
        }
    }

    /// Detaches `key` from whatever lease it is attached to; returns that lease.
    pub fn detach(&self, key: &[u8]) -> Option<LeaseId> {
        let mut st = self.state.write();
        let id = st.key_lease.remove(key)?;
        if let Some(l) = st.leases.get_mut(&id) {
            l.keys.remove(key);
        }
        Some(id)
    }

    /// The keys attached to lease `id` (`None`: no such lease).
    pub fn keys(&self, id: LeaseId) -> Option<Vec<Box<[u8]>>> {
        self.state.read().leases.get(&id).map(|l| l.keys.iter().cloned().collect())
    }

    /// The lease `key` is attached to, if any.
    pub fn lease_of(&self, key: &[u8]) -> Option<LeaseId> {
        self.state.read().key_lease.get(key).copied()
    }

    /// Every lease id, sorted.
    pub fn leases(&self) -> Vec<LeaseId> {
        let mut ids: Vec<_> = self.state.read().leases.keys().copied().collect();
        ids.sort();
        ids
    }

    /// Whether this member acts as the leader's lessor.
    pub fn is_primary(&self) -> bool {
        self.state.read().primary
    }

    /// This member became leader: every lease's deadline is its estimate (`applied_at +
    /// remaining`), but no sooner than the promote grace from now. A no-op if already primary.
    pub fn promote(&self, now: Instant) {
        let mut st = self.state.write();
        if st.primary {
            return;
        }
        st.primary = true;
        st.expiry.clear();
        st.renewed.clear();
        st.revoking.clear();
        let floor = now + self.promote_grace;
        let ids: Vec<(LeaseId, Instant)> =
            st.leases.iter().map(|(id, l)| (*id, l.estimated_deadline().max(floor))).collect();
        for (id, d) in ids {
            if let Some(l) = st.leases.get_mut(&id) {
                l.deadline = Some(d);
            }
            st.expiry.insert((d, id));
        }
    }

    /// This member stopped leading.
    pub fn demote(&self) {
        let mut st = self.state.write();
        st.primary = false;
        st.expiry.clear();
        st.renewed.clear();
        st.revoking.clear();
        for l in st.leases.values_mut() {
            l.deadline = None;
        }
    }

    /// Renews a lease on the leader: returns the TTL it now has.
    pub fn renew(&self, id: LeaseId, now: Instant) -> Result<i64, RenewError> {
        let mut st = self.state.write();
        if !st.primary {
            return Err(RenewError::NotPrimary);
        }
        let Some(l) = st.leases.get(&id) else { return Err(RenewError::NotFound) };
        if l.deadline.is_some_and(|d| d <= now) || st.revoking.contains_key(&id) {
            // Expired: its revocation is on the way.
            return Err(RenewError::NotFound);
        }
        let ttl = l.ttl_secs;
        st.set_deadline(id, Some(now + Duration::from_secs(ttl as u64)));
        st.renewed.insert(id);
        Ok(ttl)
    }

    /// Whether a lease is alive: it exists, and on the leader its deadline has not passed and it is
    /// not being revoked.
    pub fn is_live(&self, id: LeaseId, now: Instant) -> bool {
        let st = self.state.read();
        match st.leases.get(&id) {
            None => false,
            Some(l) => !st.primary || (l.deadline.is_none_or(|d| d > now) && !st.revoking.contains_key(&id)),
        }
    }

    /// Leader: up to `limit` leases past their deadline that are not being revoked yet (or whose
    /// revocation was proposed longer than `retry_after` ago); they are marked as being revoked.
    pub fn expired(&self, now: Instant, limit: usize, retry_after: Duration) -> Vec<LeaseId> {
        let mut st = self.state.write();
        if !st.primary {
            return Vec::new();
        }
        let due: Vec<LeaseId> = st.expiry.iter().take_while(|(d, _)| *d <= now).map(|(_, id)| *id).collect();
        let mut out = Vec::new();
        for id in due {
            if out.len() == limit {
                break;
            }
            match st.revoking.get(&id) {
                Some(at) if now.duration_since(*at) < retry_after => continue,
                _ => {
                    st.revoking.insert(id, now);
                    out.push(id);
                }
            }
        }
        out
    }

    /// Leader: leases to checkpoint now, with what they have left: every lease renewed since the
    /// last call, then the next leases of a round over all of them, up to `budget` in all. The
    /// round keeps every member's estimate fresh, including members that restarted (they cannot
    /// know how long they were down, so their estimates run late until a checkpoint arrives).
    pub fn take_checkpoints(&self, now: Instant, budget: usize) -> Vec<(LeaseId, Duration)> {
        let mut st = self.state.write();
        if !st.primary {
            return Vec::new();
        }
        let mut ids: Vec<LeaseId> = st.renewed.drain().collect();
        ids.sort();
        ids.truncate(budget);
        let chosen: HashSet<LeaseId> = ids.iter().copied().collect();
        let start = st.checkpoint_cursor.map(|c| c.0.saturating_add(1)).unwrap_or(i64::MIN);
        let round: Vec<LeaseId> = st
            .leases
            .range(LeaseId(start)..)
            .chain(st.leases.range(..LeaseId(start)))
            .map(|(id, _)| *id)
            .filter(|id| !chosen.contains(id))
            .take(budget.saturating_sub(ids.len()))
            .collect();
        if let Some(last) = round.last() {
            st.checkpoint_cursor = Some(*last);
        }
        ids.extend(round);
        ids.into_iter()
            .filter_map(|id| {
                let d = st.leases.get(&id)?.deadline?;
                Some((id, d.saturating_duration_since(now)))
            })
            .collect()
    }

    /// TimeToLive: on the leader from its deadline, elsewhere from the estimate.
    pub fn time_to_live(&self, id: LeaseId, now: Instant, with_keys: bool) -> Option<TimeToLive> {
        let st = self.state.read();
        let l = st.leases.get(&id)?;
        let deadline = l.deadline.unwrap_or_else(|| l.estimated_deadline());
        let mut keys: Vec<Box<[u8]>> = if with_keys { l.keys.iter().cloned().collect() } else { Vec::new() };
        keys.sort();
        Some(TimeToLive {
            remaining_secs: deadline.saturating_duration_since(now).as_secs() as i64,
            granted_ttl_secs: l.ttl_secs,
            keys,
        })
    }
}

#[cfg(test)]
mod tests;
