//! Quotas hold for manifest records a user writes through XRPC too: the indexer leaves out a
//! record whose new blobs would take its owner over the quota (usage stays within it, the
//! manifest does not pull, the collector takes its blobs), however many records one commit
//! holds, while the registry's own pushes count whatever the limit became, rebuilds included.

mod inproc;

use atcr::appview::gc::GcOptions;
use atcr::blobstore::{Algorithm, Digest};
use inproc::{OCI_MANIFEST, TestServer, bytes, expect_error};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const MANIFEST: &str = "io.atcr.manifest";
const REPO: &str = "t/sneak";
const LIMIT: u64 = 2_000;
const CONFIG: &[u8] = br#"{"architecture":"amd64","os":"linux"}"#;

/// A manifest over `CONFIG` and `layers` (all uploaded to `REPO` already): its bytes.
fn manifest_over(layers: &[&[u8]]) -> Vec<u8> {
    let desc = |media: &str, b: &[u8]| json!({"mediaType": media, "digest": Digest::of(Algorithm::Sha256, b).as_str(), "size": b.len()});
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc("application/vnd.oci.image.config.v1+json", CONFIG),
        "layers": layers.iter().map(|l| desc("application/vnd.oci.image.layer.v1.tar", l)).collect::<Vec<_>>(),
    }))
    .unwrap()
}

/// Uploads `manifest` with `uploadBlob` and returns the `io.atcr.manifest` record naming it.
async fn manifest_record(s: &TestServer, jwt: &str, manifest: &[u8]) -> Value {
    let uploaded: Value = s
        .anonymous(Method::POST, "/xrpc/com.atproto.repo.uploadBlob")
        .bearer_auth(jwt)
        .header("content-type", OCI_MANIFEST)
        .body(manifest.to_vec())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    json!({"$type": MANIFEST, "repository": "sneak",
           "digest": Digest::of(Algorithm::Sha256, manifest).as_str(),
           "mediaType": OCI_MANIFEST, "schemaVersion": 2,
           "manifestBlob": uploaded["blob"], "createdAt": "2026-11-28T12:00:00.000Z"})
}

async fn wait_indexed(s: &TestServer) {
    let last = s.app.pds.repos.store().last_seq().unwrap();
    s.app.registry.appview().wait_indexed(last).await.unwrap();
}

fn usage(s: &TestServer) -> u64 {
    s.app.registry.appview().index().usage(&s.user).unwrap()
}

async fn pull_status(s: &TestServer, manifest: &[u8]) -> StatusCode {
    let digest = Digest::of(Algorithm::Sha256, manifest);
    s.req(Method::GET, &format!("/v2/{REPO}/manifests/{digest}"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap()
        .status()
}

async fn blob_status(s: &TestServer, blob: &[u8]) -> StatusCode {
    let digest = Digest::of(Algorithm::Sha256, blob);
    s.req(Method::HEAD, &format!("/v2/{REPO}/blobs/{digest}"))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn manifest_records_over_the_quota_count_nothing_and_their_blobs_are_collected() {
    let s = TestServer::start().await;
    s.app.pds.accounts.set_quota(&s.user, Some(LIMIT)).unwrap();
    // The registry's own push: within the quota.
    let base = bytes(1, 100);
    for blob in [CONFIG, base.as_slice()] {
        s.push_blob(REPO, blob).await;
    }
    let pushed = manifest_over(&[&base]);
    s.put_manifest(REPO, "v1", OCI_MANIFEST, &pushed).await;
    let pushed_usage = (CONFIG.len() + base.len()) as u64;
    assert_eq!(usage(&s), pushed_usage);

    // Blobs uploaded through the OCI API count only once a manifest uses them, so each of
    // these fits on its own however many there are.
    let (fits, big1, big2, pair_a, pair_b) = (
        bytes(2, 300),
        bytes(3, 900),
        bytes(4, 900),
        bytes(5, 900),
        bytes(6, 900),
    );
    for blob in [&fits, &big1, &big2, &pair_a, &pair_b] {
        s.push_blob(REPO, blob).await;
    }
    let jwt = s.session("t").await;

    // A record within the quota is taken in like a push.
    let fitting = manifest_over(&[&fits]);
    let record = manifest_record(&s, &jwt, &fitting).await;
    let r = s
        .anonymous(Method::POST, "/xrpc/com.atproto.repo.createRecord")
        .bearer_auth(&jwt)
        .json(&json!({"repo": s.user.as_str(), "collection": MANIFEST, "record": record}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    wait_indexed(&s).await;
    assert_eq!(pull_status(&s, &fitting).await, StatusCode::OK);
    let used = pushed_usage + fits.len() as u64;
    assert_eq!(usage(&s), used);

    // One whose new blobs go over it is the user's record still, but nothing to the registry.
    let over = manifest_over(&[&big1, &big2]);
    let record = manifest_record(&s, &jwt, &over).await;
    let r = s
        .anonymous(Method::POST, "/xrpc/com.atproto.repo.createRecord")
        .bearer_auth(&jwt)
        .json(&json!({"repo": s.user.as_str(), "collection": MANIFEST, "record": record}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    wait_indexed(&s).await;
    assert_eq!(usage(&s), used);
    let digest = Digest::of(Algorithm::Sha256, &over);
    let r = s
        .req(Method::GET, &format!("/v2/{REPO}/manifests/{digest}"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;

    // Two records of one commit that each fit alone but not together: one is taken in.
    let (a, b) = (manifest_over(&[&pair_a]), manifest_over(&[&pair_b]));
    let mut writes = Vec::new();
    for m in [&a, &b] {
        let value = manifest_record(&s, &jwt, m).await;
        writes.push(json!({"$type": "com.atproto.repo.applyWrites#create", "collection": MANIFEST, "value": value}));
    }
    let r = s
        .anonymous(Method::POST, "/xrpc/com.atproto.repo.applyWrites")
        .bearer_auth(&jwt)
        .json(&json!({"repo": s.user.as_str(), "writes": writes}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    wait_indexed(&s).await;
    let (a_pulls, b_pulls) = (
        pull_status(&s, &a).await == StatusCode::OK,
        pull_status(&s, &b).await == StatusCode::OK,
    );
    assert!(a_pulls != b_pulls, "exactly one of the pair is indexed");
    let used = used + pair_a.len() as u64;
    assert_eq!(usage(&s), used);
    assert!(used <= LIMIT);

    // Past the grace the collector takes the blobs no indexed manifest uses.
    s.app
        .registry
        .collect_garbage(GcOptions {
            dry_run: false,
            grace_secs: 0,
            upload_expiry_secs: 86_400,
        })
        .await
        .unwrap();
    for blob in [&big1, &big2] {
        assert_eq!(blob_status(&s, blob).await, StatusCode::NOT_FOUND);
    }
    let loser = if a_pulls { &pair_b } else { &pair_a };
    assert_eq!(blob_status(&s, loser).await, StatusCode::NOT_FOUND);
    for blob in [CONFIG, base.as_slice(), fits.as_slice()] {
        assert_eq!(blob_status(&s, blob).await, StatusCode::OK);
    }

    // A limit lowered below the usage removes nothing the registry pushed, even through a
    // rebuild, which judges the records again.
    s.app.pds.accounts.set_quota(&s.user, Some(1)).unwrap();
    s.app.registry.appview().rebuild().await.unwrap();
    assert_eq!(pull_status(&s, &pushed).await, StatusCode::OK);
    assert_eq!(pull_status(&s, &over).await, StatusCode::NOT_FOUND);
    assert_eq!(usage(&s), pushed_usage);
}
