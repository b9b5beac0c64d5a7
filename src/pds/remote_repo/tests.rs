use std::collections::HashMap;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::pds::PdsSettings;

const DID: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";

type Routes = HashMap<(&'static str, &'static str), (u16, String)>;

/// A PDS on 127.0.0.1 answering (path, bearer token) → (status, body).
async fn serve(routes: Routes) -> String {
    serve_counting(routes).await.0
}

/// [`serve`], and how many requests each path got.
async fn serve_counting(routes: Routes) -> (String, Arc<std::sync::Mutex<HashMap<String, usize>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let counts = Arc::new(std::sync::Mutex::new(HashMap::new()));
    let counted = counts.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = vec![0; 8192];
            let n = conn.read(&mut buf).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            let path = head.split(' ').nth(1).unwrap_or("");
            *counted.lock().unwrap().entry(path.to_owned()).or_insert(0) += 1;
            let bearer = head
                .lines()
                .find_map(|l| l.strip_prefix("authorization: Bearer "))
                .unwrap_or("")
                .trim();
            let (status, body) = routes
                .iter()
                .find(|((p, b), _)| *p == path && *b == bearer)
                .map_or((500, "{}".to_owned()), |(_, a)| a.clone());
            let answer = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(answer.as_bytes()).await;
        }
    });
    (url, counts)
}

async fn node() -> (tempfile::TempDir, Pds) {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = PdsSettings::localhost(4000);
    settings.identity.lan_hosts = vec!["127.0.0.1".into()];
    let blobs = crate::blobstore::BlobStore::memory().unwrap();
    let pds = Pds::open(dir.path(), settings, blobs).await.unwrap();
    (dir, pds)
}

const APPLY: &str = "/xrpc/com.atproto.repo.applyWrites";
const REFRESH: &str = "/xrpc/com.atproto.server.refreshSession";

/// `access1` has expired, `refresh1` gives `access2`/`refresh2`, which `applyWrites` takes.
fn expiring_routes() -> Routes {
    let expired = (
        400,
        json!({"error": "ExpiredToken", "message": "expired"}).to_string(),
    );
    let fresh = json!({"did": DID, "accessJwt": "access2", "refreshJwt": "refresh2"});
    HashMap::from([
        ((APPLY, "access1"), expired),
        ((REFRESH, "refresh1"), (200, fresh.to_string())),
        ((APPLY, "access2"), (200, json!({"commit": {}}).to_string())),
    ])
}

/// An expired access token is refreshed once, and the new tokens are kept.
#[tokio::test]
async fn an_expired_session_is_refreshed_and_kept() {
    let url = serve(expiring_routes()).await;
    let (_dir, pds) = node().await;
    let did: Did = DID.parse().unwrap();
    let call = || pds.remote_call(&did, "com.atproto.repo.applyWrites", None);
    assert!(matches!(call().await, Err(RemoteCallError::NoSession(_))));
    let session = RemoteSession::new(url.clone(), "access1".into(), "refresh1".into());
    assert!(pds.remote_sessions.keep(&did, session).is_none());
    assert_eq!(call().await.unwrap(), json!({"commit": {}}));
    // The refreshed session is the one kept: its access token works without a refresh.
    let kept = pds.remote_sessions.get(&did).unwrap();
    assert_eq!(
        (kept.access.as_str(), kept.refresh.as_str()),
        ("access2", "refresh2")
    );
    assert!(call().await.is_ok());
}

/// Calls racing on an expired session refresh it once: refresh tokens are single-use, and a
/// second refresh with the same one would be refused and end the session.
#[tokio::test]
async fn racing_calls_refresh_once() {
    let (url, counts) = serve_counting(expiring_routes()).await;
    let (_dir, pds) = node().await;
    let did: Did = DID.parse().unwrap();
    let session = RemoteSession::new(url.clone(), "access1".into(), "refresh1".into());
    pds.remote_sessions.keep(&did, session);
    let calls = (0..8).map(|_| pds.remote_call(&did, "com.atproto.repo.applyWrites", None));
    for answer in futures_util::future::join_all(calls).await {
        assert_eq!(answer.unwrap(), json!({"commit": {}}));
    }
    assert_eq!(counts.lock().unwrap().get(REFRESH), Some(&1));
}

/// A refresh token the PDS no longer takes ends the session here (the user logs in again);
/// other refusals are passed on, and 5xx answers are outages.
#[tokio::test]
async fn refusals_and_outages_are_told_apart() {
    let expired = (400, json!({"error": "ExpiredToken"}).to_string());
    let url = serve(HashMap::from([
        ((APPLY, "old"), expired),
        (
            (REFRESH, "old-refresh"),
            (400, json!({"error": "ExpiredToken"}).to_string()),
        ),
        (
            (APPLY, "denied"),
            (
                400,
                json!({"error": "InvalidRequest", "message": "no"}).to_string(),
            ),
        ),
    ]))
    .await;
    let (_dir, pds) = node().await;
    let did: Did = DID.parse().unwrap();
    let call = || pds.remote_call(&did, "com.atproto.repo.applyWrites", None);
    pds.remote_sessions.keep(
        &did,
        RemoteSession::new(url.clone(), "old".into(), "old-refresh".into()),
    );
    assert!(matches!(call().await, Err(RemoteCallError::NoSession(_))));
    assert!(!pds.remote_sessions.has(&did));
    pds.remote_sessions.keep(
        &did,
        RemoteSession::new(url.clone(), "denied".into(), "r".into()),
    );
    let refused = call().await.unwrap_err();
    assert!(
        matches!(&refused, RemoteCallError::Refused { status: 400, error, .. } if error == "InvalidRequest"),
        "{refused:?}"
    );
    pds.remote_sessions.keep(
        &did,
        RemoteSession::new(url.clone(), "unknown".into(), "r".into()),
    );
    assert!(matches!(call().await, Err(RemoteCallError::Unavailable(_))));
    // A PDS that is no LAN host and not HTTPS is not reached at all.
    let elsewhere = "http://192.0.2.1:1".to_owned();
    pds.remote_sessions
        .keep(&did, RemoteSession::new(elsewhere, "t".into(), "r".into()));
    assert!(matches!(call().await, Err(RemoteCallError::Unavailable(_))));
}

/// A resource server taking DPoP-bound `access` with proofs carrying `nonce` for its own URL,
/// as the reference PDS does: a stale nonce is `401 use_dpop_nonce` with the current one.
async fn serve_dpop(
    access: &'static str,
    nonce: &'static str,
) -> (String, Arc<std::sync::Mutex<Vec<Json>>>) {
    use base64::Engine as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let proofs = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (seen, base) = (proofs.clone(), url.clone());
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = vec![0; 16384];
            let n = conn.read(&mut buf).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            let header = |name: &str| {
                head.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                    .unwrap_or("")
                    .trim()
                    .to_owned()
            };
            let proof = header("dpop");
            let claims: Json = proof
                .split('.')
                .nth(1)
                .and_then(|c| {
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(c)
                        .ok()
                })
                .and_then(|c| serde_json::from_slice(&c).ok())
                .unwrap_or_default();
            seen.lock().unwrap().push(claims.clone());
            let path = head.split(' ').nth(1).unwrap_or("");
            let ok = header("authorization") == format!("DPoP {access}")
                && claims["htu"] == format!("{base}{path}")
                && claims["nonce"] == nonce;
            let (status, body) = if ok {
                ("200 OK", r#"{"commit":{}}"#)
            } else {
                ("401 Unauthorized", r#"{"error":"use_dpop_nonce"}"#)
            };
            let answer = format!(
                "HTTP/1.1 {status}\r\ndpop-nonce: {nonce}\r\nwww-authenticate: DPoP error=\"use_dpop_nonce\"\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(answer.as_bytes()).await;
        }
    });
    (url, proofs)
}

/// An OAuth session's call with a nonce the PDS no longer takes is made again, once, with the
/// nonce the PDS gives, which is kept for the next call; each proof is for the call's URL.
#[tokio::test]
async fn a_stale_dpop_nonce_is_replaced_by_the_servers() {
    let (url, proofs) = serve_dpop("access1", "n2").await;
    let (_dir, pds) = node().await;
    let did: Did = DID.parse().unwrap();
    let server = crate::pds::oauth::AuthServer {
        issuer: url.clone(),
        par_endpoint: format!("{url}/par"),
        authorization_endpoint: format!("{url}/authorize"),
        token_endpoint: format!("{url}/token"),
        revocation_endpoint: None,
    };
    let grant = OAuthGrant::new(
        DpopKey::generate(),
        &server,
        "http://localhost".into(),
        None,
    );
    grant.set_nonces(None, Some("n1".into()));
    let session = RemoteSession::oauth(url.clone(), "access1".into(), "r".into(), grant);
    pds.remote_sessions.keep(&did, session);
    let call = || pds.remote_call(&did, "com.atproto.repo.applyWrites", None);
    assert_eq!(call().await.unwrap(), json!({"commit": {}}));
    assert!(call().await.is_ok());
    let proofs = proofs.lock().unwrap().clone();
    let nonces: Vec<&Json> = proofs.iter().map(|p| &p["nonce"]).collect();
    assert_eq!(nonces, [&json!("n1"), &json!("n2"), &json!("n2")]);
    let target = format!("{url}/xrpc/com.atproto.repo.applyWrites");
    assert!(
        proofs
            .iter()
            .all(|p| p["htu"] == target && p["htm"] == "POST")
    );
    assert!(proofs.iter().all(|p| p["ath"].is_string()));
    let jti: std::collections::HashSet<&Json> = proofs.iter().map(|p| &p["jti"]).collect();
    assert_eq!(jti.len(), 3, "a proof is never sent twice");
}
