//! `atcr login <host>`: asks for the account password once, creates an app password through
//! the node's XRPC API (`createSession`, then `createAppPassword`), and keeps it in the
//! credential helper's store, so docker, podman and skopeo log in with it through
//! `docker-credential-atcr` and the account password is never stored.

use std::sync::Arc;

use anyhow::Context;
use serde_json::{Value, json};

use super::credential::{Credential, CredentialStore};
use crate::http_client::{Target, send_json, tls_config};

async fn post(
    target: &Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
    nsid: &str,
    bearer: Option<&str>,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    post_to(target, tls, &format!("/xrpc/{nsid}"), bearer, body).await
}

/// `POST`s `body` (JSON) to `path`; a TLS failure says how to trust the node's own CA.
pub(super) async fn post_to(
    target: &Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
    path: &str,
    bearer: Option<&str>,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    send_json(target, tls, http::Method::POST, path, bearer, body)
        .await
        .map_err(|e| {
            if target.https && format!("{e:#}").contains("invalid peer certificate") {
                e.context(
                    "a node with its own CA: pass --ca-file with its /ca.crt \
                 (`atcr tls trust-instructions` on the node says how to fetch it)",
                )
            } else {
                e
            }
        })
}

/// Whether `host` is a loopback address or `localhost`: docker speaks plain HTTP to those
/// without being told (they are insecure registries by default), and so does `atcr login`.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `createSession` over HTTPS; when the node turns out to speak plain HTTP, over HTTP if it is
/// on loopback and no scheme was given (said on stderr), else an error saying to pass
/// `--insecure` (a TLS failure suggesting `--ca-file` would mislead).
async fn create_session(
    target: &mut Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
    scheme_given: bool,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    let path = "/xrpc/com.atproto.server.createSession";
    post_falling_back(target, tls, scheme_given, path, body).await
}

/// `POST`s `body` to `path` as [`create_session`] does: over HTTPS, else over plain HTTP on
/// loopback (`target` becomes that).
pub(super) async fn post_falling_back(
    target: &mut Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
    scheme_given: bool,
    path: &str,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    let err = match post_to(target, tls, path, None, body).await {
        Err(e) if target.https && format!("{e:#}").contains("TLS with") => e,
        answer => return answer,
    };
    let mut plain = target.clone();
    plain.https = false;
    if send_json(&plain, None, http::Method::GET, "/", None, &Value::Null)
        .await
        .is_err()
    {
        return Err(err);
    }
    if scheme_given || !is_loopback(&target.host) {
        return Err(err.context(format!(
            "{} speaks plain HTTP, not HTTPS: for a node without TLS pass --insecure",
            target.authority()
        )));
    }
    eprintln!(
        "{} speaks plain HTTP: using it, as docker does for loopback addresses \
         (127.0.0.0/8, ::1, localhost)",
        target.authority()
    );
    *target = plain;
    post_to(target, None, path, None, body).await
}

pub(super) fn xrpc_error(what: &str, status: u16, body: &Value) -> anyhow::Error {
    anyhow::anyhow!(
        "{what} failed ({status}): {} {}",
        body["error"].as_str().unwrap_or(""),
        body["message"].as_str().unwrap_or("")
    )
}

/// What `atcr login` was asked.
pub struct LoginArgs<'a> {
    pub registry: &'a str,
    /// Required but with `--oauth` (`cli::login_oauth`).
    pub username: Option<&'a str>,
    pub password_stdin: bool,
    pub insecure: bool,
    pub ca_file: Option<&'a std::path::Path>,
}

/// Runs `body` against the node `args` name (its scheme guessed until a request settles it,
/// TLS with the CA asked for, whether a scheme was given); the node as settled, and the answer.
pub(super) fn on_node<T>(
    args: &LoginArgs<'_>,
    body: impl AsyncFnOnce(&mut Target, Option<&Arc<rustls::ClientConfig>>, bool) -> anyhow::Result<T>,
) -> anyhow::Result<(Target, T)> {
    let mut target = Target::parse(args.registry, args.insecure)?;
    let tls = if target.https {
        Some(Arc::new(tls_config(args.ca_file)?))
    } else {
        None
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let scheme_given = args.registry.contains("://");
    let answer = runtime.block_on(body(&mut target, tls.as_ref(), scheme_given))?;
    Ok((target, answer))
}

/// Keeps `secret` for `username` on `target` for the credential helper, and says so (`how`:
/// what was made).
pub(super) fn keep(
    target: &Target,
    username: &str,
    secret: String,
    how: &str,
) -> anyhow::Result<()> {
    let store = CredentialStore::from_env()?;
    store.store(
        &target.authority(),
        Credential {
            username: username.to_owned(),
            secret,
        },
    )?;
    super::print(&format!(
        "Login Succeeded: {username} on {registry}, {how}, kept in {path}.\n\
         Have docker, podman and skopeo use it: add \"credHelpers\": {{\"{registry}\": \"atcr\"}} to \
         ~/.docker/config.json (or containers' auth.json), with docker-credential-atcr on PATH.",
        registry = target.authority(),
        path = store.path().display()
    ))
}

pub fn run(args: &LoginArgs<'_>) -> anyhow::Result<()> {
    let username = args.username.context("give the account with --username")?;
    let password = super::admin::read_password(args.password_stdin, super::admin::Ask::Existing)?;
    let (target, (handle, app_password, name)) =
        on_node(args, async |target, tls, scheme_given| {
            let (status, session) = create_session(
                target,
                tls,
                scheme_given,
                &json!({"identifier": username, "password": password}),
            )
            .await?;
            if status != 200 {
                return Err(xrpc_error("login", status, &session));
            }
            let jwt = session["accessJwt"].as_str().unwrap_or_default().to_owned();
            let handle = session["handle"].as_str().unwrap_or(username).to_owned();
            let host = hostname();
            let name = format!(
                "atcr login {host} {}",
                crate::atproto::Datetime::now().as_str()
            );
            let (status, created) = post(
                target,
                tls,
                "com.atproto.server.createAppPassword",
                Some(&jwt),
                &json!({"name": name}),
            )
            .await?;
            if status != 200 {
                return Err(xrpc_error("creating an app password", status, &created));
            }
            let app_password = created["password"]
                .as_str()
                .context("the node answered no app password")?
                .to_owned();
            // The session was only needed for this; end it.
            let _ = post(
                target,
                tls,
                "com.atproto.server.deleteSession",
                session["refreshJwt"].as_str(),
                &json!({}),
            )
            .await;
            Ok::<_, anyhow::Error>((handle, app_password, name))
        })?;
    keep(
        &target,
        &handle,
        app_password,
        &format!("with app password {name:?}"),
    )
}

pub(super) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "this machine".into(), |s| s.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn loopback_is_what_docker_treats_as_insecure() {
        for host in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "localhost",
            "LocalHost",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "10.0.0.1",
            "registry.lan",
            "localhost.example",
            "[::2]",
            "128.0.0.1",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
