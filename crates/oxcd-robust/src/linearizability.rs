//! A linearizability checker for registers (one per key): Wing & Gong's search with Lowe's
//! memoization of (operations linearized, state), as porcupine does it, key by key
//! (linearizability is compositional: a history is linearizable if the history of each key is).
//!
//! An operation whose outcome is unknown (the client timed out) may or may not have taken
//! effect: it returns at the end of time, so it can be linearized anywhere after its invocation,
//! including after every other operation (which is the same as never). A read whose outcome is
//! unknown tells nothing and is left out. (Long histories should not carry many: each stays in
//! the search's list to the end; the workload resolves the unknown writes it can from the
//! cluster's own history first.)
//!
//! The memo holds a 128-bit Zobrist hash of the set of operations linearized, not the set: a
//! search over n operations would otherwise keep n bits per state visited (gigabytes for a
//! 30-minute run). A collision could only make the search skip a branch, so report a violation
//! that is not one, never miss one.

use std::collections::{BTreeMap, HashSet};

/// A register's value: `None` until the first write.
pub type Value = Option<String>;

/// What a client asked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Input {
    Put(String),
    Get,
    /// Compare-and-set: write `new` if the value is `expect`.
    Cas {
        expect: Value,
        new: String,
    },
}

/// What it was told.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Output {
    Put,
    Get(Value),
    Cas(bool),
    /// Timed out: it may or may not have taken effect.
    Unknown,
}

/// One operation of one client on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub client: usize,
    pub key: String,
    pub input: Input,
    pub output: Output,
    /// When the client invoked it and when the answer came (any monotonic clock, one for all
    /// clients); `complete` is ignored for an unknown outcome.
    pub invoke: u64,
    pub complete: u64,
}

/// Why a history is not linearizable: the key, and the operations the search could not place
/// (the ones that had returned, unplaced, where it went furthest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub key: String,
    pub stuck_at: Vec<Operation>,
}

/// Checks every key's history; the first key that is not linearizable.
pub fn check(history: &[Operation]) -> Result<(), Violation> {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        if op.input == Input::Get && op.output == Output::Unknown {
            continue;
        }
        by_key.entry(&op.key).or_default().push(op);
    }
    for (key, ops) in by_key {
        check_key(&ops).map_err(|stuck| Violation { key: key.to_string(), stuck_at: stuck })?;
    }
    Ok(())
}

/// The register's next state if `op` takes effect in `state`, or `None` if its output
/// contradicts `state`.
fn step(state: &Value, op: &Operation) -> Option<Value> {
    match (&op.input, &op.output) {
        (Input::Put(v), _) => Some(Some(v.clone())),
        (Input::Get, Output::Get(seen)) => (seen == state).then(|| state.clone()),
        (Input::Get, _) => Some(state.clone()),
        (Input::Cas { expect, new }, out) => {
            let applies = state == expect;
            match out {
                Output::Cas(ok) if *ok != applies => None,
                _ if applies => Some(Some(new.clone())),
                _ => Some(state.clone()),
            }
        }
    }
}

/// One event of the search's list: an operation's call or its return.
#[derive(Clone, Copy)]
struct Node {
    op: usize,
    is_call: bool,
    /// For a call, the index of its return node.
    matching: usize,
    prev: usize,
    next: usize,
}

const HEAD: usize = 0;
const NONE: usize = usize::MAX;

fn check_key(ops: &[&Operation]) -> Result<(), Vec<Operation>> {
    // Events in time order; a call before a return at the same instant (concurrent, the lenient
    // reading). Unknown outcomes return after everything.
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * ops.len());
    for (i, op) in ops.iter().enumerate() {
        let ret = if op.output == Output::Unknown { u64::MAX } else { op.complete.max(op.invoke) };
        events.push((op.invoke, true, i));
        events.push((ret, false, i));
    }
    events.sort_by_key(|&(t, is_call, i)| (t, !is_call, i));
    // Node 0 is the list's head; event k is node k + 1.
    let mut nodes = vec![Node { op: NONE, is_call: false, matching: NONE, prev: NONE, next: 1 }];
    let mut ret_of = vec![0; ops.len()];
    for (k, &(_, is_call, op)) in events.iter().enumerate() {
        let next = if k + 1 == events.len() { NONE } else { k + 2 };
        nodes.push(Node { op, is_call, matching: NONE, prev: k, next });
        if !is_call {
            ret_of[op] = k + 1;
        }
    }
    for n in nodes.iter_mut().skip(1) {
        if n.is_call {
            n.matching = ret_of[n.op];
        }
    }

    let zobrist: Vec<u128> = (0..ops.len() as u64).map(zobrist_key).collect();
    let mut linearized: u128 = 0;
    let mut cache: HashSet<(u128, Value)> = HashSet::new();
    let mut state: Value = None;
    let mut stack: Vec<(usize, Value)> = Vec::new();
    let mut best = 0;
    let mut stuck: Vec<Operation> = Vec::new();
    let mut entry = nodes[HEAD].next;

    // Takes a call and its return out of the list.
    fn lift(nodes: &mut [Node], call: usize) {
        let (p, n) = (nodes[call].prev, nodes[call].next);
        nodes[p].next = n;
        if n != NONE {
            nodes[n].prev = p;
        }
        let ret = nodes[call].matching;
        let (p, n) = (nodes[ret].prev, nodes[ret].next);
        nodes[p].next = n;
        if n != NONE {
            nodes[n].prev = p;
        }
    }
    // Puts them back (in the reverse order of lift).
    fn unlift(nodes: &mut [Node], call: usize) {
        let ret = nodes[call].matching;
        let (p, n) = (nodes[ret].prev, nodes[ret].next);
        nodes[p].next = ret;
        if n != NONE {
            nodes[n].prev = ret;
        }
        let (p, n) = (nodes[call].prev, nodes[call].next);
        nodes[p].next = call;
        if n != NONE {
            nodes[n].prev = call;
        }
    }

    while nodes[HEAD].next != NONE {
        if entry == NONE {
            // Walked past every event without placing the rest: cannot happen (the last event is
            // a return), but treat it as a dead end.
            return Err(stuck);
        }
        let node = nodes[entry];
        if node.is_call {
            if let Some(next_state) = step(&state, ops[node.op]) {
                let with = linearized ^ zobrist[node.op];
                if cache.insert((with, next_state.clone())) {
                    stack.push((entry, state));
                    state = next_state;
                    linearized = with;
                    lift(&mut nodes, entry);
                    entry = nodes[HEAD].next;
                    continue;
                }
            }
            entry = node.next;
        } else {
            // An operation returned before it could be placed: undo the last placement.
            if stack.len() >= best {
                best = stack.len();
                stuck = unplaced_returned(&nodes, ops, entry);
            }
            let Some((call, prev_state)) = stack.pop() else { return Err(stuck) };
            state = prev_state;
            let op = nodes[call].op;
            linearized ^= zobrist[op];
            unlift(&mut nodes, call);
            entry = nodes[call].next;
        }
    }
    Ok(())
}

/// Operation `i`'s random 128-bit key (splitmix64, twice): the hash of a set is the XOR of its
/// members' keys.
fn zobrist_key(i: u64) -> u128 {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let a = mix(i.wrapping_mul(2).wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let b = mix(i.wrapping_mul(2).wrapping_add(2).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    (u128::from(a) << 64) | u128::from(b)
}

/// The operations still in the list up to and including the return at `upto`, for the report.
fn unplaced_returned(nodes: &[Node], ops: &[&Operation], upto: usize) -> Vec<Operation> {
    let mut out = Vec::new();
    let mut n = nodes[HEAD].next;
    while n != NONE {
        if nodes[n].is_call {
            out.push(ops[nodes[n].op].clone());
        }
        if n == upto {
            break;
        }
        n = nodes[n].next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: usize, input: Input, output: Output, invoke: u64, complete: u64) -> Operation {
        Operation { client, key: "k".into(), input, output, invoke, complete }
    }
    fn put(c: usize, v: &str, t0: u64, t1: u64) -> Operation {
        op(c, Input::Put(v.into()), Output::Put, t0, t1)
    }
    fn get(c: usize, v: Option<&str>, t0: u64, t1: u64) -> Operation {
        op(c, Input::Get, Output::Get(v.map(String::from)), t0, t1)
    }
    fn cas(c: usize, expect: Option<&str>, new: &str, ok: bool, t0: u64, t1: u64) -> Operation {
        op(c, Input::Cas { expect: expect.map(String::from), new: new.into() }, Output::Cas(ok), t0, t1)
    }

    #[test]
    fn sequential_and_concurrent_histories_pass() {
        // Sequential.
        assert!(check(&[put(0, "a", 0, 1), get(1, Some("a"), 2, 3), cas(0, Some("a"), "b", true, 4, 5)]).is_ok());
        // Overlapping: the read may see either value.
        for seen in [None, Some("a")] {
            assert!(check(&[put(0, "a", 0, 10), get(1, seen, 1, 2)]).is_ok(), "{seen:?}");
        }
        // Two writers, readers that see them in one order.
        let h = [put(0, "a", 0, 10), put(1, "b", 0, 10), get(2, Some("b"), 11, 12), get(3, Some("b"), 13, 14)];
        assert!(check(&h).is_ok());
        // A CAS that lost to a concurrent write.
        let h = [put(0, "a", 0, 1), put(1, "b", 2, 10), cas(2, Some("a"), "c", false, 3, 9), get(0, Some("b"), 11, 12)];
        assert!(check(&h).is_ok());
    }

    #[test]
    fn a_stale_read_is_caught() {
        let h = [put(0, "a", 0, 1), put(0, "b", 2, 3), get(1, Some("a"), 4, 5)];
        let v = check(&h).unwrap_err();
        assert_eq!(v.key, "k");
        assert!(v.stuck_at.iter().any(|o| o.input == Input::Get), "{v:?}");
    }

    #[test]
    fn a_lost_write_is_caught() {
        // Acknowledged, then every later read sees the value before it.
        let h = [put(0, "a", 0, 1), put(1, "b", 2, 3), get(2, Some("a"), 4, 5), get(2, Some("a"), 6, 7)];
        assert!(check(&h).is_err());
    }

    #[test]
    fn a_value_never_written_is_caught() {
        let h = [put(0, "a", 0, 1), get(1, Some("zzz"), 2, 3)];
        assert!(check(&h).is_err());
        assert!(check(&[get(1, Some("a"), 0, 1)]).is_err(), "a read of a value before any write");
    }

    #[test]
    fn unknown_outcomes_may_or_may_not_have_taken_effect() {
        // A write that timed out, seen later: it took effect.
        let h = [op(0, Input::Put("a".into()), Output::Unknown, 0, 0), get(1, Some("a"), 5, 6)];
        assert!(check(&h).is_ok());
        // ... or never seen: it did not (or not yet).
        let h = [op(0, Input::Put("a".into()), Output::Unknown, 0, 0), get(1, None, 5, 6), get(1, None, 7, 8)];
        assert!(check(&h).is_ok());
        // But it cannot take effect before it was invoked.
        let h = [get(1, Some("a"), 0, 1), op(0, Input::Put("a".into()), Output::Unknown, 5, 0)];
        assert!(check(&h).is_err());
        // An unknown CAS may have applied.
        let h = [
            put(0, "a", 0, 1),
            op(1, Input::Cas { expect: Some("a".into()), new: "b".into() }, Output::Unknown, 2, 0),
            get(2, Some("b"), 5, 6),
        ];
        assert!(check(&h).is_ok());
    }

    #[test]
    fn keys_are_checked_apart() {
        let mut other = put(0, "x", 0, 1);
        other.key = "other".into();
        let h = [put(0, "a", 0, 1), other, get(1, Some("a"), 2, 3)];
        assert!(check(&h).is_ok());
    }

    #[test]
    fn a_long_concurrent_history_is_checked() {
        // 10 clients, 300 rounds each: writes, CASes and reads on one key, every round
        // overlapping, consistent with one order (the round's write, then its reads).
        let mut h = Vec::new();
        let mut value: Option<String> = None;
        for round in 0..300u64 {
            let t = round * 10;
            let v = format!("v{round}");
            h.push(put(round as usize % 10, &v, t, t + 5));
            for c in 0..3 {
                h.push(get(10 + c, Some(&v), t + 6, t + 9));
            }
            h.push(cas(20, value.as_deref(), "never", false, t + 6, t + 9));
            value = Some(v);
        }
        // Without the memoization this search is exponential; with it, it ends.
        assert!(check(&h).is_ok());
    }
}
