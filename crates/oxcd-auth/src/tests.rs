use oxcd_api::authpb::permission;
use oxcd_api::etcdserverpb::AuthRoleGrantPermissionRequest;
use oxcd_backend::BatchConfig;

use super::*;

fn open(path: &std::path::Path) -> (Backend, AuthStore) {
    let be = Backend::open(path, BatchConfig::default()).unwrap();
    let a = AuthStore::open(&be, TokenConfig { bcrypt_cost: password::MIN_COST, ..Default::default() }).unwrap();
    (be, a)
}

/// Runs `f` in one committed write transaction.
fn apply<T>(be: &Backend, f: impl FnOnce(&WriteTxn) -> Result<T, BackendError>) -> T {
    let wtx = be.write().unwrap();
    let r = f(&wtx).unwrap();
    wtx.commit_durable().unwrap();
    r
}

fn add_user(be: &Backend, a: &AuthStore, name: &str, pw: &str) {
    let hashed = encode_hash(&password::hash(pw, password::MIN_COST));
    let r = AuthUserAddRequest { name: name.into(), hashed_password: hashed, ..Default::default() };
    apply(be, |w| a.user_add(w, &r)).unwrap();
}

fn grant(be: &Backend, a: &AuthStore, role: &str, t: permission::Type, key: &str, end: &str) {
    let perm = Permission {
        perm_type: t as i32,
        key: key.as_bytes().to_vec().into(),
        range_end: end.as_bytes().to_vec().into(),
    };
    let r = AuthRoleGrantPermissionRequest { name: role.into(), perm: Some(perm) };
    apply(be, |w| a.role_grant_permission(w, &r)).unwrap();
}

#[test]
fn a_new_store_is_disabled_at_revision_one_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let (be, a) = open(&path);
        assert!(!a.enabled());
        assert_eq!(a.revision(), 1);
        add_user(&be, &a, "root", "pw");
        assert_eq!(a.revision(), 2);
        apply(&be, |w| a.user_grant_role(w, "root", "root")).unwrap();
        apply(&be, |w| a.enable(w)).unwrap();
        // Enabling does not move the revision (etcd).
        assert_eq!(a.revision(), 3);
    }
    let (_be, a) = open(&path);
    assert!(a.enabled());
    assert_eq!(a.revision(), 3);
    assert_eq!(a.user_get("root").unwrap(), vec!["root".to_string()]);
}

#[test]
fn etcd_errors_for_each_wrong_change() {
    let dir = tempfile::tempdir().unwrap();
    let (be, a) = open(&dir.path().join("db"));
    assert_eq!(apply(&be, |w| a.enable(w)), Err(EtcdError::RootUserNotExist));
    add_user(&be, &a, "root", "pw");
    assert_eq!(apply(&be, |w| a.enable(w)), Err(EtcdError::RootRoleNotExist));
    let dup = AuthUserAddRequest { name: "root".into(), ..Default::default() };
    assert_eq!(apply(&be, |w| a.user_add(w, &dup)), Err(EtcdError::UserAlreadyExist));
    let empty = AuthUserAddRequest::default();
    assert_eq!(apply(&be, |w| a.user_add(w, &empty)), Err(EtcdError::UserEmpty));
    assert_eq!(apply(&be, |w| a.role_add(w, "")), Err(EtcdError::RoleEmpty));
    assert_eq!(apply(&be, |w| a.user_grant_role(w, "root", "nope")), Err(EtcdError::RoleNotFound));
    assert_eq!(apply(&be, |w| a.user_grant_role(w, "nobody", "root")), Err(EtcdError::UserNotFound));
    assert_eq!(apply(&be, |w| a.user_revoke_role(w, "root", "x")), Err(EtcdError::RoleNotGranted));
    apply(&be, |w| a.role_add(w, "r")).unwrap();
    assert_eq!(apply(&be, |w| a.role_add(w, "r")), Err(EtcdError::RoleAlreadyExist));
    let no_perm = AuthRoleGrantPermissionRequest { name: "r".into(), perm: None };
    assert_eq!(apply(&be, |w| a.role_grant_permission(w, &no_perm)), Err(EtcdError::PermissionNotGiven));
    let bad = AuthRoleGrantPermissionRequest {
        name: "r".into(),
        perm: Some(Permission { perm_type: 0, key: "b".into(), range_end: "a".into() }),
    };
    assert_eq!(apply(&be, |w| a.role_grant_permission(w, &bad)), Err(EtcdError::InvalidAuthMgmt));
    let revoke = AuthRoleRevokePermissionRequest { role: "r".into(), key: "a".into(), range_end: Bytes::new() };
    assert_eq!(apply(&be, |w| a.role_revoke_permission(w, &revoke)), Err(EtcdError::PermissionNotGranted));
    apply(&be, |w| a.user_grant_role(w, "root", "root")).unwrap();
    apply(&be, |w| a.enable(w)).unwrap();
    assert_eq!(apply(&be, |w| a.user_delete(w, "root")), Err(EtcdError::InvalidAuthMgmt));
    assert_eq!(apply(&be, |w| a.role_delete(w, "root")), Err(EtcdError::InvalidAuthMgmt));
    assert_eq!(apply(&be, |w| a.user_revoke_role(w, "root", "root")), Err(EtcdError::InvalidAuthMgmt));
}

#[test]
fn checks_follow_roles_revisions_and_root() {
    let dir = tempfile::tempdir().unwrap();
    let (be, a) = open(&dir.path().join("db"));
    add_user(&be, &a, "root", "pw");
    apply(&be, |w| a.user_grant_role(w, "root", "root")).unwrap();
    add_user(&be, &a, "u", "pw");
    apply(&be, |w| a.role_add(w, "r")).unwrap();
    grant(&be, &a, "r", permission::Type::Read, "foo", "fop");
    apply(&be, |w| a.user_grant_role(w, "u", "r")).unwrap();
    let nobody = AuthInfo::default();
    // Disabled: everything goes.
    assert_eq!(a.check_put(&nobody, b"x"), Ok(()));
    apply(&be, |w| a.enable(w)).unwrap();
    let rev = a.revision();
    let u = AuthInfo { user: "u".into(), revision: rev };
    let root = AuthInfo { user: "root".into(), revision: rev };
    assert_eq!(a.check_put(&nobody, b"x"), Err(EtcdError::UserEmpty));
    assert_eq!(a.check_range(&u, b"foo1", b""), Ok(()));
    assert_eq!(a.check_range(&u, b"foo", b"fop"), Ok(()));
    assert_eq!(a.check_range(&u, b"a", b""), Err(EtcdError::PermissionDenied));
    assert_eq!(a.check_put(&u, b"foo1"), Err(EtcdError::PermissionDenied));
    assert_eq!(a.check_put(&root, b"anything"), Ok(()));
    assert_eq!(a.check_admin(&u), Err(EtcdError::PermissionDenied));
    assert_eq!(a.check_admin(&root), Ok(()));
    assert_eq!(a.check_admin(&AuthInfo { user: "ghost".into(), revision: rev }), Err(EtcdError::UserNotFound));
    grant(&be, &a, "r", permission::Type::Readwrite, "foo", "fop");
    // Checked before the change: stale.
    assert_eq!(a.check_range(&u, b"foo1", b""), Err(EtcdError::AuthOldRevision));
    let u = AuthInfo { user: "u".into(), revision: a.revision() };
    assert_eq!(a.check_put(&u, b"foo1"), Ok(()));
    // Deleting the role takes it from the user.
    apply(&be, |w| a.role_delete(w, "r")).unwrap();
    assert!(a.user_get("u").unwrap().is_empty());
    let u = AuthInfo { user: "u".into(), revision: a.revision() };
    assert_eq!(a.check_put(&u, b"foo1"), Err(EtcdError::PermissionDenied));
}

#[test]
fn passwords_tokens_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let token;
    {
        let (be, a) = open(&path);
        add_user(&be, &a, "root", "pw");
        apply(&be, |w| a.user_grant_role(w, "root", "root")).unwrap();
        assert_eq!(a.check_password("root", "pw"), Err(EtcdError::AuthNotEnabled));
        apply(&be, |w| a.enable(w)).unwrap();
        assert_eq!(a.check_password("root", "bad"), Err(EtcdError::AuthFailed));
        assert_eq!(a.check_password("nobody", "pw"), Err(EtcdError::AuthFailed));
        assert_eq!(a.check_password("root", "pw"), Ok(a.revision()));
        token = apply(&be, |w| a.authenticate(w, "root", &SimpleTokens::prefix(), 7)).unwrap();
        assert!(token.ends_with(".7"));
        assert_eq!(a.token_info(&token).unwrap().user, "root");
        assert_eq!(a.token_info("nope.1"), Err(EtcdError::InvalidAuthToken));
        let nopw = AuthUserAddRequest {
            name: "cert".into(),
            options: Some(UserAddOptions { no_password: true }),
            ..Default::default()
        };
        apply(&be, |w| a.user_add(w, &nopw)).unwrap();
        assert_eq!(a.check_password("cert", ""), Err(EtcdError::NoPasswordUser));
    }
    // The token survives a restart of the member.
    let (be, a) = open(&path);
    assert_eq!(a.token_info(&token).unwrap().user, "root");
    // A changed password ends the user's tokens.
    let r = AuthUserChangePasswordRequest {
        name: "root".into(),
        hashed_password: encode_hash(&password::hash("new", password::MIN_COST)),
        ..Default::default()
    };
    apply(&be, |w| a.user_change_password(w, &r)).unwrap();
    assert_eq!(a.token_info(&token), Err(EtcdError::InvalidAuthToken));
    assert_eq!(a.check_password("root", "new"), Ok(a.revision()));
    drop((be, a));
    let (_be, a) = open(&path);
    assert_eq!(a.token_info(&token), Err(EtcdError::InvalidAuthToken));
}

mod model {
    //! Random users, roles and permissions, and random requests: every decision of the store
    //! equals etcd's rule written as a plain model.

    use std::cmp::Ordering;

    use proptest::prelude::*;

    use super::*;
    use crate::perms::cmp;

    /// The rule in plain words: with auth on, no user is "user name is empty", an older revision is
    /// stale, an unknown user is denied, the root role may do everything, anyone else may touch a
    /// key some granted interval holds, and a range whose every key, walked from the first, is held.
    #[allow(clippy::type_complexity)]
    fn decide(
        roles: &[(String, Vec<(permission::Type, Vec<u8>, Vec<u8>)>)],
        users: &[(String, Vec<String>)],
        current: u64,
        (user, revision, write, key, end): &(String, u64, bool, Vec<u8>, Vec<u8>),
    ) -> Result<(), EtcdError> {
        if *revision == 0 {
            return Err(EtcdError::UserEmpty);
        }
        if *revision < current {
            return Err(EtcdError::AuthOldRevision);
        }
        let Some((_, granted)) = users.iter().find(|(n, _)| n == user) else { return Err(EtcdError::PermissionDenied) };
        if granted.iter().any(|r| r == "root") {
            return Ok(());
        }
        let ivls: Vec<(Vec<u8>, Vec<u8>)> = roles
            .iter()
            .filter(|(n, _)| granted.contains(n))
            .flat_map(|(_, perms)| perms.iter())
            .filter(|(t, _, _)| if *write { *t != permission::Type::Read } else { *t != permission::Type::Write })
            .map(|(_, k, e)| match &e[..] {
                [] => (k.clone(), [&k[..], &[0]].concat()),
                [0] => (k.clone(), Vec::new()),
                e => (k.clone(), e.to_vec()),
            })
            .collect();
        let holds = |s: &[u8]| {
            ivls.iter()
                .filter(|(b, e)| cmp(b, s) != Ordering::Greater && cmp(s, e) == Ordering::Less)
                .map(|(_, e)| e.clone())
                .max_by(|a, b| cmp(a, b))
        };
        let allowed = if end.is_empty() {
            holds(key).is_some()
        } else {
            let end: Vec<u8> = if end == &[0] { Vec::new() } else { end.clone() };
            let mut cur = key.clone();
            loop {
                if cmp(&cur, &end) != Ordering::Less {
                    break true;
                }
                match holds(&cur) {
                    Some(e) if e.is_empty() => break true,
                    Some(e) => cur = e,
                    None => break false,
                }
            }
        };
        if allowed { Ok(()) } else { Err(EtcdError::PermissionDenied) }
    }

    fn key() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(b'c')], 1..3)
    }

    /// A permission: its type, key and range end.
    type Perm = (permission::Type, Vec<u8>, Vec<u8>);

    fn perm() -> impl Strategy<Value = Perm> {
        let t =
            prop_oneof![Just(permission::Type::Read), Just(permission::Type::Write), Just(permission::Type::Readwrite)];
        (t, key(), prop_oneof![Just(Vec::new()), Just(vec![0u8]), key()])
            .prop_filter("a valid permission range", |(_, k, e)| perms::valid_range(k, e))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn every_decision_is_etcds(
            role_perms in proptest::collection::vec(proptest::collection::vec(perm(), 0..4), 1..4),
            user_roles in proptest::collection::vec(proptest::collection::vec(0usize..5, 0..3), 1..4),
            requests in proptest::collection::vec(
                (0usize..5, 0u64..3, any::<bool>(), key(), prop_oneof![Just(Vec::new()), Just(vec![0u8]), key()]),
                1..40,
            ),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let (be, a) = open(&dir.path().join("db"));
            // Roles r0.., users u0.. (index 4 of a user's roles is the root role); root itself.
            let mut roles: Vec<(String, Vec<Perm>)> = Vec::new();
            for (i, perms) in role_perms.iter().enumerate() {
                let name = format!("r{i}");
                apply(&be, |w| a.role_add(w, &name)).unwrap();
                let mut held: Vec<Perm> = Vec::new();
                for (t, k, e) in perms {
                    grant(&be, &a, &name, *t, std::str::from_utf8(k).unwrap(), std::str::from_utf8(e).unwrap());
                    // A grant of the same key and range end replaces that permission's type (etcd).
                    match held.iter_mut().find(|(_, hk, he)| hk == k && he == e) {
                        Some(p) => p.0 = *t,
                        None => held.push((*t, k.clone(), e.clone())),
                    }
                }
                roles.push((name, held));
            }
            let mut users: Vec<(String, Vec<String>)> = vec![("root".into(), vec!["root".into()])];
            add_user(&be, &a, "root", "pw");
            apply(&be, |w| a.user_grant_role(w, "root", "root")).unwrap();
            for (i, rs) in user_roles.iter().enumerate() {
                let name = format!("u{i}");
                apply(&be, |w| a.user_add(w, &AuthUserAddRequest {
                    name: name.clone(), options: Some(UserAddOptions { no_password: true }), ..Default::default()
                })).unwrap();
                let mut granted = Vec::new();
                for r in rs {
                    let role = if *r == 4 { "root".to_string() } else { format!("r{}", r % roles.len()) };
                    apply(&be, |w| a.user_grant_role(w, &name, &role)).unwrap();
                    if !granted.contains(&role) {
                        granted.push(role);
                    }
                }
                users.push((name, granted));
            }
            apply(&be, |w| a.enable(w)).unwrap();
            let current = a.revision();
            for (who, rev, write, k, e) in requests {
                // Users u0.., one unknown user; revisions none, stale, current.
                let user = if who < users.len() { users[who].0.clone() } else { "ghost".into() };
                let revision = [0, current - 1, current][rev as usize];
                let info = AuthInfo { user: user.clone(), revision };
                if !(e.is_empty() || e == [0] || k < e) {
                    continue;
                }
                let got = if write { a.check_delete(&info, &k, &e) } else { a.check_range(&info, &k, &e) };
                let want = decide(&roles, &users, current, &(user, revision, write, k.clone(), e.clone()));
                prop_assert_eq!(got, want, "{:?} {:?}..{:?}", info, k, e);
            }
        }
    }
}
