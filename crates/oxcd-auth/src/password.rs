//! Passwords: bcrypt at etcd's cost (`--bcrypt-cost`, 10 by default, 4 to 31), with Go's `$2a$`
//! prefix so that etcd reads the hashes oxcd writes.
//!
//! A bcrypt check costs tens of milliseconds by design. A member remembers, for each (user,
//! stored hash), a keyed digest of the last password that matched it, so a client that logs in
//! again with the same password is answered without running bcrypt (etcd #9615, #11826: thousands
//! of clients logging in again after an election). The key is random per process and the entry
//! is tied to the stored hash, so a changed password never matches an old entry.

use std::collections::HashMap;

use parking_lot::Mutex;
use ring::hmac;

/// etcd's default cost, and the bounds outside which it falls back to it.
pub const DEFAULT_COST: u32 = 10;
pub const MIN_COST: u32 = 4;
pub const MAX_COST: u32 = 31;

/// The cost to hash with: the configured one when bcrypt accepts it (etcd warns and uses the
/// default otherwise).
pub fn effective_cost(cost: u32) -> u32 {
    if (MIN_COST..=MAX_COST).contains(&cost) { cost } else { DEFAULT_COST }
}

/// A bcrypt hash of `password` in Go's format.
pub fn hash(password: &str, cost: u32) -> Vec<u8> {
    bcrypt::hash_with_result(password, effective_cost(cost))
        .expect("bcrypt hashes any password at a valid cost")
        .format_for_version(bcrypt::Version::TwoA)
        .into_bytes()
}

/// A stored hash and the keyed digest of the password that matched it.
type Matched = (Vec<u8>, Vec<u8>);

/// Verified passwords, by user.
pub struct Verifier {
    key: hmac::Key,
    /// user → (stored hash, digest of the password that matched it).
    matched: Mutex<HashMap<String, Matched>>,
}

impl Default for Verifier {
    fn default() -> Verifier {
        let rng = ring::rand::SystemRandom::new();
        Verifier {
            key: hmac::Key::generate(hmac::HMAC_SHA256, &rng).expect("the system's random source works"),
            matched: Mutex::default(),
        }
    }
}

impl Verifier {
    /// Whether `password` matches `stored` (a bcrypt hash) for `user`.
    pub fn check(&self, user: &str, stored: &[u8], password: &str) -> bool {
        if let Some((h, t)) = self.matched.lock().get(user)
            && h == stored
            && hmac::verify(&self.key, password.as_bytes(), t).is_ok()
        {
            return true;
        }
        let ok = std::str::from_utf8(stored).is_ok_and(|s| bcrypt::verify(password, s).unwrap_or(false));
        if ok {
            let tag = hmac::sign(&self.key, password.as_bytes()).as_ref().to_vec();
            self.matched.lock().insert(user.to_string(), (stored.to_vec(), tag));
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_gos_and_verify_once_cached() {
        let h = hash("secret", MIN_COST);
        assert!(h.starts_with(b"$2a$04$"));
        let v = Verifier::default();
        assert!(v.check("u", &h, "secret"));
        assert!(v.check("u", &h, "secret"));
        assert!(!v.check("u", &h, "other"));
        // A new hash of the same user (password changed) is checked afresh.
        let h2 = hash("new", MIN_COST);
        assert!(!v.check("u", &h2, "secret"));
        assert!(v.check("u", &h2, "new"));
        assert_eq!(effective_cost(2), DEFAULT_COST);
        assert_eq!(effective_cost(12), 12);
    }
}
