//! The test kit: what the cluster, client and differential tests stand on.
//!
//! - [`Cluster`]: members as real processes (`oxcd`, or real `etcd` as the oracle) on ports the OS
//!   chose, with kill -9, restart, pause (SIGSTOP) and resume.
//! - [`model::Model`]: a plain in-memory etcd (BTreeMap of key histories) for property tests.
//!
//! Everything here runs on loopback and in temporary directories, so runs never collide.

pub mod cluster;
pub mod model;

pub use cluster::{Binary, Cluster, ClusterOptions, free_port};

/// Debian's etcd 3.4 (the oracle of the differential tests).
pub const ETCD_34: &str = "/usr/bin/etcd";
/// Debian's etcdctl 3.4.
pub const ETCDCTL_34: &str = "/usr/bin/etcdctl";

/// Sorts the items between `open` and `close` (separated by `sep`), at their first occurrence:
/// etcd prints some lists (a lease's keys, the leases) in Go map order, which differs run to run.
pub fn sort_list(s: &str, open: &str, close: &str, sep: &str) -> String {
    let Some(start) = s.find(open) else { return s.to_string() };
    let from = start + open.len();
    let Some(len) = s[from..].find(close) else { return s.to_string() };
    let mut items: Vec<&str> = s[from..from + len].split(sep).collect();
    items.sort();
    format!("{}{}{}", &s[..from], items.join(sep), &s[from + len..])
}
