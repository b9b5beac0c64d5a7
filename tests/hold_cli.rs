//! `atcr hold …`, `atcr crew …` and the crew membership `atcr user add|remove` manage, through
//! the built binary.

mod common;

use common::atcr_offline as atcr;

/// The crew list line of `did`, split on tabs.
fn crew_line(list: &str, did: &str) -> Option<Vec<String>> {
    list.lines()
        .find(|l| l.starts_with(&format!("{did}\t")))
        .map(|l| l.split('\t').map(str::to_owned).collect())
}

#[test]
fn hold_and_crew_commands() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // First use writes the captain record: the node owns a public hold.
    let (ok, out, err) = atcr(d, &["hold", "show"], None);
    assert!(ok, "{err}");
    assert!(
        out.contains("owner\tdid:web:localhost%3A0 (this node)"),
        "{out}"
    );
    assert!(out.contains("public\ttrue\nallowAllCrew\tfalse\n"), "{out}");
    assert!(out.contains("\ncrew\t0"), "{out}");

    // New users join the crew: write role, admin role for administrators.
    let (ok, out, err) = atcr(
        d,
        &["user", "add", "alice", "--password-stdin"],
        Some("a-password\n"),
    );
    assert!(ok, "{err}");
    let alice = out.trim().split('\t').nth(1).unwrap().to_owned();
    let (ok, out, err) = atcr(
        d,
        &["user", "add", "root", "--password-stdin", "--admin"],
        Some("a-password\n"),
    );
    assert!(ok, "{err}");
    let root = out.trim().split('\t').nth(1).unwrap().to_owned();
    let (ok, list, err) = atcr(d, &["crew", "list"], None);
    assert!(ok, "{err}");
    assert_eq!(
        crew_line(&list, &alice).unwrap(),
        [&alice, "alice.atcr.test", "write", "blob:read,blob:write"]
    );
    assert_eq!(
        crew_line(&list, &root).unwrap(),
        [
            &root,
            "root.atcr.test",
            "admin",
            "blob:read,blob:write,crew:admin"
        ]
    );

    // hold set: owner by name, policy flags.
    let (ok, _, err) = atcr(
        d,
        &[
            "hold",
            "set",
            "--owner",
            "alice",
            "--public",
            "false",
            "--allow-all-crew",
            "true",
        ],
        None,
    );
    assert!(ok, "{err}");
    let (ok, out, _) = atcr(d, &["hold", "show"], None);
    assert!(ok);
    assert!(
        out.contains(&format!("owner\t{alice} (alice.atcr.test)")),
        "{out}"
    );
    assert!(out.contains("public\tfalse\nallowAllCrew\ttrue\n"), "{out}");
    assert!(out.contains("\ncrew\t2"), "{out}");
    let (ok, _, err) = atcr(d, &["hold", "set"], None);
    assert!(!ok && err.contains("nothing to set"), "{err}");

    // crew add: a user of another PDS by DID, roles, explicit permissions, replacement.
    let remote = "did:plc:remoteremoteremoteremote";
    let (ok, _, err) = atcr(d, &["crew", "add", remote, "--role", "read"], None);
    assert!(ok, "{err}");
    let (ok, _, err) = atcr(
        d,
        &[
            "crew",
            "add",
            "alice.atcr.test",
            "--role",
            "read",
            "--permission",
            "blob:write",
        ],
        None,
    );
    assert!(ok, "{err}");
    let (_, list, _) = atcr(d, &["crew", "list"], None);
    assert_eq!(
        crew_line(&list, remote).unwrap(),
        [remote, "-", "read", "blob:read"]
    );
    assert_eq!(
        crew_line(&list, &alice).unwrap(),
        [&alice, "alice.atcr.test", "read", "blob:write"]
    );
    assert_eq!(list.lines().count(), 3, "{list}");
    let (ok, _, err) = atcr(d, &["crew", "add", "nobody"], None);
    assert!(!ok && err.contains("no local user"), "{err}");
    let (ok, _, err) = atcr(
        d,
        &["crew", "add", "alice", "--permission", "blob:delete"],
        None,
    );
    assert!(!ok && err.contains("blob:delete"), "{err}");

    // crew remove, and user remove leaves the crew.
    let (ok, _, err) = atcr(d, &["crew", "remove", remote], None);
    assert!(ok, "{err}");
    let (ok, _, err) = atcr(d, &["crew", "remove", remote], None);
    assert!(!ok && err.contains("not in the crew"), "{err}");
    let (ok, _, err) = atcr(d, &["user", "remove", "alice"], None);
    assert!(ok, "{err}");
    let (_, list, _) = atcr(d, &["crew", "list"], None);
    assert!(crew_line(&list, &alice).is_none(), "{list}");
    assert!(crew_line(&list, &root).is_some(), "{list}");
}
