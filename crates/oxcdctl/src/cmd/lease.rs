//! `lease grant|revoke|timetolive|list|keep-alive`.
//!
//! etcdctl prints clientv3's lease structs, not the protobuf messages: the response header is
//! embedded, so its fields sit at the top level of the JSON and `-w protobuf` encodes the header
//! alone; `ID`/`TTL`/`Error` have no `omitempty`; the time-to-live struct names its fields `id`,
//! `ttl`, `granted-ttl` and `keys`. Revoke's struct cannot be encoded as protobuf at all.

use std::time::Duration;

use oxcd_api::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest, LeaseLeasesResponse,
    LeaseRevokeRequest, LeaseRevokeResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, ResponseHeader,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::cli::{Global, LeaseCmd};
use crate::client::{self, Conn};
use crate::error::{CtlError, EXIT_BAD_CONNECTION, EXIT_BAD_FEATURE, Result};
use crate::gojson::{GoJson, Obj, array, base64};
use crate::printer::{Format, Printer, go_quote, outln};

fn lease_id(args: &[String]) -> Result<i64> {
    super::kv::parse_int(&args[0], 16)
        .map_err(|e| CtlError::bad_args(format!("bad lease ID arg ({e}), expecting ID in Hex")))
}

pub async fn run(g: &Global, p: &mut Printer, cmd: LeaseCmd) -> Result<()> {
    match cmd {
        LeaseCmd::Grant { args } => {
            if args.len() != 1 {
                return Err(CtlError::bad_args("lease grant command needs TTL argument"));
            }
            let ttl = super::kv::parse_int(&args[0], 10).map_err(|e| CtlError::bad_args(format!("bad TTL ({e})")))?;
            let conn = client::connect(g).await?;
            let r = conn
                .call(conn.lease().lease_grant(LeaseGrantRequest { ttl, id: 0 }))
                .await
                .map_err(|e| CtlError::error(format!("failed to grant lease ({})", e.msg)))?;
            p.lease_grant(r.header, r.id, r.ttl, &r.error)
        }
        LeaseCmd::Revoke { args } => {
            if args.len() != 1 {
                return Err(CtlError::bad_args("lease revoke command needs 1 argument"));
            }
            let id = lease_id(&args)?;
            let conn = client::connect(g).await?;
            let r = conn
                .call(conn.lease().lease_revoke(LeaseRevokeRequest { id }))
                .await
                .map_err(|e| CtlError::error(format!("failed to revoke lease ({})", e.msg)))?;
            p.lease_revoke(id, &r)
        }
        LeaseCmd::Timetolive { keys, args } => {
            if args.len() != 1 {
                return Err(CtlError::bad_args("lease timetolive command needs lease ID as argument"));
            }
            let id = lease_id(&args)?;
            let conn = client::connect(g).await?;
            let r = conn
                .call(conn.lease().lease_time_to_live(LeaseTimeToLiveRequest { id, keys }))
                .await
                .map_err(|e| CtlError::new(EXIT_BAD_CONNECTION, e.msg))?;
            p.lease_ttl(&r, keys)
        }
        LeaseCmd::List { .. } => {
            let conn = client::connect(g).await?;
            let r = conn
                .call(conn.lease().lease_leases(LeaseLeasesRequest {}))
                .await
                .map_err(|e| CtlError::new(EXIT_BAD_CONNECTION, e.msg))?;
            p.lease_list(&r)
        }
        LeaseCmd::KeepAlive { once, args } => {
            if args.len() != 1 {
                return Err(CtlError::bad_args("lease keep-alive command needs lease ID as argument"));
            }
            let id = lease_id(&args)?;
            let conn = client::connect(g).await?;
            keep_alive(&conn, p, id, once).await
        }
    }
}

/// Renews every third of the TTL until the lease is gone (or once).
async fn keep_alive(conn: &Conn, p: &mut Printer, id: i64, once: bool) -> Result<()> {
    let (tx, rx) = mpsc::channel(4);
    let _ = tx.send(LeaseKeepAliveRequest { id }).await;
    let mut stream = if once {
        conn.call(conn.lease().lease_keep_alive(ReceiverStream::new(rx)))
            .await
            .map_err(|e| CtlError::new(EXIT_BAD_CONNECTION, e.msg))?
    } else {
        conn.lease().lease_keep_alive(ReceiverStream::new(rx)).await.map_err(CtlError::from)?.into_inner()
    };
    loop {
        let r = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) if !once => break,
            Ok(None) => return Err(CtlError::new(EXIT_BAD_CONNECTION, "etcdserver: requested lease not found")),
            Err(s) => return Err(CtlError::new(EXIT_BAD_CONNECTION, crate::error::status_text(&s))),
        };
        if r.ttl <= 0 {
            if once {
                return Err(CtlError::new(EXIT_BAD_CONNECTION, "etcdserver: requested lease not found"));
            }
            break;
        }
        p.lease_keep_alive(&r)?;
        p.flush();
        if once {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis((r.ttl as u64 * 1000 / 3).max(500))).await;
        if tx.send(LeaseKeepAliveRequest { id }).await.is_err() {
            break;
        }
    }
    if p.format == Format::Simple {
        outln!(p, "lease {id:016x} expired or revoked.");
    }
    Ok(())
}

/// JSON of a clientv3 lease struct: the embedded header's fields, then the struct's own.
fn with_header(h: Option<ResponseHeader>, rest: impl FnOnce(&mut Obj)) -> String {
    let mut o = Obj::default();
    h.unwrap_or_default().fields(&mut o);
    rest(&mut o);
    o.finish()
}

/// Go's `%v` of a struct holding a `*ResponseHeader`: the header's compact text inside braces.
fn header_text(h: Option<ResponseHeader>) -> String {
    let h = h.unwrap_or_default();
    let mut s = String::new();
    for (k, v) in [
        ("cluster_id", h.cluster_id as i128),
        ("member_id", h.member_id as i128),
        ("revision", h.revision as i128),
        ("raft_term", h.raft_term as i128),
    ] {
        if v != 0 {
            s.push_str(&format!("{k}:{v} "));
        }
    }
    format!("{{{s}}}")
}

impl Printer {
    fn lease_grant(&mut self, h: Option<ResponseHeader>, id: i64, ttl: i64, error: &str) -> Result<()> {
        match self.format {
            Format::Simple => outln!(self, "lease {id:016x} granted with TTL({ttl}s)"),
            Format::Json => {
                let j = with_header(h, |o| {
                    o.raw("ID", &id.to_string());
                    o.raw("TTL", &ttl.to_string());
                    o.raw("Error", &crate::gojson::quote(error));
                });
                outln!(self, "{j}");
            }
            Format::Fields => {
                self.fields_header(&h);
                outln!(self, "\"ID\" : {id}");
                outln!(self, "\"TTL\" : {ttl}");
            }
            Format::Protobuf => self.protobuf(&h.unwrap_or_default()),
            Format::Table => return Err(self.unsupported()),
        }
        Ok(())
    }

    fn lease_revoke(&mut self, id: i64, r: &LeaseRevokeResponse) -> Result<()> {
        match self.format {
            Format::Simple => outln!(self, "lease {id:016x} revoked"),
            Format::Json => self.json(r),
            Format::Fields => self.fields_header(&r.header),
            Format::Protobuf => {
                return Err(CtlError::new(
                    EXIT_BAD_FEATURE,
                    format!("marshal unsupported for type clientv3.LeaseRevokeResponse ({})", header_text(r.header)),
                ));
            }
            Format::Table => return Err(self.unsupported()),
        }
        Ok(())
    }

    fn lease_ttl(&mut self, r: &LeaseTimeToLiveResponse, with_keys: bool) -> Result<()> {
        match self.format {
            Format::Simple => {
                if r.ttl == -1 {
                    outln!(self, "lease {:016x} already expired", r.id);
                } else {
                    let mut s =
                        format!("lease {:016x} granted with TTL({}s), remaining({}s)", r.id, r.granted_ttl, r.ttl);
                    if with_keys {
                        let keys: Vec<String> =
                            r.keys.iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
                        s.push_str(&format!(", attached keys([{}])", keys.join(" ")));
                    }
                    outln!(self, "{s}");
                }
            }
            Format::Json => {
                let j = with_header(r.header, |o| {
                    o.raw("id", &r.id.to_string());
                    o.raw("ttl", &r.ttl.to_string());
                    o.raw("granted-ttl", &r.granted_ttl.to_string());
                    let keys = if r.keys.is_empty() {
                        "null".to_string()
                    } else {
                        array(r.keys.iter().map(|k| format!("\"{}\"", base64(k))))
                    };
                    o.raw("keys", &keys);
                });
                outln!(self, "{j}");
            }
            Format::Fields => {
                self.fields_header(&r.header);
                outln!(self, "\"ID\" : {}", r.id);
                outln!(self, "\"TTL\" : {}", r.ttl);
                outln!(self, "\"GrantedTTL\" : {}", r.granted_ttl);
                for k in &r.keys {
                    outln!(self, "\"Key\" : {}", go_quote(k));
                }
            }
            Format::Protobuf => self.protobuf(&r.header.unwrap_or_default()),
            Format::Table => return Err(self.unsupported()),
        }
        Ok(())
    }

    fn lease_list(&mut self, r: &LeaseLeasesResponse) -> Result<()> {
        match self.format {
            Format::Simple => {
                outln!(self, "found {} leases", r.leases.len());
                for l in &r.leases {
                    outln!(self, "{:016x}", l.id);
                }
            }
            Format::Json => {
                let j = with_header(r.header, |o| {
                    o.raw("leases", &array(r.leases.iter().map(|l| format!("{{\"id\":{}}}", l.id))));
                });
                outln!(self, "{j}");
            }
            Format::Fields => {
                self.fields_header(&r.header);
                for l in &r.leases {
                    outln!(self, "\"ID\" : {}", l.id);
                }
            }
            Format::Protobuf => self.protobuf(&r.header.unwrap_or_default()),
            Format::Table => return Err(self.unsupported()),
        }
        Ok(())
    }

    fn lease_keep_alive(&mut self, r: &LeaseKeepAliveResponse) -> Result<()> {
        match self.format {
            Format::Simple => outln!(self, "lease {:016x} keepalived with TTL({})", r.id, r.ttl),
            Format::Json => {
                let j = with_header(r.header, |o| {
                    o.raw("ID", &r.id.to_string());
                    o.raw("TTL", &r.ttl.to_string());
                });
                outln!(self, "{j}");
            }
            Format::Fields => {
                self.fields_header(&r.header);
                outln!(self, "\"ID\" : {}", r.id);
                outln!(self, "\"TTL\" : {}", r.ttl);
            }
            Format::Protobuf => self.protobuf(&r.header.unwrap_or_default()),
            Format::Table => return Err(self.unsupported()),
        }
        Ok(())
    }
}
