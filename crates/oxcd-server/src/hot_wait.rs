//! Waiting for a result that another thread produces within a fraction of a millisecond.
//!
//! A write or a linearizable read waits for the Raft thread or the applier; when the member is
//! nearly idle, the tokio worker that waits would park, and waking a parked worker (a futex wake and
//! a context switch) costs more than the whole rest of the request. So while few requests are in
//! flight, the waiter polls its channel for a short while, yielding to other tasks, before it parks.
//! Under load there are always other tasks to run and no one spins.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// How long a waiter polls before parking.
const SPIN: Duration = Duration::from_micros(400);
/// Polling only while at most this many waiters are in flight.
const MAX_SPINNERS: usize = 2;

/// Counts the waiters in flight.
#[derive(Default)]
pub struct HotWait {
    inflight: AtomicUsize,
}

/// Decrements the in-flight count when the wait ends (or its future is dropped).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl HotWait {
    /// Waits for `rx`, giving up after `timeout` (`Ok(None)`); `Err` if the sender went away.
    pub async fn wait<T>(&self, mut rx: oneshot::Receiver<T>, timeout: Duration) -> Result<Option<T>, ()> {
        let few = self.inflight.fetch_add(1, Ordering::AcqRel) < MAX_SPINNERS;
        let _guard = InFlight(&self.inflight);
        if few {
            let until = Instant::now() + SPIN;
            while Instant::now() < until {
                match rx.try_recv() {
                    Ok(v) => return Ok(Some(v)),
                    Err(oneshot::error::TryRecvError::Empty) => {
                        tokio::task::yield_now().await;
                        std::thread::yield_now();
                    }
                    Err(oneshot::error::TryRecvError::Closed) => return Err(()),
                }
            }
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(v)) => Ok(Some(v)),
            Ok(Err(_)) => Err(()),
            Err(_) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delivers_values_timeouts_and_closed_senders() {
        let hw = HotWait::default();
        let (tx, rx) = oneshot::channel();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(2));
            let _ = tx.send(7);
        });
        assert_eq!(hw.wait(rx, Duration::from_secs(5)).await, Ok(Some(7)));
        let (_tx, rx) = oneshot::channel::<u8>();
        assert_eq!(hw.wait(rx, Duration::from_millis(10)).await, Ok(None));
        let (tx, rx) = oneshot::channel::<u8>();
        drop(tx);
        assert_eq!(hw.wait(rx, Duration::from_secs(1)).await, Err(()));
        assert_eq!(hw.inflight.load(Ordering::Acquire), 0);
    }
}
