//! A connection whose writes make no progress for a while is closed: a client that stops
//! reading a response must not hold its connection, its slot under the connection cap and the
//! file it was being sent forever. Every write that completes (any number of bytes) starts the
//! time again, so a slow client that keeps reading is never cut.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// The deadline of a write that is waiting for the peer.
#[derive(Debug)]
struct WriteStall {
    limit: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl WriteStall {
    fn new(limit: Duration) -> WriteStall {
        WriteStall {
            limit,
            deadline: None,
        }
    }

    /// Passes a write's outcome through: a completed write clears the deadline; a waiting one
    /// sets it if it is not set, and fails with `TimedOut` once it has passed.
    fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        outcome: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if outcome.is_ready() {
            self.deadline = None;
            return outcome;
        }
        let limit = self.limit;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the peer read nothing for {} s", limit.as_secs()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// `io` whose writes fail with `TimedOut` once one has waited for the peer past the limit (a
/// completed write starts the time again); reads pass through.
pub struct StallGuard<IO> {
    io: IO,
    stall: WriteStall,
}

impl<IO> StallGuard<IO> {
    pub fn new(io: IO, limit: Duration) -> StallGuard<IO> {
        StallGuard {
            io,
            stall: WriteStall::new(limit),
        }
    }

    /// The stream without the guard.
    pub fn into_inner(self) -> IO {
        self.io
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for StallGuard<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for StallGuard<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.io).poll_write(cx, buf);
        this.stall.check(cx, outcome)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.stall.check(cx, outcome)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.io).poll_flush(cx);
        this.stall.check(cx, outcome)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.io).poll_shutdown(cx);
        this.stall.check(cx, outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A peer that stops reading: writes fail after the limit; one that reads slowly is served.
    #[tokio::test]
    async fn a_peer_that_reads_nothing_is_cut_and_a_slow_one_is_not() {
        let (near, mut far) = tokio::io::duplex(64 * 1024);
        let mut guarded = StallGuard::new(near, Duration::from_millis(300));
        let chunk = vec![7u8; 16 * 1024];
        // Slow reader: drains 16 KiB every 100 ms, well within the limit each time.
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            let mut total = 0;
            while total < 256 * 1024 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let n = tokio::io::AsyncReadExt::read(&mut far, &mut buf)
                    .await
                    .unwrap();
                total += n;
            }
            far
        });
        let mut written = 0;
        while written < 256 * 1024 {
            guarded
                .write_all(&chunk)
                .await
                .expect("a slow reader is served");
            written += chunk.len();
        }
        // Now the far side keeps the stream open and reads nothing.
        let _far = reader.await.unwrap();
        let started = std::time::Instant::now();
        let err = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                if let Err(e) = guarded.write_all(&chunk).await {
                    break e;
                }
            }
        })
        .await
        .expect("writes to a peer that reads nothing never failed");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(300));
    }
}
