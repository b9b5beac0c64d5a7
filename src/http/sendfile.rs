//! Bodies sent with `sendfile(2)` on plain HTTP/1 connections: the bytes of a stored blob go
//! from the page cache to the socket without being read into the process, which about halves
//! the CPU a pull costs (`docs/performance.md`, "Pulls with `sendfile`").
//!
//! hyper owns the connection and writes every body frame itself, so a file cannot be handed to
//! it. Instead the body ([`file_body`]) yields *placeholder* frames — slices of a static region
//! nothing ever reads, each at an address that names it — and queues, in the same order, which
//! range of which file each stands for. The connection's socket ([`SendfileIo`]) recognises a
//! placeholder by its address when hyper writes it, and sends that file range in its place.
//!
//! This rests on hyper writing body frames through `poll_write_vectored` as they came, without
//! copying them: its queued write strategy, which the server asks for (`http1().writev(true)`,
//! pipeline flushing off). Otherwise hyper copies frames into one buffer and writes that with
//! `poll_write`, which therefore fails the connection while a placeholder is queued; so does a
//! placeholder that matches no queued range. Zeros are never sent for a blob's bytes. Only plain HTTP/1
//! connections carry a [`FileSends`]; HTTP/2 and TLS stream the bytes as before.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice};
use std::num::NonZeroU64;
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use rustix::fs::Advice;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use super::body::Body;

/// The most of a file one placeholder frame stands for.
const PIECE: usize = 4 << 20;
/// Placeholders start at one of this many offsets (a multiple of [`STRIDE`]), by their number
/// on the connection, so one left over from an unsent body never passes for the next.
const STARTS: usize = 1024;
const STRIDE: usize = 4096;
const REGION: usize = PIECE + STARTS * STRIDE;

/// What placeholders point into: only their addresses matter. Allocated zeroed (mapped, not
/// touched) and never written or read, so it costs address space, not memory; a `static` array
/// would put its megabytes of zeros into the binary.
static PLACEHOLDERS: LazyLock<&'static [u8]> =
    LazyLock::new(|| Box::leak(vec![0; REGION].into_boxed_slice()));

/// Bytes sent with `sendfile` since the process started, for `/metrics`.
static SENT: AtomicU64 = AtomicU64::new(0);

/// Bytes of bodies sent with `sendfile` since the process started.
#[must_use]
pub fn bytes_sent() -> u64 {
    SENT.load(Ordering::Relaxed)
}

/// The file ranges a connection's placeholders stand for, in the order hyper writes them. A
/// clone is a handle on the same queue.
#[derive(Clone, Default)]
pub struct FileSends(Arc<Mutex<Queue>>);

#[derive(Default)]
struct Queue {
    pieces: VecDeque<Piece>,
    numbered: usize,
}

struct Piece {
    file: Arc<File>,
    /// Where the placeholder starts in [`PLACEHOLDERS`].
    start: usize,
    offset: u64,
    len: usize,
    sent: usize,
}

impl FileSends {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a piece; returns its placeholder.
    fn queue(&self, file: &Arc<File>, offset: u64, len: usize) -> Bytes {
        let mut q = self.lock();
        let start = (q.numbered % STARTS) * STRIDE;
        q.numbered = q.numbered.wrapping_add(1);
        q.pieces.push_back(Piece {
            file: Arc::clone(file),
            start,
            offset,
            len,
            sent: 0,
        });
        Bytes::from_static(&PLACEHOLDERS[start..start + len])
    }

    /// The file, file offset and length to send for a placeholder slice at `at` of `len` bytes.
    /// Pieces queued before the one it matches were never written (their body was dropped):
    /// they go.
    fn find(&self, at: usize, len: usize) -> io::Result<(Arc<File>, u64)> {
        let mut q = self.lock();
        while let Some(p) = q.pieces.front() {
            if p.start + p.sent == at && len <= p.len - p.sent {
                return Ok((Arc::clone(&p.file), p.offset + p.sent as u64));
            }
            q.pieces.pop_front();
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a placeholder body frame that stands for no file range",
        ))
    }

    fn pending(&self) -> bool {
        !self.lock().pieces.is_empty()
    }

    /// Notes that `n` bytes of the front piece went out.
    fn sent(&self, n: usize) {
        let mut q = self.lock();
        if let Some(p) = q.pieces.front_mut() {
            p.sent += n;
            if p.sent >= p.len {
                q.pieces.pop_front();
            }
        }
    }
}

/// Where a slice lies in [`PLACEHOLDERS`], if it is a placeholder.
fn placeholder_at(slice: &[u8]) -> Option<usize> {
    let base = PLACEHOLDERS.as_ptr() as usize;
    let at = (slice.as_ptr() as usize).checked_sub(base)?;
    (!slice.is_empty() && at + slice.len() <= REGION).then_some(at)
}

/// A body of `range` of `file`, sent by the connection's [`SendfileIo`] (see the module).
/// The caller makes sure the file holds the range.
#[must_use]
pub fn file_body(sends: &FileSends, file: File, range: Range<u64>) -> Body {
    // Read ahead more eagerly: the whole range is about to be sent, in order.
    let _ = rustix::fs::fadvise(&file, 0, None, Advice::Sequential);
    FileBody {
        sends: sends.clone(),
        file: Arc::new(file),
        next: range.start,
        end: range.end,
    }
    .boxed_unsync()
}

struct FileBody {
    sends: FileSends,
    file: Arc<File>,
    next: u64,
    end: u64,
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.next >= this.end {
            return Poll::Ready(None);
        }
        let len = usize::try_from(this.end - this.next).map_or(PIECE, |n| n.min(PIECE));
        // The pages are read from disk while the piece before goes out, not in `sendfile` on
        // the runtime's thread.
        let _ = rustix::fs::fadvise(
            &*this.file,
            this.next,
            NonZeroU64::new(len as u64),
            Advice::WillNeed,
        );
        let placeholder = this.sends.queue(&this.file, this.next, len);
        this.next += len as u64;
        Poll::Ready(Some(Ok(Frame::data(placeholder))))
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.end
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.end.saturating_sub(self.next))
    }
}

/// A plain TCP connection that sends the file ranges placeholders stand for (see the module).
pub struct SendfileIo {
    tcp: TcpStream,
    sends: FileSends,
}

impl SendfileIo {
    #[must_use]
    pub fn new(tcp: TcpStream, sends: FileSends) -> SendfileIo {
        SendfileIo { tcp, sends }
    }

    /// The socket, for a connection that was upgraded (a websocket): no file body is queued on
    /// it then.
    #[must_use]
    pub fn into_tcp(self) -> TcpStream {
        self.tcp
    }

    fn poll_send_file(
        &self,
        cx: &mut Context<'_>,
        at: usize,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        let (file, offset) = self.sends.find(at, len)?;
        loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            let mut pos = offset;
            let sent = self.tcp.try_io(Interest::WRITABLE, || {
                Ok(rustix::fs::sendfile(
                    &self.tcp,
                    &*file,
                    Some(&mut pos),
                    len,
                )?)
            });
            match sent {
                Ok(0) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file is shorter than the body it was to send",
                    )));
                }
                Ok(n) => {
                    self.sends.sent(n);
                    SENT.fetch_add(n as u64, Ordering::Relaxed);
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncRead for SendfileIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendfileIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // hyper writes with `poll_write` only when it flattens what it sends into one buffer:
        // a placeholder queued by then has been copied there, as zeros. Never send those.
        if placeholder_at(buf).is_some() || self.sends.pending() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a file body written through a flattening buffer (hyper without writev)",
            )));
        }
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let first = bufs
            .iter()
            .enumerate()
            .find_map(|(i, b)| placeholder_at(b).map(|at| (i, at)));
        match first {
            None => Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs),
            Some((0, at)) => this.poll_send_file(cx, at, bufs[0].len()),
            // What comes before a placeholder first; a short write is a writev's right.
            Some((i, _)) => Pin::new(&mut this.tcp).poll_write_vectored(cx, &bufs[..i]),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::server::conn::http1;
    use hyper_util::rt::TokioIo;

    /// A file of `len` bytes that differ from their neighbours.
    fn patterned(dir: &std::path::Path, len: usize) -> (std::path::PathBuf, Vec<u8>) {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let path = dir.join("blob");
        std::fs::write(&path, &bytes).unwrap();
        (path, bytes)
    }

    /// Serves every request on one connection with `path`'s bytes in the range the query
    /// gives (`?start-end`), through [`SendfileIo`]; `writev` as the server would set it.
    async fn serve(path: std::path::PathBuf, writev: bool) -> std::net::SocketAddr {
        // reqwest is built without a TLS provider of its own: tests install ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let sends = FileSends::default();
            let io = TokioIo::new(SendfileIo::new(tcp, sends.clone()));
            let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                let (sends, path) = (sends.clone(), path.clone());
                async move {
                    let q = req.uri().query().unwrap_or_default().to_owned();
                    let (a, b) = q.split_once('-').unwrap();
                    let file = File::open(&path).unwrap();
                    let body = file_body(&sends, file, a.parse().unwrap()..b.parse().unwrap());
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(body))
                }
            });
            let _ = http1::Builder::new()
                .writev(writev)
                .serve_connection(io, service)
                .await;
        });
        addr
    }

    #[tokio::test]
    async fn file_ranges_arrive_byte_for_byte_on_one_connection() {
        let dir = tempfile::tempdir().unwrap();
        let len = 3 * PIECE + 12_345;
        let (path, bytes) = patterned(dir.path(), len);
        let addr = serve(path, true).await;
        let client = reqwest::Client::new();
        for (a, b) in [(0, len), (7, PIECE + 9), (len - 1, len), (PIECE, 2 * PIECE)] {
            let got = client
                .get(format!("http://{addr}/?{a}-{b}"))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            assert!(got[..] == bytes[a..b], "bytes {a}..{b}");
        }
    }

    #[tokio::test]
    async fn a_placeholder_copied_into_a_flat_buffer_fails_the_connection_instead_of_sending_zeros()
    {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = patterned(dir.path(), 100_000);
        let addr = serve(path, false).await;
        let got = reqwest::get(format!("http://{addr}/?0-100000")).await;
        let body = match got {
            Ok(response) => response.bytes().await,
            Err(e) => Err(e),
        };
        assert!(
            body.is_err(),
            "no body of zeros: {:?}",
            body.map(|b| b.len())
        );
    }
}
