//! Signing in to the pages with an account on another PDS, through ATProto OAuth: the node is
//! the client. The user types their handle; the node resolves it, finds their PDS's
//! authorization server, pushes the request (PAR, PKCE S256, a DPoP key of the session's own)
//! and sends the browser there; the user signs in and approves *at their PDS*; the browser comes
//! back to `/oauth/callback`, whose `state` (single use, bound to this browser by a cookie) and
//! `iss` are checked before the code is exchanged (DPoP-bound tokens, `sub` = the DID the
//! handle resolved to). The session's tokens write the user's stars to *their* repository
//! and push their images (see `pds::remote_repo`); it is kept in `pds.redb` and revoked at
//! sign-out.
//!
//! Which client: on a loopback address over plain HTTP the node is a development client
//! (`http://localhost?redirect_uri=…&scope=…`, nothing to publish); over HTTPS its client
//! metadata is `https://<host>/oauth/client-metadata.json` (a public web client).

use http::header::COOKIE;
use http::{Response, StatusCode};
use maud::html;

use super::{Cx, page, redirect};
use crate::http::body::{self, Body};
use crate::pds::oauth::{self as client, DpopKey, Pending};
use crate::pds::remote_repo::{OAuthGrant, RemoteSession};
use crate::pds::store::RemoteUser;

/// The scopes asked for: the account's repository and blobs (the reference PDS knows no
/// narrower set for another app's collections yet).
pub const SCOPE: &str = "atproto transition:generic";
/// The cookie that binds an authorization to the browser that started it.
const STATE_COOKIE: &str = "atcr_oauth";

/// This node as an OAuth client for a request to `cx`: (`client_id`, `redirect_uri`), or why
/// it cannot be one on this address.
fn client_of(cx: &Cx<'_>) -> Result<(String, String), &'static str> {
    let host = cx.host.as_str();
    if cx.https {
        return Ok((
            format!("https://{host}/oauth/client-metadata.json"),
            format!("https://{host}/oauth/callback"),
        ));
    }
    let (name, port) = host.rsplit_once(':').unwrap_or((host, "80"));
    if !matches!(name, "127.0.0.1" | "localhost" | "[::1]") {
        return Err(
            "Signing in with another PDS needs this node over HTTPS (or on this machine's loopback address).",
        );
    }
    let loopback = if name == "[::1]" {
        "[::1]"
    } else {
        "127.0.0.1"
    };
    let redirect_uri = format!("http://{loopback}:{port}/oauth/callback");
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
        "token_endpoint_auth_method": "none",
        "application_type": "web",
        "dpop_bound_access_tokens": true,
    });
    let mut r = Response::new(body::full(doc.to_string()));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Some(r)
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
    let pds = cx.site.pds;
    let (client_id, redirect_uri) = client_of(cx).map_err(str::to_owned)?;
    if handle.is_empty() {
        return Err("Give your handle (alice.example.com) or DID.".into());
    }
    // What went wrong with a stranger's servers is logged, not shown: the page would tell
    // anyone what answers where on the node's network.
    let identity = pds.identities.resolve(pds, handle).await.map_err(|e| {
        tracing::info!(%handle, error = %e, "OAuth sign-in: handle not resolved");
        format!("{handle} could not be resolved to an account.")
    })?;
    let local = pds
        .accounts
        .get(&identity.did)
        .map_err(|e| e.to_string())?
        .is_some();
    if local || identity.did == pds.node_did {
        return Err("That account is one of this node's: sign in with its password.".into());
    }
    let unreachable = |e: String| {
        tracing::info!(did = %identity.did, error = %e, "OAuth sign-in: authorization server failed");
        "Your PDS's sign-in could not be reached, or refused the request.".to_owned()
    };
    let server = client::discover(pds, &identity.pds)
        .await
        .map_err(unreachable)?;
    let (verifier, challenge) = client::pkce();
    let state = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        rand::random::<[u8; 24]>(),
    );
    let key = DpopKey::generate();
    let login_hint = identity
        .handle
        .as_ref()
        .map_or_else(|| identity.did.to_string(), ToString::to_string);
    let form = [
        ("client_id", client_id.as_str()),
        ("response_type", "code"),
        ("redirect_uri", redirect_uri.as_str()),
        ("scope", SCOPE),
        ("state", state.as_str()),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("login_hint", login_hint.as_str()),
    ];
    let (status, answer, nonce) = client::dpop_post(pds, &key, &server.par_endpoint, &form, None)
        .await
        .map_err(unreachable)?;
    let request_uri = match (status, answer["request_uri"].as_str()) {
        (200 | 201, Some(uri)) => uri.to_owned(),
        _ => {
            return Err(unreachable(format!(
                "PAR answered {status} {}",
                answer["error"]
            )));
        }
    };
    let go = format!(
        "{}?{}",
        server.authorization_endpoint,
        form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &client_id)
            .append_pair("request_uri", &request_uri)
            .finish()
    );
    let pending = Pending {
        did: identity.did,
        handle: identity.handle.map(|h| h.to_string()),
        endpoint: identity.pds,
        server,
        verifier,
        key,
        client_id,
        redirect_uri,
        next: next.to_owned(),
        server_nonce: nonce,
    };
    if !pds.oauth_pending.put(state.clone(), pending) {
        return Err("Too many sign-ins are under way; try again in a few minutes.".into());
    }
    let secure = if cx.https { "; Secure" } else { "" };
    // Lax: the browser comes back from the PDS by a top-level navigation.
    let cookie = format!(
        "{STATE_COOKIE}={state}; Path=/oauth; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        client::PENDING_FOR.as_secs()
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
            tracing::info!(reason = %why, "OAuth sign-in refused");
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
    let pds = cx.site.pds;
    let state = state.ok_or("The sign-in came back without its state.")?;
    // Single use: a replayed callback (or a forged state) finds nothing.
    let pending = pds
        .oauth_pending
        .take(state)
        .ok_or("This sign-in has expired or was already used; start again.")?;
    let cookie = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|p| p.trim().strip_prefix(STATE_COOKIE)?.strip_prefix('='));
    if cookie != Some(state) {
        return Err("This sign-in was started in another browser; start again here.".into());
    }
    if let Some(error) = error {
        return Err(format!("Your PDS did not grant the sign-in: {error}."));
    }
    if iss.map(|i| i.trim_end_matches('/')) != Some(pending.server.issuer.as_str()) {
        return Err("The sign-in came back from another authorization server than asked.".into());
    }
    let code = code.ok_or("The sign-in came back without a code.")?;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", pending.redirect_uri.as_str()),
        ("code_verifier", pending.verifier.as_str()),
        ("client_id", pending.client_id.as_str()),
    ];
    let (status, answer, nonce) = client::dpop_post(
        pds,
        &pending.key,
        &pending.server.token_endpoint,
        &form,
        pending.server_nonce.clone(),
    )
    .await?;
    let (Some(access), Some(refresh)) = (
        answer["access_token"].as_str(),
        answer["refresh_token"].as_str(),
    ) else {
        return Err(format!(
            "Your PDS's authorization server did not issue tokens ({status} {}).",
            answer["error"].as_str().unwrap_or_default()
        ));
    };
    let dpop = answer["token_type"]
        .as_str()
        .is_some_and(|t| t.eq_ignore_ascii_case("DPoP"));
    let scoped = answer["scope"]
        .as_str()
        .is_some_and(|s| s.split(' ').any(|p| p == "atproto"));
    if answer["sub"].as_str() != Some(pending.did.as_str()) || !dpop || !scoped {
        return Err("The tokens are for another account, or not DPoP-bound.".into());
    }
    let did = pending.did.clone();
    let grant = OAuthGrant::new(pending.key, &pending.server, pending.client_id, nonce);
    let session = RemoteSession::oauth(
        pending.endpoint.clone(),
        access.into(),
        refresh.into(),
        grant,
    );
    pds.keep_remote_session(&did, session).await;
    let user = RemoteUser {
        handle: pending.handle,
        pds: pending.endpoint,
    };
    pds.store()
        .remember_remote_user(&did, user)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(%did, "signed in to the pages through OAuth");
    Ok((did, pending.next))
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
