//! The wire surface of oxcd: etcd's protos with etcd's packages, services and field numbers, the one
//! table of etcd's error texts, the request validation shared by the gRPC and JSON edges, and the
//! write coalescing of gRPC connections ([`coalesce`]) that the server and oxcd-bench share.
//!
//! This crate depends on nothing else of ours; every other crate speaks in these types.

pub mod coalesce;
pub mod codec;
pub mod duration;
pub mod error;
pub mod validate;

pub use error::EtcdError;

/// The compiled protos as an encoded `google.protobuf.FileDescriptorSet` (the JSON gateway converts
/// messages to and from proto3 JSON through it).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));

/// `mvccpb`: KeyValue and Event.
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// `authpb`: users, roles and permissions.
pub mod authpb {
    tonic::include_proto!("authpb");
}

/// `etcdserverpb`: the KV, Watch, Lease, Cluster, Maintenance and Auth services and their messages.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// `v3lockpb`: the Lock service.
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}

/// `v3electionpb`: the Election service.
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}

/// `oxcdpb`: what oxcd replicates through Raft and stores beside the data (not client API).
pub mod oxcdpb {
    tonic::include_proto!("oxcdpb");
}
