//! HTTP surface of the PDS: `/xrpc/<nsid>`, `/.well-known/…` and the built-in PLC directory
//! (`/did:plc:…`). Errors are XRPC-shaped: `{"error": "<Name>", "message": "…"}`.

mod directory;
mod lookup;
mod method;
mod repo;
mod server;
pub mod subscribe;
mod sync;

use std::collections::HashMap;

use crate::http::body::RequestBody;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};

use super::Pds;
use super::accounts::AccountError;
use super::login::LoginError;
use super::repo::RepoError;
use super::store::StoreError;
use super::{PdsError, auth};
use crate::atproto::Did;
use crate::http::body::{self, Body};
pub(crate) use lookup::resolve_repo;
pub use method::{UNKNOWN_LABEL, XrpcKind, XrpcMethod};

/// Largest JSON request body.
const MAX_JSON_BODY: usize = 1 << 20;

/// An XRPC error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XrpcError {
    pub status: StatusCode,
    pub error: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (a 429).
    pub retry_after: Option<u64>,
}

impl XrpcError {
    pub fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        XrpcError {
            status,
            error,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidRequest", message)
    }
    pub fn auth_required(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "AuthRequired", message)
    }
    /// 501 `MethodNotImplemented`: the node serves no method of that NSID.
    #[must_use]
    pub fn not_implemented(nsid: &str) -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            "MethodNotImplemented",
            format!("method not implemented: {nsid}"),
        )
    }
    #[must_use]
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "internal server error",
        )
    }

    /// The JSON answer. Messages may quote the client (a method name, a parameter), so they are
    /// logged escaped (`?`): a `\n` in a request cannot start a forged log line. An unknown
    /// method (501) is the client's doing and is no error of the node's.
    #[must_use]
    pub fn response(&self) -> Response<Body> {
        if self.status.is_server_error() && self.status != StatusCode::NOT_IMPLEMENTED {
            tracing::error!(error = self.error, message = ?self.message, "xrpc request failed");
        } else {
            tracing::debug!(error = self.error, message = ?self.message, "xrpc request refused");
        }
        let mut r = json_response(
            self.status,
            &serde_json::json!({"error": self.error, "message": self.message}),
        );
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}

impl From<LoginError> for XrpcError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::Refused => XrpcError::new(
                StatusCode::UNAUTHORIZED,
                "AuthenticationRequired",
                "invalid identifier or password",
            ),
            LoginError::RateLimited(_) => XrpcError {
                retry_after: e.retry_after(),
                ..XrpcError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RateLimitExceeded",
                    e.to_string(),
                )
            },
            LoginError::Unavailable(_) => XrpcError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "UpstreamFailure",
                "the password cannot be checked now; try again later",
            ),
            LoginError::Account(e) => e.into(),
            e @ LoginError::Task(_) => internal(&e),
        }
    }
}

fn internal(e: &dyn std::fmt::Display) -> XrpcError {
    tracing::error!(error = %e, "pds internal error");
    XrpcError::internal()
}

impl From<StoreError> for XrpcError {
    fn from(e: StoreError) -> Self {
        if e.is_storage_failure() {
            return storage_failed(&e);
        }
        internal(&e)
    }
}

/// 507 `StorageFull`: the disk is full (or failing) and the store refuses writes until it
/// recovers; the detail is logged only.
pub fn storage_failed(e: &dyn std::fmt::Display) -> XrpcError {
    tracing::error!(error = %e, "pds storage failed");
    XrpcError::new(
        StatusCode::INSUFFICIENT_STORAGE,
        "StorageFull",
        "the server's storage is full or failing; try again later",
    )
}

impl From<AccountError> for XrpcError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::HandleTaken(h) => {
                XrpcError::new(StatusCode::BAD_REQUEST, "HandleNotAvailable", h)
            }
            AccountError::NotFound(d) => {
                XrpcError::new(StatusCode::BAD_REQUEST, "AccountNotFound", d)
            }
            e @ (AccountError::TooManyAppPasswords | AccountError::PasswordTooShort(_)) => {
                XrpcError::invalid(e.to_string())
            }
            e => internal(&e),
        }
    }
}

impl From<RepoError> for XrpcError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::RepoNotFound(d) => XrpcError::new(
                StatusCode::NOT_FOUND,
                "RepoNotFound",
                format!("could not find repo: {d}"),
            ),
            RepoError::InvalidSwap(m) => XrpcError::new(StatusCode::CONFLICT, "InvalidSwap", m),
            RepoError::InvalidRequest(m) => XrpcError::invalid(m),
            // As the reference PDS words it; the whole batch fails.
            e @ RepoError::RecordNotFound(_) => XrpcError::invalid(e.to_string()),
            RepoError::Store(e) => e.into(),
            e => internal(&e),
        }
    }
}

impl From<PdsError> for XrpcError {
    fn from(e: PdsError) -> Self {
        match e {
            PdsError::Invalid(m) => XrpcError::invalid(m),
            PdsError::Account(e) => e.into(),
            PdsError::Repo(e) => e.into(),
            PdsError::Upstream(m) => XrpcError::new(StatusCode::BAD_GATEWAY, "UpstreamFailure", m),
            e => internal(&e),
        }
    }
}

pub(crate) fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(body::json(value));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

#[allow(clippy::unnecessary_wraps)] // Handlers end with it: `ok_json(&v)` reads as the answer.
pub(crate) fn ok_json(value: &serde_json::Value) -> Result<Response<Body>, XrpcError> {
    Ok(json_response(StatusCode::OK, value))
}

/// Whether the PDS serves `path`.
#[must_use]
pub fn serves(path: &str) -> bool {
    path.starts_with("/xrpc/") || path.starts_with("/.well-known/") || path.starts_with("/did:plc:")
}

/// Answers a request for a path [`serves`] accepted. Returns the endpoint label for metrics:
/// the NSID of a method the node serves, [`UNKNOWN_LABEL`] for any other, `well_known` and
/// `plc_directory` for the rest.
pub async fn handle(
    pds: &Pds,
    req: Request<RequestBody>,
    path: &str,
) -> (&'static str, Response<Body>) {
    let (label, result) = if let Some(nsid) = path.strip_prefix("/xrpc/") {
        match XrpcMethod::parse(nsid) {
            Some(method) => (method.nsid(), answer(pds, method, Call::new(req)).await),
            None => (UNKNOWN_LABEL, Err(XrpcError::not_implemented(nsid))),
        }
    } else if path.starts_with("/.well-known/") {
        ("well_known", directory::well_known(pds, &req, path))
    } else {
        ("plc_directory", directory::plc(pds, req, path).await)
    };
    (label, result.unwrap_or_else(|e| e.response()))
}

/// Refuses a read the read policy does not admit, then a call with the wrong HTTP method, then
/// hands the call to the method's handler.
async fn answer(pds: &Pds, method: XrpcMethod, call: Call) -> Result<Response<Body>, XrpcError> {
    if method.reads_repository() {
        read_gate(pds, &call)?;
    }
    call.check_kind(method.kind())?;
    route(pds, method, call).await
}

/// Refuses a read method to a caller the read policy does not admit: 401 without a session,
/// 403 with one (unless the call names the caller's own repository).
fn read_gate(pds: &Pds, call: &Call) -> Result<(), XrpcError> {
    if pds.may_read(None) {
        return Ok(());
    }
    if call.bearer().is_none() {
        return Err(XrpcError::auth_required(
            "this node's repositories are readable by its crew only",
        ));
    }
    let caller = authenticate(pds, call)?;
    let own = [call.param("repo"), call.param("did")]
        .into_iter()
        .flatten()
        .any(|r| r == caller.did.as_str());
    if own || pds.may_read(Some(&caller.did)) {
        return Ok(());
    }
    Err(XrpcError::new(
        StatusCode::FORBIDDEN,
        "Forbidden",
        "this node's repositories are readable by its crew only",
    ))
}

/// One XRPC call: method, query parameters, headers and (unread) body.
pub(crate) struct Call {
    pub method: Method,
    pub params: HashMap<String, Vec<String>>,
    pub req: Request<RequestBody>,
}

impl Call {
    pub(crate) fn new(req: Request<RequestBody>) -> Call {
        let mut params: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
            params
                .entry(k.into_owned())
                .or_default()
                .push(v.into_owned());
        }
        Call {
            method: req.method().clone(),
            params,
            req,
        }
    }

    /// Refuses a call made with an HTTP method the XRPC method does not take: 405.
    pub fn check_kind(&self, kind: XrpcKind) -> Result<(), XrpcError> {
        if kind.admits(&self.method) {
            return Ok(());
        }
        Err(XrpcError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "InvalidRequest",
            format!("this method takes {}", kind.http_method()),
        ))
    }

    /// The caller's address (see [`crate::pds::login::ClientAddr`]).
    pub fn client(&self) -> std::net::IpAddr {
        crate::pds::login::ClientAddr::of(&self.req)
    }

    /// A single-valued query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    pub fn required(&self, name: &str) -> Result<&str, XrpcError> {
        self.param(name)
            .ok_or_else(|| XrpcError::invalid(format!("parameter {name} is required")))
    }

    /// `limit`, clamped to 1..=`max`.
    pub fn limit(&self, default: usize, max: usize) -> Result<usize, XrpcError> {
        match self.param("limit") {
            None => Ok(default),
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| XrpcError::invalid(format!("limit must be 1 to {max}"))),
        }
    }

    pub fn flag(&self, name: &str) -> Result<bool, XrpcError> {
        match self.param(name) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(_) => Err(XrpcError::invalid(format!("{name} must be true or false"))),
        }
    }

    pub fn bearer(&self) -> Option<&str> {
        self.req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
    }

    /// The body, at most `limit` bytes (413 beyond).
    pub async fn body(self, limit: usize) -> Result<Bytes, XrpcError> {
        match Limited::new(self.req.into_body(), limit).collect().await {
            Ok(c) => Ok(c.to_bytes()),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                Err(XrpcError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "PayloadTooLarge",
                    format!("request body is larger than {limit} bytes"),
                ))
            }
            Err(e) => Err(XrpcError::invalid(format!(
                "reading the request body failed: {e}"
            ))),
        }
    }

    /// The JSON object body.
    pub async fn json(self) -> Result<serde_json::Value, XrpcError> {
        let bytes = self.body(MAX_JSON_BODY).await?;
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| XrpcError::invalid(format!("request body is not JSON: {e}")))?;
        if !v.is_object() {
            return Err(XrpcError::invalid("request body must be a JSON object"));
        }
        Ok(v)
    }
}

/// The caller of an authenticated call.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub did: Did,
    pub claims: auth::Claims,
}

/// Checks the access token of a call.
pub(crate) fn authenticate(pds: &Pds, call: &Call) -> Result<Caller, XrpcError> {
    let token = call
        .bearer()
        .ok_or_else(|| XrpcError::auth_required("authentication required"))?;
    let claims = check_token(pds, token, "at+jwt")?;
    let sid = claims.sid.clone().ok_or_else(|| {
        XrpcError::new(
            StatusCode::UNAUTHORIZED,
            "InvalidToken",
            "token has no session",
        )
    })?;
    // A session whose refresh token was used lives on only for the grace refresh: its access
    // tokens end with the rotation.
    if pds
        .accounts
        .session(&sid)?
        .is_none_or(|s| s.rotated.is_some())
    {
        return Err(XrpcError::new(
            StatusCode::UNAUTHORIZED,
            "ExpiredToken",
            "session has ended",
        ));
    }
    let did = claims
        .sub
        .parse()
        .map_err(|_| XrpcError::new(StatusCode::UNAUTHORIZED, "InvalidToken", "bad subject"))?;
    Ok(Caller { did, claims })
}

pub(crate) fn check_token(pds: &Pds, token: &str, typ: &str) -> Result<auth::Claims, XrpcError> {
    pds.verified_tokens
        .check(
            token,
            &pds.keys.token.public_key(),
            typ,
            pds.node_did.as_str(),
            super::accounts::now_secs(),
        )
        .map_err(|e| match e {
            auth::TokenError::Expired => XrpcError::new(
                StatusCode::UNAUTHORIZED,
                "ExpiredToken",
                "token has expired",
            ),
            e => XrpcError::new(StatusCode::UNAUTHORIZED, "InvalidToken", e.to_string()),
        })
}

async fn route(pds: &Pds, method: XrpcMethod, call: Call) -> Result<Response<Body>, XrpcError> {
    use XrpcMethod as M;
    match method {
        M::DescribeServer => server::describe(pds),
        M::CreateSession => server::create_session(pds, call).await,
        M::RefreshSession => server::refresh_session(pds, &call),
        M::GetSession => server::get_session(pds, &call),
        M::DeleteSession => server::delete_session(pds, &call),
        M::CreateAppPassword => server::create_app_password(pds, call).await,
        M::ListAppPasswords => server::list_app_passwords(pds, &call),
        M::RevokeAppPassword => server::revoke_app_password(pds, call).await,
        M::GetServiceAuth => server::get_service_auth(pds, &call),
        M::ResolveHandle => server::resolve_handle(pds, &call),
        M::CreateRecord => repo::create_record(pds, call).await,
        M::PutRecord => repo::put_record(pds, call).await,
        M::DeleteRecord => repo::delete_record(pds, call).await,
        M::ApplyWrites => repo::apply_writes(pds, call).await,
        M::UploadBlob => repo::upload_blob(pds, call).await,
        M::GetRecord => repo::get_record(pds, &call),
        M::ListRecords => repo::list_records(pds, &call),
        M::DescribeRepo => repo::describe_repo(pds, &call),
        M::SyncGetRepo => sync::get_repo(pds, &call),
        M::SyncGetLatestCommit => sync::get_latest_commit(pds, &call),
        M::SyncGetRecord => sync::get_record(pds, &call),
        M::SyncGetBlocks => sync::get_blocks(pds, &call).await,
        M::SyncGetBlob => sync::get_blob(pds, &call).await,
        M::SyncListBlobs => sync::list_blobs(pds, &call),
        M::SyncListRepos => sync::list_repos(pds, &call),
        M::SyncGetRepoStatus => sync::get_repo_status(pds, &call),
        M::SyncSubscribeRepos => subscribe::upgrade(pds, call),
    }
}
