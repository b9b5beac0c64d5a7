//! The PDS over HTTP, part one: sessions, app passwords, repository writes and reads, blobs,
//! through XRPC on an in-process node (see `pds_node`).
#![allow(clippy::many_single_char_names, clippy::similar_names)] // s = status, t = token, v = body

mod pds_node;

use pds_node::{JsonBody, Node, assert_error};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn sessions_and_app_passwords() {
    let node = Node::start().await;
    let (s, v) = node.get("com.atproto.server.describeServer", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["did"], node.pds().node_did.as_str());
    assert_eq!(v["availableUserDomains"][0], ".atcr.test");

    assert_error(
        &node
            .post(
                "com.atproto.server.createSession",
                None,
                json!({"identifier": "alice", "password": "nope"}),
            )
            .await,
        StatusCode::UNAUTHORIZED,
        "AuthenticationRequired",
    );
    let session = node.login("alice.atcr.test", "alice-pw").await;
    let access = session["accessJwt"].as_str().unwrap();
    let refresh = session["refreshJwt"].as_str().unwrap();
    assert!(session["did"].as_str().unwrap().starts_with("did:plc:"));
    let (s, v) = node
        .get("com.atproto.server.getSession", Some(access))
        .await;
    assert_eq!(
        (s, v["handle"].as_str()),
        (StatusCode::OK, Some("alice.atcr.test"))
    );
    assert_error(
        &node.get("com.atproto.server.getSession", None).await,
        StatusCode::UNAUTHORIZED,
        "AuthRequired",
    );
    assert_error(
        &node
            .get("com.atproto.server.getSession", Some("garbage"))
            .await,
        StatusCode::UNAUTHORIZED,
        "InvalidToken",
    );
    // A refresh token is not an access token.
    assert_error(
        &node
            .get("com.atproto.server.getSession", Some(refresh))
            .await,
        StatusCode::UNAUTHORIZED,
        "InvalidToken",
    );

    // Refresh rotates: the old access token stops working; the old refresh token refreshes
    // again for a grace period, to the same new session (a retry, or two clients resuming one
    // stored session), and dies with it.
    let (s, fresh) = node
        .post(
            "com.atproto.server.refreshSession",
            Some(refresh),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{fresh}");
    let (s, again) = node
        .post(
            "com.atproto.server.refreshSession",
            Some(refresh),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{again}");
    let jti = |v: &Value| {
        let token = v["refreshJwt"].as_str().unwrap();
        let payload = token.split('.').nth(1).unwrap();
        let bytes =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .unwrap();
        serde_json::from_slice::<Value>(&bytes).unwrap()["jti"].clone()
    };
    assert_eq!(
        jti(&again),
        jti(&fresh),
        "the grace refresh names the same session"
    );
    let (s, me) = node
        .get("com.atproto.server.getSession", again["accessJwt"].as_str())
        .await;
    assert_eq!(s, StatusCode::OK, "{me}");
    // Logging out with the old token ends the new session too.
    let (s, _) = node
        .post("com.atproto.server.deleteSession", Some(refresh), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    for token in [refresh, fresh["refreshJwt"].as_str().unwrap()] {
        assert_error(
            &node
                .post("com.atproto.server.refreshSession", Some(token), json!({}))
                .await,
            StatusCode::UNAUTHORIZED,
            "ExpiredToken",
        );
    }
    assert_error(
        &node
            .get("com.atproto.server.getSession", fresh["accessJwt"].as_str())
            .await,
        StatusCode::UNAUTHORIZED,
        "ExpiredToken",
    );
    let fresh = node.login("alice.atcr.test", "alice-pw").await;
    assert_error(
        &node
            .get("com.atproto.server.getSession", Some(access))
            .await,
        StatusCode::UNAUTHORIZED,
        "ExpiredToken",
    );
    let access = fresh["accessJwt"].as_str().unwrap();

    // App passwords: create, log in with one, list, revoke (its sessions end).
    let (s, app) = node
        .post(
            "com.atproto.server.createAppPassword",
            Some(access),
            json!({"name": "ci"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{app}");
    assert_error(
        &node
            .post(
                "com.atproto.server.createAppPassword",
                Some(access),
                json!({"name": "ci"}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "DuplicateName",
    );
    let app_session = node.login("alice", app["password"].as_str().unwrap()).await;
    let app_access = app_session["accessJwt"].as_str().unwrap();
    let (_, list) = node
        .get("com.atproto.server.listAppPasswords", Some(access))
        .await;
    assert_eq!(list["passwords"][0]["name"], "ci");
    assert!(list["passwords"][0].get("password").is_none());
    let (s, _) = node
        .post(
            "com.atproto.server.revokeAppPassword",
            Some(access),
            json!({"name": "ci"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_error(
        &node
            .get("com.atproto.server.getSession", Some(app_access))
            .await,
        StatusCode::UNAUTHORIZED,
        "ExpiredToken",
    );

    // Service auth.
    let (s, v) = node
        .get("com.atproto.server.getServiceAuth?aud=did:web:example.com&lxm=com.atproto.repo.uploadBlob", Some(access))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let token = v["token"].as_str().unwrap();
    let did: atcr::atproto::Did = session["did"].as_str().unwrap().parse().unwrap();
    let key = node.pds().repos.key(&did).unwrap();
    let claims = atcr::pds::auth::verify(token, &key.public_key(), "JWT").unwrap();
    assert_eq!(
        (claims["iss"].as_str(), claims["aud"].as_str()),
        (Some(did.as_str()), Some("did:web:example.com"))
    );
    let far = atcr::pds::accounts::now_secs() + 7200;
    assert_error(
        &node
            .get(
                &format!("com.atproto.server.getServiceAuth?aud=did:web:example.com&exp={far}"),
                Some(access),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "BadExpiration",
    );

    // deleteSession ends the session.
    let refresh = fresh["refreshJwt"].as_str().unwrap();
    let (s, _) = node
        .post("com.atproto.server.deleteSession", Some(refresh), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_error(
        &node
            .get("com.atproto.server.getSession", Some(access))
            .await,
        StatusCode::UNAUTHORIZED,
        "ExpiredToken",
    );

    // Unknown methods and bad bodies.
    assert_error(
        &node.get("com.example.nothing", None).await,
        StatusCode::NOT_IMPLEMENTED,
        "MethodNotImplemented",
    );
    let r = node
        .client
        .post(format!(
            "{}/xrpc/com.atproto.server.createSession",
            node.base
        ))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn repo_writes_reads_and_conflicts() {
    let node = Node::start().await;
    let session = node.login("alice", "alice-pw").await;
    let t = session["accessJwt"].as_str().unwrap();
    let did = session["did"].as_str().unwrap().to_owned();

    let (s, created) = node
        .post(
            "com.atproto.repo.createRecord",
            Some(t),
            json!({"repo": did, "collection": "app.test.post", "record": {"text": "hello"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{created}");
    assert_eq!(created["validationStatus"], "unknown");
    let uri = created["uri"].as_str().unwrap();
    let rkey = uri.rsplit('/').next().unwrap().to_owned();

    // ATCR records are validated.
    assert_error(
        &node.post("com.atproto.repo.createRecord", Some(t), json!({"repo": did, "collection": "io.atcr.tag", "rkey": "a_b", "record": {"repository": "a"}})).await,
        StatusCode::BAD_REQUEST,
        "InvalidRequest",
    );
    let (s, tag) = node
        .post("com.atproto.repo.putRecord", Some(t), json!({"repo": "alice.atcr.test", "collection": "io.atcr.tag", "rkey": "app_latest", "record": {"repository": "app", "tag": "latest"}}))
        .await;
    assert_eq!(
        (s, tag["validationStatus"].as_str()),
        (StatusCode::OK, Some("valid")),
        "{tag}"
    );

    // Another user cannot write alice's repo.
    let bob = node.login("bob", "bob-password").await;
    let bt = bob["accessJwt"].as_str().unwrap();
    let (s, _) = node
        .post(
            "com.atproto.repo.createRecord",
            Some(bt),
            json!({"repo": did, "collection": "app.test.post", "record": {"text": "x"}}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Who writes is checked before whether the repository exists: 403 (signed in) or 401
    // (not) for a repository that is not there either; a malformed name is 400.
    for (token, repo, status) in [
        (Some(bt), "did:plc:nobody", StatusCode::FORBIDDEN),
        (Some(bt), "nobody.example.com", StatusCode::FORBIDDEN),
        (None, "did:plc:nobody", StatusCode::UNAUTHORIZED),
        (Some(bt), "not a handle", StatusCode::BAD_REQUEST),
    ] {
        for nsid in [
            "com.atproto.repo.createRecord",
            "com.atproto.repo.applyWrites",
        ] {
            let (s, _) = node
                .post(nsid, token, json!({"repo": repo, "collection": "app.test.post", "record": {}, "writes": []}))
                .await;
            assert_eq!(s, status, "{nsid} {repo}");
        }
    }

    // Any valid record key, whatever key type the lexicon declares (as the reference PDS):
    // ATCR keys manifest records by digest although `io.atcr.manifest` says `tid`.
    let digest = format!("sha256:{}", "ab".repeat(32));
    let manifest = json!({"repository": "app", "digest": digest, "mediaType": "application/vnd.oci.image.manifest.v1+json", "schemaVersion": 2, "createdAt": "2025-01-01T00:00:00Z"});
    let (s, keyed) = node
        .post("com.atproto.repo.createRecord", Some(t), json!({"repo": did, "collection": "io.atcr.manifest", "rkey": digest, "record": manifest}))
        .await;
    assert_eq!(
        (s, &keyed["validationStatus"]),
        (StatusCode::OK, &json!("valid")),
        "{keyed}"
    );
    for rkey in ["sha256 ab", "..", "a/b"] {
        assert_error(
            &node.post("com.atproto.repo.createRecord", Some(t), json!({"repo": did, "collection": "io.atcr.manifest", "rkey": rkey, "record": manifest})).await,
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
        );
    }
    let (s, _) = node
        .post(
            "com.atproto.repo.deleteRecord",
            Some(t),
            json!({"repo": did, "collection": "io.atcr.manifest", "rkey": digest}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    // getRecord, and its errors.
    let (s, got) = node
        .get(
            &format!("com.atproto.repo.getRecord?repo={did}&collection=app.test.post&rkey={rkey}"),
            None,
        )
        .await;
    assert_eq!(
        (s, &got["value"]["text"]),
        (StatusCode::OK, &json!("hello"))
    );
    assert_eq!(got["cid"], created["cid"]);
    assert_error(
        &node
            .get(
                &format!(
                    "com.atproto.repo.getRecord?repo={did}&collection=app.test.post&rkey=nope"
                ),
                None,
            )
            .await,
        StatusCode::NOT_FOUND,
        "RecordNotFound",
    );
    assert_error(
        &node
            .get(
                "com.atproto.repo.getRecord?repo=did:plc:nobody&collection=app.test.post&rkey=x",
                None,
            )
            .await,
        StatusCode::NOT_FOUND,
        "RepoNotFound",
    );
    assert_error(
        &node
            .get(&format!("com.atproto.repo.getRecord?repo={did}"), None)
            .await,
        StatusCode::BAD_REQUEST,
        "InvalidRequest",
    );

    // Swaps: stale swapCommit, wrong swapRecord.
    let head = created["commit"]["cid"].as_str().unwrap();
    let (s, _) = node
        .post("com.atproto.repo.putRecord", Some(t), json!({"repo": did, "collection": "app.test.post", "rkey": rkey, "record": {"text": "v2"}, "swapCommit": head}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_error(
        &node.post("com.atproto.repo.putRecord", Some(t), json!({"repo": did, "collection": "app.test.post", "rkey": rkey, "record": {"text": "v2"}, "swapRecord": null})).await,
        StatusCode::CONFLICT,
        "InvalidSwap",
    );
    let (s, put) = node
        .post("com.atproto.repo.putRecord", Some(t), json!({"repo": did, "collection": "app.test.post", "rkey": rkey, "record": {"text": "v2"}, "swapRecord": created["cid"]}))
        .await;
    assert_eq!(s, StatusCode::OK, "{put}");

    // applyWrites: atomic; a failing write leaves nothing behind.
    let writes = |extra: Value| {
        let mut w = vec![
            json!({"$type": "com.atproto.repo.applyWrites#create", "collection": "app.test.post", "rkey": "w1", "value": {"text": "1"}}),
            json!({"$type": "com.atproto.repo.applyWrites#update", "collection": "app.test.post", "rkey": rkey.clone(), "value": {"text": "v3"}}),
        ];
        w.push(extra);
        w
    };
    assert_error(
        &node.post("com.atproto.repo.applyWrites", Some(t), json!({"repo": did, "writes": writes(json!({"$type": "com.atproto.repo.applyWrites#delete", "collection": "app.test.post", "rkey": "missing"}))})).await,
        StatusCode::BAD_REQUEST,
        "InvalidRequest",
    );
    // An #update of a missing record is no upsert: the batch fails the same way.
    let (s, e) = node.post("com.atproto.repo.applyWrites", Some(t), json!({"repo": did, "writes": writes(json!({"$type": "com.atproto.repo.applyWrites#update", "collection": "app.test.post", "rkey": "missing", "value": {"text": "x"}}))})).await;
    assert_eq!(
        (s, &e["error"]),
        (StatusCode::BAD_REQUEST, &json!("InvalidRequest")),
        "{e}"
    );
    assert_eq!(
        e["message"],
        "Could not find a record with key: app.test.post/missing"
    );
    assert_error(
        &node
            .get(
                &format!("com.atproto.repo.getRecord?repo={did}&collection=app.test.post&rkey=w1"),
                None,
            )
            .await,
        StatusCode::NOT_FOUND,
        "RecordNotFound",
    );
    let (s, applied) = node
        .post("com.atproto.repo.applyWrites", Some(t), json!({"repo": did, "writes": writes(json!({"$type": "com.atproto.repo.applyWrites#create", "collection": "app.test.post", "rkey": "w2", "value": {"text": "2"}}))}))
        .await;
    assert_eq!(s, StatusCode::OK, "{applied}");
    assert_eq!(applied["results"].as_array().unwrap().len(), 3);
    assert_eq!(
        applied["results"][1]["$type"],
        "com.atproto.repo.applyWrites#updateResult"
    );

    // listRecords: newest rkey first by default, `reverse` ascending, cursors.
    let (_, page1) = node.get(&format!("com.atproto.repo.listRecords?repo={did}&collection=app.test.post&limit=2&reverse=true"), None).await;
    let keys = |v: &Value| {
        v["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r["uri"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect::<Vec<_>>()
    };
    let mut all = [rkey.clone(), "w1".to_owned(), "w2".to_owned()];
    all.sort();
    assert_eq!(keys(&page1), all[..2]);
    let cursor = page1["cursor"].as_str().unwrap();
    let (_, page2) = node.get(&format!("com.atproto.repo.listRecords?repo={did}&collection=app.test.post&limit=2&reverse=true&cursor={cursor}"), None).await;
    assert_eq!(keys(&page2), all[2..]);
    assert!(page2.get("cursor").is_none());
    let (_, desc) = node
        .get(
            &format!("com.atproto.repo.listRecords?repo={did}&collection=app.test.post"),
            None,
        )
        .await;
    assert_eq!(keys(&desc), all.iter().rev().cloned().collect::<Vec<_>>());
    assert_error(
        &node
            .get(
                &format!(
                    "com.atproto.repo.listRecords?repo={did}&collection=app.test.post&limit=0"
                ),
                None,
            )
            .await,
        StatusCode::BAD_REQUEST,
        "InvalidRequest",
    );

    // deleteRecord (and deleting again is a no-op).
    let (s, _) = node
        .post(
            "com.atproto.repo.deleteRecord",
            Some(t),
            json!({"repo": did, "collection": "app.test.post", "rkey": "w2"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = node
        .post(
            "com.atproto.repo.deleteRecord",
            Some(t),
            json!({"repo": did, "collection": "app.test.post", "rkey": "w2"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // describeRepo.
    let (s, d) = node
        .get(&format!("com.atproto.repo.describeRepo?repo={did}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(d["collections"], json!(["app.test.post", "io.atcr.tag"]));
    assert_eq!(d["handle"], "alice.atcr.test");
    assert_eq!(d["handleIsCorrect"], true);
    // The node's did:web has no handle: `handle.invalid`, never a bare host such as `localhost`
    // (which @atproto/api rejects as an invalid handle).
    let (s, d) = node
        .get(
            &format!(
                "com.atproto.repo.describeRepo?repo={}",
                node.pds().node_did.as_str().replace('%', "%25")
            ),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["handle"], "handle.invalid");
    assert_eq!(d["handleIsCorrect"], false);

    // Blobs: upload, reference from a record, getBlob, listBlobs; unknown blob refs refused.
    let blob = b"\x89PNG fake image bytes".to_vec();
    let r = node
        .client
        .post(format!("{}/xrpc/com.atproto.repo.uploadBlob", node.base))
        .bearer_auth(t)
        .header("content-type", "image/png")
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let uploaded: Value = r.json_value().await;
    let blob_cid = uploaded["blob"]["ref"]["$link"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, v) = node
        .post(
            "com.atproto.repo.createRecord",
            Some(t),
            json!({"repo": did, "collection": "app.test.pic", "record": {"img": uploaded["blob"]}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let bogus = json!({"$type": "blob", "ref": {"$link": "bafkreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"}, "mimeType": "image/png", "size": 1});
    assert_error(
        &node
            .post(
                "com.atproto.repo.createRecord",
                Some(t),
                json!({"repo": did, "collection": "app.test.pic", "record": {"img": bogus}}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "InvalidRequest",
    );
    let r = node
        .client
        .get(format!(
            "{}/xrpc/com.atproto.sync.getBlob?did={did}&cid={blob_cid}",
            node.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.bytes().await.unwrap().as_ref(), blob.as_slice());
    let (_, blobs) = node
        .get(&format!("com.atproto.sync.listBlobs?did={did}"), None)
        .await;
    assert_eq!(blobs["cids"], json!([blob_cid]));
    // 413 for an oversized body.
    let r = node
        .client
        .post(format!("{}/xrpc/com.atproto.repo.createRecord", node.base))
        .bearer_auth(t)
        .body(vec![b' '; 2 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
}
