//! Corruption detection, as etcd 3.5 does it: members compare their MVCC hashes (HashKV) over the
//! peer port.
//!
//! - `--experimental-initial-corrupt-check`: before it joins Raft, a member compares its hash at
//!   its current revision with every reachable peer's at that revision; a peer with the same
//!   compact revision and another hash stops the start ("found data inconsistency with peers").
//! - `--experimental-corrupt-check-time`: every so often the leader compares its hash with its
//!   followers' and raises the CORRUPT alarm through Raft for the member that differs (or for
//!   itself if its own hash changed under it); while CORRUPT is raised, writes are refused.

use std::sync::Arc;
use std::time::Duration;

use oxcd_api::EtcdError;
use oxcd_api::etcdserverpb::{AlarmRequest, AlarmType, HashKvResponse, ResponseHeader, alarm_request};
use oxcd_api::oxcdpb::internal_raft_request::Request as Proposal;
use oxcd_mvcc::{MvccError, Store};
use prost::Message;

use crate::ids::{ClusterId, MemberId};
use crate::membership::Members;
use crate::raft::{HashAnswer, PeerTls, fetch_hashkv};
use crate::server::EtcdServer;

/// How long a peer has to answer (etcd's `PeerHashKVTimeout`... bounded by its request timeout).
const PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// What a peer said.
#[derive(Debug)]
pub enum PeerHash {
    Answer(HashKvResponse),
    Refused(HashAnswer),
    Unreachable(String),
}

/// This member's HashKV at `rev`, as a peer's request is answered. With `compactions`, the hash
/// computed at the compaction at `rev` if that is one of the last, as the hash storage of later
/// etcd 3.5 releases answers (oxcd's own members ask so); without, as etcd 3.5.1's
/// `/members/hashkv` answers (the compaction revision itself is compacted).
pub fn answer(
    store: &Store,
    cluster: ClusterId,
    me: MemberId,
    rev: i64,
    compactions: bool,
) -> Result<HashKvResponse, HashAnswer> {
    let stored = compactions
        .then(|| store.compaction_hash(rev))
        .flatten()
        .map(|h| oxcd_mvcc::KvHash { current_rev: store.current_rev(), ..h });
    match stored.map_or_else(|| store.hash_by_rev(rev), Ok) {
        Ok(h) => Ok(HashKvResponse {
            header: Some(ResponseHeader {
                cluster_id: cluster.0,
                member_id: me.0,
                revision: h.current_rev,
                raft_term: 0,
            }),
            hash: h.hash,
            compact_revision: h.compact_rev,
            hash_revision: h.hash_rev,
        }),
        Err(MvccError::Compacted) => Err(HashAnswer::Compacted),
        Err(MvccError::FutureRev) => Err(HashAnswer::FutureRev),
        Err(_) => Err(HashAnswer::Unavailable),
    }
}

/// Asks every other member for its HashKV at `rev` (blocking; one peer after another, each with
/// [`PEER_TIMEOUT`]).
pub fn peer_hashes(
    members: &Members,
    me: MemberId,
    cluster: ClusterId,
    tls: &PeerTls,
    rev: i64,
) -> Vec<(MemberId, PeerHash)> {
    let mut out = Vec::new();
    for m in members.iter().filter(|m| m.id != me) {
        let mut last = PeerHash::Unreachable("no peer URL".into());
        for url in &m.peer_urls {
            last = match fetch_hashkv(url, tls, me, cluster, rev, PEER_TIMEOUT) {
                Ok(Ok(bytes)) => match HashKvResponse::decode(&bytes[..]) {
                    Ok(r) => PeerHash::Answer(r),
                    Err(e) => PeerHash::Unreachable(e.to_string()),
                },
                Ok(Err(code)) => PeerHash::Refused(code),
                Err(e) => PeerHash::Unreachable(format!("{url}: {e}")),
            };
            if !matches!(last, PeerHash::Unreachable(_)) {
                break;
            }
        }
        out.push((m.id, last));
    }
    out
}

/// `--experimental-initial-corrupt-check`: an error when a peer at the same compact revision has
/// another hash at this member's revision (etcd's `CheckInitialHashKV`).
pub fn initial_check(
    store: &Store,
    members: &Members,
    me: MemberId,
    cluster: ClusterId,
    tls: &PeerTls,
) -> Result<(), String> {
    tracing::info!(local_member_id = %me, "starting initial corruption check");
    let h = store.hash_by_rev(0).map_err(|e| format!("{me} failed to fetch hash ({e})"))?;
    let mut mismatch = 0;
    for (peer, said) in peer_hashes(members, me, cluster, tls, h.current_rev) {
        match said {
            PeerHash::Answer(r) if r.hash != h.hash => {
                if r.compact_revision == h.compact_rev {
                    tracing::warn!(
                        local_member_id = %me, local_member_revision = h.current_rev,
                        local_member_compact_revision = h.compact_rev, local_member_hash = h.hash,
                        remote_peer_id = %peer, remote_peer_hash = r.hash,
                        remote_peer_compact_revision = r.compact_revision,
                        "found different hash values from remote peer"
                    );
                    mismatch += 1;
                } else {
                    tracing::warn!(
                        local_member_id = %me, local_member_compact_revision = h.compact_rev,
                        remote_peer_id = %peer, remote_peer_compact_revision = r.compact_revision,
                        "found different compact revision values from remote peer"
                    );
                }
            }
            PeerHash::Answer(_) => {}
            PeerHash::Refused(HashAnswer::FutureRev) => {
                tracing::warn!(local_member_id = %me, remote_peer_id = %peer, "cannot fetch hash from slow remote peer")
            }
            PeerHash::Refused(HashAnswer::Compacted) => tracing::warn!(
                local_member_id = %me, remote_peer_id = %peer,
                "cannot fetch hash from remote peer; local member is behind"
            ),
            PeerHash::Refused(_) => {}
            PeerHash::Unreachable(why) => {
                tracing::warn!(local_member_id = %me, remote_peer_id = %peer, error = %why, "failed hash kv request")
            }
        }
    }
    if mismatch > 0 {
        return Err(format!("{me} found data inconsistency with peers"));
    }
    tracing::info!(local_member_id = %me, "initial corruption checking passed; no corruption");
    Ok(())
}

/// `--experimental-corrupt-check-time`: the leader's periodic check (etcd's `monitorKVHash`).
pub async fn monitor(server: Arc<EtcdServer>, every: Duration) {
    tracing::info!(local_member_id = %server.id, interval = ?every, "enabled corruption checking");
    while server.next_turn_as_leader(every).await {
        if let Err(e) = check(&server).await {
            tracing::warn!(error = %e, "failed to check hash KV");
        }
    }
}

/// One pass of the leader's check (etcd's `checkHashKV`): raises CORRUPT for the first member
/// found inconsistent.
pub async fn check(server: &Arc<EtcdServer>) -> Result<(), EtcdError> {
    let store = server.store();
    let h = hash_now(&store).await?;
    let (members, me, cluster, tls) = (server.members(), server.id, server.cluster_id, server.transport.tls().clone());
    let peers = tokio::task::spawn_blocking(move || peer_hashes(&members, me, cluster, &tls, h.current_rev))
        .await
        .map_err(|_| EtcdError::Stopped)?;
    server.linearizable_read().await?;
    let h2 = hash_now(&store).await?;
    let mut suspect = None;
    if h2.hash != h.hash && h2.current_rev == h.current_rev && h2.compact_rev == h.compact_rev {
        tracing::warn!(leader_member_id = %me, leader_revision = h.current_rev, leader_hash = h.hash, leader_hash_now = h2.hash, "found hash mismatch");
        suspect = Some(me);
    }
    let mut checked = 0;
    for (peer, said) in peers {
        let PeerHash::Answer(r) = said else { continue };
        checked += 1;
        let rev = r.header.as_ref().map_or(0, |h| h.revision);
        let why = if rev > h2.current_rev {
            "revision from follower must be less than or equal to leader's"
        } else if r.compact_revision > h2.compact_rev {
            "compact revision from follower must be less than or equal to leader's"
        } else if r.compact_revision == h.compact_rev && r.hash != h.hash {
            "same compact revision then hashes must match"
        } else {
            continue;
        };
        tracing::warn!(
            leader_member_id = %me, leader_revision = h2.current_rev, leader_compact_revision = h2.compact_rev,
            leader_hash = h.hash, follower_member_id = %peer, follower_revision = rev,
            follower_compact_revision = r.compact_revision, follower_hash = r.hash, "{why}"
        );
        suspect.get_or_insert(peer);
    }
    tracing::info!(number_of_peers_checked = checked, "finished peer corruption check");
    if let Some(id) = suspect {
        raise_corrupt(server, id).await?;
    }
    Ok(())
}

/// Raises CORRUPT for member `id` through Raft.
async fn raise_corrupt(server: &EtcdServer, id: MemberId) -> Result<(), EtcdError> {
    let raise = AlarmRequest {
        action: alarm_request::AlarmAction::Activate as i32,
        member_id: id.0,
        alarm: AlarmType::Corrupt as i32,
    };
    server.propose(Proposal::Alarm(raise)).await.map(drop)
}

/// `--experimental-compact-hash-check-enabled`: every `every`, the leader compares the hashes
/// it computed at its last compactions with its followers' for the same revisions (etcd's
/// `CompactHashCheck`): a follower at the same compact revision with another hash raises CORRUPT
/// (for member 0: which side is corrupt is not known, as in etcd).
pub async fn monitor_compaction_hashes(server: Arc<EtcdServer>, every: Duration) {
    tracing::info!(local_member_id = %server.id, interval = ?every, "enabled compaction hash check");
    let mut checked_up_to = 0;
    while server.next_turn_as_leader(every).await {
        let hashes: Vec<_> =
            server.store().compaction_hashes().into_iter().filter(|h| h.hash_rev > checked_up_to).collect();
        if hashes.is_empty() {
            continue;
        }
        let (members, me, cluster, tls) =
            (server.members(), server.id, server.cluster_id, server.transport.tls().clone());
        let pass = move || compare_compaction_hashes(&members, me, cluster, &tls, &hashes);
        let Ok(outcome) = tokio::task::spawn_blocking(pass).await else { return };
        match outcome {
            CompactionCheck::Mismatch => {
                if let Err(e) = raise_corrupt(&server, MemberId(0)).await {
                    tracing::warn!(error = %e, "raising the CORRUPT alarm");
                }
            }
            CompactionCheck::AllChecked(rev) => checked_up_to = checked_up_to.max(rev),
            CompactionCheck::Incomplete => {}
        }
    }
}

/// What one pass of the compaction hash check found.
enum CompactionCheck {
    Mismatch,
    /// Every peer agreed at this revision.
    AllChecked(i64),
    Incomplete,
}

/// One pass of etcd's `CompactHashCheck` over `hashes` (newest first).
fn compare_compaction_hashes(
    members: &Members,
    me: MemberId,
    cluster: ClusterId,
    tls: &PeerTls,
    hashes: &[oxcd_mvcc::KvHash],
) -> CompactionCheck {
    tracing::info!(local_member_id = %me, "starting compact hash check");
    for h in hashes {
        let peers = peer_hashes(members, me, cluster, tls, h.hash_rev);
        if peers.is_empty() {
            continue;
        }
        let mut checked = 0;
        for (peer, said) in &peers {
            let PeerHash::Answer(r) = said else { continue };
            if r.compact_revision != h.compact_rev {
                continue;
            }
            if r.hash != h.hash {
                tracing::error!(
                    revision = h.hash_rev,
                    leader_compact_revision = h.compact_rev,
                    leader_hash = h.hash,
                    follower_compact_revision = r.compact_revision,
                    follower_hash = r.hash,
                    follower_peer_id = %peer,
                    "failed compaction hash check"
                );
                return CompactionCheck::Mismatch;
            }
            checked += 1;
        }
        if checked == peers.len() {
            tracing::info!(
                number_of_peers_checked = checked,
                revision = h.hash_rev,
                "successfully checked hash on whole cluster"
            );
            return CompactionCheck::AllChecked(h.hash_rev);
        }
        tracing::warn!(
            number_of_peers_checked = checked,
            number_of_peers = peers.len(),
            revision = h.hash_rev,
            "skipped revision in compaction hash check; was not able to check all peers"
        );
    }
    CompactionCheck::Incomplete
}

async fn hash_now(store: &Arc<Store>) -> Result<oxcd_mvcc::KvHash, EtcdError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.hash_by_rev(0)).await.map_err(|_| EtcdError::Stopped)?.map_err(
        |e| match e {
            MvccError::Compacted => EtcdError::Compacted,
            MvccError::FutureRev => EtcdError::FutureRev,
            _ => EtcdError::Stopped,
        },
    )
}
