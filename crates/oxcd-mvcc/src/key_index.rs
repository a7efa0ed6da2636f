//! The history of one key as generations of revisions (etcd's `keyIndex`).
//!
//! A generation runs from the put that creates the key to the tombstone that deletes it; the last
//! generation is open (no tombstone yet) or empty (the key is deleted now). For the history
//! `put(1.0); put(2.0); tombstone(3.0); put(4.0); tombstone(5.0)`:
//!
//! ```text
//! generations:
//!     {empty}
//!     {4.0, 5.0(t)}
//!     {1.0, 2.0, 3.0(t)}
//! ```
//!
//! Compaction at `n` keeps, per key, the newest revision `<= n` and everything after it, drops
//! generations that ended at or before `n`, and drops a generation left holding only its tombstone:
//!
//! ```text
//! compact(2): {empty} {4.0, 5.0(t)} {2.0, 3.0(t)}
//! compact(4): {empty} {4.0, 5.0(t)}
//! compact(5): {empty} {5.0(t)}      -> the lone tombstone is dropped: {empty}
//! compact(6): key removed
//! ```

use crate::revision::Revision;

/// One life of a key: from creation to (optionally) its tombstone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Generation {
    /// Version of the key at the newest revision of this generation.
    pub ver: i64,
    /// Revision that created the key in this generation.
    pub created: Revision,
    /// Revisions of this generation, oldest first; the last is the tombstone if the generation ended.
    pub revs: Vec<Revision>,
}

impl Generation {
    fn is_empty(&self) -> bool {
        self.revs.is_empty()
    }
}

/// What [`KeyIndex::get`] found: the revision holding the key's value and its create revision and
/// version at that point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyAt {
    pub modified: Revision,
    pub created: Revision,
    pub ver: i64,
}

/// The history of one key.
///
/// Most keys of a store that is compacted now and then (Kubernetes compacts every five minutes)
/// have one revision left in one live generation: those are held inline ([`KeyIndex::One`]), with
/// no allocation. A key written again since, and never deleted, is one live generation
/// ([`KeyIndex::Live`]: one allocation, its revisions). Every other history is a list of
/// generations ([`KeyIndex::Many`]). This index is most of a large store's memory: the inline form
/// saves the two allocations (about 100 bytes) a list of one generation of one revision costs, the
/// live form one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyIndex {
    /// A live key with one revision left: `modified`, in the generation created at `created`.
    One { created: Revision, modified: Revision, ver: i64 },
    /// A live key with two revisions or more (oldest first) in one generation, with no deletion
    /// left in its history.
    Live { created: Revision, ver: i64, revs: Vec<Revision> },
    /// Any history: `modified` is the newest revision of any generation.
    Many { modified: Revision, generations: Vec<Generation> },
}

impl Default for KeyIndex {
    fn default() -> KeyIndex {
        KeyIndex::Many { modified: Revision::default(), generations: Vec::new() }
    }
}

impl KeyIndex {
    /// The newest revision recorded.
    fn modified(&self) -> Revision {
        match self {
            KeyIndex::One { modified, .. } | KeyIndex::Many { modified, .. } => *modified,
            KeyIndex::Live { revs, .. } => *revs.last().expect("a live generation has revisions"),
        }
    }

    /// The history as a list of generations, turning the inline and live forms into one; a
    /// tombstone, and compaction of a list, go through here.
    fn generations_mut(&mut self) -> &mut Vec<Generation> {
        match std::mem::take(self) {
            KeyIndex::One { created, modified, ver } => {
                // One generation now, and soon a tombstone: room for two.
                let mut revs = Vec::with_capacity(2);
                revs.push(modified);
                *self = KeyIndex::Many { modified, generations: vec![Generation { ver, created, revs }] };
            }
            KeyIndex::Live { created, ver, revs } => {
                let modified = *revs.last().expect("a live generation has revisions");
                *self = KeyIndex::Many { modified, generations: vec![Generation { ver, created, revs }] };
            }
            many => *self = many,
        }
        match self {
            KeyIndex::Many { generations, .. } => generations,
            KeyIndex::One { .. } | KeyIndex::Live { .. } => unreachable!("turned into Many above"),
        }
    }

    /// Back to the inline or the live form where the history allows it.
    fn shrink(&mut self) {
        match self {
            // One generation that is not empty is the open one.
            KeyIndex::Many { modified, generations } if generations.len() == 1 && !generations[0].revs.is_empty() => {
                let Generation { ver, created, revs } = generations.pop().expect("one generation");
                debug_assert_eq!(revs.last(), Some(&*modified));
                *self = match revs.as_slice() {
                    [only] => KeyIndex::One { created, modified: *only, ver },
                    _ => KeyIndex::Live { created, ver, revs },
                };
            }
            KeyIndex::Live { created, ver, revs } if revs.len() == 1 => {
                *self = KeyIndex::One { created: *created, modified: revs[0], ver: *ver };
            }
            _ => {}
        }
    }

    /// Records a put at `rev` (which must be newer than every recorded revision).
    pub fn put(&mut self, rev: Revision) {
        let last = self.modified();
        assert!(rev > last, "put revision {rev:?} not after last modification {last:?}");
        match self {
            KeyIndex::Many { generations, .. } if generations.is_empty() => {
                *self = KeyIndex::One { created: rev, modified: rev, ver: 1 };
                return;
            }
            KeyIndex::One { created, modified, ver } => {
                *self = KeyIndex::Live { created: *created, ver: *ver + 1, revs: vec![*modified, rev] };
                return;
            }
            KeyIndex::Live { ver, revs, .. } => {
                revs.push(rev);
                *ver += 1;
                return;
            }
            KeyIndex::Many { .. } => {}
        }
        let generations = self.generations_mut();
        let g = generations.last_mut().expect("a history that is not empty has a generation");
        if g.revs.is_empty() {
            g.created = rev;
            g.revs.reserve_exact(1);
        }
        g.revs.push(rev);
        g.ver += 1;
        if let KeyIndex::Many { modified, .. } = self {
            *modified = rev;
        }
    }

    /// Starts the index from a revision read back from the backend whose earlier history may have
    /// been compacted away.
    pub fn restore(created: Revision, modified: Revision, ver: i64) -> KeyIndex {
        KeyIndex::One { created, modified, ver }
    }

    /// Records a tombstone at `rev`; false if the key is not alive.
    pub fn tombstone(&mut self, rev: Revision) -> bool {
        if let KeyIndex::Many { generations, .. } = self
            && generations.last().is_none_or(|g| g.is_empty())
        {
            return false;
        }
        self.put(rev);
        self.generations_mut().push(Generation::default());
        true
    }

    /// Whether no revision is left.
    pub fn is_empty(&self) -> bool {
        match self {
            KeyIndex::One { .. } | KeyIndex::Live { .. } => false,
            KeyIndex::Many { generations, .. } => {
                generations.len() <= 1 && generations.iter().all(Generation::is_empty)
            }
        }
    }

    /// The key as of `at_rev`, or `None` if it did not exist then.
    pub fn get(&self, at_rev: i64) -> Option<KeyAt> {
        let generations = match self {
            KeyIndex::One { created, modified, ver } => {
                return (modified.main <= at_rev).then_some(KeyAt {
                    modified: *modified,
                    created: *created,
                    ver: *ver,
                });
            }
            KeyIndex::Live { created, ver, revs } => return generation_at(*created, *ver, revs, at_rev),
            KeyIndex::Many { generations, .. } => generations,
        };
        let g = find_generation(generations, at_rev)?;
        generation_at(g.created, g.ver, &g.revs, at_rev)
    }

    /// The revision a compaction at `at_rev` would keep as the key's value then: the newest
    /// revision `<= at_rev` of the generation covering `at_rev`, unless that is a tombstone
    /// (etcd's `keyIndex.keep`, which HashKV filters compacted history with).
    pub fn keep(&self, at_rev: i64) -> Option<Revision> {
        let generations = match self {
            KeyIndex::One { modified, .. } => return (modified.main <= at_rev).then_some(*modified),
            // The open generation: no tombstone to leave out.
            KeyIndex::Live { revs, .. } => return newest_at(revs, at_rev).map(|n| revs[n]),
            KeyIndex::Many { generations, .. } => generations,
        };
        if self.is_empty() {
            return None;
        }
        let gen_idx = first_generation_after(generations, at_rev);
        let g = &generations[gen_idx];
        let n = newest_at(&g.revs, at_rev)?;
        let tombstone = n == g.revs.len() - 1 && gen_idx != generations.len() - 1;
        (!tombstone).then_some(g.revs[n])
    }

    /// Compacts history at `at_rev` (see the module diagram). Appends every dropped revision and
    /// whether it was a tombstone to `removed`.
    pub fn compact(&mut self, at_rev: i64, removed: &mut Vec<(Revision, bool)>) {
        // The inline form's one revision is the newest at or below any `at_rev` it is compacted
        // at, or newer than it: compaction keeps it either way.
        if matches!(self, KeyIndex::One { .. }) || self.is_empty() {
            return;
        }
        if let KeyIndex::Live { revs, .. } = self {
            if let Some(n) = newest_at(revs, at_rev) {
                removed.extend(revs.drain(..n).map(|r| (r, false)));
            }
            self.shrink();
            return;
        }
        let generations = self.generations_mut();
        let mut gen_idx = first_generation_after(generations, at_rev);
        for g in &generations[..gen_idx] {
            let last = g.revs.len() - 1;
            removed.extend(g.revs.iter().enumerate().map(|(i, r)| (*r, i == last)));
        }
        let is_last = gen_idx == generations.len() - 1;
        let g = &mut generations[gen_idx];
        if !g.is_empty() {
            if let Some(n) = newest_at(&g.revs, at_rev) {
                removed.extend(g.revs.drain(..n).map(|r| (r, false)));
            }
            if g.revs.len() == 1 && !is_last {
                // Only the tombstone is left: the key was deleted at or before at_rev.
                removed.push((g.revs[0], true));
                gen_idx += 1;
            }
        }
        generations.drain(..gen_idx);
        self.shrink();
    }
}

/// Index of the newest of `revs` with `main <= at_rev`, if any.
fn newest_at(revs: &[Revision], at_rev: i64) -> Option<usize> {
    revs.iter().rposition(|r| r.main <= at_rev)
}

/// The key as of `at_rev` in a generation created at `created` whose revisions are `revs`, its
/// version `ver` at the newest.
fn generation_at(created: Revision, ver: i64, revs: &[Revision], at_rev: i64) -> Option<KeyAt> {
    let n = newest_at(revs, at_rev)?;
    Some(KeyAt { modified: revs[n], created, ver: ver - (revs.len() - n - 1) as i64 })
}

/// The generation alive at `rev`, if the key was alive then.
fn find_generation(generations: &[Generation], rev: i64) -> Option<&Generation> {
    let last = generations.len().checked_sub(1)?;
    for (i, g) in generations.iter().enumerate().rev() {
        if g.revs.is_empty() {
            continue;
        }
        if i != last && g.revs[g.revs.len() - 1].main <= rev {
            // That generation's tombstone is at or before rev: deleted at rev.
            return None;
        }
        if g.revs[0].main <= rev {
            return Some(g);
        }
    }
    None
}

/// Index of the first generation that still covers `at_rev` or starts after it (the last one if
/// every other ended at or before it).
fn first_generation_after(generations: &[Generation], at_rev: i64) -> usize {
    let mut gen_idx = 0;
    while gen_idx < generations.len() - 1 {
        let g = &generations[gen_idx];
        if g.revs[g.revs.len() - 1].main > at_rev {
            break;
        }
        gen_idx += 1;
    }
    gen_idx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    fn first_revs(ki: &mut KeyIndex) -> Vec<Revision> {
        ki.generations_mut()[0].revs.clone()
    }

    /// The example drawn in the module docs (etcd key_index.go).
    fn example() -> KeyIndex {
        let mut ki = KeyIndex::default();
        ki.put(r(1));
        ki.put(r(2));
        assert!(ki.tombstone(r(3)));
        ki.put(r(4));
        assert!(ki.tombstone(r(5)));
        ki
    }

    #[test]
    fn get_walks_generations() {
        let ki = example();
        assert_eq!(ki.get(0), None);
        assert_eq!(ki.get(1), Some(KeyAt { modified: r(1), created: r(1), ver: 1 }));
        assert_eq!(ki.get(2), Some(KeyAt { modified: r(2), created: r(1), ver: 2 }));
        assert_eq!(ki.get(3), None);
        assert_eq!(ki.get(4), Some(KeyAt { modified: r(4), created: r(4), ver: 1 }));
        assert_eq!(ki.get(5), None);
        assert_eq!(ki.get(100), None);
        assert!(!ki.clone().tombstone(r(6)), "tombstone of a deleted key");
    }

    #[test]
    fn keep_is_the_value_a_compaction_would_leave() {
        let ki = example();
        let kept: Vec<_> = (0..=6).map(|at| ki.keep(at).map(|r| r.main)).collect();
        // At 3 and 5 the newest revision is a tombstone: nothing is kept.
        assert_eq!(kept, [None, Some(1), Some(2), None, Some(4), None, None]);
        let mut open = KeyIndex::default();
        open.put(r(2));
        open.put(r(7));
        assert_eq!((open.keep(1), open.keep(5), open.keep(9)), (None, Some(r(2)), Some(r(7))));
    }

    #[test]
    fn compaction_follows_the_diagram() {
        let mut ki = example();
        let mut removed = Vec::new();
        ki.compact(2, &mut removed);
        assert_eq!(removed, vec![(r(1), false)]);
        assert_eq!(first_revs(&mut ki), vec![r(2), r(3)]);
        assert_eq!(ki.get(2).map(|k| k.ver), Some(2));

        removed.clear();
        ki.compact(4, &mut removed);
        assert_eq!(removed, vec![(r(2), false), (r(3), true)]);
        assert_eq!(first_revs(&mut ki), vec![r(4), r(5)]);

        removed.clear();
        ki.compact(5, &mut removed);
        assert_eq!(removed, vec![(r(4), false), (r(5), true)]);
        assert!(ki.is_empty());
    }

    #[test]
    fn compaction_keeps_the_newest_revision_at_or_below() {
        let mut ki = KeyIndex::default();
        ki.put(r(2));
        ki.put(r(5));
        let mut removed = Vec::new();
        ki.compact(4, &mut removed);
        assert!(removed.is_empty());
        assert_eq!(ki.get(4).map(|k| k.modified), Some(r(2)));
        ki.compact(7, &mut removed);
        assert_eq!(removed, vec![(r(2), false)]);
        assert_eq!(ki.get(7).map(|k| (k.modified, k.ver)), Some((r(5), 2)));
    }

    #[test]
    fn one_revision_is_held_inline() {
        let mut ki = KeyIndex::default();
        ki.put(r(3));
        assert_eq!(ki, KeyIndex::One { created: r(3), modified: r(3), ver: 1 });
        ki.put(r(5));
        assert_eq!(ki, KeyIndex::Live { created: r(3), ver: 2, revs: vec![r(3), r(5)] });
        let mut removed = Vec::new();
        ki.compact(6, &mut removed);
        assert_eq!(removed, vec![(r(3), false)]);
        assert_eq!(ki, KeyIndex::One { created: r(3), modified: r(5), ver: 2 });
        assert!(ki.tombstone(r(7)));
        assert_eq!(ki.get(6).map(|k| (k.modified, k.created, k.ver)), Some((r(5), r(3), 2)));
        assert_eq!(ki.get(7), None);
        assert!(matches!(ki, KeyIndex::Many { .. }));
        ki.put(r(8));
        ki.compact(9, &mut removed);
        assert_eq!(ki, KeyIndex::One { created: r(8), modified: r(8), ver: 1 });
        // A live key written three times, compacted between its writes.
        ki.put(r(10));
        ki.put(r(11));
        removed.clear();
        ki.compact(10, &mut removed);
        assert_eq!(removed, vec![(r(8), false)]);
        assert_eq!(ki, KeyIndex::Live { created: r(8), ver: 3, revs: vec![r(10), r(11)] });
        assert_eq!(ki.get(9), None, "compacted away");
        assert_eq!(ki.get(10).map(|k| (k.modified, k.ver)), Some((r(10), 2)));
    }

    /// One step of a key's history for the property below.
    #[derive(Debug, Clone)]
    enum Step {
        Put,
        Tombstone,
        /// Compact at the newest revision minus this much.
        Compact(i64),
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![3 => Just(Step::Put), 1 => Just(Step::Tombstone), 1 => (0i64..4).prop_map(Step::Compact)]
    }

    proptest::proptest! {
        /// The inline and live forms answer every question as the list of generations does: a
        /// twin kept as a list after every step sees the same reads, keeps and compactions.
        #[test]
        fn inline_form_answers_as_the_list(steps in proptest::collection::vec(step(), 1..40)) {
            let (mut ki, mut twin) = (KeyIndex::default(), KeyIndex::default());
            let mut rev = 1;
            for s in steps {
                rev += 1;
                let (mut removed, mut twin_removed) = (Vec::new(), Vec::new());
                match s {
                    Step::Put => {
                        ki.put(r(rev));
                        twin.put(r(rev));
                    }
                    Step::Tombstone => proptest::prop_assert_eq!(ki.tombstone(r(rev)), twin.tombstone(r(rev))),
                    Step::Compact(back) => {
                        ki.compact(rev - back, &mut removed);
                        twin.compact(rev - back, &mut twin_removed);
                    }
                }
                twin.generations_mut();
                proptest::prop_assert_eq!(removed, twin_removed);
                proptest::prop_assert_eq!(ki.is_empty(), twin.is_empty());
                for at in 0..=rev + 1 {
                    proptest::prop_assert_eq!(ki.get(at), twin.get(at));
                    proptest::prop_assert_eq!(ki.keep(at), twin.keep(at));
                }
                if ki.is_empty() {
                    break;
                }
            }
        }
    }
}
