//! [`BatchedWrites`]: an I/O stream for an HTTP/2 connection task that lets the tasks ready
//! to run queue their frames before it writes, so several answers (or calls) leave in one
//! system call.
//!
//! h2 writes whatever frames are queued each time its connection task is polled, and Tokio
//! runs a task woken by the running one next (the worker's LIFO slot): when a stream's
//! handler queues its answer and wakes the connection task, that task runs at once and
//! writes that answer alone — one `writev` per answer (19,670 for 20,000 calls under
//! `strace -c`), the loopback TCP send path then 40 % of a gRPC call's CPU. Yielding once
//! before a batch's first write puts the connection task behind the tasks already ready
//! (a task that wakes itself is queued last), which queue their frames meanwhile; the write
//! that follows carries them all. Measured in `suites/load/README.md` (gRPC).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `inner`, whose first write after each completed flush yields to the other ready tasks
/// once (returns `Pending` after waking its own task) before writing.
#[derive(Debug)]
pub struct BatchedWrites<T> {
    inner: T,
    /// The next write starts a batch: yield before it.
    yield_first: bool,
}

impl<T> BatchedWrites<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> BatchedWrites<T> {
        BatchedWrites {
            inner,
            yield_first: true,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// `Pending` (its task woken to run again after the others ready) before a batch's
    /// first write; `Ready` otherwise.
    fn poll_yield(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.yield_first {
            self.yield_first = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(())
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for BatchedWrites<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for BatchedWrites<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_yield(cx));
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_yield(cx));
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = Pin::new(&mut self.inner).poll_flush(cx);
        if flushed.is_ready() {
            self.yield_first = true;
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<T: tonic::transport::server::Connected> tonic::transport::server::Connected
    for BatchedWrites<T>
{
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test]
    async fn every_byte_arrives_in_order() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut a = BatchedWrites::new(a);
        let writer = tokio::spawn(async move {
            for chunk in [&b"one "[..], b"two ", b"three"] {
                a.write_all(chunk).await.unwrap();
                a.flush().await.unwrap();
            }
            a.shutdown().await.unwrap();
        });
        let mut got = String::new();
        b.read_to_string(&mut got).await.unwrap();
        writer.await.unwrap();
        assert_eq!(got, "one two three");
    }

    /// The write waits for the tasks already ready: what they queue goes in the same write.
    #[tokio::test]
    async fn a_batch_write_runs_after_the_ready_tasks() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut a = BatchedWrites::new(a);
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let other = {
            let order = std::sync::Arc::clone(&order);
            tokio::spawn(async move { order.lock().unwrap().push("other task") })
        };
        a.write_all(b"x").await.unwrap();
        order.lock().unwrap().push("write");
        other.await.unwrap();
        assert_eq!(*order.lock().unwrap(), ["other task", "write"]);
        let mut byte = [0];
        b.read_exact(&mut byte).await.unwrap();
        assert_eq!(&byte, b"x");
    }
}
