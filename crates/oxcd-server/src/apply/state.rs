//! The member's state machine as the applier owns it, and as everyone else reads it.
//!
//! The applier is the only writer. It keeps its own [`View`] (backend, store, lessor, auth,
//! members, alarms) and, whenever a part of it changes, publishes a copy of the handles to the
//! member's [`StateCell`], in one swap. Readers (the services, the peer transport, the lease duties)
//! take the published view, so they never see the parts of two states mixed: after a snapshot from
//! the leader is installed, a reader holds either the old backend with the old store or the new
//! with the new.
//!
//! What changes and when:
//! - members and alarms: after the backend transaction that changed them commits;
//! - everything at once: when a snapshot from the leader is installed ([`StateCell::file_swap`]
//!   is held from the file's rename until the new view is published, so a defragmentation never
//!   works on a file being replaced).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use oxcd_auth::AuthStore;
use oxcd_backend::Backend;
use oxcd_lease::Lessor;
use oxcd_mvcc::Store;
use parking_lot::{Mutex, MutexGuard, RwLock};

use crate::alarms::Alarms;
use crate::config::ServerConfig;
use crate::ids::MemberId;
use crate::membership::Members;

/// The parts of the applied state, as one value: cheap to copy (handles and small sets).
#[derive(Clone)]
pub struct View {
    pub backend: Arc<Backend>,
    pub store: Arc<Store>,
    pub lessor: Arc<Lessor>,
    pub auth: Arc<AuthStore>,
    pub members: Arc<Members>,
    /// The raised alarms (see `alarms`).
    pub alarms: Arc<Alarms>,
    /// The first log index from which normal entries are in etcd's format (`oxcd_datadir::etcd_log`):
    /// recorded by the takeover of an etcd data directory; none, oxcd's format throughout.
    pub etcd_log_from: Option<u64>,
}

/// Everything a member rebuilds from a backend file (at start, or when a snapshot is installed).
pub struct MemberState {
    pub view: View,
    /// Members removed from the cluster (their peer connections are refused).
    pub removed: Vec<MemberId>,
    /// A compaction scheduled but not finished before the last stop.
    pub pending_compaction: Option<i64>,
}

impl MemberState {
    /// Loads everything kept in `backend`.
    pub fn load(backend: Arc<Backend>, cfg: &ServerConfig) -> Result<MemberState, oxcd_mvcc::MvccError> {
        let lessor =
            Arc::new(Lessor::with_limits(cfg.min_lease_ttl_secs(), Duration::from_millis(cfg.election_timeout)));
        // Leases first: the store attaches keys to them as it rebuilds its index.
        super::load_leases(&backend, &lessor, Instant::now())?;
        let (store, pending_compaction) = Store::open(backend.clone(), lessor.clone())?;
        let tokens = token_config(cfg).unwrap_or_else(|e| {
            // Checked at start; a key file changed since: simple tokens until the next start.
            tracing::error!(error = %e, "the --auth-token configuration no longer loads; using simple tokens");
            oxcd_auth::TokenConfig::default()
        });
        let auth = Arc::new(AuthStore::open(&backend, tokens)?);
        let rtx = backend.read()?;
        let (members, alarms) = (Members::load(&rtx)?, Alarms::load(&rtx)?);
        let removed = Members::load_removed(&rtx)?;
        drop(rtx);
        let etcd_log_from = Some(super::meta_u64(&backend, oxcd_datadir::etcd_log::LOG_FROM)?).filter(|n| *n > 0);
        let view = View {
            backend,
            store: Arc::new(store),
            lessor,
            auth,
            members: Arc::new(members),
            alarms: Arc::new(alarms),
            etcd_log_from,
        };
        Ok(MemberState { view, removed, pending_compaction })
    }
}

/// How the auth store makes tokens and hashes, from the member's config (`--auth-token`,
/// `--auth-token-ttl`, `--bcrypt-cost`); the start checked it first (see `bootstrap`).
pub fn token_config(cfg: &ServerConfig) -> Result<oxcd_auth::TokenConfig, String> {
    oxcd_auth::TokenConfig::parse(&cfg.auth_token, Duration::from_secs(cfg.auth_token_ttl.max(1)), cfg.bcrypt_cost)
}

/// The published state of a member: what readers see of the applier's [`View`].
pub struct StateCell {
    view: RwLock<Arc<View>>,
    /// Whether the view's log is etcd's (read on every proposal, without the lock).
    etcd_log: AtomicBool,
    /// Held while the backend file is replaced (a snapshot from the leader is installed, or the
    /// backend is defragmented), so that one replacement never overwrites the other.
    file_swap: Mutex<()>,
}

impl StateCell {
    pub fn new(view: View) -> Arc<StateCell> {
        let etcd_log = AtomicBool::new(view.etcd_log_from.is_some());
        Arc::new(StateCell { view: RwLock::new(Arc::new(view)), etcd_log, file_swap: Mutex::new(()) })
    }

    /// The state as last published.
    pub fn view(&self) -> Arc<View> {
        self.view.read().clone()
    }

    /// The backend as last published.
    pub fn backend(&self) -> Arc<Backend> {
        self.view.read().backend.clone()
    }

    /// The store as last published.
    pub fn store(&self) -> Arc<Store> {
        self.view.read().store.clone()
    }

    /// Replaces the published state (the applier's, only).
    pub(super) fn publish(&self, view: View) {
        self.etcd_log.store(view.etcd_log_from.is_some(), Ordering::Release);
        *self.view.write() = Arc::new(view);
    }

    /// Whether proposals are written in etcd's format (see [`View::etcd_log_from`]).
    pub fn etcd_log(&self) -> bool {
        self.etcd_log.load(Ordering::Acquire)
    }

    /// The lock that one replacement of the backend file holds.
    pub fn file_swap(&self) -> MutexGuard<'_, ()> {
        self.file_swap.lock()
    }
}
