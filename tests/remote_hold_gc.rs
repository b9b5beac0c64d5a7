//! The collection of a hold on another machine (`src/hold/gc.rs`), as two real processes: a full
//! node, and a hold alone keeping its blobs on a real S3 server (s3s-fs). alice pushes two
//! images sharing a layer with skopeo through the full node, then deletes one. The hold asks the
//! full node (alice's PDS) about the manifests its layer records name, drops the records of the
//! deleted one, and its blobs no other manifest uses leave the bucket a few collections later;
//! the other image still pulls whole; pushed again, the deleted image is first refused (the
//! full node's index still has the hold keep blobs it no longer stores), then sent whole. With
//! the full node down, the hold cannot tell and keeps everything.

mod common;
mod s3;

use common::Server;
use common::clients::{Clients, required};
use common::images::{self, LocalImage, fresh_seed, random_layer};
use common::two_nodes::TwoNodes;
use s3::S3Server;

const LAYER_BYTES: usize = 256 << 10;
/// The hold's `gc.grace_secs`.
const GRACE_SECS: u64 = 2;

/// The bucket key of `digest` on the hold.
fn key(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap();
    format!("hold/blobs/sha256/{}/{hex}", &hex[..2])
}

/// `atcr gc` on `srv` (through its admin socket): its report line.
fn gc(srv: &Server) -> String {
    let out = srv.cli(&["gc"], "");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_grace() {
    std::thread::sleep(std::time::Duration::from_millis(GRACE_SECS * 1000 + 300));
}

/// Past the age below which a hold never judges layer records, whatever the grace (the
/// registry may be about to commit their manifest): `NOTICE_FLOOR_SECS` in `src/hold/gc.rs`.
fn wait_notice_floor() {
    std::thread::sleep(std::time::Duration::from_secs(61));
}

/// The blobs of an image the hold keeps: config and layers.
fn blobs(image: &LocalImage) -> Vec<String> {
    image
        .layers
        .iter()
        .chain(image.config.as_ref())
        .map(|d| d.digest.clone())
        .collect()
}

#[test]
fn a_hold_collects_the_blobs_of_deleted_manifests_only() {
    if !required(&["skopeo", "curl"]) {
        return;
    }
    let s3 = S3Server::start();
    let secrets = common::temp_dir("atcr-s3-secrets-");
    let mut env = s3.env(secrets.path(), "hold", false);
    env.push(("ATCR_GC_GRACE_SECS".into(), GRACE_SECS.to_string()));
    env.push(("ATCR_GC_INTERVAL_SECS".into(), "0".into()));
    let TwoNodes { mut full, hold, .. } = TwoNodes::start(&env);

    let c = Clients::new();
    let seed = fresh_seed();
    // The same seed makes the same layer: the two images share their first.
    let a = images::single_image(
        &c.path("a"),
        "a",
        &[
            random_layer(seed, LAYER_BYTES),
            random_layer(seed + 1, LAYER_BYTES),
        ],
    );
    let b = images::single_image(
        &c.path("b"),
        "b",
        &[
            random_layer(seed, LAYER_BYTES),
            random_layer(seed + 2, LAYER_BYTES),
        ],
    );
    let creds = ["--dest-creds", "alice:alice-password"];
    let repo = format!("{}/alice/app", full.host_port());
    full.must(&mut c.skopeo_copy(&a.reference(), &format!("docker://{repo}:a"), &creds));
    full.must(&mut c.skopeo_copy(&b.reference(), &format!("docker://{repo}:b"), &creds));
    for digest in blobs(&a).iter().chain(&blobs(&b)) {
        assert!(s3.keys().contains(&key(digest)), "{digest} not on the hold");
    }

    // Within the notice floor nothing is judged, even past the grace.
    wait_grace();
    let report = gc(&hold);
    assert!(!report.contains("manifests gone"), "{report}");
    assert!(!report.contains("unverified"), "{report}");
    // Nothing is gone yet: a collection past both asks and keeps everything.
    wait_notice_floor();
    let report = gc(&hold);
    assert!(!report.contains("manifests gone"), "{report}");
    for digest in blobs(&a).iter().chain(&blobs(&b)) {
        assert!(
            s3.keys().contains(&key(digest)),
            "{digest} collected: {report}"
        );
    }

    // alice deletes image a (skopeo deletes by digest).
    let mut cmd = c.skopeo();
    cmd.args([
        "delete",
        "--tls-verify=false",
        "--creds",
        "alice:alice-password",
        &format!("docker://{repo}:a"),
    ]);
    full.must(&mut cmd);

    // The hold learns from alice's PDS that a's manifest record is gone, drops its two layer
    // records and its config's, and releases a's config and own layer (the shared one stays
    // vouched for by b's record).
    let report = gc(&hold);
    assert!(
        report.contains(
            "hold: 1 manifests gone (0 unverified, kept), deleted 3 layer records, released 2 blobs"
        ),
        "{report}"
    );
    let only_a = [
        a.config.as_ref().unwrap().digest.clone(),
        a.layers[1].digest.clone(),
    ];
    // Released blobs are taken up by the blob collector, then deleted a grace later.
    let mut rounds = 0;
    while only_a.iter().any(|d| s3.keys().contains(&key(d))) {
        rounds += 1;
        assert!(rounds <= 4, "a's blobs never left the bucket");
        wait_grace();
        gc(&hold);
    }
    for digest in blobs(&b) {
        assert!(s3.keys().contains(&key(&digest)), "b's {digest} collected");
    }
    // b pulls whole (skopeo checks every digest).
    let out = c.path("pulled-b");
    full.must(&mut c.skopeo_copy(
        &format!("docker://{repo}:b"),
        &format!("oci:{}:b", out.display()),
        &["--src-creds", "alice:alice-password"],
    ));

    // a pushed again: the full node's index still says the hold keeps a's config and layer,
    // so skopeo sends no blob; the hold says it does not store them and the manifest is
    // refused, never committed naming blobs nobody keeps. The retry sends them again.
    let push_a = || c.skopeo_copy(&a.reference(), &format!("docker://{repo}:a"), &creds);
    let refused = push_a().output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("no longer stores"),
        "{refused:?}"
    );
    full.must(&mut push_a());
    for digest in &only_a {
        assert!(s3.keys().contains(&key(digest)), "{digest} not sent again");
    }
    let out = c.path("pulled-a");
    full.must(&mut c.skopeo_copy(
        &format!("docker://{repo}:a"),
        &format!("oci:{}:a", out.display()),
        &["--src-creds", "alice:alice-password"],
    ));

    // With alice's PDS down, the hold cannot tell whether b is gone: it keeps b's blobs (a's
    // records are too young to be judged).
    assert!(full.stop());
    let report = gc(&hold);
    assert!(
        report.contains("unverified, kept)") && !report.contains("(0 unverified"),
        "{report}"
    );
    assert!(report.contains("released 0 blobs"), "{report}");
    for digest in blobs(&b) {
        assert!(s3.keys().contains(&key(&digest)), "b's {digest} collected");
    }
}
