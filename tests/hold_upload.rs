//! The hold's upload XRPC and blob reads with service auth, on an in-process node (see
//! `pds_node`): tokens come from the node's own PDS (`com.atproto.server.getServiceAuth`), or
//! from a second node whose PLC directory the first resolves through.

mod pds_node;

use atcr::atproto::{Algorithm, Did, Keypair};
use atcr::blobstore::Digest;
use atcr::hold::Permission;
use atcr::pds::auth::service_token;
use pds_node::xrpc::{ABORT, GET_BLOB, HoldUpload, INITIATE, PART_URL, json_of};
use pds_node::{Node, assert_error};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A local user of the node: DID and session.
struct User {
    did: Did,
    access: String,
}

async fn user(node: &Node, name: &str, password: &str) -> User {
    let s = node.login(name, password).await;
    User {
        did: s["did"].as_str().unwrap().parse().unwrap(),
        access: s["accessJwt"].as_str().unwrap().to_owned(),
    }
}

/// Makes `did` crew of `node`'s hold with blob read and write.
async fn make_writer(node: &Node, did: &Did) {
    node.app
        .hold
        .add_crew(did, "write", &[Permission::BlobRead, Permission::BlobWrite])
        .await
        .unwrap();
}

/// `user`'s uploads through `node`'s own hold.
fn uploads_of<'a>(node: &'a Node, user: &'a User) -> HoldUpload<'a> {
    HoldUpload {
        xrpc: node.xrpc(),
        access: &user.access,
        hold_did: node.pds().node_did.to_string(),
        endpoint: node.pds().endpoint(),
    }
}

/// A service token from `node`'s PDS for `user`, for `aud` and `lxm`.
async fn service_auth(node: &Node, user: &User, aud: &str, lxm: Option<&str>) -> String {
    node.xrpc().service_auth(&user.access, aud, lxm).await
}

/// A token for the node's hold and `lxm`.
async fn token(node: &Node, user: &User, lxm: &str) -> String {
    uploads_of(node, user).token(lxm).await
}

/// Uploads `parts` as one blob through the hold; returns the upload id and the parts' `ETags`.
async fn upload(node: &Node, alice: &User, digest: &Digest, parts: &[&[u8]]) -> (String, Value) {
    uploads_of(node, alice).send(digest.as_str(), parts).await
}

async fn get_blob(node: &Node, cid: &str, token: Option<&str>) -> reqwest::Response {
    node.xrpc()
        .get_blob(node.pds().node_did.as_str(), cid, token)
        .await
}

#[tokio::test]
async fn a_crew_member_uploads_in_parts_and_reads_the_blob_back() {
    let node = Node::start().await;
    let alice = user(&node, "alice", "alice-pw").await;
    let hold = &node.app.hold;
    make_writer(&node, &alice.did).await;
    let (head, tail) = (vec![7u8; 300_000], b"and the rest".to_vec());
    let whole = [head.clone(), tail.clone()].concat();
    let digest = Digest::of(atcr::blobstore::Algorithm::Sha256, &whole);
    let (id, parts) = upload(&node, &alice, &digest, &[&head, &tail]).await;
    // The registry's upload sweeper leaves a live hold session's parts alone.
    node.app.registry.expire_uploads(0, false).await.unwrap();
    let (s, v) = uploads_of(&node, &alice)
        .complete(&id, digest.as_str(), parts)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"status": "completed", "digest": digest.as_str()}));
    assert_eq!(
        node.pds().blobs.stat(&digest).await.unwrap(),
        Some(whole.len() as u64)
    );
    // The session is gone.
    let (s, v) = node
        .post(
            ABORT,
            Some(&token(&node, &alice, ABORT).await),
            json!({"uploadId": id}),
        )
        .await;
    assert_error(&(s, v), StatusCode::BAD_REQUEST, "InvalidUploadId");

    // Read back, by CID and by digest, anonymously: the hold is public.
    let cid = atcr::atproto::Cid::for_raw(&whole).to_string();
    for name in [cid.as_str(), digest.as_str()] {
        let r = get_blob(&node, name, None).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.bytes().await.unwrap().as_ref(), whole.as_slice());
    }
    // No manifest names it yet, and collections past the grace leave it: it is the hold's.
    for _ in 0..2 {
        let report = node
            .app
            .registry
            .collect_garbage(atcr::appview::gc::GcOptions {
                dry_run: false,
                grace_secs: 0,
                upload_expiry_secs: 86_400,
            })
            .await
            .unwrap();
        assert_eq!(report.orphans_adopted, 0, "{report}");
    }
    assert_eq!(
        node.pds().blobs.stat(&digest).await.unwrap(),
        Some(whole.len() as u64),
        "the collector took a completed hold upload"
    );
    let missing = Digest::of(atcr::blobstore::Algorithm::Sha256, b"never uploaded");
    let got = json_of(get_blob(&node, missing.as_str(), None).await).await;
    assert_error(&got, StatusCode::NOT_FOUND, "BlobNotFound");

    // A private hold: crew with blob:read only, by service token or local session.
    hold.set_captain(None, Some(false), None).await.unwrap();
    let bob = user(&node, "bob", "bob-password").await;
    let got = json_of(get_blob(&node, &cid, None).await).await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "AuthRequired");
    let bobs = token(&node, &bob, GET_BLOB).await;
    let got = json_of(get_blob(&node, &cid, Some(&bobs)).await).await;
    assert_error(&got, StatusCode::FORBIDDEN, "Forbidden");
    let got = json_of(get_blob(&node, &cid, Some(&bob.access)).await).await;
    assert_error(&got, StatusCode::FORBIDDEN, "Forbidden");
    let for_upload = token(&node, &alice, INITIATE).await;
    let got = json_of(get_blob(&node, &cid, Some(&for_upload)).await).await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "BadJwtLexiconMethod");
    for t in [token(&node, &alice, GET_BLOB).await, alice.access.clone()] {
        let r = get_blob(&node, &cid, Some(&t)).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.bytes().await.unwrap().len(), whole.len());
    }
}

#[tokio::test]
async fn refusals_carry_their_xrpc_error_names() {
    let node = Node::start().await;
    let alice = user(&node, "alice", "alice-pw").await;
    let bob = user(&node, "bob", "bob-password").await;
    make_writer(&node, &alice.did).await;
    let digest = Digest::of(atcr::blobstore::Algorithm::Sha256, b"blob");
    let input = json!({"digest": digest.as_str()});
    let hold_did = node.pds().node_did.to_string();
    let refused = |t: Option<String>| {
        let (node, input) = (&node, input.clone());
        async move { node.post(INITIATE, t.as_deref(), input).await }
    };

    assert_error(
        &refused(None).await,
        StatusCode::UNAUTHORIZED,
        "AuthRequired",
    );
    // A token for another service, another method, or for no method at all.
    let other = service_auth(&node, &alice, "did:web:other-hold.example", Some(INITIATE)).await;
    assert_error(
        &refused(Some(other)).await,
        StatusCode::UNAUTHORIZED,
        "BadJwtAudience",
    );
    let wrong = token(&node, &alice, ABORT).await;
    assert_error(
        &refused(Some(wrong)).await,
        StatusCode::UNAUTHORIZED,
        "BadJwtLexiconMethod",
    );
    let unbound = service_auth(&node, &alice, &hold_did, None).await;
    assert_error(
        &refused(Some(unbound)).await,
        StatusCode::UNAUTHORIZED,
        "BadJwtLexiconMethod",
    );
    // A session token is no service token.
    assert_error(
        &refused(Some(alice.access.clone())).await,
        StatusCode::UNAUTHORIZED,
        "BadJwtType",
    );
    // Expired, though signed with alice's own key.
    let key = node.pds().repos.key(&alice.did).unwrap();
    let now = atcr::pds::accounts::now_secs();
    let expired = service_token(
        &key,
        alice.did.as_str(),
        &hold_did,
        Some(INITIATE),
        now - 120,
        now - 60,
    );
    assert_error(
        &refused(Some(expired)).await,
        StatusCode::UNAUTHORIZED,
        "JwtExpired",
    );
    // Signed with another key: claims alice's identity, cannot prove it.
    let other_key = Keypair::generate(Algorithm::K256);
    let forged = service_token(
        &other_key,
        alice.did.as_str(),
        &hold_did,
        Some(INITIATE),
        now,
        now + 60,
    );
    assert_error(
        &refused(Some(forged)).await,
        StatusCode::UNAUTHORIZED,
        "BadJwtSignature",
    );
    // A valid token of a user who is not crew.
    let bobs = token(&node, &bob, INITIATE).await;
    assert_error(
        &refused(Some(bobs)).await,
        StatusCode::FORBIDDEN,
        "Forbidden",
    );
    // Bad input.
    let (s, v) = node
        .post(
            INITIATE,
            Some(&token(&node, &alice, INITIATE).await),
            json!({"digest": "md5:abc"}),
        )
        .await;
    assert_error(&(s, v), StatusCode::BAD_REQUEST, "InvalidDigest");

    // An unknown upload id, and someone else's.
    let unknown = json!({"uploadId": "00000000-0000-4000-8000-000000000000", "partNumber": 1});
    let got = node
        .post(
            PART_URL,
            Some(&token(&node, &alice, PART_URL).await),
            unknown,
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "InvalidUploadId");
    let (id, _) = upload(&node, &alice, &digest, &[]).await;
    make_writer(&node, &bob.did).await;
    let got = node
        .post(
            ABORT,
            Some(&token(&node, &bob, ABORT).await),
            json!({"uploadId": id}),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "InvalidUploadId");
    let got = node
        .post(
            PART_URL,
            Some(&token(&node, &alice, PART_URL).await),
            json!({"uploadId": id, "partNumber": 0}),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "InvalidPartNumber");
    let (s, v) = node
        .post(
            ABORT,
            Some(&token(&node, &alice, ABORT).await),
            json!({"uploadId": id}),
        )
        .await;
    assert_eq!((s, v), (StatusCode::OK, json!({"status": "aborted"})));
}

#[tokio::test]
async fn completion_checks_parts_and_digest() {
    let node = Node::start().await;
    let alice = user(&node, "alice", "alice-pw").await;
    make_writer(&node, &alice.did).await;
    let claimed = Digest::of(atcr::blobstore::Algorithm::Sha256, b"what was promised");
    let (id, parts) = upload(&node, &alice, &claimed, &[b"what ", b"was sent"]).await;
    let uploads = uploads_of(&node, &alice);
    let complete = async |parts: Value, digest: &str| uploads.complete(&id, digest, parts).await;
    // A part left out, a wrong ETag, another digest than the one started with.
    let first = json!([parts[0].clone()]);
    let got = complete(json!([parts[1].clone()]), claimed.as_str()).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "MissingParts");
    let mut bad = parts.clone();
    bad[1]["etag"] = json!("0".repeat(64));
    assert_error(
        &complete(bad, claimed.as_str()).await,
        StatusCode::BAD_REQUEST,
        "MissingParts",
    );
    let other = Digest::of(atcr::blobstore::Algorithm::Sha256, b"what ");
    assert_error(
        &complete(first, other.as_str()).await,
        StatusCode::BAD_REQUEST,
        "InvalidDigest",
    );
    // The bytes do not hash to the digest: refused, and nothing appears under it.
    assert_error(
        &complete(parts.clone(), claimed.as_str()).await,
        StatusCode::BAD_REQUEST,
        "InvalidDigest",
    );
    assert_eq!(node.pds().blobs.stat(&claimed).await.unwrap(), None);
    assert!(node.pds().blobs.stored_uploads().await.unwrap().is_empty());
    // The session went with it.
    assert_error(
        &complete(parts, claimed.as_str()).await,
        StatusCode::BAD_REQUEST,
        "InvalidUploadId",
    );
}

#[tokio::test]
async fn a_user_of_another_pds_is_verified_through_the_plc_directory() {
    // Her node's directory takes the hold node's own registrations too.
    let home = Node::start_with(|s| s.plc_open_creation = true).await;
    let carol = user(&home, "alice", "alice-pw").await;
    let hold = Node::start_with(|s| s.plc_upstream = Some(home.base.clone())).await;
    let lonely = Node::start().await;
    for node in [&hold, &lonely] {
        make_writer(node, &carol.did).await;
    }
    let digest = Digest::of(atcr::blobstore::Algorithm::Sha256, b"remote");
    let input = json!({"digest": digest.as_str()});
    // Her DID document comes from her node's directory, which the hold is configured with.
    let t = service_auth(&home, &carol, hold.pds().node_did.as_str(), Some(INITIATE)).await;
    let (s, v) = hold.post(INITIATE, Some(&t), input.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // A hold with no directory that knows her cannot check her signature.
    let t = service_auth(
        &home,
        &carol,
        lonely.pds().node_did.as_str(),
        Some(INITIATE),
    )
    .await;
    let got = lonely.post(INITIATE, Some(&t), input).await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "BadJwtSignature");
}

const NOTIFY: &str = "io.atcr.hold.notifyManifest";

/// A `notifyManifest` input: `user` pushed manifest `app@<manifest>` naming `layers`
/// (digest, size).
fn notice(user: &Did, manifest: &Digest, layers: &[(&Digest, usize)]) -> Value {
    let layers: Vec<Value> = layers
        .iter()
        .map(|(d, size)| {
            json!({"digest": d.as_str(), "size": size,
                "mediaType": "application/vnd.oci.image.layer.v1.tar"})
        })
        .collect();
    json!({
        "repository": "app",
        "userDid": user.as_str(),
        "manifestDigest": manifest.as_str(),
        "tag": "v1",
        "manifest": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": layers},
    })
}

/// The hold's layer records (`listRecords` of the node's repository).
async fn layer_records(node: &Node) -> Vec<Value> {
    let did = node.pds().node_did.as_str().replace('%', "%25");
    let (s, v) = node
        .get(
            &format!("com.atproto.repo.listRecords?repo={did}&collection=io.atcr.hold.layer"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["records"].as_array().unwrap().clone()
}

#[tokio::test]
async fn notify_manifest_vouches_for_stored_blobs_of_the_callers_own_manifests() {
    let node = Node::start().await;
    let alice = user(&node, "alice", "alice-pw").await;
    let bob = user(&node, "bob", "bob-password").await;
    make_writer(&node, &alice.did).await;
    let sha = |b: &[u8]| Digest::of(atcr::blobstore::Algorithm::Sha256, b);
    let bytes = b"a stored layer".as_slice();
    let (stored, missing, manifest) = (sha(bytes), sha(b"never uploaded"), sha(b"manifest"));
    let (id, parts) = upload(&node, &alice, &stored, &[bytes]).await;
    let (s, v) = uploads_of(&node, &alice)
        .complete(&id, stored.as_str(), parts)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let input = notice(
        &alice.did,
        &manifest,
        &[(&stored, bytes.len()), (&missing, 9)],
    );

    // bob is no crew; once crew, he still cannot notify of alice's manifests.
    let bobs = token(&node, &bob, NOTIFY).await;
    let got = node.post(NOTIFY, Some(&bobs), input.clone()).await;
    assert_error(&got, StatusCode::FORBIDDEN, "Forbidden");
    make_writer(&node, &bob.did).await;
    let got = node.post(NOTIFY, Some(&bobs), input.clone()).await;
    assert_error(&got, StatusCode::FORBIDDEN, "UserMismatch");
    let upload_token = token(&node, &alice, INITIATE).await;
    let got = node.post(NOTIFY, Some(&upload_token), input.clone()).await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "BadJwtLexiconMethod");
    assert!(layer_records(&node).await.is_empty());

    // alice's push: a record for the blob the hold stores, none for the one it does not.
    let alices = token(&node, &alice, NOTIFY).await;
    let (s, v) = node.post(NOTIFY, Some(&alices), input.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({"success": true, "operation": "push", "statsUpdated": false,
            "layersCreated": 1, "postCreated": false, "blobsNotHeld": [missing.as_str()]})
    );
    let records = layer_records(&node).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let rkey = atcr::atproto::atcr::manifest_rkey("app", manifest.as_str());
    let record = &records[0]["value"];
    assert_eq!(record["digest"], stored.as_str());
    assert_eq!(record["size"], bytes.len());
    assert_eq!(record["userDid"], alice.did.as_str());
    assert_eq!(record["repository"], "app");
    assert_eq!(record["manifestDigest"], manifest.as_str());
    assert_eq!(
        record["manifest"],
        format!("at://{}/io.atcr.manifest/{rkey}", alice.did)
    );
    // Again: nothing new.
    let (s, v) = node.post(NOTIFY, Some(&alices), input.clone()).await;
    assert_eq!((s, &v["layersCreated"]), (StatusCode::OK, &json!(0)), "{v}");
    assert_eq!(layer_records(&node).await.len(), 1);
    // A pull is answered, and writes nothing.
    let mut pull = input;
    pull["operation"] = json!("pull");
    let (s, v) = node.post(NOTIFY, Some(&alices), pull.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["statsUpdated"], false);
    pull["operation"] = json!("delete");
    let got = node.post(NOTIFY, Some(&alices), pull).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "InvalidOperation");

    // The quota counts what the records vouch for.
    let quota = |who: String| {
        let node = &node;
        async move {
            node.get(&format!("io.atcr.hold.getQuota?userDid={who}"), None)
                .await
        }
    };
    let (s, v) = quota(alice.did.to_string()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({"userDid": alice.did.as_str(), "uniqueBlobs": 1, "totalSize": bytes.len()})
    );
    let (_, v) = quota(bob.did.to_string()).await;
    assert_eq!((&v["uniqueBlobs"], &v["totalSize"]), (&json!(0), &json!(0)));
    assert_error(
        &quota("alice".into()).await,
        StatusCode::BAD_REQUEST,
        "InvalidUserDid",
    );
    // A private hold tells its crew only.
    node.app
        .hold
        .set_captain(None, Some(false), None)
        .await
        .unwrap();
    let got = quota(alice.did.to_string()).await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "AuthRequired");
    let path = format!("io.atcr.hold.getQuota?userDid={}", alice.did);
    let t = token(&node, &bob, "io.atcr.hold.getQuota").await;
    let (s, v) = node.get(&path, Some(&t)).await;
    assert_eq!(
        (s, &v["totalSize"]),
        (StatusCode::OK, &json!(bytes.len())),
        "{v}"
    );
}
