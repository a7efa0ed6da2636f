//! `--auto-compaction-mode` and `--auto-compaction-retention`: the leader compacts the history by
//! itself, through Raft like a client's Compact, as etcd's `v3compactor` does.
//!
//! - periodic, retention `P`: the current revision is sampled every `min(P, 1h) / 10`; the
//!   revision sampled `P` ago is compacted once `P` has passed since the last success, then every
//!   `min(P, 1h)` (a failure is retried at the next sample).
//! - revision, retention `N`: every 5 minutes, `current - N` is compacted if it moved.
//!
//! Only the leader compacts; a member that becomes leader starts its clock then (etcd pauses its
//! compactor on followers and resumes it on the leader).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oxcd_api::EtcdError;
use oxcd_api::etcdserverpb::CompactionRequest;
use oxcd_api::oxcdpb::internal_raft_request::Request as Proposal;

use crate::config::AutoCompaction;
use crate::server::EtcdServer;

/// How often revision mode looks (etcd's `revInterval`).
const REVISION_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// The periodic rule, apart from time and Raft: fed a revision sample every [`Periodic::sample_every`],
/// it says which revision to compact.
#[derive(Debug)]
pub struct Periodic {
    period: Duration,
    /// Samples, oldest first; the first is the revision `period` ago once the window is full.
    revs: VecDeque<i64>,
    last_success: Instant,
    /// The wait before the next compaction: `period` until the first success, then
    /// `min(period, 1h)`.
    base: Duration,
}

impl Periodic {
    pub fn new(period: Duration, now: Instant) -> Periodic {
        Periodic { period, revs: VecDeque::new(), last_success: now, base: period }
    }

    /// `min(period, 1h)`: how often compactions happen once the first one did.
    fn compact_interval(&self) -> Duration {
        self.period.min(Duration::from_secs(3600))
    }

    /// How often the revision is sampled (etcd's retry interval).
    pub fn sample_every(&self) -> Duration {
        self.compact_interval() / 10
    }

    /// Samples kept: the window is `period` long.
    fn retentions(&self) -> usize {
        (self.period.as_nanos() / self.sample_every().as_nanos().max(1)) as usize + 1
    }

    /// Records the sample taken before a wait.
    pub fn sample(&mut self, rev: i64) {
        self.revs.push_back(rev);
        while self.revs.len() > self.retentions() {
            self.revs.pop_front();
        }
    }

    /// After a wait: the revision to compact now, if it is time.
    pub fn due(&mut self, now: Instant) -> Option<i64> {
        if now.duration_since(self.last_success) < self.base {
            return None;
        }
        if self.base == self.period {
            self.base = self.compact_interval();
        }
        self.revs.front().copied()
    }

    /// The compaction asked for by [`Periodic::due`] succeeded (or was compacted already).
    pub fn succeeded(&mut self, now: Instant) {
        self.last_success = now;
    }
}

/// Runs the auto compactor of `server` until it stops.
pub async fn run(server: Arc<EtcdServer>, mode: AutoCompaction) {
    match mode {
        AutoCompaction::Periodic(period) => periodic(server, period).await,
        AutoCompaction::Revision(keep) => revision(server, keep).await,
    }
}

/// Proposes a compaction at `rev`; `Ok` also when it was compacted already.
async fn compact(server: &EtcdServer, rev: i64) -> Result<(), EtcdError> {
    match server.propose(Proposal::Compaction(CompactionRequest { revision: rev, physical: false })).await {
        Ok(_) | Err(EtcdError::Compacted) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn periodic(server: Arc<EtcdServer>, period: Duration) {
    let mut rule = Periodic::new(period, Instant::now());
    let mut leading = false;
    loop {
        rule.sample(server.store().write_rev());
        tokio::select! {
            _ = tokio::time::sleep(rule.sample_every()) => {}
            _ = server.stopped() => return,
        }
        // Paused on followers; on becoming leader the clock starts again (etcd's Resume).
        if !server.is_leader() {
            leading = false;
            continue;
        }
        if !leading {
            leading = true;
            rule = Periodic::new(period, Instant::now());
            continue;
        }
        let Some(rev) = rule.due(Instant::now()) else { continue };
        tracing::info!(revision = rev, compact_period = ?period, "starting auto periodic compaction");
        let started = Instant::now();
        match compact(&server, rev).await {
            Ok(()) => {
                tracing::info!(revision = rev, compact_period = ?period, took = ?started.elapsed(), "completed auto periodic compaction");
                rule.succeeded(Instant::now());
            }
            Err(e) => tracing::warn!(
                revision = rev,
                compact_period = ?period,
                retry_interval = ?rule.sample_every(),
                error = %e,
                "failed auto periodic compaction"
            ),
        }
    }
}

async fn revision(server: Arc<EtcdServer>, keep: i64) {
    let mut prev = 0;
    while server.next_turn_as_leader(REVISION_INTERVAL).await {
        let rev = server.store().write_rev() - keep;
        if rev <= 0 || rev == prev {
            continue;
        }
        tracing::info!(revision = rev, revision_compaction_retention = keep, "starting auto revision compaction");
        let started = Instant::now();
        match compact(&server, rev).await {
            Ok(()) => {
                prev = rev;
                tracing::info!(revision = rev, revision_compaction_retention = keep, took = ?started.elapsed(), "completed auto revision compaction");
            }
            Err(e) => tracing::warn!(
                revision = rev,
                revision_compaction_retention = keep,
                retry_interval = ?REVISION_INTERVAL,
                error = %e,
                "failed auto revision compaction"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule against a clock: a put per second, samples every period/10.
    fn simulate(period: Duration, secs: u64) -> Vec<(u64, i64)> {
        let t0 = Instant::now();
        let mut rule = Periodic::new(period, t0);
        let mut now = Duration::ZERO;
        let mut out = Vec::new();
        while now.as_secs() < secs {
            rule.sample(now.as_secs() as i64 + 1);
            now += rule.sample_every();
            if let Some(rev) = rule.due(t0 + now) {
                out.push((now.as_secs(), rev));
                rule.succeeded(t0 + now);
            }
        }
        out
    }

    #[test]
    fn a_short_period_compacts_every_period_what_is_a_period_old() {
        // etcd's TestPeriodicHourly, scaled: period 10 s, one revision a second.
        let got = simulate(Duration::from_secs(10), 35);
        assert_eq!(got, vec![(10, 1), (20, 10), (30, 20)]);
    }

    #[test]
    fn a_long_period_compacts_hourly_after_the_first_period() {
        let got = simulate(Duration::from_secs(3 * 3600), 5 * 3600 + 1);
        let times: Vec<u64> = got.iter().map(|(t, _)| *t).collect();
        assert_eq!(times, vec![3 * 3600, 4 * 3600, 5 * 3600]);
        // Each compacts what was written three hours before it (samples every 6 minutes).
        for (t, rev) in got {
            assert!((t as i64 - 3 * 3600 - rev).abs() <= 360, "{t}: {rev}");
        }
    }
}
