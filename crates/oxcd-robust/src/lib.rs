//! oxcd's fault suite: concurrent clients read, write and compare-and-set a few keys of a real
//! cluster while members are killed and paused ([`run`]); every operation is recorded with the
//! times it was invoked and answered, and the history is judged afterwards: linearizable
//! ([`linearizability`]), every acknowledged write in the cluster's history and nothing there that
//! no client wrote, no client seeing revisions go backwards, and every member ending with the same
//! revision and HashKV.

pub mod linearizability;
mod workload;

pub use workload::{Options, Report, run};
