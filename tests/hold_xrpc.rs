//! `io.atcr.hold.requestCrew` on an in-process node (see `pds_node`).

mod pds_node;

use pds_node::{Node, assert_error};
use reqwest::StatusCode;
use serde_json::json;

const REQUEST_CREW: &str = "io.atcr.hold.requestCrew";

#[tokio::test]
async fn request_crew() {
    let node = Node::start().await;
    let hold = &node.app.hold;
    let alice = node.login("alice", "alice-pw").await;
    let alice_did: atcr::atproto::Did = alice["did"].as_str().unwrap().parse().unwrap();
    let alice_token = alice["accessJwt"].as_str().unwrap();
    let bob = node.login("bob", "bob-password").await;
    let bob_token = bob["accessJwt"].as_str().unwrap();

    assert_error(
        &node.post(REQUEST_CREW, None, json!({})).await,
        StatusCode::UNAUTHORIZED,
        "AuthRequired",
    );
    // The first call writes the captain record: the node owns it, registration is closed.
    assert_error(
        &node.post(REQUEST_CREW, Some(alice_token), json!({})).await,
        StatusCode::FORBIDDEN,
        "RegistrationDisabled",
    );
    assert!(hold.member(&alice_did).unwrap().is_none());

    hold.set_captain(None, None, Some(true)).await.unwrap();
    assert_error(
        &node
            .post(
                REQUEST_CREW,
                Some(alice_token),
                json!({"permissions": ["blob:read", "crew:admin"]}),
            )
            .await,
        StatusCode::FORBIDDEN,
        "Forbidden",
    );
    assert_error(
        &node
            .post(
                REQUEST_CREW,
                Some(alice_token),
                json!({"permissions": ["root"]}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "InvalidRequest",
    );
    let (s, v) = node.post(REQUEST_CREW, Some(alice_token), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "created");
    let node_did = node.pds().node_did.clone();
    assert_eq!(
        v["uri"],
        format!("at://{node_did}/io.atcr.hold.crew/{alice_did}")
    );
    let m = hold.member(&alice_did).unwrap().unwrap();
    assert_eq!(m.role, "member");
    assert_eq!(m.permissions, ["blob:read", "blob:write"]);
    assert_eq!(v["cid"], m.cid.to_string());
    assert!(
        hold.allows(Some(&alice_did), atcr::hold::Permission::BlobWrite)
            .unwrap()
    );
    let (s, again) = node
        .post(REQUEST_CREW, Some(alice_token), json!({"role": "read"}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(again["status"], "already_member");
    assert_eq!((&again["uri"], &again["cid"]), (&v["uri"], &v["cid"]));

    // The owner may grant himself crew:admin even with registration closed.
    let bob_did: atcr::atproto::Did = bob["did"].as_str().unwrap().parse().unwrap();
    hold.set_captain(Some(bob_did.clone()), None, Some(false))
        .await
        .unwrap();
    let (s, v) = node
        .post(
            REQUEST_CREW,
            Some(bob_token),
            json!({"role": "admin", "permissions": ["crew:admin"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "created");
    assert_eq!(
        hold.member(&bob_did).unwrap().unwrap().permissions,
        ["crew:admin"]
    );

    let (s, _) = node.get(REQUEST_CREW, Some(bob_token)).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_error(
        &node.post("io.atcr.hold.nope", None, json!({})).await,
        StatusCode::NOT_IMPLEMENTED,
        "MethodNotImplemented",
    );
}
