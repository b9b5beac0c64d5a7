//! Who may read what the records name: a record proves only that its author wrote it, never
//! that they may read a blob (forged manifest records expose nothing, live, after a rebuild and
//! after a lost index), and a private hold keeps repositories to its crew.

mod inproc;

use atcr::blobstore::{Algorithm, Digest};
use inproc::{OCI_MANIFEST, PASSWORD, TestServer, bytes};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const MANIFEST: &str = atcr::appview::records::MANIFEST_COLLECTION;
const TAG: &str = atcr::appview::records::TAG_COLLECTION;

fn last_seq(s: &TestServer) -> u64 {
    s.app.pds.store().last_seq().unwrap()
}

/// Writes `writes` through `com.atproto.repo.applyWrites` as `did` with session `jwt`.
async fn apply_writes(s: &TestServer, jwt: &str, did: &str, writes: Value) -> StatusCode {
    let r = s
        .anonymous(Method::POST, "/xrpc/com.atproto.repo.applyWrites")
        .bearer_auth(jwt)
        .json(&json!({"repo": did, "writes": writes}))
        .send()
        .await
        .unwrap();
    r.status()
}

/// What a pull of `path` answers: status and OCI error code.
async fn pull(s: &TestServer, path: &str) -> (StatusCode, String) {
    let r = s.req(Method::GET, path).send().await.unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (
        status,
        body["errors"][0]["code"].as_str().unwrap_or("").to_owned(),
    )
}

/// Every path in `refused` answers 404; `own` answers 200.
async fn check(s: &TestServer, refused: &[String], own: &str) {
    for path in refused {
        assert_eq!(pull(s, path).await.0, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(pull(s, own).await.0, StatusCode::OK, "{own}");
}

/// A manifest record proves only that its author wrote it: records naming another user's
/// blobs — deleted ones or live ones — serve none of them, before and after a rebuild and a lost
/// index; deleted blobs stay deleted.
#[tokio::test]
async fn forged_manifest_records_expose_no_blobs() {
    let s = TestServer::start().await;
    let secret = bytes(41, 3000);
    let secret_layer = Digest::of(Algorithm::Sha256, &secret);
    let (secret_digest, _) = s.push_image("t/secret", "1", &[&secret], json!({})).await;
    let r = s
        .req(
            Method::DELETE,
            &format!("/v2/t/secret/manifests/{secret_digest}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let secret_path = format!("/v2/t/secret/blobs/{secret_layer}");
    let r = s.req(Method::DELETE, &secret_path).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(pull(&s, &secret_path).await.0, StatusCode::NOT_FOUND);
    let node_layers = s
        .app
        .pds
        .repos
        .store()
        .list_records(&s.app.pds.node_did, "io.atcr.hold.layer", None, 100, false)
        .unwrap();
    assert!(node_layers.is_empty(), "withdrawn: {node_layers:?}");
    let live = bytes(42, 5000);
    let live_layer = Digest::of(Algorithm::Sha256, &live);
    let (live_digest, live_bytes) = s.push_image("t/live", "1", &[&live], json!({})).await;

    // carol, another local user and no crew member, writes records through XRPC.
    let carol = s
        .app
        .pds
        .create_account("carol", PASSWORD, false)
        .await
        .unwrap()
        .did;
    let jwt = s.session("carol").await;
    // The live manifest's bytes are public: she uploads them as her own blob.
    let uploaded: Value = s
        .anonymous(Method::POST, "/xrpc/com.atproto.repo.uploadBlob")
        .bearer_auth(&jwt)
        .header("content-type", OCI_MANIFEST)
        .body(live_bytes.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let now = "2026-12-05T12:00:00.000Z";
    let layer = |d: &Digest, size: usize| json!([{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d.as_str(), "size": size}]);
    let writes = json!([
        // (a) the deleted manifest's digest, its layer with a wrong size, no manifestBlob
        {"$type": "com.atproto.repo.applyWrites#create", "collection": MANIFEST, "rkey": "3kaaaaaaaaaa2",
         "value": {"$type": MANIFEST, "repository": "loot2", "digest": secret_digest.as_str(),
                   "mediaType": OCI_MANIFEST, "schemaVersion": 2, "layers": layer(&secret_layer, 1), "createdAt": now}},
        {"$type": "com.atproto.repo.applyWrites#create", "collection": TAG, "rkey": "loot2~1",
         "value": {"$type": TAG, "repository": "loot2", "tag": "1",
                   "manifest": format!("at://{carol}/{MANIFEST}/3kaaaaaaaaaa2"), "updatedAt": now}},
        // (b) a live image's manifest, over bytes she uploaded herself
        {"$type": "com.atproto.repo.applyWrites#create", "collection": MANIFEST, "rkey": "3kaaaaaaaaaa3",
         "value": {"$type": MANIFEST, "repository": "loot3", "digest": live_digest.as_str(),
                   "mediaType": OCI_MANIFEST, "schemaVersion": 2, "layers": layer(&live_layer, live.len()),
                   "manifestBlob": uploaded["blob"], "createdAt": now}},
        // and a layer record of her own, vouching for herself
        {"$type": "com.atproto.repo.applyWrites#create", "collection": "io.atcr.hold.layer", "rkey": "3kaaaaaaaaaa4",
         "value": {"$type": "io.atcr.hold.layer", "digest": live_layer.as_str(), "size": live.len(),
                   "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                   "manifest": format!("at://{carol}/{MANIFEST}/3kaaaaaaaaaa3"),
                   "userDid": carol.as_str(), "createdAt": now}},
    ]);
    assert_eq!(
        apply_writes(&s, &jwt, carol.as_str(), writes).await,
        StatusCode::OK
    );
    // Nor may she write into the node's repository, where the hold's own records live.
    let node = s.app.pds.node_did.as_str().to_owned();
    let into_node = json!([{"$type": "com.atproto.repo.applyWrites#create", "collection": "io.atcr.hold.layer",
        "value": {"$type": "io.atcr.hold.layer", "digest": live_layer.as_str(), "size": live.len(),
                  "mediaType": "x", "manifest": format!("at://{carol}/{MANIFEST}/3kaaaaaaaaaa3"),
                  "userDid": carol.as_str(), "createdAt": now}}]);
    assert_ne!(
        apply_writes(&s, &jwt, &node, into_node).await,
        StatusCode::OK
    );

    let attempts = [
        format!("/v2/carol/loot2/blobs/{secret_layer}"),
        format!("/v2/carol/loot2/manifests/{secret_digest}"),
        "/v2/carol/loot2/manifests/1".to_owned(),
        format!("/v2/carol/loot3/blobs/{live_layer}"),
        secret_path.clone(),
    ];
    let own = format!("/v2/t/live/blobs/{live_layer}");
    s.app
        .registry
        .appview()
        .wait_indexed(last_seq(&s))
        .await
        .unwrap();
    check(&s, &attempts, &own).await;
    assert_eq!(
        pull(&s, &format!("/v2/carol/loot3/blobs/{live_layer}"))
            .await
            .1,
        "BLOB_UNKNOWN"
    );
    s.app.registry.appview().rebuild().await.unwrap();
    check(&s, &attempts, &own).await;
    let dir = s.stop().await;
    std::fs::remove_file(dir.path().join("index.redb")).unwrap();
    let s = TestServer::start_in(dir).await;
    check(&s, &attempts, &own).await;
}

/// On a private hold the PDS's read and sync methods serve the crew (and each account its own
/// repository) only: anonymous callers get 401, others 403.
#[tokio::test]
async fn a_private_hold_keeps_repositories_to_its_crew() {
    let s = TestServer::start().await;
    s.push_image("t/app", "1", &[&bytes(5, 100)], json!({}))
        .await;
    s.app
        .pds
        .create_account("carol", PASSWORD, false)
        .await
        .unwrap();
    let user = s.user.as_str().to_owned();
    let commit = s
        .app
        .pds
        .repos
        .store()
        .head(&s.user)
        .unwrap()
        .unwrap()
        .commit;
    let reads = [
        format!("/xrpc/com.atproto.repo.listRecords?repo={user}&collection={MANIFEST}"),
        format!("/xrpc/com.atproto.sync.getRepo?did={user}"),
        format!("/xrpc/com.atproto.sync.listBlobs?did={user}"),
        format!("/xrpc/com.atproto.sync.getBlocks?did={user}&cids={commit}"),
        "/xrpc/com.atproto.sync.listRepos".to_owned(),
        "/xrpc/com.atproto.sync.subscribeRepos".to_owned(),
    ];
    let status = |path: String, token: Option<String>| {
        let mut r = s.anonymous(Method::GET, &path);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move { r.send().await.unwrap().status() }
    };
    // Public: anyone reads (ATProto repositories are public by design).
    assert_eq!(status(reads[0].clone(), None).await, StatusCode::OK);
    s.app
        .hold
        .set_captain(None, Some(false), None)
        .await
        .unwrap();
    let carol = s.session("carol").await;
    let crew = s.session("t").await;
    for path in &reads {
        assert_eq!(
            status(path.clone(), None).await,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
        assert_eq!(
            status(path.clone(), Some(carol.clone())).await,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    for path in &reads[..5] {
        assert_eq!(
            status(path.clone(), Some(crew.clone())).await,
            StatusCode::OK,
            "{path}"
        );
    }
    // Each account reads its own repository.
    let carol_did = s.app.pds.accounts.find("carol").unwrap().unwrap().did;
    assert_eq!(
        status(
            format!("/xrpc/com.atproto.repo.listRecords?repo={carol_did}&collection={MANIFEST}"),
            Some(carol.clone())
        )
        .await,
        StatusCode::OK
    );
    // Her own repository admits her to getBlocks, but only for its own blocks: the store is
    // shared, and the user's commit is not one of them.
    assert_eq!(
        status(
            format!("/xrpc/com.atproto.sync.getBlocks?did={carol_did}&cids={commit}"),
            Some(carol)
        )
        .await,
        StatusCode::BAD_REQUEST
    );
}
