//! Raft clusters of 3 and 5 nodes on the simulated network ([`super::sim`]): elections, leader
//! changes under writes, ReadIndex across a partition, membership changes during a partition, a
//! follower brought back by a snapshot. Each test runs a few seeds; a failure names its seed.

use std::collections::BTreeSet;

use raft::prelude::ConfChangeType;

use super::sim::{Sim, Writes};

const SEEDS: [u64; 3] = [1, 7, 42];

fn elect(sim: &mut Sim) -> u64 {
    sim.run_until(300, "a leader elected", |s| s.leader().is_some());
    sim.leader().expect("leader")
}

/// Runs until every running node applied the same last index, with no writes coming in.
fn settle(sim: &mut Sim) {
    sim.set_loss(0, 0);
    sim.heal();
    sim.run_until(1000, "every node applied the same entries", |s| {
        let ids = s.ids();
        let first = s.applied(ids[0]);
        s.leader().is_some()
            && ids.iter().all(|id| s.applied(*id) == first && s.state_machine(*id) == s.state_machine(ids[0]))
    });
}

/// Proposes a write through a random node at each of `ticks` ticks, noting acknowledgements.
fn write_for(sim: &mut Sim, writes: &mut Writes, ticks: usize) {
    for _ in 0..ticks {
        writes.propose(sim);
        sim.tick();
        writes.collect(sim);
    }
}

/// Every acknowledged write is in every running node's state machine.
fn assert_acked_everywhere(sim: &Sim, writes: &Writes, seed: u64) {
    for id in sim.ids() {
        let sm = sim.state_machine(id);
        for w in &writes.acked {
            assert!(sm.values().any(|d| d == w), "seed {seed}: node {id} lost {}", String::from_utf8_lossy(w));
        }
    }
}

/// Raft §5.2: whatever the network does, at most one leader per term (checked after every step),
/// and a leader is elected once the network delivers again. PreVote and CheckQuorum are on.
#[test]
fn three_and_five_nodes_elect_one_leader_per_term_on_a_lossy_network() {
    for n in [3, 5] {
        for seed in SEEDS {
            let mut sim = Sim::new(n, seed);
            sim.set_loss(30, 3);
            sim.run(400);
            sim.set_loss(0, 0);
            let leader = elect(&mut sim);
            // Stable: with a healthy network, the leader keeps its term.
            let term = sim.term(leader);
            sim.run(200);
            assert_eq!(sim.leader(), Some(leader), "seed {seed}: leadership moved on a healthy network");
            assert_eq!(sim.term(leader), term, "seed {seed}: term moved on a healthy network");
        }
    }
}

/// The leader is cut off while clients write through every node; a new leader takes over, the old
/// one's unacknowledged proposals are overwritten, a follower crashes and restarts from its WAL.
/// No acknowledged write is lost, and every node ends with the same entries.
#[test]
fn leader_change_under_writes_loses_no_acknowledged_write() {
    for seed in SEEDS {
        let mut sim = Sim::new(5, seed);
        let first = elect(&mut sim);
        let first_term = sim.term(first);
        sim.set_loss(5, 2);
        let mut writes = Writes::default();
        let mut crashed = None;
        for t in 0..600 {
            match t {
                100 => {
                    let others: Vec<u64> = sim.ids().into_iter().filter(|i| *i != first).collect();
                    sim.partition(&[&[first], &others]);
                }
                300 => sim.heal(),
                350 => {
                    let followers: Vec<u64> = sim.ids().into_iter().filter(|i| Some(*i) != sim.leader()).collect();
                    let victim = followers[sim.below(followers.len() as u64) as usize];
                    sim.crash(victim);
                    crashed = Some(victim);
                }
                450 => sim.start(crashed.take().expect("crashed")),
                _ => {}
            }
            writes.propose(&mut sim);
            if t % 3 == 0 {
                writes.propose(&mut sim);
            }
            sim.tick();
            writes.collect(&sim);
        }
        settle(&mut sim);
        writes.collect(&sim);
        let leader = sim.leader().expect("leader");
        assert!(sim.term(leader) > first_term, "seed {seed}: no new term after the leader was cut off");
        assert!(writes.acked.len() > 400, "seed {seed}: only {} writes acknowledged", writes.acked.len());
        assert_acked_everywhere(&sim, &writes, seed);
    }
}

/// Raft §6.4: a leader cut off from the majority answers no ReadIndex (it cannot confirm it still
/// leads), while the majority's new leader answers with an index that covers every write
/// acknowledged before the read; once healed, the old leader's reads see them too.
#[test]
fn read_index_is_linearizable_across_a_partition() {
    for seed in SEEDS {
        let mut sim = Sim::new(3, seed);
        let old = elect(&mut sim);
        let mut writes = Writes::default();
        write_for(&mut sim, &mut writes, 20);
        let rest: Vec<u64> = sim.ids().into_iter().filter(|i| *i != old).collect();
        sim.partition(&[&[old], &rest]);
        let mut stale = sim.read_index(old);
        sim.run_until(300, "a leader on the majority side", |s| s.leader().is_some_and(|l| l != old));
        // Writes acknowledged on the majority side, then a read through a follower there.
        write_for(&mut sim, &mut writes, 50);
        sim.run(20);
        writes.collect(&sim);
        let last_acked = rest
            .iter()
            .flat_map(|id| sim.state_machine(*id).iter())
            .filter(|(_, d)| writes.acked.contains(d))
            .map(|(i, _)| *i)
            .max()
            .expect("writes acknowledged on the majority side");
        let new = sim.leader().expect("leader");
        let follower = *rest.iter().find(|i| **i != new).expect("a follower");
        let mut read = sim.read_index(follower);
        sim.run_until(50, "the majority's read answered", |_| !read.is_empty());
        let index = read.try_recv().expect("read index");
        assert!(index >= last_acked, "seed {seed}: read index {index} below acknowledged write at {last_acked}");
        assert!(stale.try_recv().is_err(), "seed {seed}: the cut-off leader answered a read");
        // Healed: the old leader, a follower now, reads at an index covering everything (once it
        // knows the leader: raft-rs drops a read without one, and the member's hub asks again).
        sim.heal();
        sim.run_until(100, "the old leader following", |s| s.leader_of(old) == new);
        let mut healed = sim.read_index(old);
        sim.run_until(100, "the old leader's read answered", |_| !healed.is_empty());
        let index = healed.try_recv().expect("read index");
        assert!(index >= last_acked, "seed {seed}: old leader read at {index} below {last_acked}");
        sim.run_until(100, "the old leader applied the read index", |s| s.applied(old) >= index);
        assert_acked_everywhere(&sim, &writes, seed);
    }
}

/// While two of five nodes are cut off, the majority removes one of them, adds a sixth as a
/// learner (it catches up from a snapshot), and promotes it; writes go on throughout. Healed, the
/// cut-off node that stayed catches up with the new configuration and every acknowledged write.
#[test]
fn membership_changes_during_a_partition() {
    for seed in SEEDS {
        let mut sim = Sim::new(5, seed);
        let leader = elect(&mut sim);
        let others: Vec<u64> = sim.ids().into_iter().filter(|i| *i != leader).collect();
        let (minority, majority) = (vec![others[0], others[1]], vec![leader, others[2], others[3]]);
        let mut writes = Writes::default();
        sim.partition(&[&minority, &majority]);
        let removed = minority[1];
        sim.conf_change(leader, ConfChangeType::RemoveNode, removed);
        sim.run_until(100, "the removal applied", |s| !s.conf(leader).0.contains(&removed));
        write_for(&mut sim, &mut writes, 30);
        sim.join(6);
        sim.partition(&[&minority, &[majority.clone(), vec![6]].concat()]);
        sim.conf_change(leader, ConfChangeType::AddLearnerNode, 6);
        sim.run_until(200, "the learner caught up", |s| s.applied(6) >= s.applied(leader) && s.applied(6) > 0);
        sim.promote(leader, 6);
        sim.run_until(100, "the learner promoted", |s| s.conf(leader).0.contains(&6));
        write_for(&mut sim, &mut writes, 30);
        // The removed node is stopped (as a removed member stops); the other comes back.
        sim.crash(removed);
        settle(&mut sim);
        writes.collect(&sim);
        let voters: BTreeSet<u64> = [majority.clone(), vec![minority[0], 6]].concat().into_iter().collect();
        for id in sim.ids() {
            assert_eq!(sim.conf(id), (voters.clone(), BTreeSet::new()), "seed {seed}: node {id}'s configuration");
        }
        assert!(writes.acked.len() >= 30, "seed {seed}: only {} writes acknowledged", writes.acked.len());
        assert_acked_everywhere(&sim, &writes, seed);
    }
}

/// Configuration changes in etcd's format (etcd's type numbers, member JSON) go through Raft: a
/// learner added through a follower (the proposal forwarded to the leader, where raft-rs alone
/// would drop it: it cannot read etcd's AddLearnerNode), new peer URLs that change no
/// configuration, the learner promoted, then a voter removed; writes go on throughout.
#[test]
fn etcds_configuration_changes_apply() {
    for seed in SEEDS {
        let mut sim = Sim::new(3, seed);
        sim.etcd_format = true;
        let leader = elect(&mut sim);
        let follower = *sim.ids().iter().find(|i| **i != leader).expect("follower");
        let mut writes = Writes::default();
        write_for(&mut sim, &mut writes, 10);
        sim.join(4);
        sim.conf_change(follower, ConfChangeType::AddLearnerNode, 4);
        sim.run_until(200, "the learner added and caught up", |s| {
            s.conf(leader).1.contains(&4) && s.applied(4) >= s.applied(leader) && s.applied(4) > 0
        });
        sim.update_urls(follower, 4);
        write_for(&mut sim, &mut writes, 10);
        assert!(sim.conf(leader).1.contains(&4), "seed {seed}: new peer URLs changed the configuration");
        sim.promote(leader, 4);
        sim.run_until(100, "the learner promoted", |s| s.conf(leader).0.contains(&4));
        write_for(&mut sim, &mut writes, 10);
        sim.conf_change(leader, ConfChangeType::RemoveNode, follower);
        sim.run_until(100, "the voter removed", |s| !s.conf(leader).0.contains(&follower));
        sim.crash(follower);
        write_for(&mut sim, &mut writes, 10);
        settle(&mut sim);
        writes.collect(&sim);
        let voters: BTreeSet<u64> = sim.ids().into_iter().filter(|i| *i != follower).collect();
        for id in voters.iter().copied() {
            assert_eq!(sim.conf(id), (voters.clone(), BTreeSet::new()), "seed {seed}: node {id}'s configuration");
        }
        assert_acked_everywhere(&sim, &writes, seed);
    }
}

/// A follower down while the leader compacts its log past what the follower has comes back to a
/// snapshot instead of entries, then follows the log again.
#[test]
fn a_follower_behind_the_compacted_log_catches_up_from_a_snapshot() {
    for seed in SEEDS {
        let mut sim = Sim::new(3, seed);
        let leader = elect(&mut sim);
        let follower = *sim.ids().iter().find(|i| **i != leader).expect("follower");
        sim.crash(follower);
        let mut writes = Writes::default();
        write_for(&mut sim, &mut writes, 200);
        for id in sim.ids() {
            sim.compact(id);
        }
        sim.run(5);
        assert_eq!(sim.snapshots_installed(), 0);
        sim.start(follower);
        write_for(&mut sim, &mut writes, 50);
        settle(&mut sim);
        writes.collect(&sim);
        assert_eq!(sim.snapshots_installed(), 1, "seed {seed}: the follower did not catch up from a snapshot");
        assert!(writes.acked.len() >= 200, "seed {seed}: only {} writes acknowledged", writes.acked.len());
        assert_acked_everywhere(&sim, &writes, seed);
    }
}
