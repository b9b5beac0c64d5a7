//! `atcr login` for users of other PDSes, the browser's part (the node's is `pds::oauth_cli`):
//! the command opens `/oauth/cli?port=P&state=S&challenge=C`; the user signs in through OAuth at
//! their PDS if not signed in yet, then allows the command (a form with the session's token),
//! and the browser is sent to the command's listener, `http://127.0.0.1:P/callback?code=…&state=S`.
//! The command exchanges the one-time code, with the verifier of `C`, at `POST /oauth/cli/token`
//! for its secret.

use http::{Response, StatusCode};
use maud::html;

use super::{Cx, Viewer, page, redirect};
use crate::http::body::{self, Body};

/// What the command sent the browser with: its listener's port, its state, and the challenge
/// its code will be exchanged with.
struct CliReturn {
    port: u16,
    state: String,
    challenge: String,
}

/// Whether `s` is `n` URL-safe characters, `n` in `len`.
fn url_safe(s: &str, len: std::ops::RangeInclusive<usize>) -> bool {
    len.contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl CliReturn {
    /// The port (not a privileged one), state (16–64 URL-safe characters) and challenge (a
    /// base64url SHA-256) of a link `atcr login` made, from `get`.
    fn parse<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Option<CliReturn> {
        let port = get("port")?.parse::<u16>().ok().filter(|p| *p >= 1024)?;
        let state = get("state").filter(|s| url_safe(s, 16..=64))?;
        let challenge = get("challenge").filter(|c| url_safe(c, 43..=43))?;
        Some(CliReturn {
            port,
            state: state.to_owned(),
            challenge: challenge.to_owned(),
        })
    }

    /// The link again (where a sign-in comes back to).
    fn link(&self) -> String {
        format!(
            "/oauth/cli?port={}&state={}&challenge={}",
            self.port, self.state, self.challenge
        )
    }
}

fn not_a_cli_link(cx: &Cx<'_>) -> Response<Body> {
    message(
        cx,
        StatusCode::BAD_REQUEST,
        "This link is not one `atcr login` made; run it again.",
    )
}

fn message(cx: &Cx<'_>, status: StatusCode, text: &str) -> Response<Body> {
    page(
        status,
        "atcr login",
        cx,
        html! { h1 { "atcr login" } p { (text) } },
    )
}

/// `GET /oauth/cli?port=…&state=…`: sign in first (back here after), then allow the command.
pub(super) fn page_for(cx: &Cx<'_>, query: Option<&str>) -> Response<Body> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let Some(back) = CliReturn::parse(get) else {
        return not_a_cli_link(cx);
    };
    let Some(viewer) = &cx.viewer else {
        let here = back.link();
        let why = "Sign in with your handle to let the atcr command on your computer push as you.";
        return super::signin::signin_page(cx, Some(why), Some(&here));
    };
    if viewer.is_local(cx.site) {
        return message(
            cx,
            StatusCode::OK,
            "Your account is this node's own: log in with `atcr login HOST -u NAME` and your \
             password instead.",
        );
    }
    page(
        StatusCode::OK,
        "atcr login",
        cx,
        html! {
            h1 { "atcr login" }
            p {
                "Let the " code { "atcr" } " command on your computer push as " strong { (viewer.name) }
                "? It writes your images' records to your PDS with the session you signed in with here."
            }
            p.warning {
                "Allow only if you have just run " code { "atcr login " (cx.host) " --oauth" }
                " on your computer yourself: the command, and nothing else, then pushes as you."
            }
            form.stacked.cli method="post" action="/oauth/cli" {
                input type="hidden" name="csrf" value=(viewer.csrf);
                input type="hidden" name="port" value=(back.port);
                input type="hidden" name="state" value=(back.state);
                input type="hidden" name="challenge" value=(back.challenge);
                button type="submit" { "Allow" }
            }
        },
    )
}

/// `POST /oauth/cli` (the form above, its token checked): a one-time code, sent to the
/// command's listener.
pub(super) fn allow<'a>(
    cx: &Cx<'_>,
    viewer: &Viewer,
    field: impl Fn(&str) -> Option<&'a str>,
) -> Response<Body> {
    let Some(back) = CliReturn::parse(field) else {
        return not_a_cli_link(cx);
    };
    // A user hidden here (their account not active on their PDS) pushes nothing.
    if cx.site.appview.hidden(viewer.did.as_str()).unwrap_or(true) {
        return message(
            cx,
            StatusCode::FORBIDDEN,
            "Your account is not active on your PDS.",
        );
    }
    match cx.site.pds.cli_code(&viewer.did, &back.challenge) {
        Ok(Some(code)) => {
            let to = format!(
                "http://127.0.0.1:{}/callback?{}",
                back.port,
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("code", &code)
                    .append_pair("state", &back.state)
                    .finish()
            );
            redirect(&to, None)
        }
        Ok(None) => message(
            cx,
            StatusCode::CONFLICT,
            "This needs your session at your PDS: sign out, sign in with your handle, and run \
             atcr login again (or wait a minute if many logins are under way).",
        ),
        Err(e) => {
            tracing::warn!(error = %e, "cannot issue an atcr login code");
            message(
                cx,
                StatusCode::SERVICE_UNAVAILABLE,
                "The node cannot do this now.",
            )
        }
    }
}

/// `POST /oauth/cli/token` with `{"code": …, "verifier": …}`, from the command:
/// `{did, handle, secret}`, or 400.
pub(super) async fn token(
    cx: &Cx<'_>,
    req: http::Request<crate::http::body::RequestBody>,
) -> Response<Body> {
    use http_body_util::BodyExt as _;
    let body = http_body_util::Limited::new(req.into_body(), 4096)
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    let asked: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let answer = match (asked["code"].as_str(), asked["verifier"].as_str()) {
        (Some(code), Some(verifier)) => cx.site.pds.cli_secret(code, verifier).await,
        _ => Ok(None),
    };
    let (status, doc) = match answer {
        Ok(Some((did, secret))) => {
            let handle = cx.site.appview.display_owner(did.as_str());
            (
                StatusCode::OK,
                serde_json::json!({ "did": did.as_str(), "handle": handle, "secret": secret }),
            )
        }
        Ok(None) => (
            StatusCode::BAD_REQUEST,
            serde_json::json!({ "error": "InvalidCode", "message": "unknown, used or expired code" }),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "cannot issue an atcr login secret");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({ "error": "Unavailable", "message": "try again" }),
            )
        }
    };
    let mut r = Response::new(body::full(doc.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

/// The settings page of a user of another PDS: how they log clients in, and the secrets
/// `atcr login --oauth` holds for them (revoked all at once).
pub(super) fn settings(cx: &Cx<'_>, viewer: &Viewer) -> anyhow::Result<Response<Body>> {
    let secrets = cx.site.pds.cli_secrets(&viewer.did)?;
    let host = &cx.host;
    Ok(page(
        StatusCode::OK,
        "Settings",
        cx,
        html! {
            h1 { "Settings" }
            (super::user::storage_section(cx.site, &viewer.did)?)
            h2 { "Clients" }
            p { "Your account is on another PDS. docker, podman and skopeo log in with your handle and an app password of your PDS, or through your PDS in a browser:" }
            (super::command(&format!("atcr login {host} --oauth")))
            p.cli-secrets { "Secrets of this node's that atcr login keeps for you: " strong { (secrets) } "." }
            @if secrets > 0 {
                form.inline method="post" action="/settings/cli-secrets/revoke" {
                    input type="hidden" name="csrf" value=(viewer.csrf);
                    button type="submit" { "Revoke them all" }
                }
            }
            p.muted { "Signing out revokes them too, with your session at your PDS." }
        },
    ))
}

/// `POST /settings/cli-secrets/revoke`: every secret `atcr login` keeps for the viewer goes.
pub(super) async fn revoke(cx: &Cx<'_>, viewer: &Viewer) -> anyhow::Result<Option<Response<Body>>> {
    cx.site.pds.revoke_cli_secrets(&viewer.did).await?;
    Ok(Some(redirect("/settings", None)))
}
