use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::pds::PdsSettings;

const DID: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";

/// A server on 127.0.0.1 answering `path` (query included) → (status, body); counts requests.
async fn serve(routes: HashMap<String, (u16, String)>) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let mut buf = vec![0; 4096];
            let n = conn.read(&mut buf).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            let path = head.split(' ').nth(1).unwrap_or("").to_owned();
            let (status, body) = routes.get(&path).cloned().unwrap_or((404, "{}".to_owned()));
            let answer = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(answer.as_bytes()).await;
        }
    });
    (url, hits)
}

fn document(handle: &str, endpoint: &str) -> String {
    json!({
        "id": DID,
        "alsoKnownAs": [format!("at://{handle}")],
        "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                     "serviceEndpoint": endpoint}],
    })
    .to_string()
}

fn resolve_route(handle: &str, answer: (u16, String)) -> (String, (u16, String)) {
    (
        format!("/xrpc/com.atproto.identity.resolveHandle?handle={handle}"),
        answer,
    )
}

async fn node(server: &str) -> (tempfile::TempDir, Pds) {
    let dir = tempfile::tempdir().unwrap();
    let settings = PdsSettings {
        plc_upstream: Some(server.to_owned()),
        identity: IdentitySettings {
            handle_resolver: Some(server.to_owned()),
            lan_hosts: vec!["localhost".into()],
            ..IdentitySettings::default()
        },
        ..PdsSettings::localhost(4000)
    };
    let pds = Pds::open(
        dir.path(),
        settings,
        crate::blobstore::BlobStore::memory().unwrap(),
    )
    .await
    .unwrap();
    (dir, pds)
}

#[tokio::test]
async fn handles_and_dids_resolve_both_ways_and_are_cached() {
    let routes = HashMap::from([
        resolve_route("carol.test", (200, json!({"did": DID}).to_string())),
        (
            format!("/{DID}"),
            (200, document("carol.test", "http://localhost:2583")),
        ),
    ]);
    let (url, hits) = serve(routes).await;
    let (_dir, pds) = node(&url).await;
    let ids = Identities::default();
    let want = Identity {
        did: DID.parse().unwrap(),
        handle: Some("carol.test".parse().unwrap()),
        pds: "http://localhost:2583".into(),
    };
    assert_eq!(ids.resolve(&pds, "Carol.Test").await.unwrap(), want);
    let fetched = hits.load(Ordering::SeqCst);
    assert_eq!(fetched, 2);
    assert_eq!(ids.resolve(&pds, "carol.test").await.unwrap(), want);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        fetched,
        "served from the cache"
    );
    // By DID: the document's handle is checked against the resolver.
    assert_eq!(ids.resolve(&pds, DID).await.unwrap(), want);
}

#[tokio::test]
async fn a_document_that_does_not_name_the_handle_is_no_identity() {
    let routes = HashMap::from([
        resolve_route("mallory.test", (200, json!({"did": DID}).to_string())),
        (
            format!("/{DID}"),
            (200, document("carol.test", "https://pds.example.com")),
        ),
        resolve_route("carol.test", (400, json!({"error": "x"}).to_string())),
    ]);
    let (url, _) = serve(routes).await;
    let (_dir, pds) = node(&url).await;
    let ids = Identities::default();
    let err = ids.resolve(&pds, "mallory.test").await.unwrap_err();
    assert!(
        matches!(err, ResolveError::NotFound(ref m) if m.contains("does not name")),
        "{err}"
    );
    // By DID the identity stands, without the handle that does not resolve back.
    let id = ids.resolve(&pds, DID).await.unwrap();
    assert_eq!(
        (id.handle, id.pds.as_str()),
        (None, "https://pds.example.com")
    );
    let err = ids.resolve(&pds, "nobody.test").await.unwrap_err();
    assert!(matches!(err, ResolveError::NotFound(_)), "{err}");
    let err = ids.resolve(&pds, "not a handle").await.unwrap_err();
    assert!(matches!(err, ResolveError::NotFound(_)), "{err}");
}

#[tokio::test]
async fn plain_http_pds_endpoints_only_where_allowed() {
    let routes = HashMap::from([
        resolve_route("carol.test", (200, json!({"did": DID}).to_string())),
        (
            format!("/{DID}"),
            (200, document("carol.test", "http://pds.lan")),
        ),
    ]);
    let (url, _) = serve(routes).await;
    let (_dir, mut pds) = node(&url).await;
    let err = Identities::default()
        .resolve(&pds, "carol.test")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not HTTPS"), "{err}");
    pds.settings.identity.lan_hosts = vec!["pds.lan".into()];
    let id = Identities::default()
        .resolve(&pds, "carol.test")
        .await
        .unwrap();
    assert_eq!(id.pds, "http://pds.lan");
}

#[tokio::test]
async fn an_unreachable_resolver_is_unavailable_and_not_cached() {
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (_dir, pds) = node(&format!("http://127.0.0.1:{port}")).await;
    let ids = Identities::default();
    let err = ids.resolve(&pds, "carol.test").await.unwrap_err();
    assert!(matches!(err, ResolveError::Unavailable(_)), "{err}");
    assert!(ids.cached("carol.test", Duration::from_mins(5)).is_none());
    let err = ids.resolve(&pds, DID).await.unwrap_err();
    assert!(matches!(err, ResolveError::Unavailable(_)), "{err}");
}

#[tokio::test]
async fn oversized_answers_are_refused() {
    let huge = format!(
        "{{\"did\": \"{DID}\", \"pad\": \"{}\"}}",
        "x".repeat(8 << 10)
    );
    let routes = HashMap::from([resolve_route("carol.test", (200, huge))]);
    let (url, _) = serve(routes).await;
    let (_dir, pds) = node(&url).await;
    assert!(
        Identities::default()
            .resolve(&pds, "carol.test")
            .await
            .is_err()
    );
}

#[test]
fn only_listed_hosts_are_lan_hosts() {
    let s = IdentitySettings {
        lan_hosts: vec!["pds.lan".into(), "127.0.0.1".into()],
        ..IdentitySettings::default()
    };
    for host in ["127.0.0.1", "PDS.lan"] {
        assert!(s.lan_host(host), "{host}");
    }
    for host in ["pds.example.com", "localhost", "[::1]"] {
        assert!(!s.lan_host(host), "{host}");
    }
    // Others: HTTPS, at public addresses only.
    assert!(!s.reachable("http://pds.lan:2583").unwrap().public_only);
    assert!(s.reachable("https://pds.example.com").unwrap().public_only);
    assert!(s.reachable("https://localhost:2583").unwrap().public_only);
    assert!(s.reachable("http://localhost:2583").is_err());
    assert!(s.reachable("http://10.0.0.1").is_err());
}
