//! `com.atproto.sync.subscribeRepos`: the firehose over WebSocket.
//!
//! A subscriber with `cursor` first gets every stored event after it (from the persisted log,
//! in pages), then live events. A cursor older than the oldest event the log keeps
//! (`pds.events_keep_secs`) gets an `#info` `OutdatedCursor` frame, then the oldest kept events. Live events reach each subscriber through a bounded broadcast
//! buffer: a consumer that falls more than its capacity behind gets a `ConsumerTooSlow` error
//! frame and is disconnected, so memory stays bounded whatever the consumer does. A consumer
//! that stops reading altogether is disconnected when a frame cannot be written within the send
//! timeout, and subscribers are bounded in number, in total and per client address
//! ([`crate::pds::subscribers`]).

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use http::{HeaderValue, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto::upgrade;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::broadcast;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, frame::coding::CloseCode};
use tokio_tungstenite::tungstenite::{Message, handshake::derive_accept_key};
use tokio_util::sync::CancellationToken;

use super::{Call, XrpcError};
use crate::http::body::{self, Body};
use crate::http::{PeerAddr, PlainIo};
use crate::pds::Pds;
use crate::pds::events::{error_frame, info_frame};
use crate::pds::store::PdsStore;

const BACKFILL_PAGE: usize = 500;

pub(super) fn upgrade(pds: &Pds, call: Call) -> Result<Response<Body>, XrpcError> {
    let cursor = call
        .param("cursor")
        .map(|c| {
            c.parse::<u64>()
                .map_err(|_| XrpcError::invalid("cursor must be an integer"))
        })
        .transpose()?;
    let mut req = call.req;
    let is_ws = req
        .headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let key = req.headers().get(SEC_WEBSOCKET_KEY).cloned();
    let (true, Some(key)) = (is_ws, key) else {
        return Err(XrpcError::invalid(
            "subscribeRepos needs a WebSocket upgrade",
        ));
    };
    let limits = pds.settings.firehose;
    let address = req
        .extensions()
        .get::<PeerAddr>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |p| p.0.ip());
    let slot = pds.subscribers.admit(address, &limits).map_err(|e| {
        tracing::debug!(%address, reason = %e, "firehose subscriber refused");
        XrpcError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RateLimitExceeded",
            e.to_string(),
        )
    })?;
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let store = pds.repos.store().clone();
    // Subscribe before the backfill is read, so no event falls between the two.
    let live = pds.repos.subscribe();
    let shutdown = pds.shutdown.clone();
    tokio::spawn(async move {
        let result = match on_upgrade.await {
            // Through hyper-util's helper: the auto builder's connection wraps the socket.
            Ok(upgraded) => match upgrade::downcast::<TokioIo<PlainIo>>(upgraded) {
                // Plain HTTP: the socket itself, with a small send buffer.
                Ok(parts) => {
                    let tcp = parts.io.into_inner().into_inner().into_tcp();
                    if let Err(e) =
                        rustix::net::sockopt::set_socket_send_buffer_size(&tcp, SEND_BUFFER)
                    {
                        tracing::debug!(error = %e, "could not shrink a subscriber's send buffer");
                    }
                    let ws = WebSocketStream::from_partially_read(
                        tcp,
                        parts.read_buf.to_vec(),
                        Role::Server,
                        None,
                    )
                    .await;
                    let mut sub = Subscriber::new(ws, limits.send_timeout);
                    sub.serve(store, live, cursor, shutdown).await
                }
                // HTTPS: the TLS stream, behind hyper's upgrade.
                Err(upgraded) => {
                    let ws = WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        None,
                    )
                    .await;
                    let mut sub = Subscriber::new(ws, limits.send_timeout);
                    sub.serve(store, live, cursor, shutdown).await
                }
            },
            Err(e) => Err(WsError::Io(std::io::Error::other(e))),
        };
        if let Err(e) = result {
            tracing::debug!(%address, error = %e, "firehose subscriber ended");
        }
        drop(slot);
    });
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(SEC_WEBSOCKET_ACCEPT, v);
    }
    Ok(r)
}

/// The kernel's send buffer of a plain-HTTP subscriber: what a subscriber that stops reading
/// can pin before its sends block and the send timeout drops it (the default grows to 4 MiB).
const SEND_BUFFER: usize = 128 << 10;

type WsError = tokio_tungstenite::tungstenite::Error;

async fn page(store: &PdsStore, after: u64) -> Result<Vec<(u64, Bytes)>, WsError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.events_after(after, BACKFILL_PAGE))
        .await
        .map_err(|e| WsError::Io(std::io::Error::other(e)))?
        .map_err(|e| WsError::Io(std::io::Error::other(e)))
}

/// One subscriber's socket, and how long a frame may take to leave.
struct Subscriber<S> {
    ws: WebSocketStream<S>,
    send_timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Subscriber<S> {
    fn new(ws: WebSocketStream<S>, send_timeout: Duration) -> Self {
        Subscriber { ws, send_timeout }
    }

    /// Sends `message`; a subscriber that does not take it within the send timeout (it stopped
    /// reading, the socket buffers are full) fails, and dropping it frees them.
    async fn send(&mut self, message: Message) -> Result<(), WsError> {
        match tokio::time::timeout(self.send_timeout, self.ws.send(message)).await {
            Ok(sent) => sent,
            Err(_) => Err(WsError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the subscriber does not read",
            ))),
        }
    }

    async fn close_with(&mut self, error: &str, message: &str) -> Result<(), WsError> {
        self.send(Message::Binary(Bytes::from(error_frame(error, message))))
            .await?;
        self.send(Message::Close(Some(CloseFrame {
            code: CloseCode::Policy,
            reason: error.to_owned().into(),
        })))
        .await
    }

    /// Sends stored events after `last` until the log is exhausted; returns the last sent seq.
    async fn backfill(&mut self, store: &PdsStore, mut last: u64) -> Result<u64, WsError> {
        loop {
            let events = page(store, last).await?;
            if events.is_empty() {
                return Ok(last);
            }
            for (seq, frame) in events {
                self.send(Message::Binary(frame)).await?;
                last = seq;
            }
        }
    }

    async fn serve(
        &mut self,
        store: PdsStore,
        mut live: broadcast::Receiver<(u64, Bytes)>,
        cursor: Option<u64>,
        shutdown: CancellationToken,
    ) -> Result<(), WsError> {
        let head = {
            let s = store.clone();
            tokio::task::spawn_blocking(move || s.last_seq())
                .await
                .map_err(|e| WsError::Io(std::io::Error::other(e)))?
                .map_err(|e| WsError::Io(std::io::Error::other(e)))?
        };
        let mut last = match cursor {
            Some(c) if c > head => {
                return self
                    .close_with("FutureCursor", "cursor is ahead of the stream")
                    .await;
            }
            Some(c) => {
                let oldest = {
                    let s = store.clone();
                    tokio::task::spawn_blocking(move || s.first_seq())
                        .await
                        .map_err(|e| WsError::Io(std::io::Error::other(e)))?
                        .map_err(|e| WsError::Io(std::io::Error::other(e)))?
                };
                match oldest {
                    // Events after the cursor were pruned: say so, then go on from the oldest
                    // kept one, as the reference PDS does.
                    Some(oldest) if oldest > c.saturating_add(1) => {
                        let info = info_frame(
                            "OutdatedCursor",
                            "the cursor is older than the oldest event kept; continuing from it",
                        );
                        self.send(Message::Binary(info.into())).await?;
                        self.backfill(&store, oldest - 1).await?
                    }
                    _ => self.backfill(&store, c).await?,
                }
            }
            None => head,
        };
        loop {
            tokio::select! {
                event = live.recv() => match event {
                    Ok((seq, frame)) => {
                        if seq <= last {
                            continue;
                        }
                        if seq > last + 1 {
                            // Committed between our snapshot and the subscription: read the gap.
                            last = self.backfill(&store, last).await?;
                            continue;
                        }
                        self.send(Message::Binary(frame)).await?;
                        last = seq;
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        return self.close_with("ConsumerTooSlow", "the subscriber fell too far behind").await;
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
                incoming = self.ws.next() => match incoming {
                    None | Some(Ok(Message::Close(_))) => return Ok(()),
                    Some(Err(e)) => return Err(e),
                    Some(Ok(_)) => {}
                },
                () = shutdown.cancelled() => {
                    return self.send(Message::Close(Some(CloseFrame {
                        code: CloseCode::Away,
                        reason: "server shutting down".into(),
                    }))).await;
                }
            }
        }
    }
}
