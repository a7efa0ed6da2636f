//! The in-memory key index: every key's [`KeyIndex`], ordered by key (etcd's `treeIndex`).
//!
//! Range ends follow etcd's conventions, already translated by the caller: `None` is a single key,
//! `Some(empty)` is "every key from `key` on", anything else is the exclusive end.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::key_index::{KeyAt, KeyIndex};
use crate::revision::Revision;

#[derive(Debug, Default)]
pub(crate) struct TreeIndex {
    keys: BTreeMap<Box<[u8]>, KeyIndex>,
}

fn bounds<'a>(key: &'a [u8], end: Option<&'a [u8]>) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    match end {
        None => (Bound::Included(key), Bound::Included(key)),
        Some([]) => (Bound::Included(key), Bound::Unbounded),
        Some(end) => (Bound::Included(key), Bound::Excluded(end)),
    }
}

impl TreeIndex {
    pub fn get(&self, key: &[u8], at_rev: i64) -> Option<KeyAt> {
        self.keys.get(key)?.get(at_rev)
    }

    pub fn put(&mut self, key: &[u8], rev: Revision) {
        match self.keys.get_mut(key) {
            Some(ki) => ki.put(rev),
            None => {
                let mut ki = KeyIndex::default();
                ki.put(rev);
                self.keys.insert(key.into(), ki);
            }
        }
    }

    /// Records a tombstone; false if the key is not alive.
    pub fn tombstone(&mut self, key: &[u8], rev: Revision) -> bool {
        self.keys.get_mut(key).is_some_and(|ki| ki.tombstone(rev))
    }

    /// Rebuild from the backend: a revision of `key` read back in revision order.
    pub fn restore(&mut self, key: &[u8], rev: Revision, created: Revision, ver: i64, tombstone: bool) {
        match self.keys.get_mut(key) {
            Some(ki) if tombstone => {
                ki.tombstone(rev);
            }
            Some(ki) => ki.put(rev),
            // A tombstone whose puts were compacted away ends nothing.
            None if tombstone => {}
            None => {
                self.keys.insert(key.into(), KeyIndex::restore(created, rev, ver));
            }
        }
    }

    /// Visits the keys alive at `at_rev` in `[key, end)` in key order until `f` returns false.
    pub fn visit_alive(&self, key: &[u8], end: Option<&[u8]>, at_rev: i64, mut f: impl FnMut(&[u8], KeyAt) -> bool) {
        if let Some(end) = end
            && !end.is_empty()
            && end <= key
        {
            return;
        }
        for (k, ki) in self.keys.range::<[u8], _>(bounds(key, end)) {
            if let Some(at) = ki.get(at_rev)
                && !f(k, at)
            {
                return;
            }
        }
    }

    /// Counts the keys alive at `at_rev` in `[key, end)`.
    pub fn count_alive(&self, key: &[u8], end: Option<&[u8]>, at_rev: i64) -> i64 {
        let mut n = 0;
        self.visit_alive(key, end, at_rev, |_, _| {
            n += 1;
            true
        });
        n
    }

    /// Compacts up to `max_keys` keys starting at `from` (inclusive); returns the key to continue
    /// from, or `None` when the end was reached. Keys left without history are removed.
    pub fn compact_chunk(
        &mut self,
        from: &[u8],
        at_rev: i64,
        max_keys: usize,
        removed: &mut Vec<(Revision, bool)>,
    ) -> Option<Box<[u8]>> {
        let mut emptied = Vec::new();
        let mut next = None;
        for (i, (k, ki)) in self.keys.range_mut::<[u8], _>((Bound::Included(from), Bound::Unbounded)).enumerate() {
            if i == max_keys {
                next = Some(k.clone());
                break;
            }
            ki.compact(at_rev, removed);
            if ki.is_empty() {
                emptied.push(k.clone());
            }
        }
        for k in emptied {
            self.keys.remove(&k);
        }
        next
    }

    /// Every key's [`KeyIndex::keep`] at `at_rev`.
    pub fn keep(&self, at_rev: i64) -> std::collections::HashSet<Revision> {
        self.keys.values().filter_map(|ki| ki.keep(at_rev)).collect()
    }

    /// Number of keys with any history.
    pub fn len(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    fn alive(ti: &TreeIndex, key: &str, end: Option<&str>, at: i64) -> Vec<String> {
        let mut out = Vec::new();
        ti.visit_alive(key.as_bytes(), end.map(str::as_bytes), at, |k, _| {
            out.push(String::from_utf8(k.to_vec()).unwrap());
            true
        });
        out
    }

    #[test]
    fn range_conventions() {
        let mut ti = TreeIndex::default();
        for (i, k) in ["a", "ab", "b", "c"].iter().enumerate() {
            ti.put(k.as_bytes(), r(i as i64 + 2));
        }
        assert_eq!(alive(&ti, "a", None, 10), ["a"]);
        assert_eq!(alive(&ti, "a", Some("b"), 10), ["a", "ab"]);
        assert_eq!(alive(&ti, "ab", Some(""), 10), ["ab", "b", "c"]);
        assert_eq!(alive(&ti, "c", Some("a"), 10), Vec::<String>::new());
        assert_eq!(alive(&ti, "a", Some(""), 3), ["a", "ab"]);
        assert!(ti.tombstone(b"ab", r(6)));
        assert_eq!(alive(&ti, "a", Some("c"), 10), ["a", "b"]);
        assert_eq!(alive(&ti, "a", Some("c"), 5), ["a", "ab", "b"]);
        assert_eq!(ti.count_alive(b"a", Some(b""), 10), 3);
    }

    #[test]
    fn compaction_in_chunks_removes_dead_keys() {
        let mut ti = TreeIndex::default();
        ti.put(b"a", r(2));
        ti.put(b"b", r(3));
        assert!(ti.tombstone(b"a", r(4)));
        ti.put(b"c", r(5));
        let mut removed = Vec::new();
        let next = ti.compact_chunk(b"", 4, 2, &mut removed);
        assert_eq!(next.as_deref(), Some(&b"c"[..]));
        assert_eq!(ti.compact_chunk(&next.unwrap(), 4, 2, &mut removed), None);
        assert_eq!(removed, vec![(r(2), false), (r(4), true)]);
        assert_eq!(ti.len(), 2);
    }
}
