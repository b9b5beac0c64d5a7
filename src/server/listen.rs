//! Listening: the accept loop, one task per connection (TLS handshake, HTTP/1 or HTTP/2 with
//! the connection's limits), and the drain at shutdown.

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{App, Conn, ServerLimits, conn, handle};
use crate::http::PlainIo;
use crate::http::sendfile::{FileSends, SendfileIo};
use crate::http::stall::StallGuard;

/// A bound socket, served as plain HTTP or, with an acceptor, as HTTPS.
pub struct Listener {
    pub tcp: TcpListener,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Listener {
    #[must_use]
    pub fn plain(tcp: TcpListener) -> Listener {
        Listener { tcp, tls: None }
    }
}

/// What every connection of a server shares.
struct Shared {
    app: Arc<App>,
    builder: auto::Builder<TokioExecutor>,
    limits: ServerLimits,
    permits: Arc<Semaphore>,
    stop: conn::Stop,
    tasks: TaskTracker,
}

/// Serves `app` on every listener until `shutdown` is cancelled, then lets open requests finish
/// for at most `limits.drain`.
pub async fn run(
    listeners: Vec<Listener>,
    app: Arc<App>,
    shutdown: CancellationToken,
    limits: ServerLimits,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // Body frames queued and written with writev as they came, never copied into one
        // buffer: what `sendfile` bodies rest on (see `http/sendfile.rs`).
        .writev(true)
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.idle_timeout))
        .keep_alive_timeout(limits.idle_timeout.min(H2_PING_TIMEOUT));
    let max_connections = conn::connection_cap(limits.max_connections);
    if max_connections < limits.max_connections {
        tracing::warn!(
            configured = limits.max_connections,
            max_connections,
            "server.max_connections lowered to fit the open-file limit (ulimit -n)"
        );
    }
    let shared = Arc::new(Shared {
        app,
        builder,
        limits,
        permits: Arc::new(Semaphore::new(max_connections)),
        stop: conn::Stop {
            shutdown: shutdown.clone(),
            abort: CancellationToken::new(),
        },
        tasks: TaskTracker::new(),
    });
    let loops = listeners
        .into_iter()
        .map(|l| accept_loop(l, &shared, &shutdown));
    futures_util::future::join_all(loops).await;
    tracing::info!(
        drain_secs = limits.drain.as_secs(),
        "shutting down; draining open requests"
    );
    shared.tasks.close();
    tokio::select! {
        () = shared.tasks.wait() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(limits.drain) => {
            tracing::warn!("drain deadline passed; closing remaining connections");
            shared.stop.abort.cancel();
        }
    }
}

/// How long an HTTP/2 keep-alive ping may go unanswered before the connection is closed.
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// The pause after a failed `accept` (out of descriptors, mostly) before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

async fn accept_loop(listener: Listener, shared: &Arc<Shared>, shutdown: &CancellationToken) {
    let mut errors = conn::AcceptErrors::new();
    let scheme = if listener.tls.is_some() {
        "https"
    } else {
        "http"
    };
    loop {
        // A permit per connection: at the limit, accepting waits (the kernel's backlog holds
        // newcomers) until a connection closes.
        let permit = tokio::select! {
            permit = shared.permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.tcp.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    errors.record(&e);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let (shared_c, tls) = (shared.clone(), listener.tls.clone());
        shared.tasks.spawn(async move {
            let shared = shared_c;
            let limits = shared.limits;
            let service = |activity: conn::Activity, sends: Option<FileSends>| {
                let app = shared.app.clone();
                service_fn(move |req| {
                    let at = Conn {
                        peer,
                        scheme,
                        in_flight: activity.start(),
                        sends: sends.clone(),
                    };
                    handle(app.clone(), at, limits, req)
                })
            };
            match tls {
                None => {
                    let sends = FileSends::default();
                    let io: PlainIo = StallGuard::new(
                        SendfileIo::new(stream, sends.clone()),
                        limits.idle_timeout,
                    );
                    conn::serve(
                        peer,
                        |activity| {
                            shared
                                .builder
                                .serve_connection_with_upgrades(
                                    TokioIo::new(io),
                                    service(activity, Some(sends)),
                                )
                                .into_owned()
                        },
                        limits.idle_timeout,
                        shared.stop.clone(),
                    )
                    .await;
                }
                Some(acceptor) => {
                    // The handshake runs in the connection's task so a slow client holds up no one.
                    let tls = match tokio::time::timeout(
                        limits.header_read_timeout,
                        acceptor.accept(StallGuard::new(stream, limits.idle_timeout)),
                    )
                    .await
                    {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            return tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                    };
                    conn::serve(
                        peer,
                        |activity| {
                            shared
                                .builder
                                .serve_connection_with_upgrades(
                                    TokioIo::new(tls),
                                    service(activity, None),
                                )
                                .into_owned()
                        },
                        limits.idle_timeout,
                        shared.stop.clone(),
                    )
                    .await;
                }
            }
            drop(permit);
        });
    }
}
