//! What an attacker with a password list meets, over HTTP on an in-process node (see
//! `pds_node`): failed logins on every path (XRPC `createSession`, `/auth/token`, web
//! `/signin`) lead to 429 with `Retry-After`; a burst of wrong logins leaves the node
//! answering; app-password sessions cannot manage app passwords; `/metrics` can require a
//! token; the `Host` header cannot inject into a challenge; pages cannot be framed.

mod pds_node;

use std::time::Duration;

use atcr::pds::limiter::{ACCOUNT_FREE_FAILURES, CLIENT_FREE_FAILURES};
use pds_node::{Node, assert_error};
use reqwest::StatusCode;
use serde_json::json;

fn retry_after(r: &reqwest::Response) -> u64 {
    r.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After in {:?}", r.headers()))
}

async fn create_session(node: &Node, who: &str, password: &str) -> reqwest::Response {
    node.client
        .post(format!(
            "{}/xrpc/com.atproto.server.createSession",
            node.base
        ))
        .header("content-type", "application/json")
        .body(json!({"identifier": who, "password": password}).to_string())
        .send()
        .await
        .unwrap()
}

async fn token(node: &Node, who: &str, password: &str) -> reqwest::Response {
    node.client
        .get(format!("{}/auth/token", node.base))
        .basic_auth(who, Some(password))
        .send()
        .await
        .unwrap()
}

async fn signin(node: &Node, who: &str, password: &str) -> reqwest::Response {
    let form = format!("identifier={who}&password={password}&next=/settings");
    node.client
        .post(format!("{}/signin", node.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn failed_logins_are_limited_on_every_path() {
    let node = Node::start().await;
    node.pds()
        .create_account("carol", "carol-pw", false)
        .await
        .unwrap();
    let free = usize::try_from(ACCOUNT_FREE_FAILURES).unwrap();

    // XRPC: the free failures, one more that starts the wait, then 429 even for the right
    // password.
    for _ in 0..=free {
        let r = create_session(&node, "alice", "wrong").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = create_session(&node, "alice.atcr.test", "alice-pw").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&r) >= 1);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "RateLimitExceeded", "{body}");

    // The registry token service (Basic auth): OCI TOOMANYREQUESTS.
    for _ in 0..=free {
        let r = token(&node, "bob", "wrong").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = token(&node, "bob", "bob-password").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&r) >= 1);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "TOOMANYREQUESTS", "{body}");

    // The web sign-in: a page that says what happened.
    for _ in 0..=free {
        let r = signin(&node, "carol", "wrong").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = signin(&node, "carol", "carol-pw").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&r) >= 1);
    let page = r.text().await.unwrap();
    assert!(page.contains("Too many failed sign-ins"), "{page}");
}

#[tokio::test]
async fn unknown_names_and_busy_clients_are_limited_too() {
    let node = Node::start().await;
    let free = usize::try_from(ACCOUNT_FREE_FAILURES).unwrap();
    // An unknown name meets the same limit after the same number of failures as a known one.
    for _ in 0..=free {
        let r = create_session(&node, "nobody", "wrong").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = create_session(&node, "nobody", "wrong").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // One client trying many names meets its own limit.
    let client_free = usize::try_from(CLIENT_FREE_FAILURES).unwrap();
    let mut statuses = Vec::new();
    for i in 0..=client_free {
        statuses.push(
            create_session(&node, &format!("guess{i}"), "wrong")
                .await
                .status(),
        );
    }
    assert_eq!(
        statuses.last(),
        Some(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert!(
        statuses[..client_free - free - 1]
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED)
    );
}

#[tokio::test]
async fn a_burst_of_wrong_logins_leaves_the_node_answering() {
    let node = Node::start().await;
    let before = node.pds().logins.argon2_runs();
    // Distinct names, so that the per-account limit lets every one reach argon2.
    let attempts: Vec<_> = (0..16)
        .map(|i| {
            let (client, url) = (
                node.client.clone(),
                format!("{}/xrpc/com.atproto.server.createSession", node.base),
            );
            tokio::spawn(async move {
                client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(json!({"identifier": format!("guess{i}"), "password": "x"}).to_string())
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    // While they run, the node answers its health check.
    for _ in 0..5 {
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            node.client.get(format!("{}/healthz", node.base)).send(),
        )
        .await
        .expect("/healthz answers during a burst of logins")
        .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    for a in attempts {
        assert_eq!(a.await.unwrap(), StatusCode::UNAUTHORIZED);
    }
    // Every unknown name cost one argon2 run, as a known one would.
    assert_eq!(node.pds().logins.argon2_runs() - before, 16);
}

#[tokio::test]
async fn app_password_sessions_cannot_manage_app_passwords() {
    let node = Node::start().await;
    let full = node.login("alice", "alice-pw").await;
    let access = full["accessJwt"].as_str().unwrap();
    let (s, app) = node
        .post(
            "com.atproto.server.createAppPassword",
            Some(access),
            json!({"name": "ci"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{app}");
    let session = node.login("alice", app["password"].as_str().unwrap()).await;
    let app_access = session["accessJwt"].as_str().unwrap();
    for (nsid, body) in [
        (
            "com.atproto.server.revokeAppPassword",
            Some(json!({"name": "ci"})),
        ),
        (
            "com.atproto.server.createAppPassword",
            Some(json!({"name": "x"})),
        ),
        ("com.atproto.server.listAppPasswords", None),
    ] {
        let got = match body {
            Some(b) => node.post(nsid, Some(app_access), b).await,
            None => node.get(nsid, Some(app_access)).await,
        };
        assert_error(&got, StatusCode::BAD_REQUEST, "InvalidToken");
    }
    // The app password still works: nothing was revoked.
    node.login("alice", app["password"].as_str().unwrap()).await;
}

#[tokio::test]
async fn metrics_can_require_a_token() {
    let node = Node::start_app(|app| app.metrics_token = Some("s3cret".into())).await;
    let url = format!("{}/metrics", node.base);
    let r = node.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = node
        .client
        .get(&url)
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = node
        .client
        .get(&url)
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("atcr_http_requests_total"));
    // Without a token configured, it is open (the default).
    let open = Node::start().await;
    let r = open
        .client
        .get(format!("{}/metrics", open.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_host_header_cannot_inject_into_the_challenge() {
    let node = Node::start().await;
    let r = node
        .client
        .get(format!("{}/v2/", node.base))
        .header("host", r#"evil",error="x"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(!challenge.contains("evil"), "{challenge}");
    let public = &node.pds().settings.public_host;
    assert!(
        challenge.contains(&format!(r#"realm="http://{public}/auth/token""#)),
        "{challenge}"
    );
    // A well-formed host is used as given.
    let r = node
        .client
        .get(format!("{}/v2/", node.base))
        .header("host", "registry.lan:5000")
        .send()
        .await
        .unwrap();
    let challenge = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains(r#"realm="http://registry.lan:5000/auth/token""#),
        "{challenge}"
    );
}

#[tokio::test]
async fn pages_cannot_be_framed_or_sniffed() {
    let node = Node::start().await;
    for path in ["/", "/signin", "/static/style.css", "/r/no-such-repo"] {
        let r = node
            .client
            .get(format!("{}{path}", node.base))
            .send()
            .await
            .unwrap();
        let h = r.headers();
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
    }
}
