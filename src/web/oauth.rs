//! Signing in to the pages with an account on another PDS, through ATProto OAuth: the node is
//! the client. The user types their handle; the node resolves it, finds their PDS's
//! authorization server, pushes the request (PAR, PKCE S256, a DPoP key of the session's own)
//! and sends the browser there; the user signs in and approves *at their PDS*; the browser comes
//! back to `/oauth/callback`, whose `state` (single use, bound to this browser by a cookie) and
//! `iss` are checked before the code is exchanged (DPoP-bound tokens, `sub` = the DID the
//! handle resolved to). The session's tokens write the user's stars to *their* repository
//! (see `pds::remote_repo`; pushes use the session of their docker login); it is kept in
//! `pds.redb` and revoked at sign-out.
//!
//! Which client: on a loopback address over plain HTTP the node is a development client
//! (`http://localhost?redirect_uri=…&scope=…`, nothing to publish, a public client); over
//! HTTPS it is a confidential web client: its metadata is
//! `https://<host>/oauth/client-metadata.json`, naming its key set `https://<host>/oauth/jwks.json`
//! (the public half of `keys/oauth-client.key`), and it authenticates every PAR, token, refresh
//! and revocation request with a private-key JWT signed by that key (`pds::oauth::ClientAuth`).

use http::header::COOKIE;
use http::{Response, StatusCode};
use maud::html;

use super::{Cx, page, redirect};
use crate::http::body::{self, Body};
use crate::pds::{OAUTH_PENDING_FOR, OAuthClient, OAuthReturn};

/// The scopes asked for, and no more: writes to ATCR's collections of the account's
/// repository (manifests, tags, stars) and blob uploads (the manifest blobs). The user's PDS
/// refuses these sessions any other write (`ScopeMissingError`).
pub const SCOPE: &str =
    "atproto repo:io.atcr.manifest repo:io.atcr.tag repo:io.atcr.sailor.star blob:*/*";
/// The cookie that binds an authorization to the browser that started it.
const STATE_COOKIE: &str = "atcr_oauth";

/// This node as an OAuth client for a request to `cx`: (`client_id`, `redirect_uri`), or why
/// it cannot be one on this address.
fn client_of(cx: &Cx<'_>) -> Result<(String, String), String> {
    let host = cx.host.as_str();
    if cx.https {
        return Ok((
            format!("https://{host}/oauth/client-metadata.json"),
            format!("https://{host}/oauth/callback"),
        ));
    }
    let (name, port) = host.rsplit_once(':').unwrap_or((host, "80"));
    if name == "localhost" {
        // The PDS sends the browser back to a loopback address, never to `localhost`; the
        // cookie that binds the sign-in to the browser must be that address's.
        return Err(format!(
            "Open this page at http://127.0.0.1:{port}/signin to sign in with another PDS."
        ));
    }
    if !matches!(name, "127.0.0.1" | "[::1]") {
        return Err(
            "Signing in with another PDS needs this node over HTTPS (or on this machine's loopback address).".into(),
        );
    }
    let redirect_uri = format!("http://{name}:{port}/oauth/callback");
    let client_id = format!(
        "http://localhost?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("scope", SCOPE)
            .finish()
    );
    Ok((client_id, redirect_uri))
}

/// The client metadata document (HTTPS nodes).
pub(super) fn client_metadata(cx: &Cx<'_>) -> Option<Response<Body>> {
    let (client_id, redirect_uri) = client_of(cx).ok().filter(|_| cx.https)?;
    let doc = serde_json::json!({
        "client_id": client_id,
        "client_name": "atcr",
        "client_uri": format!("https://{}", cx.host),
        "redirect_uris": [redirect_uri],
        "scope": SCOPE,
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_signing_alg": "ES256",
        "jwks_uri": format!("https://{}/oauth/jwks.json", cx.host),
        "application_type": "web",
        "dpop_bound_access_tokens": true,
    });
    Some(json_response(&doc))
}

/// The client's public key set (HTTPS nodes).
pub(super) fn client_jwks(cx: &Cx<'_>) -> Option<Response<Body>> {
    cx.https
        .then(|| json_response(&cx.site.pds.oauth_client_jwks()))
}

fn json_response(doc: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(body::full(doc.to_string()));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// `POST /oauth/signin` (`handle`, `next`): starts an authorization at the user's PDS.
pub(super) async fn start(
    cx: &Cx<'_>,
    handle: &str,
    next: &str,
    client: std::net::IpAddr,
) -> Response<Body> {
    if !cx.site.pds.oauth_pending.may_start(client) {
        let why = "Too many sign-ins started from your address; wait a few minutes.";
        return failed(cx, StatusCode::TOO_MANY_REQUESTS, why);
    }
    // Handles are case-insensitive (DIDs are not).
    let handle = handle.trim();
    let handle = if handle.starts_with("did:") {
        handle.to_owned()
    } else {
        handle.to_ascii_lowercase()
    };
    match begin(cx, &handle, next).await {
        Ok(r) => r,
        Err(why) => failed(cx, StatusCode::BAD_REQUEST, &why),
    }
}

async fn begin(cx: &Cx<'_>, handle: &str, next: &str) -> Result<Response<Body>, String> {
    let (client_id, redirect_uri) = client_of(cx)?;
    let client = OAuthClient {
        client_id,
        redirect_uri,
        scope: SCOPE,
    };
    let (state, go) = cx.site.pds.oauth_begin(handle, client, next).await?;
    let secure = if cx.https { "; Secure" } else { "" };
    // Lax: the browser comes back from the PDS by a top-level navigation.
    let cookie = format!(
        "{STATE_COOKIE}={state}; Path=/oauth; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        OAUTH_PENDING_FOR.as_secs()
    );
    Ok(redirect(&go, Some(&cookie)))
}

/// `GET /oauth/callback?code&state&iss` (or `error`): finishes the authorization; the user
/// signed in and where they were going (for the caller to open their web session), or the
/// page saying why not.
pub(super) async fn callback(
    cx: &Cx<'_>,
    query: Option<&str>,
    headers: &http::HeaderMap,
) -> Result<(crate::atproto::Did, String), Response<Body>> {
    let params: Vec<(String, String)> =
        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    match finish_signin(
        cx,
        param("state"),
        param("code"),
        param("iss"),
        param("error"),
        headers,
    )
    .await
    {
        Ok(signed_in) => Ok(signed_in),
        Err(why) => {
            tracing::info!(reason = ?why, "OAuth sign-in refused");
            Err(failed(cx, StatusCode::BAD_REQUEST, &why))
        }
    }
}

async fn finish_signin(
    cx: &Cx<'_>,
    state: Option<&str>,
    code: Option<&str>,
    iss: Option<&str>,
    error: Option<&str>,
    headers: &http::HeaderMap,
) -> Result<(crate::atproto::Did, String), String> {
    let state = state.ok_or("The sign-in came back without its state.")?;
    let cookie = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|p| p.trim().strip_prefix(STATE_COOKIE)?.strip_prefix('='));
    let back = OAuthReturn {
        state,
        browser_state: cookie,
        code,
        iss,
        error,
    };
    cx.site.pds.oauth_finish(back).await
}

fn failed(cx: &Cx<'_>, status: StatusCode, why: &str) -> Response<Body> {
    page(
        status,
        "Sign-in failed",
        cx,
        html! {
            h1 { "Sign-in failed" }
            p.error { (why) }
            p { a href="/signin" { "Back to signing in" } }
        },
    )
}
