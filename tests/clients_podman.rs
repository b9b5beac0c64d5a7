//! Black-box tests with podman and buildah: the built binary pushed to, pulled from and (with
//! `runc`) run from, and a manifest list built by buildah. Same rules as `tests/clients.rs`:
//! a missing tool fails the test unless `ATCR_SKIP_CLIENT_TESTS=1`.

mod common;

use std::collections::BTreeSet;

use common::clients::{Clients, DOCKER_LIST, curl, head_digest, inspect, inspect_raw, required};
use common::images::{self, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, fresh_seed, random_layer};
use common::{Server, sha256};
use serde_json::Value;

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
