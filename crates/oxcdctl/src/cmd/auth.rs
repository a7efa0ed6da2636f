//! `auth enable|disable|status`, `user ...`, `role ...`.

use bytes::Bytes;
use oxcd_api::authpb::{Permission, UserAddOptions, permission};
use oxcd_api::etcdserverpb::*;

use crate::cli::{AuthCmd, Global, RoleCmd, UserCmd};
use crate::client::{self, Conn};
use crate::error::{CtlError, Result};
use crate::gojson::GoJson;
use crate::printer::{Format, Printer, go_quote, outln};

fn one_arg(args: &[String], msg: &str) -> Result<String> {
    if args.len() != 1 {
        return Err(CtlError::bad_args(msg));
    }
    Ok(args[0].clone())
}

pub async fn auth(g: &Global, p: &mut Printer, cmd: AuthCmd) -> Result<()> {
    let conn = client::connect(g).await?;
    match cmd {
        AuthCmd::Enable { args } => {
            if !args.is_empty() {
                return Err(CtlError::bad_args("auth enable command does not accept any arguments"));
            }
            loop {
                match conn.call(conn.auth().auth_enable(AuthEnableRequest {})).await {
                    Ok(_) => break,
                    Err(e) if e.msg == "etcdserver: root user does not have root role" => {
                        conn.call(conn.auth().role_add(AuthRoleAddRequest { name: "root".into() })).await?;
                        let grant = AuthUserGrantRoleRequest { user: "root".into(), role: "root".into() };
                        conn.call(conn.auth().user_grant_role(grant)).await?;
                    }
                    Err(e) => return Err(e),
                }
            }
            outln!(p, "Authentication Enabled");
            Ok(())
        }
        AuthCmd::Disable { args } => {
            if !args.is_empty() {
                return Err(CtlError::bad_args("auth disable command does not accept any arguments"));
            }
            conn.call(conn.auth().auth_disable(AuthDisableRequest {})).await?;
            outln!(p, "Authentication Disabled");
            Ok(())
        }
        AuthCmd::Status { args } => {
            if !args.is_empty() {
                return Err(CtlError::bad_args("auth status command does not accept any arguments"));
            }
            let r = conn.call(conn.auth().auth_status(AuthStatusRequest {})).await?;
            p.simple_or(&r, |p| {
                outln!(p, "Authentication Status: {}", r.enabled);
                outln!(p, "AuthRevision: {}", r.auth_revision);
            })
        }
    }
}

/// `Password of <name>: ` twice on a terminal, or one word of stdin with `--interactive=false`.
fn read_password(name: &str, interactive: bool) -> Result<String> {
    if !interactive {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        return Ok(line.split_whitespace().next().unwrap_or_default().to_string());
    }
    let first = crate::prompt::password(&format!("Password of {name}: "))?;
    if first.is_empty() {
        return Err(CtlError::bad_args("empty password"));
    }
    let second = crate::prompt::password(&format!("Type password of {name} again for confirmation: "))?;
    if first != second {
        return Err(CtlError::bad_args("given passwords are different"));
    }
    Ok(first)
}

pub async fn user(g: &Global, p: &mut Printer, cmd: UserCmd) -> Result<()> {
    match cmd {
        UserCmd::Add { interactive, new_user_password, no_password, args } => {
            let arg = one_arg(&args, "user add command requires user name as its argument")?;
            let (name, password) = if no_password {
                (arg, String::new())
            } else if !new_user_password.is_empty() {
                (arg, new_user_password)
            } else if let Some((u, pw)) = arg.split_once(':') {
                if u.is_empty() {
                    return Err(CtlError::bad_args("empty user name is not allowed"));
                }
                (u.to_string(), pw.to_string())
            } else {
                let pw = read_password(&arg, interactive)?;
                (arg, pw)
            };
            let conn = client::connect(g).await?;
            let req = AuthUserAddRequest {
                name: name.clone(),
                password,
                options: Some(UserAddOptions { no_password }),
                ..Default::default()
            };
            let r = conn.call(conn.auth().user_add(req)).await?;
            p.simple_or(&r, |p| outln!(p, "User {name} created"))
        }
        UserCmd::Delete { args } => {
            let name = one_arg(&args, "user delete command requires user name as its argument")?;
            let conn = client::connect(g).await?;
            let r = conn.call(conn.auth().user_delete(AuthUserDeleteRequest { name: name.clone() })).await?;
            p.simple_or(&r, |p| outln!(p, "User {name} deleted"))
        }
        UserCmd::Get { detail, args } => {
            let name = one_arg(&args, "user get command requires user name as its argument")?;
            let conn = client::connect(g).await?;
            let r = conn.call(conn.auth().user_get(AuthUserGetRequest { name: name.clone() })).await?;
            if detail {
                outln!(p, "User: {name}");
                for role in &r.roles {
                    outln!(p, "");
                    let rr = conn.call(conn.auth().role_get(AuthRoleGetRequest { role: role.clone() })).await?;
                    p.role_get(role, &rr)?;
                }
                return Ok(());
            }
            match p.format {
                Format::Fields => {
                    p.fields_header(&r.header);
                    outln!(p, "\"User\" : {}", go_quote(name.as_bytes()));
                    outln!(p, "\"Roles\" : [{}]", r.roles.join(" "));
                    Ok(())
                }
                _ => p.simple_or(&r, |p| {
                    let roles: String = r.roles.iter().map(|x| format!(" {x}")).collect();
                    outln!(p, "User: {name}");
                    outln!(p, "Roles:{roles}");
                }),
            }
        }
        UserCmd::List { args } => {
            if !args.is_empty() {
                return Err(CtlError::bad_args("user list command requires no arguments"));
            }
            let conn = client::connect(g).await?;
            let r = conn.call(conn.auth().user_list(AuthUserListRequest {})).await?;
            if p.format == Format::Fields {
                p.fields_header(&r.header);
                outln!(p, "\"Users\" : [{}]", r.users.join(" "));
                return Ok(());
            }
            p.simple_or(&r, |p| r.users.iter().for_each(|u| outln!(p, "{u}")))
        }
        UserCmd::Passwd { interactive, args } => {
            let name = one_arg(&args, "user passwd command requires user name as its argument")?;
            let password = read_password(&name, interactive)?;
            let conn = client::connect(g).await?;
            let req = AuthUserChangePasswordRequest { name, password, ..Default::default() };
            let r = conn.call(conn.auth().user_change_password(req)).await?;
            p.simple_or(&r, |p| outln!(p, "Password updated"))
        }
        UserCmd::GrantRole { args } => {
            if args.len() != 2 {
                return Err(CtlError::bad_args("user grant command requires user name and role name as its argument"));
            }
            let conn = client::connect(g).await?;
            let req = AuthUserGrantRoleRequest { user: args[0].clone(), role: args[1].clone() };
            let r = conn.call(conn.auth().user_grant_role(req)).await?;
            p.simple_or(&r, |p| outln!(p, "Role {} is granted to user {}", args[1], args[0]))
        }
        UserCmd::RevokeRole { args } => {
            if args.len() != 2 {
                return Err(CtlError::bad_args("user revoke-role requires user name and role name as its argument"));
            }
            let conn = client::connect(g).await?;
            let req = AuthUserRevokeRoleRequest { name: args[0].clone(), role: args[1].clone() };
            let r = conn.call(conn.auth().user_revoke_role(req)).await?;
            p.simple_or(&r, |p| outln!(p, "Role {} is revoked from user {}", args[1], args[0]))
        }
    }
}

/// `[key, end)` of a permission command (etcdctl's `permRange`).
fn perm_range(args: &[String], prefix: bool, from_key: bool) -> Result<(String, String)> {
    let key = &args[0];
    if key.is_empty() {
        if prefix && from_key {
            return Err(CtlError::bad_args("--from-key and --prefix flags are mutually exclusive"));
        }
        let end = if prefix || from_key { "\0" } else { "" };
        return Ok(("\0".to_string(), end.to_string()));
    }
    if args.len() == 1 {
        if prefix {
            if from_key {
                return Err(CtlError::bad_args("--from-key and --prefix flags are mutually exclusive"));
            }
            let end = super::kv::prefix_end(key.as_bytes());
            return Ok((key.clone(), String::from_utf8_lossy(&end).into_owned()));
        }
        return Ok((key.clone(), if from_key { "\0".to_string() } else { String::new() }));
    }
    if prefix {
        return Err(CtlError::bad_args("unexpected endkey argument with --prefix flag"));
    }
    if from_key {
        return Err(CtlError::bad_args("unexpected endkey argument with --from-key flag"));
    }
    Ok((key.clone(), args[1].clone()))
}

pub async fn role(g: &Global, p: &mut Printer, cmd: RoleCmd) -> Result<()> {
    match cmd {
        RoleCmd::Add { args } => {
            let name = one_arg(&args, "role add command requires role name as its argument")?;
            let conn = client::connect(g).await?;
            let r = conn.call(conn.auth().role_add(AuthRoleAddRequest { name: name.clone() })).await?;
            p.simple_or(&r, |p| outln!(p, "Role {name} created"))
        }
        RoleCmd::Delete { args } => {
            let role = one_arg(&args, "role delete command requires role name as its argument")?;
            let conn = client::connect(g).await?;
            let r = conn.call(conn.auth().role_delete(AuthRoleDeleteRequest { role: role.clone() })).await?;
            p.simple_or(&r, |p| outln!(p, "Role {role} deleted"))
        }
        RoleCmd::Get { args } => {
            let role = one_arg(&args, "role get command requires role name as its argument")?;
            let conn = client::connect(g).await?;
            let r = conn.call(conn.auth().role_get(AuthRoleGetRequest { role: role.clone() })).await?;
            p.role_get(&role, &r)
        }
        RoleCmd::List { args } => {
            if !args.is_empty() {
                return Err(CtlError::bad_args("role list command requires no arguments"));
            }
            let conn = client::connect(g).await?;
            let r = conn.call(conn.auth().role_list(AuthRoleListRequest {})).await?;
            if p.format == Format::Fields {
                p.fields_header(&r.header);
                outln!(p, "\"Roles\" : [{}]", r.roles.join(" "));
                return Ok(());
            }
            p.simple_or(&r, |p| r.roles.iter().for_each(|x| outln!(p, "{x}")))
        }
        RoleCmd::GrantPermission { from_key, prefix, args } => {
            if args.len() < 3 {
                return Err(CtlError::bad_args(
                    "role grant command requires role name, permission type, and key [endkey] as its argument",
                ));
            }
            let perm_type = match args[1].to_uppercase().as_str() {
                "READ" => permission::Type::Read,
                "WRITE" => permission::Type::Write,
                "READWRITE" => permission::Type::Readwrite,
                _ => return Err(CtlError::bad_args(format!("invalid permission type: {}", args[1]))),
            };
            let (key, end) = perm_range(&args[2..], prefix, from_key)?;
            let conn = client::connect(g).await?;
            let perm = Permission { perm_type: perm_type as i32, key: Bytes::from(key), range_end: Bytes::from(end) };
            let req = AuthRoleGrantPermissionRequest { name: args[0].clone(), perm: Some(perm) };
            let r = conn.call(conn.auth().role_grant_permission(req)).await?;
            p.simple_or(&r, |p| outln!(p, "Role {} updated", args[0]))
        }
        RoleCmd::RevokePermission { from_key, prefix, args } => {
            if args.len() < 2 {
                return Err(CtlError::bad_args(
                    "role revoke-permission command requires role name and key [endkey] as its argument",
                ));
            }
            let (key, end) = perm_range(&args[1..], prefix, from_key)?;
            let conn: Conn = client::connect(g).await?;
            let req = AuthRoleRevokePermissionRequest {
                role: args[0].clone(),
                key: Bytes::from(key.clone()),
                range_end: Bytes::from(end.clone()),
            };
            let r = conn.call(conn.auth().role_revoke_permission(req)).await?;
            p.simple_or(&r, |p| {
                if end.is_empty() {
                    outln!(p, "Permission of key {key} is revoked from role {}", args[0]);
                } else if end != "\0" {
                    outln!(p, "Permission of range [{key}, {end}) is revoked from role {}", args[0]);
                } else {
                    outln!(p, "Permission of range [{key}, <open ended> is revoked from role {}", args[0]);
                }
            })
        }
    }
}

fn perm_name(t: i32) -> &'static str {
    match t {
        0 => "READ",
        1 => "WRITE",
        _ => "READWRITE",
    }
}

impl Printer {
    /// `simple` as the command prints it; json, protobuf and fields (the header) of the response.
    fn simple_or<R>(&mut self, r: &R, simple: impl FnOnce(&mut Printer)) -> Result<()>
    where
        R: GoJson + prost::Message + HasHeader,
    {
        match self.format {
            Format::Simple => simple(self),
            Format::Json => self.json(r),
            Format::Protobuf => self.protobuf(r),
            Format::Fields => self.fields_header(&r.header()),
            Format::Table => return Err(self.unsupported()),
        }
        Ok(())
    }

    fn role_get(&mut self, role: &str, r: &AuthRoleGetResponse) -> Result<()> {
        match self.format {
            Format::Simple => {
                outln!(self, "Role {role}");
                for (title, kinds) in [("KV Read:", [0, 2]), ("KV Write:", [1, 2])] {
                    outln!(self, "{title}");
                    for perm in r.perm.iter().filter(|x| kinds.contains(&x.perm_type)) {
                        let key = String::from_utf8_lossy(&perm.key);
                        if perm.range_end.is_empty() {
                            outln!(self, "\t{key}");
                            continue;
                        }
                        let end = String::from_utf8_lossy(&perm.range_end);
                        let mut s = if &*perm.range_end != b"\0" {
                            format!("\t[{key}, {end})")
                        } else {
                            format!("\t[{key}, <open ended>")
                        };
                        if super::kv::prefix_end(&perm.key) == perm.range_end.as_ref() {
                            s.push_str(&format!(" (prefix {key})"));
                        }
                        outln!(self, "{s}");
                    }
                }
            }
            Format::Json => self.json(r),
            Format::Protobuf => self.protobuf(r),
            Format::Fields => {
                self.fields_header(&r.header);
                for perm in &r.perm {
                    outln!(self, "\"PermType\" :  {}", perm_name(perm.perm_type));
                    outln!(self, "\"Key\" : {}", go_quote(&perm.key));
                    outln!(self, "\"RangeEnd\" : {}", go_quote(&perm.range_end));
                }
            }
            Format::Table => return Err(self.unsupported()),
        }
        Ok(())
    }
}

/// Responses that carry a header.
pub trait HasHeader {
    fn header(&self) -> Option<ResponseHeader>;
}

macro_rules! has_header {
    ($($t:ty),*) => { $(impl HasHeader for $t { fn header(&self) -> Option<ResponseHeader> { self.header } })* };
}

has_header!(
    AuthStatusResponse,
    AuthUserAddResponse,
    AuthUserDeleteResponse,
    AuthUserGetResponse,
    AuthUserListResponse,
    AuthUserChangePasswordResponse,
    AuthUserGrantRoleResponse,
    AuthUserRevokeRoleResponse,
    AuthRoleAddResponse,
    AuthRoleDeleteResponse,
    AuthRoleListResponse,
    AuthRoleGrantPermissionResponse,
    AuthRoleRevokePermissionResponse
);
