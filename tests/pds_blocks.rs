//! The PDS over HTTP, part three: `sync.getBlocks`, and how sync methods answer a malformed,
//! unknown or deactivated repository.
#![allow(clippy::similar_names)]

mod pds_node;

use atcr::atproto::car::CarReader;
use atcr::atproto::{Cid, Did, MemoryBlockStore};
use pds_node::{Node, assert_error};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A GET whose answer is bytes (a CAR), or an XRPC error.
async fn get_bytes(node: &Node, path: &str) -> (StatusCode, Vec<u8>) {
    let r = node
        .client
        .get(format!("{}/xrpc/{path}", node.base))
        .send()
        .await
        .unwrap();
    (r.status(), r.bytes().await.unwrap().to_vec())
}

fn error_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}

#[tokio::test]
async fn get_blocks_serves_blocks_of_the_named_repository_only() {
    let node = Node::start().await;
    let alice = node.login("alice", "alice-pw").await;
    let (t, did) = (
        alice["accessJwt"].as_str().unwrap(),
        alice["did"].as_str().unwrap().to_owned(),
    );
    let (s, created) = node
        .post(
            "com.atproto.repo.createRecord",
            Some(t),
            json!({"repo": did, "collection": "app.test.post", "record": {"text": "hi"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{created}");
    let bob = node.login("bob", "bob-password").await;
    let (_, bobs) = node
        .post(
            "com.atproto.repo.createRecord",
            Some(bob["accessJwt"].as_str().unwrap()),
            json!({"repo": bob["did"], "collection": "app.test.post", "record": {"text": "bob's"}}),
        )
        .await;

    let head = node
        .pds()
        .repos
        .store()
        .head(&did.parse::<Did>().unwrap())
        .unwrap()
        .unwrap();
    let record: Cid = created["cid"].as_str().unwrap().parse().unwrap();
    let wanted = [head.commit, head.data, record];
    let query = wanted
        .iter()
        .map(|c| format!("cids={c}"))
        .collect::<Vec<_>>()
        .join("&");
    let (s, car) = get_bytes(
        &node,
        &format!("com.atproto.sync.getBlocks?did={did}&{query}"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", error_of(&car));
    let reader = CarReader::new(car.as_slice()).unwrap();
    assert!(reader.roots().is_empty());
    let store = MemoryBlockStore::new();
    reader.load_into(&store).unwrap();
    for cid in &wanted {
        let bytes = atcr::atproto::BlockStore::get(&store, cid)
            .unwrap()
            .unwrap();
        assert_eq!(Cid::for_cbor(&bytes), *cid);
    }

    // Bob's record is in the node's block store, but not in alice's repository; a CID of
    // nothing is nowhere. Either fails the call.
    for missing in [
        bobs["cid"].as_str().unwrap().to_owned(),
        Cid::for_cbor(b"\xa0").to_string(),
    ] {
        let (s, body) = get_bytes(
            &node,
            &format!(
                "com.atproto.sync.getBlocks?did={did}&cids={}&cids={missing}",
                head.commit
            ),
        )
        .await;
        let e = error_of(&body);
        assert_eq!(
            (s, &e["error"]),
            (StatusCode::BAD_REQUEST, &json!("BlockNotFound")),
            "{e}"
        );
        assert!(e["message"].as_str().unwrap().contains(&missing), "{e}");
    }
    for (query, status, error) in [
        (
            format!("did={did}"),
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
        ),
        (
            format!("did={did}&cids=nope"),
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
        ),
        (
            format!("did=alice&cids={record}"),
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
        ),
        (
            format!("did=did:plc:nobody&cids={record}"),
            StatusCode::NOT_FOUND,
            "RepoNotFound",
        ),
    ] {
        assert_error(
            &node
                .get(&format!("com.atproto.sync.getBlocks?{query}"), None)
                .await,
            status,
            error,
        );
    }
}

/// Sync methods take a DID (a handle or other malformed name is 400, as the reference PDS),
/// and a removed account's repository is deactivated (400 `RepoDeactivated`) while
/// `getRepoStatus` still reports it.
#[tokio::test]
async fn sync_methods_check_the_did_and_the_account() {
    let node = Node::start().await;
    let alice = node.login("alice", "alice-pw").await;
    let did = alice["did"].as_str().unwrap().to_owned();
    let methods = [
        "com.atproto.sync.getRepo?",
        "com.atproto.sync.getLatestCommit?",
        "com.atproto.sync.listBlobs?",
        "com.atproto.sync.getRecord?collection=app.test.post&rkey=x&",
        "com.atproto.sync.getBlob?cid=bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy&",
        "com.atproto.sync.getRepoStatus?",
    ];
    for m in methods {
        for bad in ["alice.test", "not-a-did", "did:"] {
            assert_error(
                &node.get(&format!("{m}did={bad}"), None).await,
                StatusCode::BAD_REQUEST,
                "InvalidRequest",
            );
        }
        assert_error(
            &node.get(&format!("{m}did=did:plc:nobody"), None).await,
            StatusCode::NOT_FOUND,
            "RepoNotFound",
        );
    }
    node.pds()
        .remove_account(&did.parse::<Did>().unwrap())
        .await
        .unwrap();
    for m in &methods[..5] {
        assert_error(
            &node.get(&format!("{m}did={did}"), None).await,
            StatusCode::BAD_REQUEST,
            "RepoDeactivated",
        );
    }
    let (s, status) = node
        .get(&format!("com.atproto.sync.getRepoStatus?did={did}"), None)
        .await;
    assert_eq!((s, &status["active"]), (StatusCode::OK, &json!(false)));
}
