//! `kill -9` of a hold on another machine while the full node is sending it a blob in parts:
//! the push fails with a clear error, the client's retry succeeds once the hold is back, and
//! neither node ever keeps a partial object under a digest key.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::clients::{Clients, metric, required};
use common::images::{self, fresh_seed, random_layer};
use common::sha256;
use common::two_nodes::{ALICE_PASSWORD, TwoNodes};

/// Eight parts of 8 MiB: long enough to be caught in the middle.
const LAYER_BYTES: usize = 64 << 20;

/// Every object under `<data dir>/blobs/blobs/sha256/`, with whether its bytes hash to its name.
fn objects(data_dir: &Path) -> Vec<(String, bool)> {
    let root = data_dir.join("blobs/blobs/sha256");
    let mut out = Vec::new();
    for prefix in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        for object in std::fs::read_dir(prefix.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = object.file_name().to_string_lossy().into_owned();
            let bytes = std::fs::read(object.path()).unwrap();
            let whole = sha256(&bytes) == format!("sha256:{name}");
            out.push((name, whole));
        }
    }
    out
}

/// Whether the hold has stored at least one part of an upload session (`uploads/<id>/<n>`).
fn parts_arrived(data_dir: &Path) -> bool {
    std::fs::read_dir(data_dir.join("blobs/uploads"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|session| {
            std::fs::read_dir(session.path())
                .into_iter()
                .flatten()
                .next()
                .is_some()
        })
}

#[test]
fn a_hold_killed_mid_transfer_loses_nothing_and_the_retry_succeeds() {
    if !required(&["skopeo"]) {
        return;
    }
    let mut nodes = TwoNodes::start(&[]);
    let c = Clients::new();
    let local = images::single_image(
        &c.path("src"),
        "v1",
        &[random_layer(fresh_seed(), LAYER_BYTES)],
    );
    let image = format!("docker://{}/alice/big:v1", nodes.full.host_port());
    let creds = format!("alice:{ALICE_PASSWORD}");
    let push = |c: &Clients| {
        let mut cmd = c.skopeo_copy(&local.reference(), &image, &["--dest-creds", &creds]);
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        cmd
    };

    // The push runs; once the hold has a part of the blob, the hold is killed.
    let mut first = push(&c).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_mins(2);
    let hold_dir = nodes.hold.data_dir().to_owned();
    while !parts_arrived(&hold_dir) {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the push ended before the hold received a part:\n{}",
            nodes.full.log_tail()
        );
        assert!(Instant::now() < deadline, "no part reached the hold");
        std::thread::sleep(Duration::from_millis(2));
    }
    nodes.hold.kill9();
    let out = first.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the push succeeded without its hold");
    assert!(
        stderr.contains("unreachable") || stderr.contains("503"),
        "not a clear error: {stderr}"
    );
    // Nothing partial under a digest key, on either node.
    for (name, whole) in objects(&hold_dir)
        .into_iter()
        .chain(objects(nodes.full.data_dir()))
    {
        assert!(whole, "{name} is stored but does not hash to its name");
    }

    // `atcr doctor` on the full node says the hold does not answer.
    let doctor = |nodes: &TwoNodes| {
        let out = nodes.full.cli(&["doctor"], "");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let report = doctor(&nodes);
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("WARN") && l.contains("cannot reach")),
        "{report}"
    );

    // The hold is back: the client's retry succeeds and the image pulls whole.
    nodes.hold.restart_same_port();
    let report = doctor(&nodes);
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("ok") && l.contains(&format!("{} answers", nodes.hold_did))),
        "{report}"
    );
    nodes.full.must(&mut push(&c));
    let back = c.path("back");
    let pull = format!("oci:{}:pulled", back.display());
    nodes
        .full
        .must(&mut c.skopeo_copy(&image, &pull, &["--src-creds", &creds]));
    let layer = &local.layers[0];
    let bytes = std::fs::read(images::blob_path(&back, &layer.digest)).unwrap();
    assert_eq!(sha256(&bytes), layer.digest);
    // The hold sent the layer from its file with sendfile (plain HTTP/1 between the nodes).
    assert!(
        metric(&nodes.hold, "atcr_blob_bytes_sendfile_total ") >= layer.size,
        "the hold streamed the layer instead"
    );
    let stored = objects(&hold_dir);
    assert!(stored.iter().all(|(_, whole)| *whole), "{stored:?}");
    let hex = layer.digest.strip_prefix("sha256:").unwrap();
    assert!(
        stored.iter().any(|(name, _)| name == hex),
        "the layer is not on the hold"
    );
    assert!(
        objects(nodes.full.data_dir())
            .iter()
            .all(|(name, _)| name != hex),
        "the layer stayed on the full node"
    );
}
