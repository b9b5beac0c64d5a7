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
        Some("s3cret-password\n"),
    );
    assert!(ok, "{err}");
    assert!(out.starts_with("alice.atcr.test\tdid:plc:"), "{out}");
    let (ok, _, err) = atcr(
        d,
        &["user", "add", "alice", "--password-stdin"],
        Some("other-password\n"),
    );
    assert!(!ok && err.contains("taken"), "{err}");
    // The command's error is a plain line, not a log line.
    assert!(
        err.starts_with("error: ") && !err.contains("ERROR"),
        "{err}"
    );
    let (ok, _, err) = atcr(d, &["user", "add", "bob"], None);
    assert!(!ok && err.contains("--password-stdin"), "{err}");
    // Passwords have at least 8 characters, for new accounts and changed passwords alike.
    for args in [["user", "add", "bob"], ["user", "passwd", "alice"]] {
        let (ok, _, err) = atcr(
            d,
            &[&args[..], &["--password-stdin"]].concat(),
            Some("7-chars\n"),
        );
        assert!(
            !ok && err == "error: a password must have at least 8 characters\n",
            "{args:?}: {err}"
        );
    }
    let (ok, out, _) = atcr(d, &["user", "list"], None);
    assert!(
        ok && out.contains("alice\talice.atcr.test\tdid:plc:") && out.contains("admin"),
        "{out}"
    );
    let (ok, _, err) = atcr(
        d,
        &["user", "passwd", "alice", "--password-stdin"],
        Some("n3w-password\n"),
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

/// Runs `atcr <args>` on a pseudo-terminal (util-linux `script`), typing each of `lines` once
/// its prompt shows, as a person would; whether it succeeded and what the terminal showed.
fn at_terminal(dir: &std::path::Path, args: &str, lines: &[&str]) -> (bool, String) {
    use std::io::{Read, Write};
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let atcr = env!("CARGO_BIN_EXE_atcr");
    let command = format!(
        "{atcr} {args} --data-dir {} --listen 127.0.0.1:0",
        dir.display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("RUST_LOG", "warn")
        .env_remove("ATCR_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("util-linux script");
    let mut keyboard = child.stdin.take().unwrap();
    let mut screen = child.stdout.take().unwrap();
    let shown = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let shown = shown.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = screen.read(&mut buf) {
                shown
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let deadline = Instant::now() + Duration::from_mins(1);
    for (i, line) in lines.iter().enumerate() {
        while shown.lock().unwrap().matches("Password").count() <= i {
            assert!(
                Instant::now() < deadline,
                "no prompt: {}",
                shown.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        writeln!(keyboard, "{line}").unwrap();
    }
    // The keyboard stays connected until the command is done.
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("atcr {args} did not finish: {}", shown.lock().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(keyboard);
    reader.join().unwrap();
    let shown = shown.lock().unwrap().clone();
    (status.success(), shown)
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
    atcr::tls::install_crypto_provider();
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
