//! The PDS over HTTP: an in-process server on 127.0.0.1:0 with the PDS role, exercised through
//! XRPC, the well-known endpoints, the built-in PLC directory and the firehose.
#![allow(clippy::many_single_char_names, clippy::similar_names)] // s = status, t = token, v = body

use std::sync::Arc;

use atcr::atproto::blockstore::MemoryBlockStore;
use atcr::atproto::car::CarReader;
use atcr::atproto::commit::verify_repo;
use atcr::atproto::{BlockStore, PublicKey};
use atcr::blobstore::BlobStore;
use atcr::oci::Registry;
use atcr::oci::index::Index;
use atcr::pds::{Pds, PdsSettings};
use atcr::server::{self, App, ServerLimits};
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

trait JsonBody {
    async fn json_value<T: serde::de::DeserializeOwned>(self) -> T;
}

impl JsonBody for reqwest::Response {
    async fn json_value<T: serde::de::DeserializeOwned>(self) -> T {
        serde_json::from_slice(&self.bytes().await.unwrap()).unwrap()
    }
}

struct Node {
    base: String,
    client: reqwest::Client,
    app: Arc<App>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Node {
    async fn start() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let blobs = BlobStore::filesystem(&dir.path().join("blobs")).unwrap();
        let index = Index::open(&dir.path().join("index.redb")).unwrap();
        let pds = Pds::open(dir.path(), PdsSettings::localhost(port), blobs.clone())
            .await
            .unwrap();
        pds.create_account("alice", "alice-pw", false)
            .await
            .unwrap();
        pds.create_account("bob", "bob-pw", false).await.unwrap();
        let app = Arc::new(App::new(Registry::new(blobs, index)).with_pds(pds));
        let shutdown = CancellationToken::new();
        tokio::spawn(server::run(
            vec![server::Listener::plain(listener)],
            app.clone(),
            shutdown.clone(),
            ServerLimits::default(),
        ));
        Node {
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            app,
            shutdown,
            _dir: dir,
        }
    }

    fn pds(&self) -> &Pds {
        self.app.pds.as_ref().unwrap()
    }

    async fn call(
        &self,
        method: Method,
        nsid: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}/xrpc/{nsid}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let bytes = r.bytes().await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn get(&self, path_and_query: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::GET, path_and_query, token, None).await
    }

    async fn post(&self, nsid: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, nsid, token, Some(body)).await
    }

    async fn login(&self, who: &str, pw: &str) -> Value {
        let (s, v) = self
            .post(
                "com.atproto.server.createSession",
                None,
                json!({"identifier": who, "password": pw}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn assert_error(got: &(StatusCode, Value), status: StatusCode, error: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"], error, "{}", got.1);
    assert!(got.1["message"].is_string(), "{}", got.1);
}

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

    // Refresh rotates: the old refresh token and its access token stop working.
    let (s, fresh) = node
        .post(
            "com.atproto.server.refreshSession",
            Some(refresh),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{fresh}");
    assert_error(
        &node
            .post(
                "com.atproto.server.refreshSession",
                Some(refresh),
                json!({}),
            )
            .await,
        StatusCode::UNAUTHORIZED,
        "ExpiredToken",
    );
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
    let bob = node.login("bob", "bob-pw").await;
    let bt = bob["accessJwt"].as_str().unwrap();
    let (s, _) = node
        .post(
            "com.atproto.repo.createRecord",
            Some(bt),
            json!({"repo": did, "collection": "app.test.post", "record": {"text": "x"}}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

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
        StatusCode::NOT_FOUND,
        "RecordNotFound",
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

#[tokio::test]
async fn sync_exports_verify_against_the_did_document() {
    let node = Node::start().await;
    let session = node.login("alice", "alice-pw").await;
    let t = session["accessJwt"].as_str().unwrap();
    let did = session["did"].as_str().unwrap().to_owned();
    for i in 0..30 {
        let (s, _) = node
            .post("com.atproto.repo.createRecord", Some(t), json!({"repo": did, "collection": "app.test.post", "rkey": format!("r{i:02}"), "record": {"n": i}}))
            .await;
        assert_eq!(s, StatusCode::OK);
    }
    // The key comes from the DID document served by the built-in PLC directory.
    let doc: Value = node
        .client
        .get(format!("{}/{did}", node.base))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    let key = PublicKey::from_multikey(
        doc["verificationMethod"][0]["publicKeyMultibase"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        doc["service"][0]["serviceEndpoint"],
        node.base.replace("127.0.0.1", "localhost")
    );

    let (_, latest) = node
        .get(&format!("com.atproto.sync.getLatestCommit?did={did}"), None)
        .await;
    let car = node
        .client
        .get(format!(
            "{}/xrpc/com.atproto.sync.getRepo?did={did}",
            node.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(car.headers()["content-type"], "application/vnd.ipld.car");
    let car = car.bytes().await.unwrap();
    let store = MemoryBlockStore::new();
    let reader = CarReader::new(car.as_ref()).unwrap();
    let root = reader.roots()[0];
    assert_eq!(root.to_string(), latest["cid"].as_str().unwrap());
    reader.load_into(&store).unwrap();
    assert_eq!(verify_repo(&store, root, &key).unwrap().records, 30);

    // A record proof: commit + path + record, verifiable alone.
    let proof = node
        .client
        .get(format!(
            "{}/xrpc/com.atproto.sync.getRecord?did={did}&collection=app.test.post&rkey=r07",
            node.base
        ))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let store = MemoryBlockStore::new();
    let reader = CarReader::new(proof.as_ref()).unwrap();
    let root = reader.roots()[0];
    reader.load_into(&store).unwrap();
    let commit = atcr::atproto::Commit::from_cbor(&store.get(&root).unwrap().unwrap()).unwrap();
    commit.verify(&key).unwrap();
    let mst = atcr::atproto::Mst::load(&store, commit.unsigned.data).unwrap();
    assert!(mst.get(&store, "app.test.post/r07").unwrap().is_some());

    // listRepos / getRepoStatus.
    let (_, repos) = node.get("com.atproto.sync.listRepos", None).await;
    assert_eq!(repos["repos"].as_array().unwrap().len(), 3);
    let (_, status) = node
        .get(&format!("com.atproto.sync.getRepoStatus?did={did}"), None)
        .await;
    assert_eq!(status["active"], true);
    assert_error(
        &node
            .get("com.atproto.sync.getRepoStatus?did=did:plc:nobody", None)
            .await,
        StatusCode::NOT_FOUND,
        "RepoNotFound",
    );

    // The node's did:web document and repository.
    let node_doc: Value = node
        .client
        .get(format!("{}/.well-known/did.json", node.base))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(node_doc["id"], node.pds().node_did.as_str());
    assert!(
        node_doc["id"]
            .as_str()
            .unwrap()
            .starts_with("did:web:localhost%3A")
    );
    assert_eq!(
        node_doc["verificationMethod"][0]["id"],
        format!("{}#atproto", node.pds().node_did)
    );
    let (s, _) = node
        .get(
            &format!(
                "com.atproto.sync.getLatestCommit?did={}",
                node.pds().node_did.as_str().replace('%', "%25")
            ),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn identity_resolution_and_plc_directory() {
    let node = Node::start().await;
    let alice = node.pds().accounts.find("alice").unwrap().unwrap();
    let (s, v) = node
        .get(
            "com.atproto.identity.resolveHandle?handle=alice.atcr.test",
            None,
        )
        .await;
    assert_eq!(
        (s, v["did"].as_str()),
        (StatusCode::OK, Some(alice.did.as_str()))
    );
    assert_error(
        &node
            .get(
                "com.atproto.identity.resolveHandle?handle=nobody.atcr.test",
                None,
            )
            .await,
        StatusCode::BAD_REQUEST,
        "HandleNotFound",
    );
    // https://<handle>/.well-known/atproto-did, answered by Host header.
    let r = node
        .client
        .get(format!("{}/.well-known/atproto-did", node.base))
        .header("host", "alice.atcr.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), alice.did.as_str());

    // Directory views.
    for (path, check) in [
        ("log", "array"),
        ("log/audit", "array"),
        ("data", "object"),
        ("log/last", "object"),
    ] {
        let r = node
            .client
            .get(format!("{}/{}/{path}", node.base, alice.did))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let v: Value = r.json_value().await;
        assert_eq!(
            if v.is_array() { "array" } else { "object" },
            check,
            "{path}"
        );
    }
    let r = node
        .client
        .get(format!("{}/did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // A signed update (new handle) from the rotation key is accepted; a forged one is not.
    let log: Vec<Value> = node
        .client
        .get(format!("{}/{}/log", node.base, alice.did))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    let mut update = log[0].clone();
    update["prev"] = json!(atcr::pds::plc::op_cid(&log[0]).unwrap().to_string());
    update["alsoKnownAs"] = json!(["at://alice2.atcr.test"]);
    let forged = atcr::pds::plc::sign(
        update.clone(),
        &atcr::atproto::Keypair::generate(atcr::atproto::Algorithm::K256),
    )
    .unwrap();
    let r = node
        .client
        .post(format!("{}/{}", node.base, alice.did))
        .body(forged.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let signed = atcr::pds::plc::sign(update, &node.pds().keys.rotation).unwrap();
    let r = node
        .client
        .post(format!("{}/{}", node.base, alice.did))
        .body(signed.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let doc: Value = node
        .client
        .get(format!("{}/{}", node.base, alice.did))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(doc["alsoKnownAs"][0], "at://alice2.atcr.test");
}

#[tokio::test]
async fn firehose_backfills_and_streams() {
    use tokio_tungstenite::tungstenite::Message;
    let node = Node::start().await;
    let session = node.login("alice", "alice-pw").await;
    let t = session["accessJwt"].as_str().unwrap();
    let did = session["did"].as_str().unwrap().to_owned();
    let before = node.pds().repos.store().last_seq().unwrap();
    let addr = node.base.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(
        format!("ws://{addr}/xrpc/com.atproto.sync.subscribeRepos?cursor=0"),
        stream,
    )
    .await
    .unwrap();
    // Backfill: every stored event from seq 1, in order.
    let mut seen = Vec::new();
    while seen.len() < usize::try_from(before).unwrap() {
        let Some(Ok(Message::Binary(frame))) = ws.next().await else {
            panic!("stream ended")
        };
        let (header, body) = atcr::pds::events::parse_frame(&frame).unwrap();
        assert_eq!(header.get("op"), Some(&atcr::atproto::Value::Integer(1)));
        let atcr::atproto::Value::Integer(seq) = body.get("seq").unwrap() else {
            panic!()
        };
        seen.push(*seq);
    }
    assert_eq!(
        seen,
        (1..=i64::try_from(before).unwrap()).collect::<Vec<_>>()
    );
    // Live: a write shows up as the next #commit.
    let (s, _) = node
        .post(
            "com.atproto.repo.createRecord",
            Some(t),
            json!({"repo": did, "collection": "app.test.post", "record": {"text": "live"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let Some(Ok(Message::Binary(frame))) = ws.next().await else {
        panic!("no live event")
    };
    let (header, body) = atcr::pds::events::parse_frame(&frame).unwrap();
    assert_eq!(
        header.get("t").and_then(atcr::atproto::Value::as_str),
        Some("#commit")
    );
    assert_eq!(
        body.get("seq"),
        Some(&atcr::atproto::Value::Integer(
            i64::try_from(before).unwrap() + 1
        ))
    );
    assert_eq!(
        body.get("repo").and_then(atcr::atproto::Value::as_str),
        Some(did.as_str())
    );

    // A cursor from the future is refused with an error frame.
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut ws2, _) = tokio_tungstenite::client_async(
        format!("ws://{addr}/xrpc/com.atproto.sync.subscribeRepos?cursor=999999"),
        stream,
    )
    .await
    .unwrap();
    let Some(Ok(Message::Binary(frame))) = ws2.next().await else {
        panic!("no error frame")
    };
    let (header, body) = atcr::pds::events::parse_frame(&frame).unwrap();
    assert_eq!(header.get("op"), Some(&atcr::atproto::Value::Integer(-1)));
    assert_eq!(
        body.get("error").and_then(atcr::atproto::Value::as_str),
        Some("FutureCursor")
    );
}
