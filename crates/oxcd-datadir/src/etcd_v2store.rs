//! What oxcd reads of etcd's v2 store, the JSON an etcd snapshot carries in its data
//! (docs/etcd-peer-protocol.md §4.1): the members under `/0/members/<id hex>` (`raftAttributes`:
//! peer URLs and learner flag; `attributes`: name and client URLs), the removed ones under
//! `/0/removed_members`, and the cluster version at `/0/version`.
//!
//! etcd 3.5.1 keeps the members' attributes only there: its backend's `members` bucket holds each
//! member as it was added (an update of the attributes finds the key present and leaves it).

use serde_json::Value;

use crate::ids::MemberId;
use crate::membership::Member;

/// The membership an etcd snapshot's v2 store holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct V2Membership {
    pub members: Vec<Member>,
    pub removed: Vec<MemberId>,
    /// `major.minor.0`, once decided.
    pub version: Option<String>,
}

/// The children of the node at `path` (names of the path's parts), if it is a directory.
fn children<'a>(root: &'a Value, path: &[&str]) -> Option<&'a serde_json::Map<String, Value>> {
    let mut node = root;
    for part in path {
        node = node.get("Children")?.get(*part)?;
    }
    node.get("Children")?.as_object()
}

fn value<'a>(node: &'a Value, child: &str) -> Option<&'a str> {
    node.get("Children")?.get(child)?.get("Value")?.as_str()
}

#[derive(serde::Deserialize)]
struct RaftAttributes {
    #[serde(rename = "peerURLs", default)]
    peer_urls: Option<Vec<String>>,
    #[serde(rename = "isLearner", default)]
    is_learner: bool,
}

#[derive(serde::Deserialize, Default)]
struct Attributes {
    #[serde(default)]
    name: String,
    #[serde(rename = "clientURLs", default)]
    client_urls: Option<Vec<String>>,
}

/// Reads the membership out of a snapshot's v2 store (`data`).
pub fn read(data: &[u8]) -> Result<V2Membership, String> {
    let store: Value = serde_json::from_slice(data).map_err(|e| format!("the v2 store: {e}"))?;
    let root = store.get("Root").ok_or("the v2 store has no root")?;
    let mut out = V2Membership::default();
    for (id, node) in children(root, &["0", "members"]).into_iter().flatten() {
        let id = u64::from_str_radix(id, 16).map_err(|_| format!("a member id {id:?}"))?;
        let raft = value(node, "raftAttributes").ok_or(format!("member {id:x} has no raftAttributes"))?;
        let raft: RaftAttributes =
            serde_json::from_str(raft).map_err(|e| format!("member {id:x}'s raftAttributes: {e}"))?;
        let attrs: Attributes = match value(node, "attributes") {
            Some(a) => serde_json::from_str(a).map_err(|e| format!("member {id:x}'s attributes: {e}"))?,
            None => Attributes::default(),
        };
        out.members.push(Member {
            id: MemberId(id),
            name: attrs.name,
            peer_urls: raft.peer_urls.unwrap_or_default(),
            client_urls: attrs.client_urls.unwrap_or_default(),
            is_learner: raft.is_learner,
        });
    }
    for id in children(root, &["0", "removed_members"]).into_iter().flatten().map(|(id, _)| id) {
        out.removed.push(MemberId(u64::from_str_radix(id, 16).map_err(|_| format!("a removed member id {id:?}"))?));
    }
    out.version =
        root.get("Children").and_then(|c| c.get("0")).and_then(|zero| value(zero, "version")).map(str::to_owned);
    out.members.sort_by_key(|m| m.id);
    out.removed.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_removed_members_and_version_are_read_as_etcd_writes_them() {
        let data = br#"{"Root":{"Path":"/","CreatedIndex":0,"ModifiedIndex":0,"ExpireTime":"0001-01-01T00:00:00Z","Value":"","Children":{
  "0":{"Path":"/0","CreatedIndex":0,"ModifiedIndex":0,"ExpireTime":"0001-01-01T00:00:00Z","Value":"","Children":{
    "members":{"Path":"/0/members","CreatedIndex":1,"ModifiedIndex":1,"ExpireTime":"0001-01-01T00:00:00Z","Value":"","Children":{
      "1c66bff0dc8c6bbd":{"Path":"/0/members/1c66bff0dc8c6bbd","CreatedIndex":1,"ModifiedIndex":1,"ExpireTime":"0001-01-01T00:00:00Z","Value":"","Children":{
        "attributes":{"Path":"/0/members/1c66bff0dc8c6bbd/attributes","CreatedIndex":5,"ModifiedIndex":5,"ExpireTime":"0001-01-01T00:00:00Z","Value":"{\"name\":\"infra1\",\"clientURLs\":[\"http://10.0.0.1:2379\"]}","Children":null},
        "raftAttributes":{"Path":"/0/members/1c66bff0dc8c6bbd/raftAttributes","CreatedIndex":1,"ModifiedIndex":1,"ExpireTime":"0001-01-01T00:00:00Z","Value":"{\"peerURLs\":[\"http://10.0.0.1:2380\"]}","Children":null}}},
      "e0a1b2c3d4e5f607":{"Path":"/0/members/e0a1b2c3d4e5f607","CreatedIndex":11,"ModifiedIndex":11,"ExpireTime":"0001-01-01T00:00:00Z","Value":"","Children":{
        "raftAttributes":{"Path":"/0/members/e0a1b2c3d4e5f607/raftAttributes","CreatedIndex":11,"ModifiedIndex":11,"ExpireTime":"0001-01-01T00:00:00Z","Value":"{\"peerURLs\":[\"http://10.0.0.9:2380\"],\"isLearner\":true}","Children":null}}}}},
    "removed_members":{"Path":"/0/removed_members","CreatedIndex":10,"ModifiedIndex":10,"ExpireTime":"0001-01-01T00:00:00Z","Value":"","Children":{
      "5b4e3d2c1a09f8e7":{"Path":"/0/removed_members/5b4e3d2c1a09f8e7","CreatedIndex":10,"ModifiedIndex":10,"ExpireTime":"0001-01-01T00:00:00Z","Value":"","Children":null}}},
    "version":{"Path":"/0/version","CreatedIndex":8,"ModifiedIndex":8,"ExpireTime":"0001-01-01T00:00:00Z","Value":"3.5.0","Children":null}}},
  "1":{"Path":"/1","CreatedIndex":0,"ModifiedIndex":0,"ExpireTime":"0001-01-01T00:00:00Z","Value":"","Children":{}}}},
 "CurrentIndex":11,"CurrentVersion":2}"#;
        let m = read(data).unwrap();
        assert_eq!(
            m.members,
            [
                Member {
                    id: MemberId(0x1c66bff0dc8c6bbd),
                    name: "infra1".into(),
                    peer_urls: vec!["http://10.0.0.1:2380".into()],
                    client_urls: vec!["http://10.0.0.1:2379".into()],
                    is_learner: false,
                },
                Member {
                    id: MemberId(0xe0a1b2c3d4e5f607),
                    name: String::new(),
                    peer_urls: vec!["http://10.0.0.9:2380".into()],
                    client_urls: vec![],
                    is_learner: true,
                },
            ]
        );
        assert_eq!(m.removed, [MemberId(0x5b4e3d2c1a09f8e7)]);
        assert_eq!(m.version.as_deref(), Some("3.5.0"));
        assert!(read(b"{}").is_err());
        assert!(read(br#"{"Root":{"Children":{"0":{"Children":{"members":{"Children":{"zz":{}}}}}}}}"#).is_err());
    }
}
