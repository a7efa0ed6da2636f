//! `lock` and `elect`: a session lease kept alive while the lock is held or the campaign runs, the
//! Lock and Election services for the queueing, and etcdctl's output: the held key (and its
//! value) as `get` prints it; on interrupt, unlock or resign and exit cleanly.

use std::time::Duration;

use bytes::Bytes;
use oxcd_api::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest, RangeRequest, RangeResponse};
use oxcd_api::v3electionpb::{CampaignRequest, LeaderKey, LeaderRequest, ResignRequest};
use oxcd_api::v3lockpb::{LockRequest, UnlockRequest};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::cli::Global;
use crate::client::{self, Conn};
use crate::error::{CtlError, Result};
use crate::printer::Printer;

/// A lease kept alive in the background; `expired` resolves when it is gone.
struct Session {
    lease: i64,
    expired: tokio::sync::oneshot::Receiver<()>,
}

async fn session(conn: &Conn, ttl: i64) -> Result<Session> {
    let g = conn.call(conn.lease().lease_grant(LeaseGrantRequest { ttl, id: 0 })).await?;
    let lease = g.id;
    let (tx, rx) = mpsc::channel(4);
    // Queued before the call: a Go server sends the stream's headers only once a request arrived.
    let _ = tx.send(LeaseKeepAliveRequest { id: lease }).await;
    let mut stream = conn.lease().lease_keep_alive(ReceiverStream::new(rx)).await.map_err(CtlError::from)?.into_inner();
    let (done_tx, expired) = tokio::sync::oneshot::channel();
    let every = Duration::from_millis((g.ttl.max(1) as u64 * 1000 / 3).max(300));
    tokio::spawn(async move {
        loop {
            match stream.message().await {
                Ok(Some(r)) if r.ttl > 0 => {}
                _ => break,
            }
            tokio::time::sleep(every).await;
            if tx.send(LeaseKeepAliveRequest { id: lease }).await.is_err() {
                break;
            }
        }
        let _ = done_tx.send(());
    });
    Ok(Session { lease, expired })
}

async fn print_key(conn: &Conn, p: &mut Printer, key: &Bytes) -> Result<RangeResponse> {
    let r = conn.call(conn.kv().range(RangeRequest { key: key.clone(), ..Default::default() })).await?;
    p.get(&r, false)?;
    p.flush();
    Ok(r)
}

pub async fn lock(g: &Global, p: &mut Printer, ttl: i64, args: &[String]) -> Result<()> {
    if args.is_empty() {
        return Err(CtlError::bad_args("lock takes a lock name argument and an optional command to execute"));
    }
    // `lock name -- cmd args`: the separator is not part of the command.
    let args: Vec<String> = match args.get(1).map(String::as_str) {
        Some("--") => [&args[..1], &args[2..]].concat(),
        _ => args.to_vec(),
    };
    let conn = client::connect(g).await?;
    let mut s = session(&conn, ttl).await?;
    let req = LockRequest { name: Bytes::from(args[0].clone()), lease: s.lease };
    let mut lock_client = conn.lock();
    let locked = tokio::select! {
        r = lock_client.lock(req) => r.map_err(CtlError::from)?.into_inner(),
        _ = tokio::signal::ctrl_c() => return Err(CtlError::error("context canceled")),
    };
    let key = locked.key.clone();
    let unlock =
        |conn: Conn, key: Bytes| async move { conn.call(conn.lock().unlock(UnlockRequest { key })).await.map(|_| ()) };
    if args.len() > 1 {
        let status = tokio::process::Command::new(&args[1])
            .args(&args[2..])
            .env("ETCD_LOCK_KEY", String::from_utf8_lossy(&key).as_ref())
            .env("ETCD_LOCK_REV", locked.header.unwrap_or_default().revision.to_string())
            .status()
            .await;
        let unlocked = unlock(conn.clone(), key).await;
        match status {
            Ok(st) if st.success() => return unlocked,
            Ok(st) => return Err(CtlError::error(format!("exit status {}", st.code().unwrap_or(-1)))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CtlError::error(format!(
                    "exec: {}: executable file not found in $PATH",
                    crate::gojson::quote(&args[1])
                )));
            }
            Err(e) => return Err(CtlError::error(e.to_string())),
        }
    }
    let r = print_key(&conn, p, &key).await?;
    if r.kvs.is_empty() {
        return Err(CtlError::error("lock lost on init"));
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => unlock(conn.clone(), key).await,
        _ = &mut s.expired => Err(CtlError::error("session expired")),
    }
}

pub async fn elect(g: &Global, p: &mut Printer, listen: bool, args: &[String]) -> Result<()> {
    if args.len() != 1 && args.len() != 2 {
        return Err(CtlError::bad_args("elect takes one election name argument and an optional proposal argument"));
    }
    if args.len() == 1 && !listen {
        return Err(CtlError::bad_args("no proposal argument but -l not set"));
    }
    if args.len() == 2 && listen {
        return Err(CtlError::bad_args("proposal given but -l is set"));
    }
    let conn = client::connect(g).await?;
    let name = Bytes::from(args[0].clone());
    if listen {
        let mut stream = conn.election().observe(LeaderRequest { name }).await.map_err(CtlError::from)?.into_inner();
        loop {
            tokio::select! {
                m = stream.message() => match m {
                    Ok(Some(r)) => {
                        let resp = RangeResponse { header: r.header, count: 1, kvs: r.kv.into_iter().collect(), ..Default::default() };
                        p.get(&resp, false)?;
                        p.flush();
                    }
                    _ => return Err(CtlError::error("elect: observer lost")),
                },
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
    }
    let mut s = session(&conn, 60).await?;
    let req = CampaignRequest { name, lease: s.lease, value: Bytes::from(args[1].clone()) };
    let mut election = conn.election();
    let leader: LeaderKey = tokio::select! {
        r = election.campaign(req) => r.map_err(CtlError::from)?.into_inner().leader.unwrap_or_default(),
        _ = tokio::signal::ctrl_c() => return Err(CtlError::error("context canceled")),
    };
    print_key(&conn, p, &leader.key).await?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = &mut s.expired => return Err(CtlError::error("elect: session expired")),
    }
    conn.call(conn.election().resign(ResignRequest { leader: Some(leader) })).await?;
    Ok(())
}
