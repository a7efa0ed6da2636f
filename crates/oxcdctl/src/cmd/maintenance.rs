//! `alarm list|disarm`, `defrag`, `move-leader`.

use oxcd_api::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, DefragmentRequest, MoveLeaderRequest, MoveLeaderResponse, StatusRequest,
    alarm_request,
};

use crate::cli::{AlarmCmd, Global};
use crate::client;
use crate::error::{CtlError, EXIT_ERROR, Result};
use crate::printer::{Format, Printer, outln};

fn alarm_name(a: i32) -> &'static str {
    match a {
        1 => "NOSPACE",
        2 => "CORRUPT",
        _ => "NONE",
    }
}

pub async fn alarm(g: &Global, p: &mut Printer, cmd: AlarmCmd) -> Result<()> {
    match &cmd {
        AlarmCmd::List { args } if !args.is_empty() => {
            return Err(CtlError::bad_args("alarm list command accepts no arguments"));
        }
        AlarmCmd::Disarm { args } if !args.is_empty() => {
            return Err(CtlError::bad_args("alarm disarm command accepts no arguments"));
        }
        _ => {}
    }
    let conn = client::connect(g).await?;
    let get = AlarmRequest { action: alarm_request::AlarmAction::Get as i32, ..Default::default() };
    let resp = match cmd {
        AlarmCmd::List { .. } => conn.call(conn.maintenance().alarm(get)).await?,
        AlarmCmd::Disarm { .. } => {
            // clientv3's AlarmDisarm of "all": deactivate each active alarm; the answer lists the
            // deactivated alarms, with no header.
            let listed = conn.call(conn.maintenance().alarm(get)).await?;
            let mut resp = AlarmResponse { header: None, alarms: Vec::new() };
            for a in &listed.alarms {
                let req = AlarmRequest {
                    action: alarm_request::AlarmAction::Deactivate as i32,
                    member_id: a.member_id,
                    alarm: a.alarm,
                };
                resp.alarms.extend(conn.call(conn.maintenance().alarm(req)).await?.alarms);
            }
            resp
        }
    };
    p.alarm(&resp)
}

pub async fn defrag(g: &Global, p: &mut Printer, cluster: bool, data_dir: &str, _args: &[String]) -> Result<()> {
    if !data_dir.is_empty() {
        // Offline, on an oxcd data directory no member has open; silent on success, as etcdctl.
        let db = oxcd_datadir::Layout::new(std::path::Path::new(data_dir)).db;
        let r = if db.is_file() {
            // The online defragmentation, on a file no member has open (redb's lock refuses if one does).
            oxcd_backend::Backend::open(&db, Default::default()).and_then(|b| b.defrag()).map_err(|e| e.to_string())
        } else {
            Err(format!("cannot open database at {}: no such file", db.display()))
        };
        if let Err(e) = r {
            p.flush();
            eprintln!("Failed to defragment etcd data[{data_dir}] ({e})");
            std::process::exit(EXIT_ERROR);
        }
        return Ok(());
    }
    let endpoints = if cluster { client::cluster_endpoints(g).await? } else { g.endpoints.clone() };
    let mut failures = 0;
    for ep in &endpoints {
        let r = async {
            let conn = client::connect_to(g, std::slice::from_ref(ep)).await?;
            conn.call(conn.maintenance().defragment(DefragmentRequest {})).await
        };
        match r.await {
            Ok(_) => outln!(p, "Finished defragmenting etcd member[{ep}]"),
            Err(e) => {
                p.flush();
                eprintln!("Failed to defragment etcd member[{ep}] ({})", e.msg);
                failures += 1;
            }
        }
    }
    if failures > 0 {
        p.flush();
        std::process::exit(EXIT_ERROR);
    }
    Ok(())
}

pub async fn move_leader(g: &Global, p: &mut Printer, args: &[String]) -> Result<()> {
    if args.len() != 1 {
        return Err(CtlError::bad_args("move-leader command needs 1 argument"));
    }
    let target = super::kv::parse_uint(&args[0], 16).map_err(CtlError::bad_args)?;
    client::connect(g).await?;
    for ep in &g.endpoints {
        let conn = client::connect_to(g, std::slice::from_ref(ep)).await?;
        let s = conn.call(conn.maintenance().status(StatusRequest {})).await?;
        let me = s.header.unwrap_or_default().member_id;
        if me == s.leader {
            let r = conn.call(conn.maintenance().move_leader(MoveLeaderRequest { target_id: target })).await?;
            return p.move_leader(s.leader, target, &r);
        }
    }
    Err(CtlError::bad_args(format!("no leader endpoint given at [{}]", g.endpoints.join(" "))))
}

impl Printer {
    fn alarm(&mut self, r: &AlarmResponse) -> Result<()> {
        match self.format {
            Format::Simple => {
                for a in &r.alarms {
                    outln!(self, "{}", alarm_text(a));
                }
            }
            Format::Json => self.json(r),
            Format::Protobuf => self.protobuf(r),
            Format::Fields => {
                self.fields_header(&r.header);
                for a in &r.alarms {
                    outln!(self, "\"MemberID\" : {}", a.member_id);
                    outln!(self, "\"AlarmType\" : {}", alarm_name(a.alarm));
                }
            }
            Format::Table => return Err(self.unsupported()),
        }
        Ok(())
    }

    fn move_leader(&mut self, from: u64, to: u64, r: &MoveLeaderResponse) -> Result<()> {
        match self.format {
            Format::Simple => outln!(self, "Leadership transferred from {from:x} to {to:x}"),
            Format::Json => self.json(r),
            Format::Protobuf => self.protobuf(r),
            Format::Fields => self.fields_header(&r.header),
            Format::Table => return Err(self.unsupported()),
        }
        Ok(())
    }
}

/// Go's `%+v` of an alarm: its protobuf compact text.
fn alarm_text(a: &AlarmMember) -> String {
    let mut s = String::new();
    if a.member_id != 0 {
        s.push_str(&format!("memberID:{} ", a.member_id));
    }
    if a.alarm != 0 {
        s.push_str(&format!("alarm:{} ", alarm_name(a.alarm)));
    }
    s
}
