//! The PDS over HTTP, part two: sync exports verified against DID documents, identity
//! resolution, the built-in PLC directory and the firehose.
#![allow(clippy::many_single_char_names, clippy::similar_names)] // s = status, t = token, v = body

mod pds_node;

use atcr::atproto::blockstore::MemoryBlockStore;
use atcr::atproto::car::CarReader;
use atcr::atproto::commit::verify_repo;
use atcr::atproto::{BlockStore, PublicKey};
use futures_util::StreamExt;
use pds_node::{JsonBody, Node, assert_error};
use reqwest::StatusCode;
use serde_json::{Value, json};

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

    // getRepo with `since`: only the blocks that changed after that revision. Added to the
    // first export they verify as the new head; alone they do not.
    let since = latest["rev"].as_str().unwrap().to_owned();
    let r = node
        .client
        .post(format!("{}/xrpc/com.atproto.repo.uploadBlob", node.base))
        .bearer_auth(t)
        .header("content-type", "image/png")
        .body(vec![7u8; 100])
        .send()
        .await
        .unwrap();
    let uploaded: Value = r.json_value().await;
    let blob = uploaded["blob"].clone();
    for (rkey, record) in [
        ("r30", json!({"n": 30, "img": blob})),
        ("r31", json!({"n": 31})),
    ] {
        let (s, v) = node
            .post(
                "com.atproto.repo.createRecord",
                Some(t),
                json!({"repo": did, "collection": "app.test.post", "rkey": rkey, "record": record}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let (s, _) = node
        .post(
            "com.atproto.repo.deleteRecord",
            Some(t),
            json!({"repo": did, "collection": "app.test.post", "rkey": "r00"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, newest) = node
        .get(&format!("com.atproto.sync.getLatestCommit?did={did}"), None)
        .await;
    let diff = node
        .client
        .get(format!(
            "{}/xrpc/com.atproto.sync.getRepo?did={did}&since={since}",
            node.base
        ))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(
        diff.len() < car.len() / 2,
        "{} of {}",
        diff.len(),
        car.len()
    );
    let reader = CarReader::new(diff.as_ref()).unwrap();
    let root = reader.roots()[0];
    assert_eq!(root.to_string(), newest["cid"].as_str().unwrap());
    let alone = MemoryBlockStore::new();
    CarReader::new(diff.as_ref())
        .unwrap()
        .load_into(&alone)
        .unwrap();
    assert!(
        verify_repo(&alone, root, &key).is_err(),
        "a diff is not a whole repository"
    );
    reader.load_into(&store).unwrap();
    assert_eq!(verify_repo(&store, root, &key).unwrap().records, 31);
    // listBlobs with `since`: the blobs of records written after that revision.
    let (_, listed) = node
        .get(
            &format!("com.atproto.sync.listBlobs?did={did}&since={since}"),
            None,
        )
        .await;
    assert_eq!(listed["cids"], json!([blob["ref"]["$link"]]));
    let newest_rev = newest["rev"].as_str().unwrap();
    let (_, listed) = node
        .get(
            &format!("com.atproto.sync.listBlobs?did={did}&since={newest_rev}"),
            None,
        )
        .await;
    assert_eq!(listed["cids"], json!([]));
    assert_error(
        &node
            .get(
                &format!("com.atproto.sync.getRepo?did={did}&since=yesterday"),
                None,
            )
            .await,
        StatusCode::BAD_REQUEST,
        "InvalidRequest",
    );

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
    let post = |op: Value| {
        node.client
            .post(format!("{}/{}", node.base, alice.did))
            .body(op.to_string())
            .send()
    };
    assert_eq!(
        post(forged).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    let signed = atcr::pds::plc::sign(update, &node.pds().keys.rotation).unwrap();
    assert_eq!(post(signed.clone()).await.unwrap().status(), StatusCode::OK);
    let doc: Value = node
        .client
        .get(format!("{}/{}", node.base, alice.did))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(doc["alsoKnownAs"][0], "at://alice2.atcr.test");
    // Followers hear of it: an #identity event, without the handle the document no longer
    // claims (the node's handle table is not changed by an operation).
    let store = node.pds().repos.store();
    let (_, frame) = store
        .events_after(store.last_seq().unwrap() - 1, 1)
        .unwrap()
        .pop()
        .unwrap();
    let (header, body) = atcr::pds::events::parse_frame(&frame).unwrap();
    assert_eq!(
        header.get("t"),
        Some(&atcr::atproto::Value::String("#identity".into()))
    );
    assert_eq!(
        body.get("did"),
        Some(&atcr::atproto::Value::String(alice.did.to_string()))
    );
    assert_eq!(body.get("handle"), None);
    // The same operation again no longer extends the log.
    assert_eq!(
        post(signed).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
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

/// Subscribers that stop reading are disconnected once a frame cannot leave within the send
/// timeout; one address cannot hold more than its share of subscribers.
#[tokio::test]
async fn firehose_drops_stuck_readers_and_bounds_subscribers() {
    use std::time::Duration;
    let node = Node::start_with(|s| {
        s.firehose.max_per_address = 2;
        s.firehose.send_timeout = Duration::from_secs(1);
    })
    .await;
    let session = node.login("alice", "alice-pw").await;
    let t = session["accessJwt"].as_str().unwrap();
    let did = session["did"].as_str().unwrap().to_owned();
    let addr = node.base.trim_start_matches("http://").to_owned();
    let url = format!("ws://{addr}/xrpc/com.atproto.sync.subscribeRepos");
    let subscribe = || async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(addr.parse().unwrap()).await.unwrap();
        tokio_tungstenite::client_async(url.clone(), stream).await
    };
    // Two subscribers that never read.
    let (stuck1, _) = subscribe().await.unwrap();
    let (stuck2, _) = subscribe().await.unwrap();
    // The third from the same address is refused.
    match subscribe().await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        }
        other => panic!("a third subscriber was not refused: {other:?}"),
    }
    assert_eq!(node.pds().subscribers.count(), 2);

    // Big commits fill what the kernel queues for them; then their sends time out.
    let text = "x".repeat(200_000);
    for _ in 0..200 {
        if node.pds().subscribers.count() == 0 {
            break;
        }
        let (s, v) = node
            .post(
                "com.atproto.repo.createRecord",
                Some(t),
                json!({"repo": did, "collection": "app.test.big", "record": {"text": text}}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let dropped = tokio::time::timeout(Duration::from_secs(20), async {
        while node.pds().subscribers.count() > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(dropped.is_ok(), "stuck subscribers were kept");
    // Their places are free again.
    let (mut fresh, _) = subscribe().await.unwrap();
    fresh.close(None).await.unwrap();
    drop((stuck1, stuck2));
}

/// Posts a PLC operation to the node's built-in directory; returns the status.
async fn post_op(node: &Node, did: &atcr::atproto::Did, op: &Value) -> StatusCode {
    node.client
        .post(format!("{}/{did}", node.base))
        .body(op.to_string())
        .send()
        .await
        .unwrap()
        .status()
}

/// The built-in directory registers only the node's own DIDs unless creation is opened, holds
/// every operation to the reference directory's limits, and rate-limits open creation.
#[tokio::test]
async fn plc_directory_creation_is_closed_by_default_and_bounded() {
    use atcr::atproto::{Algorithm, Keypair};
    use atcr::pds::plc;
    let genesis = |aka: Vec<String>| {
        let rotation = Keypair::generate(Algorithm::K256);
        let (_, op) = plc::genesis(
            &rotation,
            &rotation.public_key(),
            "someone.example.com",
            "https://pds.example.com",
        )
        .unwrap();
        let mut op = op;
        op["alsoKnownAs"] = json!(aka);
        let op = plc::sign(op, &rotation).unwrap();
        (plc::did_for_genesis(&op).unwrap(), op)
    };
    let one = || vec!["at://someone.example.com".to_owned()];

    // Closed (the default): an anonymous genesis for a DID the node did not create is refused.
    let node = Node::start().await;
    let (did, op) = genesis(one());
    assert_eq!(post_op(&node, &did, &op).await, StatusCode::FORBIDDEN);
    let r = node
        .client
        .get(format!("{}/{did}", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // The node's own rotation key still registers.
    let (_, own) = plc::genesis(
        &node.pds().keys.rotation,
        &Keypair::generate(Algorithm::K256).public_key(),
        "own.atcr.test",
        &node.base,
    )
    .unwrap();
    let own_did = plc::did_for_genesis(&own).unwrap();
    assert_eq!(post_op(&node, &own_did, &own).await, StatusCode::OK);
    drop(node);

    // Open: accepted, within the limits, and at most PLC_CREATIONS_PER_HOUR per address.
    let node = Node::start_with(|s| s.plc_open_creation = true).await;
    let huge = vec![format!("at://{}", "a".repeat(663 << 10))];
    let (did, op) = genesis(huge);
    assert_eq!(post_op(&node, &did, &op).await, StatusCode::BAD_REQUEST);
    let many: Vec<String> = (0..11).map(|i| format!("at://h{i}.example.com")).collect();
    let (did, op) = genesis(many);
    assert_eq!(post_op(&node, &did, &op).await, StatusCode::BAD_REQUEST);
    let mut accepted = 0;
    for _ in 0..atcr::pds::PLC_CREATIONS_PER_HOUR {
        let (did, op) = genesis(one());
        if post_op(&node, &did, &op).await == StatusCode::OK {
            accepted += 1;
        }
    }
    // (The oversized operations above were refused before counting.)
    assert_eq!(accepted, atcr::pds::PLC_CREATIONS_PER_HOUR);
    let (did, op) = genesis(one());
    assert_eq!(
        post_op(&node, &did, &op).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}
