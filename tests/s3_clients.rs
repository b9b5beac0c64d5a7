//! Black-box tests of the `s3` backend: the built binary on a real S3 server (s3s-fs, see
//! `tests/s3/`), skopeo pushing and pulling through it with and without presigned redirects
//! (and podman pulling through the redirects),
//! and `atcr storage migrate` moving a node's blobs from its disk into the bucket.

mod common;
mod s3;

use common::clients::{Clients, curl, metric, required};
use common::images::{self, fresh_seed, random_layer};
use common::{Server, sha256};
use s3::S3Server;

/// Layers big enough that the node's share of a pull is plain to see next to them.
const LAYER_BYTES: usize = 3 << 20;

const BLOB_GET_200: &str = "atcr_http_requests_total{endpoint=\"blob_get\",status=\"200\"";
const BLOB_GET_307: &str = "atcr_http_requests_total{endpoint=\"blob_get\",status=\"307\"";

fn start_on(env: &[(String, String)]) -> Server {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Server::start_with(&env)
}

/// Pushes a fresh two-layer image with skopeo, pulls it back into a new layout, and checks
/// every byte; returns the layers' total size and the bytes the node sent during the pull.
fn round_trip(srv: &Server, c: &Clients, repo: &str) -> (u64, u64) {
    let seed = fresh_seed();
    let local = images::single_image(
        &c.path("src"),
        "v1",
        &[
            random_layer(seed, LAYER_BYTES),
            random_layer(seed + 1, LAYER_BYTES),
        ],
    );
    let remote = format!("docker://{}/admin/{repo}:v1", srv.host_port());
    srv.must(&mut c.skopeo_copy(&local.reference(), &remote, &[]));
    let sent_before = metric(srv, "atcr_http_response_bytes_total");
    let back = c.path("back");
    srv.must(&mut c.skopeo_copy(&remote, &format!("oci:{}:pulled", back.display()), &[]));
    let sent = metric(srv, "atcr_http_response_bytes_total") - sent_before;
    let (desc, _) = images::read_tag(&back, "pulled");
    assert_eq!(desc.digest, local.manifest.digest);
    let mut total = 0;
    for layer in &local.layers {
        let bytes = std::fs::read(images::blob_path(&back, &layer.digest)).unwrap();
        assert_eq!(sha256(&bytes), layer.digest, "pulled layer differs");
        total += layer.size;
    }
    (total, sent)
}

#[test]
fn skopeo_through_an_s3_backed_node_with_and_without_redirects() {
    if !required(&["skopeo", "curl"]) {
        return;
    }
    let s3 = S3Server::start();
    let secrets = tempfile::tempdir().unwrap();

    // Streaming through the node: the layers are answered 200 by the node itself. (Streamed
    // bodies are not in `atcr_http_response_bytes_total`, which counts sized bodies only, so
    // the blob GETs are counted by status.)
    // Credentials from the usual AWS_* environment here, from secret files below.
    let mut env: Vec<(String, String)> = s3
        .env(secrets.path(), "plain", false)
        .into_iter()
        .filter(|(k, _)| !k.ends_with("_FILE"))
        .collect();
    env.push(("AWS_ACCESS_KEY_ID".into(), s3::ACCESS_KEY.into()));
    env.push(("AWS_SECRET_ACCESS_KEY".into(), s3::SECRET_KEY.into()));
    let srv = start_on(&env);
    let c = Clients::new();
    round_trip(&srv, &c, "plain");
    assert!(metric(&srv, BLOB_GET_200) >= 2);
    assert_eq!(metric(&srv, BLOB_GET_307), 0);
    assert!(
        s3.keys()
            .iter()
            .any(|k| k.starts_with("plain/blobs/sha256/")),
        "no blob in the bucket: {:?}",
        s3.keys()
    );
    drop(srv);

    // Redirected: the layers come from s3s-fs; the node sends only manifests and redirects.
    let srv = start_on(&s3.env(secrets.path(), "redirected", true));
    let c = Clients::new();
    let (layers, sent) = round_trip(&srv, &c, "redirected");
    assert!(
        sent < layers / 100,
        "the node sent {sent} bytes for {layers} bytes of layers: not redirected"
    );
    assert!(
        metric(
            &srv,
            "atcr_http_requests_total{endpoint=\"blob_get\",status=\"307\""
        ) >= 2,
        "{}",
        curl("GET", &format!("{}/metrics", srv.base_url()), &[], None).text()
    );

    // podman follows the redirects too: a pull of the same image gets its layers from the
    // bucket, and podman checks every layer against the config's diff IDs.
    if !common::clients::on_path("podman") {
        return;
    }
    let redirects = metric(&srv, BLOB_GET_307);
    let remote = format!("{}/admin/redirected:v1", srv.host_port());
    let id = srv.must(
        c.podman()
            .args(["pull", "-q", "--tls-verify=false", &remote]),
    );
    let inspected =
        srv.must(
            c.podman()
                .args(["image", "inspect", "--format", "{{.Digest}}", &remote]),
        );
    assert!(inspected.trim().starts_with("sha256:"), "{inspected}");
    assert!(!id.trim().is_empty());
    assert!(
        metric(&srv, BLOB_GET_307) >= redirects + 2,
        "podman's layer GETs were not redirected"
    );
}

#[test]
fn storage_migrate_moves_a_node_from_disk_to_s3() {
    if !required(&["skopeo", "curl"]) {
        return;
    }
    let s3 = S3Server::start();
    let secrets = tempfile::tempdir().unwrap();
    let target = secrets.path().join("s3.toml");
    std::fs::write(&target, s3.storage_toml(secrets.path(), "moved", false)).unwrap();

    let mut srv = Server::start();
    let c = Clients::new();
    let seed = fresh_seed();
    let local = images::single_image(
        &c.path("src"),
        "v1",
        &[random_layer(seed, 1 << 20), random_layer(seed + 1, 200_000)],
    );
    let remote = format!("docker://{}/admin/moving:v1", srv.host_port());
    srv.must(&mut c.skopeo_copy(&local.reference(), &remote, &[]));

    let to = target.to_str().unwrap();
    let out = srv.cli(&["storage", "migrate", "--to-config", to], "");
    assert!(!out.status.success(), "migrated under a running daemon");
    assert!(String::from_utf8_lossy(&out.stderr).contains("stop `atcr serve` first"));

    assert!(srv.stop());
    let out = srv.cli(&["storage", "migrate", "--to-config", to], "");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    // Two layers, the config and the manifest (the PDS's own blobs, if any, come along).
    assert!(text.contains("[1/") && text.contains("copied"), "{text}");
    assert!(text.contains(" 0 already present, 0 damaged"), "{text}");
    for layer in &local.layers {
        let hex = layer.digest.strip_prefix("sha256:").unwrap();
        let key = format!("moved/blobs/sha256/{}/{hex}", &hex[..2]);
        assert!(s3.keys().contains(&key), "{key} not in {:?}", s3.keys());
    }
    // Resumable: a second run copies nothing.
    let out = srv.cli(&["storage", "migrate", "--to-config", to], "");
    let again = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && again.contains("0 copied (0 B)"),
        "{again}"
    );

    // The node on S3 (its old blob directory moved away) serves the same pull.
    std::fs::rename(
        srv.data_dir().join("blobs"),
        srv.data_dir().join("blobs.old"),
    )
    .unwrap();
    let env = s3.env(secrets.path(), "moved", false);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    srv.set_env(&env);
    srv.restart_same_port();
    let back = c.path("back");
    srv.must(&mut c.skopeo_copy(&remote, &format!("oci:{}:pulled", back.display()), &[]));
    for layer in &local.layers {
        let bytes = std::fs::read(images::blob_path(&back, &layer.digest)).unwrap();
        assert_eq!(sha256(&bytes), layer.digest);
    }
}
