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

/// Runs `atcr <args>` on a pseudo-terminal (util-linux `script`), typing each of `lines` a
/// moment after the last, as a person at the prompt would; what the terminal showed.
fn at_terminal(dir: &std::path::Path, args: &str, lines: &[&str]) -> (bool, String) {
    let atcr = env!("CARGO_BIN_EXE_atcr");
    let command = format!(
        "{atcr} {args} --data-dir {} --listen 127.0.0.1:0",
        dir.display()
    );
    let mut typing: Vec<String> = lines
        .iter()
        .map(|line| format!("sleep 1; printf '%s\\n' '{line}'"))
        .collect();
    // Input stays open until the command has had time to finish.
    typing.push("sleep 5".into());
    let typing = typing.join("; ");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("({typing}) | script -qec \"$0\" /dev/null"))
        .arg(&command)
        .env("RUST_LOG", "warn")
        .env_remove("ATCR_CONFIG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn passwords_asked_at_the_terminal_are_not_shown_and_work() {
    let mut server = common::Server::start();
    assert!(server.stop());
    let dir = server.data_dir().to_owned();
    // Two different entries: refused, nothing created.
    let (ok, shown) = at_terminal(&dir, "user add carol", &["first-try", "second-try"]);
    assert!(!ok && shown.contains("do not match"), "{shown}");
    let (ok, shown) = at_terminal(&dir, "user add carol", &["carol-tty-pw", "carol-tty-pw"]);
    assert!(ok, "{shown}");
    assert!(
        shown.contains("Password:") && shown.contains("Password (again):"),
        "{shown}"
    );
    assert!(shown.contains("carol.atcr.test\tdid:plc:"), "{shown}");
    assert!(
        !shown.contains("carol-tty-pw"),
        "the password was echoed: {shown}"
    );
    server.restart();
    let session = reqwest::Client::new()
        .post(format!(
            "{}/xrpc/com.atproto.server.createSession",
            server.base_url()
        ))
        .json(&serde_json::json!({"identifier": "carol", "password": "carol-tty-pw"}))
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), 200, "the typed password signs in");
}
