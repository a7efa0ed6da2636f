//! Cluster membership: the members, their peer URLs (how Raft reaches them) and their published
//! attributes (name, client URLs). Stored in the backend's `members` bucket as `etcdserverpb.Member`,
//! so a restarted member needs no `--initial-cluster`.

use std::collections::BTreeMap;

use oxcd_api::EtcdError;
use oxcd_api::etcdserverpb::Member as PbMember;
use oxcd_api::oxcdpb::ConfChangeContext;
use oxcd_backend::{BucketRead, CLUSTER, MEMBERS, MEMBERS_REMOVED, ReadTxn, WriteTxn};
use prost::Message;
use raft::prelude::{ConfChange, ConfChangeType, ConfState};

use crate::ids::MemberId;

/// Most learners a cluster may have by default (etcd's `--experimental-max-learners`).
pub const MAX_LEARNERS: usize = 1;

/// One member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: MemberId,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

impl Member {
    pub fn to_pb(&self) -> PbMember {
        PbMember {
            id: self.id.0,
            name: self.name.clone(),
            peer_ur_ls: self.peer_urls.clone(),
            client_ur_ls: self.client_urls.clone(),
            is_learner: self.is_learner,
        }
    }

    pub fn from_pb(m: PbMember) -> Member {
        Member {
            id: MemberId(m.id),
            name: m.name,
            peer_urls: m.peer_ur_ls,
            client_urls: m.client_ur_ls,
            is_learner: m.is_learner,
        }
    }
}

/// etcd's key of the cluster version in the `cluster` bucket.
const CLUSTER_VERSION_KEY: &[u8] = b"clusterVersion";

/// All members, by id, and the cluster version they agreed on.
#[derive(Debug, Clone, Default)]
pub struct Members {
    map: BTreeMap<MemberId, Member>,
    /// The cluster version (`3.5.0`), once the leader decided it.
    version: Option<String>,
}

impl Members {
    pub fn new(members: impl IntoIterator<Item = Member>) -> Members {
        Members { map: members.into_iter().map(|m| (m.id, m)).collect(), version: None }
    }

    /// The cluster version (`3.5.0`), if decided.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// Sets the cluster version, and writes it where etcd keeps it.
    pub fn set_version(&mut self, wtx: &WriteTxn<'_>, version: &str) -> Result<(), oxcd_backend::BackendError> {
        wtx.bucket(CLUSTER)?.put(CLUSTER_VERSION_KEY, version.as_bytes())?;
        self.version = Some(version.to_string());
        Ok(())
    }

    /// Reads the members bucket.
    pub fn load(rtx: &ReadTxn) -> Result<Members, oxcd_backend::BackendError> {
        let bucket = rtx.bucket(MEMBERS)?;
        let mut map = BTreeMap::new();
        bucket.visit(&[], None, &mut |_, v| {
            if let Ok(m) = PbMember::decode(v) {
                let m = Member::from_pb(m);
                map.insert(m.id, m);
            }
            true
        })?;
        let version = rtx
            .bucket(CLUSTER)?
            .get(CLUSTER_VERSION_KEY)?
            .and_then(|v| String::from_utf8(v.to_vec()).ok())
            .filter(|v| !v.is_empty());
        Ok(Members { map, version })
    }

    /// Writes one member into the members bucket.
    pub fn save(wtx: &WriteTxn<'_>, m: &Member) -> Result<(), oxcd_backend::BackendError> {
        wtx.bucket(MEMBERS)?.put(&m.id.0.to_be_bytes(), &m.to_pb().encode_to_vec())
    }

    /// Records a removed member in etcd's `members_removed` bucket (key: the id in hex, as etcd).
    pub fn mark_removed(wtx: &WriteTxn<'_>, id: MemberId) -> Result<(), oxcd_backend::BackendError> {
        wtx.bucket(MEMBERS_REMOVED)?.put(format!("{:x}", id.0).as_bytes(), b"removed")
    }

    /// The members removed from the cluster.
    pub fn load_removed(rtx: &ReadTxn) -> Result<Vec<MemberId>, oxcd_backend::BackendError> {
        let mut ids = Vec::new();
        rtx.bucket(MEMBERS_REMOVED)?.visit(&[], None, &mut |k, _| {
            ids.extend(Members::removed_id(k));
            true
        })?;
        Ok(ids)
    }

    /// The member a key of the `members_removed` bucket names (etcd's and oxcd's: the id in hex).
    pub fn removed_id(key: &[u8]) -> Option<MemberId> {
        std::str::from_utf8(key).ok().and_then(|h| u64::from_str_radix(h, 16).ok()).map(MemberId)
    }

    /// Deletes one member from the members bucket.
    pub fn delete(wtx: &WriteTxn<'_>, id: MemberId) -> Result<(), oxcd_backend::BackendError> {
        wtx.bucket(MEMBERS)?.delete(&id.0.to_be_bytes()).map(drop)
    }

    pub fn insert(&mut self, m: Member) {
        self.map.insert(m.id, m);
    }

    pub fn remove(&mut self, id: MemberId) -> Option<Member> {
        self.map.remove(&id)
    }

    pub fn get(&self, id: MemberId) -> Option<&Member> {
        self.map.get(&id)
    }

    pub fn get_mut(&mut self, id: MemberId) -> Option<&mut Member> {
        self.map.get_mut(&id)
    }

    pub fn ids(&self) -> Vec<MemberId> {
        self.map.keys().copied().collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Member> {
        self.map.values()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
}

/// Applies a committed configuration change to the members: what the applier writes.
pub enum MemberChange {
    Add(Member),
    Promote(MemberId),
    Remove(MemberId),
}

impl MemberChange {
    /// Reads a committed `ConfChange` entry: the change, and the proposer's request id.
    pub fn decode(data: &[u8]) -> Option<(MemberChange, u64)> {
        use protobuf::Message as _;
        MemberChange::of(&ConfChange::parse_from_bytes(data).ok()?)
    }

    /// The `ConfChange` that proposes a change of `kind` to `member` (what [`MemberChange::of`]
    /// reads back): its context carries the proposer's request id and, for an addition, the
    /// member's peer URLs (none for a promotion, an AddNode of a learner).
    pub fn proposal(kind: ConfChangeType, member: MemberId, peer_urls: Vec<String>, request_id: u64) -> ConfChange {
        let mut cc = ConfChange::default();
        cc.set_change_type(kind);
        cc.node_id = member.0;
        cc.context = ConfChangeContext { id: request_id, member_id: member.0, peer_urls }.encode_to_vec().into();
        cc
    }

    /// The change a decoded `ConfChange` makes, and the proposer's request id.
    pub fn of(cc: &ConfChange) -> Option<(MemberChange, u64)> {
        let ctx = ConfChangeContext::decode(cc.get_context()).ok()?;
        let id = MemberId(cc.node_id);
        let added = |is_learner| {
            MemberChange::Add(Member {
                id,
                name: String::new(),
                peer_urls: ctx.peer_urls.clone(),
                client_urls: Vec::new(),
                is_learner,
            })
        };
        let change = match cc.get_change_type() {
            ConfChangeType::AddNode if ctx.peer_urls.is_empty() => MemberChange::Promote(id),
            ConfChangeType::AddNode => added(false),
            ConfChangeType::AddLearnerNode => added(true),
            ConfChangeType::RemoveNode => MemberChange::Remove(id),
        };
        Some((change, ctx.id))
    }
}

impl MemberChange {
    /// Whether the change still applies to the configuration it is committed into (etcd's
    /// `ValidateConfigurationChange`, by id): the proposer checked an older view, so the Raft
    /// thread (against Raft's configuration) and the applier (against the members) check again,
    /// alike, and skip a change that no longer applies. `role` tells whether a member exists and
    /// is a learner.
    pub fn check(
        &self,
        role: impl Fn(MemberId) -> Option<bool>,
        learners: usize,
        max_learners: usize,
    ) -> Result<(), EtcdError> {
        match self {
            MemberChange::Add(m) if role(m.id).is_some() => Err(EtcdError::MemberExist),
            MemberChange::Add(m) if m.is_learner && learners >= max_learners => Err(EtcdError::TooManyLearners),
            MemberChange::Add(_) => Ok(()),
            MemberChange::Promote(id) => match role(*id) {
                Some(true) => Ok(()),
                Some(false) => Err(EtcdError::MemberNotLearner),
                None => Err(EtcdError::MemberNotFound),
            },
            MemberChange::Remove(id) if role(*id).is_some() => Ok(()),
            MemberChange::Remove(_) => Err(EtcdError::MemberNotFound),
        }
    }
}

/// How the WAL's Snapshot records carry a Raft configuration.
pub fn encode_conf_state(cs: &ConfState) -> Vec<u8> {
    use protobuf::Message as _;
    cs.write_to_bytes().expect("conf state encodes")
}

/// Decodes what [`encode_conf_state`] wrote.
pub fn decode_conf_state(b: &[u8]) -> Option<ConfState> {
    use protobuf::Message as _;
    ConfState::parse_from_bytes(b).ok()
}

/// Helpers for tests, here and in the crates above.
#[cfg(any(test, feature = "test-util"))]
pub mod testing {
    use super::*;

    /// A member for tests: id `id`, peer URL on port `id`.
    pub fn member(id: u64, name: &str, learner: bool) -> Member {
        Member {
            id: MemberId(id),
            name: name.into(),
            peer_urls: vec![format!("http://127.0.0.1:{id}")],
            client_urls: Vec::new(),
            is_learner: learner,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::member;
    use super::*;

    #[test]
    fn conf_change_entries_decode_to_member_changes() {
        use protobuf::Message as _;
        let mut cc = ConfChange::default();
        cc.set_change_type(ConfChangeType::AddLearnerNode);
        cc.node_id = 7;
        cc.context =
            ConfChangeContext { id: 99, member_id: 7, peer_urls: vec!["http://h:1".into()] }.encode_to_vec().into();
        let (change, req) = MemberChange::decode(&cc.write_to_bytes().unwrap()).unwrap();
        assert_eq!(req, 99);
        assert!(matches!(change, MemberChange::Add(m) if m.is_learner && m.peer_urls == ["http://h:1"]));
        cc.set_change_type(ConfChangeType::AddNode);
        cc.context = ConfChangeContext { id: 100, member_id: 7, peer_urls: vec![] }.encode_to_vec().into();
        assert!(matches!(
            MemberChange::decode(&cc.write_to_bytes().unwrap()).unwrap().0,
            MemberChange::Promote(MemberId(7))
        ));
        assert!(MemberChange::decode(b"\xff\xff").is_none());
    }

    #[test]
    fn committed_changes_are_checked_again_against_the_configuration() {
        let learner = |id| Member { is_learner: true, ..member(id, "", true) };
        let roles = |id: MemberId| match id.0 {
            1 => Some(false),
            2 => Some(true),
            _ => None,
        };
        let add = |m: Member| MemberChange::Add(m);
        assert_eq!(add(member(1, "", false)).check(roles, 1, MAX_LEARNERS), Err(EtcdError::MemberExist));
        assert_eq!(add(learner(3)).check(roles, 1, MAX_LEARNERS), Err(EtcdError::TooManyLearners));
        assert_eq!(add(member(3, "", false)).check(roles, 1, MAX_LEARNERS), Ok(()));
        assert_eq!(MemberChange::Promote(MemberId(2)).check(roles, 1, MAX_LEARNERS), Ok(()));
        assert_eq!(MemberChange::Promote(MemberId(1)).check(roles, 1, MAX_LEARNERS), Err(EtcdError::MemberNotLearner));
        assert_eq!(MemberChange::Promote(MemberId(3)).check(roles, 1, MAX_LEARNERS), Err(EtcdError::MemberNotFound));
        assert_eq!(MemberChange::Remove(MemberId(2)).check(roles, 1, MAX_LEARNERS), Ok(()));
        assert_eq!(MemberChange::Remove(MemberId(3)).check(roles, 1, MAX_LEARNERS), Err(EtcdError::MemberNotFound));
    }
}
