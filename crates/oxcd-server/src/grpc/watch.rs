//! `etcdserverpb.Watch`: one task per client stream drives a [`WatchStream`] of the watchable store
//! and sends what it produces through a bounded queue. When the client stops reading, the queue and
//! the transport's buffers fill, the task waits, and the watchable store drops the stream's pending
//! events (its watchers catch up from their cursors later): memory stays bounded.

use std::sync::Arc;
use std::time::Duration;

use oxcd_api::EtcdError;
use oxcd_api::etcdserverpb::watch_server::Watch;
use oxcd_api::etcdserverpb::{WatchRequest, WatchResponse, watch_request};
use oxcd_mvcc::watchable::WatchStream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

use crate::server::EtcdServer;

/// Responses queued per stream before the stream's task waits for the client.
const OUTBOUND_QUEUE: usize = 16;

pub struct WatchService {
    server: Arc<EtcdServer>,
}

impl WatchService {
    pub fn new(server: Arc<EtcdServer>) -> WatchService {
        WatchService { server }
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    async fn watch(&self, req: Request<Streaming<WatchRequest>>) -> Result<Response<BoxStream<WatchResponse>>, Status> {
        let require_leader = req.metadata().get("hasleader").is_some_and(|v| v.as_bytes() == b"true");
        if require_leader && !self.server.has_leader() {
            return Err(EtcdError::NoLeader.to_status());
        }
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let ws = self.server.watchable.open_stream();
        tokio::spawn(serve_stream(self.server.clone(), ws, req.into_inner(), tx, require_leader));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

type Outbound = mpsc::Sender<Result<WatchResponse, Status>>;

/// Sends one response (its header completed); false when the client is gone.
async fn send(server: &EtcdServer, tx: &Outbound, mut r: WatchResponse) -> bool {
    server.fill_header(&mut r.header);
    tx.send(Ok(r)).await.is_ok()
}

async fn serve_stream(
    server: Arc<EtcdServer>,
    mut ws: WatchStream,
    mut input: Streaming<WatchRequest>,
    tx: Outbound,
    require_leader: bool,
) {
    let mut progress = tokio::time::interval(server.cfg.progress_notify_interval());
    progress.reset();
    let mut leader_check = tokio::time::interval(Duration::from_millis(server.cfg.election_timeout));
    leader_check.reset();
    loop {
        for r in ws.poll() {
            if !send(&server, &tx, r).await {
                return;
            }
        }
        let out = tokio::select! {
            biased;
            msg = input.message() => match msg {
                Ok(Some(req)) => handle(&mut ws, req),
                // The client closed its side, or the stream broke: the watch stream ends (etcd).
                Ok(None) | Err(_) => return,
            },
            _ = ws.ready() => Vec::new(),
            _ = progress.tick() => ws.periodic_progress(),
            _ = leader_check.tick(), if require_leader => {
                if !server.has_leader() {
                    let _ = tx.send(Err(EtcdError::NoLeader.to_status())).await;
                    return;
                }
                Vec::new()
            }
            _ = server.stopped() => return,
        };
        for r in out {
            if !send(&server, &tx, r).await {
                return;
            }
        }
    }
}

/// One client request: create, cancel or progress.
fn handle(ws: &mut WatchStream, req: WatchRequest) -> Vec<WatchResponse> {
    match req.request_union {
        Some(watch_request::RequestUnion::CreateRequest(c)) => ws.create(c),
        Some(watch_request::RequestUnion::CancelRequest(c)) => ws.cancel(c.watch_id).into_iter().collect(),
        Some(watch_request::RequestUnion::ProgressRequest(_)) => ws.request_progress().into_iter().collect(),
        None => Vec::new(),
    }
}
