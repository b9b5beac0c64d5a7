//! What a node of role `hold` answers where a full node has its registry: the OCI API and
//! `/auth/token` with an OCI error, the web pages with a short note naming the hold.

use http::header::{CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use http::{HeaderValue, Response, StatusCode};

use super::App;
use crate::http::body::{self, Body};
use crate::oci::{ErrorCode, OciError};

/// What a hold says to registry clients (`docker`, `podman`, …) pointed at it.
pub const HOLD_ONLY: &str = "this node is a hold: push and pull through the registry that uses it";

/// The answer of a hold to a request for a registry path (`/v2/…`, `/auth/token`, anything
/// else neither the PDS nor the hold serves): 404 `UNSUPPORTED`.
#[must_use]
pub fn not_a_registry() -> OciError {
    OciError::new(ErrorCode::Unsupported, HOLD_ONLY).with_status(StatusCode::NOT_FOUND)
}

/// The answer of a hold to a browser asking for a web page: 404 and one line naming the hold,
/// so whoever typed its address learns what it is and where to go instead.
#[must_use]
pub fn no_web_pages(app: &App) -> Response<Body> {
    let text = format!(
        "This is an atcr hold, {}: blob storage for a registry elsewhere. It has no web pages; \
         browse, push and pull through the registry that uses it.\n",
        app.pds.node_did
    );
    let mut response = Response::new(body::full(text));
    *response.status_mut() = StatusCode::NOT_FOUND;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}
