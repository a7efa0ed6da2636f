//! etcd's configuration-change entries: `raftpb.ConfChange` with etcd's type numbers, and the member
//! JSON etcd puts in its context (docs/etcd-peer-protocol.md §2.2, §3.4).
//!
//! raft-rs's `ConfChange` must never read or write these bytes: raft-rs numbers AddLearnerNode 2,
//! which is etcd's UpdateNode, and has no number 3, which is etcd's AddLearnerNode. This codec keeps
//! etcd's numbers, encodes as etcd's gogoproto code does (ID, Type and NodeID always written, the
//! context only when there is one) and maps to raft-rs only for the change Raft itself applies.

use raft::prelude::{ConfChange, ConfChangeType};
use serde::{Deserialize, Serialize};

use crate::etcd_snapshot::EtcdMember;

/// etcd's `raftpb.ConfChangeType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcdChange {
    AddNode,
    RemoveNode,
    /// New peer URLs for a member: no change to Raft's configuration.
    UpdateNode,
    AddLearnerNode,
}

impl EtcdChange {
    fn number(self) -> u64 {
        match self {
            EtcdChange::AddNode => 0,
            EtcdChange::RemoveNode => 1,
            EtcdChange::UpdateNode => 2,
            EtcdChange::AddLearnerNode => 3,
        }
    }

    fn from_number(n: u64) -> Option<EtcdChange> {
        Some(match n {
            0 => EtcdChange::AddNode,
            1 => EtcdChange::RemoveNode,
            2 => EtcdChange::UpdateNode,
            3 => EtcdChange::AddLearnerNode,
            _ => return None,
        })
    }
}

/// The wire form, field numbers of etcd's `raftpb.ConfChange`; `required` makes prost write the
/// three numbers even when zero, as gogoproto does.
#[derive(Clone, PartialEq, prost::Message)]
struct Wire {
    #[prost(uint64, required, tag = "1")]
    id: u64,
    #[prost(uint64, required, tag = "2")]
    change: u64,
    #[prost(uint64, required, tag = "3")]
    node_id: u64,
    #[prost(bytes = "vec", optional, tag = "4")]
    context: Option<Vec<u8>>,
}

/// One configuration change as etcd proposes and applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfChange {
    /// The proposal's request id.
    pub id: u64,
    pub change: EtcdChange,
    pub node_id: u64,
    /// Member JSON ([`MemberContext`]); none for a removal.
    pub context: Option<Vec<u8>>,
}

impl EtcdConfChange {
    /// The entry's data.
    pub fn encode(&self) -> Vec<u8> {
        let wire =
            Wire { id: self.id, change: self.change.number(), node_id: self.node_id, context: self.context.clone() };
        prost::Message::encode_to_vec(&wire)
    }

    /// Reads an entry's data; an unknown type is refused (etcd panics on one).
    pub fn decode(data: &[u8]) -> Result<EtcdConfChange, String> {
        let w: Wire = prost::Message::decode(data).map_err(|e| format!("a configuration change: {e}"))?;
        let change = EtcdChange::from_number(w.change)
            .ok_or_else(|| format!("a configuration change of unknown type {}", w.change))?;
        Ok(EtcdConfChange { id: w.id, change, node_id: w.node_id, context: w.context })
    }

    /// The change raft-rs applies to its configuration: none for UpdateNode (etcd's Raft treats
    /// it as a no-op).
    pub fn raft_change(&self) -> Option<ConfChange> {
        let kind = match self.change {
            EtcdChange::AddNode => ConfChangeType::AddNode,
            EtcdChange::RemoveNode => ConfChangeType::RemoveNode,
            EtcdChange::AddLearnerNode => ConfChangeType::AddLearnerNode,
            EtcdChange::UpdateNode => return None,
        };
        let mut cc = ConfChange { id: self.id, node_id: self.node_id, ..Default::default() };
        cc.set_change_type(kind);
        Some(cc)
    }

    /// The context as etcd's member JSON; etcd panics where this fails on an add or an update.
    pub fn member(&self) -> Result<MemberContext, String> {
        let ctx = self.context.as_deref().ok_or("a configuration change without its member")?;
        serde_json::from_slice(ctx).map_err(|e| format!("its member: {e}"))
    }
}

/// etcd's `membership.ConfigChangeContext`: a member record, inlined, and `isPromote`, in etcd's
/// field order and with its `omitempty` rules. etcd writes a promotion's peer URLs as `null`, this
/// as `[]`; etcd reads only the id of a promotion.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberContext {
    #[serde(flatten)]
    pub member: EtcdMember,
    /// Written only by a promotion (etcd marshals a plain `Member` for the other changes).
    #[serde(rename = "isPromote", default, skip_serializing_if = "std::ops::Not::not")]
    pub is_promote: bool,
}

impl MemberContext {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a member serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcds_type_numbers_and_gogo_encoding() {
        // A removal etcd proposed: ID 7, Type 1, NodeID 0x10, no context; gogoproto writes all three
        // numbers, and a zero one too.
        let removal = EtcdConfChange { id: 7, change: EtcdChange::RemoveNode, node_id: 0x10, context: None };
        assert_eq!(removal.encode(), [0x08, 7, 0x10, 1, 0x18, 0x10]);
        let bootstrap =
            EtcdConfChange { id: 0, change: EtcdChange::AddNode, node_id: 1, context: Some(b"{}".to_vec()) };
        assert_eq!(bootstrap.encode(), [0x08, 0, 0x10, 0, 0x18, 1, 0x22, 2, b'{', b'}']);
        for change in [EtcdChange::AddNode, EtcdChange::RemoveNode, EtcdChange::UpdateNode, EtcdChange::AddLearnerNode]
        {
            let cc = EtcdConfChange { id: 3, change, node_id: 9, context: Some(b"x".to_vec()) };
            assert_eq!(EtcdConfChange::decode(&cc.encode()), Ok(cc));
        }
        // Type 4 does not exist in etcd.
        assert!(EtcdConfChange::decode(&[0x10, 4]).unwrap_err().contains("unknown type 4"));
    }

    #[test]
    fn raft_sees_learners_as_learners_and_no_update() {
        let learner = EtcdConfChange { id: 1, change: EtcdChange::AddLearnerNode, node_id: 5, context: None };
        let cc = learner.raft_change().unwrap();
        assert_eq!((cc.get_change_type(), cc.node_id, cc.id), (ConfChangeType::AddLearnerNode, 5, 1));
        let update = EtcdConfChange { change: EtcdChange::UpdateNode, ..learner.clone() };
        assert_eq!(update.raft_change(), None);
        // raft-rs's own encoding of its AddLearnerNode is etcd's UpdateNode: the reason for this codec.
        let raft_bytes = protobuf::Message::write_to_bytes(&cc).unwrap();
        assert_eq!(EtcdConfChange::decode(&raft_bytes).unwrap().change, EtcdChange::UpdateNode);
    }

    #[test]
    fn member_json_is_etcds() {
        let urls = vec!["http://10.0.0.1:2380".to_string()];
        let member = |m: EtcdMember| MemberContext { member: m, is_promote: false };
        let added = EtcdMember { id: 16, peer_urls: urls.clone(), ..Default::default() };
        assert_eq!(member(added.clone()).to_json(), br#"{"id":16,"peerURLs":["http://10.0.0.1:2380"]}"#);
        let learner = EtcdMember { is_learner: true, ..added.clone() };
        assert_eq!(member(learner).to_json(), br#"{"id":16,"peerURLs":["http://10.0.0.1:2380"],"isLearner":true}"#);
        let boot = EtcdMember { name: "infra1".into(), ..added.clone() };
        assert_eq!(member(boot).to_json(), br#"{"id":16,"peerURLs":["http://10.0.0.1:2380"],"name":"infra1"}"#);
        let promote = MemberContext { member: EtcdMember { id: 16, ..Default::default() }, is_promote: true };
        assert_eq!(promote.to_json(), br#"{"id":16,"peerURLs":[],"isPromote":true}"#);
        // What etcd writes for a promotion, and ids past 2^53 read as integers.
        let read: MemberContext =
            serde_json::from_str(r#"{"id":18446744073709551615,"peerURLs":null,"isPromote":true}"#).unwrap();
        assert_eq!((read.member.id, read.is_promote), (u64::MAX, true));
        let cc = EtcdConfChange { id: 2, change: EtcdChange::AddNode, node_id: 16, context: Some(promote.to_json()) };
        assert_eq!(cc.member(), Ok(promote));
        let removal = EtcdConfChange { context: None, ..cc };
        assert!(removal.member().is_err());
    }
}
