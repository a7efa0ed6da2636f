//! Raft clusters in one process: the member's own Raft thread code ([`RaftNode`], its WAL on real
//! files, its log storage, its ReadIndex hub) driven on a simulated network and a logical clock.
//!
//! The network ([`SimTransport`] per node, routed by [`Sim`]) drops, delays, reorders and
//! partitions messages; everything runs on the test's thread, so a run is a function of its seed,
//! and a failing run prints the seed. Each node's "applier" keeps the entries it applied in order
//! (its state machine); after every step the simulation checks Raft's safety properties:
//!
//! - Election Safety: at most one leader per term.
//! - State Machine Safety: no two nodes applied different entries at the same index.
//!
//! and each test checks what a client relies on: acknowledged writes survive, ReadIndex reads are
//! linearizable.
//!
//! raft-rs draws each election timeout from the thread's RNG; here each node gets a fixed timeout
//! of its own in etcd's range (election ticks to twice that), so that a seed replays exactly.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, unbounded};
use oxcd_api::oxcdpb::WalMetadata;
use oxcd_wal::{HardState as WalHardState, SnapshotRecord, Wal};
use parking_lot::Mutex;
use prost::Message as _;
use raft::StateRole;
use raft::prelude::{ConfChangeType, ConfState, EntryType, Message, MessageType};
use tokio::sync::oneshot;

use super::msg::{ApplyMsg, PeerTransport, RaftInput};
use super::node::{NodeConfig, RaftNode, RaftStatus, raft_config};
use super::recover::open_raft;
use crate::datadir::{BOOT_INDEX, BOOT_TERM};
use crate::ids::MemberId;
use crate::membership::MemberChange;
use crate::membership::encode_conf_state;
use crate::raft::ReadIndexHub;

const ELECTION_TICKS: usize = 10;
/// Rounds of message exchange within one tick, at most (a round delivers what the last one sent).
const ROUNDS_PER_TICK: usize = 8;

/// A node's outbox: what its Raft thread sent, for the simulation to route.
#[derive(Default)]
struct SimTransport {
    outbox: Mutex<Vec<Message>>,
}

impl PeerTransport for SimTransport {
    fn send(&self, msgs: Vec<Message>) {
        self.outbox.lock().extend(msgs);
    }
}

/// A node's state machine: the data of every non-empty normal entry it applied, by index.
type StateMachine = BTreeMap<u64, Vec<u8>>;

/// A running node.
struct Node {
    raft: RaftNode,
    tx: Sender<RaftInput>,
    apply_rx: Receiver<ApplyMsg>,
    applied: Arc<AtomicU64>,
    hub: Arc<ReadIndexHub>,
    net: Arc<SimTransport>,
}

/// A node's lasting part: its data directory (the WAL) and its applied state machine (standing in
/// for the backend, which holds what was applied, with the consistent index).
struct Disk {
    dir: tempfile::TempDir,
    sm: StateMachine,
    applied: u64,
    /// The term of the entry at `applied`, as the applier records it beside the consistent index.
    applied_term: u64,
    /// Entries of `sm` up to here were checked against the other nodes'.
    checked: u64,
}

pub(super) struct Sim {
    seed: u64,
    rng: u64,
    now: u64,
    nodes: BTreeMap<u64, Node>,
    disks: BTreeMap<u64, Disk>,
    /// Directed links that are down.
    cut: HashSet<(u64, u64)>,
    /// Percent of messages lost.
    loss_pct: u64,
    /// Messages are delayed by up to this many ticks (so they also arrive out of order).
    max_delay: u64,
    in_flight: Vec<(u64, Message)>,
    /// A snapshot delivered to a node, for its applier: the sender's state machine then.
    snapshots: HashMap<u64, (u64, u64, StateMachine)>,
    /// The leader of each term seen.
    leaders: HashMap<u64, u64>,
    /// What any node applied at each index (State Machine Safety).
    applied_anywhere: StateMachine,
    next_ctx: u64,
    /// Configuration changes are proposed in etcd's format (etcd's type numbers, member JSON).
    pub(super) etcd_format: bool,
    snapshots_installed: u64,
}

impl Sim {
    /// A cluster of `n` voters, ids 1..=n.
    pub(super) fn new(n: u64, seed: u64) -> Sim {
        let mut sim = Sim {
            seed,
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            now: 0,
            nodes: BTreeMap::new(),
            disks: BTreeMap::new(),
            cut: HashSet::new(),
            loss_pct: 0,
            max_delay: 0,
            in_flight: Vec::new(),
            snapshots: HashMap::new(),
            leaders: HashMap::new(),
            applied_anywhere: BTreeMap::new(),
            next_ctx: 1,
            etcd_format: false,
            snapshots_installed: 0,
        };
        let voters: Vec<u64> = (1..=n).collect();
        for id in 1..=n {
            sim.create(id, &ConfState { voters: voters.clone(), ..Default::default() }, BOOT_INDEX, BOOT_TERM);
        }
        sim
    }

    /// Adds a node that joins an existing cluster: empty log, no configuration (as
    /// `--initial-cluster-state existing` starts); the leader sends it a snapshot.
    pub(super) fn join(&mut self, id: u64) {
        self.create(id, &ConfState::default(), 0, 0);
    }

    fn create(&mut self, id: u64, cs: &ConfState, index: u64, term: u64) {
        // Memory-backed where the machine has it: the WAL's files are real, its fsyncs cheap.
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.expect("temp dir");
        let meta = WalMetadata { member_id: id, cluster_id: 1 }.encode_to_vec();
        let mut wal = Wal::create(dir.path().join("wal"), &meta).expect("create wal");
        wal.save_snapshot(SnapshotRecord { index, term, conf_state: encode_conf_state(cs) });
        wal.set_hard_state(WalHardState { term, vote: 0, commit: index });
        wal.sync().expect("sync wal");
        drop(wal);
        self.disks.insert(id, Disk { dir, sm: BTreeMap::new(), applied: index, applied_term: term, checked: 0 });
        self.start(id);
    }

    /// Starts node `id` from its disk (a restart after [`Sim::crash`]).
    pub(super) fn start(&mut self, id: u64) {
        let disk = &self.disks[&id];
        let (wal, state) = Wal::open(disk.dir.path().join("wal")).expect("open wal");
        // A fixed election timeout per node, distinct, within [election, 2 * election).
        let timeout = ELECTION_TICKS + (id as usize * 3) % ELECTION_TICKS;
        let config = |applied| raft::Config {
            min_election_tick: timeout,
            max_election_tick: timeout + 1,
            ..raft_config(id, ELECTION_TICKS, applied, true)
        };
        let (raw, storage, applied) = open_raft(config, &state, disk.applied, 1).expect("open raft");
        let (tx, rx) = unbounded();
        let (apply_tx, apply_rx) = unbounded();
        let hub = ReadIndexHub::new();
        let net = Arc::new(SimTransport::default());
        let raft = RaftNode {
            raw,
            storage,
            wal,
            rx,
            transport: net.clone(),
            apply_tx,
            status: Arc::new(RaftStatus::new()),
            read_hub: hub.clone(),
            cfg: NodeConfig {
                tick: Duration::from_millis(100),
                catchup_entries: 20,
                stalled_ttl: Duration::from_secs(3600),
                snap_dir: disk.dir.path().join("snap"),
                max_learners: 1,
            },
            stalled: Default::default(),
            held_timeout_now: None,
            snapshot_index: state.snapshot.map_or(0, |s| s.index),
            applied: applied.clone(),
            inline_apply: None,
        };
        self.nodes.insert(id, Node { raft, tx, apply_rx, applied, hub, net });
    }

    /// Stops node `id` at once, as kill -9 would: what its WAL had not synced is lost with it.
    pub(super) fn crash(&mut self, id: u64) {
        self.nodes.remove(&id);
        self.in_flight.retain(|(_, m)| m.to != id);
    }

    fn random(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.random() % n.max(1)
    }

    pub(super) fn set_loss(&mut self, pct: u64, max_delay: u64) {
        self.loss_pct = pct;
        self.max_delay = max_delay;
    }

    /// Splits the nodes into groups that hear only each other.
    pub(super) fn partition(&mut self, groups: &[&[u64]]) {
        self.cut.clear();
        for a in groups {
            for b in groups {
                if a != b {
                    for x in *a {
                        for y in *b {
                            self.cut.insert((*x, *y));
                        }
                    }
                }
            }
        }
    }

    pub(super) fn heal(&mut self) {
        self.cut.clear();
    }

    pub(super) fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// The leader of the highest term, if any node leads.
    pub(super) fn leader(&self) -> Option<u64> {
        let leading = self.nodes.iter().filter(|(_, n)| n.raft.raw.raft.state == StateRole::Leader);
        leading.max_by_key(|(_, n)| n.raft.raw.raft.term).map(|(id, _)| *id)
    }

    /// The leader node `id` follows (0 for none).
    pub(super) fn leader_of(&self, id: u64) -> u64 {
        self.nodes[&id].raft.raw.raft.leader_id
    }

    pub(super) fn term(&self, id: u64) -> u64 {
        self.nodes[&id].raft.raw.raft.term
    }

    /// The voters and learners as node `id`'s Raft sees them.
    pub(super) fn conf(&self, id: u64) -> (BTreeSet<u64>, BTreeSet<u64>) {
        let conf = self.nodes[&id].raft.raw.raft.prs().conf().to_conf_state();
        (conf.voters.into_iter().collect(), conf.learners.into_iter().collect())
    }

    pub(super) fn applied(&self, id: u64) -> u64 {
        self.disks[&id].applied
    }

    pub(super) fn state_machine(&self, id: u64) -> &StateMachine {
        &self.disks[&id].sm
    }

    /// Snapshots installed by appliers so far.
    pub(super) fn snapshots_installed(&self) -> u64 {
        self.snapshots_installed
    }

    pub(super) fn propose(&mut self, id: u64, data: Vec<u8>) {
        let _ = self.nodes[&id].tx.send(RaftInput::Propose(data));
    }

    /// Asks node `id` for a read index.
    pub(super) fn read_index(&mut self, id: u64) -> oneshot::Receiver<u64> {
        let ctx = self.next_ctx;
        self.next_ctx += 1;
        let node = &self.nodes[&id];
        let rx = node.hub.expect(ctx);
        let _ = node.tx.send(RaftInput::ReadIndex { ctx });
        rx
    }

    /// Proposes a configuration change through node `id` (as the Cluster service does).
    /// An addition (with a peer URL) or a removal.
    pub(super) fn conf_change(&mut self, id: u64, kind: ConfChangeType, member: u64) {
        let peer_urls = match kind {
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => vec![format!("http://127.0.0.1:{member}")],
            ConfChangeType::RemoveNode => Vec::new(),
        };
        self.propose_change(id, kind, member, peer_urls);
    }

    /// A learner's promotion (AddNode without peer URLs).
    pub(super) fn promote(&mut self, id: u64, member: u64) {
        self.propose_change(id, ConfChangeType::AddNode, member, Vec::new());
    }

    fn propose_change(&mut self, id: u64, kind: ConfChangeType, member: u64, peer_urls: Vec<String>) {
        let ctx = self.next_ctx;
        self.next_ctx += 1;
        let cc = MemberChange::proposal(kind, MemberId(member), peer_urls, ctx);
        let data = match MemberChange::of(&cc) {
            Some((change, _)) if self.etcd_format => change.etcd_proposal(ctx),
            _ => protobuf::Message::write_to_bytes(&cc).unwrap(),
        };
        let _ = self.nodes[&id].tx.send(RaftInput::ProposeConfChange(data));
    }

    /// New peer URLs for `member`, proposed through node `id` in etcd's format (a configuration
    /// change that leaves Raft's configuration as it is).
    pub(super) fn update_urls(&mut self, id: u64, member: u64) {
        let ctx = self.next_ctx;
        self.next_ctx += 1;
        let change = MemberChange::Update(MemberId(member), vec![format!("http://127.0.0.1:{member}")]);
        let _ = self.nodes[&id].tx.send(RaftInput::ProposeConfChange(change.etcd_proposal(ctx)));
    }

    /// Tells node `id` that everything it applied is durable, so it snapshots and compacts its log.
    pub(super) fn compact(&mut self, id: u64) {
        // The term comes from the applier, as the real one's does: a node alone in its
        // configuration may have dropped the entry from its in-memory log already.
        let Disk { applied: index, applied_term: term, .. } = self.disks[&id];
        let _ = self.nodes[&id].tx.send(RaftInput::Compact { index, term });
    }

    /// One tick of the logical clock: every node ticks, then messages flow until none is left
    /// for this tick, and appliers apply what was committed.
    pub(super) fn tick(&mut self) {
        self.now += 1;
        for node in self.nodes.values_mut() {
            node.raft.tick();
        }
        for _ in 0..ROUNDS_PER_TICK {
            let ids = self.ids();
            for id in &ids {
                let node = self.nodes.get_mut(id).expect("running");
                assert!(node.raft.drain().expect("wal"), "node {id} stopped");
            }
            self.apply();
            self.check(&ids);
            let mut sent = Vec::new();
            for id in &ids {
                let mut out = std::mem::take(&mut *self.nodes[id].net.outbox.lock());
                // raft-rs builds some batches from a hash map: per destination order is what counts.
                out.sort_by_key(|m| m.to);
                sent.extend(out);
            }
            let quiet = sent.is_empty();
            for m in sent {
                self.route(m);
            }
            if !self.deliver() && quiet {
                break;
            }
        }
    }

    pub(super) fn run(&mut self, ticks: u64) {
        for _ in 0..ticks {
            self.tick();
        }
    }

    /// Ticks until `done` holds, at most `ticks` times; panics (with the seed) if it never does.
    pub(super) fn run_until(&mut self, ticks: u64, what: &str, mut done: impl FnMut(&Sim) -> bool) {
        for _ in 0..ticks {
            if done(self) {
                return;
            }
            self.tick();
        }
        assert!(done(self), "seed {}: not {what} after {ticks} ticks", self.seed);
    }

    fn route(&mut self, m: Message) {
        let (from, to) = (m.from, m.to);
        let lost = self.loss_pct > 0 && self.below(100) < self.loss_pct;
        if !self.nodes.contains_key(&to) || self.cut.contains(&(from, to)) || lost {
            self.dropped(m);
            return;
        }
        let delay = if self.max_delay > 0 { self.below(self.max_delay + 1) } else { 0 };
        self.in_flight.push((self.now + delay, m));
    }

    /// A message that will not arrive: a snapshot's sender hears that it failed, as from the TCP
    /// transport.
    fn dropped(&mut self, m: Message) {
        if m.get_msg_type() == MessageType::MsgSnapshot
            && let Some(sender) = self.nodes.get(&m.from)
        {
            let _ = sender.tx.send(RaftInput::SnapshotStatus { to: m.to, ok: false });
        }
    }

    /// Hands every message due now to its node; false if there was none.
    fn deliver(&mut self) -> bool {
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.in_flight).into_iter().partition(|(at, _)| *at <= now);
        self.in_flight = later;
        let any = !due.is_empty();
        for (_, m) in due {
            if self.cut.contains(&(m.from, m.to)) || !self.nodes.contains_key(&m.to) {
                self.dropped(m);
                continue;
            }
            if m.get_msg_type() == MessageType::MsgSnapshot {
                // The backend streamed with it: the sender's applied state now.
                let disk = &self.disks[&m.from];
                self.snapshots.insert(m.to, (disk.applied, disk.applied_term, disk.sm.clone()));
                if let Some(sender) = self.nodes.get(&m.from) {
                    let _ = sender.tx.send(RaftInput::SnapshotStatus { to: m.to, ok: true });
                }
            }
            let _ = self.nodes[&m.to].tx.send(RaftInput::Step(m));
        }
        any
    }

    /// Each node's applier: committed entries into its state machine, in log order.
    fn apply(&mut self) {
        for (id, node) in &self.nodes {
            let disk = self.disks.get_mut(id).expect("disk");
            while let Ok(msg) = node.apply_rx.try_recv() {
                match msg {
                    ApplyMsg::Entries(entries) => {
                        for e in entries {
                            if e.index <= disk.applied {
                                continue;
                            }
                            assert_eq!(e.index, disk.applied + 1, "seed {}: node {id} skipped an entry", self.seed);
                            if e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
                                disk.sm.insert(e.index, e.data.to_vec());
                            }
                            disk.applied = e.index;
                            disk.applied_term = e.term;
                        }
                    }
                    ApplyMsg::Snapshot { index, .. } => {
                        let (applied, term, sm) = self.snapshots.remove(id).expect("snapshot delivered");
                        assert!(applied >= index, "seed {}: snapshot behind its index", self.seed);
                        if applied > disk.applied {
                            disk.sm = sm;
                            disk.applied = applied;
                            disk.applied_term = term;
                            disk.checked = 0;
                            self.snapshots_installed += 1;
                        }
                    }
                }
                node.applied.store(disk.applied, Ordering::Release);
            }
        }
    }

    /// Election Safety and State Machine Safety.
    fn check(&mut self, ids: &[u64]) {
        for id in ids {
            let r = &self.nodes[id].raft.raw.raft;
            if r.state == StateRole::Leader {
                let leader = *self.leaders.entry(r.term).or_insert(*id);
                assert_eq!(leader, *id, "seed {}: two leaders in term {}", self.seed, r.term);
            }
            let disk = self.disks.get_mut(id).expect("disk");
            for (index, data) in disk.sm.range(disk.checked + 1..) {
                match self.applied_anywhere.get(index) {
                    Some(d) => assert_eq!(d, data, "seed {}: node {id} applied another entry at {index}", self.seed),
                    None => {
                        self.applied_anywhere.insert(*index, data.clone());
                    }
                }
            }
            disk.checked = disk.applied;
        }
    }
}

/// Writes proposed through random nodes, and which of them were acknowledged (applied by the
/// node that proposed them, as a member answers its client).
#[derive(Default)]
pub(super) struct Writes {
    next: u64,
    pending: Vec<(u64, Vec<u8>)>,
    pub(super) acked: Vec<Vec<u8>>,
}

impl Writes {
    /// Proposes a new write through a random running node.
    pub(super) fn propose(&mut self, sim: &mut Sim) {
        let ids = sim.ids();
        let via = ids[sim.below(ids.len() as u64) as usize];
        self.next += 1;
        let data = format!("write-{}", self.next).into_bytes();
        sim.propose(via, data.clone());
        self.pending.push((via, data));
    }

    /// Moves the writes their node applied to `acked`; a write whose node crashed before that is
    /// never acknowledged.
    pub(super) fn collect(&mut self, sim: &Sim) {
        let running = sim.ids();
        let acked = &mut self.acked;
        self.pending.retain(|(via, data)| {
            if !running.contains(via) {
                return false;
            }
            let applied = sim.state_machine(*via).values().any(|d| d == data);
            if applied {
                acked.push(data.clone());
            }
            !applied
        });
    }
}
