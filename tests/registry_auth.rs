//! Docker token auth over HTTP: challenges, the token service, the hold's permission matrix
//! end to end, and refused tokens (expired, wrong audience, wrong key, `alg: none`, scope
//! escalation).

mod inproc;

use atcr::atproto::{Algorithm as KeyAlgorithm, Did, Keypair};
use atcr::auth::{Access, Scope, Tokens};
use atcr::blobstore::{Algorithm, Digest};
use atcr::hold::Permission;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use inproc::{PASSWORD, TestServer, expect_error, header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// `GET /auth/token` with optional Basic credentials; returns the token.
async fn token(s: &TestServer, creds: Option<(&str, &str)>, scopes: &[&str]) -> String {
    let r = token_response(s, creds, scopes).await;
    assert_eq!(r.status(), StatusCode::OK, "{creds:?}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token"], body["access_token"]);
    assert_eq!(body["expires_in"], 300);
    body["token"].as_str().unwrap().to_owned()
}

async fn token_response(
    s: &TestServer,
    creds: Option<(&str, &str)>,
    scopes: &[&str],
) -> reqwest::Response {
    let mut query: Vec<(&str, &str)> = scopes.iter().map(|sc| ("scope", *sc)).collect();
    let service = s.app.auth.tokens.service().to_owned();
    query.push(("service", &service));
    let mut req = s.anonymous(Method::GET, "/auth/token").query(&query);
    if let Some((u, p)) = creds {
        req = req.basic_auth(u, Some(p));
    }
    req.send().await.unwrap()
}

/// Uploads a blob with `token`; returns the status.
async fn try_push_blob(s: &TestServer, repo: &str, token: &str) -> reqwest::Response {
    let data = format!("blob for {repo}");
    let digest = Digest::of(Algorithm::Sha256, data.as_bytes());
    s.anonymous(
        Method::POST,
        &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
    )
    .bearer_auth(token)
    .body(data)
    .send()
    .await
    .unwrap()
}

async fn account(s: &TestServer, name: &str, role: Option<&[Permission]>) -> Did {
    let did = s
        .app
        .pds
        .create_account(name, &format!("{name}-password"), false)
        .await
        .unwrap()
        .did;
    if let Some(perms) = role {
        s.app.hold.add_crew(&did, "write", perms).await.unwrap();
    }
    did
}

#[tokio::test]
async fn challenge_then_token_then_access() {
    let s = TestServer::start().await;
    let r = s.anonymous(Method::GET, "/v2/").send().await.unwrap();
    let challenge = header(&r, "www-authenticate");
    expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let port = s.base.rsplit(':').next().unwrap();
    assert_eq!(
        challenge,
        format!("Bearer realm=\"http://127.0.0.1:{port}/auth/token\",service=\"localhost:{port}\"")
    );
    // A repository request's challenge names the scope it needs.
    let r = s
        .anonymous(Method::POST, "/v2/t/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert!(
        header(&r, "www-authenticate").ends_with(",scope=\"repository:t/app:pull,push\""),
        "{}",
        header(&r, "www-authenticate")
    );

    // Anonymous tokens open /v2/ and public pulls, not pushes.
    let anon = token(&s, None, &["repository:t/app:pull,push"]).await;
    let r = s
        .anonymous(Method::GET, "/v2/")
        .bearer_auth(&anon)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = try_push_blob(&s, "t/app", &anon).await;
    let challenge = header(&r, "www-authenticate");
    expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );

    // Wrong password, unknown user: 401.
    for creds in [("t", "wrong"), ("nobody", "x")] {
        let r = token_response(&s, Some(creds), &["repository:t/app:push"]).await;
        expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    }
    // The short name, the handle and the DID all log in.
    let did = s.user.to_string();
    for user in ["t", "t.atcr.test", did.as_str()] {
        let t = token(&s, Some((user, PASSWORD)), &["repository:t/app:pull,push"]).await;
        let r = try_push_blob(&s, "t/app", &t).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{user}");
    }
    // The OAuth2 form works too.
    let service = s.app.auth.tokens.service().to_owned();
    let r = s
        .anonymous(Method::POST, "/auth/token")
        .form(&[
            ("grant_type", "password"),
            ("username", "t"),
            ("password", PASSWORD),
            ("service", &service),
            ("scope", "repository:t/app:pull"),
            ("client_id", "test"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn app_passwords_log_in_and_owners_push_only_into_their_namespace() {
    let s = TestServer::start().await;
    let (app_password, _) = s
        .app
        .pds
        .accounts
        .create_app_password(&s.user, "ci", false)
        .unwrap()
        .unwrap();
    let t = token(
        &s,
        Some(("t", &app_password)),
        &["repository:t/app:pull,push"],
    )
    .await;
    assert_eq!(
        try_push_blob(&s, "t/app", &t).await.status(),
        StatusCode::CREATED
    );
    // Remembered credentials still end with the app password or the account password.
    s.app
        .pds
        .accounts
        .revoke_app_password(&s.user, "ci")
        .unwrap();
    let r = token_response(&s, Some(("t", &app_password)), &["repository:t/app:pull"]).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    token(&s, Some(("t", PASSWORD)), &[]).await;
    s.app
        .pds
        .accounts
        .set_password(&s.user, "new-password")
        .unwrap();
    let r = token_response(&s, Some(("t", PASSWORD)), &[]).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;

    account(
        &s,
        "bob",
        Some(&[Permission::BlobRead, Permission::BlobWrite]),
    )
    .await;
    // Into another's namespace: the token service grants what it may (pull) and says why not
    // the rest; the registry refuses with the same reason, in the body and the challenge
    // (which Docker shows, and stops at), and a new token would not help.
    let why = "bob may not push to t/app: only the owner pushes into a namespace";
    let r = token_response(
        &s,
        Some(("bob", "bob-password")),
        &["repository:t/app:pull,push"],
    )
    .await;
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["denied"], json!([why]), "{answer}");
    let bob = answer["token"].as_str().unwrap();
    let r = try_push_blob(&s, "t/app", bob).await;
    let challenge = header(&r, "www-authenticate");
    assert!(
        challenge.ends_with(&format!(
            ",scope=\"repository:t/app:pull,push\",error=\"insufficient_scope\",error_description=\"{why}\""
        )),
        "{challenge}"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"errors": [{"code": "DENIED", "message": why, "detail": {"scope": "repository:t/app:pull,push"}}]})
    );
    let r = s
        .anonymous(Method::DELETE, "/v2/t/app/manifests/v1")
        .bearer_auth(token(&s, Some(("bob", "bob-password")), &["repository:t/app:*"]).await)
        .send()
        .await
        .unwrap();
    let body = expect_error(r, StatusCode::UNAUTHORIZED, "DENIED").await;
    assert_eq!(body["scope"], "repository:t/app:delete");
    let bob = token(
        &s,
        Some(("bob", "bob-password")),
        &["repository:bob/app:pull,push"],
    )
    .await;
    assert_eq!(
        try_push_blob(&s, "bob/app", &bob).await.status(),
        StatusCode::CREATED
    );
    // An unknown owner is NAME_UNKNOWN to whoever may pull.
    let anon = token(&s, None, &["repository:nobody/app:pull"]).await;
    let r = s
        .anonymous(Method::GET, "/v2/nobody/app/tags/list")
        .bearer_auth(anon)
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;
}

#[tokio::test]
async fn refused_tokens() {
    let s = TestServer::start().await;
    let now = atcr::pds::accounts::now_secs();
    let pull = |name: &str| vec![Access::from_scope(&Scope::parse(name).unwrap())];
    let tokens = &s.app.auth.tokens;
    let node = s.app.pds.node_did.clone();
    let get = |token: String| {
        s.anonymous(Method::GET, "/v2/t/app/tags/list")
            .bearer_auth(token)
            .send()
    };
    // Expired.
    let expired = tokens.issue(Some(&s.user), pull("repository:t/app:pull"), now - 600);
    let r = get(expired).await.unwrap();
    assert!(header(&r, "www-authenticate").contains("error=\"invalid_token\""));
    expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    // Another audience, another key.
    let key = std::sync::Arc::new(Keypair::generate(KeyAlgorithm::P256));
    let elsewhere = Tokens::new(s.app.pds.keys.token.clone(), &node, "elsewhere");
    let forged = Tokens::new(key, &node, tokens.service());
    for t in [
        elsewhere.issue(Some(&s.user), pull("repository:t/app:pull"), now),
        forged.issue(Some(&s.user), pull("repository:t/app:pull"), now),
    ] {
        let r = get(t).await.unwrap();
        expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    }
    // alg none.
    let claims = json!({"iss": node.as_str(), "sub": s.user.as_str(), "aud": tokens.service(),
        "iat": now, "nbf": now, "exp": now + 300, "jti": "x",
        "access": [{"type": "repository", "name": "t/app", "actions": ["pull", "push"]}]});
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    expect_error(
        get(unsigned).await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    )
    .await;
    // A PDS session token is not a registry token.
    let session = atcr::pds::auth::issue(
        &s.app.pds.keys.token,
        node.as_str(),
        s.user.as_str(),
        false,
        now,
    );
    expect_error(
        get(session.access).await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    )
    .await;
    // Scope escalation: a pull token does not push, nor reach another repository. The caller
    // may have those scopes, so the answer is a challenge for them (as Distribution's), and a
    // client that reuses tokens across scopes gets one and retries.
    let t = tokens.issue(Some(&s.user), pull("repository:t/app:pull"), now);
    let r = try_push_blob(&s, "t/app", &t).await;
    let challenge = header(&r, "www-authenticate");
    assert!(
        challenge.contains(",scope=\"repository:t/app:pull,push\",error=\"insufficient_scope\""),
        "{challenge}"
    );
    expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let upgraded = token(&s, Some(("t", PASSWORD)), &["repository:t/app:pull,push"]).await;
    assert_eq!(
        try_push_blob(&s, "t/app", &upgraded).await.status(),
        StatusCode::CREATED
    );
    let r = s
        .anonymous(Method::GET, "/v2/t/other/tags/list")
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert!(
        header(&r, "www-authenticate")
            .contains(",scope=\"repository:t/other:pull\",error=\"insufficient_scope\""),
    );
    expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    // Asking for more than the rules allow grants only what they allow.
    let t = token(
        &s,
        None,
        &["repository:t/app:pull,push,delete", "registry:catalog:*"],
    )
    .await;
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(t.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        claims["access"],
        json!([
            {"type": "repository", "name": "t/app", "actions": ["pull"]},
            {"type": "registry", "name": "catalog", "actions": ["*"]},
        ])
    );
}

/// Who asks, in the matrix.
#[derive(Debug, Clone, Copy)]
enum Who {
    Anonymous,
    Owner,
    CrewRead,
    CrewWrite,
    CrewAdmin,
    Stranger,
}

#[tokio::test]
async fn permission_matrix() {
    use Who::*;
    let s = TestServer::start().await;
    let owner = account(&s, "owner", None).await;
    s.app
        .hold
        .set_captain(Some(owner.clone()), None, None)
        .await
        .unwrap();
    account(&s, "reader", Some(&[Permission::BlobRead])).await;
    account(
        &s,
        "writer",
        Some(&[Permission::BlobRead, Permission::BlobWrite]),
    )
    .await;
    account(
        &s,
        "admin",
        Some(&[
            Permission::BlobRead,
            Permission::BlobWrite,
            Permission::CrewAdmin,
        ]),
    )
    .await;
    account(&s, "stranger", None).await;
    let name = |w: Who| match w {
        Anonymous => None,
        Owner => Some("owner"),
        CrewRead => Some("reader"),
        CrewWrite => Some("writer"),
        CrewAdmin => Some("admin"),
        Stranger => Some("stranger"),
    };
    // (who, public hold, pull t/app, push own namespace, change crew)
    let table = [
        (Anonymous, true, true, false, false),
        (Owner, true, true, true, true),
        (CrewRead, true, true, false, false),
        (CrewWrite, true, true, true, false),
        (CrewAdmin, true, true, true, true),
        (Stranger, true, true, false, false),
        (Anonymous, false, false, false, false),
        (Owner, false, true, true, true),
        (CrewRead, false, true, false, false),
        (CrewWrite, false, true, true, false),
        (CrewAdmin, false, true, true, true),
        (Stranger, false, false, false, false),
    ];
    for (who, public, pull, push, crew) in table {
        s.app
            .hold
            .set_captain(None, Some(public), None)
            .await
            .unwrap();
        let creds = name(who).map(|n| (n, format!("{n}-password")));
        let creds = creds.as_ref().map(|(n, p)| (*n, p.as_str()));
        let ns = name(who).unwrap_or("t");
        let pull_scope = "repository:t/app:pull".to_owned();
        let push_scope = format!("repository:{ns}/app:pull,push");
        let t = token(&s, creds, &[&pull_scope, &push_scope]).await;
        let r = s
            .anonymous(Method::GET, "/v2/t/app/tags/list")
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        // Pulling t/app (never pushed): allowed means the registry answers NAME_UNKNOWN.
        let pulled = r.status() == StatusCode::NOT_FOUND;
        assert_eq!(pulled, pull, "{who:?} public={public} pull: {}", r.status());
        let pushed =
            try_push_blob(&s, &format!("{ns}/app"), &t).await.status() == StatusCode::CREATED;
        assert_eq!(pushed, push, "{who:?} public={public} push");
        let caller = match name(who) {
            Some(n) => s.app.pds.accounts.find(n).unwrap().map(|a| a.did),
            None => None,
        };
        let changes = s
            .app
            .hold
            .allows(caller.as_ref(), Permission::CrewAdmin)
            .unwrap();
        assert_eq!(changes, crew, "{who:?} public={public} crew change");
    }
}

#[tokio::test]
async fn private_repositories_do_not_reveal_themselves() {
    let s = TestServer::start().await;
    s.push_image("t/secret", "v1", &[b"layer"], json!({})).await;
    s.app
        .hold
        .set_captain(None, Some(false), None)
        .await
        .unwrap();
    let mut answers = Vec::new();
    for repo in ["t/secret", "t/nothing-here"] {
        let t = token(&s, None, &[&format!("repository:{repo}:pull")]).await;
        let r = s
            .anonymous(Method::GET, &format!("/v2/{repo}/manifests/v1"))
            .bearer_auth(t)
            .send()
            .await
            .unwrap();
        let status = r.status();
        // The answer repeats the name asked for, and nothing of what is behind it.
        let body = r.text().await.unwrap().replace(repo, "<repo>");
        answers.push((status, body));
    }
    assert_eq!(answers[0].0, StatusCode::UNAUTHORIZED);
    assert_eq!(answers[0], answers[1]);
}

#[tokio::test]
async fn a_token_reused_across_scopes_is_challenged_then_upgraded() {
    let s = TestServer::start().await;
    let r = s
        .req(Method::POST, "/v2/t/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let session = header(&r, "location");
    // A token from an earlier pull, reused for the upload session (which needs push).
    let pull = token(&s, Some(("t", PASSWORD)), &["repository:t/app:pull"]).await;
    let status = || s.anonymous(Method::GET, &session).bearer_auth(&pull).send();
    let r = status().await.unwrap();
    let challenge = header(&r, "www-authenticate");
    assert!(
        challenge.contains(",scope=\"repository:t/app:pull,push\",error=\"insufficient_scope\""),
        "{challenge}"
    );
    expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    // The same request with the same token again: the client ignored the challenge, and hears
    // it once more as a 403 (RFC 6750), which the oras Python SDK acts on.
    let r = status().await.unwrap();
    assert_eq!(header(&r, "www-authenticate"), challenge);
    expect_error(r, StatusCode::FORBIDDEN, "UNAUTHORIZED").await;
    // A token for the challenge's scope gets the session's status.
    let push = token(&s, Some(("t", PASSWORD)), &["repository:t/app:pull,push"]).await;
    let r = s
        .anonymous(Method::GET, &session)
        .bearer_auth(&push)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}
