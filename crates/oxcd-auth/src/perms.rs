//! Key permissions as etcd judges them (`server/auth/range_perm_cache.go` and its interval tree).
//!
//! A permission is an interval `[begin, end)` of keys in etcd's "affine" order, where an empty
//! end is greater than every key: a single-key permission `k` is `[k, k\0)`, a permission whose
//! range end is `"\0"` runs to the end of the keyspace. A user's read and write intervals are the
//! union of its roles'. A single key is allowed if one interval holds it; a range `[key, end)` is
//! allowed if the intervals that meet it, taken in order of their start, cover it without a gap.

use std::cmp::Ordering;

use oxcd_api::authpb::{Permission, permission};

/// etcd's order on interval bounds: bytes order, an empty bound above everything.
pub(crate) fn cmp(a: &[u8], b: &[u8]) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.cmp(b),
    }
}

/// `[begin, end)`; an empty `end` is the end of the keyspace.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Interval {
    begin: Vec<u8>,
    end: Vec<u8>,
}

impl Interval {
    /// The interval a permission grants.
    fn of(p: &Permission) -> Interval {
        match &p.range_end[..] {
            [] => Interval::point(&p.key),
            [0] => Interval { begin: p.key.to_vec(), end: Vec::new() },
            end => Interval { begin: p.key.to_vec(), end: end.to_vec() },
        }
    }

    /// `[key, key\0)`: exactly one key.
    fn point(key: &[u8]) -> Interval {
        let mut end = key.to_vec();
        end.push(0);
        Interval { begin: key.to_vec(), end }
    }

    /// Whether `self` (a query) meets `node`, as the interval tree's visit decides it.
    fn meets(&self, node: &Interval) -> bool {
        let left_of =
            cmp(&self.begin, &node.begin) == Ordering::Less && cmp(&self.end, &node.begin) != Ordering::Greater;
        let right_of = cmp(&self.begin, &node.end) != Ordering::Less;
        !left_of && !right_of
    }
}

/// What one user may read and write: the union of its roles' permissions.
#[derive(Debug, Clone, Default)]
pub struct UserPerms {
    read: Vec<Interval>,
    write: Vec<Interval>,
}

/// The access a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl UserPerms {
    /// Merges the permissions of a user's roles.
    pub fn merge<'a>(perms: impl IntoIterator<Item = &'a Permission>) -> UserPerms {
        let mut u = UserPerms::default();
        for p in perms {
            let ivl = Interval::of(p);
            match permission::Type::try_from(p.perm_type) {
                Ok(permission::Type::Read) => u.read.push(ivl),
                Ok(permission::Type::Write) => u.write.push(ivl),
                Ok(permission::Type::Readwrite) => {
                    u.read.push(ivl.clone());
                    u.write.push(ivl);
                }
                Err(_) => {}
            }
        }
        // The tree visits intervals in order of their start.
        u.read.sort_by(|a, b| cmp(&a.begin, &b.begin).then_with(|| cmp(&a.end, &b.end)));
        u.write.sort_by(|a, b| cmp(&a.begin, &b.begin).then_with(|| cmp(&a.end, &b.end)));
        u
    }

    /// Whether `access` to `key` (a single key when `range_end` is empty, else `[key, range_end)`,
    /// `"\0"` meaning to the end) is allowed.
    pub fn allows(&self, access: Access, key: &[u8], range_end: &[u8]) -> bool {
        let ivls = match access {
            Access::Read => &self.read,
            Access::Write => &self.write,
        };
        if range_end.is_empty() {
            return ivls.iter().any(|i| Interval::point(key).meets(i));
        }
        let end = if range_end == [0] { Vec::new() } else { range_end.to_vec() };
        let query = Interval { begin: key.to_vec(), end };
        let mut span: Option<(&[u8], &[u8])> = None;
        for node in ivls.iter().filter(|n| query.meets(n)) {
            match &mut span {
                None => span = Some((&node.begin, &node.end)),
                Some((_, max_end)) => {
                    if cmp(max_end, &node.begin) == Ordering::Less {
                        return false;
                    }
                    if cmp(&node.end, max_end) == Ordering::Greater {
                        *max_end = &node.end;
                    }
                }
            }
        }
        match span {
            Some((min_begin, max_end)) => {
                cmp(max_end, &query.end) != Ordering::Less && cmp(min_begin, &query.begin) != Ordering::Greater
            }
            None => false,
        }
    }
}

/// etcd's `isValidPermissionRange`: a key, and an end that is empty, above the key, or `"\0"`.
pub fn valid_range(key: &[u8], range_end: &[u8]) -> bool {
    if key.is_empty() {
        return false;
    }
    range_end.is_empty() || cmp(key, range_end) == Ordering::Less || range_end == [0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn perm(t: permission::Type, key: &[u8], end: &[u8]) -> Permission {
        Permission { perm_type: t as i32, key: key.to_vec().into(), range_end: end.to_vec().into() }
    }

    #[test]
    fn single_keys_prefixes_and_open_ends() {
        let u = UserPerms::merge(&[
            perm(permission::Type::Read, b"a", b""),
            perm(permission::Type::Readwrite, b"foo", b"fop"),
            perm(permission::Type::Write, b"z", b"\0"),
        ]);
        assert!(u.allows(Access::Read, b"a", b""));
        assert!(!u.allows(Access::Write, b"a", b""));
        assert!(!u.allows(Access::Read, b"ab", b""));
        // The point permission covers the range [a, a\0) and nothing wider.
        assert!(u.allows(Access::Read, b"a", b"a\0"));
        assert!(!u.allows(Access::Read, b"a", b"b"));
        assert!(u.allows(Access::Write, b"foo/bar", b""));
        assert!(u.allows(Access::Read, b"foo", b"fop"));
        assert!(u.allows(Access::Read, b"foo/", b"foo0"));
        assert!(!u.allows(Access::Read, b"fo", b"fop"));
        assert!(!u.allows(Access::Read, b"foo", b"\0"));
        assert!(u.allows(Access::Write, b"zz", b"\0"));
        assert!(u.allows(Access::Write, b"z", b""));
        assert!(!u.allows(Access::Read, b"z", b""));
    }

    #[test]
    fn adjacent_intervals_cover_a_range_together() {
        let u = UserPerms::merge(&[
            perm(permission::Type::Read, b"a", b"c"),
            perm(permission::Type::Read, b"c", b"e"),
            perm(permission::Type::Read, b"f", b"g"),
        ]);
        assert!(u.allows(Access::Read, b"a", b"e"));
        assert!(u.allows(Access::Read, b"b", b"d"));
        assert!(!u.allows(Access::Read, b"a", b"f"));
        assert!(!u.allows(Access::Read, b"d", b"g"));
    }

    #[test]
    fn etcd_permission_ranges() {
        assert!(valid_range(b"a", b""));
        assert!(valid_range(b"a", b"b"));
        assert!(valid_range(b"a", b"\0"));
        assert!(!valid_range(b"", b""));
        assert!(!valid_range(b"b", b"a"));
        assert!(!valid_range(b"a", b"a"));
    }

    /// The plain reading of etcd's rule: a range is allowed when, walking from its first key, some
    /// interval always holds the next key not yet covered, until the end is passed.
    fn model(perms: &[(permission::Type, Vec<u8>, Vec<u8>)], access: Access, key: &[u8], end: &[u8]) -> bool {
        let grants = |t: permission::Type| match access {
            Access::Read => t != permission::Type::Write,
            Access::Write => t != permission::Type::Read,
        };
        let ivls: Vec<(Vec<u8>, Vec<u8>)> = perms
            .iter()
            .filter(|p| grants(p.0))
            .map(|(_, k, e)| match &e[..] {
                [] => (k.clone(), [&k[..], &[0]].concat()),
                [0] => (k.clone(), Vec::new()),
                e => (k.clone(), e.to_vec()),
            })
            .collect();
        let holds = |s: &[u8]| ivls.iter().find(|(b, e)| cmp(b, s) != Ordering::Greater && cmp(s, e) == Ordering::Less);
        if end.is_empty() {
            return holds(key).is_some();
        }
        let end: Vec<u8> = if end == [0] { Vec::new() } else { end.to_vec() };
        let mut cur = key.to_vec();
        loop {
            if cmp(&cur, &end) != Ordering::Less {
                return true;
            }
            // The interval holding `cur` that reaches furthest.
            let best = ivls
                .iter()
                .filter(|(b, e)| cmp(b, &cur) != Ordering::Greater && cmp(&cur, e) == Ordering::Less)
                .map(|(_, e)| e.clone())
                .max_by(|a, b| cmp(a, b));
            match best {
                Some(e) if e.is_empty() => return true,
                Some(e) => cur = e,
                None => return false,
            }
        }
    }

    fn key() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(b'c'), Just(0u8)], 1..3)
    }

    fn grant() -> impl Strategy<Value = (permission::Type, Vec<u8>, Vec<u8>)> {
        let t =
            prop_oneof![Just(permission::Type::Read), Just(permission::Type::Write), Just(permission::Type::Readwrite)];
        (t, key(), prop_oneof![Just(Vec::new()), Just(vec![0u8]), key()])
            .prop_filter("etcd refuses the range", |(_, k, e)| valid_range(k, e))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Every decision on a valid request range equals the model's.
        #[test]
        fn decisions_equal_the_model(
            grants in proptest::collection::vec(grant(), 0..6),
            k in key(),
            e in prop_oneof![Just(Vec::new()), Just(vec![0u8]), key()],
            write in any::<bool>(),
        ) {
            prop_assume!(e.is_empty() || e == [0] || k < e);
            let perms: Vec<Permission> = grants.iter().map(|(t, k, e)| perm(*t, k, e)).collect();
            let access = if write { Access::Write } else { Access::Read };
            let u = UserPerms::merge(&perms);
            prop_assert_eq!(u.allows(access, &k, &e), model(&grants, access, &k, &e));
        }
    }
}
