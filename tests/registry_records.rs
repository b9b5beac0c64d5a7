//! Pushes become signed records in the owner's repository, and the index is a function of
//! those records: records written through XRPC serve like pushed ones, and a rebuild (or a
//! lost index file) answers exactly as before.

mod inproc;

use atcr::blobstore::{Algorithm, Digest};
use inproc::{OCI_INDEX, OCI_MANIFEST, PASSWORD, TestServer, bytes, header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const MANIFEST: &str = "io.atcr.manifest";
const TAG: &str = "io.atcr.tag";

/// `com.atproto.repo.listRecords` of the test user.
async fn records(s: &TestServer, collection: &str) -> Vec<Value> {
    let r = s
        .anonymous(
            Method::GET,
            &format!(
                "/xrpc/com.atproto.repo.listRecords?repo={}&collection={collection}&limit=100",
                s.user
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    body["records"].as_array().unwrap().clone()
}

fn last_seq(s: &TestServer) -> u64 {
    s.app.pds.repos.store().last_seq().unwrap()
}

#[tokio::test]
async fn a_tagged_push_is_one_commit_of_manifest_and_tag_records() {
    let s = TestServer::start().await;
    let before = last_seq(&s);
    let (digest, body) = s
        .push_image(
            "t/tools/app",
            "1.0",
            &[&bytes(1, 300)],
            json!({"annotations": {"org.opencontainers.image.title": "app"}}),
        )
        .await;
    // One commit of the user's repository, after one of the node's: the hold's layer records.
    assert_eq!(last_seq(&s), before + 2, "two commits for the tagged push");

    let manifests = records(&s, MANIFEST).await;
    assert_eq!(manifests.len(), 1);
    let m = &manifests[0]["value"];
    assert_eq!(m["repository"], "tools/app");
    assert_eq!(m["digest"], digest.as_str());
    assert_eq!(m["mediaType"], OCI_MANIFEST);
    assert_eq!(m["holdDid"], s.app.pds.node_did.as_str());
    assert_eq!(m["layers"][0]["size"], 300);
    assert_eq!(m["annotations"]["org.opencontainers.image.title"], "app");
    let tags = records(&s, TAG).await;
    assert_eq!(tags.len(), 1);
    assert_eq!(tags[0]["value"]["tag"], "1.0");
    assert_eq!(tags[0]["value"]["manifest"], manifests[0]["uri"]);
    // The hold vouches, in the node's repository, for each blob the user uploaded for it.
    let node = s.app.pds.node_did.clone();
    let store = s.app.pds.repos.store();
    let layers = store
        .list_records(&node, "io.atcr.hold.layer", None, 100, false)
        .unwrap();
    assert_eq!(layers.len(), 2, "config and layer");
    for (_, cid) in layers {
        let bytes = atcr::atproto::BlockStore::get(store, &cid)
            .unwrap()
            .unwrap();
        let v = atcr::atproto::Value::from_cbor(&bytes).unwrap().to_json();
        assert_eq!(v["userDid"], s.user.as_str());
        assert_eq!(v["manifest"], manifests[0]["uri"]);
    }

    // manifestBlob is the exact manifest, served by com.atproto.sync.getBlob.
    let cid = m["manifestBlob"]["ref"]["$link"].as_str().unwrap();
    let r = s
        .anonymous(
            Method::GET,
            &format!("/xrpc/com.atproto.sync.getBlob?did={}&cid={cid}", s.user),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let blob = r.bytes().await.unwrap();
    assert_eq!(Digest::of(Algorithm::Sha256, &blob), digest);
    assert_eq!(blob, body);

    // Re-pushing the same manifest and tag writes nothing; moving the tag rewrites one record.
    let seq = last_seq(&s);
    s.put_manifest("t/tools/app", "1.0", OCI_MANIFEST, &body)
        .await;
    assert_eq!(last_seq(&s), seq);
    let (other, _) = s
        .push_image("t/tools/app", "1.0", &[&bytes(2, 10)], json!({}))
        .await;
    assert_eq!(records(&s, MANIFEST).await.len(), 2);
    let tags = records(&s, TAG).await;
    assert_eq!(tags.len(), 1);
    let r = s
        .req(Method::HEAD, "/v2/t/tools/app/manifests/1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "docker-content-digest"), other.as_str());

    // Deleting by digest removes its record and the tags on it, in one commit.
    let seq = last_seq(&s);
    let r = s
        .req(
            Method::DELETE,
            &format!("/v2/t/tools/app/manifests/{other}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // The records in one commit; then the hold withdraws its layer records for the manifest.
    assert_eq!(last_seq(&s), seq + 2);
    assert_eq!(records(&s, MANIFEST).await.len(), 1);
    assert!(records(&s, TAG).await.is_empty());
    let r = s
        .req(Method::GET, "/v2/t/tools/app/manifests/1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn records_written_through_xrpc_serve_like_pushes() {
    let s = TestServer::start().await;
    // Blobs arrive through the registry; the manifest and tag only as records.
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer = bytes(7, 500);
    let config_digest = s.push_blob("t/direct", config).await;
    let layer_digest = s.push_blob("t/direct", &layer).await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.as_str(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest.as_str(), "size": layer.len()}],
    }))
    .unwrap();
    let digest = Digest::of(Algorithm::Sha256, &manifest);

    let jwt = session(&s, "t").await;
    let uploaded: Value = s
        .anonymous(Method::POST, "/xrpc/com.atproto.repo.uploadBlob")
        .bearer_auth(&jwt)
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let now = "2026-11-28T12:00:00.000Z";
    let r = s
        .anonymous(Method::POST, "/xrpc/com.atproto.repo.applyWrites")
        .bearer_auth(&jwt)
        .json(&json!({
            "repo": s.user.as_str(),
            "writes": [
                {"$type": "com.atproto.repo.applyWrites#create", "collection": MANIFEST, "rkey": "3kabcdefghijk",
                 "value": {"$type": MANIFEST, "repository": "direct", "digest": digest.as_str(),
                           "mediaType": OCI_MANIFEST, "schemaVersion": 2,
                           "manifestBlob": uploaded["blob"], "createdAt": now}},
                {"$type": "com.atproto.repo.applyWrites#create", "collection": TAG, "rkey": "direct-v9",
                 "value": {"$type": TAG, "repository": "direct", "tag": "v9",
                           "manifest": format!("at://{}/{MANIFEST}/3kabcdefghijk", s.user),
                           "updatedAt": now}},
            ],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());

    // The indexer takes events in the background: wait for it to reach the last one.
    s.app
        .registry
        .appview()
        .wait_indexed(last_seq(&s))
        .await
        .unwrap();
    let r = s
        .req(Method::GET, "/v2/t/direct/manifests/v9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "docker-content-digest"), digest.as_str());
    assert_eq!(r.bytes().await.unwrap(), manifest);
    let r = s
        .req(Method::GET, &format!("/v2/t/direct/blobs/{layer_digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), layer);

    // A tag written through XRPC a moment ago can be deleted over the OCI API at once.
    let r = s
        .anonymous(Method::POST, "/xrpc/com.atproto.repo.putRecord")
        .bearer_auth(&jwt)
        .json(
            &json!({"repo": s.user.as_str(), "collection": TAG, "rkey": "direct-v10",
            "record": {"$type": TAG, "repository": "direct", "tag": "v10",
                       "manifest": format!("at://{}/{MANIFEST}/3kabcdefghijk", s.user),
                       "updatedAt": now}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .req(Method::DELETE, "/v2/t/direct/manifests/v10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // Deleting the tag record through XRPC removes the tag.
    let r = s
        .anonymous(Method::POST, "/xrpc/com.atproto.repo.deleteRecord")
        .bearer_auth(&jwt)
        .json(&json!({"repo": s.user.as_str(), "collection": TAG, "rkey": "direct-v9"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    s.app
        .registry
        .appview()
        .wait_indexed(last_seq(&s))
        .await
        .unwrap();
    let r = s
        .req(Method::GET, "/v2/t/direct/tags/list")
        .send()
        .await
        .unwrap();
    let list: Value = r.json().await.unwrap();
    assert_eq!(list["tags"], json!([]));
}

/// Every answer the index drives, for a fixed set of requests.
async fn answers(s: &TestServer, requests: &[String]) -> Vec<(u16, String, String)> {
    let mut out = Vec::new();
    for path in requests {
        let r = s.req(Method::GET, path).send().await.unwrap();
        let status = r.status().as_u16();
        let digest = header(&r, "docker-content-digest");
        let body = r.text().await.unwrap();
        out.push((status, digest, body));
    }
    out
}

#[tokio::test]
async fn the_index_rebuilds_to_the_same_answers() {
    let s = TestServer::start().await;
    let (amd, amd_body) = s
        .push_image("t/multi", "amd", &[&bytes(2, 100)], json!({}))
        .await;
    let (arm, arm_body) = s
        .push_image("t/multi", "arm", &[&bytes(3, 100)], json!({}))
        .await;
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": amd.as_str(), "size": amd_body.len(), "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": OCI_MANIFEST, "digest": arm.as_str(), "size": arm_body.len(), "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        ],
    }))
    .unwrap();
    let list = s.put_manifest("t/multi", "latest", OCI_INDEX, &index).await;
    let (subject, _) = s
        .push_image("t/app", "v1", &[&bytes(4, 64)], json!({}))
        .await;
    let (sig, _) = s
        .push_image(
            "t/app",
            "sig",
            &[b"signature"],
            json!({"subject": {"mediaType": OCI_MANIFEST, "digest": subject.as_str(), "size": 1}, "artifactType": "application/vnd.example.sig"}),
        )
        .await;
    // The index record lists its children with their platforms.
    let records = records(&s, MANIFEST).await;
    let index_record = records
        .iter()
        .find(|r| r["value"]["digest"] == list.as_str())
        .unwrap();
    assert_eq!(
        index_record["value"]["manifests"][1]["platform"],
        json!({"architecture": "arm64", "os": "linux", "variant": "v8"})
    );

    let requests: Vec<String> = vec![
        "/v2/_catalog".into(),
        "/v2/t/multi/tags/list".into(),
        "/v2/t/app/tags/list".into(),
        "/v2/t/multi/manifests/latest".into(),
        format!("/v2/t/multi/manifests/{amd}"),
        "/v2/t/multi/manifests/arm".into(),
        format!("/v2/t/app/referrers/{subject}"),
        format!("/v2/t/app/manifests/{sig}"),
        "/v2/t/app/manifests/v1".into(),
    ];
    let before = answers(&s, &requests).await;
    assert!(
        before.iter().all(|(status, ..)| *status == 200),
        "{before:?}"
    );
    let blob_path = format!(
        "/v2/t/app/blobs/{}",
        Digest::of(Algorithm::Sha256, &bytes(4, 64))
    );
    assert_eq!(
        s.req(Method::HEAD, &blob_path)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    // An explicit rebuild.
    let stats = s.app.registry.appview().rebuild().await.unwrap();
    assert_eq!(stats.manifests, 5);
    assert_eq!(stats.tags, 5);
    assert_eq!(answers(&s, &requests).await, before);
    assert_eq!(
        s.req(Method::HEAD, &blob_path)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    // A lost index file: the next start replays the event log.
    let dir = s.stop().await;
    std::fs::remove_file(dir.path().join("index.redb")).unwrap();
    let s = TestServer::start_in(dir).await;
    assert_eq!(answers(&s, &requests).await, before);
    // The blob links come back from the hold's layer records.
    assert_eq!(
        s.req(Method::HEAD, &blob_path)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
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
    let jwt = session(&s, "carol").await;
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

/// A session token for a local account.
async fn session(s: &TestServer, name: &str) -> String {
    let v: Value = s
        .anonymous(Method::POST, "/xrpc/com.atproto.server.createSession")
        .json(&json!({"identifier": name, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["accessJwt"].as_str().unwrap().to_owned()
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
    let carol = session(&s, "carol").await;
    let crew = session(&s, "t").await;
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
