//! Linearizable reads by ReadIndex, shared: every read that arrives while a ReadIndex round is in
//! flight waits for the next round, so one round serves any number of concurrent reads (etcd's
//! `linearizableReadLoop`).
//!
//! A round asks Raft for a read index under a fresh 8-byte context, retries every 500 ms with a new
//! context (never reusing one: etcd #20418), then waits until the applier reached that index.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use oxcd_api::EtcdError;
use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot, watch};

use super::msg::RaftInput;
use crate::ids::IdGenerator;

const RETRY: Duration = Duration::from_millis(500);

type ReadWaiter = oneshot::Sender<Result<(), EtcdError>>;

/// Where reads queue up and where the Raft thread delivers read states.
pub struct ReadIndexHub {
    waiting: Mutex<Vec<ReadWaiter>>,
    wake: Notify,
    /// Contexts of the current round: ctx → where the read index goes.
    contexts: Mutex<HashMap<u64, oneshot::Sender<u64>>>,
}

impl ReadIndexHub {
    pub fn new() -> Arc<ReadIndexHub> {
        Arc::new(ReadIndexHub {
            waiting: Mutex::new(Vec::new()),
            wake: Notify::new(),
            contexts: Mutex::new(HashMap::new()),
        })
    }

    /// Registers a ReadIndex request's context: its read index arrives on the receiver.
    pub(crate) fn expect(&self, ctx: u64) -> oneshot::Receiver<u64> {
        let (tx, rx) = oneshot::channel();
        self.contexts.lock().insert(ctx, tx);
        rx
    }

    /// Called by the Raft thread for each read state.
    pub fn deliver(&self, ctx: u64, index: u64) {
        if let Some(tx) = self.contexts.lock().remove(&ctx) {
            let _ = tx.send(index);
        }
    }

    /// Waits until a read at this moment would be linearizable on this member.
    pub async fn read_barrier(&self, timeout: Duration) -> Result<(), EtcdError> {
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().push(tx);
        self.wake.notify_one();
        let result = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Err(_) => Err(EtcdError::Timeout),
            Ok(Err(_)) => Err(EtcdError::Stopped),
        };
        if result.is_err() {
            crate::metrics::READ_INDEXES_FAILED.inc();
        }
        result
    }

    /// The loop that runs rounds; one per member.
    pub async fn run(
        self: Arc<Self>,
        raft_tx: Sender<RaftInput>,
        ids: Arc<IdGenerator>,
        mut applied: watch::Receiver<u64>,
        timeout: Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = stop.changed() => return,
            }
            let batch = std::mem::take(&mut *self.waiting.lock());
            if batch.is_empty() {
                continue;
            }
            let result = self.round(&raft_tx, &ids, &mut applied, timeout).await;
            for w in batch {
                let _ = w.send(result);
            }
        }
    }

    async fn round(
        &self,
        raft_tx: &Sender<RaftInput>,
        ids: &IdGenerator,
        applied: &mut watch::Receiver<u64>,
        timeout: Duration,
    ) -> Result<(), EtcdError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let index = loop {
            let ctx = ids.next();
            let mut rx = self.expect(ctx);
            if raft_tx.send(RaftInput::ReadIndex { ctx }).is_err() {
                return Err(EtcdError::Stopped);
            }
            let retry_at = (tokio::time::Instant::now() + RETRY).min(deadline);
            tokio::select! {
                idx = &mut rx => match idx {
                    Ok(i) => break i,
                    Err(_) => return Err(EtcdError::Stopped),
                },
                _ = tokio::time::sleep_until(retry_at) => {
                    self.contexts.lock().remove(&ctx);
                    if tokio::time::Instant::now() >= deadline {
                        return Err(EtcdError::Timeout);
                    }
                }
            }
        };
        match tokio::time::timeout_at(deadline, applied.wait_for(|a| *a >= index)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(EtcdError::Stopped),
            Err(_) => Err(EtcdError::TimeoutWaitAppliedIndex),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hundred concurrent reads are served by a handful of ReadIndex rounds, not a hundred.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_reads_share_read_index_rounds() {
        let hub = ReadIndexHub::new();
        let (raft_tx, raft_rx) = crossbeam_channel::unbounded();
        let (applied_tx, applied_rx) = watch::channel(0u64);
        let (_stop_tx, stop_rx) = watch::channel(false);
        let ids = Arc::new(IdGenerator::new(crate::ids::MemberId(1)));
        tokio::spawn(hub.clone().run(raft_tx, ids, applied_rx, Duration::from_secs(5), stop_rx));
        // A fake Raft thread: answers each ReadIndex after 20 ms with index 7, counting rounds.
        let fake = hub.clone();
        let rounds = std::thread::spawn(move || {
            let mut n = 0;
            while let Ok(RaftInput::ReadIndex { ctx }) = raft_rx.recv_timeout(Duration::from_millis(300)) {
                n += 1;
                std::thread::sleep(Duration::from_millis(20));
                fake.deliver(ctx, 7);
            }
            n
        });
        applied_tx.send(7).unwrap();
        let reads: Vec<_> = (0..100)
            .map(|_| {
                let hub = hub.clone();
                tokio::spawn(async move { hub.read_barrier(Duration::from_secs(5)).await })
            })
            .collect();
        for r in reads {
            assert_eq!(r.await.unwrap(), Ok(()));
        }
        let n = tokio::task::spawn_blocking(move || rounds.join().unwrap()).await.unwrap();
        assert!((1..=5).contains(&n), "{n} rounds for 100 concurrent reads");
    }

    /// A read waits until the applier reached the read index.
    #[tokio::test]
    async fn a_read_waits_for_the_applied_index() {
        let hub = ReadIndexHub::new();
        let (raft_tx, raft_rx) = crossbeam_channel::unbounded();
        let (applied_tx, applied_rx) = watch::channel(3u64);
        let (_stop_tx, stop_rx) = watch::channel(false);
        let ids = Arc::new(IdGenerator::new(crate::ids::MemberId(1)));
        tokio::spawn(hub.clone().run(raft_tx, ids, applied_rx, Duration::from_secs(5), stop_rx));
        let fake = hub.clone();
        std::thread::spawn(move || {
            if let Ok(RaftInput::ReadIndex { ctx }) = raft_rx.recv() {
                fake.deliver(ctx, 9);
            }
        });
        let read = tokio::spawn({
            let hub = hub.clone();
            async move { hub.read_barrier(Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!read.is_finished(), "read returned before the applier reached the read index");
        applied_tx.send(9).unwrap();
        assert_eq!(read.await.unwrap(), Ok(()));
    }
}
