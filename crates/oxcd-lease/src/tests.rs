use super::*;

const S: Duration = Duration::from_secs(1);

fn lessor() -> Lessor {
    Lessor::with_limits(2, S)
}

#[test]
fn grant_revoke_attach_and_limits() {
    let l = lessor();
    let t0 = Instant::now();
    let id = LeaseId(0x1234);
    assert!(!l.lookup(id));
    assert_eq!(l.grant(id, 1, t0), Ok(2), "raised to the minimum TTL");
    assert_eq!(l.grant(id, 10, t0), Err(GrantError::Exists));
    assert_eq!(l.grant(LeaseId::NONE, 10, t0), Err(GrantError::Exists));
    assert_eq!(l.grant(LeaseId(9), MAX_LEASE_TTL_SECS + 1, t0), Err(GrantError::TtlTooLarge));
    l.attach(id, b"b");
    l.attach(id, b"a");
    assert_eq!(l.lease_of(b"b"), Some(id));
    assert_eq!(l.detach(b"b"), Some(id));
    assert_eq!(l.detach(b"b"), None);
    assert_eq!(l.lease_of(b"b"), None);
    assert_eq!(l.ttl_secs(id), Some(2));
    assert_eq!(l.revoke(id), Some(vec![b"a".to_vec().into_boxed_slice()]));
    assert_eq!(l.lease_of(b"a"), None, "revoking forgets the keys");
    assert_eq!(l.revoke(id), None);
    assert_eq!(LeaseId(0x1234).to_string(), "1234");
}

#[test]
fn only_the_primary_renews_and_expires() {
    let l = lessor();
    let t0 = Instant::now();
    let id = LeaseId(1);
    l.grant(id, 10, t0).unwrap();
    assert_eq!(l.renew(id, t0), Err(RenewError::NotPrimary));
    assert!(l.expired(t0 + 60 * S, 10, S).is_empty(), "followers never expire leases");
    l.promote(t0);
    assert_eq!(l.renew(id, t0 + 5 * S), Ok(10));
    assert!(l.expired(t0 + 14 * S, 10, S).is_empty(), "renewed until 15 s");
    assert_eq!(l.expired(t0 + 15 * S, 10, S), vec![id]);
    assert!(l.expired(t0 + 15 * S, 10, S).is_empty(), "already being revoked");
    assert_eq!(l.expired(t0 + 17 * S, 10, S), vec![id], "proposed again after retry_after");
    assert_eq!(l.renew(id, t0 + 17 * S), Err(RenewError::NotFound), "expired leases are not renewed");
    assert!(!l.is_live(id, t0 + 17 * S), "expired on the leader before its revoke is applied");
    assert_eq!(l.renew(LeaseId(99), t0), Err(RenewError::NotFound));
}

#[test]
fn a_new_leader_continues_from_the_checkpointed_remaining_ttl() {
    let old = lessor();
    let new = lessor();
    let t0 = Instant::now();
    let id = LeaseId(7);
    for l in [&old, &new] {
        l.grant(id, 10, t0).unwrap();
    }
    old.promote(t0);
    // The client renews at 6 s on the old leader; the checkpoint reaches the other member at once.
    old.renew(id, t0 + 6 * S).unwrap();
    let cps = old.take_checkpoints(t0 + 6 * S, 10);
    assert_eq!(cps, vec![(id, 10 * S)]);
    new.checkpoint(id, cps[0].1, t0 + 6 * S);
    // The old leader dies; the new one takes over at 9 s: the deadline stays 16 s, not 19 s.
    new.promote(t0 + 9 * S);
    assert!(new.expired(t0 + 15 * S, 10, S).is_empty());
    assert_eq!(new.expired(t0 + 16 * S, 10, S), vec![id]);
    let ttl = new.time_to_live(id, t0 + 10 * S, false).unwrap();
    assert_eq!((ttl.remaining_secs, ttl.granted_ttl_secs), (6, 10));
}

#[test]
fn a_new_leader_gives_at_least_the_promote_grace() {
    let l = lessor();
    let t0 = Instant::now();
    l.grant(LeaseId(1), 2, t0).unwrap();
    // Taking over long after the estimate passed: the lease still gets one grace period.
    l.promote(t0 + 10 * S);
    assert!(l.expired(t0 + 10 * S, 10, S).is_empty());
    assert_eq!(l.expired(t0 + 11 * S, 10, S), vec![LeaseId(1)]);
    l.demote();
    assert!(!l.is_primary());
    assert!(l.expired(t0 + 100 * S, 10, S).is_empty());
}

#[test]
fn expiry_is_paced_by_the_limit() {
    let l = lessor();
    let t0 = Instant::now();
    l.promote(t0);
    for i in 1..=25 {
        l.grant(LeaseId(i), 2, t0).unwrap();
    }
    let later = t0 + 3 * S;
    assert_eq!(l.expired(later, 10, S).len(), 10);
    assert_eq!(l.expired(later, 10, S).len(), 10);
    assert_eq!(l.expired(later, 10, S).len(), 5);
    assert_eq!(l.leases().len(), 25);
}

#[test]
fn time_to_live_keys_and_restore() {
    let l = lessor();
    let t0 = Instant::now();
    l.restore(LeaseId(3), 60, 30 * S, t0);
    l.attach(LeaseId(3), b"z");
    l.attach(LeaseId(3), b"y");
    let ttl = l.time_to_live(LeaseId(3), t0 + 10 * S, true).unwrap();
    assert_eq!(ttl.remaining_secs, 20);
    assert_eq!(ttl.keys, vec![b"y".to_vec().into_boxed_slice(), b"z".to_vec().into_boxed_slice()]);
    assert_eq!(l.time_to_live(LeaseId(4), t0, true), None);
    assert_eq!(l.time_to_live(LeaseId(3), t0 + 100 * S, false).unwrap().remaining_secs, 0, "never negative");
}

#[test]
fn a_late_checkpoint_only_extends_the_leaders_deadline() {
    let l = lessor();
    let t0 = Instant::now();
    let id = LeaseId(5);
    l.grant(id, 10, t0).unwrap();
    l.promote(t0);
    // A renewal from the previous leader, committed after the takeover: the deadline moves later.
    l.checkpoint(id, 10 * S, t0 + 5 * S);
    assert!(l.expired(t0 + 14 * S, 10, S).is_empty());
    assert_eq!(l.expired(t0 + 15 * S, 10, S), vec![id]);
    // An older, shorter one does not move it earlier.
    let l = lessor();
    l.grant(id, 10, t0).unwrap();
    l.promote(t0);
    l.checkpoint(id, 2 * S, t0 + S);
    assert!(l.expired(t0 + 9 * S, 10, S).is_empty());
}

#[test]
fn checkpoints_cover_renewed_leases_first_then_go_round_all_of_them() {
    let l = lessor();
    let t0 = Instant::now();
    for i in 1..=5 {
        l.grant(LeaseId(i), 60, t0).unwrap();
    }
    assert!(l.take_checkpoints(t0, 3).is_empty(), "followers do not checkpoint");
    l.promote(t0);
    l.renew(LeaseId(4), t0 + S).unwrap();
    let ids = |v: Vec<(LeaseId, Duration)>| v.into_iter().map(|(id, _)| id.0).collect::<Vec<_>>();
    assert_eq!(ids(l.take_checkpoints(t0 + S, 3)), vec![4, 1, 2]);
    assert_eq!(ids(l.take_checkpoints(t0 + S, 3)), vec![3, 4, 5]);
    assert_eq!(ids(l.take_checkpoints(t0 + S, 3)), vec![1, 2, 3]);
    // What is left is measured against the leader's deadline.
    let cp = l.take_checkpoints(t0 + 10 * S, 1);
    assert_eq!(cp, vec![(LeaseId(4), 51 * S)]);
}

#[test]
fn liveness_on_the_leader_follows_the_deadline() {
    let l = lessor();
    let t0 = Instant::now();
    let id = LeaseId(8);
    l.grant(id, 5, t0).unwrap();
    assert!(l.is_live(id, t0 + 60 * S), "a follower only knows the lease exists");
    l.promote(t0);
    assert!(l.is_live(id, t0 + 4 * S));
    assert!(!l.is_live(id, t0 + 5 * S), "past its deadline, even before the revoke is applied");
    assert!(!l.is_live(LeaseId(9), t0));
}
