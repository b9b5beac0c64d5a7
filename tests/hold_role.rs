//! `atcr serve --role hold`, the built binary: the hold and its PDS answer, the registry does
//! not; a crew member's upload is stored, read back and kept by the collector.

mod common;

use std::process::Command;

use common::xrpc::{HoldUpload, Xrpc, json_of};
use common::{Server, run};
use reqwest::StatusCode;
use serde_json::{Value, json};

const REQUEST_CREW: &str = "io.atcr.hold.requestCrew";

/// `atcr ARGS` with the built-in configuration and `env`: success, stdout, stderr.
fn atcr(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = run(Command::new(env!("CARGO_BIN_EXE_atcr"))
        .args(args)
        .env("ATCR_CONFIG", "/dev/null")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied()));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn get(client: &reqwest::Client, url: &str) -> (StatusCode, String) {
    let r = client.get(url).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

/// A registry path on a hold: 404 with the OCI error saying what the node is.
async fn assert_hold_only(client: &reqwest::Client, url: &str) {
    let r = client.get(url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "{url}");
    let (_, v) = json_of(r).await;
    assert_eq!(v["errors"][0]["code"], "UNSUPPORTED", "{url}: {v}");
    let message = v["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("this node is a hold"), "{url}: {v}");
}

fn cli_ok(srv: &Server, args: &[&str]) -> String {
    let out = srv.cli(args, "");
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_hold_alone_serves_the_hold_and_its_pds_and_no_registry() {
    let srv = Server::start_serving(
        &["--role", "hold"],
        &[("ATCR_GC_GRACE_SECS", "0"), ("ATCR_GC_INTERVAL_SECS", "0")],
    );
    assert!(srv.log_tail().contains("role=hold"), "{}", srv.log_tail());
    atcr::tls::install_crypto_provider();
    let client = reqwest::Client::new();
    let base = srv.base_url();
    let xrpc = Xrpc {
        client: &client,
        base: &base,
    };

    // The registry's surface answers that this is a hold.
    for path in [
        "/v2/",
        "/v2/admin/app/manifests/latest",
        "/auth/token?service=x&scope=repository:admin/app:pull",
    ] {
        assert_hold_only(&client, &format!("{base}{path}")).await;
    }
    let (status, page) = get(&client, &format!("{base}/")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!page.contains("<html"), "{page}");
    assert!(page.contains("atcr hold"), "{page}");
    assert_eq!(
        get(&client, &format!("{base}/readyz")).await.0,
        StatusCode::OK
    );

    // Its PDS: the node's identity, the same in describeServer and its DID document.
    let (s, described) = xrpc.get("com.atproto.server.describeServer", None).await;
    assert_eq!(s, StatusCode::OK, "{described}");
    let hold_did = described["did"].as_str().unwrap().to_owned();
    let port = srv.host_port().rsplit(':').next().unwrap().to_owned();
    assert_eq!(hold_did, format!("did:web:localhost%3A{port}"));
    let (status, doc) = get(&client, &format!("{base}/.well-known/did.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_str::<Value>(&doc).unwrap()["id"], hold_did);

    // requestCrew, once registration is open: the operator's CLI works through the daemon.
    srv.add_user("carol", "carol-password");
    cli_ok(&srv, &["crew", "remove", "carol"]);
    cli_ok(&srv, &["hold", "set", "--allow-all-crew", "true"]);
    let carol = xrpc.login("carol", "carol-password").await;
    let (s, v) = xrpc
        .post(
            REQUEST_CREW,
            carol["accessJwt"].as_str(),
            json!({"permissions": ["blob:read"]}),
        )
        .await;
    assert_eq!(
        (s, &v["status"]),
        (StatusCode::OK, &json!("created")),
        "{v}"
    );

    // A crew member (`user add` makes one) uploads with service tokens of the hold's PDS.
    srv.add_user("alice", "alice-password");
    let alice = xrpc.login("alice", "alice-password").await;
    let uploads = HoldUpload {
        xrpc,
        access: alice["accessJwt"].as_str().unwrap(),
        hold_did: hold_did.clone(),
        endpoint: format!("http://localhost:{port}"),
    };
    let (head, tail) = (vec![3u8; 200_000], b"the hold's own".to_vec());
    let whole = [head.clone(), tail.clone()].concat();
    let digest = common::sha256(&whole);
    let (id, parts) = uploads.send(&digest, &[&head, &tail]).await;
    let (s, v) = uploads.complete(&id, &digest, parts).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"status": "completed", "digest": digest}));

    let read_back = async || {
        let r = xrpc.get_blob(&hold_did, &digest, None).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.bytes().await.unwrap().as_ref() == whole.as_slice());
    };
    read_back().await;
    let hex = digest.trim_start_matches("sha256:");
    let object = srv
        .data_dir()
        .join(format!("blobs/blobs/sha256/{}/{hex}", &hex[..2]));
    assert!(object.exists(), "{}", object.display());
    // No manifest's layer record names it (nobody sent `notifyManifest`): past the grace (0), a
    // collection releases it from the hold's blob table and takes the object up as unused ...
    let report = cli_ok(&srv, &["gc"]);
    assert!(
        report.starts_with("deleted 0 of")
            && report.contains("took up 1 stored objects")
            && report.contains("released 1 blobs (200014 bytes)"),
        "{report}"
    );
    read_back().await;
    // ... and the next one deletes it.
    let report = cli_ok(&srv, &["gc"]);
    assert!(report.starts_with("deleted 1 of"), "{report}");
    assert!(!object.exists(), "{}", object.display());
    let r = xrpc.get_blob(&hold_did, &digest, None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[test]
fn the_role_is_configuration_shown_and_checked() {
    let (ok, shown, err) = atcr(&["config", "show"], &[("ATCR_NODE_ROLE", "hold")]);
    assert!(ok, "{err}");
    let line = shown.lines().find(|l| l.starts_with("role = ")).unwrap();
    assert!(
        line.contains("\"hold\"") && line.contains("environment ATCR_NODE_ROLE"),
        "{shown}"
    );
    let (ok, shown, _) = atcr(&["config", "show"], &[]);
    assert!(ok && shown.contains("role = \"full\""), "{shown}");

    let (ok, _, err) = atcr(&["check-config"], &[("ATCR_NODE_ROLE", "registry")]);
    assert!(!ok);
    assert!(
        err.contains("ATCR_NODE_ROLE") && err.contains("`full`") && err.contains("`hold`"),
        "{err}"
    );
    let (ok, _, err) = atcr(&["serve", "--role", "registry"], &[]);
    assert!(!ok);
    assert!(err.contains("--role") && err.contains("hold"), "{err}");
}
