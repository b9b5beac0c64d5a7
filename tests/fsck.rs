//! `atcr fsck` through the binary: a stored layer with one byte changed on disk (same size) is
//! reported by digest while the daemon runs, and `--quarantine` moves it out of service.

mod common;

use common::Server;
use common::clients::{curl, push_with_curl};

#[test]
fn fsck_reports_a_corrupted_layer_by_digest() {
    let mut srv = Server::start();
    let layer = b"layer bytes that rot on disk ".repeat(64);
    let pushed = push_with_curl(&srv.base_url(), "admin/app", "v1", &layer);
    let out = srv.cli(&["fsck"], "");
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(", 0 bad"),
        "{out:?}"
    );

    let hex = pushed.layer.strip_prefix("sha256:").unwrap();
    let path = srv
        .data_dir()
        .join(format!("blobs/blobs/sha256/{}/{hex}", &hex[..2]));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    // The daemon still runs: fsck only reads.
    let out = srv.cli(&["fsck"], "");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        stdout.contains(&format!("BAD {}", pushed.layer)) && stdout.contains(", 1 bad"),
        "{stdout}"
    );
    assert!(path.exists());

    let out = srv.cli(&["fsck", "--quarantine"], "");
    assert!(!out.status.success(), "{out:?}");
    assert!(!path.exists());
    assert!(
        srv.data_dir()
            .join(format!("blobs/quarantine/sha256/{hex}"))
            .exists()
    );
    let r = curl(
        "GET",
        &format!("{}/v2/admin/app/blobs/{}", srv.base_url(), pushed.layer),
        &[],
        None,
    );
    assert_ne!(r.status, 200, "a quarantined layer is not served");
    let out = srv.cli(&["fsck"], "");
    assert!(out.status.success(), "{out:?}");
    assert!(srv.stop());
}
