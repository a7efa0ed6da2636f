//! `make-mirror <destination>`: copies every key under `--prefix` as of one revision, then applies
//! every later change (one txn per source revision), printing the running count every 30 s.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use oxcd_api::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, WatchCreateRequest, WatchRequest, request_op,
    watch_request,
};
use oxcd_api::mvccpb::event::EventType;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::cli::{Global, MirrorArgs};
use crate::client;
use crate::error::{CtlError, Result};
use crate::printer::Printer;

pub async fn run(g: &Global, _p: &mut Printer, a: MirrorArgs) -> Result<()> {
    if a.args.len() != 1 {
        return Err(CtlError::bad_args("make-mirror takes one destination argument."));
    }
    let mut dest_global = g.clone();
    dest_global.endpoints = a.args[0].split(',').map(String::from).collect();
    dest_global.cacert = a.dest_cacert.clone();
    dest_global.cert = a.dest_cert.clone();
    dest_global.key = a.dest_key.clone();
    dest_global.insecure_transport = a.dest_insecure_transport;
    let src = client::connect(g).await?;
    let dst = client::connect(&dest_global).await?;
    if a.no_dest_prefix && !a.dest_prefix.is_empty() {
        return Err(CtlError::bad_args(
            "`--dest-prefix` and `--no-dest-prefix` cannot be set at the same time, choose one",
        ));
    }
    let dest_prefix =
        if !a.no_dest_prefix && a.dest_prefix.is_empty() { a.prefix.clone() } else { a.dest_prefix.clone() };
    let rename = |k: &[u8]| -> Bytes {
        let k = String::from_utf8_lossy(k);
        Bytes::from(k.replacen(&a.prefix, &dest_prefix, 1))
    };
    let total = Arc::new(AtomicU64::new(0));
    {
        let total = total.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                println!("{}", total.load(Ordering::Relaxed));
            }
        });
    }
    // The base: every key under the prefix at one revision, a page at a time.
    let (key, range_end) = if a.prefix.is_empty() {
        (Bytes::from_static(b"\0"), Bytes::from_static(b"\0"))
    } else {
        (Bytes::from(a.prefix.clone()), Bytes::from(super::kv::prefix_end(a.prefix.as_bytes())))
    };
    let first = src
        .call(src.kv().range(RangeRequest {
            key: key.clone(),
            range_end: range_end.clone(),
            limit: 1,
            ..Default::default()
        }))
        .await?;
    let rev = first.header.unwrap_or_default().revision;
    let mut from = key.clone();
    loop {
        let page = RangeRequest {
            key: from.clone(),
            range_end: range_end.clone(),
            limit: 1000,
            revision: rev,
            ..Default::default()
        };
        let r = src.call(src.kv().range(page)).await?;
        for kv in &r.kvs {
            let put = PutRequest { key: rename(&kv.key), value: kv.value.clone(), ..Default::default() };
            dst.call(dst.kv().put(put)).await?;
            total.fetch_add(1, Ordering::Relaxed);
        }
        match (r.more, r.kvs.last()) {
            (true, Some(last)) => {
                let mut next = last.key.to_vec();
                next.push(0);
                from = Bytes::from(next);
            }
            _ => break,
        }
    }
    // Then every change after it.
    let (tx, rx) = mpsc::channel(1);
    let create = WatchCreateRequest { key, range_end, start_revision: rev + 1, ..Default::default() };
    let _ = tx.send(WatchRequest { request_union: Some(watch_request::RequestUnion::CreateRequest(create)) }).await;
    let mut stream = src.watch().watch(ReceiverStream::new(rx)).await.map_err(CtlError::from)?.into_inner();
    while let Some(w) = stream.message().await.map_err(CtlError::from)? {
        if w.compact_revision != 0 {
            return Err(CtlError::error("etcdserver: mvcc: required revision has been compacted"));
        }
        let mut ops: Vec<RequestOp> = Vec::new();
        let mut last_rev = 0;
        for ev in &w.events {
            let kv = ev.kv.clone().unwrap_or_default();
            if last_rev != 0 && kv.mod_revision > last_rev {
                dst.call(dst.kv().txn(TxnRequest { success: std::mem::take(&mut ops), ..Default::default() })).await?;
            }
            last_rev = kv.mod_revision;
            let op = if ev.r#type == EventType::Delete as i32 {
                request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                    key: rename(&kv.key),
                    ..Default::default()
                })
            } else {
                request_op::Request::RequestPut(PutRequest {
                    key: rename(&kv.key),
                    value: kv.value,
                    ..Default::default()
                })
            };
            ops.push(RequestOp { request: Some(op) });
            total.fetch_add(1, Ordering::Relaxed);
        }
        if !ops.is_empty() {
            dst.call(dst.kv().txn(TxnRequest { success: ops, ..Default::default() })).await?;
        }
    }
    Ok(())
}
