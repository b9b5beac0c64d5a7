//! Signing in to the pages with the account password, web sessions, CSRF tokens, and the
//! settings page (app passwords: create, list, revoke).
//!
//! A web session is a row of the PDS session table (so `atcr user passwd` and `atcr user
//! remove` end it too) whose random id is the `atcr_session` cookie: `HttpOnly`,
//! `SameSite=Lax`, `Secure` over HTTPS, 30 days. Every form of a session carries a token derived
//! from its id (SHA-256), which only that session's pages know; a POST without the right one is
//! refused with 403. Sign-in itself refuses a cross-site `Origin`.

use http::header::{CONTENT_TYPE, COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use maud::html;
use sha2::{Digest, Sha256};

use super::{Cx, Viewer, finish, page};
use crate::pds::accounts::{Session, now_secs, verify_password};
use crate::server::App;
use crate::server::body::{self, Body};

const COOKIE_NAME: &str = "atcr_session";
/// How long a web session lasts, in seconds.
const LIFETIME: u64 = 30 * 86_400;
/// The largest form accepted.
const MAX_FORM: usize = 16 * 1024;

/// The signed-in viewer of a request, from its session cookie.
pub(super) fn viewer(app: &App, headers: &HeaderMap) -> Option<Viewer> {
    let id = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE_NAME)?.strip_prefix('='))?
        .to_owned();
    let session = app.pds.accounts.session(&id).ok()??;
    if !session.web || session.expires <= now_secs() {
        return None;
    }
    let account = app.pds.accounts.get(&session.did).ok()??;
    Some(Viewer {
        did: account.did,
        name: account.name,
        csrf: csrf_for(&id),
        session: id,
    })
}

/// The form token of session `id`.
fn csrf_for(id: &str) -> String {
    let hash = Sha256::new()
        .chain_update(b"atcr-csrf\0")
        .chain_update(id)
        .finalize();
    hex::encode(&hash[..16])
}

/// A POST to a UI path.
pub(super) async fn post(
    cx: &Cx<'_>,
    req: http::Request<crate::server::body::RequestBody>,
    path: &str,
) -> Response<Body> {
    let origin_ok = req
        .headers()
        .get(ORIGIN)
        .and_then(|o| o.to_str().ok())
        .is_none_or(|o| o.split_once("://").is_some_and(|(_, h)| h == cx.host));
    let form_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let body = match http_body_util::Limited::new(req.into_body(), MAX_FORM)
        .collect()
        .await
    {
        Ok(b) if form_type => b.to_bytes(),
        _ => return refused(cx, StatusCode::BAD_REQUEST, "That form could not be read."),
    };
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if path == "/signin" {
        if !origin_ok {
            return refused(
                cx,
                StatusCode::FORBIDDEN,
                "Sign in from this node's own page.",
            );
        }
        return signin(cx, field("identifier"), field("password"), field("next")).await;
    }
    // Everything else acts for a signed-in viewer, with the session's form token.
    let Some(viewer) = &cx.viewer else {
        return redirect("/signin", None);
    };
    if field("csrf") != Some(viewer.csrf.as_str()) {
        return refused(
            cx,
            StatusCode::FORBIDDEN,
            "This form has expired or was not sent from this node's pages; reload the page and try again.",
        );
    }
    let accounts = &cx.app.pds.accounts;
    let answer = match path {
        "/signout" => {
            return match accounts.delete_session(&viewer.session) {
                Ok(_) => redirect("/", Some(&clear_cookie(cx))),
                Err(e) => finish(cx, path, Err(e.into())),
            };
        }
        "/settings/app-passwords" => {
            let name = field("name").unwrap_or_default().trim().to_owned();
            if name.is_empty() || name.len() > 64 {
                settings(
                    cx,
                    Some(&Created::Refused(
                        "Give the app password a name (at most 64 bytes).".into(),
                    )),
                )
            } else {
                match accounts.create_app_password(&viewer.did, &name, false) {
                    Ok(Some((password, _))) => settings(cx, Some(&Created::New { name, password })),
                    Ok(None) => settings(
                        cx,
                        Some(&Created::Refused(format!(
                            "There is already an app password named {name:?}."
                        ))),
                    ),
                    Err(e) => Err(e.into()),
                }
            }
        }
        "/settings/app-passwords/revoke" => {
            let name = field("name").unwrap_or_default();
            return match accounts.revoke_app_password(&viewer.did, name) {
                Ok(_) => redirect("/settings", None),
                Err(e) => finish(cx, path, Err(e.into())),
            };
        }
        _ => match path
            .strip_prefix("/r/")
            .and_then(|p| p.strip_suffix("/star"))
        {
            Some(name) => super::browse::star(cx, viewer, name, field("on") == Some("1")).await,
            None => Ok(None),
        },
    };
    finish(cx, path, answer)
}

async fn signin(
    cx: &Cx<'_>,
    identifier: Option<&str>,
    password: Option<&str>,
    next: Option<&str>,
) -> Response<Body> {
    let (Some(identifier), Some(password)) = (identifier, password) else {
        return signin_failed(cx);
    };
    let accounts = &cx.app.pds.accounts;
    let Ok(Some(account)) = accounts.find(identifier.trim()) else {
        return signin_failed(cx);
    };
    // argon2 takes tens of milliseconds: off the async workers.
    let (hash, password) = (account.password_hash.clone(), password.to_owned());
    let ok = tokio::task::spawn_blocking(move || verify_password(&hash, &password))
        .await
        .unwrap_or(false);
    if !ok {
        return signin_failed(cx);
    }
    let id = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        rand::random::<[u8; 32]>(),
    );
    let session = Session {
        did: account.did.clone(),
        expires: now_secs() + LIFETIME,
        app_password: None,
        rotated: None,
        web: true,
    };
    if let Err(e) = accounts.put_session(&id, &session) {
        return finish(cx, "/signin", Err(e.into()));
    }
    tracing::info!(did = %account.did, "signed in to the pages");
    // Only a path on this node: no open redirect.
    let next = next
        .filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.contains('\\'))
        .unwrap_or("/");
    let secure = if cx.https { "; Secure" } else { "" };
    let cookie =
        format!("{COOKIE_NAME}={id}; Path=/; HttpOnly; SameSite=Lax; Max-Age={LIFETIME}{secure}");
    redirect(next, Some(&cookie))
}

fn signin_failed(cx: &Cx<'_>) -> Response<Body> {
    let mut r = signin_page(cx, Some("Wrong user name or password."), None);
    *r.status_mut() = StatusCode::UNAUTHORIZED;
    r
}

/// The sign-in form; `next` is where to go after it (a path on this node).
pub(super) fn signin_page(cx: &Cx<'_>, error: Option<&str>, next: Option<&str>) -> Response<Body> {
    page(
        StatusCode::OK,
        "Sign in",
        cx,
        html! {
            h1 { "Sign in" }
            @if let Some(error) = error { p.error { (error) } }
            form.stacked method="post" action="/signin" {
                label { "User name or handle" input name="identifier" autocomplete="username" required; }
                label { "Password" input type="password" name="password" autocomplete="current-password" required; }
            @if let Some(next) = next { input type="hidden" name="next" value=(next); }
                button type="submit" { "Sign in" }
            }
            p.muted { "With your account password. App passwords are for docker, podman and the other clients." }
        },
    )
}

/// What the settings page reports about a creation.
pub(super) enum Created {
    New { name: String, password: String },
    Refused(String),
}

/// The settings page: app passwords.
pub(super) fn settings(
    cx: &Cx<'_>,
    created: Option<&Created>,
) -> anyhow::Result<Option<Response<Body>>> {
    let Some(viewer) = &cx.viewer else {
        return Ok(Some(redirect("/signin?next=/settings", None)));
    };
    let mut apps = cx.app.pds.accounts.list_app_passwords(&viewer.did)?;
    apps.sort_by(|a, b| a.name.cmp(&b.name));
    let host = &cx.host;
    Ok(Some(page(
        StatusCode::OK,
        "Settings",
        cx,
        html! {
            h1 { "Settings" }
            h2 { "App passwords" }
            p.muted { "For docker, podman, skopeo and atcr login: each can be revoked on its own, and none can change your account." }
            @match created {
                Some(Created::New { name, password }) => {
                    div.notice {
                        p { "The app password " strong { (name) } " (shown only now):" }
                        (super::command(password))
                        p { "Log in with it:" }
                        (super::command(&format!("skopeo login {host} -u {}", viewer.name)))
                    }
                }
                Some(Created::Refused(why)) => { p.error { (why) } }
                None => {}
            }
            @if apps.is_empty() {
                p { "None yet." }
            } @else {
                table {
                    thead { tr { th { "Name" } th { "Created" } th {} } }
                    tbody {
                        @for app in &apps {
                            tr {
                                td { (app.name) }
                                td { (super::date(app.created)) }
                                td {
                                    form.inline method="post" action="/settings/app-passwords/revoke" {
                                        input type="hidden" name="csrf" value=(viewer.csrf);
                                        input type="hidden" name="name" value=(app.name);
                                        button type="submit" { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            form.stacked method="post" action="/settings/app-passwords" {
                input type="hidden" name="csrf" value=(viewer.csrf);
                label { "Name" input name="name" maxlength="64" required placeholder="laptop podman"; }
                button type="submit" { "Create an app password" }
            }
        },
    )))
}

fn clear_cookie(cx: &Cx<'_>) -> String {
    let secure = if cx.https { "; Secure" } else { "" };
    format!("{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}")
}

pub(super) fn redirect(to: &str, cookie: Option<&str>) -> Response<Body> {
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(LOCATION, v);
    }
    if let Some(v) = cookie.and_then(|c| HeaderValue::from_str(c).ok()) {
        r.headers_mut().insert(SET_COOKIE, v);
    }
    r
}

fn refused(cx: &Cx<'_>, status: StatusCode, why: &str) -> Response<Body> {
    page(
        status,
        "Refused",
        cx,
        html! {
            h1 { "Refused" }
            p { (why) }
        },
    )
}
