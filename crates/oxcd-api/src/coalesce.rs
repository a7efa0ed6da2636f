//! One write for many responses: a connection's writes wait once behind every other task ready on
//! the worker. The server wraps its client connections in it; oxcd-bench wraps its connections to
//! the server too, which batches requests as gRPC-Go's transport does (one `writev` for the
//! requests of many streams), so the load generator leaves the server the CPU etcd's Go tool
//! leaves it (docs/benchmarks.md).
//!
//! Each gRPC stream runs in a task of its own; when its response is ready it wakes its
//! connection's task, and tokio runs a task woken that way next on the same worker (its LIFO
//! slot). The connection then writes that one response, and the next stream's response after it:
//! with 1000 clients on 100 connections, 0.9 `writev` per response, a quarter of the server's CPU.
//! [`Coalesce`] holds each write back (`Pending`) until a waker handed to tokio's deferred list
//! (what `tokio::task::yield_now` does) fires, which tokio does when the worker has nothing else
//! to run (or every 61 tasks). Wakes from the connection's streams meanwhile poll it again, but
//! do not release the write. By then the other streams of the connection have queued their
//! responses too, and one `writev` carries all of them: 0.17-0.19 `writev` per response, and
//! about 15% less server CPU per range from 1000 clients (docs/benchmarks.md, "Where the time
//! goes"). A lone client pays one more poll of its connection and a zero-timeout `epoll_wait` per
//! response: 68 → 88 µs of server CPU per one-client range here. Turning tokio's LIFO slot off
//! (its unstable `disable_lifo_slot`) batches as well, but then every wake also wakes the other
//! worker to steal: 98 µs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection whose writes are each held back once (see the module).
pub struct Coalesce<T> {
    inner: T,
    /// The deferred waker of the write held back, until it fires.
    held: Option<Arc<Release>>,
    /// The write in progress was released: the next attempts go to the socket until it is done.
    released: bool,
}

/// The waker tokio's deferred list gets: it releases the write, then wakes the connection's task.
struct Release {
    fired: AtomicBool,
    task: Waker,
}

impl Wake for Release {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        self.task.wake_by_ref();
    }
}

impl<T> Coalesce<T> {
    pub fn new(inner: T) -> Coalesce<T> {
        Coalesce { inner, held: None, released: false }
    }

    /// Whether the write may go to the socket now; if not, it is held until the worker runs out
    /// of other work (the connection's task is then woken).
    fn may_write(&mut self, cx: &mut Context<'_>) -> bool {
        if self.released {
            return true;
        }
        if let Some(held) = &self.held {
            if !held.fired.load(Ordering::Acquire) {
                return false;
            }
            self.held = None;
            self.released = true;
            return true;
        }
        let release = Arc::new(Release { fired: AtomicBool::new(false), task: cx.waker().clone() });
        let waker = Waker::from(release.clone());
        if std::pin::pin!(tokio::task::yield_now()).poll(&mut Context::from_waker(&waker)).is_ready() {
            self.released = true;
            return true;
        }
        self.held = Some(release);
        false
    }

    /// After an attempt that reached the socket: a write that took everything ends the write in
    /// progress (the next one is held again); a partial write or a full socket continues it.
    fn wrote(&mut self, result: &Poll<std::io::Result<usize>>, offered: usize) {
        match result {
            Poll::Ready(Ok(n)) if *n >= offered => self.released = false,
            Poll::Ready(Err(_)) => self.released = false,
            _ => {}
        }
    }
}

impl<T: tonic::transport::server::Connected> tonic::transport::server::Connected for Coalesce<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalesce<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesce<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if !self.may_write(cx) {
            return Poll::Pending;
        }
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(&result, buf.len());
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if !self.may_write(cx) {
            return Poll::Pending;
        }
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(&result, bufs.iter().map(|b| b.len()).sum());
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Every byte arrives, in order, whether writes are whole or partial (a small pipe makes the
    /// writer wait on a full buffer and write in pieces), and a write in progress completes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_arrive_whole_and_in_order() {
        let (a, mut b) = tokio::io::duplex(1000);
        let mut w = Coalesce::new(a);
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            b.read_to_end(&mut all).await.unwrap();
            all
        });
        let mut expected = Vec::new();
        for i in 0..200u32 {
            let chunk: Vec<u8> = (0..(i * 37 % 3000)).map(|j| (i + j) as u8).collect();
            w.write_all(&chunk).await.unwrap();
            expected.extend_from_slice(&chunk);
        }
        w.shutdown().await.unwrap();
        drop(w);
        assert_eq!(reader.await.unwrap(), expected);
    }

    /// A write is held (Pending) until the deferred wake fires, then goes through.
    #[tokio::test]
    async fn a_write_is_held_until_the_deferred_wake() {
        let (a, _b) = tokio::io::duplex(64);
        let mut w = Coalesce::new(a);
        let mut attempts = 0;
        let n = std::future::poll_fn(|cx| {
            attempts += 1;
            Pin::new(&mut w).poll_write(cx, b"hello")
        })
        .await
        .unwrap();
        assert_eq!((n, attempts), (5, 2));
    }
}
