//! `atcr user …` against a state directory, through the built binary.

use std::os::unix::fs::PermissionsExt;

mod common;

use common::atcr_offline as atcr;

#[test]
fn user_add_list_passwd_remove() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ok, out, err) = atcr(
        d,
        &["user", "add", "alice", "--password-stdin", "--admin"],
        Some("s3cret\n"),
    );
    assert!(ok, "{err}");
    assert!(out.starts_with("alice.atcr.test\tdid:plc:"), "{out}");
    let (ok, _, err) = atcr(
        d,
        &["user", "add", "alice", "--password-stdin"],
        Some("x\n"),
    );
    assert!(!ok && err.contains("taken"), "{err}");
    let (ok, _, err) = atcr(d, &["user", "add", "bob"], None);
    assert!(!ok && err.contains("--password-stdin"), "{err}");
    let (ok, out, _) = atcr(d, &["user", "list"], None);
    assert!(
        ok && out.contains("alice\talice.atcr.test\tdid:plc:") && out.contains("admin"),
        "{out}"
    );
    let (ok, _, err) = atcr(
        d,
        &["user", "passwd", "alice", "--password-stdin"],
        Some("n3w\n"),
    );
    assert!(ok, "{err}");
    let (ok, _, err) = atcr(d, &["user", "remove", "alice.atcr.test"], None);
    assert!(ok, "{err}");
    let (ok, out, _) = atcr(d, &["user", "list"], None);
    assert!(ok && !out.contains("alice"), "{out}");
    // Keys are owner-only.
    let mode = std::fs::metadata(d.join("keys/repo.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}
