//! `member add|remove|update|list|promote`.

use oxcd_api::etcdserverpb::{
    Member, MemberAddRequest, MemberListRequest, MemberListResponse, MemberPromoteRequest, MemberRemoveRequest,
    MemberUpdateRequest, RangeRequest, ResponseHeader,
};

use crate::cli::{Global, MemberCmd};
use crate::client;
use crate::error::{CtlError, Result};
use crate::gojson::GoJson;
use crate::printer::{Format, Printer, go_quote, outln};

fn member_id(args: &[String]) -> Result<u64> {
    if args.len() != 1 {
        return Err(CtlError::bad_args("member ID is not provided"));
    }
    super::kv::parse_uint(&args[0], 16)
        .map_err(|e| CtlError::bad_args(format!("bad member ID arg ({e}), expecting ID in Hex")))
}

fn peer_urls(s: &str) -> Result<Vec<String>> {
    if s.is_empty() {
        return Err(CtlError::bad_args("member peer urls not provided"));
    }
    Ok(s.split(',').map(String::from).collect())
}

pub async fn run(g: &Global, p: &mut Printer, cmd: MemberCmd) -> Result<()> {
    match cmd {
        MemberCmd::Add { learner, peer_urls: urls, args } => {
            if args.is_empty() {
                return Err(CtlError::bad_args("member name not provided"));
            }
            if args.len() > 1 {
                let mut msg = "too many arguments".to_string();
                for a in &args {
                    if a.to_lowercase().starts_with("http") {
                        msg.push_str(&format!(", did you mean --peer-urls={a}"));
                    }
                }
                return Err(CtlError::bad_args(msg));
            }
            let name = &args[0];
            let peer_ur_ls = peer_urls(&urls)?;
            let conn = client::connect(g).await?;
            let r = conn.call(conn.cluster().member_add(MemberAddRequest { peer_ur_ls, is_learner: learner })).await?;
            let new_id = r.member.as_ref().map_or(0, |m| m.id);
            let cluster_id = r.header.unwrap_or_default().cluster_id;
            p.member_change(|p| outln!(p, "Member {new_id:16x} added to cluster {cluster_id:16x}"), &r)?;
            if p.format == Format::Simple {
                // The latest list, from the member that added (a linearizable read syncs a stale one).
                let mut list = conn.call(conn.cluster().member_list(MemberListRequest::default())).await?;
                let added_by = r.header.unwrap_or_default().member_id;
                while list.header.unwrap_or_default().member_id != added_by {
                    conn.call(conn.kv().range(RangeRequest { key: "_".into(), ..Default::default() })).await?;
                    list = conn.call(conn.cluster().member_list(MemberListRequest::default())).await?;
                }
                let mut conf = Vec::new();
                for m in &list.members {
                    let n = if m.id == new_id { name.clone() } else { m.name.clone() };
                    conf.extend(m.peer_ur_ls.iter().map(|u| format!("{n}={u}")));
                }
                outln!(p, "");
                outln!(p, "ETCD_NAME={}", go_quote(name.as_bytes()));
                outln!(p, "ETCD_INITIAL_CLUSTER={}", go_quote(conf.join(",").as_bytes()));
                outln!(p, "ETCD_INITIAL_ADVERTISE_PEER_URLS={}", go_quote(urls.as_bytes()));
                outln!(p, "ETCD_INITIAL_CLUSTER_STATE=\"existing\"");
            }
            Ok(())
        }
        MemberCmd::Remove { args } => {
            let id = member_id(&args)?;
            let conn = client::connect(g).await?;
            let r = conn.call(conn.cluster().member_remove(MemberRemoveRequest { id })).await?;
            let cluster_id = r.header.unwrap_or_default().cluster_id;
            p.member_change(|p| outln!(p, "Member {id:16x} removed from cluster {cluster_id:16x}"), &r)
        }
        MemberCmd::Update { peer_urls: urls, args } => {
            let id = member_id(&args)?;
            let peer_ur_ls = peer_urls(&urls)?;
            let conn = client::connect(g).await?;
            let r = conn.call(conn.cluster().member_update(MemberUpdateRequest { id, peer_ur_ls })).await?;
            let cluster_id = r.header.unwrap_or_default().cluster_id;
            p.member_change(|p| outln!(p, "Member {id:16x} updated in cluster {cluster_id:16x}"), &r)
        }
        MemberCmd::Promote { args } => {
            let id = member_id(&args)?;
            let conn = client::connect(g).await?;
            let r = conn.call(conn.cluster().member_promote(MemberPromoteRequest { id })).await?;
            let cluster_id = r.header.unwrap_or_default().cluster_id;
            p.member_change(|p| outln!(p, "Member {id:16x} promoted in cluster {cluster_id:16x}"), &r)
        }
        MemberCmd::List { .. } => {
            let conn = client::connect(g).await?;
            let r = conn.call(conn.cluster().member_list(MemberListRequest { linearizable: false })).await?;
            p.member_list(&r)
        }
    }
}

/// One member as a row: id, status, name, peer URLs, client URLs, learner.
pub fn member_row(m: &Member) -> Vec<String> {
    let status = if m.name.is_empty() { "unstarted" } else { "started" };
    vec![
        format!("{:x}", m.id),
        status.to_string(),
        m.name.clone(),
        m.peer_ur_ls.join(","),
        m.client_ur_ls.join(","),
        m.is_learner.to_string(),
    ]
}

impl Printer {
    /// A membership change: `simple` prints what the command says, json and protobuf the response.
    fn member_change<R: GoJson + prost::Message>(&mut self, simple: impl FnOnce(&mut Printer), r: &R) -> Result<()> {
        match self.format {
            Format::Simple => simple(self),
            Format::Json => self.json(r),
            Format::Protobuf => self.protobuf(r),
            Format::Fields | Format::Table => return Err(self.unsupported()),
        }
        Ok(())
    }

    fn member_list(&mut self, r: &MemberListResponse) -> Result<()> {
        match self.format {
            Format::Simple => {
                for m in &r.members {
                    outln!(self, "{}", member_row(m).join(", "));
                }
            }
            Format::Json => self.json(r),
            Format::Protobuf => self.protobuf(r),
            Format::Fields => {
                let h: Option<ResponseHeader> = r.header;
                self.fields_header(&h);
                for m in &r.members {
                    outln!(self, "\"ID\" : {}", m.id);
                    outln!(self, "\"Name\" : {}", go_quote(m.name.as_bytes()));
                    for u in &m.peer_ur_ls {
                        outln!(self, "\"PeerURL\" : {}", go_quote(u.as_bytes()));
                    }
                    for u in &m.client_ur_ls {
                        outln!(self, "\"ClientURL\" : {}", go_quote(u.as_bytes()));
                    }
                    outln!(self, "\"IsLearner\" : {}", m.is_learner);
                    outln!(self, "");
                }
            }
            Format::Table => {
                let rows: Vec<Vec<String>> = r.members.iter().map(member_row).collect();
                let t =
                    crate::table::render(&["ID", "Status", "Name", "Peer Addrs", "Client Addrs", "Is Learner"], &rows);
                self.out.extend_from_slice(t.as_bytes());
            }
        }
        Ok(())
    }
}
