//! Black-box tests: the built binary against real clients (skopeo, podman, buildah, curl).
//!
//! Every test starts its own server on `127.0.0.1:0` with a fresh data directory and its own
//! client configuration (see `common::clients`). They need Debian's `skopeo podman buildah
//! busybox-static curl`; a missing tool fails the test unless `ATCR_SKIP_CLIENT_TESTS=1`. With
//! `runc` installed the podman test also runs the pulled image.

mod common;

use std::collections::BTreeSet;

use common::clients::{Clients, curl, required};
use common::images::{self, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, fresh_seed, random_layer};
use common::{Server, sha256};
use serde_json::Value;

const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const SKOPEO: &[&str] = &["skopeo", "curl", images::BUSYBOX];

/// `skopeo inspect --raw`: the manifest bytes exactly as the registry serves them.
fn inspect_raw(srv: &Server, c: &Clients, image: &str) -> Vec<u8> {
    let mut cmd = c.skopeo();
    cmd.args(["inspect", "--raw", "--tls-verify=false", image]);
    srv.must(&mut cmd).into_bytes()
}

/// `skopeo inspect` (parsed JSON).
fn inspect(srv: &Server, c: &Clients, image: &str, flags: &[&str]) -> Value {
    let mut cmd = c.skopeo();
    cmd.args(["inspect", "--tls-verify=false"])
        .args(flags)
        .arg(image);
    serde_json::from_str(&srv.must(&mut cmd)).expect("skopeo inspect prints JSON")
}

/// The digest the registry reports for a manifest (`HEAD`, any manifest type accepted).
fn head_digest(srv: &Server, repo: &str, reference: &str) -> String {
    let accept = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].join(", ");
    let r = curl(
        "HEAD",
        &format!("{}/v2/{repo}/manifests/{reference}", srv.base_url()),
        &[("Accept", &accept)],
        None,
    );
    assert_eq!(r.status, 200, "HEAD {repo}:{reference}: {r:?}");
    r.header("docker-content-digest")
        .expect("a Docker-Content-Digest header")
        .to_owned()
}

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
    let r = curl("GET", &format!("{}/metrics", srv.base_url()), &[], None);
    assert_eq!(r.status, 200, "{r:?}");
    r.text()
        .lines()
        .find_map(|l| l.strip_prefix("atcr_blob_bytes_received_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no atcr_blob_bytes_received_total in /metrics:\n{}",
                r.text()
            )
        })
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
    srv.must(&mut c.skopeo_copy(&remote, &format!("oci:{}:pulled", back.display()), &[]));
    let (desc, _) = images::read_tag(&back, "pulled");
    assert_eq!(desc.digest, local.manifest.digest);
    let digest = &local.layers[0].digest;
    let pulled = std::fs::read(images::blob_path(&back, digest)).unwrap();
    let pushed = std::fs::read(images::blob_path(&local.layout, digest)).unwrap();
    assert!(pushed.len() > SIZE, "the layer is incompressible");
    assert!(
        pulled == pushed,
        "the large layer differs after the round trip"
    );

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

/// `podman image inspect --format FORMAT IMAGE`.
fn podman_image(srv: &Server, c: &Clients, image: &str, format: &str) -> String {
    let mut cmd = c.podman();
    cmd.args(["image", "inspect", "--format", format, image]);
    srv.must(&mut cmd).trim().to_owned()
}

#[test]
fn podman_pushes_pulls_and_runs_an_image() {
    if !required(&["podman", "skopeo", "curl", images::BUSYBOX]) {
        return;
    }
    let srv = Server::start();
    let c = Clients::new();
    // The busybox layer plus a fresh one, so that the push really uploads.
    let local = images::single_image(
        &c.path("src"),
        "latest",
        &[images::busybox_layer(), random_layer(fresh_seed(), 2048)],
    );
    let config = local.config.clone().unwrap();
    // `pull -q` prints the image ID.
    let id = srv.must(c.podman().args(["pull", "-q", &local.reference()]));
    let id = id.trim().to_owned();
    assert_eq!(
        format!("sha256:{id}"),
        config.digest,
        "the image ID is the config digest"
    );

    let remote = format!("{}/admin/podman:1", srv.host_port());
    let digest_file = c.path("digest");
    srv.must(c.podman().args([
        "push",
        "-q",
        "--tls-verify=false",
        "--digestfile",
        digest_file.to_str().unwrap(),
        &id,
        &format!("docker://{remote}"),
    ]));
    let pushed = std::fs::read_to_string(&digest_file)
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(head_digest(&srv, "admin/podman", "1"), pushed);
    assert_eq!(
        sha256(&inspect_raw(&srv, &c, &format!("docker://{remote}"))),
        pushed
    );

    // Forget it locally, pull it from the registry, and get the same image.
    srv.must(c.podman().args(["rmi", "-f", &id]));
    srv.must(
        c.podman()
            .args(["pull", "-q", "--tls-verify=false", &remote]),
    );
    assert_eq!(podman_image(&srv, &c, &remote, "{{.Id}}"), id);
    assert_eq!(podman_image(&srv, &c, &remote, "{{.Digest}}"), pushed);
    // And by digest.
    let by_digest = format!("{}/admin/podman@{pushed}", srv.host_port());
    srv.must(c.podman().args(["rmi", "-f", &id]));
    let pulled = srv.must(
        c.podman()
            .args(["pull", "-q", "--tls-verify=false", &by_digest]),
    );
    assert_eq!(pulled.trim(), id);

    // Run it, where this sandbox lets a runtime run (see TESTING-NOTES: runc, fixed ulimits).
    if !common::clients::on_path("runc") {
        eprintln!("note: runc is not installed; skipping `podman run`");
        return;
    }
    let mut run = c.podman();
    run.args([
        "run",
        "--runtime",
        "runc",
        "--network",
        "none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        "--rm",
        &remote,
        "/bin/busybox",
        "echo",
        "hi",
    ]);
    let out = common::run(&mut run);
    if out.status.success() {
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hi");
    } else {
        eprintln!(
            "note: `podman run` cannot run in this sandbox; skipped that step:\n{}",
            common::describe(&run, &out)
        );
    }
}

#[test]
fn buildah_commits_to_the_registry_and_pushes_a_manifest_list() {
    if !required(&["buildah", "skopeo", "curl", images::BUSYBOX]) {
        return;
    }
    let srv = Server::start();
    let c = Clients::new();
    let host = srv.host_port();
    let seed = fresh_seed();
    let base = images::single_image(&c.path("base"), "latest", &[images::busybox_layer()]);

    // A working container from the layout, committed straight to the registry.
    let ctr = srv.must(
        c.buildah()
            .args(["from", "--quiet", "--pull", &base.reference()]),
    );
    let ctr = ctr.trim().to_owned();
    srv.must(
        c.buildah()
            .args(["config", "--label", &format!("atcr.test.seed={seed}"), &ctr]),
    );
    let remote = format!("docker://{host}/admin/buildah:1");
    srv.must(c.buildah().args([
        "commit",
        "--quiet",
        "--tls-verify=false",
        "--rm",
        &ctr,
        &remote,
    ]));
    let raw = inspect_raw(&srv, &c, &remote);
    let digest = head_digest(&srv, "admin/buildah", "1");
    assert_eq!(sha256(&raw), digest);
    assert_eq!(inspect(&srv, &c, &remote, &[])["Digest"], digest.as_str());
    let committed: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(committed["mediaType"], OCI_MANIFEST);
    let back = c.path("committed");
    srv.must(&mut c.skopeo_copy(&remote, &format!("oci:{}:pulled", back.display()), &[]));
    assert_eq!(images::read_tag(&back, "pulled").0.digest, digest);

    // A two-platform list, built with buildah and pushed with every image in it.
    let multi = images::multi_arch_image(&c.path("multi"), seed);
    let list = format!("localhost/atcr-test-list-{seed:016x}");
    srv.must(c.buildah().args(["manifest", "create", &list]));
    for arch in ["amd64", "arm64"] {
        let image = format!("oci:{}:{arch}", multi.layout.display());
        srv.must(c.buildah().args([
            "manifest", "add", "--arch", arch, "--os", "linux", &list, &image,
        ]));
    }
    let digest_file = c.path("list-digest");
    let remote_list = format!("docker://{host}/admin/buildah-list:1");
    srv.must(c.buildah().args([
        "manifest",
        "push",
        "--quiet",
        "--all",
        "--tls-verify=false",
        "--digestfile",
        digest_file.to_str().unwrap(),
        &list,
        &remote_list,
    ]));
    let pushed = std::fs::read_to_string(&digest_file)
        .unwrap()
        .trim()
        .to_owned();
    let raw = inspect_raw(&srv, &c, &remote_list);
    assert_eq!(sha256(&raw), pushed);
    assert_eq!(head_digest(&srv, "admin/buildah-list", "1"), pushed);
    let index: Value = serde_json::from_slice(&raw).unwrap();
    let media_type = index["mediaType"].as_str().unwrap_or_default();
    assert!([OCI_INDEX, DOCKER_LIST].contains(&media_type), "{index}");
    let mut archs = BTreeSet::new();
    for entry in index["manifests"].as_array().unwrap() {
        let arch = entry["platform"]["architecture"]
            .as_str()
            .unwrap()
            .to_owned();
        // buildah pulls the images into its storage and compresses the layers again on push,
        // so only the configs are the layout's own bytes.
        let child = entry["digest"].as_str().unwrap();
        let bytes = inspect_raw(
            &srv,
            &c,
            &format!("docker://{host}/admin/buildah-list@{child}"),
        );
        assert_eq!(sha256(&bytes), child);
        let manifest: Value = serde_json::from_slice(&bytes).unwrap();
        let (_, local) = images::read_tag(&multi.layout, &arch);
        let local: Value = serde_json::from_slice(&local).unwrap();
        assert_eq!(
            manifest["config"]["digest"], local["config"]["digest"],
            "{arch}"
        );
        for layer in images::manifest_layers(&bytes) {
            let r = curl(
                "GET",
                &format!("{}/v2/admin/buildah-list/blobs/{layer}", srv.base_url()),
                &[],
                None,
            );
            assert_eq!(r.status, 200, "{arch} layer {layer}");
            assert_eq!(sha256(&r.body), layer);
        }
        archs.insert(arch);
    }
    assert_eq!(
        archs,
        BTreeSet::from(["amd64".to_owned(), "arm64".to_owned()])
    );

    // Pulled back with skopeo, by digest, the list and its images are unchanged.
    let back = c.path("list-back");
    srv.must(&mut c.skopeo_copy(
        &format!("docker://{host}/admin/buildah-list@{pushed}"),
        &format!("oci:{}:pulled", back.display()),
        &["--all"],
    ));
    let (desc, bytes) = images::read_tag(&back, "pulled");
    assert_eq!(desc.digest, pushed);
    assert_eq!(bytes, raw);

    // The same list as a Docker manifest list (its images converted to schema 2 as well).
    let remote_v2s2 = format!("docker://{host}/admin/buildah-list:v2s2");
    srv.must(c.buildah().args([
        "manifest",
        "push",
        "--quiet",
        "--all",
        "--format",
        "v2s2",
        "--tls-verify=false",
        "--digestfile",
        digest_file.to_str().unwrap(),
        &list,
        &remote_v2s2,
    ]));
    let pushed = std::fs::read_to_string(&digest_file)
        .unwrap()
        .trim()
        .to_owned();
    let raw = inspect_raw(&srv, &c, &remote_v2s2);
    assert_eq!(sha256(&raw), pushed);
    let docker_list: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(docker_list["mediaType"], DOCKER_LIST, "{docker_list}");
    for entry in docker_list["manifests"].as_array().unwrap() {
        let child = entry["digest"].as_str().unwrap();
        let bytes = inspect_raw(
            &srv,
            &c,
            &format!("docker://{host}/admin/buildah-list@{child}"),
        );
        assert_eq!(sha256(&bytes), child);
        let manifest: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(manifest["mediaType"], DOCKER_MANIFEST);
    }
}
