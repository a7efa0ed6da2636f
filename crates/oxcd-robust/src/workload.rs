//! The workload, the faults and the checks of one run.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp, WatchOptions};
use oxcd_testkit::{Binary, Cluster, ClusterOptions};

use crate::linearizability::{self, Input, Operation, Output};

/// What a run does.
#[derive(Debug, Clone)]
pub struct Options {
    pub members: usize,
    pub clients: usize,
    pub keys: usize,
    pub duration: Duration,
    /// Kill, restart, pause, partition and replace members while the clients run.
    pub faults: bool,
    /// The binary was built with failpoints (`--features failpoints`): the faults also make a
    /// member's disk slow and fail its writes, through its `GOFAIL_HTTP` port.
    pub failpoints: bool,
    /// Members run under libfaketime (Debian's `faketime`), and the faults also step the leader's
    /// wall clock an hour ahead and back.
    pub clock_jumps: bool,
    /// How long a client waits for an answer before its outcome is unknown.
    pub timeout: Duration,
    /// Instead of faults, move the cluster to this binary one member at a time, as an operator
    /// moves an etcd cluster to oxcd, then one member back ([`migrate`]).
    pub migrate_to: Option<Binary>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            members: 3,
            clients: 10,
            keys: 3,
            duration: Duration::from_secs(20),
            faults: true,
            failpoints: false,
            clock_jumps: false,
            timeout: Duration::from_secs(2),
            migrate_to: None,
        }
    }
}

/// What a run did and found.
#[derive(Debug, Default)]
pub struct Report {
    /// Operations answered, and those whose outcome is unknown (an error or a timeout).
    pub ok: usize,
    pub unknown: usize,
    pub faults: Vec<String>,
    pub acknowledged_writes: usize,
    /// Events the resuming watcher saw, and how many times it resumed.
    pub watched_events: usize,
    pub watch_resumes: usize,
    /// What the clients were told when an operation failed (gRPC code and message, `timeout`,
    /// or `transport`), and how often.
    pub errors: BTreeMap<String, usize>,
}

/// One event of the keys' history: revision, key, value (empty for a delete).
type Event = (i64, String, String);

/// The members' client endpoints, as replacing a member changes them.
type Endpoints = Arc<Mutex<Vec<String>>>;

fn current(endpoints: &Endpoints) -> Vec<String> {
    endpoints.lock().unwrap().clone()
}

/// What the resuming watcher saw.
struct Watched {
    events: Vec<Event>,
    resumes: usize,
}

/// A watcher of the keys that, whenever its stream breaks or stays silent, resumes from the
/// revision after the last one it saw, on the next member: the events it sees, in order.
async fn watcher(endpoints: Endpoints, deadline: Instant) -> anyhow::Result<Watched> {
    let mut events: Vec<Event> = Vec::new();
    let mut resumes: usize = 0;
    let mut member = 0;
    while Instant::now() < deadline {
        let from = events.last().map_or(1, |e| e.0 + 1);
        let now = current(&endpoints);
        let endpoint = &now[member % now.len()];
        member += 1;
        let Ok(Ok(mut c)) = tokio::time::timeout(Duration::from_secs(2), Client::connect([endpoint], None)).await
        else {
            continue;
        };
        let opts = WatchOptions::new().with_prefix().with_start_revision(from);
        let Ok(Ok(mut stream)) = tokio::time::timeout(Duration::from_secs(2), c.watch("robust/", Some(opts))).await
        else {
            continue;
        };
        resumes += 1;
        // Silent for 3 s while clients write: the member may be cut off; try the next one.
        while let Ok(Ok(Some(resp))) = tokio::time::timeout(Duration::from_secs(3), stream.message()).await {
            if resp.canceled() {
                bail!("the watch from revision {from} was cancelled: {}", resp.cancel_reason());
            }
            for e in resp.events() {
                let Some(kv) = e.kv() else { continue };
                let ev =
                    (kv.mod_revision(), kv.key_str()?.to_string(), String::from_utf8_lossy(kv.value()).into_owned());
                if let Some(last) = events.last()
                    && (ev.0, &ev.1) <= (last.0, &last.1)
                {
                    bail!("the watcher saw {ev:?} after {last:?} (resumed from revision {from})");
                }
                events.push(ev);
            }
            if Instant::now() >= deadline {
                break;
            }
        }
    }
    Ok(Watched { events, resumes: resumes.saturating_sub(1) })
}

/// One operation as a client saw it, with the revision of its answer, or the error it got.
struct Recorded {
    op: Operation,
    revision: i64,
    error: Option<String>,
}

/// An error as [`Report::errors`] counts it.
fn error_kind(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => format!("{:?}: {}", s.code(), s.message()),
        _ => "transport".into(),
    }
}

/// Runs the workload against a cluster of `binary`, with faults if asked; an error says what
/// was violated.
pub async fn run(binary: Binary, opts: &Options) -> anyhow::Result<Report> {
    let cluster_opts = ClusterOptions {
        size: opts.members,
        peer_proxy: true,
        failpoint_http: opts.failpoints,
        fake_clock: opts.clock_jumps,
        ..Default::default()
    };
    let first = binary.clone();
    let cl = Cluster::start(binary, cluster_opts).await?;
    cl.wait_ready(Duration::from_secs(30)).await?;
    let endpoints: Endpoints = Arc::new(Mutex::new(cl.endpoints()));
    let start = Instant::now();
    let deadline = start + opts.duration;
    let history: Arc<Mutex<Vec<Recorded>>> = Arc::default();
    let mut clients = Vec::new();
    for id in 0..opts.clients {
        let (endpoints, history, opts) = (endpoints.clone(), history.clone(), opts.clone());
        clients.push(tokio::spawn(async move { client(id, endpoints, history, &opts, start, deadline).await }));
    }
    let watcher = tokio::spawn(watcher(endpoints.clone(), deadline));
    let cl = Arc::new(tokio::sync::Mutex::new(cl));
    let faults = match &opts.migrate_to {
        Some(to) => migrate(cl.clone(), &endpoints, to, &first).await?,
        None if opts.faults => inject(cl.clone(), &endpoints, opts, deadline).await?,
        None => Vec::new(),
    };
    for c in clients {
        c.await.context("a client panicked")?;
    }
    let watched = watcher.await.context("the watcher panicked")??;
    // Heal and judge.
    let mut cl = Arc::try_unwrap(cl).map_err(|_| anyhow::anyhow!("cluster still shared"))?.into_inner();
    for i in cl.members() {
        if !cl.is_running(i) {
            cl.restart(i)?;
        }
    }
    cl.wait_ready(Duration::from_secs(60)).await?;
    let history = std::mem::take(&mut *history.lock().unwrap());
    let mut report = Report { faults, ..Default::default() };
    for r in &history {
        match r.op.output {
            Output::Unknown => report.unknown += 1,
            _ => report.ok += 1,
        }
        if let Some(e) = &r.error {
            *report.errors.entry(e.clone()).or_default() += 1;
        }
    }
    check(&cl, &history, &watched, &mut report).await?;
    Ok(report)
}

/// A client: random reads, writes and compare-and-sets on the keys until the deadline.
async fn client(
    id: usize,
    endpoints: Endpoints,
    history: Arc<Mutex<Vec<Recorded>>>,
    opts: &Options,
    start: Instant,
    deadline: Instant,
) {
    // xorshift64*: a different sequence per client and per run.
    let mut seed = (start.elapsed().as_nanos() as u64 ^ (id as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1;
    let mut random = move |n: usize| {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    };
    let mut c: Option<Client> = None;
    let mut last_seen: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut n = 0;
    while Instant::now() < deadline {
        if c.is_none() {
            c = tokio::time::timeout(opts.timeout, Client::connect(current(&endpoints), None))
                .await
                .ok()
                .and_then(Result::ok);
            if c.is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        let cli = c.as_mut().expect("connected");
        let key = format!("robust/k{}", random(opts.keys));
        n += 1;
        let input = match random(10) {
            0..4 => Input::Get,
            4..7 => Input::Put(format!("c{id}-{n}")),
            _ => Input::Cas { expect: last_seen.get(&key).cloned().flatten(), new: format!("c{id}-{n}") },
        };
        let invoke = start.elapsed().as_nanos() as u64;
        let answer = tokio::time::timeout(opts.timeout, call(cli, &key, &input)).await;
        let complete = start.elapsed().as_nanos() as u64;
        let (output, revision, error) = match answer {
            Ok(Ok((out, rev))) => (out, rev, None),
            // Failed or timed out: it may have taken effect (a read tells nothing).
            Ok(Err(e)) => {
                c = None;
                (Output::Unknown, 0, Some(error_kind(&e)))
            }
            Err(_) => {
                c = None;
                (Output::Unknown, 0, Some("timeout".into()))
            }
        };
        if let Output::Get(v) = &output {
            last_seen.insert(key.clone(), v.clone());
        }
        let op = Operation { client: id, key, input, output, invoke, complete };
        history.lock().unwrap().push(Recorded { op, revision, error });
    }
}

/// One operation through the client: its output and the revision of the answer.
async fn call(c: &mut Client, key: &str, input: &Input) -> Result<(Output, i64), etcd_client::Error> {
    let rev = |h: Option<&etcd_client::ResponseHeader>| h.map_or(0, |h| h.revision());
    match input {
        Input::Get => {
            let r = c.get(key, None).await?;
            let v = r.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned());
            Ok((Output::Get(v), rev(r.header())))
        }
        Input::Put(v) => {
            let r = c.put(key, v.as_str(), None).await?;
            Ok((Output::Put, rev(r.header())))
        }
        Input::Cas { expect, new } => {
            let cmp = match expect {
                Some(e) => Compare::value(key, CompareOp::Equal, e.as_str()),
                None => Compare::version(key, CompareOp::Equal, 0),
            };
            let r = c.txn(Txn::new().when([cmp]).and_then([TxnOp::put(key, new.as_str(), None)])).await?;
            Ok((Output::Cas(r.succeeded()), rev(r.header())))
        }
    }
}

/// The kinds of fault, in the order they come round.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    KillLeader,
    PartitionLeader,
    SlowDisk,
    KillFollower,
    ReplaceFollower,
    PauseLeader,
    WalError,
    PartitionFollower,
    ClockJump,
    LeaderCannotSend,
    BackendError,
    KillAll,
}

impl Fault {
    const ALL: [Fault; 12] = [
        Fault::KillLeader,
        Fault::PartitionLeader,
        Fault::SlowDisk,
        Fault::KillFollower,
        Fault::ReplaceFollower,
        Fault::PauseLeader,
        Fault::WalError,
        Fault::PartitionFollower,
        Fault::ClockJump,
        Fault::LeaderCannotSend,
        Fault::BackendError,
        Fault::KillAll,
    ];

    /// Whether it strikes the leader (else a follower; `KillAll` strikes every member).
    fn on_leader(self) -> bool {
        matches!(
            self,
            Fault::KillLeader
                | Fault::PartitionLeader
                | Fault::SlowDisk
                | Fault::PauseLeader
                | Fault::ClockJump
                | Fault::LeaderCannotSend
                | Fault::BackendError
        )
    }

    /// Whether the run can make it: failpoints need a binary built with them, clock jumps
    /// libfaketime.
    fn possible(self, opts: &Options) -> bool {
        match self {
            Fault::SlowDisk | Fault::WalError | Fault::BackendError => opts.failpoints,
            Fault::ClockJump => opts.clock_jumps,
            _ => true,
        }
    }
}

/// Faults on a schedule until the deadline, each one healed after it (the member restarted,
/// resumed, reconnected or replaced), one kind after the other: kill -9 of the leader, a
/// partition isolating the leader, the leader's WAL fsync made slow (200 ms) for 3 s, kill -9 of
/// a follower, a follower replaced by a new member (`member remove`, `member add`), SIGSTOP of the
/// leader past the election timeout, an I/O error in a follower's WAL, a follower isolated, the
/// leader's wall clock stepped an hour ahead for 3 s and back, the leader unable to send (it
/// still hears the others), an I/O error in the leader's backend commit, kill -9 of every member
/// at once. A member hit by an I/O error must stop with exit status 1; it is then started again.
/// The failpoint kinds need `failpoints`, the clock jump `clock_jumps`.
async fn inject(
    cl: Arc<tokio::sync::Mutex<Cluster>>,
    endpoints: &Endpoints,
    opts: &Options,
    deadline: Instant,
) -> anyhow::Result<Vec<String>> {
    let kinds: Vec<Fault> = Fault::ALL.into_iter().filter(|k| k.possible(opts)).collect();
    let mut done = Vec::new();
    let mut round = 0;
    while Instant::now() + Duration::from_secs(3) < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut c = cl.lock().await;
        let leader = c.leader().await.unwrap_or(0);
        let members = c.members();
        let others = |i: usize| members.iter().copied().filter(|&j| j != i).collect::<Vec<_>>();
        let kind = kinds[round % kinds.len()];
        let (target, role) = if kind.on_leader() {
            (leader, "leader")
        } else {
            (others(leader)[round % (members.len() - 1)], "follower")
        };
        eprintln!("robust: {kind:?} (round {round}, {role} {target})");
        match kind {
            Fault::KillLeader | Fault::KillFollower => {
                c.kill(target);
                done.push(format!("kill -9 {role} {target}"));
                drop(c);
                tokio::time::sleep(Duration::from_secs(1)).await;
                cl.lock().await.restart(target)?;
            }
            Fault::PartitionLeader | Fault::PartitionFollower => {
                c.partition(&[vec![target], others(target)]).await?;
                done.push(format!("partition {role} {target} from the others for 2 s"));
                drop(c);
                tokio::time::sleep(Duration::from_secs(2)).await;
                cl.lock().await.heal();
            }
            Fault::PauseLeader => {
                c.pause(target);
                done.push(format!("SIGSTOP {role} {target} for 2 s"));
                drop(c);
                tokio::time::sleep(Duration::from_secs(2)).await;
                cl.lock().await.resume(target);
            }
            Fault::LeaderCannotSend => {
                for o in others(target) {
                    c.block_one_way(target, o).await?;
                }
                done.push(format!("{role} {target} cannot send to the others (but hears them) for 2 s"));
                drop(c);
                tokio::time::sleep(Duration::from_secs(2)).await;
                cl.lock().await.heal();
            }
            Fault::ClockJump => {
                c.jump_clock(target, 3600)?;
                done.push(format!("{role} {target}'s wall clock an hour ahead for 3 s, then back"));
                drop(c);
                tokio::time::sleep(Duration::from_secs(3)).await;
                cl.lock().await.jump_clock(target, 0)?;
            }
            Fault::SlowDisk => {
                c.set_failpoint(target, "walAfterFdatasync", Some("sleep(200)")).await?;
                done.push(format!("{role} {target}'s WAL fsync slowed by 200 ms for 3 s"));
                drop(c);
                tokio::time::sleep(Duration::from_secs(3)).await;
                let c = cl.lock().await;
                if c.is_running(target) {
                    c.set_failpoint(target, "walAfterFdatasync", None).await?;
                }
            }
            Fault::WalError | Fault::BackendError => {
                let (point, what) = if kind == Fault::WalError {
                    ("walBeforeSync", "WAL sync")
                } else {
                    ("backendBeforeCommit", "backend commit")
                };
                c.set_failpoint(target, point, Some("return(error)")).await?;
                done.push(format!("I/O error in {role} {target}'s {what}"));
                if !c.wait_exit(target, Duration::from_secs(10)).await {
                    bail!("member {target} still runs 10 s after an I/O error in its {what}");
                }
                match c.exit_status(target) {
                    Some(st) if st.code() == Some(1) => {}
                    other => bail!(
                        "member {target} stopped by an I/O error ended with {other:?}, not exit status 1:\n{}",
                        c.log_tail(target, 20)
                    ),
                }
                c.restart(target)?;
                drop(c);
            }
            Fault::ReplaceFollower => {
                let id = c.client(target).await?.status().await?.header().context("no header")?.member_id();
                let mut admin = c.client(leader).await?;
                admin.member_remove(id).await.context("member remove")?;
                c.retire(target);
                let added = c.add_slot();
                admin.member_add([c.peer_url(added)], None).await.context("member add")?;
                c.start_joining(added)?;
                *endpoints.lock().unwrap() = c.endpoints();
                done.push(format!("{role} {target} replaced by a new member {added}"));
                drop(c);
            }
            Fault::KillAll => {
                for &i in &members {
                    c.kill(i);
                }
                done.push("kill -9 every member".into());
                drop(c);
                tokio::time::sleep(Duration::from_millis(500)).await;
                let mut c = cl.lock().await;
                for &i in &members {
                    c.restart(i)?;
                }
            }
        }
        round += 1;
        // Let the cluster recover before the next fault.
        let c = cl.lock().await;
        c.wait_ready(Duration::from_secs(30)).await.context("the cluster did not recover from a fault")?;
    }
    Ok(done)
}

/// Moves the cluster to `to`, one member at a time (each original member replaced by one of `to`
/// with [`replace`]), then replaces one of the new members by one of `back`: what moving an etcd
/// cluster to oxcd and back looks like to its clients. Says what it did.
async fn migrate(
    cl: Arc<tokio::sync::Mutex<Cluster>>,
    endpoints: &Endpoints,
    to: &Binary,
    back: &Binary,
) -> anyhow::Result<Vec<String>> {
    let mut done = Vec::new();
    let originals = cl.lock().await.members();
    for old in originals {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut c = cl.lock().await;
        let new = replace(&mut c, endpoints, old, to).await?;
        done.push(format!("member {old} replaced by member {new} ({}), which leads", to.name()));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut c = cl.lock().await;
    let old = c.members()[0];
    let new = replace(&mut c, endpoints, old, back).await?;
    done.push(format!("member {old} replaced by member {new} ({}), which leads", back.name()));
    Ok(done)
}

/// Tries `what` every 300 ms for 30 s, as an operator would: etcd refuses a membership change
/// until the members have been connected for 5 s, and a promotion until the learner caught up.
macro_rules! patiently {
    ($what:expr, $name:expr) => {{
        let give_up = Instant::now() + Duration::from_secs(30);
        loop {
            match $what.await {
                Ok(r) => break r,
                Err(_) if Instant::now() < give_up => tokio::time::sleep(Duration::from_millis(300)).await,
                Err(e) => bail!("{}: {e}", $name),
            }
        }
    }};
}

/// Replaces member `old` by a new member running `binary`: `member add --learner`, start it,
/// `member promote`, leadership moved to it, `member remove` of the old one (which must stop by
/// itself); the clients' endpoints follow. The new member's index.
async fn replace(c: &mut Cluster, endpoints: &Endpoints, old: usize, binary: &Binary) -> anyhow::Result<usize> {
    let keep = c.members().into_iter().find(|&i| i != old).context("a member to ask")?;
    let mut admin = c.client(keep).await?;
    let slot = c.add_slot();
    let learner = etcd_client::MemberAddOptions::new().with_is_learner();
    let added = patiently!(admin.member_add([c.peer_url(slot)], Some(learner.clone())), "member add");
    let id = added.member().context("no member in the answer")?.id();
    c.set_binary(binary.clone());
    c.start_joining(slot)?;
    patiently!(admin.member_promote(id), "member promote");
    // Clients are pointed at it once it knows it is a voter (it applies its promotion a moment
    // after the leader answers).
    let mut on_new = c.client(slot).await?;
    patiently!(
        async {
            on_new.status().await.and_then(|s| {
                if s.is_learner() { Err(etcd_client::Error::InvalidArgs("a learner".into())) } else { Ok(()) }
            })
        },
        "the promoted member is a voter"
    );
    endpoints.lock().unwrap().push(c.endpoint(slot));
    let leader = c.leader().await?;
    if leader != slot {
        c.client(leader).await?.move_leader(id).await.context("move-leader")?;
    }
    let now = c.leader().await?;
    if now != slot {
        bail!(
            "member {slot} does not lead after move-leader (member {now} does):\n{}\n--- member {now} ---\n{}",
            c.log_tail(slot, 40),
            c.log_tail(now, 40)
        );
    }
    let old_id = c.client(old).await?.status().await?.header().context("no header")?.member_id();
    endpoints.lock().unwrap().retain(|e| *e != c.endpoint(old));
    patiently!(admin.member_remove(old_id), "member remove");
    if !c.wait_exit(old, Duration::from_secs(20)).await {
        bail!("member {old} still runs 20 s after its removal:\n{}", c.log_tail(old, 20));
    }
    c.retire(old);
    c.wait_ready(Duration::from_secs(30)).await.context("the cluster after a replacement")?;
    Ok(slot)
}

/// The history for the linearizability check, with what the cluster's own history tells about
/// the writes whose outcome a client never learned (every written value is unique): one whose
/// value the cluster never held did not take effect and is left out; one whose value it holds
/// took effect, before any answer carrying that revision or a later one completed (the answering
/// member had applied it), so it is a successful write that returned then.
fn resolve_unknown_writes(history: &[Recorded], all: &[Event]) -> Vec<Operation> {
    let applied_at: BTreeMap<(&str, &str), i64> = all.iter().map(|(r, k, v)| ((k.as_str(), v.as_str()), *r)).collect();
    // Answers by revision, and the earliest completion among answers at or after each.
    let mut answers: Vec<(i64, u64)> = history
        .iter()
        .filter(|r| r.revision > 0 && r.op.output != Output::Unknown)
        .map(|r| (r.revision, r.op.complete))
        .collect();
    answers.sort_unstable();
    let mut earliest_from = vec![u64::MAX; answers.len() + 1];
    for i in (0..answers.len()).rev() {
        earliest_from[i] = earliest_from[i + 1].min(answers[i].1);
    }
    let mut ops = Vec::with_capacity(history.len());
    for r in history {
        let mut op = r.op.clone();
        if op.output == Output::Unknown {
            let value = match &op.input {
                Input::Put(v) | Input::Cas { new: v, .. } => v,
                Input::Get => {
                    ops.push(op);
                    continue;
                }
            };
            let Some(&rev) = applied_at.get(&(op.key.as_str(), value.as_str())) else { continue };
            op.output = if matches!(op.input, Input::Put(_)) { Output::Put } else { Output::Cas(true) };
            op.complete = earliest_from[answers.partition_point(|&(a, _)| a < rev)];
        }
        ops.push(op);
    }
    ops
}

/// The checks of the history and the healed cluster.
async fn check(cl: &Cluster, history: &[Recorded], watched: &Watched, report: &mut Report) -> anyhow::Result<()> {
    // Revisions never go backwards for a client (every operation is linearizable).
    let mut last: BTreeMap<usize, (i64, u64)> = BTreeMap::new();
    for r in history.iter().filter(|r| r.revision > 0) {
        let (prev, at) = last.get(&r.op.client).copied().unwrap_or((0, 0));
        if r.op.invoke > at && r.revision < prev {
            bail!("client {} saw revision {} after {prev}", r.op.client, r.revision);
        }
        last.insert(r.op.client, (r.revision.max(prev), r.op.complete));
    }
    // The cluster's whole history of the keys: every acknowledged write is in it, and nothing
    // no client wrote.
    let within = Duration::from_secs(10);
    let mut c = tokio::time::timeout(within, Client::connect(cl.endpoints(), None)).await.context("connecting")??;
    let now = tokio::time::timeout(within, c.get("robust/", Some(GetOptions::new().with_prefix())))
        .await
        .context("reading the keys")??;
    let rev = now.header().map_or(0, |h| h.revision());
    let from_1 = WatchOptions::new().with_prefix().with_start_revision(1);
    let mut stream = tokio::time::timeout(within, c.watch("robust/", Some(from_1))).await.context("watching")??;
    let mut all: Vec<Event> = Vec::new();
    let mut seen_rev = 0;
    while seen_rev < rev {
        let Some(resp) = tokio::time::timeout(Duration::from_secs(10), stream.message()).await?? else { break };
        for e in resp.events() {
            if let Some(kv) = e.kv() {
                seen_rev = seen_rev.max(kv.mod_revision());
                all.push((
                    kv.mod_revision(),
                    kv.key_str()?.to_string(),
                    String::from_utf8_lossy(kv.value()).into_owned(),
                ));
            }
        }
    }
    let written: HashSet<(String, String)> = all.iter().map(|(_, k, v)| (k.clone(), v.clone())).collect();
    let ops = resolve_unknown_writes(history, &all);
    if let Err(v) = linearizability::check(&ops) {
        bail!("not linearizable on {}: no order places {:#?}", v.key, v.stuck_at);
    }
    // The resuming watcher saw the history's beginning exactly: every event once, in order, no gap.
    report.watched_events = watched.events.len();
    report.watch_resumes = watched.resumes;
    if let Some(i) = watched.events.iter().zip(&all).position(|(w, a)| w != a) {
        bail!("the resuming watcher's event {i} is {:?}, the history's is {:?}", watched.events[i], all[i]);
    }
    if watched.events.len() > all.len() {
        bail!("the resuming watcher saw {} events, the history has {}", watched.events.len(), all.len());
    }
    let attempted: HashSet<(String, String)> = history
        .iter()
        .filter_map(|r| match &r.op.input {
            Input::Put(v) | Input::Cas { new: v, .. } => Some((r.op.key.clone(), v.clone())),
            Input::Get => None,
        })
        .collect();
    for r in history {
        let acked = match (&r.op.input, &r.op.output) {
            (Input::Put(v), Output::Put) | (Input::Cas { new: v, .. }, Output::Cas(true)) => Some(v),
            _ => None,
        };
        if let Some(v) = acked {
            report.acknowledged_writes += 1;
            if !written.contains(&(r.op.key.clone(), v.clone())) {
                bail!("acknowledged write {}={v} is not in the cluster's history", r.op.key);
            }
        }
    }
    if let Some(w) = written.iter().find(|w| !attempted.contains(w)) {
        bail!("the cluster holds {}={}, which no client wrote", w.0, w.1);
    }
    // Every member: the same revision and HashKV (once the last writes reached them all).
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        let mut states = BTreeSet::new();
        for i in cl.members() {
            let m = cl.client(i).await?;
            let h = m.maintenance_client().hash_kv(0).await?;
            states.insert((h.header().map_or(0, |h| h.revision()), h.hash()));
        }
        if states.len() == 1 {
            return Ok(());
        }
        if Instant::now() > give_up {
            bail!("members differ (revision, HashKV): {states:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(input: Input, output: Output, invoke: u64, complete: u64, revision: i64) -> Recorded {
        Recorded {
            op: Operation { client: 0, key: "k".into(), input, output, invoke, complete },
            revision,
            error: None,
        }
    }

    #[test]
    fn unknown_writes_are_resolved_from_the_clusters_history() {
        let history = [
            // Timed out, but the cluster holds "a" at revision 5: answered by time 30 at the latest.
            rec(Input::Put("a".into()), Output::Unknown, 10, 0, 0),
            // Timed out and never held: left out.
            rec(Input::Put("b".into()), Output::Unknown, 11, 0, 0),
            rec(Input::Cas { expect: None, new: "c".into() }, Output::Unknown, 12, 0, 0),
            // Answers: revision 4 at 20 (before "a"), 6 at 40, 5 at 30.
            rec(Input::Get, Output::Get(None), 15, 20, 4),
            rec(Input::Get, Output::Get(Some("a".into())), 35, 40, 6),
            rec(Input::Get, Output::Get(Some("a".into())), 25, 30, 5),
        ];
        let all = vec![(5, "k".to_string(), "a".to_string())];
        let ops = resolve_unknown_writes(&history, &all);
        assert_eq!(ops.len(), 4);
        assert_eq!((&ops[0].output, ops[0].complete), (&Output::Put, 30));
        assert!(ops.iter().all(|o| o.output != Output::Unknown));
        assert!(linearizability::check(&ops).is_ok());
    }
}
