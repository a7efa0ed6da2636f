//! Runtime reconfiguration: MemberAdd, MemberRemove, MemberUpdate and MemberPromote, with etcd's
//! checks and errors.
//!
//! Adding, removing and promoting are Raft configuration changes (`ConfChange` AddNode,
//! AddLearnerNode, RemoveNode; a promotion is AddNode of a learner). Their context carries the
//! proposer's request id and the member's peer URLs. The Raft thread applies each one to Raft's
//! configuration when it is committed, in log order ([`crate::raft::RaftNode`]); the applier writes
//! the members bucket in the same backend transaction as the consistent index and answers the
//! proposer. An update of peer URLs changes no Raft configuration and is an ordinary request (in
//! etcd's log format, a configuration change UpdateNode that Raft skips, as etcd's does).
//!
//! A joining member (`--initial-cluster-state existing`) asks a running member's peer port for the
//! cluster id and the members, finds itself among them by its peer URLs, and starts with an empty
//! configuration: the leader then sends it a snapshot.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use oxcd_api::EtcdError;
use oxcd_api::oxcdpb::{MemberUpdateRequest, internal_raft_request::Request};
use raft::prelude::ConfChangeType;

use crate::config::parse_url;
use crate::ids::{self, MemberId};
use crate::membership::{Member, MemberChange, Members};
use crate::raft::{RaftInput, RaftProgress};
use crate::server::EtcdServer;

/// A member heard from within this window counts as active (etcd's `HealthInterval`).
const ACTIVE_WINDOW: Duration = Duration::from_secs(5);

/// A learner may be promoted once its log has this share of the leader's (etcd's `readyPercent`).
const LEARNER_READY: f64 = 0.9;

impl EtcdServer {
    /// MemberAdd: a new member (a voter, or a learner) with these peer URLs.
    pub async fn add_member(&self, peer_urls: Vec<String>, learner: bool) -> Result<Member, EtcdError> {
        check_urls(&peer_urls)?;
        let members = self.members().clone();
        if members.iter().any(|m| m.peer_urls.iter().any(|u| peer_urls.contains(u))) {
            return Err(EtcdError::PeerUrlExist);
        }
        if learner && members.iter().filter(|m| m.is_learner).count() >= self.cfg.max_learners as usize {
            return Err(EtcdError::TooManyLearners);
        }
        if !learner && self.cfg.strict_reconfig_check && !ready_to_add_voter(&members) {
            return Err(EtcdError::MemberNotEnoughStarted);
        }
        // etcd's id for an added member: its peer URLs and the time (the cluster name is empty).
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let id = ids::member_id(&peer_urls, &now.to_string());
        if members.get(id).is_some() {
            return Err(EtcdError::MemberExist);
        }
        let kind = if learner { ConfChangeType::AddLearnerNode } else { ConfChangeType::AddNode };
        self.propose_conf_change(kind, id, peer_urls.clone()).await?;
        let added = self.members().get(id).cloned();
        Ok(added.unwrap_or(Member { id, name: String::new(), peer_urls, client_urls: Vec::new(), is_learner: learner }))
    }

    /// MemberRemove. Only the leader judges whether the cluster can spare a voter (it hears from
    /// every member); `None` means this member is not the leader, and the caller asks the leader.
    pub async fn remove_member(&self, id: MemberId) -> Option<Result<(), EtcdError>> {
        let Some(member) = self.members().get(id).cloned() else { return Some(Err(EtcdError::MemberNotFound)) };
        if !self.is_leader() {
            return None;
        }
        if !member.is_learner
            && self.cfg.strict_reconfig_check
            && let Err(e) = self.may_remove_voter(id)
        {
            return Some(Err(e));
        }
        Some(self.propose_conf_change(ConfChangeType::RemoveNode, id, Vec::new()).await)
    }

    /// MemberUpdate: new peer URLs for a member.
    pub async fn update_member(&self, id: MemberId, peer_urls: Vec<String>) -> Result<(), EtcdError> {
        check_urls(&peer_urls)?;
        let members = self.members().clone();
        if members.get(id).is_none() {
            return Err(EtcdError::MemberNotFound);
        }
        if members.iter().any(|m| m.id != id && m.peer_urls.iter().any(|u| peer_urls.contains(u))) {
            return Err(EtcdError::PeerUrlExist);
        }
        if self.state().etcd_log() {
            // etcd's log carries new peer URLs as a configuration change (UpdateNode).
            let id_ = self.ids.next();
            let data = MemberChange::Update(id, peer_urls).etcd_proposal(id_);
            return self.propose_and_wait(id_, RaftInput::ProposeConfChange(data)).await.map(drop);
        }
        self.propose(Request::MemberUpdate(MemberUpdateRequest { member_id: id.0, peer_urls })).await.map(drop)
    }

    /// MemberPromote: a learner becomes a voter, once its log has nearly caught up with the
    /// leader's (only the leader knows; `None` means this member is not the leader, and the
    /// caller asks the leader).
    pub async fn promote_member(&self, id: MemberId) -> Option<Result<(), EtcdError>> {
        let Some(member) = self.members().get(id).cloned() else { return Some(Err(EtcdError::MemberNotFound)) };
        if !member.is_learner {
            return Some(Err(EtcdError::MemberNotLearner));
        }
        let progress = self.raft_progress().await?;
        let leader_match = progress.matched(self.id.0);
        let learner_match = progress.matched(id.0);
        if (learner_match as f64) < (leader_match as f64) * LEARNER_READY {
            crate::metrics::LEARNER_PROMOTE_FAILURES.with_label_values(&["Learner not ready"]).inc();
            return Some(Err(EtcdError::LearnerNotReady));
        }
        let promoted = self.propose_conf_change(ConfChangeType::AddNode, id, Vec::new()).await;
        if promoted.is_ok() {
            crate::metrics::LEARNER_PROMOTE_SUCCESSES.inc();
        }
        Some(promoted)
    }

    /// etcd's `mayRemoveMember` (on the leader): the voters left must include a started quorum,
    /// and, unless the voter removed is down already, enough voters heard from in the last
    /// [`ACTIVE_WINDOW`] to keep a quorum.
    fn may_remove_voter(&self, id: MemberId) -> Result<(), EtcdError> {
        let members = self.members().clone();
        let voters: Vec<&Member> = members.iter().filter(|m| !m.is_learner).collect();
        let left: Vec<&&Member> = voters.iter().filter(|m| m.id != id).collect();
        let started = left.iter().filter(|m| !m.name.is_empty()).count();
        if started < left.len() / 2 + 1 {
            return Err(EtcdError::MemberNotEnoughStarted);
        }
        let since = Instant::now() - ACTIVE_WINDOW;
        let active = |m: MemberId| m == self.id || self.transport.heard_since(m, since);
        if id != self.id && !active(id) {
            // A member that is down is not part of the active quorum.
            return Ok(());
        }
        let active_voters = voters.iter().filter(|m| active(m.id)).count();
        if active_voters - 1 < 1 + (voters.len() - 1) / 2 {
            return Err(EtcdError::Unhealthy);
        }
        Ok(())
    }

    /// The leader's view of its followers' logs; `None` unless this member leads.
    async fn raft_progress(&self) -> Option<RaftProgress> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.raft_tx.send(RaftInput::Progress(tx)).ok()?;
        rx.await.ok().flatten()
    }

    /// Proposes a configuration change and waits until this member has applied it.
    async fn propose_conf_change(
        &self,
        kind: ConfChangeType,
        member: MemberId,
        peer_urls: Vec<String>,
    ) -> Result<(), EtcdError> {
        use protobuf::Message as _;
        let id = self.ids.next();
        let cc = MemberChange::proposal(kind, member, peer_urls, id);
        let data = match MemberChange::of(&cc) {
            Some((change, _)) if self.state().etcd_log() => change.etcd_proposal(id),
            _ => cc.write_to_bytes().expect("a configuration change encodes"),
        };
        self.propose_and_wait(id, RaftInput::ProposeConfChange(data)).await.map(drop)
    }
}

/// etcd's `IsReadyToAddVotingMember`: after the addition, a quorum of voters must have started
/// (published their name); a one-member cluster may always add one.
fn ready_to_add_voter(members: &Members) -> bool {
    let voters: Vec<&Member> = members.iter().filter(|m| !m.is_learner).collect();
    let started = voters.iter().filter(|m| !m.name.is_empty()).count();
    let after = voters.len() + 1;
    (started == 1 && after == 2) || started > after / 2
}

/// Peer URLs must be given and be `http(s)://host:port`.
fn check_urls(urls: &[String]) -> Result<(), EtcdError> {
    if urls.is_empty() || urls.iter().any(|u| parse_url(u).is_err()) {
        return Err(EtcdError::MemberBadUrls);
    }
    Ok(())
}

/// How long a joining member keeps asking the running members for the cluster.
pub(crate) const JOIN_TIMEOUT: Duration = Duration::from_secs(15);

#[cfg(test)]
mod tests {
    use super::*;
    use oxcd_datadir::membership::testing::member;

    #[test]
    fn voters_are_added_only_with_a_started_quorum_after_the_addition() {
        // One member: may always add one (etcd's recovery case).
        assert!(ready_to_add_voter(&Members::new([member(1, "a", false)])));
        // Two voters, one not started yet: a third would need two of three started.
        assert!(ready_to_add_voter(&Members::new([member(1, "a", false), member(2, "b", false)])));
        assert!(!ready_to_add_voter(&Members::new([member(1, "a", false), member(2, "", false)])));
        // Learners do not count.
        assert!(ready_to_add_voter(&Members::new([member(1, "a", false), member(2, "", true)])));
        let three = Members::new([member(1, "a", false), member(2, "b", false), member(3, "", false)]);
        assert!(!ready_to_add_voter(&three), "two of four started is not enough");
    }
}
