//! What oxcd reads of etcd's v2 store, the JSON an etcd snapshot carries in its data
//! (docs/etcd-peer-protocol.md §4.1): the members under `/0/members/<id hex>` (`raftAttributes`:
//! peer URLs and learner flag; `attributes`: name and client URLs), the removed ones under
//! `/0/removed_members`, and the cluster version at `/0/version`.
//!
//! Read from the snapshots of etcd leaders, written into the snapshots oxcd sends etcd members.
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

/// The v2 store an etcd member installs from a snapshot oxcd sends (`Snapshot.Data`): the
/// members, the removed ones and the cluster version, nothing else (etcd reads its membership
/// from there). Each node's indexes count up from 1 in the order written; `WatcherHub` and `Stats`
/// are left out, so the receiver keeps its own (docs/etcd-peer-protocol.md §4.1).
pub fn write(members: &[Member], removed: &[MemberId], version: Option<&str>) -> Vec<u8> {
    let mut index = 0u64;
    let mut node = |path: String, value: String, children: Option<serde_json::Map<String, Value>>| {
        index += 1;
        serde_json::json!({
            "Path": path,
            "CreatedIndex": index,
            "ModifiedIndex": index,
            "ExpireTime": "0001-01-01T00:00:00Z",
            "Value": value,
            "Children": children.map_or(Value::Null, Value::Object),
        })
    };
    let mut zero = serde_json::Map::new();
    let mut list = serde_json::Map::new();
    let mut sorted: Vec<&Member> = members.iter().collect();
    sorted.sort_by_key(|m| m.id);
    for m in sorted {
        let dir = format!("/0/members/{:x}", m.id.0);
        let mut raft = serde_json::json!({ "peerURLs": m.peer_urls });
        if m.is_learner {
            raft["isLearner"] = Value::Bool(true);
        }
        let mut attrs = serde_json::Map::new();
        attrs.insert("raftAttributes".into(), node(format!("{dir}/raftAttributes"), raft.to_string(), None));
        // A member that never published has no attributes.
        if !m.name.is_empty() || !m.client_urls.is_empty() {
            let mut a = serde_json::Map::new();
            if !m.name.is_empty() {
                a.insert("name".into(), Value::from(m.name.clone()));
            }
            if !m.client_urls.is_empty() {
                a.insert("clientURLs".into(), Value::from(m.client_urls.clone()));
            }
            attrs.insert("attributes".into(), node(format!("{dir}/attributes"), Value::Object(a).to_string(), None));
        }
        list.insert(format!("{:x}", m.id.0), node(dir, String::new(), Some(attrs)));
    }
    zero.insert("members".into(), node("/0/members".into(), String::new(), Some(list)));
    if !removed.is_empty() {
        let mut gone = serde_json::Map::new();
        for id in removed {
            gone.insert(format!("{:x}", id.0), node(format!("/0/removed_members/{:x}", id.0), String::new(), None));
        }
        zero.insert("removed_members".into(), node("/0/removed_members".into(), String::new(), Some(gone)));
    }
    if let Some(v) = version {
        zero.insert("version".into(), node("/0/version".into(), v.to_string(), None));
    }
    let mut top = serde_json::Map::new();
    top.insert("0".into(), node("/0".into(), String::new(), Some(zero)));
    top.insert("1".into(), node("/1".into(), String::new(), Some(serde_json::Map::new())));
    let root = node("/".into(), String::new(), Some(top));
    serde_json::to_vec(&serde_json::json!({ "Root": root, "CurrentIndex": index, "CurrentVersion": 2 }))
        .expect("JSON values serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infra1() -> Member {
        Member {
            id: MemberId(0x1c66bff0dc8c6bbd),
            name: "infra1".into(),
            peer_urls: vec!["http://10.0.0.1:2380".into()],
            client_urls: vec!["http://10.0.0.1:2379".into()],
            is_learner: false,
        }
    }

    /// Added, never started: no attributes.
    fn learner() -> Member {
        Member {
            id: MemberId(0xe0a1b2c3d4e5f607),
            name: String::new(),
            peer_urls: vec!["http://10.0.0.9:2380".into()],
            client_urls: vec![],
            is_learner: true,
        }
    }

    #[test]
    fn what_is_written_reads_back() {
        let members = vec![learner(), infra1()];
        let data = write(&members, &[MemberId(7)], Some("3.5.0"));
        let back = read(&data).unwrap();
        let mut sorted = members.clone();
        sorted.sort_by_key(|m| m.id);
        assert_eq!(back, V2Membership { members: sorted, removed: vec![MemberId(7)], version: Some("3.5.0".into()) });
        let json: Value = serde_json::from_slice(&data).unwrap();
        let learner = &json["Root"]["Children"]["0"]["Children"]["members"]["Children"]["e0a1b2c3d4e5f607"];
        assert_eq!(learner["Path"], "/0/members/e0a1b2c3d4e5f607");
        assert!(learner["Children"].get("attributes").is_none(), "an unstarted member has no attributes");
        assert_eq!(json["Root"]["Children"]["1"]["Children"], serde_json::json!({}));
        assert!(json.get("WatcherHub").is_none());
    }

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
        assert_eq!(m.members, [infra1(), learner(),]);
        assert_eq!(m.removed, [MemberId(0x5b4e3d2c1a09f8e7)]);
        assert_eq!(m.version.as_deref(), Some("3.5.0"));
        assert!(read(b"{}").is_err());
        assert!(read(br#"{"Root":{"Children":{"0":{"Children":{"members":{"Children":{"zz":{}}}}}}}}"#).is_err());
    }
}
