//! The web UI: pages rendered on the server (maud) from the registry index, readable with
//! JavaScript off (a small script adds copy buttons). Served: the home page (repositories, how to
//! push), repository pages (tags with digest, size, platforms and push time, the exact pull
//! line), user pages, the setup page (logging in, the credential helper, trusting the node's
//! CA; `setup.rs`), signing in and the settings page (`session.rs`), stars, manifest pages and
//! search (`browse.rs`), the stylesheet and 404 pages (docs/web.md).
//!
//! Pages read a narrow `Site`: `AppView` (index and search), the PDS's accounts and sessions
//! through its public surface, and the hold's rules. Never `blobstore`, `registry`, `server` or
//! a PDS submodule.
//!
//! Pages read the index only. A repository is shown to those who may pull from the hold (anyone
//! when it is public, else signed-in crew with `blob:read`): private repositories never appear
//! to those who may not pull them.

use http::header::{
    CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

mod browse;
mod cli_login;
mod oauth;
mod session;
mod setup;
mod signin;
mod user;
use maud::{DOCTYPE, Markup, html};

use crate::appview::AppView;
use crate::appview::index::RepoKey;
use crate::hold::Hold;
use crate::http::body::{self, Body};
use crate::pds::Pds;

/// The stylesheet and the copy-button script, embedded in the binary.
const STYLE: &str = include_str!("../../assets/style.css");
const COPY_JS: &str = include_str!("../../assets/copy.js");
/// How many repositories the home page lists, and tags a repository page shows.
const PAGE: usize = 100;
/// How many repositories each list of the home page shows.
const HOME_LIST: usize = 12;

/// Whether `path` is one of the UI's (everything a browser may ask that no API serves).
#[must_use]
pub fn serves(path: &str) -> bool {
    matches!(
        path,
        "/" | "/search" | "/setup" | "/signin" | "/signout" | "/settings"
    ) || path.starts_with("/settings/")
        || path.starts_with("/oauth/")
        || path.starts_with("/r/")
        || path.starts_with("/u/")
        || path.starts_with("/static/")
}

/// What the pages read, and all they may: the registry's derived index and search (through
/// `AppView`), accounts, sessions and app passwords (the PDS's account API), the hold's rules,
/// and the node's CA. A borrowed view of the node, made per request.
#[derive(Clone, Copy)]
pub struct Site<'a> {
    pub appview: &'a AppView,
    pub pds: &'a Pds,
    pub hold: &'a Hold,
    /// The SHA-256 fingerprint of the node-managed CA, when the node runs one.
    pub ca_fingerprint: Option<&'a str>,
}

/// Who is looking: a signed-in user (see `session.rs`).
pub(crate) struct Viewer {
    pub did: crate::atproto::Did,
    pub name: String,
    /// The web session's id (the cookie's value).
    pub session: String,
    /// The token every form of this session carries.
    pub csrf: String,
}

impl Viewer {
    /// Whether the viewer is one of this node's own accounts (not a user of another PDS).
    fn is_local(&self, site: Site<'_>) -> bool {
        site.pds.accounts.get(&self.did).ok().flatten().is_some()
    }
}

/// What every page needs: the site, the host name clients use, the viewer, and whether the
/// request came over HTTPS (cookies are then `Secure`).
pub(crate) struct Cx<'a> {
    pub site: Site<'a>,
    pub host: String,
    pub viewer: Option<Viewer>,
    pub https: bool,
}

/// Answers a request for a UI path (`serves`); `scheme` is the listener's. No page may be
/// framed by another site (clickjacking the sign-in or settings forms), and no answer is
/// sniffed as another type.
pub async fn handle(
    site: Site<'_>,
    req: http::Request<crate::http::body::RequestBody>,
    path: &str,
    scheme: &str,
) -> Response<Body> {
    let mut r = respond(site, req, path, scheme).await;
    let h = r.headers_mut();
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(http::header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static("frame-ancestors 'none'"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

async fn respond(
    site: Site<'_>,
    req: http::Request<crate::http::body::RequestBody>,
    path: &str,
    scheme: &str,
) -> Response<Body> {
    let headers = req.headers();
    let cx = Cx {
        site,
        host: host(site, req.uri(), headers),
        viewer: session::viewer(site, headers),
        https: scheme == "https",
    };
    if req.method() == Method::POST {
        return session::post(&cx, req, path).await;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = page(
            StatusCode::METHOD_NOT_ALLOWED,
            "Not allowed",
            &cx,
            html! { p { "This page is read with GET." } },
        );
        r.headers_mut().insert(
            http::header::ALLOW,
            HeaderValue::from_static("GET, HEAD, POST"),
        );
        return r;
    }
    let answer = match path {
        "/static/style.css" => return asset(STYLE, "text/css; charset=utf-8"),
        "/static/copy.js" => return asset(COPY_JS, "text/javascript; charset=utf-8"),
        "/" => home(&cx),
        "/search" => browse::search(&cx, req.uri().query()),
        "/setup" => Ok(Some(setup::page(&cx))),
        "/signin" => {
            let next = req.uri().query().and_then(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "next")
                    .map(|(_, v)| v.into_owned())
            });
            Ok(Some(signin::signin_page(&cx, None, next.as_deref())))
        }
        "/settings" => session::settings(&cx, None),
        "/oauth/callback" => {
            return session::oauth_callback(&cx, req.uri().query(), req.headers()).await;
        }
        "/oauth/client-metadata.json" => Ok(oauth::client_metadata(&cx)),
        "/oauth/jwks.json" => Ok(oauth::client_jwks(&cx)),
        "/oauth/cli" => Ok(Some(cli_login::page_for(&cx, req.uri().query()))),
        _ => {
            if let Some(name) = path.strip_prefix("/r/") {
                match name.split_once('@') {
                    Some((name, digest)) => browse::manifest(&cx, name, digest),
                    None => repository(&cx, name),
                }
            } else if let Some(name) = path.strip_prefix("/u/") {
                user::page(&cx, name)
            } else {
                Ok(None)
            }
        }
    };
    finish(&cx, path, answer)
}

/// A handler's answer as a response: a 404 page for `None`, a 500 page for an error.
pub(crate) fn finish(
    cx: &Cx<'_>,
    path: &str,
    answer: anyhow::Result<Option<Response<Body>>>,
) -> Response<Body> {
    match answer {
        Ok(Some(r)) => r,
        Ok(None) => not_found(cx, path),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), ?path, "page failed");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                cx,
                html! { p { "The page could not be made; the node's log says why." } },
            )
        }
    }
}

/// The name clients use for this node: the host the request addressed when it is one (see
/// [`crate::http::request_host`]), else the configured public host.
fn host(site: Site<'_>, uri: &http::Uri, headers: &HeaderMap) -> String {
    crate::http::request_host(uri, headers)
        .map_or_else(|| site.pds.settings.public_host.clone(), str::to_owned)
}

fn asset(text: &'static str, kind: &'static str) -> Response<Body> {
    let mut r = Response::new(body::full(text));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

/// The name users write for an index key (`alice/app`).
fn display_name(site: Site<'_>, key: &RepoKey) -> String {
    site.appview.display_name(key)
}

/// Whether the viewer may see the node's repositories: those who may pull from the hold
/// (anyone when it is public; else signed-in crew with `blob:read`).
fn visible(cx: &Cx<'_>) -> anyhow::Result<bool> {
    let who = cx.viewer.as_ref().map(|v| &v.did);
    Ok(cx
        .site
        .hold
        .allows(who, crate::hold::Permission::BlobRead)?)
}

fn home(cx: &Cx<'_>) -> anyhow::Result<Option<Response<Body>>> {
    let (site, host) = (cx.site, cx.host.as_str());
    let index = site.appview.index();
    let (mut recent, mut starred) = (Vec::new(), Vec::new());
    if visible(cx)? {
        let appview = &site.appview;
        for r in index.recent(HOME_LIST)? {
            if !appview.hidden(r.key.owner())? {
                recent.push((display_name(site, &r.key), r));
            }
        }
        for r in index.most_starred(HOME_LIST)? {
            if !appview.hidden(r.key.owner())? {
                starred.push((display_name(site, &r.key), r));
            }
        }
    }
    let list = |rows: &[(String, crate::appview::index::RepoSummary)]| {
        html! {
            ul.repos {
                @for (name, r) in rows {
                    li {
                        a href={ "/r/" (name) } { (name) }
                        span.muted {
                            @if r.stars > 0 { "★ " (r.stars) " · " }
                            @if r.pushed > 0 { (date(r.pushed)) }
                        }
                    }
                }
            }
        }
    };
    Ok(Some(page(
        StatusCode::OK,
        "Repositories",
        cx,
        html! {
            h1 { "Repositories" }
            (browse::search_box(""))
            @if recent.is_empty() {
                p.muted { "Nothing to show yet: no repository has been pushed, or pulls need a login." }
            } @else {
                div.columns {
                    section {
                        h2 { "Recently pushed" }
                        (list(&recent))
                    }
                    section {
                        h2 { "Most starred" }
                        @if starred.is_empty() { p.muted { "No stars yet." } } @else { (list(&starred)) }
                    }
                }
            }
            h2 { "Push an image" }
            p { "Log in with your account (or, better, an app password through the credential helper), then push into your own namespace:" }
            (command(&format!("docker login {host}\ndocker push {host}/<your user>/<image>:<tag>")))
            @if cx.https {
                p.muted {
                    "podman, buildah and skopeo work the same way. "
                    a href="/setup" { "Setting up a client" }
                    " (the credential helper, trusting this node's certificate)."
                }
            } @else {
                (setup::plain_http_note())
                (command(&format!("podman login --tls-verify=false {host}\npodman push --tls-verify=false <image> {host}/<your user>/<image>:<tag>")))
                p.muted {
                    a href="/setup" { "Setting up a client" }
                    " says how to list this node as an insecure registry instead, and how to use the credential helper."
                }
            }
        },
    )))
}

fn repository(cx: &Cx<'_>, name: &str) -> anyhow::Result<Option<Response<Body>>> {
    let (site, host) = (cx.site, cx.host.as_str());
    let appview = site.appview;
    let Ok(repo_name) = name.parse::<crate::oci::name::RepoName>() else {
        return Ok(None);
    };
    let Ok(located) = appview.locate(&repo_name) else {
        return Ok(None);
    };
    let index = appview.index();
    if !visible(cx)? || !index.repo_exists(&located.key)? {
        return Ok(None);
    }
    let (rows, more) = index.tag_details(&located.key, PAGE)?;
    let shown = display_name(site, &located.key);
    let (summary, readme) = index.repo_summary(&located.key)?;
    let description = crate::appview::search::describe(&rows, readme.as_deref());
    let starred = match &cx.viewer {
        Some(v) => Some(index.star_of(&v.did, &located.key)?.is_some()),
        None => None,
    };
    let handle = site.pds.handle_of(&located.owner)?;
    let pull_tag = rows
        .iter()
        .find(|r| r.tag == "latest")
        .or(rows.first())
        .map(|r| r.tag.clone());
    Ok(Some(page(
        StatusCode::OK,
        &shown,
        cx,
        html! {
            div.title {
                h1 { (shown) }
                (star_button(cx, &shown, summary.stars, starred))
            }
            @if !description.is_empty() { p.lead { (description) } }
            @if let Some(url) = documentation(&rows) {
                p { a href=(url) rel="nofollow noopener" { "Documentation" } }
            }
            p.muted {
                "Owner "
                @if let Some((user, _)) = shown.split_once('/') { a href={ "/u/" (user) } { (user) } " " }
                @if let Some(handle) = &handle { "(" (handle) ") " }
                code { (located.owner.as_str()) }
            }
            p.muted { "Size " (crate::http::human_bytes(index.repo_usage(&located.key)?)) " (its manifests' unique blobs)" }
            @if let Some(tag) = &pull_tag {
                h2 { "Pull" }
                (pull_commands(cx, &format!("{host}/{shown}:{tag}")))
            }
            h2 { "Tags" }
            @if rows.is_empty() {
                p.muted { "No tags: this repository holds untagged manifests only." }
            } @else {
                table {
                    thead { tr {
                        th { "Tag" } th { "Digest" } th { "Size" }
                        th.optional { "Kind" } th.optional { "Pushed" }
                    } }
                    tbody {
                        @for crate::appview::index::TagDetail { tag, digest, record, contents } in &rows {
                            tr {
                                td { (tag) }
                                td.digest title=(digest.as_str()) {
                                    a href={ "/r/" (shown) "@" (digest.as_str()) } { (short(digest.as_str())) }
                                    @if contents.referrers > 0 {
                                        " " span.badge title="signatures, SBOMs and other referrers" { "+" (contents.referrers) }
                                    }
                                }
                                td { @if contents.children > 0 { "—" } @else { (crate::http::human_bytes(contents.blob_bytes)) } }
                                td.optional {
                                    @if contents.children > 0 { (contents.children) " platforms" } @else { "image" }
                                }
                                td.optional { @if let Some(r) = record { (date(r.created)) } }
                            }
                        }
                    }
                }
                @if more { p.muted { "Only the first " (PAGE) " tags are shown." } }
            }
            @if let Some(text) = &readme {
                h2 { "README" }
                article.readme { (browse::readme(text)) }
            }
        },
    )))
}

/// The newest tag's `org.opencontainers.image.documentation` (or `url`) annotation, when it
/// is an http(s) link.
fn documentation(rows: &[crate::appview::index::TagDetail]) -> Option<&str> {
    crate::appview::search::newest_first(rows)
        .into_iter()
        .find_map(|s| s.oci("documentation").or_else(|| s.oci("url")))
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
}

/// The star count, with a star/unstar button for a signed-in viewer (`starred` is whether
/// they starred it; `None` when nobody is signed in).
fn star_button(cx: &Cx<'_>, shown: &str, stars: u64, starred: Option<bool>) -> Markup {
    html! {
        @match (&cx.viewer, starred) {
            (Some(v), Some(on)) => {
                form.inline.star method="post" action={ "/r/" (shown) "/star" } {
                    input type="hidden" name="csrf" value=(v.csrf);
                    input type="hidden" name="on" value=(if on { "0" } else { "1" });
                    button type="submit" aria-pressed=(on) {
                        @if on { "★ Starred" } @else { "☆ Star" }
                    }
                    span.count { (stars) }
                }
            }
            _ => {
                span.star {
                    a href={ "/signin?next=/r/" (shown) } title="Sign in to star" { "☆" }
                    " " span.count { (stars) }
                }
            }
        }
    }
}

/// A command block with a copy button (added by the script when JavaScript runs).
fn command(text: &str) -> Markup {
    html! { pre data-copy=(text) { code { (text) } } }
}

/// How to pull `reference` (`host/name:tag` or `host/name@digest`): docker's command, and
/// podman's, which over plain HTTP needs `--tls-verify=false`.
fn pull_commands(cx: &Cx<'_>, reference: &str) -> Markup {
    html! {
        (command(&format!("docker pull {reference}")))
        @if cx.https {
            p.muted { "or " code { "podman pull " (reference) } }
        } @else {
            (setup::plain_http_note())
            (command(&format!("podman pull --tls-verify=false {reference}")))
        }
    }
}

pub(crate) fn not_found(cx: &Cx<'_>, path: &str) -> Response<Body> {
    page(
        StatusCode::NOT_FOUND,
        "Not found",
        cx,
        html! {
            h1 { "Not found" }
            p { "Nothing here: " code { (path) } }
            p { a href="/" { "All repositories" } }
        },
    )
}

/// A whole page: the frame around `content`.
pub(crate) fn page(
    status: StatusCode,
    title: &str,
    cx: &Cx<'_>,
    content: Markup,
) -> Response<Body> {
    let host = cx.host.as_str();
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · atcr" }
                link rel="stylesheet" href="/static/style.css";
                script src="/static/copy.js" defer {}
            }
            body {
                header {
                    a.brand href="/" { "atcr" }
                    span.host { (host) }
                    nav {
                        a href="/setup" { "Setup" }
                        @if let Some(v) = &cx.viewer {
                            a href={ "/u/" (v.name) } { (v.name) }
                            a href="/settings" { "Settings" }
                            form.inline method="post" action="/signout" {
                                input type="hidden" name="csrf" value=(v.csrf);
                                button type="submit" { "Sign out" }
                            }
                        } @else {
                            a href="/signin" { "Sign in" }
                        }
                    }
                }
                main { (maud::PreEscaped(content.into_string())) }
                footer { "A container registry on the AT Protocol." }
            }
        }
    };
    let mut r = Response::new(body::full(markup.into_string()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; frame-ancestors 'none'",
        ),
    );
    r
}

/// `sha256:0123456789ab…` → `sha256:0123456789ab`.
fn short(digest: &str) -> &str {
    let end = digest.find(':').map_or(12, |i| i + 13);
    digest.get(..end).unwrap_or(digest)
}

/// Unix seconds as a UTC date and time.
fn date(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .map_or_else(String::new, |t| {
            format!("{} {:02}:{:02} UTC", t.date(), t.hour(), t.minute())
        })
}

/// A `303 See Other` to `to`, setting `cookie` if given.
fn redirect(to: &str, cookie: Option<&str>) -> Response<Body> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_and_dates_read_well() {
        assert_eq!(
            short("sha256:0123456789abcdef0123456789abcdef"),
            "sha256:0123456789ab"
        );
        assert_eq!(short("odd"), "odd");
        assert_eq!(date(0), "1970-01-01 00:00 UTC");
    }
}
