//! Property test of etcd's six watch guarantees (api_guarantees.md) on random histories with random
//! compactions, against a real one-member oxcd through the `etcd-client` crate:
//!
//! - ordered: events arrive in revision order (and op order within a revision),
//! - unique: no event arrives twice,
//! - reliable: no event inside the watched history is skipped,
//! - atomic: all events of one revision arrive in one response,
//! - resumable: a watch restarted at last revision + 1 continues exactly,
//! - bookmarkable: a progress response at revision R comes after every event up to R.
//!
//! Plus: prev_kv is the value before each event, and a watch whose start revision is compacted is
//! canceled with `compact_revision`.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, DeleteOptions, EventType, PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchRequestSender,
};
use proptest::prelude::*;
use tokio::sync::Mutex;

const KEYS: &[&str] = &["a", "ab", "b", "c"];

#[derive(Debug, Clone)]
enum Scope {
    Key(usize),
    Prefix(usize),
    All,
}

impl Scope {
    fn contains(&self, k: &str) -> bool {
        match self {
            Scope::Key(i) => k == KEYS[*i],
            Scope::Prefix(i) => k.starts_with(KEYS[*i]),
            Scope::All => true,
        }
    }

    fn options(&self) -> (String, WatchOptions) {
        match self {
            Scope::Key(i) => (KEYS[*i].into(), WatchOptions::new()),
            Scope::Prefix(i) => (KEYS[*i].into(), WatchOptions::new().with_prefix()),
            Scope::All => (String::new(), WatchOptions::new().with_all_keys()),
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
    Put(usize),
    Delete(usize, bool),
    Txn(Vec<usize>),
    Compact(i64),
    /// Start watcher `n` on a scope, `back` revisions in the past (0: from now).
    Watch(Scope, i64),
    /// Drop watcher `n`'s stream and resume a new one at its last revision + 1.
    Resume(usize),
    Progress(usize),
}

fn step() -> impl Strategy<Value = Step> {
    let scope =
        prop_oneof![(0..KEYS.len()).prop_map(Scope::Key), (0..KEYS.len()).prop_map(Scope::Prefix), Just(Scope::All)];
    prop_oneof![
        5 => (0..KEYS.len()).prop_map(Step::Put),
        2 => (0..KEYS.len(), any::<bool>()).prop_map(|(k, p)| Step::Delete(k, p)),
        2 => proptest::sample::subsequence((0..KEYS.len()).collect::<Vec<_>>(), 1..4).prop_map(Step::Txn),
        1 => (1i64..6).prop_map(Step::Compact),
        2 => (scope, 0i64..8).prop_map(|(s, b)| Step::Watch(s, b)),
        1 => (0usize..8).prop_map(Step::Resume),
        1 => (0usize..8).prop_map(Step::Progress),
    ]
}

/// One event as the checker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ev {
    rev: i64,
    put: bool,
    key: String,
    value: String,
    prev: Option<String>,
}

/// What one watch stream received, in order: events grouped by response, progress marks, cancels.
#[derive(Debug, Default)]
struct Received {
    responses: Vec<Vec<Ev>>,
    /// (index into `responses` when it arrived, revision)
    progress: Vec<(usize, i64)>,
    canceled: Option<i64>,
    created: bool,
}

struct Incarnation {
    start: i64,
    /// Set when the watch was resumed in a new stream at this revision: this stream's events from
    /// here on are not looked at (it is closed, but some may still have been in flight).
    cut: Option<i64>,
    /// The compaction revision when the stream was opened. A stream may start at it (etcd cancels
    /// only a start below it), and then no longer sees the tombstones at exactly that revision:
    /// compaction at N removes a delete at N, as etcd 3.5 does.
    compacted: i64,
    received: Arc<Mutex<Received>>,
    sender: Option<WatchRequestSender>,
}

struct Watcher {
    scope: Scope,
    incarnations: Vec<Incarnation>,
}

async fn open(c: &mut Client, scope: &Scope, start: i64, compacted: i64) -> Incarnation {
    let (key, opts) = scope.options();
    let stream = c.watch(key, Some(opts.with_start_revision(start).with_prev_key())).await.unwrap();
    let (sender, mut responses) = stream.split();
    let received: Arc<Mutex<Received>> = Arc::default();
    let r = received.clone();
    tokio::spawn(async move {
        while let Ok(Some(resp)) = responses.message().await {
            let mut r = r.lock().await;
            if resp.created() {
                r.created = true;
            }
            if resp.canceled() {
                r.canceled = Some(resp.compact_revision());
            }
            if resp.watch_id() == -1 {
                let at = r.responses.len();
                r.progress.push((at, resp.header().unwrap().revision()));
            }
            if !resp.events().is_empty() {
                let evs = resp
                    .events()
                    .iter()
                    .map(|e| {
                        let kv = e.kv().unwrap();
                        Ev {
                            rev: kv.mod_revision(),
                            put: e.event_type() == EventType::Put,
                            key: kv.key_str().unwrap().into(),
                            value: kv.value_str().unwrap().into(),
                            prev: e.prev_kv().map(|p| p.value_str().unwrap().into()),
                        }
                    })
                    .collect();
                r.responses.push(evs);
            }
        }
    });
    if start == 0 {
        // "From now" means from when the server registers the watcher: wait for that, so that the
        // next write of the history is after it on a slow machine too.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !received.lock().await.created && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    Incarnation { start, cut: None, compacted, received, sender: Some(sender) }
}

/// The history as written: every revision's events in op order, with the value before each.
#[derive(Default)]
struct History {
    log: BTreeMap<i64, Vec<Ev>>,
    current: BTreeMap<String, String>,
    rev: i64,
    compacted: i64,
}

impl History {
    fn record(&mut self, rev: i64, changes: Vec<(bool, String, String)>) {
        if changes.is_empty() {
            return;
        }
        let mut evs = Vec::new();
        for (put, key, value) in changes {
            let prev = self.current.get(&key).cloned();
            if put {
                self.current.insert(key.clone(), value.clone());
            } else {
                self.current.remove(&key);
            }
            evs.push(Ev { rev, put, key, value, prev });
        }
        self.log.insert(rev, evs);
        self.rev = rev;
    }

    /// What a stream opened when the store was compacted at `compacted` gets from `from` to `to`.
    fn expected(&self, scope: &Scope, from: i64, to: i64, compacted: i64) -> Vec<Ev> {
        if from > to {
            return Vec::new();
        }
        self.log
            .range(from..=to)
            .flat_map(|(_, evs)| evs.iter().filter(|e| scope.contains(&e.key) && (e.put || e.rev > compacted)).cloned())
            .collect()
    }
}

async fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let cl = common::cluster(1).await;
    let mut c = cl.client(0).await.unwrap();
    let mut h = History { rev: 1, compacted: -1, ..Default::default() };
    let mut watchers: Vec<Watcher> = Vec::new();
    for (n, s) in steps.iter().enumerate() {
        let value = format!("v{n}");
        match s {
            Step::Put(k) => {
                let r = c.put(KEYS[*k], value.clone(), None).await.unwrap();
                h.record(r.header().unwrap().revision(), vec![(true, KEYS[*k].into(), value)]);
            }
            Step::Delete(k, prefix) => {
                let opts = if *prefix { DeleteOptions::new().with_prefix() } else { DeleteOptions::new() };
                let r = c.delete(KEYS[*k], Some(opts.with_prev_key())).await.unwrap();
                let gone = r.prev_kvs().iter().map(|kv| (false, kv.key_str().unwrap().into(), String::new())).collect();
                h.record(r.header().unwrap().revision(), gone);
            }
            Step::Txn(keys) => {
                let ops: Vec<TxnOp> =
                    keys.iter().map(|k| TxnOp::put(KEYS[*k], value.clone(), Some(PutOptions::new()))).collect();
                let r = c.txn(Txn::new().and_then(ops)).await.unwrap();
                assert!(r.op_responses().iter().all(|o| matches!(o, TxnOpResponse::Put(_))));
                h.record(
                    r.header().unwrap().revision(),
                    keys.iter().map(|k| (true, KEYS[*k].into(), value.clone())).collect(),
                );
            }
            Step::Compact(back) => {
                let rev = h.rev - back;
                if rev > h.compacted && rev >= 1 {
                    c.compact(rev, None).await.unwrap();
                    h.compacted = rev;
                }
            }
            Step::Watch(scope, back) => {
                let start = if *back == 0 { 0 } else { (h.rev - back).max(1) };
                let inc = open(&mut c, scope, start, h.compacted).await;
                let start = if start == 0 { h.rev + 1 } else { start };
                watchers.push(Watcher { scope: scope.clone(), incarnations: vec![Incarnation { start, ..inc }] });
            }
            Step::Resume(i) => {
                let n = watchers.len().max(1);
                let Some(w) = watchers.get_mut(*i % n) else { continue };
                let last = w.incarnations.last_mut().unwrap();
                let r = last.received.lock().await;
                if r.canceled.is_some() {
                    continue;
                }
                let next = r.responses.last().and_then(|evs| evs.last()).map(|e| e.rev + 1).unwrap_or(last.start);
                drop(r);
                // Close the old stream (the client ends its side) and resume at last + 1.
                last.cut = Some(next);
                last.sender = None;
                let inc = open(&mut c, &w.scope, next, h.compacted).await;
                w.incarnations.push(inc);
            }
            Step::Progress(i) => {
                let n = watchers.len().max(1);
                if let Some(w) = watchers.get_mut(*i % n)
                    && let Some(sender) = &mut w.incarnations.last_mut().unwrap().sender
                {
                    let _ = sender.request_progress().await;
                }
            }
        }
    }
    // Let every stream reach the end: ask for progress until it reports the final revision.
    for w in &mut watchers {
        let inc = w.incarnations.last_mut().unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            {
                let r = inc.received.lock().await;
                if r.canceled.is_some() || r.progress.last().is_some_and(|p| p.1 >= h.rev) {
                    break;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "a watch stream never caught up with revision {}", h.rev);
            if let Some(sender) = &mut inc.sender {
                let _ = sender.request_progress().await;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    // prev_kv is omitted, as etcd does, for events whose previous revision was compacted away.
    let compacted = h.compacted;
    let comparable = |evs: Vec<Ev>| -> Vec<Ev> {
        evs.into_iter().map(|e| if e.rev <= compacted { Ev { prev: None, ..e } } else { e }).collect()
    };
    for (wi, w) in watchers.iter().enumerate() {
        for (ii, inc) in w.incarnations.iter().enumerate() {
            let r = inc.received.lock().await;
            prop_assert!(r.created, "watcher {wi}.{ii} never created");
            let all: Vec<Ev> = r.responses.iter().flatten().cloned().collect();
            // Ordered (op order within a revision is checked by comparing with the history).
            for pair in all.windows(2) {
                prop_assert!(pair[0].rev <= pair[1].rev, "watcher {wi}.{ii}: out of order {:?}", pair);
            }
            // Atomic: a revision never spans two responses (and unique: never arrives twice).
            let mut seen_revs = std::collections::HashSet::new();
            for resp in &r.responses {
                let revs: std::collections::BTreeSet<i64> = resp.iter().map(|e| e.rev).collect();
                for rev in revs {
                    prop_assert!(seen_revs.insert(rev), "watcher {wi}.{ii}: revision {rev} split or repeated");
                }
            }
            // A delete at or below the compaction revision the stream was opened at may arrive or
            // not: the compaction answered before it removed the tombstone from the backend (etcd
            // compacts the backend in the background too), so a stream that caught up from the
            // backend in between reads it. The history leaves such deletes out; so does this.
            let all: Vec<Ev> = all.into_iter().filter(|e| e.put || e.rev > inc.compacted).collect();
            let start = inc.start;
            if let Some(cut) = inc.cut {
                // Resumable: up to the cut this stream had everything; the next one starts there.
                let evs: Vec<Ev> = all.into_iter().filter(|e| e.rev < cut).collect();
                prop_assert_eq!(
                    comparable(evs),
                    comparable(h.expected(&w.scope, start, cut - 1, inc.compacted)),
                    "watcher {}.{} before resume",
                    wi,
                    ii
                );
                continue;
            }
            match r.canceled {
                Some(compact_rev) => {
                    let next = all.last().map(|e| e.rev + 1).unwrap_or(start);
                    prop_assert!(
                        next < compact_rev,
                        "watcher {wi}.{ii} canceled at compaction {compact_rev} though it needed {next}"
                    );
                    let want = h.expected(&w.scope, start, next - 1, inc.compacted);
                    prop_assert_eq!(comparable(all), comparable(want), "watcher {}.{} (canceled)", wi, ii);
                }
                None => {
                    // Reliable: everything from the start to the final revision, nothing more.
                    let want = h.expected(&w.scope, start, h.rev, inc.compacted);
                    prop_assert_eq!(comparable(all), comparable(want), "watcher {}.{} from {}", wi, ii, start);
                    // Bookmarkable: every progress mark comes after every event up to its revision.
                    for (at, rev) in &r.progress {
                        let before: usize = r.responses[..*at].iter().map(|x| x.len()).sum();
                        let owed = h.expected(&w.scope, start, *rev, inc.compacted).len();
                        prop_assert!(
                            before >= owed,
                            "watcher {wi}.{ii}: progress at {rev} before {owed} events (had {before})"
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, max_shrink_iters: 32, ..ProptestConfig::default() })]

    #[test]
    fn watch_guarantees_hold_on_random_histories(steps in proptest::collection::vec(step(), 5..60)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(run(steps))?;
    }
}
