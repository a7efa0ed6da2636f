//! Cluster membership: the members, their peer URLs (how Raft reaches them) and their published
//! attributes (name, client URLs). Stored in the backend's `members` bucket as `etcdserverpb.Member`,
//! so a restarted member needs no `--initial-cluster`.

use std::collections::BTreeMap;

use oxcd_api::etcdserverpb::Member as PbMember;
use oxcd_backend::{BucketRead, MEMBERS, MEMBERS_REMOVED, ReadTxn, WriteTxn};
use prost::Message;

use crate::ids::MemberId;

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

/// All members, by id.
#[derive(Debug, Clone, Default)]
pub struct Members {
    map: BTreeMap<MemberId, Member>,
}

impl Members {
    pub fn new(members: impl IntoIterator<Item = Member>) -> Members {
        Members { map: members.into_iter().map(|m| (m.id, m)).collect() }
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
        Ok(Members { map })
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
            if let Some(id) = std::str::from_utf8(k).ok().and_then(|h| u64::from_str_radix(h, 16).ok()) {
                ids.push(MemberId(id));
            }
            true
        })?;
        Ok(ids)
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
