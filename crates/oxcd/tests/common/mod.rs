//! Shared by the process-level tests of the `oxcd` binary.
#![allow(dead_code)]

use etcd_client::Error;
use oxcd_testkit::{Binary, Cluster, ClusterOptions};
use tonic::Code;

/// Debian's etcdctl 3.4 (API v3) pointed at `endpoint`, ready for arguments.
pub fn etcdctl(endpoint: &str) -> std::process::Command {
    let mut c = std::process::Command::new(oxcd_testkit::ETCDCTL_34);
    c.env("ETCDCTL_API", "3").arg(format!("--endpoints={endpoint}"));
    c
}

pub fn oxcd() -> Binary {
    Binary::Oxcd(env!("CARGO_BIN_EXE_oxcd").into())
}

pub async fn cluster(size: usize) -> Cluster {
    Cluster::start(oxcd(), ClusterOptions { size, ..Default::default() }).await.expect("cluster starts")
}

pub async fn cluster_with(opts: ClusterOptions) -> Cluster {
    Cluster::start(oxcd(), opts).await.expect("cluster starts")
}

/// The gRPC code and message of a client error.
pub fn status(e: Error) -> (Code, String) {
    match e {
        Error::GRpcStatus(s) => (s.code(), s.message().to_string()),
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

/// Asserts that `r` failed with exactly etcd's code and message.
#[track_caller]
pub fn assert_etcd_error<T: std::fmt::Debug>(r: Result<T, Error>, code: Code, msg: &str) {
    match r {
        Ok(v) => panic!("expected {code:?} {msg:?}, got Ok({v:?})"),
        Err(e) => assert_eq!(status(e), (code, msg.to_string())),
    }
}
