//! A full node and a hold alone (`role = "hold"`) as two processes, the hold trusted by the full
//! node and `alice` (an account of the full node) in the hold's crew and pushing to it: ATCR's
//! "bring your own storage" layout, for `tests/remote_hold*.rs`.

use serde_json::{Value, json};

use super::Server;
use super::clients::curl_anonymous;

/// alice's password on the full node.
pub const ALICE_PASSWORD: &str = "alice-password";

pub struct TwoNodes {
    pub full: Server,
    pub hold: Server,
    pub hold_did: String,
    pub alice: String,
    /// A session of alice on the full node.
    pub alice_token: String,
}

impl TwoNodes {
    /// Starts both nodes; `hold_env` is the hold's storage (`ATCR_STORAGE_*`, empty: its disk).
    /// The full node's PLC directory is the hold's: the hold resolves the full node's users
    /// there (and registers its own first account there, hence open creation).
    #[must_use]
    pub fn start(hold_env: &[(String, String)]) -> TwoNodes {
        let full = Server::start_with(&[("ATCR_PDS_PLC_OPEN_CREATION", "true")]);
        let mut env = hold_env.to_vec();
        env.push(("ATCR_PDS_PLC_UPSTREAM".into(), full.base_url()));
        env.push(("ATCR_NODE_ROLE".into(), "hold".into()));
        // The full node (the users' PDS) is on this machine: a LAN host to the hold.
        env.push((
            "ATCR_IDENTITY_LAN_HOSTS".into(),
            "localhost,127.0.0.1".into(),
        ));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let hold = Server::start_with(&env);
        let hold_did = node_did(&hold);
        full.add_user("alice", ALICE_PASSWORD);
        let alice = did_of(&full, "alice");
        let out = hold.cli(&["crew", "add", &alice, "--role", "write"], "");
        assert!(out.status.success(), "{out:?}");
        let out = full.cli(
            &["hold", "add", &hold_did, "--endpoint", &hold.base_url()],
            "",
        );
        assert!(out.status.success(), "{out:?}");
        let alice_token = login(&full, "alice", ALICE_PASSWORD);
        choose_hold(&full, &alice, &alice_token, &hold_did);
        TwoNodes {
            full,
            hold,
            hold_did,
            alice,
            alice_token,
        }
    }
}

/// The DID a user list line names for `name` (`name handle did used limit`).
#[must_use]
pub fn did_of(srv: &Server, name: &str) -> String {
    let out = srv.cli(&["user", "list"], "");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.split('\t').next() == Some(name))
        .and_then(|l| l.split('\t').nth(2))
        .unwrap_or_else(|| panic!("no user {name}"))
        .to_owned()
}

/// The node's own DID, from its DID document.
#[must_use]
pub fn node_did(srv: &Server) -> String {
    let r = curl_anonymous(
        "GET",
        &format!("{}/.well-known/did.json", srv.base_url()),
        &[],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let doc: Value = serde_json::from_slice(&r.body).unwrap();
    doc["id"].as_str().unwrap().to_owned()
}

/// An XRPC call to `srv` with a JSON body (POST) or none (GET); returns status and JSON.
#[must_use]
pub fn xrpc(
    srv: &Server,
    method: &str,
    nsid: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(b) = &bearer {
        headers.push(("Authorization", b.as_str()));
    }
    let bytes = body.map(Value::to_string);
    let r = curl_anonymous(
        method,
        &format!("{}/xrpc/{nsid}", srv.base_url()),
        &headers,
        bytes.as_deref().map(str::as_bytes),
    );
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

/// A session of `name` on `srv`: its access token.
#[must_use]
pub fn login(srv: &Server, name: &str, password: &str) -> String {
    let (s, v) = xrpc(
        srv,
        "POST",
        "com.atproto.server.createSession",
        None,
        Some(&json!({ "identifier": name, "password": password })),
    );
    assert_eq!(s, 200, "{v}");
    v["accessJwt"].as_str().unwrap().to_owned()
}

/// Writes `did`'s `io.atcr.sailor.profile` naming `hold` as the hold for its blobs.
pub fn choose_hold(srv: &Server, did: &str, token: &str, hold: &str) {
    let (s, v) = xrpc(
        srv,
        "POST",
        "com.atproto.repo.putRecord",
        Some(token),
        Some(&json!({
            "repo": did,
            "collection": "io.atcr.sailor.profile",
            "rkey": "self",
            "record": {
                "$type": "io.atcr.sailor.profile",
                "defaultHold": hold,
                "createdAt": "2026-12-06T00:00:00.000Z",
            },
        })),
    );
    assert_eq!(s, 200, "{v}");
}
