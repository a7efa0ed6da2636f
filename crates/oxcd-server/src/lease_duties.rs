//! The leader's lease duties, run on every member and active only on the leader: keeping the
//! lessor primary while this member leads, revoking expired leases through Raft (paced, so a mass
//! expiry never floods the log), and checkpointing remaining TTLs through Raft (renewed leases
//! first, then a round over all of them).

use std::sync::Arc;
use std::time::{Duration, Instant};

use oxcd_api::etcdserverpb::LeaseRevokeRequest;
use oxcd_api::oxcdpb::internal_raft_request::Request as Proposal;
use oxcd_api::oxcdpb::{LeaseCheckpoint, LeaseCheckpointRequest};

use crate::server::EtcdServer;

/// How often the duties run.
const TICK: Duration = Duration::from_millis(100);
/// Most lease revocations proposed per tick (5,000 a second; etcd proposes 1,000 a second).
const REVOKES_PER_TICK: usize = 500;
/// A revocation that was not applied within this time is proposed again.
const REVOKE_RETRY: Duration = Duration::from_secs(3);
/// How often leases are checkpointed.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);
/// Leases checkpointed per round (renewed ones first, then a round over all): 10,000 a second.
const CHECKPOINT_BUDGET: usize = 5000;
/// Leases per checkpoint entry.
const CHECKPOINT_BATCH: usize = 1000;

pub async fn run(server: Arc<EtcdServer>) {
    let mut tick = tokio::time::interval(TICK);
    let mut last_checkpoint = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = server.stopped() => return,
        }
        let lessor = server.lessor();
        let now = Instant::now();
        let is_leader = server.is_leader();
        // Promote on taking over (or when a snapshot replaced the lessor), demote on losing it.
        if !is_leader {
            if lessor.is_primary() {
                lessor.demote();
            }
            continue;
        }
        lessor.promote(now);
        for id in lessor.expired(now, REVOKES_PER_TICK, REVOKE_RETRY) {
            let s = server.clone();
            tokio::spawn(async move {
                match s.propose(Proposal::LeaseRevoke(LeaseRevokeRequest { id: id.0 })).await {
                    Ok(_) => crate::metrics::LEASE_EXPIRED.inc(),
                    Err(e) => tracing::debug!(lease = %id, error = %e, "revoking an expired lease failed; will retry"),
                }
            });
        }
        if now.duration_since(last_checkpoint) >= CHECKPOINT_INTERVAL {
            last_checkpoint = now;
            let due = lessor.take_checkpoints(now, CHECKPOINT_BUDGET);
            for chunk in due.chunks(CHECKPOINT_BATCH) {
                let checkpoints = chunk
                    .iter()
                    .map(|(id, remaining)| LeaseCheckpoint { id: id.0, remaining_ms: remaining.as_millis() as i64 })
                    .collect();
                let s = server.clone();
                tokio::spawn(async move {
                    let req = LeaseCheckpointRequest { checkpoints };
                    if let Err(e) = s.propose(Proposal::LeaseCheckpoint(req)).await {
                        tracing::debug!(error = %e, "lease checkpoint failed");
                    }
                });
            }
        }
    }
}
