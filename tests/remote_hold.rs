//! A hold on another machine (ATCR's "bring your own storage"), as two real processes: a full
//! node, and a hold alone (`role = "hold"`) that keeps the blobs on a real S3 server (s3s-fs, see
//! `tests/s3/`) with presigned redirects. Users push and pull with skopeo through the full node
//! only; the blobs land on the hold, the manifest records name it, the hold vouches for them in
//! layer records and counts them in the user's quota, its crew rules refuse a user it does not
//! know, and a hold that goes down gives a clear error and recovers.

mod common;
mod s3;

use common::clients::{Clients, curl, curl_anonymous, required};
use common::images::{self, fresh_seed, random_layer};
use common::two_nodes::{TwoNodes, choose_hold, did_of, login, xrpc};
use common::{Server, sha256};
use s3::S3Server;
use serde_json::{Value, json};

const LAYER_BYTES: usize = 1 << 20;

/// The layer records in the hold's repository.
fn hold_layers(hold: &Server, hold_did: &str) -> Vec<Value> {
    let (s, v) = xrpc(
        hold,
        "GET",
        &format!(
            "com.atproto.repo.listRecords?repo={}&collection=io.atcr.hold.layer",
            hold_did.replace('%', "%25")
        ),
        None,
        None,
    );
    assert_eq!(s, 200, "{v}");
    v["records"].as_array().unwrap().clone()
}

/// Waits until the web search for `q` lists repository `name`.
fn search_until(srv: &Server, q: &str, name: &str) {
    let url = format!("{}/search?q={}", srv.base_url(), q.replace(':', "%3A"));
    for _ in 0..100 {
        let r = curl_anonymous("GET", &url, &[], None);
        assert_eq!(r.status, 200, "{}", r.text());
        if r.text().contains(&format!(r#"href="/r/{name}""#)) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{q:?} never found {name}");
}

/// Whether the node's own storage (fs, in its data directory) has an object for `digest`.
fn stored_locally(srv: &Server, digest: &str) -> bool {
    let hex = digest.strip_prefix("sha256:").unwrap();
    srv.data_dir()
        .join(format!("blobs/blobs/sha256/{}/{hex}", &hex[..2]))
        .exists()
}

#[test]
fn blobs_go_to_the_hold_on_another_machine_and_come_back() {
    if !required(&["skopeo", "curl"]) {
        return;
    }
    let s3 = S3Server::start();
    let secrets = common::temp_dir("atcr-s3-secrets-");
    let nodes = TwoNodes::start(&s3.env(secrets.path(), "hold", true));
    let TwoNodes {
        full,
        mut hold,
        hold_did,
        alice,
        alice_token,
    } = nodes;
    // carol is an account of the full node too, but not in the hold's crew.
    full.add_user("carol", "carol-password");
    let carol = did_of(&full, "carol");

    // `hold add` checks the server answers as that DID.
    let out = full.cli(
        &[
            "hold",
            "add",
            "did:web:elsewhere.example",
            "--endpoint",
            &full.base_url(),
        ],
        "",
    );
    assert!(
        !out.status.success(),
        "another server's DID is refused: {out:?}"
    );
    let listed = String::from_utf8_lossy(&full.cli(&["hold", "list"], "").stdout).into_owned();
    assert!(
        listed.contains(&hold_did) && !listed.contains("elsewhere"),
        "{listed}"
    );

    // alice pushes through the full node.
    let c = Clients::new();
    let seed = fresh_seed();
    let local = images::single_image(
        &c.path("src"),
        "v1",
        &[
            random_layer(seed, LAYER_BYTES),
            random_layer(seed + 1, LAYER_BYTES),
        ],
    );
    let image = format!("docker://{}/alice/app:v1", full.host_port());
    let alice_creds = ["--dest-creds", "alice:alice-password"];
    full.must(&mut c.skopeo_copy(&local.reference(), &image, &alice_creds));

    // The layers are the hold's (in its bucket), not the full node's.
    for layer in &local.layers {
        assert!(
            !stored_locally(&full, &layer.digest),
            "{} stayed on the full node",
            layer.digest
        );
        let hex = layer.digest.strip_prefix("sha256:").unwrap();
        let key = format!("hold/blobs/sha256/{}/{hex}", &hex[..2]);
        assert!(
            s3.keys().contains(&key),
            "{key} is not in the hold's bucket: {:?}",
            s3.keys()
        );
    }
    // The manifest record names the hold.
    let (s, records) = xrpc(
        &full,
        "GET",
        &format!("com.atproto.repo.listRecords?repo={alice}&collection=io.atcr.manifest"),
        None,
        None,
    );
    assert_eq!(s, 200, "{records}");
    assert_eq!(
        records["records"][0]["value"]["holdDid"], hold_did,
        "{records}"
    );
    // The full node notified the hold, which vouches for each blob (config too) in alice's
    // manifest record, and counts them in her quota; a second push adds no record.
    let manifest_uri = records["records"][0]["uri"].as_str().unwrap().to_owned();
    let vouched = hold_layers(&hold, &hold_did);
    let config = local.config.as_ref().unwrap();
    let blobs: Vec<_> = local.layers.iter().chain([config]).collect();
    assert_eq!(vouched.len(), blobs.len(), "{vouched:?}");
    for blob in &blobs {
        let record = vouched
            .iter()
            .map(|r| &r["value"])
            .find(|v| v["digest"] == blob.digest.as_str())
            .unwrap_or_else(|| panic!("no layer record for {}: {vouched:?}", blob.digest));
        assert_eq!(record["manifest"], manifest_uri.as_str());
        assert_eq!(
            (&record["userDid"], &record["size"]),
            (&json!(alice), &json!(blob.size))
        );
    }
    let (s, quota) = xrpc(
        &hold,
        "GET",
        &format!("io.atcr.hold.getQuota?userDid={alice}"),
        None,
        None,
    );
    assert_eq!(s, 200, "{quota}");
    let total: u64 = blobs.iter().map(|b| b.size).sum();
    assert_eq!(
        (&quota["uniqueBlobs"], &quota["totalSize"]),
        (&json!(blobs.len()), &json!(total)),
        "{quota}"
    );
    full.must(&mut c.skopeo_copy(&local.reference(), &image, &alice_creds));
    assert_eq!(hold_layers(&hold, &hold_did).len(), blobs.len());
    // The config (small) is kept on the full node too: the index summarizes it, so a search by
    // platform finds the image.
    search_until(&full, "platform:amd64", "alice/app");
    assert!(
        stored_locally(&full, &config.digest),
        "no local config copy"
    );

    // A pull through the full node: the bytes come from the object store (a redirect the
    // hold gave, passed on), every layer checked.
    let back = c.path("back");
    let pull_creds = ["--src-creds", "alice:alice-password"];
    full.must(&mut c.skopeo_copy(
        &image,
        &format!("oci:{}:pulled", back.display()),
        &pull_creds,
    ));
    for layer in &local.layers {
        let bytes = std::fs::read(images::blob_path(&back, &layer.digest)).unwrap();
        assert_eq!(sha256(&bytes), layer.digest);
    }
    let metrics = curl("GET", &format!("{}/metrics", full.base_url()), &[], None).text();
    assert!(
        metrics.contains("atcr_http_requests_total{endpoint=\"blob_get\",status=\"307\""),
        "the pull was not redirected:\n{metrics}"
    );

    // carol chose the hold too, but its crew does not include her: the hold itself refuses.
    let carol_token = login(&full, "carol", "carol-password");
    choose_hold(&full, &carol, &carol_token, &hold_did);
    let other = images::single_image(&c.path("carol"), "v1", &[random_layer(seed + 7, 4096)]);
    let refused = full.must_fail(&mut c.skopeo_copy(
        &other.reference(),
        &format!("docker://{}/carol/app:v1", full.host_port()),
        &["--dest-creds", "carol:carol-password"],
    ));
    assert!(
        refused.contains("denied") && refused.contains(&hold_did),
        "{refused}"
    );

    // A service token for another audience, or another method, is refused by the hold.
    let (s, v) = xrpc(
        &full,
        "GET",
        &format!(
            "com.atproto.server.getServiceAuth?aud={}&lxm=io.atcr.hold.initiateUpload",
            "did:web:elsewhere.example"
        ),
        Some(&alice_token),
        None,
    );
    assert_eq!(s, 200, "{v}");
    let digest = json!({ "digest": local.layers[0].digest });
    let (s, v) = xrpc(
        &hold,
        "POST",
        "io.atcr.hold.initiateUpload",
        v["token"].as_str(),
        Some(&digest),
    );
    assert_eq!(
        (s, v["error"].as_str()),
        (401, Some("BadJwtAudience")),
        "{v}"
    );
    let (_, v) = xrpc(
        &full,
        "GET",
        &format!(
            "com.atproto.server.getServiceAuth?aud={}&lxm=io.atcr.hold.abortUpload",
            hold_did.replace('%', "%25")
        ),
        Some(&alice_token),
        None,
    );
    let (s, v) = xrpc(
        &hold,
        "POST",
        "io.atcr.hold.initiateUpload",
        v["token"].as_str(),
        Some(&digest),
    );
    assert_eq!(
        (s, v["error"].as_str()),
        (401, Some("BadJwtLexiconMethod")),
        "{v}"
    );

    // The hold goes down: a read answers at once with a clear error, then works again once the
    // hold is back.
    hold.kill9();
    let blob = format!(
        "{}/v2/alice/app/blobs/{}",
        full.base_url(),
        local.layers[0].digest
    );
    let token = common::clients::token(
        &full.host_port(),
        "alice",
        "alice-password",
        &["repository:alice/app:pull".to_owned()],
    )
    .unwrap();
    let bearer = format!("Bearer {token}");
    let down = curl_anonymous("GET", &blob, &[("Authorization", &bearer)], None);
    assert_eq!(down.status, 503, "{}", down.text());
    assert!(
        down.text().contains("UNAVAILABLE") && down.text().contains("unreachable"),
        "{}",
        down.text()
    );
    hold.restart_same_port();
    let up = curl_anonymous("GET", &blob, &[("Authorization", &bearer)], None);
    assert_eq!(up.status, 307, "{}", up.text());
}
