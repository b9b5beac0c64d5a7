//! Signing in to the pages with the account password, web sessions, CSRF tokens, and the
//! settings page (app passwords: create, list, revoke).
//!
//! A web session is a row of the PDS session table (so `atcr user passwd` and `atcr user
//! remove` end it too) whose random id is the `atcr_session` cookie: `HttpOnly`,
//! `SameSite=Lax`, `Secure` over HTTPS, 30 days. Every form of a session carries a token derived
//! from its id (SHA-256), which only that session's pages know; a POST without the right one is
//! refused with 403. Sign-in itself refuses a cross-site `Origin`.

use http::header::{CONTENT_TYPE, COOKIE, ORIGIN};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use maud::html;
use sha2::{Digest, Sha256};

use super::{Cx, Site, Viewer, finish, page, redirect};
use crate::http::body::Body;
use crate::pds::{Accepts, AccountError, ClientAddr, LoginError, Session, now_secs};

const COOKIE_NAME: &str = "atcr_session";
/// How long a web session lasts, in seconds.
const LIFETIME: u64 = 30 * 86_400;
/// The largest form accepted.
const MAX_FORM: usize = 16 * 1024;

/// The signed-in viewer of a request, from its session cookie.
pub(super) fn viewer(site: Site<'_>, headers: &HeaderMap) -> Option<Viewer> {
    let id = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE_NAME)?.strip_prefix('='))?
        .to_owned();
    let session = site.pds.accounts.session(&id).ok()??;
    if !session.web || session.expires <= now_secs() {
        return None;
    }
    // A local account, or a user of another PDS signed in through OAuth (shown by handle).
    let name = if let Some(account) = site.pds.accounts.get(&session.did).ok()? {
        account.name
    } else {
        let user = site.pds.store().remote_user(&session.did).ok()??;
        user.handle.unwrap_or_else(|| session.did.to_string())
    };
    Some(Viewer {
        did: session.did,
        name,
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
    req: http::Request<crate::http::body::RequestBody>,
    path: &str,
) -> Response<Body> {
    // The `atcr` command exchanging its one-time code (JSON; no session: the code is the proof).
    if path == "/oauth/cli/token" {
        return super::cli_login::token(cx, req).await;
    }
    let origin_ok = req
        .headers()
        .get(ORIGIN)
        .and_then(|o| o.to_str().ok())
        .is_none_or(|o| o.split_once("://").is_some_and(|(_, h)| h == cx.host));
    let client = ClientAddr::of(&req);
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
        let form = SigninForm {
            identifier: field("identifier"),
            password: field("password"),
            next: field("next"),
        };
        return signin(cx, form, client).await;
    }
    if path == "/oauth/signin" {
        if !origin_ok {
            return refused(
                cx,
                StatusCode::FORBIDDEN,
                "Sign in from this node's own page.",
            );
        }
        let next = local_path(field("next"));
        return super::oauth::start(cx, field("handle").unwrap_or_default(), next, client).await;
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
    let accounts = &cx.site.pds.accounts;
    let answer = match path {
        "/signout" => {
            // A remote user's OAuth session ends too (revoked at their authorization server).
            if !viewer.is_local(cx.site) {
                cx.site.pds.end_oauth_session(&viewer.did).await;
            }
            return match accounts.delete_session(&viewer.session) {
                Ok(_) => redirect("/", Some(&clear_cookie(cx))),
                Err(e) => finish(cx, path, Err(e.into())),
            };
        }
        "/settings/app-passwords" | "/settings/app-passwords/revoke"
            if !viewer.is_local(cx.site) =>
        {
            return refused(
                cx,
                StatusCode::FORBIDDEN,
                "Your account is on another PDS: its app passwords are made there.",
            );
        }
        "/settings/cli-secrets/revoke" => super::cli_login::revoke(cx, viewer).await,
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
                    Err(e @ AccountError::TooManyAppPasswords) => {
                        settings(cx, Some(&Created::Refused(format!("{e}."))))
                    }
                    Err(e) => Err(e.into()),
                }
            }
        }
        "/oauth/cli" => return super::cli_login::allow(cx, viewer, field),
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

/// What the sign-in form sent.
struct SigninForm<'a> {
    identifier: Option<&'a str>,
    password: Option<&'a str>,
    next: Option<&'a str>,
}

async fn signin(cx: &Cx<'_>, form: SigninForm<'_>, client: std::net::IpAddr) -> Response<Body> {
    let (Some(identifier), Some(password)) = (form.identifier, form.password) else {
        return signin_failed(cx, StatusCode::UNAUTHORIZED, "Wrong user name or password.");
    };
    let accounts = &cx.site.pds.accounts;
    let login = cx
        .site
        .pds
        .logins
        .check(
            accounts,
            identifier,
            password,
            client,
            Accepts::AccountPassword,
        )
        .await;
    let account = match login {
        Ok(login) => login.account,
        Err(LoginError::Refused) => {
            return signin_failed(cx, StatusCode::UNAUTHORIZED, "Wrong user name or password.");
        }
        Err(e @ LoginError::RateLimited(_)) => {
            let secs = e.retry_after().unwrap_or(1);
            let mut r = signin_failed(
                cx,
                StatusCode::TOO_MANY_REQUESTS,
                &format!("Too many failed sign-ins. Wait {secs} seconds before trying again."),
            );
            r.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
            return r;
        }
        Err(e) => return finish(cx, "/signin", Err(e.into())),
    };
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
    redirect(local_path(form.next), Some(&web_session_cookie(cx, &id)))
}

/// `GET /oauth/callback`: a user of another PDS back from signing in there (see `oauth.rs`)
/// gets a web session like a local user's.
pub(super) async fn oauth_callback(
    cx: &Cx<'_>,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Response<Body> {
    let (did, next) = match super::oauth::callback(cx, query, headers).await {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    match open_session(cx, &did) {
        Ok(cookie) => redirect(local_path(Some(&next)), Some(&cookie)),
        Err(e) => finish(cx, "/oauth/callback", Err(e.into())),
    }
}

/// Opens a web session for `did`; its cookie.
fn open_session(cx: &Cx<'_>, did: &crate::atproto::Did) -> Result<String, AccountError> {
    let id = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        rand::random::<[u8; 32]>(),
    );
    let session = Session {
        did: did.clone(),
        expires: now_secs() + LIFETIME,
        app_password: None,
        rotated: None,
        web: true,
    };
    cx.site.pds.accounts.put_session(&id, &session)?;
    Ok(web_session_cookie(cx, &id))
}

/// The cookie of web session `id`.
fn web_session_cookie(cx: &Cx<'_>, id: &str) -> String {
    let secure = if cx.https { "; Secure" } else { "" };
    format!("{COOKIE_NAME}={id}; Path=/; HttpOnly; SameSite=Lax; Max-Age={LIFETIME}{secure}")
}

/// Where to go after signing in: `next` if it is a path on this node, else `/`. Browsers
/// drop tabs and newlines from URLs and read a backslash as `/`, so `/<tab>/evil.example` or
/// `/\evil.example` would leave the node: only printable ASCII without backslashes, starting
/// with one `/`, is followed.
fn local_path(next: Option<&str>) -> &str {
    next.filter(|n| {
        n.starts_with('/')
            && !n.starts_with("//")
            && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
    })
    .unwrap_or("/")
}

fn signin_failed(cx: &Cx<'_>, status: StatusCode, why: &str) -> Response<Body> {
    let mut r = super::signin::signin_page(cx, Some(why), None);
    *r.status_mut() = status;
    r
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
    if !viewer.is_local(cx.site) {
        return super::cli_login::settings(cx, viewer).map(Some);
    }
    let mut apps = cx.site.pds.accounts.list_app_passwords(&viewer.did)?;
    apps.sort_by(|a, b| a.name.cmp(&b.name));
    let host = &cx.host;
    Ok(Some(page(
        StatusCode::OK,
        "Settings",
        cx,
        html! {
            h1 { "Settings" }
            (super::user::storage_section(cx.site, &viewer.did)?)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_signing_in() {
        for ok in [
            "/",
            "/settings",
            "/r/alice/app?tab=tags",
            "/u/bob#x",
            "/a//b",
        ] {
            assert_eq!(local_path(Some(ok)), ok, "{ok:?}");
        }
        let hostile = [
            "/\t/evil.example",
            "/\t\t//evil.example",
            "/\n/evil.example",
            "/\r\nLocation: http://evil.example",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/a\\b",
            "/ /evil.example",
            "/\u{a0}/evil.example",
            "/\u{0}",
            "/\x7f",
            "https://evil.example",
            "javascript:alert(1)",
            "evil.example",
            " /settings",
            "",
        ];
        for bad in hostile {
            assert_eq!(local_path(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(local_path(None), "/");
    }
}
