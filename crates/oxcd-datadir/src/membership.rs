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

use crate::etcd_confchange::{EtcdChange, EtcdConfChange, MemberContext};
use crate::etcd_snapshot::EtcdMember;
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    Add(Member),
    Promote(MemberId),
    Remove(MemberId),
    /// New peer URLs (etcd's UpdateNode; oxcd's own format carries them as a request instead).
    Update(MemberId, Vec<String>),
}

/// A committed configuration change as read from its entry.
#[derive(Debug, Clone, PartialEq)]
pub struct CommittedChange {
    pub change: MemberChange,
    /// The proposer's request id.
    pub request_id: u64,
    /// The change to Raft's configuration (none for new peer URLs).
    pub raft: Option<ConfChange>,
}

impl MemberChange {
    /// Reads a committed `ConfChange` entry in either format: etcd's (its context member JSON, or
    /// none for a removal; etcd's type numbers) or oxcd's (raft-rs's type numbers, a
    /// `ConfChangeContext`, which is never empty and never starts with `{`).
    pub fn decode(data: &[u8]) -> Option<CommittedChange> {
        use protobuf::Message as _;
        if let Ok(etcd) = EtcdConfChange::decode(data)
            && etcd.context.as_deref().is_none_or(|c| c.is_empty() || c[0] == b'{')
        {
            return MemberChange::of_etcd(&etcd);
        }
        let cc = ConfChange::parse_from_bytes(data).ok()?;
        let (change, request_id) = MemberChange::of(&cc)?;
        Some(CommittedChange { change, request_id, raft: Some(cc) })
    }

    fn of_etcd(etcd: &EtcdConfChange) -> Option<CommittedChange> {
        let id = MemberId(etcd.node_id);
        let ctx = match etcd.change {
            EtcdChange::RemoveNode => MemberContext::default(),
            _ => etcd.member().ok()?,
        };
        let added = |is_learner| {
            MemberChange::Add(Member {
                id,
                name: ctx.member.name.clone(),
                peer_urls: ctx.member.peer_urls.clone(),
                client_urls: ctx.member.client_urls.clone(),
                is_learner,
            })
        };
        let change = match etcd.change {
            EtcdChange::AddNode if ctx.is_promote => MemberChange::Promote(id),
            EtcdChange::AddNode => added(false),
            EtcdChange::AddLearnerNode => added(true),
            EtcdChange::RemoveNode => MemberChange::Remove(id),
            EtcdChange::UpdateNode => MemberChange::Update(id, ctx.member.peer_urls.clone()),
        };
        Some(CommittedChange { change, request_id: etcd.id, raft: etcd.raft_change() })
    }

    /// The entry data that proposes this change with request id `request_id`, in etcd's format
    /// (what etcd 3.5.1's `AddMember`, `PromoteMember`, `RemoveMember` and `UpdateMember` write).
    pub fn etcd_proposal(&self, request_id: u64) -> Vec<u8> {
        let member = |id: MemberId, peer_urls: &[String], is_learner| EtcdMember {
            id: id.0,
            peer_urls: peer_urls.to_vec(),
            is_learner,
            ..Default::default()
        };
        let json = |m: EtcdMember, is_promote| Some(MemberContext { member: m, is_promote }.to_json());
        let (change, node, context) = match self {
            MemberChange::Add(m) => {
                let kind = if m.is_learner { EtcdChange::AddLearnerNode } else { EtcdChange::AddNode };
                (kind, m.id, json(member(m.id, &m.peer_urls, m.is_learner), false))
            }
            MemberChange::Promote(id) => (EtcdChange::AddNode, *id, json(member(*id, &[], false), true)),
            MemberChange::Remove(id) => (EtcdChange::RemoveNode, *id, None),
            MemberChange::Update(id, urls) => (EtcdChange::UpdateNode, *id, json(member(*id, urls, false), false)),
        };
        EtcdConfChange { id: request_id, change, node_id: node.0, context }.encode()
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

    /// The change a decoded `ConfChange` in oxcd's format makes, and the proposer's request id.
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
            MemberChange::Remove(id) | MemberChange::Update(id, _) if role(*id).is_some() => Ok(()),
            MemberChange::Remove(_) | MemberChange::Update(..) => Err(EtcdError::MemberNotFound),
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
        let c = MemberChange::decode(&cc.write_to_bytes().unwrap()).unwrap();
        assert_eq!(c.request_id, 99);
        assert_eq!(c.raft.unwrap().get_change_type(), ConfChangeType::AddLearnerNode);
        assert!(matches!(c.change, MemberChange::Add(m) if m.is_learner && m.peer_urls == ["http://h:1"]));
        cc.set_change_type(ConfChangeType::AddNode);
        cc.context = ConfChangeContext { id: 100, member_id: 7, peer_urls: vec![] }.encode_to_vec().into();
        assert!(matches!(
            MemberChange::decode(&cc.write_to_bytes().unwrap()).unwrap().change,
            MemberChange::Promote(MemberId(7))
        ));
        assert!(MemberChange::decode(b"\xff\xff").is_none());
    }

    #[test]
    fn etcds_conf_change_entries_decode_too() {
        // etcd's encoding, by hand: ID 3, Type (etcd's numbers), NodeID 0x10, Context.
        let etcd_cc = |kind: u64, context: Option<&str>| {
            let mut b = Vec::new();
            prost::encoding::uint64::encode(1, &3, &mut b);
            prost::encoding::uint64::encode(2, &kind, &mut b);
            prost::encoding::uint64::encode(3, &0x10, &mut b);
            if let Some(c) = context {
                prost::encoding::bytes::encode(4, &c.as_bytes().to_vec(), &mut b);
            }
            MemberChange::decode(&b).unwrap()
        };
        let id = MemberId(0x10);
        let urls = vec!["http://p:2380".to_string()];
        let raft = |c: &CommittedChange| c.raft.as_ref().map(|cc| (cc.get_change_type(), cc.node_id, cc.id));
        let learner = etcd_cc(3, Some(r#"{"id":16,"peerURLs":["http://p:2380"],"isLearner":true}"#));
        assert_eq!(learner.request_id, 3);
        assert_eq!(raft(&learner), Some((ConfChangeType::AddLearnerNode, 0x10, 3)));
        assert_eq!(learner.change, MemberChange::Add(Member { peer_urls: urls.clone(), ..member(0x10, "", true) }));
        // etcd's first entries name the members.
        let boot = etcd_cc(0, Some(r#"{"id":16,"peerURLs":["http://p:2380"],"name":"infra1"}"#));
        assert_eq!(raft(&boot), Some((ConfChangeType::AddNode, 0x10, 3)));
        assert_eq!(boot.change, MemberChange::Add(Member { peer_urls: urls.clone(), ..member(0x10, "infra1", false) }));
        let promoted = etcd_cc(0, Some(r#"{"id":16,"peerURLs":null,"isPromote":true}"#));
        assert_eq!(
            (raft(&promoted), promoted.change),
            (Some((ConfChangeType::AddNode, 0x10, 3)), MemberChange::Promote(id))
        );
        let removed = etcd_cc(1, None);
        assert_eq!(
            (raft(&removed), removed.change),
            (Some((ConfChangeType::RemoveNode, 0x10, 3)), MemberChange::Remove(id))
        );
        // New peer URLs: no change to Raft's configuration.
        let update = etcd_cc(2, Some(r#"{"id":16,"peerURLs":["http://q:2380"]}"#));
        assert_eq!((update.change, update.raft), (MemberChange::Update(id, vec!["http://q:2380".into()]), None));
    }

    #[test]
    fn oxcd_proposes_changes_in_etcds_format_and_reads_them_back() {
        let urls = vec!["http://p:2380".to_string()];
        let changes = [
            MemberChange::Add(Member { peer_urls: urls.clone(), ..member(0x10, "", false) }),
            MemberChange::Add(Member { peer_urls: urls.clone(), ..member(0x10, "", true) }),
            MemberChange::Promote(MemberId(0x10)),
            MemberChange::Remove(MemberId(0x10)),
            MemberChange::Update(MemberId(0x10), urls.clone()),
        ];
        for change in changes {
            let data = change.etcd_proposal(77);
            let etcd = EtcdConfChange::decode(&data).unwrap();
            assert_eq!((etcd.id, etcd.node_id), (77, 0x10));
            let back = MemberChange::decode(&data).unwrap();
            assert_eq!((back.change, back.request_id), (change, 77));
        }
        // What etcd 3.5.1 writes for a learner's addition and a promotion.
        let learner = MemberChange::Add(Member { peer_urls: urls, ..member(0x10, "", true) }).etcd_proposal(1);
        let etcd = EtcdConfChange::decode(&learner).unwrap();
        assert_eq!(etcd.change, EtcdChange::AddLearnerNode);
        assert_eq!(etcd.context.unwrap(), br#"{"id":16,"peerURLs":["http://p:2380"],"isLearner":true}"#);
        let promote = EtcdConfChange::decode(&MemberChange::Promote(MemberId(0x10)).etcd_proposal(1)).unwrap();
        assert_eq!(promote.context.unwrap(), br#"{"id":16,"peerURLs":[],"isPromote":true}"#);
        assert_eq!(
            EtcdConfChange::decode(&MemberChange::Remove(MemberId(0x10)).etcd_proposal(1)).unwrap().context,
            None
        );
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
