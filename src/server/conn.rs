//! One client connection's life: how many may be open, when an idle one is closed, and how a
//! connection is wound down at shutdown.
//!
//! hyper closes nothing on its own before the first request bytes (the auto builder waits for
//! them to tell HTTP/1 from HTTP/2), nor an HTTP/2 connection with no streams; a connection
//! that sends nothing would hold its descriptor for good. So every connection is driven here:
//! with no request in flight for the idle timeout it is asked to shut down gracefully (HTTP/1
//! closes, HTTP/2 sends GOAWAY), and if it is still idle one more period later it is dropped.

use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::body::Body;

/// Descriptors kept free for everything that is not a client connection: the databases, the
/// search index, blob files, listeners, the admin socket.
const FD_RESERVE: u64 = 64;

/// The connection limit in force: `configured`, lowered so that the open-file limit
/// (`RLIMIT_NOFILE`) is never the one reached. Each connection may hold a second descriptor
/// (a blob being read or written), hence the half.
#[must_use]
pub fn connection_cap(configured: usize) -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    cap_for(configured, limit)
}

fn cap_for(configured: usize, nofile: Option<u64>) -> usize {
    let Some(nofile) = nofile else {
        return configured.max(1);
    };
    let fit = usize::try_from(nofile.saturating_sub(FD_RESERVE) / 2).unwrap_or(usize::MAX);
    configured.min(fit).max(1)
}

/// How many requests of one connection are being answered (a response body still streaming
/// counts). The connection's driver watches it to tell an idle connection from a busy one.
#[derive(Clone)]
pub struct Activity(watch::Sender<usize>);

/// Held while one request is in flight.
pub struct InFlight(watch::Sender<usize>);

impl Activity {
    fn new() -> (Activity, watch::Receiver<usize>) {
        let (tx, rx) = watch::channel(0);
        (Activity(tx), rx)
    }

    /// Marks a request as started; it ends when the guard is dropped.
    #[must_use]
    pub fn start(&self) -> InFlight {
        self.0.send_modify(|n| *n += 1);
        InFlight(self.0.clone())
    }
}

impl InFlight {
    /// `body`, holding this request in flight until it is sent or dropped.
    #[must_use]
    pub fn until_sent(self, body: Body) -> Body {
        http_body_util::BodyExt::boxed_unsync(Tracked {
            body,
            _in_flight: self,
        })
    }
}

/// A response body and the guard of its request; size and end are the body's own, so a
/// `Content-Length` answer stays one.
struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Resolves once the connection has had no request in flight for `timeout`.
async fn idle(rx: &mut watch::Receiver<usize>, timeout: Duration) {
    loop {
        let busy = *rx.borrow_and_update() > 0;
        let changed = if busy {
            rx.changed().await
        } else {
            match tokio::time::timeout(timeout, rx.changed()).await {
                Err(_) => return,
                Ok(changed) => changed,
            }
        };
        if changed.is_err() {
            // Every request handle is gone: nothing more can start.
            return;
        }
    }
}

/// What ends every connection: a graceful `shutdown`, then `abort` (the drain deadline).
#[derive(Clone)]
pub struct Stop {
    pub shutdown: CancellationToken,
    pub abort: CancellationToken,
}

/// Builds a connection with its [`Activity`] and drives it until it ends, is idle too long, or
/// the server stops.
pub async fn serve<C, E>(
    peer: SocketAddr,
    make: impl FnOnce(Activity) -> C,
    idle_timeout: Duration,
    stop: Stop,
) where
    C: GracefulConnection<Error = E>,
    E: std::fmt::Display,
{
    let (activity, mut rx) = Activity::new();
    let mut conn = pin!(make(activity));
    let started = Instant::now();
    let mut asked_to_close = false;
    let result = loop {
        tokio::select! {
            result = conn.as_mut() => break Some(result),
            () = idle(&mut rx, idle_timeout) => {
                if asked_to_close {
                    tracing::debug!(%peer, "idle connection did not close; dropping it");
                    break None;
                }
                tracing::debug!(%peer, idle_secs = idle_timeout.as_secs(), "closing an idle connection");
                conn.as_mut().graceful_shutdown();
                asked_to_close = true;
            }
            () = stop.shutdown.cancelled(), if !asked_to_close => {
                conn.as_mut().graceful_shutdown();
                asked_to_close = true;
            }
            () = stop.abort.cancelled() => break None,
        }
    };
    if let Some(Err(e)) = result {
        tracing::debug!(%peer, error = %e, secs = started.elapsed().as_secs(), "connection ended with an error");
    }
}

/// Rate-limits the log of failed `accept`s: out of descriptors, the loop would otherwise write
/// a line every back-off.
pub struct AcceptErrors {
    last_logged: Option<Instant>,
    suppressed: u64,
}

/// At most one "accept failed" line per this interval.
const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl AcceptErrors {
    #[must_use]
    pub fn new() -> AcceptErrors {
        AcceptErrors {
            last_logged: None,
            suppressed: 0,
        }
    }

    /// Logs `e` unless a line was written within the interval; counts it either way.
    pub fn record(&mut self, e: &std::io::Error) {
        let now = Instant::now();
        if self
            .last_logged
            .is_some_and(|t| now.duration_since(t) < ACCEPT_ERROR_LOG_INTERVAL)
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(error = %e, suppressed = self.suppressed, "accept failed; backing off");
        self.last_logged = Some(now);
        self.suppressed = 0;
    }
}

impl Default for AcceptErrors {
    fn default() -> Self {
        Self::new()
    }
}

/// Limits and deadlines of the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// How long in-flight requests may run on after shutdown is asked for.
    pub drain: Duration,
    /// How long a client may take to send request headers (HTTP/1) or finish the TLS handshake.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed (HTTP/1 and HTTP/2, and
    /// one that never sent a byte), and so is one whose writes make no progress for as long
    /// (`http::stall`).
    pub idle_timeout: Duration,
    /// A request whose body sends no data for this long fails.
    pub body_read_timeout: Duration,
    /// Connections open at once; `accept` waits while this many are. [`connection_cap`]
    /// lowers it below the open-file limit.
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            drain: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(crate::config::DEFAULT_IDLE_TIMEOUT_SECS),
            body_read_timeout: Duration::from_secs(crate::config::DEFAULT_BODY_READ_TIMEOUT_SECS),
            max_connections: crate::config::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_descriptors_free() {
        assert_eq!(cap_for(1024, None), 1024);
        assert_eq!(cap_for(1024, Some(1024)), 480);
        assert_eq!(cap_for(1024, Some(150)), 43);
        assert_eq!(cap_for(10, Some(1 << 20)), 10);
        assert_eq!(
            cap_for(1024, Some(10)),
            1,
            "never zero: the node must answer"
        );
        assert_eq!(cap_for(0, None), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_waits_for_no_request_in_flight() {
        let (activity, mut rx) = Activity::new();
        let guard = activity.start();
        let timeout = Duration::from_secs(5);
        let waiting = tokio::time::timeout(Duration::from_mins(1), idle(&mut rx, timeout)).await;
        assert!(waiting.is_err(), "a request in flight is not idle");
        drop(guard);
        let waiting = tokio::time::timeout(Duration::from_secs(6), idle(&mut rx, timeout)).await;
        assert!(waiting.is_ok(), "idle once the request ended");
    }
}
