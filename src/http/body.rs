//! The body types of the server: what handlers read ([`RequestBody`]) and return ([`Body`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use http_body_util::{BodyExt, Empty, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};

/// A response body: whole bytes, nothing, or a stream of chunks.
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

#[must_use]
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

#[must_use]
pub fn json(value: &serde_json::Value) -> Body {
    full(serde_json::to_vec(value).unwrap_or_default())
}

pub fn stream<S>(stream: S) -> Body
where
    S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
{
    StreamBody::new(stream.map_ok(Frame::data)).boxed_unsync()
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("reading the request body failed: {0}")]
    Read(#[from] hyper::Error),
    #[error("the client sent no body data for {} s", .0.as_secs())]
    Stalled(Duration),
}

/// The most of an unread request body read and thrown away after the answer, so that the
/// client sees the answer instead of a reset (closing a socket with unread data resets it).
const DRAIN_MAX_BYTES: u64 = 4 << 20;
/// How long that drain may take.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// A request body as handlers see it: hyper's, with a stall timeout (a client that sends no
/// data for `stall` fails the read with [`BodyError::Stalled`]), and drained when dropped
/// unread (see `DRAIN_MAX_BYTES`).
pub struct RequestBody {
    inner: Option<Incoming>,
    stall: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl RequestBody {
    #[must_use]
    pub fn new(inner: Incoming, stall: Duration) -> RequestBody {
        RequestBody {
            inner: Some(inner),
            stall,
            timer: None,
        }
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(frame) = Pin::new(inner).poll_frame(cx) {
            this.timer = None;
            return Poll::Ready(frame.map(|f| f.map_err(BodyError::from)));
        }
        let stall = this.stall;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        if timer.as_mut().poll(cx).is_ready() {
            this.timer = None;
            return Poll::Ready(Some(Err(BodyError::Stalled(stall))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.as_ref().map_or_else(
            || http_body::SizeHint::with_exact(0),
            http_body::Body::size_hint,
        )
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        if http_body::Body::is_end_stream(&inner) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // Bounded in bytes and time; the answer goes out meanwhile.
        let stall = self.stall;
        runtime.spawn(async move {
            let drained = tokio::time::timeout(DRAIN_DEADLINE, drain(inner, stall)).await;
            tracing::debug!(
                bytes = drained.as_ref().map_or(0, |(n, _)| *n),
                complete = drained.is_ok_and(|(_, done)| done),
                "unread request body drained"
            );
        });
    }
}

/// Reads and discards up to [`DRAIN_MAX_BYTES`]; returns the bytes read and whether the body
/// ended.
async fn drain(body: Incoming, stall: Duration) -> (u64, bool) {
    let mut body = RequestBody::new(body, stall);
    let mut read = 0u64;
    while read <= DRAIN_MAX_BYTES {
        match body.frame().await {
            None => {
                // Ended: nothing is left to drain when `body` drops.
                return (read, true);
            }
            Some(Ok(frame)) => {
                read += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            Some(Err(_)) => break,
        }
    }
    // Too much, failed or stalled: give up; hyper closes the connection.
    body.inner = None;
    (read, false)
}
