//! What a listener does when `accept` fails: out of file descriptors, the connection stays in the
//! backlog and the next accept fails again at once, so the listener waits [`ACCEPT_RETRY`]
//! before trying again instead of spinning, and logs the run of failures when it starts and when
//! it ends, not each time. The client and metrics listeners (async) and the peer listener (a
//! thread) share it.

use std::time::Duration;

/// How long a listener waits after a failed accept.
pub const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// A listener's run of failed accepts.
pub struct AcceptFailures {
    /// What it accepts, for the log lines ("client", "peer").
    what: &'static str,
    count: u64,
}

impl AcceptFailures {
    pub fn new(what: &'static str) -> AcceptFailures {
        AcceptFailures { what, count: 0 }
    }

    /// An accept failed: logs the first of a run; the caller then waits [`ACCEPT_RETRY`].
    pub fn failed(&mut self, e: &std::io::Error) {
        if self.count == 0 {
            tracing::warn!(
                error = %e,
                retry = ?ACCEPT_RETRY,
                "accepting a {} connection failed; retrying", self.what
            );
        }
        self.count += 1;
    }

    /// An accept succeeded: logs the end of a run of failures.
    pub fn succeeded(&mut self) {
        if self.count > 0 {
            tracing::warn!(failed = self.count, "accepting {} connections again", self.what);
            self.count = 0;
        }
    }
}
