//! Revisions: `{main, sub}` pairs and their 17-byte big-endian encoding (18 with the tombstone mark),
//! which sorts in revision order in the `key` bucket.

/// A point in the store's history: `main` is the store revision of a write request, `sub` the
/// position of a change inside it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

/// Length of an encoded revision without the tombstone mark.
pub const REV_BYTES: usize = 17;
/// Marker byte appended to the revision key of a tombstone.
const TOMBSTONE_MARK: u8 = b't';

impl Revision {
    pub fn new(main: i64, sub: i64) -> Revision {
        Revision { main, sub }
    }

    /// `main` big-endian, `'_'`, `sub` big-endian, and `'t'` for a tombstone.
    pub fn to_key(self, tombstone: bool) -> RevKey {
        let mut b = [0u8; REV_BYTES + 1];
        b[0..8].copy_from_slice(&(self.main as u64).to_be_bytes());
        b[8] = b'_';
        b[9..17].copy_from_slice(&(self.sub as u64).to_be_bytes());
        let len = if tombstone {
            b[17] = TOMBSTONE_MARK;
            REV_BYTES + 1
        } else {
            REV_BYTES
        };
        RevKey { bytes: b, len }
    }

    /// Decodes a revision key; `None` if it is not one.
    pub fn from_key(k: &[u8]) -> Option<(Revision, bool)> {
        if k.len() != REV_BYTES && !(k.len() == REV_BYTES + 1 && k[REV_BYTES] == TOMBSTONE_MARK) {
            return None;
        }
        let main = u64::from_be_bytes(k[0..8].try_into().ok()?) as i64;
        let sub = u64::from_be_bytes(k[9..17].try_into().ok()?) as i64;
        Some((Revision { main, sub }, k.len() == REV_BYTES + 1))
    }
}

/// An encoded revision key.
#[derive(Clone, Copy)]
pub struct RevKey {
    bytes: [u8; REV_BYTES + 1],
    len: usize,
}

impl std::ops::Deref for RevKey {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_in_revision_order_and_round_trip() {
        let revs = [Revision::new(1, 0), Revision::new(1, 5), Revision::new(2, 0), Revision::new(256, 1)];
        for w in revs.windows(2) {
            assert!(*w[0].to_key(false) < *w[1].to_key(true));
        }
        for r in revs {
            assert_eq!(Revision::from_key(&r.to_key(false)), Some((r, false)));
            assert_eq!(Revision::from_key(&r.to_key(true)), Some((r, true)));
        }
        assert_eq!(Revision::from_key(b"consistent_index"), None);
    }
}
