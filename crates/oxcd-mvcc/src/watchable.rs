//! The watchable store: what turns applied revisions into watch responses, for any number of watch
//! streams, with memory bounded no matter how slowly clients read.
//!
//! The model is an event log with cursors. Every watcher is a cursor: the next revision it needs.
//!
//! - The applier [`WatchableStore::publish`]es each new revision's events. While any watch stream
//!   is open, the newest revisions stay in a bounded in-memory **ring** ([`RING_BYTES`],
//!   [`RING_REVS`]); older ones are read back from the backend, which holds every revision not yet
//!   compacted.
//! - A **synced** watcher (its cursor is at the newest revision) is registered by key range; publish
//!   finds the watchers an event matches and queues `(watch id, revision)` on their stream's
//!   **pending** queue — a reference into the ring, not a copy.
//! - An **unsynced** watcher catches up by reading revisions from its cursor on, from the ring or the
//!   backend, up to [`CATCHUP_REVS`] revisions per step, and registers as synced once it reaches the
//!   newest revision (checked under the store's lock, so no revision falls between the two modes).
//! - A stream whose pending queue passes [`MAX_PENDING`] references or [`MAX_PENDING_BYTES`] of
//!   events (its client stopped reading while events kept coming) **overflows**: the queue is dropped and all of the stream's watchers become
//!   unsynced; they catch up from their cursors once the client reads again. A cursor that falls
//!   below the compacted revision is canceled with `compact_revision`, as etcd does.
//!
//! So a stream holds on to at most [`MAX_PENDING_BYTES`] of events plus what its transport buffers,
//! the ring is shared and bounded, and a stalled client costs nothing else.
//!
//! A stream speaks in its own terms: a watcher is created from a [`WatchSpec`] and the stream
//! produces [`Notice`]s; the gRPC service turns them into etcd's `WatchResponse`s.
//!
//! Lock order: the store's `inner` lock before a stream's `pending` lock.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use oxcd_api::mvccpb::{Event, KeyValue, event::EventType};
use parking_lot::{Mutex, RwLock};
use prost::Message;
use tokio::sync::Notify;

use crate::kvstore::{KvRead, MvccError, RangeOptions, Store};
use crate::metrics::{EVENTS, SLOW_WATCHERS, WATCH_STREAMS, WATCHERS};

/// Most bytes of event data the ring keeps.
pub const RING_BYTES: usize = 16 << 20;
/// Most revisions the ring keeps.
pub const RING_REVS: usize = 100_000;
/// Most queued `(watcher, revision)` references per stream before it overflows.
pub const MAX_PENDING: usize = 4096;
/// Most bytes of events a stream's queue may hold on to before it overflows (queued references keep
/// revisions alive after the ring dropped them, so this, not the count, bounds a stalled stream).
pub const MAX_PENDING_BYTES: usize = 4 << 20;
/// Revisions a catching-up watcher reads per step (etcd's `watchBatchMaxRevs`).
pub const CATCHUP_REVS: i64 = 1000;

/// etcd's text for a client-chosen watch id already in use on the stream.
const DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";

/// What one watcher watches (what etcd's create request asks, as the store needs it).
#[derive(Debug, Clone, Default)]
pub struct WatchSpec {
    /// The key, or the start of the range; empty means `"\0"`, as in etcd.
    pub key: Bytes,
    /// The range's end: empty for the single key, `"\0"` for every key from `key` on.
    pub range_end: Bytes,
    /// The first revision to deliver; 0 for the next one.
    pub start_revision: i64,
    /// The watcher's id on its stream; 0 lets the stream choose.
    pub watch_id: i64,
    /// Each event carries the key's previous value.
    pub prev_kv: bool,
    pub no_put: bool,
    pub no_delete: bool,
    /// Periodic progress notifications while there is nothing to send.
    pub progress_notify: bool,
    /// Events of one revision may be split over several notices (etcd's fragments).
    pub fragment: bool,
}

/// One message of a watch stream, in the order the stream produces them.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// The watcher it is about; -1 for a stream-wide progress notice or a refused create.
    pub watch_id: i64,
    /// The store revision the notice is current to (0 where etcd's header carries none).
    pub revision: i64,
    pub kind: NoticeKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NoticeKind {
    /// The watcher exists.
    Created,
    /// A create refused (etcd answers created and canceled at once), with the reason.
    Refused(String),
    /// The watcher ended: canceled by the client, below the compacted revision
    /// (`compact_revision` > 0), or on a store error (`reason`).
    Canceled { compact_revision: i64, reason: String },
    /// No events: every event up to `revision` was sent.
    Progress,
    /// Events; `fragment`: more of the same batch follow in the next notice.
    Events { events: Vec<Event>, fragment: bool },
}

impl Notice {
    fn new(watch_id: i64, revision: i64, kind: NoticeKind) -> Notice {
        Notice { watch_id, revision, kind }
    }

    /// Whether the watcher ended (or was never made).
    pub fn is_canceled(&self) -> bool {
        matches!(self.kind, NoticeKind::Canceled { .. } | NoticeKind::Refused(_))
    }

    /// The events it carries (none for the other kinds).
    pub fn events(&self) -> &[Event] {
        match &self.kind {
            NoticeKind::Events { events, .. } => events,
            _ => &[],
        }
    }

    pub fn into_events(self) -> Vec<Event> {
        match self.kind {
            NoticeKind::Events { events, .. } => events,
            _ => Vec::new(),
        }
    }
}

/// The events of one revision.
#[derive(Debug)]
pub struct RevBatch {
    pub rev: i64,
    pub events: Vec<Event>,
    bytes: usize,
}

/// A key range as watchers use it: `end` `None` is the single key, `Some(empty)` no upper bound.
#[derive(Debug, Clone)]
struct KeyRange {
    key: Bytes,
    end: Option<Bytes>,
}

impl KeyRange {
    fn contains(&self, k: &[u8]) -> bool {
        match &self.end {
            None => self.key == k,
            Some(e) if e.is_empty() => k >= &self.key[..],
            Some(e) => k >= &self.key[..] && k < &e[..],
        }
    }
}

#[derive(Default)]
struct Pending {
    queue: VecDeque<(i64, Arc<RevBatch>)>,
    /// Event bytes of the distinct revisions queued.
    bytes: usize,
    overflowed: bool,
}

/// What the store shares with one stream.
struct StreamShared {
    pending: Mutex<Pending>,
    notify: Notify,
}

struct Inner {
    ring: VecDeque<Arc<RevBatch>>,
    ring_bytes: usize,
    /// Newest revision published (the store's revision when nothing was published yet).
    last_rev: i64,
    /// Synced single-key watchers by key: (stream, watch id).
    single: HashMap<Bytes, Vec<(u64, i64)>>,
    /// Synced range watchers.
    ranges: Vec<(u64, i64, KeyRange)>,
    streams: HashMap<u64, Arc<StreamShared>>,
    next_stream: u64,
}

impl Inner {
    fn register(&mut self, stream: u64, id: i64, range: &KeyRange) {
        match range.end {
            None => self.single.entry(range.key.clone()).or_default().push((stream, id)),
            Some(_) => self.ranges.push((stream, id, range.clone())),
        }
    }

    fn unregister(&mut self, stream: u64, id: i64, range: &KeyRange) {
        match range.end {
            None => {
                if let Some(v) = self.single.get_mut(&range.key) {
                    v.retain(|w| *w != (stream, id));
                    if v.is_empty() {
                        self.single.remove(&range.key);
                    }
                }
            }
            Some(_) => self.ranges.retain(|(s, w, _)| !(*s == stream && *w == id)),
        }
    }

    fn unregister_stream(&mut self, stream: u64) {
        self.single.retain(|_, v| {
            v.retain(|(s, _)| *s != stream);
            !v.is_empty()
        });
        self.ranges.retain(|(s, _, _)| *s != stream);
    }
}

/// The watchable store of one member.
pub struct WatchableStore {
    inner: Mutex<Inner>,
    store: RwLock<Arc<Store>>,
    /// Events beyond this many bytes are split into fragments for watchers that allow it.
    max_response_bytes: usize,
    /// Bounds of the ring: revisions and bytes.
    ring_revs: usize,
    ring_bytes: usize,
}

impl WatchableStore {
    pub fn new(store: Arc<Store>, max_response_bytes: usize) -> Arc<WatchableStore> {
        WatchableStore::with_ring(store, max_response_bytes, RING_REVS, RING_BYTES)
    }

    /// A watchable store with a ring of at most `ring_revs` revisions and `ring_bytes` bytes.
    pub fn with_ring(
        store: Arc<Store>,
        max_response_bytes: usize,
        ring_revs: usize,
        ring_bytes: usize,
    ) -> Arc<WatchableStore> {
        Arc::new(WatchableStore {
            inner: Mutex::new(Inner {
                ring: VecDeque::new(),
                ring_bytes: 0,
                last_rev: store.current_rev(),
                single: HashMap::new(),
                ranges: Vec::new(),
                streams: HashMap::new(),
                next_stream: 1,
            }),
            store: RwLock::new(store),
            max_response_bytes,
            ring_revs,
            ring_bytes,
        })
    }

    /// The store watchers read history and previous values from.
    pub fn store(&self) -> Arc<Store> {
        self.store.read().clone()
    }

    /// The newest revision published.
    pub fn rev(&self) -> i64 {
        self.inner.lock().last_rev
    }

    /// Publishes the events of revision `rev` (called by the applier, in revision order, after the
    /// revision is visible to readers).
    pub fn publish(&self, rev: i64, events: Vec<Event>) {
        // What the batch holds on to: the events' data and their structs, not just their encoding.
        let bytes = events.iter().map(|e| e.encoded_len() + std::mem::size_of::<Event>()).sum::<usize>()
            + std::mem::size_of::<RevBatch>()
            + 64;
        let batch = Arc::new(RevBatch { rev, events, bytes });
        let mut inner = self.inner.lock();
        // The ring serves watchers that fall behind; with no stream open there is none, and a
        // watcher created later starts from now or reads its history from the backend. Keeping
        // it empty then saves its memory (up to RING_BYTES) on write-only loads. The ring holds
        // consecutive revisions only.
        if inner.streams.is_empty() || inner.ring.back().is_some_and(|b| b.rev + 1 != rev) {
            inner.ring.clear();
            inner.ring_bytes = 0;
        }
        if !inner.streams.is_empty() {
            inner.ring.push_back(batch.clone());
            inner.ring_bytes += bytes;
            while inner.ring.len() > 1 && (inner.ring_bytes > self.ring_bytes || inner.ring.len() > self.ring_revs) {
                let old = inner.ring.pop_front().expect("len > 1");
                inner.ring_bytes -= old.bytes;
            }
        }
        inner.last_rev = rev;

        let mut hits: Vec<(u64, i64)> = Vec::new();
        for ev in &batch.events {
            let Some(kv) = &ev.kv else { continue };
            if let Some(ws) = inner.single.get(&kv.key) {
                hits.extend_from_slice(ws);
            }
            hits.extend(inner.ranges.iter().filter(|(_, _, r)| r.contains(&kv.key)).map(|(s, w, _)| (*s, *w)));
        }
        if hits.is_empty() {
            return;
        }
        hits.sort_unstable();
        hits.dedup();
        for group in hits.chunk_by(|a, b| a.0 == b.0) {
            let Some(stream) = inner.streams.get(&group[0].0) else { continue };
            let mut p = stream.pending.lock();
            if p.overflowed {
                continue;
            }
            if p.queue.len() + group.len() > MAX_PENDING || p.bytes + batch.bytes > MAX_PENDING_BYTES {
                // The client stopped reading: drop the queue; its watchers catch up from cursors.
                p.overflowed = true;
                p.queue.clear();
                p.bytes = 0;
            } else {
                p.queue.extend(group.iter().map(|(_, w)| (*w, batch.clone())));
                p.bytes += batch.bytes;
            }
            drop(p);
            stream.notify.notify_one();
        }
    }

    /// Swaps in a store rebuilt from a snapshot: every watcher catches up from its cursor.
    pub fn reset(&self, store: Arc<Store>) {
        let mut inner = self.inner.lock();
        inner.ring.clear();
        inner.ring_bytes = 0;
        inner.last_rev = store.current_rev();
        inner.single.clear();
        inner.ranges.clear();
        for s in inner.streams.values() {
            let mut p = s.pending.lock();
            p.queue.clear();
            p.bytes = 0;
            p.overflowed = true;
            drop(p);
            s.notify.notify_one();
        }
        *self.store.write() = store;
    }

    /// Opens a watch stream.
    pub fn open_stream(self: &Arc<Self>) -> WatchStream {
        let shared = Arc::new(StreamShared { pending: Mutex::new(Pending::default()), notify: Notify::new() });
        let mut inner = self.inner.lock();
        let id = inner.next_stream;
        inner.next_stream += 1;
        inner.streams.insert(id, shared.clone());
        WATCH_STREAMS.inc();
        WatchStream {
            hub: self.clone(),
            id,
            shared,
            watchers: HashMap::new(),
            next_watch_id: 0,
            deferred_progress: false,
        }
    }

    /// Events of revisions `from..` (at most [`CATCHUP_REVS`] of them), from the ring or the
    /// backend, and the last revision the read covered. `Err(Compacted)` if `from` is below the
    /// compacted revision (etcd cancels such watchers even if the events are still around).
    fn read_from(&self, from: i64) -> Result<(Vec<Arc<RevBatch>>, i64), MvccError> {
        let store = self.store();
        if from < store.compact_rev() {
            return Err(MvccError::Compacted);
        }
        // Revision 1 is the empty store: nothing happened before it.
        let from = from.max(2);
        let ring_start = {
            let inner = self.inner.lock();
            let last = inner.last_rev;
            if from > last {
                return Ok((Vec::new(), last));
            }
            match inner.ring.front() {
                Some(first) if first.rev <= from => {
                    let skip = (from - first.rev) as usize;
                    let got: Vec<_> = inner.ring.iter().skip(skip).take(CATCHUP_REVS as usize).cloned().collect();
                    let upto = got.last().map(|b| b.rev).unwrap_or(last);
                    return Ok((got, upto));
                }
                Some(first) => first.rev,
                None => last + 1,
            }
        };
        // Older than the ring: from the backend, up to where the ring starts.
        let to = (from + CATCHUP_REVS - 1).min(ring_start - 1);
        let batches = store.events_between(from, to)?;
        Ok((batches.into_iter().map(|(rev, events)| Arc::new(RevBatch { rev, events, bytes: 0 })).collect(), to))
    }
}

/// One watcher of a stream.
struct Watcher {
    range: KeyRange,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress_notify: bool,
    fragment: bool,
    /// The next revision this watcher needs.
    next_rev: i64,
    synced: bool,
}

impl Watcher {
    fn wants(&self, ev: &Event) -> bool {
        let Some(kv) = &ev.kv else { return false };
        if !self.range.contains(&kv.key) {
            return false;
        }
        match EventType::try_from(ev.r#type) {
            Ok(EventType::Put) => !self.no_put,
            Ok(EventType::Delete) => !self.no_delete,
            Err(_) => false,
        }
    }
}

/// The watchers of one client stream and the notices owed to it. Transport-agnostic: the gRPC
/// layer feeds it requests and sends what it returns (each notice carries the revision it is current to).
pub struct WatchStream {
    hub: Arc<WatchableStore>,
    id: u64,
    shared: Arc<StreamShared>,
    watchers: HashMap<i64, Watcher>,
    next_watch_id: i64,
    deferred_progress: bool,
}

impl WatchStream {
    /// Waits until there is something to do: queued events, an overflow, or catching up.
    pub async fn ready(&self) {
        if self.has_work() {
            return;
        }
        self.shared.notify.notified().await;
    }

    /// Whether [`WatchStream::poll`] has anything to do right now.
    pub fn has_work(&self) -> bool {
        let p = self.shared.pending.lock();
        !p.queue.is_empty() || p.overflowed || self.watchers.values().any(|w| !w.synced) || self.deferred_progress
    }

    /// Creates a watcher and returns the created notice. A watcher whose start revision is
    /// compacted is canceled (with `compact_revision`) by the next [`WatchStream::poll`], as etcd
    /// sends the two responses.
    pub fn create(&mut self, req: WatchSpec) -> Notice {
        let mut inner = self.hub.inner.lock();
        let rev = inner.last_rev;
        let id = if req.watch_id != 0 {
            if self.watchers.contains_key(&req.watch_id) {
                return Notice::new(-1, rev, NoticeKind::Refused(DUPLICATE_ID.to_string()));
            }
            req.watch_id
        } else {
            while self.watchers.contains_key(&self.next_watch_id) {
                self.next_watch_id += 1;
            }
            self.next_watch_id += 1;
            self.next_watch_id - 1
        };
        // etcd's conventions: an empty key is "\0", an empty end a single key, "\0" no end.
        let key = if req.key.is_empty() { Bytes::from_static(b"\0") } else { req.key.clone() };
        let end = match &req.range_end[..] {
            [] => None,
            [0] => Some(Bytes::new()),
            _ => Some(req.range_end.clone()),
        };
        let next_rev = if req.start_revision == 0 { rev + 1 } else { req.start_revision };
        let mut w = Watcher {
            range: KeyRange { key, end },
            prev_kv: req.prev_kv,
            no_put: req.no_put,
            no_delete: req.no_delete,
            progress_notify: req.progress_notify,
            fragment: req.fragment,
            next_rev,
            synced: false,
        };
        if next_rev > rev {
            // From now (or the future): synced at once, under the lock, so nothing falls between.
            inner.register(self.id, id, &w.range);
            w.synced = true;
        }
        drop(inner);
        WATCHERS.inc();
        if !w.synced {
            SLOW_WATCHERS.inc();
        }
        self.watchers.insert(id, w);
        Notice::new(id, rev, NoticeKind::Created)
    }

    /// Cancels a watcher; `None` for an unknown id (etcd ignores it).
    pub fn cancel(&mut self, id: i64) -> Option<Notice> {
        let w = self.watchers.remove(&id)?;
        forget(&w);
        let mut inner = self.hub.inner.lock();
        if w.synced {
            inner.unregister(self.id, id, &w.range);
        }
        let rev = inner.last_rev;
        drop(inner);
        // Queued events of the canceled watcher are skipped when drained (the id is gone).
        Some(Notice::new(id, rev, NoticeKind::Canceled { compact_revision: 0, reason: String::new() }))
    }

    /// A progress request: answered (watch id -1, the newest revision) once every watcher of the
    /// stream is synced and nothing is queued, so every event up to that revision was sent.
    pub fn request_progress(&mut self) -> Option<Notice> {
        self.deferred_progress = true;
        self.take_progress()
    }

    fn take_progress(&mut self) -> Option<Notice> {
        if !self.deferred_progress || self.watchers.values().any(|w| !w.synced) {
            return None;
        }
        let inner = self.hub.inner.lock();
        let p = self.shared.pending.lock();
        if !p.queue.is_empty() || p.overflowed {
            return None;
        }
        let rev = inner.last_rev;
        drop(p);
        drop(inner);
        self.deferred_progress = false;
        Some(Notice::new(-1, rev, NoticeKind::Progress))
    }

    /// The periodic progress notification: an empty response per synced watcher that asked for it,
    /// if nothing is queued for the stream.
    pub fn periodic_progress(&mut self) -> Vec<Notice> {
        let inner = self.hub.inner.lock();
        let p = self.shared.pending.lock();
        if !p.queue.is_empty() || p.overflowed {
            return Vec::new();
        }
        let rev = inner.last_rev;
        drop(p);
        drop(inner);
        let mut ids: Vec<i64> =
            self.watchers.iter().filter(|(_, w)| w.progress_notify && w.synced).map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids.into_iter().map(|id| Notice::new(id, rev, NoticeKind::Progress)).collect()
    }

    /// Does the work that is ready: sends queued events of synced watchers, handles an overflow,
    /// moves catching-up watchers forward one step each. Returns the notices to send, in order.
    pub fn poll(&mut self) -> Vec<Notice> {
        let mut out = Vec::new();
        let (queued, overflowed) = {
            let mut p = self.shared.pending.lock();
            let q: Vec<_> = p.queue.drain(..).collect();
            p.bytes = 0;
            (q, std::mem::take(&mut p.overflowed))
        };
        for (id, batch) in queued {
            let Some(w) = self.watchers.get_mut(&id) else { continue };
            if !w.synced || batch.rev < w.next_rev {
                continue;
            }
            w.next_rev = batch.rev + 1;
            let events: Vec<Event> = batch.events.iter().filter(|e| w.wants(e)).cloned().collect();
            if !events.is_empty() {
                push_events(&mut out, &self.hub, id, w, batch.rev, events);
            }
        }
        if overflowed {
            let mut inner = self.hub.inner.lock();
            inner.unregister_stream(self.id);
            drop(inner);
            for w in self.watchers.values_mut() {
                if w.synced {
                    SLOW_WATCHERS.inc();
                }
                w.synced = false;
            }
        }
        let unsynced: Vec<i64> = self.watchers.iter().filter(|(_, w)| !w.synced).map(|(id, _)| *id).collect();
        for id in unsynced {
            self.catch_up(id, &mut out);
        }
        out.extend(self.take_progress());
        out
    }

    /// One catch-up step of watcher `id`: up to [`CATCHUP_REVS`] revisions, read from the backend
    /// and then the ring as needed, delivered in one response (as etcd's unsynced watchers get them).
    fn catch_up(&mut self, id: i64, out: &mut Vec<Notice>) {
        let mut events: Vec<Event> = Vec::new();
        let mut revs = 0;
        loop {
            let next_rev = self.watchers[&id].next_rev;
            match self.hub.read_from(next_rev) {
                Err(MvccError::Compacted) => {
                    // Below the compacted revision: canceled with it (etcd's header has no revision).
                    let w = self.watchers.remove(&id).expect("watcher exists");
                    debug_assert!(!w.synced);
                    forget(&w);
                    let compact_revision = self.hub.store().compact_rev();
                    out.push(Notice::new(id, 0, NoticeKind::Canceled { compact_revision, reason: String::new() }));
                    return;
                }
                Err(e) => {
                    tracing::error!(watch_id = id, error = %e, "watch catch-up failed; watcher canceled");
                    if let Some(w) = self.watchers.remove(&id) {
                        forget(&w);
                    }
                    out.push(Notice::new(id, 0, NoticeKind::Canceled { compact_revision: 0, reason: e.to_string() }));
                    return;
                }
                Ok((batches, upto)) => {
                    let w = self.watchers.get_mut(&id).expect("watcher exists");
                    events.extend(batches.iter().flat_map(|b| b.events.iter().filter(|e| w.wants(e)).cloned()));
                    w.next_rev = w.next_rev.max(upto + 1);
                    revs += w.next_rev - next_rev;
                    // Caught up? Register as synced, unless revisions were published meanwhile.
                    let mut inner = self.hub.inner.lock();
                    let last = inner.last_rev;
                    if w.next_rev > last {
                        inner.register(self.id, id, &w.range);
                        w.synced = true;
                        SLOW_WATCHERS.dec();
                    }
                    drop(inner);
                    if w.synced || revs >= CATCHUP_REVS || w.next_rev == next_rev {
                        if !events.is_empty() {
                            push_events(out, &self.hub, id, w, last, events);
                        }
                        return;
                    }
                }
            }
        }
    }
}

/// Appends the response(s) carrying `events` for watcher `id`: one response, or fragments when the
/// watcher allows them and the events exceed the response limit.
fn push_events(out: &mut Vec<Notice>, hub: &WatchableStore, id: i64, w: &Watcher, rev: i64, mut events: Vec<Event>) {
    EVENTS.inc_by(events.len() as u64);
    if w.prev_kv {
        let store = hub.store();
        if let Ok(view) = store.read_internal() {
            for ev in &mut events {
                ev.prev_kv = prev_kv(&view, ev);
            }
        }
    }
    if !w.fragment {
        out.push(Notice::new(id, rev, NoticeKind::Events { events, fragment: false }));
        return;
    }
    let mut chunk: Vec<Event> = Vec::new();
    let mut size = 0;
    let mut chunks = Vec::new();
    for ev in events {
        let n = ev.encoded_len();
        if !chunk.is_empty() && size + n > hub.max_response_bytes {
            chunks.push(std::mem::take(&mut chunk));
            size = 0;
        }
        size += n;
        chunk.push(ev);
    }
    chunks.push(chunk);
    let last = chunks.len() - 1;
    for (i, events) in chunks.into_iter().enumerate() {
        out.push(Notice::new(id, rev, NoticeKind::Events { events, fragment: i != last }));
    }
}

/// The value a key had just before the event (none for a create, or when it was compacted away).
fn prev_kv(view: &impl KvRead, ev: &Event) -> Option<KeyValue> {
    let kv = ev.kv.as_ref()?;
    if ev.r#type == EventType::Put as i32 && kv.version == 1 {
        return None;
    }
    let r = view.range(&kv.key, None, RangeOptions { rev: kv.mod_revision - 1, ..Default::default() }).ok()?;
    r.kvs.into_iter().next()
}

/// Takes a watcher that goes away out of the watcher gauges.
fn forget(w: &Watcher) {
    WATCHERS.dec();
    if !w.synced {
        SLOW_WATCHERS.dec();
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.watchers.values().for_each(forget);
        WATCH_STREAMS.dec();
        let mut inner = self.hub.inner.lock();
        inner.unregister_stream(self.id);
        inner.streams.remove(&self.id);
    }
}

#[cfg(test)]
mod tests;
