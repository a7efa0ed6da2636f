//! `etcdserverpb.Watch`: each client stream's responses are produced on demand by polling a
//! [`WatchStream`] of the watchable store, in the transport's own task (no task or queue in between:
//! an event goes from the applier's wake-up straight to the HTTP/2 stream). When the client stops
//! reading, flow control stops the polling, and the watchable store drops the stream's pending events
//! (its watchers catch up from their cursors later): memory stays bounded.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use oxcd_api::EtcdError;
use oxcd_api::etcdserverpb::watch_server::Watch;
use oxcd_api::etcdserverpb::{
    ResponseHeader, WatchCreateRequest, WatchRequest, WatchResponse, watch_create_request, watch_request,
};
use oxcd_mvcc::watchable::{Notice, NoticeKind, WatchSpec, WatchStream};
use tokio::time::Interval;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

use crate::server::EtcdServer;

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
        let server = self.server.clone();
        let mut progress = tokio::time::interval(server.cfg.progress_notify_interval());
        progress.reset();
        let mut leader_check = tokio::time::interval(Duration::from_millis(server.cfg.election_timeout));
        leader_check.reset();
        let meta = req.metadata().clone();
        let conn = req.extensions().get::<crate::listener::ClientConnInfo>().cloned();
        let state = StreamState {
            meta,
            conn,
            ws: server.watchable.open_stream(),
            server,
            input: req.into_inner(),
            out: VecDeque::new(),
            progress,
            leader_check,
            require_leader,
            ended: false,
            input_closed: false,
        };
        Ok(Response::new(Box::pin(futures::stream::unfold(state, next_response))))
    }
}

/// One client stream: its watchers, its requests, and the responses ready to go.
struct StreamState {
    server: Arc<EtcdServer>,
    /// The stream's metadata and connection: who creates its watchers.
    meta: tonic::metadata::MetadataMap,
    conn: Option<crate::listener::ClientConnInfo>,
    ws: WatchStream,
    input: Streaming<WatchRequest>,
    out: VecDeque<Result<WatchResponse, Status>>,
    progress: Interval,
    leader_check: Interval,
    require_leader: bool,
    /// Nothing follows what is in `out`.
    ended: bool,
    /// The client sends no more requests.
    input_closed: bool,
}

/// The stream's next response, produced when the transport asks for it; `None` ends the stream.
async fn next_response(mut st: StreamState) -> Option<(Result<WatchResponse, Status>, StreamState)> {
    loop {
        if let Some(r) = st.out.pop_front() {
            let r = r.map(|mut r| {
                st.server.fill_header(&mut r.header);
                r
            });
            return Some((r, st));
        }
        if st.ended {
            return None;
        }
        st.out.extend(st.ws.poll().into_iter().map(|n| Ok(response(n))));
        if !st.out.is_empty() {
            continue;
        }
        let produced = tokio::select! {
            biased;
            msg = st.input.message(), if !st.input_closed => match msg {
                Ok(Some(req)) => match refused(&st, &req).await {
                    Some(r) => vec![r],
                    None => handle(&mut st.ws, req),
                },
                // The client closed its sending side: its watchers keep delivering until it goes
                // away, as with etcd (the JSON gateway's watch body ends after its requests).
                Ok(None) => {
                    st.input_closed = true;
                    Vec::new()
                }
                // The stream broke: the watch stream ends.
                Err(_) => return None,
            },
            _ = st.ws.ready() => Vec::new(),
            _ = st.progress.tick() => st.ws.periodic_progress().into_iter().map(response).collect(),
            _ = st.leader_check.tick(), if st.require_leader => {
                if !st.server.has_leader() {
                    st.out.push_back(Err(EtcdError::NoLeader.to_status()));
                    st.ended = true;
                }
                Vec::new()
            }
            _ = st.server.stopped() => return None,
        };
        st.out.extend(produced.into_iter().map(Ok));
    }
}

/// etcd's `isWatchPermitted`: creating a watcher needs read access to its range; a refused one
/// is answered created and canceled at once, with the reason.
async fn refused(st: &StreamState, req: &WatchRequest) -> Option<WatchResponse> {
    let Some(watch_request::RequestUnion::CreateRequest(c)) = &req.request_union else { return None };
    let auth = st.server.auth();
    if !auth.enabled() {
        return None;
    }
    let checked = match st.server.who_from(&st.meta, st.conn.as_ref()).await {
        Ok(who) => auth.check_range(&who, &c.key, &c.range_end),
        Err(e) => Err(e),
    };
    let reason = match checked {
        Ok(()) => return None,
        Err(e @ (EtcdError::InvalidAuthToken | EtcdError::AuthOldRevision | EtcdError::UserEmpty)) => e,
        Err(_) => EtcdError::PermissionDenied,
    };
    Some(WatchResponse {
        header: Some(ResponseHeader { revision: st.server.store().current_rev(), ..Default::default() }),
        watch_id: -1,
        created: true,
        canceled: true,
        cancel_reason: reason.message(),
        ..Default::default()
    })
}

/// One client request: create, cancel or progress.
fn handle(ws: &mut WatchStream, req: WatchRequest) -> Vec<WatchResponse> {
    let notice = match req.request_union {
        Some(watch_request::RequestUnion::CreateRequest(c)) => Some(ws.create(spec(c))),
        Some(watch_request::RequestUnion::CancelRequest(c)) => ws.cancel(c.watch_id),
        Some(watch_request::RequestUnion::ProgressRequest(_)) => ws.request_progress(),
        None => None,
    };
    notice.into_iter().map(response).collect()
}

/// What a create request asks of the watchable store.
fn spec(c: WatchCreateRequest) -> WatchSpec {
    let filtered = |f: watch_create_request::FilterType| c.filters.contains(&(f as i32));
    WatchSpec {
        no_put: filtered(watch_create_request::FilterType::Noput),
        no_delete: filtered(watch_create_request::FilterType::Nodelete),
        key: c.key,
        range_end: c.range_end,
        start_revision: c.start_revision,
        watch_id: c.watch_id,
        prev_kv: c.prev_kv,
        progress_notify: c.progress_notify,
        fragment: c.fragment,
    }
}

/// A notice of the watchable store as etcd's response (its header gets ids and term when sent).
fn response(n: Notice) -> WatchResponse {
    let mut r = WatchResponse {
        header: Some(ResponseHeader { revision: n.revision, ..Default::default() }),
        watch_id: n.watch_id,
        ..Default::default()
    };
    match n.kind {
        NoticeKind::Created => r.created = true,
        NoticeKind::Refused(reason) => {
            r.created = true;
            r.canceled = true;
            r.cancel_reason = reason;
        }
        NoticeKind::Canceled { compact_revision, reason } => {
            r.canceled = true;
            r.compact_revision = compact_revision;
            r.cancel_reason = reason;
        }
        NoticeKind::Progress => {}
        NoticeKind::Events { events, fragment } => {
            r.events = events;
            r.fragment = fragment;
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use oxcd_api::etcdserverpb::WatchCreateRequest;
    use oxcd_api::mvccpb::{Event, KeyValue};

    use super::*;

    fn header(revision: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader { revision, ..Default::default() })
    }

    fn notice(watch_id: i64, revision: i64, kind: NoticeKind) -> Notice {
        Notice { watch_id, revision, kind }
    }

    /// Each kind of notice becomes exactly the response the watchable store built before it spoke
    /// in notices: clients (etcdctl, the Go client) tell the kinds apart by these fields alone.
    #[test]
    fn notices_become_the_responses_etcd_sends() {
        let ev = Event { kv: Some(KeyValue { key: b"a".to_vec().into(), ..Default::default() }), ..Default::default() };
        let cases = [
            (
                notice(3, 7, NoticeKind::Created),
                WatchResponse { header: header(7), watch_id: 3, created: true, ..Default::default() },
            ),
            (
                notice(-1, 7, NoticeKind::Refused("dup".into())),
                WatchResponse {
                    header: header(7),
                    watch_id: -1,
                    created: true,
                    canceled: true,
                    cancel_reason: "dup".into(),
                    ..Default::default()
                },
            ),
            (
                notice(3, 7, NoticeKind::Canceled { compact_revision: 0, reason: String::new() }),
                WatchResponse { header: header(7), watch_id: 3, canceled: true, ..Default::default() },
            ),
            (
                notice(3, 0, NoticeKind::Canceled { compact_revision: 5, reason: String::new() }),
                WatchResponse {
                    header: header(0),
                    watch_id: 3,
                    canceled: true,
                    compact_revision: 5,
                    ..Default::default()
                },
            ),
            (
                notice(3, 0, NoticeKind::Canceled { compact_revision: 0, reason: "io".into() }),
                WatchResponse {
                    header: header(0),
                    watch_id: 3,
                    canceled: true,
                    cancel_reason: "io".into(),
                    ..Default::default()
                },
            ),
            (
                notice(-1, 7, NoticeKind::Progress),
                WatchResponse { header: header(7), watch_id: -1, ..Default::default() },
            ),
            (
                notice(3, 7, NoticeKind::Progress),
                WatchResponse { header: header(7), watch_id: 3, ..Default::default() },
            ),
            (
                notice(3, 7, NoticeKind::Events { events: vec![ev.clone()], fragment: false }),
                WatchResponse { header: header(7), watch_id: 3, events: vec![ev.clone()], ..Default::default() },
            ),
            (
                notice(3, 7, NoticeKind::Events { events: vec![ev.clone()], fragment: true }),
                WatchResponse {
                    header: header(7),
                    watch_id: 3,
                    events: vec![ev],
                    fragment: true,
                    ..Default::default()
                },
            ),
        ];
        for (n, want) in cases {
            assert_eq!(response(n.clone()), want, "{n:?}");
        }
    }

    #[test]
    fn filters_become_the_specs_flags() {
        let req = |filters: Vec<watch_create_request::FilterType>| WatchCreateRequest {
            key: b"k".to_vec().into(),
            range_end: b"l".to_vec().into(),
            start_revision: 4,
            watch_id: 9,
            prev_kv: true,
            progress_notify: true,
            fragment: true,
            filters: filters.into_iter().map(|f| f as i32).collect(),
        };
        let s = spec(req(vec![]));
        assert!(!s.no_put && !s.no_delete);
        assert_eq!((&s.key[..], &s.range_end[..], s.start_revision, s.watch_id), (&b"k"[..], &b"l"[..], 4, 9));
        assert!(s.prev_kv && s.progress_notify && s.fragment);
        let s = spec(req(vec![watch_create_request::FilterType::Noput]));
        assert!(s.no_put && !s.no_delete);
        let s = spec(req(vec![watch_create_request::FilterType::Nodelete]));
        assert!(!s.no_put && s.no_delete);
    }
}
