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
