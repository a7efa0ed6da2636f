//! etcd's keepalive enforcement on client connections (`--grpc-keepalive-min-time`): gRPC-Go's
//! server policy `{MinTime, PermitWithoutStream: false}`, which etcd sets, done on the HTTP/2
//! frames as they pass (hyper has no such policy).
//!
//! A client PING (not an ACK) that comes sooner than `min_time` after the previous one, or
//! sooner than 2 hours after it while the connection has no open stream, is a strike; any
//! HEADERS or DATA frame the server sent since the previous PING clears the strikes instead. On
//! the third strike the server writes a GOAWAY (ENHANCE_YOUR_CALM, debug data `too_many_pings`)
//! and closes the connection: gRPC-Go clients then double their keepalive time, as they do with
//! etcd. A `min_time` of 0 is gRPC's default policy (5 minutes), as in etcd. Connections that
//! do not open with HTTP/2's preface (the gateway's HTTP/1.1) are left alone.
//!
//! Only frame headers are read (9 bytes a frame, payloads are skipped by their length), in
//! both directions: the client's, to see its PINGs and the streams it opens, and the server's,
//! to see streams end and the server answer.

use std::collections::HashSet;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const PING: u8 = 0x6;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;
/// gRPC-Go's `maxPingStrikes`: the strike after these closes the connection.
const MAX_STRIKES: u32 = 2;
/// gRPC-Go's wait between pings on a connection without streams (`defaultPingTimeout`).
const NO_STREAM_MIN_TIME: Duration = Duration::from_secs(2 * 60 * 60);
/// gRPC-Go's default `MinTime`, which applies when etcd sets none (`--grpc-keepalive-min-time=0`).
const DEFAULT_MIN_TIME: Duration = Duration::from_secs(5 * 60);
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// Frame headers out of a byte stream cut anywhere.
#[derive(Default)]
struct Frames {
    header: [u8; 9],
    have: usize,
    /// Payload bytes of the current frame still to come.
    skip: usize,
}

impl Frames {
    /// Feeds `data`, calling `frame(type, flags, stream)` for every frame header completed in it.
    /// When `frame` answers `true`, stops there and returns where that frame starts in `data` (0 if
    /// it started in an earlier call); the rest of `data` is not looked at.
    fn feed(&mut self, data: &[u8], mut frame: impl FnMut(u8, u8, u32) -> bool) -> Option<usize> {
        let len = data.len();
        let mut data = data;
        while !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                continue;
            }
            let starts = (len - data.len()).saturating_sub(self.have);
            let n = (9 - self.have).min(data.len());
            self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == 9 {
                self.have = 0;
                let h = &self.header;
                self.skip = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
                if frame(h[3], h[4], u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff) {
                    return Some(starts);
                }
            }
        }
        None
    }

    /// Whether the stream is between two frames.
    fn at_boundary(&self) -> bool {
        self.have == 0 && self.skip == 0
    }
}

/// The policy's view of one HTTP/2 connection.
struct Policy {
    /// Preface bytes still expected from the client.
    preface: usize,
    from_client: Frames,
    from_server: Frames,
    judge: Judge,
}

/// What the frames told: the streams open, the pings, the strikes.
struct Judge {
    min_time: Duration,
    open: HashSet<u32>,
    last_client_stream: u32,
    last_ping: Option<Instant>,
    strikes: u32,
    /// The server sent HEADERS or DATA since the last PING.
    answered: bool,
    /// The GOAWAY still to write, once the connection broke the policy.
    goaway: Vec<u8>,
    /// The GOAWAY was queued: reads end (the connection closes once it is written).
    closing: bool,
    /// The server is inside a header block (HEADERS without END_HEADERS, until the CONTINUATION
    /// that ends it), where no other frame may go.
    in_header_block: bool,
    /// The read that waits for the GOAWAY to be written.
    reader: Option<std::task::Waker>,
}

impl Judge {
    /// Notes a client frame; `true` when it is the ping that breaks the policy.
    fn client_frame(&mut self, kind: u8, flags: u8, stream: u32) -> bool {
        let closing = self.closing;
        match kind {
            HEADERS if stream > self.last_client_stream => {
                self.last_client_stream = stream;
                self.open.insert(stream);
            }
            RST_STREAM => {
                self.open.remove(&stream);
            }
            PING if flags & ACK == 0 => self.ping(Instant::now()),
            _ => {}
        }
        self.closing && !closing
    }

    fn server_frame(&mut self, kind: u8, flags: u8, stream: u32) {
        if matches!(kind, HEADERS | CONTINUATION) {
            self.in_header_block = flags & END_HEADERS == 0;
        }
        match kind {
            DATA | HEADERS => {
                self.answered = true;
                if flags & END_STREAM != 0 {
                    self.open.remove(&stream);
                }
            }
            RST_STREAM => {
                self.open.remove(&stream);
            }
            _ => {}
        }
    }

    /// gRPC-Go's `handlePing`.
    fn ping(&mut self, now: Instant) {
        let last = self.last_ping.replace(now);
        if std::mem::take(&mut self.answered) {
            self.strikes = 0;
            return;
        }
        let wait = if self.open.is_empty() { NO_STREAM_MIN_TIME } else { self.min_time };
        if last.is_some_and(|last| now < last + wait) {
            self.strikes += 1;
        }
        if self.strikes > MAX_STRIKES && !self.closing {
            tracing::warn!(
                min_time = ?self.min_time,
                "got too many pings from the client, closing the connection (--grpc-keepalive-min-time)"
            );
            self.closing = true;
            let debug = b"too_many_pings";
            let mut f = Vec::with_capacity(9 + 8 + debug.len());
            f.extend_from_slice(&((8 + debug.len()) as u32).to_be_bytes()[1..]);
            f.extend_from_slice(&[0x7, 0]);
            f.extend_from_slice(&0u32.to_be_bytes());
            f.extend_from_slice(&self.last_client_stream.to_be_bytes());
            f.extend_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
            f.extend_from_slice(debug);
            self.goaway = f;
        }
    }
}

/// A client connection under the keepalive policy.
pub struct Policed<T> {
    inner: T,
    /// `None` once the connection turned out not to be HTTP/2.
    policy: Option<Box<Policy>>,
}

impl<T> Policed<T> {
    /// `min_time` is `--grpc-keepalive-min-time` (0: gRPC's default, 5 minutes).
    pub fn new(inner: T, min_time: Duration) -> Policed<T> {
        let min_time = if min_time.is_zero() { DEFAULT_MIN_TIME } else { min_time };
        let judge = Judge {
            min_time,
            open: HashSet::new(),
            last_client_stream: 0,
            last_ping: None,
            strikes: 0,
            answered: false,
            goaway: Vec::new(),
            closing: false,
            in_header_block: false,
            reader: None,
        };
        let policy =
            Policy { preface: PREFACE.len(), from_client: Frames::default(), from_server: Frames::default(), judge };
        Policed { inner, policy: Some(Box::new(policy)) }
    }
}

impl<T: AsyncWrite + Unpin> Policed<T> {
    /// Writes the queued GOAWAY, if any, between two of the server's frames: `Ready` once none is
    /// left to write.
    fn write_goaway(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let Some(p) = self.policy.as_mut() else { return Poll::Ready(Ok(())) };
        while !p.judge.goaway.is_empty() && p.from_server.at_boundary() && !p.judge.in_header_block {
            let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &p.judge.goaway))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            p.judge.goaway.drain(..n);
            if p.judge.goaway.is_empty()
                && let Some(reader) = p.judge.reader.take()
            {
                reader.wake();
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Whether the connection broke the policy (its GOAWAY is queued or written).
    fn closing(&self) -> bool {
        self.policy.as_ref().is_some_and(|p| p.judge.closing)
    }

    /// A read once the connection broke the policy: nothing more from the client reaches the
    /// server; the GOAWAY goes out (between the server's frames), then the connection reads as
    /// ended. While the server is mid-frame, its next write sends the GOAWAY and wakes the read.
    fn end_reads(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.write_goaway(cx))?;
        match self.policy.as_mut() {
            Some(p) if !p.judge.goaway.is_empty() => {
                p.judge.reader = Some(cx.waker().clone());
                Poll::Pending
            }
            _ => Poll::Ready(Ok(())),
        }
    }

    /// Notes the server's bytes that reached the socket: the first `n` of `bufs`.
    fn wrote<'b>(&mut self, bufs: impl Iterator<Item = &'b [u8]>, mut n: usize) {
        let Some(p) = self.policy.as_mut() else { return };
        let Policy { from_server, judge, .. } = &mut **p;
        for b in bufs {
            if n == 0 {
                break;
            }
            let take = n.min(b.len());
            from_server.feed(&b[..take], |kind, flags, stream| {
                judge.server_frame(kind, flags, stream);
                false
            });
            n -= take;
        }
    }
}

impl<T: tonic::transport::server::Connected> tonic::transport::server::Connected for Policed<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Policed<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.closing() {
            return this.end_reads(cx);
        }
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let Some(p) = this.policy.as_mut() else { return Poll::Ready(Ok(())) };
        let mut data = &buf.filled()[before..];
        let mut preface = 0;
        if p.preface > 0 {
            let n = p.preface.min(data.len());
            let at = PREFACE.len() - p.preface;
            if data[..n] != PREFACE[at..at + n] {
                // Not HTTP/2 (the gateway's HTTP/1.1): no policy.
                this.policy = None;
                return Poll::Ready(Ok(()));
            }
            p.preface -= n;
            preface = n;
            data = &data[n..];
        }
        let Policy { from_client, judge, .. } = &mut **p;
        if let Some(cut) = from_client.feed(data, |kind, flags, stream| judge.client_frame(kind, flags, stream)) {
            // The offending ping and what follows it never reach the server, so the GOAWAY's last
            // stream is the last one the server saw.
            buf.set_filled(before + preface + cut);
        }
        if this.closing() {
            if buf.filled().len() == before {
                return this.end_reads(cx);
            }
            // Hand over what came before the ping; the GOAWAY goes out now if it can, else with
            // the server's next write or the next read.
            let _ = this.write_goaway(cx)?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Policed<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        std::task::ready!(self.write_goaway(cx))?;
        let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
        self.wrote(std::iter::once(buf), n);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        std::task::ready!(self.write_goaway(cx))?;
        let n = std::task::ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, bufs))?;
        self.wrote(bufs.iter().map(|b| &b[..]), n);
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.write_goaway(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.write_goaway(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, len: usize) -> Vec<u8> {
        let mut f = (len as u32).to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend(std::iter::repeat_n(0u8, len));
        f
    }

    #[test]
    fn frame_headers_are_found_across_any_split() {
        let mut wire = Vec::new();
        for (kind, len) in [(HEADERS, 20), (DATA, 70_000), (PING, 8), (RST_STREAM, 4)] {
            wire.extend(frame(kind, 0, 3, len));
        }
        for chunk in [1, 5, 9, 10, 4096, wire.len()] {
            let mut f = Frames::default();
            let mut seen = Vec::new();
            for part in wire.chunks(chunk) {
                f.feed(part, |kind, _, stream| {
                    seen.push((kind, stream));
                    false
                });
            }
            assert_eq!(seen, [(HEADERS, 3), (DATA, 3), (PING, 3), (RST_STREAM, 3)], "chunks of {chunk}");
            assert!(f.at_boundary());
        }
    }

    fn policy(min_time: Duration) -> Judge {
        match Policed::new((), min_time).policy {
            Some(p) => p.judge,
            None => unreachable!(),
        }
    }

    #[test]
    fn feeding_stops_at_the_frame_asked_for() {
        let wire = [frame(HEADERS, 0, 1, 3), frame(PING, 0, 0, 8), frame(HEADERS, 0, 3, 3)].concat();
        let mut f = Frames::default();
        assert_eq!(f.feed(&wire, |kind, _, _| kind == PING), Some(12));
        // A header split across reads: the frame started in the earlier one.
        let mut f = Frames::default();
        assert_eq!(f.feed(&wire[..15], |kind, _, _| kind == PING), None);
        assert_eq!(f.feed(&wire[15..], |kind, _, _| kind == PING), Some(0));
    }

    #[test]
    fn pings_are_judged_as_grpc_go_judges_them() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        // With a stream open, pings 5 s apart are fine, 1 s apart strike; the third strike closes.
        let mut p = policy(5 * s);
        p.client_frame(HEADERS, 0, 1);
        for i in 0..10 {
            p.ping(t0 + 5 * s * i);
        }
        assert_eq!((p.strikes, p.closing), (0, false));
        // The first of these is 6 s after the last: three strikes take four pings.
        for i in 1..=3 {
            p.ping(t0 + 50 * s + s * i);
        }
        assert!(!p.closing && p.strikes == 2);
        p.ping(t0 + 54 * s);
        assert!(p.closing && p.goaway.len() == 9 + 8 + 14, "{}", p.strikes);
        assert_eq!(&p.goaway[p.goaway.len() - 14..], b"too_many_pings");
        assert_eq!(&p.goaway[9..13], &1u32.to_be_bytes(), "the last stream the client opened");
        // An answer from the server in between clears the strikes.
        let mut p = policy(5 * s);
        p.client_frame(HEADERS, 0, 1);
        for i in 1..=10 {
            p.server_frame(DATA, 0, 1);
            p.ping(t0 + s * i);
        }
        assert!(!p.closing);
        // Without a stream, the wait is two hours; the stream ends with the server's END_STREAM.
        let mut p = policy(5 * s);
        p.client_frame(HEADERS, 0, 1);
        p.server_frame(HEADERS, END_STREAM, 1);
        for i in 0..4 {
            p.ping(t0 + 60 * s * i);
        }
        assert!(p.closing);
        // ACKs of the server's own pings are not pings.
        let mut p = policy(5 * s);
        for _ in 0..10 {
            assert!(!p.client_frame(PING, ACK, 0));
        }
        assert_eq!(p.strikes, 0);
        // No GOAWAY inside a header block.
        let mut p = policy(5 * s);
        p.server_frame(HEADERS, 0, 1);
        assert!(p.in_header_block);
        p.server_frame(CONTINUATION, END_HEADERS, 1);
        assert!(!p.in_header_block);
    }
}
