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
