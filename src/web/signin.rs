//! The sign-in page: the password form for this node's accounts, and the handle form for
//! users of other PDSes (OAuth, `oauth.rs`). Its own module: the pages that send a user to sign
//! in (sessions, stars, `atcr login`) all show it.

use http::{Response, StatusCode};
use maud::html;

use super::{Cx, page};
use crate::http::body::Body;

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
            h2 { "With an account on another PDS" }
            form.stacked.oauth method="post" action="/oauth/signin" {
                label { "Your handle" input name="handle" autocomplete="username" placeholder="alice.example.com" required; }
                @if let Some(next) = next { input type="hidden" name="next" value=(next); }
                button type="submit" { "Continue at your PDS" }
            }
            p.muted { "You sign in and approve at your own PDS; this node never sees that password." }
        },
    )
}
