//! `watch`: one key, range or prefix, printed event by event until the server cancels the watch or
//! the user interrupts; with `-- cmd args`, the command runs once per event with `ETCD_WATCH_*`
//! set; with `-i`, watch commands are read from standard input.

use std::io::BufRead;

use bytes::Bytes;
use clap::Parser;
use oxcd_api::etcdserverpb::{WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse, watch_request};
use oxcd_api::mvccpb::event::EventType;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::cli::{Global, WatchArgs};
use crate::client::{self, Conn};
use crate::error::{CtlError, EXIT_BAD_ARGS, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_INVALID_INPUT, Result};
use crate::printer::{Format, Printer, go_quote, outln};

const BAD_ARGS: &str = "bad number of arguments";

/// The create request for `[key] [range_end]` and the flags.
fn create_request(a: &WatchArgs) -> Result<WatchCreateRequest> {
    let Some(key) = a.args.first() else { return Err(CtlError::bad_args(BAD_ARGS)) };
    let mut range_end = Vec::new();
    if let Some(end) = a.args.get(1) {
        if a.prefix {
            return Err(CtlError::bad_args("`range_end` and `--prefix` are mutually exclusive"));
        }
        range_end = end.as_bytes().to_vec();
    }
    let key = key.as_bytes().to_vec();
    if a.prefix {
        range_end = if key.is_empty() { vec![0] } else { super::kv::prefix_end(&key) };
    }
    let key = if key.is_empty() && a.prefix { vec![0] } else { key };
    Ok(WatchCreateRequest {
        key: Bytes::from(key),
        range_end: Bytes::from(range_end),
        start_revision: a.rev,
        progress_notify: a.progress_notify,
        prev_kv: a.prev_kv,
        ..Default::default()
    })
}

/// A watch stream: requests in, responses out.
struct Stream {
    tx: mpsc::Sender<WatchRequest>,
    rx: tonic::Streaming<WatchResponse>,
}

/// Opens a watch stream with `first` already queued: a Go gRPC server sends the stream's headers
/// only once a request has arrived.
async fn open(conn: &Conn, first: WatchRequest) -> Result<Stream> {
    let (tx, req_rx) = mpsc::channel(16);
    let _ = tx.send(first).await;
    let mut req = tonic::Request::new(ReceiverStream::new(req_rx));
    req.metadata_mut().insert("hasleader", tonic::metadata::MetadataValue::from_static("true"));
    let rx = conn.watch().watch(req).await.map_err(CtlError::from)?.into_inner();
    Ok(Stream { tx, rx })
}

fn create(req: WatchCreateRequest) -> WatchRequest {
    WatchRequest { request_union: Some(watch_request::RequestUnion::CreateRequest(req)) }
}

pub async fn run(g: &Global, p: &mut Printer, a: WatchArgs) -> Result<()> {
    if let (Err(_), Ok(end)) = (std::env::var("ETCDCTL_WATCH_KEY"), std::env::var("ETCDCTL_WATCH_RANGE_END")) {
        return Err(CtlError::bad_args(format!(
            "ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END={}",
            crate::gojson::quote(&end)
        )));
    }
    if a.interactive {
        return interactive(g, p).await;
    }
    let mut a = a;
    if let Ok(key) = std::env::var("ETCDCTL_WATCH_KEY") {
        if !a.args.is_empty() {
            return Err(CtlError::bad_args("bad number of arguments (found conflicting environment key)"));
        }
        a.args.push(key);
        if let Ok(end) = std::env::var("ETCDCTL_WATCH_RANGE_END") {
            a.args.push(end);
        }
    }
    let exec = a.exec.take();
    if exec.as_ref().is_some_and(Vec::is_empty) {
        return Err(CtlError::bad_args("bad number of arguments (found separator --, but no commands)"));
    }
    let exec = exec.unwrap_or_default();
    if a.args.is_empty() {
        return Err(CtlError::bad_args(BAD_ARGS));
    }
    let req = create_request(&a)?;
    let conn = client::connect(g).await?;
    let mut s = open(&conn, create(req)).await?;
    print_responses(p, &mut s.rx, &exec).await?;
    Err(CtlError::new(EXIT_INTERRUPTED, "watch is canceled by the server"))
}

/// Prints responses until the stream ends or the watch is canceled.
async fn print_responses(p: &mut Printer, rx: &mut tonic::Streaming<WatchResponse>, exec: &[String]) -> Result<()> {
    loop {
        match rx.message().await {
            Ok(Some(r)) if r.created && !r.canceled => {}
            Ok(Some(r)) => {
                if handle_response(p, &r, exec)? {
                    return Ok(());
                }
            }
            Ok(None) => return Ok(()),
            Err(s) => {
                eprintln!("watch was canceled ({})", crate::error::status_text(&s));
                return Ok(());
            }
        }
    }
}

/// Prints one response and runs `exec` for each of its events (etcdctl's `printWatchCh`); true
/// when the watch was canceled.
fn handle_response(p: &mut Printer, r: &WatchResponse, exec: &[String]) -> Result<bool> {
    if r.canceled {
        let reason = if r.compact_revision != 0 {
            "etcdserver: mvcc: required revision has been compacted"
        } else {
            r.cancel_reason.as_str()
        };
        eprintln!("watch was canceled ({reason})");
    }
    p.watch(r)?;
    p.flush();
    if exec.is_empty() {
        return Ok(r.canceled);
    }
    for ev in &r.events {
        let kv = ev.kv.clone().unwrap_or_default();
        let kind = if ev.r#type == EventType::Delete as i32 { "DELETE" } else { "PUT" };
        let status = std::process::Command::new(&exec[0])
            .args(&exec[1..])
            .env("ETCD_WATCH_REVISION", r.header.unwrap_or_default().revision.to_string())
            .env("ETCD_WATCH_EVENT_TYPE", format!("\"{kind}\""))
            .env("ETCD_WATCH_KEY", go_quote(&kv.key))
            .env("ETCD_WATCH_VALUE", go_quote(&kv.value))
            .status();
        let err = match status {
            Ok(s) if s.success() => continue,
            Ok(s) => match s.code() {
                Some(c) => format!("exit status {c}"),
                None => format!("signal: {s}"),
            },
            Err(e) => format!("fork/exec {}: {}", exec[0], go_io_error(&e)),
        };
        let args: Vec<String> = exec.iter().map(|x| crate::gojson::quote(x)).collect();
        eprintln!("command [{}] error ({err})", args.join(" "));
        std::process::exit(1);
    }
    Ok(r.canceled)
}

/// Go's text for a failed exec.
fn go_io_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    }
}

/// One line of `watch -i`.
#[derive(Parser)]
#[command(no_binary_name = true)]
struct InteractiveWatch {
    #[command(flatten)]
    a: WatchArgs,
}

/// `watch -i`: `watch [options] key [range_end] [-- cmd]` and `progress` lines from stdin; all
/// watches share one stream, and their events are printed as they come.
async fn interactive(g: &Global, p: &mut Printer) -> Result<()> {
    let conn = client::connect(g).await?;
    let (line_tx, mut lines) = mpsc::channel::<std::io::Result<String>>(16);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        loop {
            let mut l = String::new();
            let r = match input.read_line(&mut l) {
                Ok(0) => Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "EOF")),
                Ok(_) if !l.ends_with('\n') => Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "EOF")),
                Ok(_) => Ok(l),
                Err(e) => Err(e),
            };
            let stop = r.is_err();
            if line_tx.blocking_send(r).is_err() || stop {
                return;
            }
        }
    });
    let mut stream: Option<Stream> = None;
    let mut execs: Vec<(i64, Vec<String>)> = Vec::new();
    let mut pending_exec: std::collections::VecDeque<Vec<String>> = Default::default();
    loop {
        let msg = match &mut stream {
            Some(s) => tokio::select! {
                l = lines.recv() => Either::Line(l),
                r = s.rx.message() => Either::Resp(r),
            },
            None => Either::Line(lines.recv().await),
        };
        match msg {
            Either::Line(None) => {
                return Err(CtlError::new(EXIT_INVALID_INPUT, "Error reading watch request line: EOF"));
            }
            Either::Line(Some(Err(e))) => {
                let text =
                    if e.kind() == std::io::ErrorKind::UnexpectedEof { "EOF".to_string() } else { e.to_string() };
                return Err(CtlError::new(EXIT_INVALID_INPUT, format!("Error reading watch request line: {text}")));
            }
            Either::Line(Some(Ok(l))) => {
                let l = l.strip_suffix('\n').unwrap_or(&l).to_string();
                let args = super::txn::argify(&l);
                match args.first().map(String::as_str) {
                    None => eprintln!("Invalid command: {l} (watch and progress supported)"),
                    Some("watch") => {
                        if args.len() < 2 {
                            eprintln!("Invalid command {l} (command type or key is not provided)");
                            continue;
                        }
                        let (watch_args, exec) = match args.iter().position(|x| x == "--") {
                            Some(i) if i == args.len() - 1 => {
                                return Err(CtlError::bad_args(
                                    "bad number of arguments (found separator --, but no commands)",
                                ));
                            }
                            Some(i) => (args[1..i].to_vec(), args[i + 1..].to_vec()),
                            None => (args[1..].to_vec(), Vec::new()),
                        };
                        let parsed = InteractiveWatch::try_parse_from(&watch_args)
                            .map_err(|e| CtlError::new(EXIT_BAD_ARGS, e.kind().to_string()))?;
                        let req = match create_request(&parsed.a) {
                            Ok(r) => r,
                            Err(e) => {
                                eprintln!("Invalid command {l} ({})", e.msg);
                                continue;
                            }
                        };
                        pending_exec.push_back(exec);
                        match &stream {
                            Some(s) => {
                                let _ = s.tx.send(create(req)).await;
                            }
                            None => stream = Some(open(&conn, create(req)).await?),
                        }
                    }
                    Some("progress") => {
                        if let Some(s) = &stream {
                            let req = watch_request::RequestUnion::ProgressRequest(WatchProgressRequest {});
                            let _ = s.tx.send(WatchRequest { request_union: Some(req) }).await;
                        }
                    }
                    Some(_) => eprintln!("Invalid command {l} (only support watch)"),
                }
            }
            Either::Resp(Ok(Some(r))) => {
                if r.created {
                    let exec = pending_exec.pop_front().unwrap_or_default();
                    execs.push((r.watch_id, exec));
                    if !r.canceled {
                        continue;
                    }
                }
                let exec = execs.iter().find(|(id, _)| *id == r.watch_id).map(|(_, e)| e.clone()).unwrap_or_default();
                handle_response(p, &r, &exec)?;
            }
            Either::Resp(Ok(None)) | Either::Resp(Err(_)) => {
                return Err(CtlError::new(EXIT_ERROR, "watch is canceled by the server"));
            }
        }
    }
}

enum Either {
    Line(Option<std::io::Result<String>>),
    Resp(std::result::Result<Option<WatchResponse>, tonic::Status>),
}

impl Printer {
    pub fn watch(&mut self, r: &WatchResponse) -> Result<()> {
        match self.format {
            Format::Simple => {
                for ev in &r.events {
                    let kind = if ev.r#type == EventType::Delete as i32 { "DELETE" } else { "PUT" };
                    outln!(self, "{kind}");
                    if let Some(prev) = &ev.prev_kv {
                        self.bytes_line(&prev.key);
                        self.bytes_line(&prev.value);
                    }
                    let kv = ev.kv.clone().unwrap_or_default();
                    self.bytes_line(&kv.key);
                    self.bytes_line(&kv.value);
                }
            }
            Format::Json => {
                use crate::gojson::{GoJson, Obj, array};
                let mut o = Obj::default();
                o.raw("Header", &r.header.unwrap_or_default().to_json());
                o.raw("Events", &array(r.events.iter().map(GoJson::to_json)));
                o.raw("CompactRevision", &r.compact_revision.to_string());
                o.raw("Canceled", &r.canceled.to_string());
                o.raw("Created", &r.created.to_string());
                outln!(self, "{}", o.finish());
            }
            Format::Fields => {
                self.fields_header(&r.header);
                for ev in &r.events {
                    let kind = if ev.r#type == EventType::Delete as i32 { "DELETE" } else { "PUT" };
                    outln!(self, "\"Type\" : {kind}");
                    if let Some(prev) = &ev.prev_kv {
                        self.fields_kv("Prev", prev);
                    }
                    self.fields_kv("", &ev.kv.clone().unwrap_or_default());
                }
            }
            Format::Protobuf => {
                let wr = WatchResponse {
                    header: r.header,
                    events: r.events.clone(),
                    compact_revision: r.compact_revision,
                    canceled: r.canceled,
                    created: r.created,
                    ..Default::default()
                };
                self.protobuf(&wr);
            }
            Format::Table => return Err(self.unsupported()),
        }
        Ok(())
    }
}
