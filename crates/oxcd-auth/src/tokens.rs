//! Simple tokens: `<16 random letters>.<raft index>`, as etcd makes them, registered on every
//! member when the Authenticate entry is applied, and valid for `--auth-token-ttl` after their
//! last use.
//!
//! Unlike etcd's (kept in memory only, so a restarted member refuses them: etcd #9629), they are
//! also written to the member's `authTokens` bucket in the same transaction, and a member loads
//! them at start, each with a fresh TTL. Expired tokens are dropped from memory when found
//! expired, and from the bucket at the next Authenticate the member applies.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use oxcd_backend::{BackendError, BucketRead, ReadTxn, WriteTxn};
use parking_lot::Mutex;

/// The member-local bucket of live simple tokens: token → user name.
pub const TOKENS_BUCKET: &str = "authTokens";

/// etcd's letters for the random part.
const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const PREFIX_LEN: usize = 16;

#[derive(Default)]
struct Inner {
    /// token → (user, deadline).
    live: HashMap<String, (String, Instant)>,
    /// Tokens found expired, still in the bucket.
    expired: Vec<String>,
}

pub struct SimpleTokens {
    ttl: Duration,
    inner: Mutex<Inner>,
}

impl SimpleTokens {
    pub fn new(ttl: Duration) -> SimpleTokens {
        SimpleTokens { ttl, inner: Mutex::default() }
    }

    /// Loads the tokens a member kept, each valid for a full TTL from now.
    pub fn load(&self, rtx: &ReadTxn) -> Result<(), BackendError> {
        let deadline = Instant::now() + self.ttl;
        let mut inner = self.inner.lock();
        rtx.bucket(TOKENS_BUCKET)?.visit(&[], None, &mut |k, v| {
            if let (Ok(t), Ok(u)) = (std::str::from_utf8(k), std::str::from_utf8(v)) {
                inner.live.insert(t.to_string(), (u.to_string(), deadline));
            }
            true
        })?;
        Ok(())
    }

    /// A new random part (etcd's `genTokenPrefix`).
    pub fn prefix() -> String {
        let mut raw = [0u8; PREFIX_LEN];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
            .expect("the system's random source works");
        raw.iter().map(|b| LETTERS[*b as usize % LETTERS.len()] as char).collect()
    }

    /// The raft index a token names (it is valid only once that entry is applied).
    pub fn index(token: &str) -> Option<u64> {
        let (_, index) = token.split_once('.')?;
        if index.contains('.') {
            return None;
        }
        index.parse().ok()
    }

    /// Registers `token` for `user`, and drops from the bucket the tokens found expired.
    pub fn assign(&self, wtx: &WriteTxn, token: &str, user: &str) -> Result<(), BackendError> {
        let expired = {
            let mut inner = self.inner.lock();
            let now = Instant::now();
            let Inner { live, expired } = &mut *inner;
            live.retain(|t, (_, d)| {
                let alive = *d > now;
                if !alive {
                    expired.push(t.clone());
                }
                alive
            });
            live.insert(token.to_string(), (user.to_string(), now + self.ttl));
            std::mem::take(expired)
        };
        let mut b = wtx.bucket(TOKENS_BUCKET)?;
        for t in expired {
            b.delete(t.as_bytes())?;
        }
        b.put(token.as_bytes(), user.as_bytes())
    }

    /// The user of a live token; its TTL starts over.
    pub fn user(&self, token: &str) -> Option<String> {
        let mut inner = self.inner.lock();
        let now = Instant::now();
        let (user, deadline) = inner.live.get_mut(token)?;
        if *deadline <= now {
            inner.live.remove(token);
            inner.expired.push(token.to_string());
            return None;
        }
        *deadline = now + self.ttl;
        Some(user.clone())
    }

    /// Drops every token of `user` (deleted, or its password changed).
    pub fn invalidate_user(&self, wtx: &WriteTxn, user: &str) -> Result<(), BackendError> {
        let gone: Vec<String> = {
            let mut inner = self.inner.lock();
            let gone = inner.live.iter().filter(|(_, (u, _))| u == user).map(|(t, _)| t.clone()).collect::<Vec<_>>();
            for t in &gone {
                inner.live.remove(t);
            }
            gone
        };
        let mut b = wtx.bucket(TOKENS_BUCKET)?;
        for t in gone {
            b.delete(t.as_bytes())?;
        }
        Ok(())
    }

    /// Drops every token (auth disabled).
    pub fn clear(&self, wtx: &WriteTxn) -> Result<(), BackendError> {
        *self.inner.lock() = Inner::default();
        let mut all = Vec::new();
        let mut b = wtx.bucket(TOKENS_BUCKET)?;
        b.visit(&[], None, &mut |k, _| {
            all.push(k.to_vec());
            true
        })?;
        for k in all {
            b.delete(&k)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An expired token leaves the bucket at the next assignment, so a restart does not bring
    /// it back.
    #[test]
    fn expired_tokens_leave_the_bucket() {
        let dir = tempfile::tempdir().unwrap();
        let be = oxcd_backend::Backend::open(dir.path().join("db"), Default::default()).unwrap();
        let t = SimpleTokens::new(Duration::from_millis(50));
        let wtx = be.write().unwrap();
        t.assign(&wtx, "old.1", "u").unwrap();
        wtx.commit_durable().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let wtx = be.write().unwrap();
        t.assign(&wtx, "new.2", "u").unwrap();
        wtx.commit_durable().unwrap();
        let again = SimpleTokens::new(Duration::from_secs(60));
        again.load(&be.read().unwrap()).unwrap();
        assert_eq!(again.user("old.1"), None);
        assert_eq!(again.user("new.2").as_deref(), Some("u"));
    }

    #[test]
    fn tokens_name_their_index() {
        let p = SimpleTokens::prefix();
        assert_eq!(p.len(), PREFIX_LEN);
        assert!(p.bytes().all(|b| b.is_ascii_alphabetic()));
        assert_eq!(SimpleTokens::index(&format!("{p}.42")), Some(42));
        assert_eq!(SimpleTokens::index("abc"), None);
        assert_eq!(SimpleTokens::index("a.b.1"), None);
        assert_eq!(SimpleTokens::index("a.x"), None);
    }
}
