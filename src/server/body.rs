//! The response body type every handler returns, and ways to make one.

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use http_body_util::{BodyExt, Empty, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::Frame;

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
