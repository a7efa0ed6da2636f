//! The auth store: whether authentication is enabled and the auth revision every request is checked
//! against, kept in the backend's `auth` bucket as etcd keeps them (`authEnabled`, `authRevision`).
//!
//! Users, roles, permissions and tokens arrive with the Auth service; this crate must not depend on
//! the server.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use oxcd_backend::{Backend, BackendError, BucketRead};

/// The `auth` bucket.
pub const AUTH_BUCKET: &str = "auth";
/// Key of the enabled flag (one byte, 1 when enabled).
pub const ENABLED_KEY: &[u8] = b"authEnabled";
/// Key of the auth revision (u64 big-endian).
pub const REVISION_KEY: &[u8] = b"authRevision";

/// Auth state of one member.
#[derive(Debug)]
pub struct AuthStore {
    enabled: AtomicBool,
    revision: AtomicU64,
}

impl AuthStore {
    /// Loads the auth state; a new backend starts disabled at auth revision 1, as etcd's does.
    pub fn open(backend: &Backend) -> Result<AuthStore, BackendError> {
        let rtx = backend.read()?;
        let b = rtx.bucket(AUTH_BUCKET)?;
        let enabled = b.get(ENABLED_KEY)?.is_some_and(|v| v.first() == Some(&1));
        let revision = b.get(REVISION_KEY)?.and_then(|v| <[u8; 8]>::try_from(&v[..]).ok()).map(u64::from_be_bytes);
        let revision = match revision {
            Some(r) if r > 0 => r,
            _ => {
                let wtx = backend.write()?;
                wtx.bucket(AUTH_BUCKET)?.put(REVISION_KEY, &1u64.to_be_bytes())?;
                wtx.commit_durable()?;
                1
            }
        };
        Ok(AuthStore { enabled: AtomicBool::new(enabled), revision: AtomicU64::new(revision) })
    }

    /// Whether authentication is enabled.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// The auth revision: bumped by every change to users, roles or the enabled flag.
    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxcd_backend::BatchConfig;

    #[test]
    fn a_new_store_is_disabled_at_revision_one_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let be = Backend::open(&path, BatchConfig::default()).unwrap();
            let a = AuthStore::open(&be).unwrap();
            assert!(!a.enabled());
            assert_eq!(a.revision(), 1);
            let wtx = be.write().unwrap();
            {
                let mut b = wtx.bucket(AUTH_BUCKET).unwrap();
                b.put(ENABLED_KEY, &[1]).unwrap();
                b.put(REVISION_KEY, &5u64.to_be_bytes()).unwrap();
            }
            wtx.commit_durable().unwrap();
        }
        let be = Backend::open(&path, BatchConfig::default()).unwrap();
        let a = AuthStore::open(&be).unwrap();
        assert!(a.enabled());
        assert_eq!(a.revision(), 5);
    }
}
