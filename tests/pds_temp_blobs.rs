//! Blobs uploaded with `com.atproto.repo.uploadBlob` that no record references are temporary,
//! as on the reference PDS: an account holds at most `pds.max_temp_blob_bytes` of them (400
//! `QuotaExceeded` past it) and a collection past the grace removes them, while blobs records
//! reference stay and keep serving through `sync.getBlob`.

mod pds_node;

use atcr::appview::gc::GcOptions;
use atcr::blobstore::{Algorithm, Digest};
use pds_node::{JsonBody, Node, assert_error};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn upload(node: &Node, token: &str, bytes: &[u8]) -> (StatusCode, Value) {
    let r = node
        .client
        .post(format!("{}/xrpc/com.atproto.repo.uploadBlob", node.base))
        .bearer_auth(token)
        .header("content-type", "image/png")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    (r.status(), r.json_value().await)
}

async fn get_blob(node: &Node, did: &str, blob: &Value) -> StatusCode {
    let cid = blob["blob"]["ref"]["$link"].as_str().unwrap();
    node.client
        .get(format!(
            "{}/xrpc/com.atproto.sync.getBlob?did={did}&cid={cid}",
            node.base
        ))
        .send()
        .await
        .unwrap()
        .status()
}

async fn collect(node: &Node) {
    node.app
        .registry
        .collect_garbage(GcOptions {
            dry_run: false,
            grace_secs: 0,
            upload_expiry_secs: 86_400,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn unreferenced_uploads_are_capped_per_account_and_expire_while_referenced_ones_stay() {
    let node = Node::start_with(|s| s.max_temp_blob_bytes = 100).await;
    let alice = node.login("alice", "alice-pw").await;
    let (t, did) = (
        alice["accessJwt"].as_str().unwrap(),
        alice["did"].as_str().unwrap(),
    );

    let (kept, dropped, third) = (vec![1u8; 40], vec![2u8; 40], vec![3u8; 40]);
    let (s, kept_ref) = upload(&node, t, &kept).await;
    assert_eq!(s, StatusCode::OK, "{kept_ref}");
    let (s, dropped_ref) = upload(&node, t, &dropped).await;
    assert_eq!(s, StatusCode::OK, "{dropped_ref}");
    // 80 bytes held: 40 more go over the cap of 100. The same bytes again count once.
    assert_error(
        &upload(&node, t, &third).await,
        StatusCode::BAD_REQUEST,
        "QuotaExceeded",
    );
    assert_eq!(upload(&node, t, &kept).await.0, StatusCode::OK);
    // Another account has a cap of its own.
    let bob = node.login("bob", "bob-password").await;
    assert_eq!(
        upload(&node, bob["accessJwt"].as_str().unwrap(), &third)
            .await
            .0,
        StatusCode::OK
    );

    // A record referencing a blob takes it out of the count: room for the third again.
    let (s, v) = node
        .post(
            "com.atproto.repo.createRecord",
            Some(t),
            json!({"repo": did, "collection": "app.test.pic", "record": {"img": kept_ref["blob"]}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, third_ref) = upload(&node, t, &third).await;
    assert_eq!(s, StatusCode::OK, "{third_ref}");

    // Past the grace, the unreferenced ones are forgotten, then their objects collected; the
    // referenced one stays.
    collect(&node).await;
    assert_eq!(
        get_blob(&node, did, &dropped_ref).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get_blob(&node, did, &third_ref).await,
        StatusCode::NOT_FOUND
    );
    collect(&node).await;
    let blobs = &node.pds().blobs;
    for gone in [&dropped, &third] {
        let digest = Digest::of(Algorithm::Sha256, gone);
        assert_eq!(blobs.stat(&digest).await.unwrap(), None);
    }
    assert_eq!(get_blob(&node, did, &kept_ref).await, StatusCode::OK);
    // alice's count went with them.
    assert_eq!(
        node.pds()
            .repos
            .store()
            .temp_blob_bytes(&did.parse().unwrap())
            .unwrap(),
        0
    );
    // What was forgotten is room again.
    assert_eq!(upload(&node, t, &dropped).await.0, StatusCode::OK);
}
