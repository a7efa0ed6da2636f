//! `endpoint health|status|hashkv`, for each of `--endpoints` or, with `--cluster`, for every
//! member's client URLs.

use std::time::Instant;

use oxcd_api::etcdserverpb::{
    AlarmRequest, HashKvRequest, HashKvResponse, RangeRequest, StatusRequest, StatusResponse, alarm_request,
};

use crate::cli::{EndpointCmd, Global};
use crate::client;
use crate::error::{CtlError, EXIT_ERROR, Result};
use crate::gojson::{GoJson, Obj, array, quote};
use crate::printer::{Format, Printer, outln};
use crate::table;

/// One endpoint's health (etcdctl's `epHealth`).
pub struct Health {
    pub ep: String,
    pub health: bool,
    pub took: String,
    pub error: String,
}

pub async fn run(g: &Global, p: &mut Printer, cluster: bool, cmd: EndpointCmd) -> Result<()> {
    let endpoints = if cluster { client::cluster_endpoints(g).await? } else { g.endpoints.clone() };
    match cmd {
        EndpointCmd::Health { .. } => {
            let checks = endpoints.iter().map(|ep| health(g, ep.clone()));
            let list = futures::future::join_all(checks).await;
            let unhealthy = list.iter().any(|h| !h.error.is_empty());
            p.endpoint_health(&list)?;
            if unhealthy {
                return Err(CtlError::new(EXIT_ERROR, "unhealthy cluster"));
            }
            Ok(())
        }
        EndpointCmd::Status { .. } => {
            let mut list = Vec::new();
            let mut failed = false;
            for ep in &endpoints {
                match status(g, ep).await {
                    Ok(s) => list.push((ep.clone(), s)),
                    Err(e) => {
                        failed = true;
                        eprintln!("Failed to get the status of endpoint {ep} ({})", e.msg);
                    }
                }
            }
            p.endpoint_status(&list)?;
            if failed {
                p.flush();
                std::process::exit(EXIT_ERROR);
            }
            Ok(())
        }
        EndpointCmd::Hashkv { rev, .. } => {
            let mut list = Vec::new();
            let mut failed = None;
            for ep in &endpoints {
                let r = async {
                    let conn = client::connect_to(g, std::slice::from_ref(ep)).await?;
                    conn.call(conn.maintenance().hash_kv(HashKvRequest { revision: rev })).await
                };
                match r.await {
                    Ok(h) => list.push((ep.clone(), h)),
                    Err(e) => {
                        eprintln!("Failed to get the hash of endpoint {ep} ({})", e.msg);
                        failed = Some(e);
                    }
                }
            }
            p.endpoint_hashkv(&list)?;
            match failed {
                Some(e) => Err(CtlError::new(EXIT_ERROR, e.msg)),
                None => Ok(()),
            }
        }
    }
}

async fn status(g: &Global, ep: &str) -> Result<StatusResponse> {
    let conn = client::connect_to(g, &[ep.to_string()]).await?;
    conn.call(conn.maintenance().status(StatusRequest {})).await
}

/// etcdctl's health check: a linearizable get of "health" (permission denied counts as healthy,
/// it went through consensus), then no active alarms.
async fn health(g: &Global, ep: String) -> Health {
    let conn = match client::connect_to(g, std::slice::from_ref(&ep)).await {
        Ok(c) => c,
        Err(e) => return Health { ep, health: false, took: String::new(), error: e.msg },
    };
    let started = Instant::now();
    let r = conn.call(conn.kv().range(RangeRequest { key: "health".into(), ..Default::default() })).await;
    let mut h = Health { ep, health: false, took: oxcd_api::duration::format(started.elapsed()), error: String::new() };
    match r {
        Ok(_) => h.health = true,
        Err(e) if e.msg == "etcdserver: permission denied" => h.health = true,
        Err(e) => h.error = e.msg,
    }
    if h.health {
        let alarms = AlarmRequest { action: alarm_request::AlarmAction::Get as i32, ..Default::default() };
        match conn.call(conn.maintenance().alarm(alarms)).await {
            Ok(r) if !r.alarms.is_empty() => {
                h.health = false;
                h.error = "Active Alarm(s): ".to_string();
                for a in &r.alarms {
                    h.error.push_str(match a.alarm {
                        1 => "NOSPACE ",
                        2 => "CORRUPT ",
                        _ => "UNKNOWN ",
                    });
                }
            }
            Ok(_) => {}
            Err(_) => {
                h.health = false;
                h.error = "Unable to fetch the alarm list".to_string();
            }
        }
    }
    h
}

fn status_row(ep: &str, s: &StatusResponse) -> Vec<String> {
    let h = s.header.unwrap_or_default();
    vec![
        ep.to_string(),
        format!("{:x}", h.member_id),
        s.version.clone(),
        table::human_bytes(s.db_size.max(0) as u64),
        (s.leader == h.member_id).to_string(),
        s.is_learner.to_string(),
        s.raft_term.to_string(),
        s.raft_index.to_string(),
        s.raft_applied_index.to_string(),
        s.errors.join(", "),
    ]
}

impl Printer {
    fn endpoint_health(&mut self, list: &[Health]) -> Result<()> {
        match self.format {
            Format::Simple => {
                // etcdctl 3.4 writes these lines to stderr.
                for h in list {
                    if h.error.is_empty() {
                        eprintln!("{} is healthy: successfully committed proposal: took = {}", h.ep, h.took);
                    } else {
                        eprintln!("{} is unhealthy: failed to commit proposal: {}", h.ep, h.error);
                    }
                }
            }
            Format::Json => {
                let items = list.iter().map(|h| {
                    let mut o = Obj::default();
                    o.raw("endpoint", &quote(&h.ep));
                    o.raw("health", &h.health.to_string());
                    o.raw("took", &quote(&h.took));
                    o.string("error", &h.error);
                    o.finish()
                });
                outln!(self, "{}", array(items));
            }
            Format::Table => {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|h| vec![h.ep.clone(), h.health.to_string(), h.took.clone(), h.error.clone()])
                    .collect();
                let t = table::render(&["endpoint", "health", "took", "error"], &rows);
                self.out.extend_from_slice(t.as_bytes());
            }
            Format::Fields | Format::Protobuf => return Err(self.unsupported()),
        }
        Ok(())
    }

    fn endpoint_status(&mut self, list: &[(String, StatusResponse)]) -> Result<()> {
        match self.format {
            Format::Simple => {
                for (ep, s) in list {
                    outln!(self, "{}", status_row(ep, s).join(", "));
                }
            }
            Format::Json => {
                let items = list.iter().map(|(ep, s)| {
                    let mut o = Obj::default();
                    o.raw("Endpoint", &quote(ep));
                    o.raw("Status", &s.to_json());
                    o.finish()
                });
                outln!(self, "{}", array(items));
            }
            Format::Fields => {
                for (ep, s) in list {
                    self.fields_header(&s.header);
                    outln!(self, "\"Version\" : {}", quote(&s.version));
                    outln!(self, "\"DBSize\" : {}", s.db_size);
                    outln!(self, "\"Leader\" : {}", s.leader);
                    outln!(self, "\"IsLearner\" : {}", s.is_learner);
                    outln!(self, "\"RaftIndex\" : {}", s.raft_index);
                    outln!(self, "\"RaftTerm\" : {}", s.raft_term);
                    outln!(self, "\"RaftAppliedIndex\" : {}", s.raft_applied_index);
                    outln!(self, "\"Errors\" : [{}]", s.errors.join(" "));
                    outln!(self, "\"Endpoint\" : {}", quote(ep));
                    outln!(self, "");
                }
            }
            Format::Table => {
                let rows: Vec<Vec<String>> = list.iter().map(|(ep, s)| status_row(ep, s)).collect();
                let header = [
                    "endpoint",
                    "ID",
                    "version",
                    "DB size",
                    "is leader",
                    "is learner",
                    "raft term",
                    "raft index",
                    "raft applied index",
                    "errors",
                ];
                let t = table::render(&header, &rows);
                self.out.extend_from_slice(t.as_bytes());
            }
            Format::Protobuf => return Err(self.unsupported()),
        }
        Ok(())
    }

    fn endpoint_hashkv(&mut self, list: &[(String, HashKvResponse)]) -> Result<()> {
        match self.format {
            Format::Simple => {
                for (ep, h) in list {
                    outln!(self, "{ep}, {}", h.hash);
                }
            }
            Format::Json => {
                let items = list.iter().map(|(ep, h)| {
                    let mut o = Obj::default();
                    o.raw("Endpoint", &quote(ep));
                    o.raw("HashKV", &h.to_json());
                    o.finish()
                });
                outln!(self, "{}", array(items));
            }
            Format::Fields => {
                for (ep, h) in list {
                    self.fields_header(&h.header);
                    outln!(self, "\"Endpoint\" : {}", quote(ep));
                    outln!(self, "\"Hash\" : {}", h.hash);
                    outln!(self, "\"HashRevision\" : {}", h.hash_revision);
                    outln!(self, "");
                }
            }
            Format::Table => {
                let rows: Vec<Vec<String>> = list.iter().map(|(ep, h)| vec![ep.clone(), h.hash.to_string()]).collect();
                let t = table::render(&["endpoint", "hash"], &rows);
                self.out.extend_from_slice(t.as_bytes());
            }
            Format::Protobuf => return Err(self.unsupported()),
        }
        Ok(())
    }
}
