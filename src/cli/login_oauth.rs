//! `atcr login HOST --oauth`: a user of another PDS logs the command in through their browser.
//! The command listens on a loopback port, prints (and, on a desktop, opens) the node's
//! `/oauth/cli?port=…&state=…`; there the user signs in at their own PDS and allows the
//! command; the browser comes back to the listener with a one-time code, which the command
//! exchanges at the node (`POST /oauth/cli/token`) for a secret of the node's. The secret is
//! kept like an app password, for docker-credential-atcr (see `pds::oauth_cli`).

use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::login::{LoginArgs, keep, on_node, post_falling_back, post_to, xrpc_error};

/// How long the command waits for the browser.
const WAIT_FOR_BROWSER: Duration = Duration::from_mins(10);
/// The exchange's path on the node.
const TOKEN_PATH: &str = "/oauth/cli/token";
/// Connections answered at once. Any local user can reach the listener while the command
/// waits, and a connection that sends nothing keeps its place for 10 s; the next ones wait in
/// the kernel's queue.
const MAX_CONNECTIONS: usize = 16;

pub fn run(args: &LoginArgs<'_>) -> anyhow::Result<()> {
    let (target, (did, handle, secret)) = on_node(args, async |target, tls, scheme_given| {
        // Which scheme the node speaks, asked with a code that is none (a 400 is the answer).
        let (status, _) =
            post_falling_back(target, tls, scheme_given, TOKEN_PATH, &json!({})).await?;
        anyhow::ensure!(
            status == 400,
            "{} does not offer atcr login for users of other PDSes ({status})",
            target.authority()
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let random =
            || base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let (state, verifier) = (random(), random());
        let challenge = crate::pds::oauth_cli::challenge_of(&verifier);
        let scheme = if target.https { "https" } else { "http" };
        let url = format!(
            "{scheme}://{}/oauth/cli?port={port}&state={state}&challenge={challenge}",
            target.authority()
        );
        super::print(&format!(
            "Open this link in your browser to sign in at your PDS and allow this command:\n{url}"
        ))?;
        open_in_browser(&url);
        let code = tokio::time::timeout(
            WAIT_FOR_BROWSER,
            wait_for_code(&listener, &state, MAX_CONNECTIONS),
        )
        .await
        .context("no answer from the browser in 10 minutes")??;
        let (status, answer) = post_to(
            target,
            tls,
            TOKEN_PATH,
            None,
            &json!({ "code": code, "verifier": verifier }),
        )
        .await?;
        if status != 200 {
            return Err(xrpc_error("exchanging the code", status, &answer));
        }
        let field = |k: &str| answer[k].as_str().map(str::to_owned);
        let did = field("did").context("the node answered no DID")?;
        let secret = field("secret").context("the node answered no secret")?;
        Ok::<_, anyhow::Error>((did.clone(), field("handle").unwrap_or(did), secret))
    })?;
    // Kept under the DID, which the secret is bound to (a handle can change).
    keep(
        &target,
        &did,
        secret,
        &format!("{handle}, through your PDS, with a secret of the node's"),
    )
}

/// Opens `url` with the desktop's browser when there is a desktop (best effort: the link is
/// printed anyway).
fn open_in_browser(url: &str) {
    let desktop = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()));
    if desktop {
        let _ = std::process::Command::new("xdg-open")
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
}

/// Answers the browser's requests on `listener` until one brings a code with `state`; each
/// connection on its own (one that sends nothing holds up no other), at most `max` at once.
async fn wait_for_code(
    listener: &tokio::net::TcpListener,
    state: &str,
    max: usize,
) -> anyhow::Result<String> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1);
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(max));
    loop {
        let slot = tokio::select! {
            Some(code) = rx.recv() => return Ok(code),
            slot = slots.clone().acquire_owned() => slot?,
        };
        tokio::select! {
            Some(code) = rx.recv() => return Ok(code),
            accepted = listener.accept() => {
                let (conn, _) = accepted?;
                let (tx, state) = (tx.clone(), state.to_owned());
                tokio::spawn(async move {
                    let _slot = slot;
                    if let Some(code) = answer(conn, &state).await {
                        let _ = tx.send(code).await;
                    }
                });
            }
        }
    }
}

/// Reads one request (10 s at most) and answers it: the code, if it brings one with `state`.
async fn answer(mut conn: tokio::net::TcpStream, state: &str) -> Option<String> {
    let mut buf = vec![0; 8192];
    let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    let head = String::from_utf8_lossy(&buf[..n]);
    let target = head
        .strip_prefix("GET ")
        .and_then(|r| r.split(' ').next())
        .unwrap_or("");
    let query = target.strip_prefix("/callback?").unwrap_or("");
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let code = get("code").filter(|_| get("state").as_deref() == Some(state));
    let (status, text) = if code.is_some() {
        ("200 OK", "atcr login: done. You can close this tab.")
    } else {
        (
            "400 Bad Request",
            "atcr login: this is not the answer it waits for.",
        )
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = conn.write_all(reply.as_bytes()).await;
    code
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::wait_for_code;

    /// Connections that send nothing take up at most `max` places: the browser's answer waits
    /// behind them until one goes, then is taken.
    #[tokio::test]
    async fn idle_connections_hold_at_most_max_places() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let waiting = tokio::spawn(async move { wait_for_code(&listener, "s1", 2).await.unwrap() });
        let mut idle = Vec::new();
        for _ in 0..2 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        let mut browser = TcpStream::connect(addr).await.unwrap();
        browser
            .write_all(b"GET /callback?code=c1&state=s1 HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let mut reply = [0u8; 12];
        let early = tokio::time::timeout(Duration::from_millis(300), browser.read(&mut reply));
        assert!(early.await.is_err(), "answered past the cap");
        assert!(!waiting.is_finished());
        drop(idle.pop());
        assert_eq!(waiting.await.unwrap(), "c1");
        browser.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"HTTP/1.1 200");
    }
}
