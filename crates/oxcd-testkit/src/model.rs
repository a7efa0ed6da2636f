//! A plain in-memory model of etcd's KV semantics: every key's full history in a `BTreeMap`, no
//! index, no backend, no cleverness. Property tests run the same operations against it and against
//! oxcd and require identical results.

use std::collections::BTreeMap;

/// A key-value pair as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
}

/// Errors the model can answer with (compared against etcd's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelError {
    Compacted,
    FutureRev,
}

/// A range result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeOut {
    pub kvs: Vec<Kv>,
    pub count: i64,
    pub more: bool,
}

/// One operation inside a txn branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put { key: Vec<u8>, value: Vec<u8> },
    Delete { key: Vec<u8>, end: Option<Vec<u8>> },
    Range { key: Vec<u8>, end: Option<Vec<u8>> },
}

/// What one txn op returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpOut {
    Put { prev: Option<Kv> },
    Delete { deleted: i64 },
    Range { kvs: Vec<Kv> },
}

/// What a txn compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Version(i64),
    Create(i64),
    Mod(i64),
}

/// How a txn compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Equal,
    Greater,
    Less,
    NotEqual,
}

/// The model store.
#[derive(Debug, Clone)]
pub struct Model {
    rev: i64,
    /// The compacted revision; -1 before the first compaction (so compacting at 0 is allowed once).
    compacted: i64,
    /// Per key: (revision, Some(kv) for a put / None for a delete), oldest first.
    history: BTreeMap<Vec<u8>, Vec<(i64, Option<Kv>)>>,
}

impl Default for Model {
    fn default() -> Self {
        Model { rev: 1, compacted: -1, history: BTreeMap::new() }
    }
}

/// Whether `k` is in `[key, end)` under etcd's conventions (`end` None: only `key`; empty: no end).
fn in_range(k: &[u8], key: &[u8], end: Option<&[u8]>) -> bool {
    match end {
        None => k == key,
        Some([]) => k >= key,
        Some(e) => k >= key && k < e,
    }
}

impl Model {
    pub fn new() -> Model {
        Model::default()
    }

    /// The current revision (1 for an empty store).
    pub fn rev(&self) -> i64 {
        self.rev
    }

    fn at(&self, key: &[u8], rev: i64) -> Option<&Kv> {
        self.history.get(key)?.iter().rev().find(|(r, _)| *r <= rev)?.1.as_ref()
    }

    fn alive_at(&self, key: &[u8], end: Option<&[u8]>, rev: i64) -> Vec<Kv> {
        self.history.keys().filter(|k| in_range(k, key, end)).filter_map(|k| self.at(k, rev).cloned()).collect()
    }

    /// Range at `rev` (0: current) with `limit` (0: none).
    pub fn range(&self, key: &[u8], end: Option<&[u8]>, rev: i64, limit: i64) -> Result<RangeOut, ModelError> {
        if rev > self.rev {
            return Err(ModelError::FutureRev);
        }
        let at = if rev <= 0 { self.rev } else { rev };
        if at < self.compacted {
            return Err(ModelError::Compacted);
        }
        let mut kvs = self.alive_at(key, end, at);
        let count = kvs.len() as i64;
        let more = limit > 0 && count > limit;
        if more {
            kvs.truncate(limit as usize);
        }
        Ok(RangeOut { kvs, count, more })
    }

    fn write_put(&mut self, key: &[u8], value: &[u8], rev: i64) -> Option<Kv> {
        let prev = self.at(key, self.rev.max(rev)).cloned();
        let kv = Kv {
            key: key.to_vec(),
            value: value.to_vec(),
            create_revision: prev.as_ref().map(|p| p.create_revision).unwrap_or(rev),
            mod_revision: rev,
            version: prev.as_ref().map(|p| p.version + 1).unwrap_or(1),
        };
        self.history.entry(key.to_vec()).or_default().push((rev, Some(kv)));
        prev
    }

    fn write_delete(&mut self, key: &[u8], end: Option<&[u8]>, rev: i64) -> Vec<Kv> {
        let gone = self.alive_at(key, end, self.rev.max(rev));
        for kv in &gone {
            self.history.get_mut(&kv.key).expect("alive key has history").push((rev, None));
        }
        gone
    }

    /// Put: returns the new revision and the previous kv.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> (i64, Option<Kv>) {
        let rev = self.rev + 1;
        let prev = self.write_put(key, value, rev);
        self.rev = rev;
        (rev, prev)
    }

    /// DeleteRange: returns the header revision and the deleted kvs (the revision moves only if
    /// something was deleted).
    pub fn delete(&mut self, key: &[u8], end: Option<&[u8]>) -> (i64, Vec<Kv>) {
        let rev = self.rev + 1;
        let gone = self.write_delete(key, end, rev);
        if !gone.is_empty() {
            self.rev = rev;
        }
        (self.rev, gone)
    }

    fn compare(&self, key: &[u8], cmp: Cmp, target: Target) -> bool {
        let kv = self.at(key, self.rev);
        let (have, want) = match target {
            Target::Version(v) => (kv.map(|k| k.version).unwrap_or(0), v),
            Target::Create(v) => (kv.map(|k| k.create_revision).unwrap_or(0), v),
            Target::Mod(v) => (kv.map(|k| k.mod_revision).unwrap_or(0), v),
        };
        match cmp {
            Cmp::Equal => have == want,
            Cmp::Greater => have > want,
            Cmp::Less => have < want,
            Cmp::NotEqual => have != want,
        }
    }

    /// Txn with single-key compares: returns (succeeded, header revision, op results). Keys written
    /// in one branch must be distinct (etcd rejects overlaps; generators must not produce them).
    pub fn txn(
        &mut self,
        compares: &[(Vec<u8>, Cmp, Target)],
        success: &[Op],
        failure: &[Op],
    ) -> (bool, i64, Vec<OpOut>) {
        let ok = compares.iter().all(|(k, c, t)| self.compare(k, *c, *t));
        let ops = if ok { success } else { failure };
        let rev = self.rev + 1;
        let mut wrote = false;
        let mut out = Vec::new();
        for op in ops {
            match op {
                Op::Put { key, value } => {
                    let prev = self.write_put(key, value, rev);
                    wrote = true;
                    out.push(OpOut::Put { prev });
                }
                Op::Delete { key, end } => {
                    let gone = self.write_delete(key, end.as_deref(), rev);
                    wrote |= !gone.is_empty();
                    out.push(OpOut::Delete { deleted: gone.len() as i64 });
                }
                Op::Range { key, end } => {
                    let at = if wrote { rev } else { self.rev };
                    out.push(OpOut::Range { kvs: self.alive_at(key, end.as_deref(), at) });
                }
            }
        }
        if wrote {
            self.rev = rev;
        }
        (ok, self.rev, out)
    }

    /// Compact at `rev`.
    pub fn compact(&mut self, rev: i64) -> Result<(), ModelError> {
        if rev <= self.compacted {
            return Err(ModelError::Compacted);
        }
        if rev > self.rev {
            return Err(ModelError::FutureRev);
        }
        self.compacted = rev;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_follows_etcd_rules() {
        let mut m = Model::new();
        assert_eq!(m.put(b"a", b"1").0, 2);
        assert_eq!(m.put(b"a", b"2").1.map(|k| k.version), Some(1));
        assert_eq!(m.delete(b"zz", None).0, 3, "deleting nothing keeps the revision");
        assert_eq!(m.delete(b"a", None).0, 4);
        let (_, prev) = m.put(b"a", b"3");
        assert_eq!(prev, None);
        let r = m.range(b"a", None, 0, 0).unwrap();
        assert_eq!((r.kvs[0].create_revision, r.kvs[0].version), (5, 1));
        assert_eq!(m.range(b"a", None, 3, 0).unwrap().kvs[0].value, b"2");
        m.compact(4).unwrap();
        assert_eq!(m.range(b"a", None, 3, 0), Err(ModelError::Compacted));
        assert_eq!(m.range(b"a", None, 9, 0), Err(ModelError::FutureRev));
        assert_eq!(m.compact(4), Err(ModelError::Compacted));
        let (ok, rev, out) = m.txn(
            &[(b"a".to_vec(), Cmp::Equal, Target::Version(1))],
            &[
                Op::Put { key: b"b".to_vec(), value: b"x".to_vec() },
                Op::Range { key: b"a".to_vec(), end: Some(vec![]) },
            ],
            &[],
        );
        assert!(ok);
        assert_eq!(rev, 6);
        assert_eq!(out[1], OpOut::Range { kvs: m.range(b"a", Some(b""), 0, 0).unwrap().kvs });
    }
}
