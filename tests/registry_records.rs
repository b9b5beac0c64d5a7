//! Pushes become signed records in the owner's repository, and the index is a function of
//! those records: records written through XRPC serve like pushed ones, and a rebuild (or a
//! lost index file) answers exactly as before.

mod inproc;

use atcr::blobstore::{Algorithm, Digest};
use inproc::{OCI_INDEX, OCI_MANIFEST, TestServer, bytes, header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const MANIFEST: &str = "io.atcr.manifest";
const TAG: &str = "io.atcr.tag";

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

    let manifests = s.records(MANIFEST).await;
    assert_eq!(manifests.len(), 1);
    let m = &manifests[0]["value"];
    assert_eq!(m["repository"], "tools/app");
    assert_eq!(m["digest"], digest.as_str());
    assert_eq!(m["mediaType"], OCI_MANIFEST);
    assert_eq!(m["holdDid"], s.app.pds.node_did.as_str());
    assert_eq!(m["layers"][0]["size"], 300);
    assert_eq!(m["annotations"]["org.opencontainers.image.title"], "app");
    let tags = s.records(TAG).await;
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
    assert_eq!(s.records(MANIFEST).await.len(), 2);
    let tags = s.records(TAG).await;
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
    assert_eq!(s.records(MANIFEST).await.len(), 1);
    assert!(s.records(TAG).await.is_empty());
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

    let jwt = s.session("t").await;
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
    let records = s.records(MANIFEST).await;
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
