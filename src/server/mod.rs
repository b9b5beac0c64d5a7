//! The HTTP server, the roof of the map: listeners and TLS termination, one accept loop, top-level
//! routing to the registry, XRPC, token service and pages, operator endpoints (`ops`, `storage`)
//! and graceful shutdown. Imported by `cli` alone.

// Until every handler names `crate::http::body` itself.
use crate::http::body;
use crate::http::sendfile::FileSends;
use crate::http::{PeerAddr, request_host};
pub mod conn;
mod listen;
pub mod ops;
pub mod role;
pub mod storage;
pub mod usage;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::CONTENT_TYPE;
use http::{HeaderName, HeaderValue, Method, Request, Response};
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::appview::AppView;
use crate::appview::index::Index;
use crate::auth::service::TokenService;
use crate::auth::{self, Realm, Tokens};
use crate::config::Role;
use crate::hold::Hold;
use crate::oci::{ErrorCode, OciEndpoint, OciError};
use crate::pds::Pds;
use crate::registry::Registry;
use body::{Body, RequestBody};
pub use conn::ServerLimits;
pub use listen::{Listener, run};

const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");

/// Everything the server dispatches to.
pub struct App {
    pub registry: Registry,
    pub pds: Arc<Pds>,
    pub hold: Arc<Hold>,
    pub auth: TokenService,
    pub metrics: ops::Metrics,
    pub disk: ops::DiskFloor,
    /// The node-managed CA certificate (PEM), served at `/ca.crt`.
    pub ca_pem: Option<String>,
    /// Its SHA-256 fingerprint, as `openssl x509 -fingerprint -sha256` prints it.
    pub ca_fingerprint: Option<String>,
    /// The bearer token `/metrics` requires (`server.metrics_token_file`); `None`: open.
    pub metrics_token: Option<String>,
    /// What this node serves: with [`Role::Hold`], no OCI API, token service or web pages.
    pub role: Role,
}

/// Why a node could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error("hold: {0}")]
    Hold(#[from] crate::hold::HoldError),
    #[error("index: {0}")]
    AppView(#[from] crate::appview::AppViewError),
    #[error("accounts: {0}")]
    Pds(#[from] crate::pds::PdsError),
}

/// The account a node creates on its first start.
pub const ADMIN: &str = "admin";

impl App {
    /// Puts the roles together over an open PDS and registry index: the hold (its captain
    /// record written on first start), the registry with its index caught up with the PDS
    /// event log, and the token service.
    pub async fn assemble(
        pds: Pds,
        index: Index,
        search: Arc<crate::search::Search>,
    ) -> Result<App, AssembleError> {
        let pds = Arc::new(pds);
        let hold = Arc::new(Hold::new(pds.clone()));
        hold.ensure_captain().await?;
        // A private hold keeps the repositories' contents to its crew (weak: the hold owns
        // the PDS, not the other way round).
        let rules = Arc::downgrade(&hold);
        let _ = pds.read_policy.set(Box::new(move |caller| {
            rules.upgrade().is_some_and(|h| {
                h.allows(caller, crate::hold::Permission::BlobRead)
                    .unwrap_or(false)
            })
        }));
        let appview = Arc::new(AppView::new(pds.clone(), index, search)?);
        // The hold's crew are whom the operator vouches for: their PDSes are followed first.
        let crew = Arc::downgrade(&hold);
        appview.vouch_for(Box::new(move |did| {
            crew.upgrade()
                .is_some_and(|h| h.member(did).ok().flatten().is_some())
        }));
        appview.catch_up_and_sync().await?;
        let tokens = Tokens::new(
            pds.keys.token.clone(),
            &pds.node_did,
            &pds.settings.public_host,
        );
        let registry = Registry::new(appview.clone());
        let sessions = Arc::downgrade(&hold);
        registry.share_uploads(Box::new(move |id| {
            sessions.upgrade().is_some_and(|h| h.owns_upload(id))
        }));
        Ok(App {
            auth: TokenService::new(tokens, appview.clone(), hold.clone()),
            registry,
            pds,
            hold,
            metrics: ops::Metrics::default(),
            disk: ops::DiskFloor::default(),
            ca_pem: None,
            ca_fingerprint: None,
            metrics_token: None,
            role: Role::Full,
        })
    }

    /// On a node with no accounts at all (its first start), creates the administrator
    /// account `admin` with `password`, owner of the hold's crew administration, and returns
    /// true. Later starts do nothing and return false.
    pub async fn first_start(&self, password: &str) -> Result<bool, AssembleError> {
        let accounts = self
            .pds
            .accounts
            .list()
            .map_err(crate::pds::PdsError::from)?;
        if !accounts.is_empty() {
            return Ok(false);
        }
        let account = self.pds.create_account(ADMIN, password, true).await?;
        self.hold
            .add_crew(
                &account.did,
                "admin",
                &[
                    crate::hold::Permission::BlobRead,
                    crate::hold::Permission::BlobWrite,
                    crate::hold::Permission::CrewAdmin,
                ],
            )
            .await?;
        Ok(true)
    }

    /// The background task that keeps the registry index current with the PDS event log;
    /// it runs until `shutdown`.
    pub fn indexer(&self, shutdown: CancellationToken) -> impl Future<Output = ()> + use<> {
        self.registry.appview().clone().run_indexer(shutdown)
    }

    /// The background task that follows the PDSes of remote users (their records changed
    /// there); it runs until `shutdown`.
    pub fn remote_follower(&self, shutdown: CancellationToken) -> impl Future<Output = ()> + use<> {
        self.registry
            .appview()
            .clone()
            .run_remote_follower(shutdown)
    }

    /// The background task that reopens a store after a storage error (a full disk) once it
    /// can; it runs until `shutdown`.
    pub fn storage_recovery(
        self: &Arc<Self>,
        shutdown: CancellationToken,
    ) -> impl Future<Output = ()> + use<> {
        let app = self.clone();
        async move {
            let mut ticks = tokio::time::interval(storage::RECOVERY_INTERVAL);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    () = shutdown.cancelled() => return,
                }
                if let Err(e) = storage::recovery_tick(&app).await {
                    tracing::error!(error = %e, "storage still failing");
                }
            }
        }
    }

    /// The background task that keeps the search index current with the registry index.
    pub fn searcher(&self, shutdown: CancellationToken) -> impl Future<Output = ()> + use<> {
        self.registry.appview().clone().run_search(shutdown)
    }

    /// `/readyz` turns red when the filesystem holding `path` has less than `min_free_bytes`.
    #[must_use]
    pub fn with_disk_floor(mut self, path: std::path::PathBuf, min_free_bytes: u64) -> App {
        self.disk = ops::DiskFloor {
            path: Some(path),
            min_free_bytes,
        };
        self
    }

    /// Where clients get tokens, as seen by a request to `host` over `scheme` (the listener's:
    /// a client that came over HTTPS is sent to HTTPS, whatever else the node serves).
    fn realm(&self, uri: &http::Uri, headers: &http::HeaderMap, scheme: &str) -> Realm {
        let host = request_host(uri, headers).unwrap_or(&self.pds.settings.public_host);
        Realm {
            realm: format!("{scheme}://{host}/auth/token"),
            service: self.auth.tokens.service().to_owned(),
        }
    }
}

/// The connection a request came on.
struct Conn {
    peer: SocketAddr,
    scheme: &'static str,
    in_flight: conn::InFlight,
    /// On plain connections: how blob bodies are sent with `sendfile` (HTTP/1 only).
    sends: Option<FileSends>,
}

async fn handle(
    app: Arc<App>,
    at: Conn,
    limits: ServerLimits,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let Conn {
        peer,
        scheme,
        in_flight,
        sends,
    } = at;
    let started = Instant::now();
    if let Some(sends) = sends
        && req.version() < http::Version::HTTP_2
    {
        req.extensions_mut().insert(sends);
    }
    req.extensions_mut()
        .insert(crate::pds::login::ClientAddr(peer.ip()));
    // Kept for the log line of a failure; cheap clones of shared buffers.
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let span = tracing::debug_span!("request", %method, path = %uri.path(), %peer);
    let mut req = req.map(|b| RequestBody::new(b, limits.body_read_timeout));
    req.extensions_mut().insert(PeerAddr(peer));
    async move {
        let (label, result) = dispatch(&app, scheme, req).await;
        let mut response = result.unwrap_or_else(error_response);
        response
            .headers_mut()
            .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
        let status = response.status().as_u16();
        let micros = started.elapsed().as_micros() as u64;
        let sent = http_body::Body::size_hint(response.body())
            .exact()
            .unwrap_or(0);
        app.metrics.record(label, status, sent);
        // 501 is an XRPC method this node does not implement: the client's doing, not a failure.
        if status >= 500 && status != 501 {
            tracing::error!(%method, path = ?uri.path(), %peer, status, micros, "request failed");
        } else {
            tracing::debug!(status, micros, "answered");
        }
        // The request stays in flight (its connection busy) until its body is sent.
        Ok(response.map(|body| in_flight.until_sent(body)))
    }
    .instrument(span)
    .await
}

/// Routes a request; returns the endpoint label for metrics with the answer.
async fn dispatch(
    app: &App,
    scheme: &str,
    req: Request<RequestBody>,
) -> (&'static str, Result<Response<Body>, OciError>) {
    let path = match percent_decode(req.uri().path()) {
        Ok(path) => path,
        Err(e) => return ("invalid", Err(e)),
    };
    match (req.method(), path.as_str()) {
        (&Method::GET | &Method::HEAD, "/healthz") => return ("healthz", Ok(ops::healthz())),
        (&Method::GET | &Method::HEAD, "/readyz") => return ("readyz", Ok(ops::readyz(app).await)),
        (&Method::GET, "/metrics") => {
            return ("metrics", Ok(ops::metrics_if_allowed(app, req.headers())));
        }
        (&Method::GET | &Method::HEAD, "/ca.crt") => {
            return ("ca_crt", Ok(ops::ca_certificate(app)));
        }
        _ => {}
    }
    if let Some(nsid) = path.strip_prefix("/xrpc/")
        && nsid.starts_with("io.atcr.hold.")
    {
        let nsid = nsid.to_owned();
        let (label, response) = crate::hold::xrpc::handle(&app.hold, req, &nsid).await;
        return (label, Ok(response));
    }
    if let Some(nsid) = path.strip_prefix("/xrpc/")
        && crate::hold::blobs::serves(&app.hold, nsid, req.uri().query())
    {
        let response = crate::hold::blobs::get_blob(&app.hold, req).await;
        return (crate::hold::blobs::GET_BLOB, Ok(response));
    }
    if crate::pds::xrpc::serves(&path) {
        // Callers without credentials hear 401 from the handler, not about the disk.
        if *req.method() == Method::POST
            && req.headers().contains_key(http::header::AUTHORIZATION)
            && let Some((label, refusal)) = storage::refuse_xrpc_write(app, &path)
        {
            return (label, Ok(refusal.response()));
        }
        let (label, response) = crate::pds::xrpc::handle(&app.pds, req, &path).await;
        return (label, Ok(response));
    }
    if app.role == Role::Hold {
        return if crate::web::serves(&path) {
            ("web", Ok(role::no_web_pages(app)))
        } else {
            ("hold_only", Err(role::not_a_registry()))
        };
    }
    if path == "/auth/token" {
        return ("auth_token", app.auth.handle(req).await);
    }
    if crate::web::serves(&path) {
        let site = crate::web::Site {
            appview: app.registry.appview(),
            pds: &app.pds,
            hold: &app.hold,
            ca_fingerprint: app.ca_fingerprint.as_deref(),
        };
        return (
            "web",
            Ok(crate::web::handle(site, req, &path, scheme).await),
        );
    }
    match OciEndpoint::parse(req.method(), &path, req.uri().query()) {
        Ok(Some(endpoint)) => {
            // The challenge's realm is only built for a refusal.
            let realm = || app.realm(req.uri(), req.headers(), scheme);
            let grant = match auth::authorize(
                &app.auth,
                &realm,
                &endpoint,
                (req.method(), req.uri()),
                req.headers(),
                crate::pds::accounts::now_secs(),
            ) {
                Ok(grant) => grant,
                Err(e) => return (endpoint.kind(), Err(e)),
            };
            if let Err(e) = storage::refuse_oci_write(app, req.method()) {
                return (endpoint.kind(), Err(e));
            }
            (
                endpoint.kind(),
                app.registry.handle(endpoint, req, &grant).await,
            )
        }
        Ok(None) => (
            "not_found",
            Err(OciError::new(ErrorCode::Unsupported, "no such endpoint")
                .with_status(http::StatusCode::NOT_FOUND)),
        ),
        Err(e) => ("invalid", Err(e)),
    }
}

/// Decodes `%XX` escapes in a path (clients may escape the `:` of a digest).
fn percent_decode(path: &str) -> Result<String, OciError> {
    if !path.contains('%') {
        return Ok(path.to_owned());
    }
    let bad = || {
        OciError::new(ErrorCode::Unsupported, "malformed percent-encoding in path")
            .with_status(http::StatusCode::BAD_REQUEST)
    };
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = path.get(i + 1..i + 3).ok_or_else(bad)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

fn error_response(e: OciError) -> Response<Body> {
    if e.status.is_server_error() {
        tracing::error!(code = e.code.as_str(), message = ?e.message, "request failed");
    } else {
        // Escaped: messages may quote the (decoded) request.
        tracing::debug!(code = e.code.as_str(), message = ?e.message, "request refused");
    }
    let mut response = Response::new(body::json(&e.body()));
    *response.status_mut() = e.status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in e.headers {
        headers.insert(name, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escaped_digests() {
        assert_eq!(
            percent_decode("/v2/r/blobs/sha256%3Aab").unwrap(),
            "/v2/r/blobs/sha256:ab"
        );
        assert_eq!(percent_decode("/v2/").unwrap(), "/v2/");
        assert!(percent_decode("/v2/%zz").is_err());
        assert!(percent_decode("/v2/%4").is_err());
        assert!(percent_decode("/v2/%ff").is_err());
    }
}
