//! Black-box tests: the built binary against real clients (skopeo, podman, buildah, curl).
//!
//! Every test starts its own server on `127.0.0.1:0` with a fresh data directory and its own
//! client configuration (see `common::clients`). They need Debian's `skopeo podman buildah
//! busybox-static curl`; a missing tool fails the test unless `ATCR_SKIP_CLIENT_TESTS=1`. With
//! `runc` installed the podman test also runs the pulled image.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::clients::{Clients, curl, head_digest, inspect, inspect_raw, metric, required, token};
use common::images::{self, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, fresh_seed, random_layer};
use common::{Server, sha256};
use serde_json::Value;

const SKOPEO: &[&str] = &["skopeo", "curl", images::BUSYBOX];

fn blob_status(srv: &Server, repo: &str, digest: &str) -> u16 {
    curl(
        "HEAD",
        &format!("{}/v2/{repo}/blobs/{digest}", srv.base_url()),
        &[],
        None,
    )
    .status
}

#[test]
fn skopeo_round_trips_a_single_arch_image() {
    if !required(SKOPEO) {
        return;
    }
    let srv = Server::start();
    let c = Clients::new();
    let local = images::busybox_image(&c.path("src"));
    let remote = format!("docker://{}/admin/busybox:1", srv.host_port());
    srv.must(&mut c.skopeo_copy(&local.reference(), &remote, &[]));

    let raw = inspect_raw(&srv, &c, &remote);
    assert_eq!(
        sha256(&raw),
        local.manifest.digest,
        "pushed manifest bytes changed"
    );
    let info = inspect(&srv, &c, &remote, &[]);
    assert_eq!(info["Digest"], local.manifest.digest.as_str());
    assert_eq!(info["Architecture"], "amd64");
    assert_eq!(
        head_digest(&srv, "admin/busybox", "1"),
        local.manifest.digest
    );
    for layer in &local.layers {
        assert_eq!(blob_status(&srv, "admin/busybox", &layer.digest), 200);
    }

    let back = c.path("back");
    srv.must(&mut c.skopeo_copy(&remote, &format!("oci:{}:pulled", back.display()), &[]));
    let (desc, manifest) = images::read_tag(&back, "pulled");
    assert_eq!(desc.digest, local.manifest.digest);
    assert_eq!(sha256(&manifest), local.manifest.digest);
    let layers = images::manifest_layers(&manifest);
    assert_eq!(
        layers,
        local
            .layers
            .iter()
            .map(|l| l.digest.clone())
            .collect::<Vec<_>>()
    );
    for digest in &layers {
        let pulled = std::fs::read(images::blob_path(&back, digest)).unwrap();
        let pushed = std::fs::read(images::blob_path(&local.layout, digest)).unwrap();
        assert!(
            pulled == pushed,
            "layer {digest} differs after the round trip"
        );
    }
}

#[test]
fn skopeo_copies_a_multi_arch_index_and_pulls_it_back_by_digest() {
    if !required(SKOPEO) {
        return;
    }
    let srv = Server::start();
    let c = Clients::new();
    let local = images::multi_arch_image(&c.path("src"), fresh_seed());
    let repo = format!("{}/admin/multi", srv.host_port());
    srv.must(&mut c.skopeo_copy(
        &local.reference(),
        &format!("docker://{repo}:latest"),
        &["--all"],
    ));

    let raw = inspect_raw(&srv, &c, &format!("docker://{repo}:latest"));
    assert_eq!(
        sha256(&raw),
        local.manifest.digest,
        "pushed index bytes changed"
    );
    let index: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(index["mediaType"], OCI_INDEX);
    assert_eq!(
        head_digest(&srv, "admin/multi", "latest"),
        local.manifest.digest
    );

    // Every platform's manifest is there, byte for byte, and resolvable per platform.
    for (arch, tag) in [("amd64", "amd64"), ("arm64", "arm64")] {
        let (child, child_bytes) = images::read_tag(&local.layout, tag);
        let by_digest = format!("docker://{repo}@{}", child.digest);
        assert_eq!(inspect_raw(&srv, &c, &by_digest), child_bytes);
        let info = inspect(
            &srv,
            &c,
            &format!("docker://{repo}:latest"),
            &["--override-arch", arch, "--override-os", "linux"],
        );
        // `Digest` is the digest of what the tag names (the index); the rest is the platform's.
        assert_eq!(info["Digest"], local.manifest.digest.as_str(), "{arch}");
        assert_eq!(info["Architecture"], arch);
        assert_eq!(
            info["Layers"],
            serde_json::json!(images::manifest_layers(&child_bytes))
        );
    }

    // Pull the whole index back by digest.
    let back = c.path("back");
    srv.must(&mut c.skopeo_copy(
        &format!("docker://{repo}@{}", local.manifest.digest),
        &format!("oci:{}:pulled", back.display()),
        &["--all"],
    ));
    let (desc, bytes) = images::read_tag(&back, "pulled");
    assert_eq!(desc.digest, local.manifest.digest);
    assert_eq!(bytes, raw);
    for tag in ["amd64", "arm64"] {
        let (child, _) = images::read_tag(&local.layout, tag);
        let pulled = std::fs::read(images::blob_path(&back, &child.digest)).unwrap();
        let pushed = std::fs::read(images::blob_path(&local.layout, &child.digest)).unwrap();
        assert_eq!(pulled, pushed, "{tag} manifest");
        for layer in images::manifest_layers(&pushed) {
            let pulled = std::fs::read(images::blob_path(&back, &layer)).unwrap();
            let pushed = std::fs::read(images::blob_path(&local.layout, &layer)).unwrap();
            assert!(pulled == pushed, "{tag} layer {layer} differs");
        }
    }
}

#[test]
fn skopeo_converts_to_docker_schema2_and_the_digest_round_trips() {
    if !required(SKOPEO) {
        return;
    }
    let srv = Server::start();
    let c = Clients::new();
    let local = images::single_image(
        &c.path("src"),
        "latest",
        &[images::busybox_layer(), random_layer(fresh_seed(), 4096)],
    );
    let remote = format!("docker://{}/admin/v2s2:1", srv.host_port());
    let digest_file = c.path("digest");
    srv.must(&mut c.skopeo_copy(
        &local.reference(),
        &remote,
        &[
            "--format",
            "v2s2",
            "--digestfile",
            digest_file.to_str().unwrap(),
        ],
    ));
    let pushed = std::fs::read_to_string(&digest_file).unwrap();

    let raw = inspect_raw(&srv, &c, &remote);
    let manifest: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(manifest["mediaType"], DOCKER_MANIFEST);
    assert_eq!(sha256(&raw), pushed.trim());
    assert_ne!(
        pushed.trim(),
        local.manifest.digest,
        "the manifest was converted"
    );
    assert_eq!(inspect(&srv, &c, &remote, &[])["Digest"], pushed.trim());

    // A Docker client's GET: the stored media type and digest come back.
    let r = curl(
        "GET",
        &format!("{}/v2/admin/v2s2/manifests/1", srv.base_url()),
        &[("Accept", DOCKER_MANIFEST)],
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some(DOCKER_MANIFEST));
    assert_eq!(r.header("docker-content-digest"), Some(pushed.trim()));
    assert_eq!(r.body, raw);

    // Pulled back into a `dir:` (which keeps any manifest type as is), nothing changes.
    let back = c.path("back");
    srv.must(&mut c.skopeo_copy(&remote, &format!("dir:{}", back.display()), &[]));
    let pulled = std::fs::read(back.join("manifest.json")).unwrap();
    assert_eq!(sha256(&pulled), pushed.trim());
    // Layers are passed through unchanged by the conversion (already gzip).
    let layers = images::manifest_layers(&pulled);
    for (pulled, local) in layers.iter().zip(&local.layers) {
        assert_eq!(pulled, &local.digest);
        let bytes = std::fs::read(back.join(pulled.trim_start_matches("sha256:"))).unwrap();
        assert_eq!(sha256(&bytes), local.digest);
    }
}

/// `atcr_blob_bytes_received_total` from `/metrics`.
fn bytes_received(srv: &Server) -> u64 {
    metric(srv, "atcr_blob_bytes_received_total ")
}

#[test]
fn a_second_push_of_the_same_image_mounts_its_blobs_across_repositories() {
    if !required(SKOPEO) {
        return;
    }
    let srv = Server::start();
    let c = Clients::new();
    // Fresh content: only this server can know it, so the first push uploads everything.
    let local = images::single_image(
        &c.path("src"),
        "latest",
        &[random_layer(fresh_seed(), 256 * 1024)],
    );
    let config = local.config.clone().unwrap();
    let host = srv.host_port();
    srv.must(&mut c.skopeo_copy(
        &local.reference(),
        &format!("docker://{host}/admin/mount-a:1"),
        &[],
    ));
    let uploaded = bytes_received(&srv);
    assert_eq!(
        uploaded,
        local.layers[0].size + config.size,
        "first push uploads every blob"
    );
    for digest in [&local.layers[0].digest, &config.digest] {
        assert_eq!(blob_status(&srv, "admin/mount-b", digest), 404);
    }

    // skopeo's blob-info cache remembers where it put the blobs and mounts them from there.
    srv.must(&mut c.skopeo_copy(
        &local.reference(),
        &format!("docker://{host}/admin/mount-b:1"),
        &[],
    ));
    for digest in [&local.layers[0].digest, &config.digest] {
        assert_eq!(
            blob_status(&srv, "admin/mount-b", digest),
            200,
            "{digest} in mount-b"
        );
    }
    // The layer is mounted; skopeo uploads a config again unless it is in the same repository
    // (containers/image checks configs only there).
    let again = bytes_received(&srv) - uploaded;
    assert!(
        again <= config.size,
        "the second push uploaded {again} blob bytes: the layer was not mounted"
    );
    assert_eq!(
        head_digest(&srv, "admin/mount-b", "1"),
        local.manifest.digest
    );

    // The same by hand: a mount of a known blob is 201, of an unknown one a new upload (202).
    let layer = &local.layers[0].digest;
    let mount = |repo: &str, digest: &str| {
        curl(
            "POST",
            &format!(
                "{}/v2/{repo}/blobs/uploads/?mount={digest}&from=admin/mount-a",
                srv.base_url()
            ),
            &[],
            Some(b""),
        )
    };
    let r = mount("admin/mount-c", layer);
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/admin/mount-c/blobs/{layer}").as_str())
    );
    assert_eq!(blob_status(&srv, "admin/mount-c", layer), 200);
    let unknown = sha256(b"never uploaded");
    let r = mount("admin/mount-c", &unknown);
    assert_eq!(r.status, 202, "{r:?}");
    assert!(
        r.header("location")
            .is_some_and(|l| l.contains("/blobs/uploads/"))
    );
    assert_eq!(blob_status(&srv, "admin/mount-c", &unknown), 404);
}

#[test]
fn skopeo_lists_tags_and_deletes_manifests() {
    if !required(SKOPEO) {
        return;
    }
    let srv = Server::start();
    let c = Clients::new();
    let seed = fresh_seed();
    let first = images::single_image(&c.path("one"), "latest", &[random_layer(seed, 1024)]);
    let second = images::single_image(&c.path("two"), "latest", &[random_layer(seed ^ 1, 1024)]);
    let repo = format!("{}/admin/tags", srv.host_port());
    let tags = ["a", "b", "c", "d", "e"];
    for tag in &tags[..4] {
        srv.must(&mut c.skopeo_copy(&first.reference(), &format!("docker://{repo}:{tag}"), &[]));
    }
    srv.must(&mut c.skopeo_copy(&second.reference(), &format!("docker://{repo}:e"), &[]));

    let list = |srv: &Server| -> BTreeSet<String> {
        let mut cmd = c.skopeo();
        cmd.args([
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{repo}"),
        ]);
        let v: Value = serde_json::from_str(&srv.must(&mut cmd)).unwrap();
        v["Tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(list(&srv), tags.iter().map(|t| (*t).to_owned()).collect());

    // Pagination, as clients follow it: `n`, then the `Link` header.
    let mut listed = Vec::new();
    let mut next = Some("/v2/admin/tags/tags/list?n=2".to_owned());
    while let Some(path) = next.take() {
        let r = curl("GET", &format!("{}{path}", srv.base_url()), &[], None);
        assert_eq!(r.status, 200, "{r:?}");
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        let page = v["tags"].as_array().unwrap();
        assert!(page.len() <= 2, "{v}");
        listed.extend(page.iter().map(|t| t.as_str().unwrap().to_owned()));
        next = r.header("link").map(|l| {
            l.trim_start_matches('<')
                .split('>')
                .next()
                .unwrap()
                .to_owned()
        });
    }
    assert_eq!(listed, tags);

    // Deleting `e` (its own manifest) removes it alone.
    let mut cmd = c.skopeo();
    cmd.args([
        "delete",
        "--tls-verify=false",
        &format!("docker://{repo}:e"),
    ]);
    srv.must(&mut cmd);
    let mut cmd = c.skopeo();
    cmd.args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{repo}:e"),
    ]);
    let err = srv.must_fail(&mut cmd);
    assert!(err.contains("manifest unknown"), "{err}");
    let r = curl(
        "GET",
        &format!(
            "{}/v2/admin/tags/manifests/{}",
            srv.base_url(),
            second.manifest.digest
        ),
        &[("Accept", OCI_MANIFEST)],
        None,
    );
    assert_eq!(r.status, 404, "{r:?}");
    assert!(r.text().contains("MANIFEST_UNKNOWN"), "{}", r.text());
    assert_eq!(
        list(&srv),
        tags[..4].iter().map(|t| (*t).to_owned()).collect()
    );

    // skopeo deletes by digest: every tag on that manifest goes with it.
    let mut cmd = c.skopeo();
    cmd.args([
        "delete",
        "--tls-verify=false",
        &format!("docker://{repo}:b"),
    ]);
    srv.must(&mut cmd);
    for tag in &tags[..4] {
        let mut cmd = c.skopeo();
        cmd.args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{repo}:{tag}"),
        ]);
        srv.must_fail(&mut cmd);
    }
    assert!(list(&srv).is_empty());
}

#[test]
fn a_large_layer_round_trips_byte_for_byte() {
    const SIZE: usize = 64 << 20;
    if !required(SKOPEO) {
        return;
    }
    let srv = Server::start();
    let c = Clients::new();
    let local = images::single_image(
        &c.path("src"),
        "latest",
        &[random_layer(fresh_seed(), SIZE)],
    );
    let remote = format!("docker://{}/admin/large:1", srv.host_port());
    srv.must(&mut c.skopeo_copy(&local.reference(), &remote, &[]));
    assert_eq!(
        bytes_received(&srv),
        local.layers[0].size + local.config.as_ref().unwrap().size
    );

    let back = c.path("back");
    let before = metric(&srv, "atcr_blob_bytes_sendfile_total ");
    srv.must(&mut c.skopeo_copy(&remote, &format!("oci:{}:pulled", back.display()), &[]));
    let (desc, _) = images::read_tag(&back, "pulled");
    assert_eq!(desc.digest, local.manifest.digest);
    // Plain HTTP/1 from the filesystem store: the layer went out with sendfile.
    let sent = metric(&srv, "atcr_blob_bytes_sendfile_total ") - before;
    assert!(sent >= local.layers[0].size, "sent with sendfile: {sent}");
    let digest = &local.layers[0].digest;
    let pulled = std::fs::read(images::blob_path(&back, digest)).unwrap();
    let pushed = std::fs::read(images::blob_path(&local.layout, digest)).unwrap();
    assert!(pushed.len() > SIZE, "the layer is incompressible");
    assert!(
        pulled == pushed,
        "the large layer differs after the round trip"
    );

    // HTTP/2 without TLS (h2c) streams the bytes instead: the same bytes.
    let token = token(
        &srv.host_port(),
        "admin",
        srv.password(),
        &["repository:admin/large:pull".to_owned()],
    )
    .unwrap();
    let h2 = c.path("h2");
    let out = srv.must(
        Command::new("curl")
            .args(["-sSf", "--http2-prior-knowledge", "-w", "%{http_version}"])
            .args(["-H", &format!("Authorization: Bearer {token}"), "-o"])
            .arg(&h2)
            .arg(format!("{}/v2/admin/large/blobs/{digest}", srv.base_url())),
    );
    assert_eq!(out.trim(), "2", "over HTTP/2");
    assert!(std::fs::read(&h2).unwrap() == pushed, "the layer over h2c");

    // A ranged read from the middle of it.
    let r = curl(
        "GET",
        &format!("{}/v2/admin/large/blobs/{digest}", srv.base_url()),
        &[("Range", "bytes=33554432-33619967")],
        None,
    );
    assert_eq!(r.status, 206, "{:?}", r.headers);
    assert!(r.body == pushed[33_554_432..33_619_968]);
}
