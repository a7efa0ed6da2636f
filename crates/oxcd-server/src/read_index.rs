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

use crate::hot_wait::HotWait;
use crate::ids::IdGenerator;
use crate::raft::RaftInput;

const RETRY: Duration = Duration::from_millis(500);

type ReadWaiter = oneshot::Sender<Result<(), EtcdError>>;

/// Where reads queue up and where the Raft thread delivers read states.
pub struct ReadIndexHub {
    waiting: Mutex<Vec<ReadWaiter>>,
    wake: Notify,
    /// Contexts of the current round: ctx → where the read index goes.
    contexts: Mutex<HashMap<u64, oneshot::Sender<u64>>>,
    hot_wait: HotWait,
}

impl ReadIndexHub {
    pub fn new() -> Arc<ReadIndexHub> {
        Arc::new(ReadIndexHub {
            waiting: Mutex::new(Vec::new()),
            wake: Notify::new(),
            contexts: Mutex::new(HashMap::new()),
            hot_wait: HotWait::default(),
        })
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
        match self.hot_wait.wait(rx, timeout).await {
            Ok(Some(r)) => r,
            Ok(None) => Err(EtcdError::Timeout),
            Err(()) => Err(EtcdError::Stopped),
        }
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
            let (tx, mut rx) = oneshot::channel();
            self.contexts.lock().insert(ctx, tx);
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
