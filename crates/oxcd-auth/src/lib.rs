//! The auth store: users, roles and their key permissions, the enabled flag and the auth
//! revision, kept in the backend's `auth`, `authUsers` and `authRoles` buckets as etcd keeps them
//! (`authpb.User` and `authpb.Role` by name), so snapshots carry them between oxcd and etcd.
//!
//! The applier is the only writer: every change arrives through Raft and is applied here inside
//! the applier's backend transaction, then becomes visible to readers at once (one swap of an
//! immutable [`State`]). The checks are etcd's (`server/auth/store.go`): a request carries the
//! user and the auth revision it was checked at; with auth on, no user is "user name is empty",
//! a revision older than the store's is "revision of auth store is old", a user with the `root`
//! role may do everything, anyone else what the union of their roles' permissions covers
//! ([`perms`]).
//!
//! This crate must not depend on the server.

pub mod jwt;
pub mod password;
pub mod perms;
pub mod tokens;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use oxcd_api::EtcdError;
use oxcd_api::authpb::{Permission, Role, User, UserAddOptions};
use oxcd_api::etcdserverpb::{
    AuthRoleGrantPermissionRequest, AuthRoleRevokePermissionRequest, AuthUserAddRequest, AuthUserChangePasswordRequest,
};
use oxcd_backend::{Backend, BackendError, BucketRead, ReadTxn, WriteTxn};
use parking_lot::RwLock;
use prost::Message;

use perms::{Access, UserPerms};
pub use tokens::{SimpleTokens, TOKENS_BUCKET};

/// The `auth` bucket.
pub const AUTH_BUCKET: &str = "auth";
/// Users by name (`authpb.User`).
pub const USERS_BUCKET: &str = "authUsers";
/// Roles by name (`authpb.Role`).
pub const ROLES_BUCKET: &str = "authRoles";
/// Key of the enabled flag (one byte, 1 when enabled).
pub const ENABLED_KEY: &[u8] = b"authEnabled";
/// Key of the auth revision (u64 big-endian).
pub const REVISION_KEY: &[u8] = b"authRevision";
/// The user and the role that may do everything.
pub const ROOT: &str = "root";

/// Who a request comes from, as checked: a user (empty: none) and the auth revision at which its
/// credentials were checked (0: none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthInfo {
    pub user: String,
    pub revision: u64,
}

/// How tokens are made and how long simple tokens live.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// `--auth-token-ttl`.
    pub ttl: Duration,
    /// `--bcrypt-cost`.
    pub bcrypt_cost: u32,
    /// `--auth-token jwt,...`: JWT tokens instead of simple ones.
    pub jwt: Option<Arc<jwt::JwtTokens>>,
}

impl Default for TokenConfig {
    fn default() -> TokenConfig {
        TokenConfig { ttl: Duration::from_secs(300), bcrypt_cost: password::DEFAULT_COST, jwt: None }
    }
}

impl TokenConfig {
    /// From `--auth-token` (`simple`, or `jwt,name=value,...`), `--auth-token-ttl` and
    /// `--bcrypt-cost`; errors in etcd's words.
    pub fn parse(auth_token: &str, ttl: Duration, bcrypt_cost: u32) -> Result<TokenConfig, String> {
        let mut parts = auth_token.split(',');
        let kind = parts.next().unwrap_or_default();
        let mut opts: Vec<(String, String)> = Vec::new();
        for p in parts {
            let Some((k, v)) = p.split_once('=').filter(|(_, v)| !v.contains('=')) else {
                return Err("auth: invalid auth options".into());
            };
            if opts.iter().any(|(n, _)| n == k) {
                return Err("auth: invalid auth options".into());
            }
            opts.push((k.to_string(), v.to_string()));
        }
        let jwt = match kind {
            "simple" | "" => None,
            "jwt" => Some(Arc::new(jwt::JwtTokens::from_options(&opts)?)),
            _ => return Err("auth: invalid auth options".into()),
        };
        Ok(TokenConfig { ttl, bcrypt_cost, jwt })
    }
}

/// Users and roles as applied (immutable; replaced whole on every change).
#[derive(Debug, Clone, Default)]
pub struct State {
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
    /// Each user's merged permissions.
    perms: HashMap<String, Arc<UserPerms>>,
}

impl State {
    fn load(rtx: &ReadTxn) -> Result<State, BackendError> {
        let mut st = State::default();
        rtx.bucket(USERS_BUCKET)?.visit(&[], None, &mut |k, v| {
            match User::decode(v) {
                Ok(u) => {
                    st.users.insert(String::from_utf8_lossy(k).into_owned(), u);
                }
                Err(e) => tracing::error!(user = %String::from_utf8_lossy(k), error = %e, "undecodable user skipped"),
            }
            true
        })?;
        rtx.bucket(ROLES_BUCKET)?.visit(&[], None, &mut |k, v| {
            match Role::decode(v) {
                Ok(r) => {
                    st.roles.insert(String::from_utf8_lossy(k).into_owned(), r);
                }
                Err(e) => tracing::error!(role = %String::from_utf8_lossy(k), error = %e, "undecodable role skipped"),
            }
            true
        })?;
        st.refresh();
        Ok(st)
    }

    /// Recomputes every user's merged permissions (etcd's `refreshRangePermCache`).
    fn refresh(&mut self) {
        let roles = &self.roles;
        self.perms = self
            .users
            .iter()
            .map(|(name, u)| {
                let perms = u.roles.iter().filter_map(|r| roles.get(r)).flat_map(|r| r.key_permission.iter());
                (name.clone(), Arc::new(UserPerms::merge(perms)))
            })
            .collect();
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }
}

fn has_root_role(u: &User) -> bool {
    u.roles.binary_search_by(|r| r.as_str().cmp(ROOT)).is_ok()
}

/// Auth state of one member.
pub struct AuthStore {
    enabled: AtomicBool,
    revision: AtomicU64,
    state: RwLock<Arc<State>>,
    tokens: SimpleTokens,
    verifier: password::Verifier,
    cfg: TokenConfig,
}

impl std::fmt::Debug for AuthStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthStore").field("enabled", &self.enabled()).field("revision", &self.revision()).finish()
    }
}

impl AuthStore {
    /// Loads the auth state; a new backend starts disabled at auth revision 1, as etcd's does.
    pub fn open(backend: &Backend, cfg: TokenConfig) -> Result<AuthStore, BackendError> {
        let rtx = backend.read()?;
        let b = rtx.bucket(AUTH_BUCKET)?;
        let enabled = b.get(ENABLED_KEY)?.is_some_and(|v| v.first() == Some(&1));
        let revision = b.get(REVISION_KEY)?.and_then(|v| <[u8; 8]>::try_from(&v[..]).ok()).map(u64::from_be_bytes);
        let state = State::load(&rtx)?;
        let tokens = SimpleTokens::new(cfg.ttl);
        if enabled {
            tokens.load(&rtx)?;
        }
        drop(rtx);
        let revision = match revision {
            Some(r) if r > 0 => r,
            _ => {
                let wtx = backend.write()?;
                wtx.bucket(AUTH_BUCKET)?.put(REVISION_KEY, &1u64.to_be_bytes())?;
                wtx.commit_durable()?;
                1
            }
        };
        Ok(AuthStore {
            enabled: AtomicBool::new(enabled),
            revision: AtomicU64::new(revision),
            state: RwLock::new(Arc::new(state)),
            tokens,
            verifier: password::Verifier::default(),
            cfg,
        })
    }

    /// Whether authentication is enabled.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// The auth revision: bumped by every change to users, roles or the enabled flag.
    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    /// Users and roles as applied.
    pub fn state(&self) -> Arc<State> {
        self.state.read().clone()
    }

    /// `--bcrypt-cost`, as used.
    pub fn bcrypt_cost(&self) -> u32 {
        password::effective_cost(self.cfg.bcrypt_cost)
    }

    // ---- checks (etcd's IsPutPermitted, IsRangePermitted, IsDeleteRangePermitted, IsAdminPermitted)

    fn op_permitted(&self, who: &AuthInfo, key: &[u8], range_end: &[u8], access: Access) -> Result<(), EtcdError> {
        if !self.enabled() {
            return Ok(());
        }
        if who.revision == 0 {
            return Err(EtcdError::UserEmpty);
        }
        if who.revision < self.revision() {
            return Err(EtcdError::AuthOldRevision);
        }
        let st = self.state();
        let Some(user) = st.users.get(&who.user) else { return Err(EtcdError::PermissionDenied) };
        if has_root_role(user) {
            return Ok(());
        }
        match st.perms.get(&who.user) {
            Some(p) if p.allows(access, key, range_end) => Ok(()),
            _ => Err(EtcdError::PermissionDenied),
        }
    }

    /// Read access to a key (`range_end` empty) or a range.
    pub fn check_range(&self, who: &AuthInfo, key: &[u8], range_end: &[u8]) -> Result<(), EtcdError> {
        self.op_permitted(who, key, range_end, Access::Read)
    }

    /// Write access to one key.
    pub fn check_put(&self, who: &AuthInfo, key: &[u8]) -> Result<(), EtcdError> {
        self.op_permitted(who, key, &[], Access::Write)
    }

    /// Write access to a key or a range.
    pub fn check_delete(&self, who: &AuthInfo, key: &[u8], range_end: &[u8]) -> Result<(), EtcdError> {
        self.op_permitted(who, key, range_end, Access::Write)
    }

    /// The `root` role (note: etcd does not compare revisions here).
    pub fn check_admin(&self, who: &AuthInfo) -> Result<(), EtcdError> {
        if !self.enabled() {
            return Ok(());
        }
        if who.user.is_empty() {
            return Err(EtcdError::UserEmpty);
        }
        match self.state().users.get(&who.user) {
            None => Err(EtcdError::UserNotFound),
            Some(u) if has_root_role(u) => Ok(()),
            Some(_) => Err(EtcdError::PermissionDenied),
        }
    }

    /// Whether `user` holds `role`.
    pub fn has_role(&self, user: &str, role: &str) -> bool {
        self.state().users.get(user).is_some_and(|u| u.roles.iter().any(|r| r == role))
    }

    // ---- credentials

    /// etcd's `CheckPassword`: the auth revision at which `name`'s password matched. Runs bcrypt
    /// (call it off the async threads).
    pub fn check_password(&self, name: &str, password: &str) -> Result<u64, EtcdError> {
        if !self.enabled() {
            return Err(EtcdError::AuthNotEnabled);
        }
        let (stored, revision) = {
            let st = self.state();
            let user = st.users.get(name).ok_or(EtcdError::AuthFailed)?;
            if user.options.as_ref().is_some_and(|o| o.no_password) {
                return Err(EtcdError::NoPasswordUser);
            }
            (user.password.clone(), self.revision())
        };
        if self.verifier.check(name, &stored, password) { Ok(revision) } else { Err(EtcdError::AuthFailed) }
    }

    /// Who holds a token (etcd's `AuthInfoFromCtx` for a simple token): the user, at the current
    /// auth revision. The caller first waits until this member applied the token's index.
    pub fn token_info(&self, token: &str) -> Result<AuthInfo, EtcdError> {
        let token = token.strip_prefix("Bearer ").unwrap_or(token);
        if let Some(jwt) = &self.cfg.jwt {
            return match jwt.verify(token) {
                Some((user, revision)) => Ok(AuthInfo { user, revision }),
                None => Err(EtcdError::InvalidAuthToken),
            };
        }
        match self.tokens.user(token) {
            Some(user) => Ok(AuthInfo { user, revision: self.revision() }),
            None => Err(EtcdError::InvalidAuthToken),
        }
    }

    /// The user a client certificate names (its CN), at the current auth revision.
    pub fn cert_info(&self, common_name: &str) -> AuthInfo {
        AuthInfo { user: common_name.to_string(), revision: self.revision() }
    }

    // ---- changes, applied in the applier's transaction

    fn commit_revision(&self, wtx: &WriteTxn) -> Result<(), BackendError> {
        let rev = self.revision.fetch_add(1, Ordering::AcqRel) + 1;
        wtx.bucket(AUTH_BUCKET)?.put(REVISION_KEY, &rev.to_be_bytes())
    }

    /// Applies a change to the users and roles: `f` edits a copy of the state and names what it
    /// wrote; the copy replaces the state and the revision moves on.
    fn change(
        &self,
        wtx: &WriteTxn,
        f: impl FnOnce(&mut State) -> Result<Vec<Write>, EtcdError>,
    ) -> Result<Result<(), EtcdError>, BackendError> {
        let mut st = (*self.state()).clone();
        let writes = match f(&mut st) {
            Ok(w) => w,
            Err(e) => return Ok(Err(e)),
        };
        for w in writes {
            match w {
                Write::User(name) => match st.users.get(&name) {
                    Some(u) => wtx.bucket(USERS_BUCKET)?.put(name.as_bytes(), &u.encode_to_vec())?,
                    None => {
                        wtx.bucket(USERS_BUCKET)?.delete(name.as_bytes())?;
                    }
                },
                Write::Role(name) => match st.roles.get(&name) {
                    Some(r) => wtx.bucket(ROLES_BUCKET)?.put(name.as_bytes(), &r.encode_to_vec())?,
                    None => {
                        wtx.bucket(ROLES_BUCKET)?.delete(name.as_bytes())?;
                    }
                },
                Write::Invalidate(name) => self.tokens.invalidate_user(wtx, &name)?,
            }
        }
        st.refresh();
        *self.state.write() = Arc::new(st);
        self.commit_revision(wtx)?;
        Ok(Ok(()))
    }

    pub fn enable(&self, wtx: &WriteTxn) -> Result<Result<(), EtcdError>, BackendError> {
        if self.enabled() {
            return Ok(Ok(()));
        }
        match self.state().users.get(ROOT) {
            None => return Ok(Err(EtcdError::RootUserNotExist)),
            Some(u) if !has_root_role(u) => return Ok(Err(EtcdError::RootRoleNotExist)),
            Some(_) => {}
        }
        wtx.bucket(AUTH_BUCKET)?.put(ENABLED_KEY, &[1])?;
        self.enabled.store(true, Ordering::Release);
        Ok(Ok(()))
    }

    pub fn disable(&self, wtx: &WriteTxn) -> Result<(), BackendError> {
        if !self.enabled() {
            return Ok(());
        }
        wtx.bucket(AUTH_BUCKET)?.put(ENABLED_KEY, &[0])?;
        self.commit_revision(wtx)?;
        self.enabled.store(false, Ordering::Release);
        self.tokens.clear(wtx)
    }

    /// Registers the token `<prefix>.<index>` of an Authenticate applied at `index`.
    pub fn authenticate(
        &self,
        wtx: &WriteTxn,
        name: &str,
        prefix: &str,
        index: u64,
    ) -> Result<Result<String, EtcdError>, BackendError> {
        if !self.enabled() {
            return Ok(Err(EtcdError::AuthNotEnabled));
        }
        match self.state().users.get(name) {
            None => return Ok(Err(EtcdError::AuthFailed)),
            Some(u) if u.options.as_ref().is_some_and(|o| o.no_password) => return Ok(Err(EtcdError::AuthFailed)),
            Some(_) => {}
        }
        if let Some(jwt) = &self.cfg.jwt {
            return Ok(jwt.issue(name, self.revision()).map_err(|e| match e {
                jwt::IssueError::VerifyOnly => EtcdError::TokenVerifyOnly,
                jwt::IssueError::Sign(e) => {
                    tracing::error!(error = %e, "signing a JWT token");
                    EtcdError::AuthFailed
                }
            }));
        }
        let token = format!("{prefix}.{index}");
        self.tokens.assign(wtx, &token, name)?;
        Ok(Ok(token))
    }

    pub fn user_add(&self, wtx: &WriteTxn, r: &AuthUserAddRequest) -> Result<Result<(), EtcdError>, BackendError> {
        if r.name.is_empty() {
            return Ok(Err(EtcdError::UserEmpty));
        }
        let cost = self.cfg.bcrypt_cost;
        self.change(wtx, |st| {
            if st.users.contains_key(&r.name) {
                return Err(EtcdError::UserAlreadyExist);
            }
            let options = r.options.unwrap_or(UserAddOptions { no_password: false });
            let password = if options.no_password { Vec::new() } else { select_password(r, cost)? };
            let user = User {
                name: Bytes::from(r.name.clone()),
                password: password.into(),
                roles: Vec::new(),
                options: Some(options),
            };
            st.users.insert(r.name.clone(), user);
            Ok(vec![Write::User(r.name.clone())])
        })
    }

    pub fn user_delete(&self, wtx: &WriteTxn, name: &str) -> Result<Result<(), EtcdError>, BackendError> {
        if self.enabled() && name == ROOT {
            return Ok(Err(EtcdError::InvalidAuthMgmt));
        }
        self.change(wtx, |st| {
            st.users.remove(name).ok_or(EtcdError::UserNotFound)?;
            Ok(vec![Write::User(name.to_string()), Write::Invalidate(name.to_string())])
        })
    }

    pub fn user_change_password(
        &self,
        wtx: &WriteTxn,
        r: &AuthUserChangePasswordRequest,
    ) -> Result<Result<(), EtcdError>, BackendError> {
        let cost = self.cfg.bcrypt_cost;
        self.change(wtx, |st| {
            let user = st.users.get_mut(&r.name).ok_or(EtcdError::UserNotFound)?;
            let no_password = user.options.as_ref().is_some_and(|o| o.no_password);
            let password = if no_password {
                Vec::new()
            } else {
                select_password(
                    &AuthUserAddRequest {
                        password: r.password.clone(),
                        hashed_password: r.hashed_password.clone(),
                        ..Default::default()
                    },
                    cost,
                )?
            };
            user.password = password.into();
            Ok(vec![Write::User(r.name.clone()), Write::Invalidate(r.name.clone())])
        })
    }

    pub fn user_grant_role(
        &self,
        wtx: &WriteTxn,
        user: &str,
        role: &str,
    ) -> Result<Result<(), EtcdError>, BackendError> {
        {
            let st = self.state();
            let u = st.users.get(user);
            if u.is_none() {
                return Ok(Err(EtcdError::UserNotFound));
            }
            if role != ROOT && !st.roles.contains_key(role) {
                return Ok(Err(EtcdError::RoleNotFound));
            }
            // Granting a role the user holds changes nothing (not even the revision).
            if u.is_some_and(|u| u.roles.iter().any(|r| r == role)) {
                return Ok(Ok(()));
            }
        }
        self.change(wtx, |st| {
            let u = st.users.get_mut(user).ok_or(EtcdError::UserNotFound)?;
            u.roles.push(role.to_string());
            u.roles.sort();
            Ok(vec![Write::User(user.to_string())])
        })
    }

    pub fn user_revoke_role(
        &self,
        wtx: &WriteTxn,
        user: &str,
        role: &str,
    ) -> Result<Result<(), EtcdError>, BackendError> {
        if self.enabled() && user == ROOT && role == ROOT {
            return Ok(Err(EtcdError::InvalidAuthMgmt));
        }
        self.change(wtx, |st| {
            let u = st.users.get_mut(user).ok_or(EtcdError::UserNotFound)?;
            let before = u.roles.len();
            u.roles.retain(|r| r != role);
            if u.roles.len() == before {
                return Err(EtcdError::RoleNotGranted);
            }
            Ok(vec![Write::User(user.to_string())])
        })
    }

    /// A user's roles.
    pub fn user_get(&self, name: &str) -> Result<Vec<String>, EtcdError> {
        self.state().users.get(name).map(|u| u.roles.clone()).ok_or(EtcdError::UserNotFound)
    }

    /// Every user name, sorted.
    pub fn user_list(&self) -> Vec<String> {
        self.state().users.keys().cloned().collect()
    }

    pub fn role_add(&self, wtx: &WriteTxn, name: &str) -> Result<Result<(), EtcdError>, BackendError> {
        if name.is_empty() {
            return Ok(Err(EtcdError::RoleEmpty));
        }
        self.change(wtx, |st| {
            if st.roles.contains_key(name) {
                return Err(EtcdError::RoleAlreadyExist);
            }
            st.roles.insert(name.to_string(), Role { name: Bytes::from(name.to_string()), key_permission: Vec::new() });
            Ok(vec![Write::Role(name.to_string())])
        })
    }

    /// A role's permissions.
    pub fn role_get(&self, name: &str) -> Result<Vec<Permission>, EtcdError> {
        self.state().roles.get(name).map(|r| r.key_permission.clone()).ok_or(EtcdError::RoleNotFound)
    }

    /// Every role name, sorted.
    pub fn role_list(&self) -> Vec<String> {
        self.state().roles.keys().cloned().collect()
    }

    pub fn role_delete(&self, wtx: &WriteTxn, name: &str) -> Result<Result<(), EtcdError>, BackendError> {
        if self.enabled() && name == ROOT {
            return Ok(Err(EtcdError::InvalidAuthMgmt));
        }
        self.change(wtx, |st| {
            st.roles.remove(name).ok_or(EtcdError::RoleNotFound)?;
            let mut writes = vec![Write::Role(name.to_string())];
            for (uname, u) in st.users.iter_mut() {
                let before = u.roles.len();
                u.roles.retain(|r| r != name);
                if u.roles.len() != before {
                    writes.push(Write::User(uname.clone()));
                }
            }
            Ok(writes)
        })
    }

    pub fn role_grant_permission(
        &self,
        wtx: &WriteTxn,
        r: &AuthRoleGrantPermissionRequest,
    ) -> Result<Result<(), EtcdError>, BackendError> {
        let Some(perm) = &r.perm else { return Ok(Err(EtcdError::PermissionNotGiven)) };
        if !perms::valid_range(&perm.key, &perm.range_end) {
            return Ok(Err(EtcdError::InvalidAuthMgmt));
        }
        self.change(wtx, |st| {
            let role = st.roles.get_mut(&r.name).ok_or(EtcdError::RoleNotFound)?;
            let kp = &mut role.key_permission;
            let idx = kp.partition_point(|p| p.key < perm.key);
            if idx < kp.len() && kp[idx].key == perm.key && kp[idx].range_end == perm.range_end {
                kp[idx].perm_type = perm.perm_type;
            } else {
                kp.push(Permission {
                    perm_type: perm.perm_type,
                    key: perm.key.clone(),
                    range_end: perm.range_end.clone(),
                });
                // Go's sort.Sort is not stable; permissions with the same key are rare and keep
                // the order they were granted in here.
                kp.sort_by(|a, b| a.key.cmp(&b.key));
            }
            Ok(vec![Write::Role(r.name.clone())])
        })
    }

    pub fn role_revoke_permission(
        &self,
        wtx: &WriteTxn,
        r: &AuthRoleRevokePermissionRequest,
    ) -> Result<Result<(), EtcdError>, BackendError> {
        self.change(wtx, |st| {
            let role = st.roles.get_mut(&r.role).ok_or(EtcdError::RoleNotFound)?;
            let before = role.key_permission.len();
            role.key_permission.retain(|p| p.key != r.key || p.range_end != r.range_end);
            if role.key_permission.len() == before {
                return Err(EtcdError::PermissionNotGranted);
            }
            Ok(vec![Write::Role(r.role.clone())])
        })
    }
}

/// What a change wrote, for the backend.
enum Write {
    /// A user changed or was deleted.
    User(String),
    /// A role changed or was deleted.
    Role(String),
    /// A user's tokens are no longer valid.
    Invalidate(String),
}

/// etcd's `selectPassword`: the hash the API layer made (base64), or, for an entry written
/// without one, a hash made now.
fn select_password(r: &AuthUserAddRequest, cost: u32) -> Result<Vec<u8>, EtcdError> {
    if !r.password.is_empty() && r.hashed_password.is_empty() {
        return Ok(password::hash(&r.password, cost));
    }
    base64::engine::general_purpose::STANDARD.decode(&r.hashed_password).map_err(|_| EtcdError::NoPasswordUser)
}

/// The base64 form of a password hash, as the API layer puts it in the replicated request.
pub fn encode_hash(hash: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(hash)
}

#[cfg(test)]
mod tests;
