//! The oras Python SDK (the `oras` package, a client that reuses one token across scopes) against the
//! built binary: it pushes and pulls artifacts, and a push into another user's namespace stops
//! at once with the reason.
//!
//! `tests/oras/setup.sh` (run by `scripts/test`) installs the SDK into `tests/oras/venv`;
//! `ATCR_SKIP_CLIENT_TESTS=1` skips these tests.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Server, describe, run, temp_dir};
use serde_json::Value;

/// The virtual environment's Python, or `None` when client tests are skipped.
fn python() -> Option<PathBuf> {
    if std::env::var("ATCR_SKIP_CLIENT_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("ATCR_SKIP_CLIENT_TESTS=1: skipping the oras SDK tests");
        return None;
    }
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oras/venv/bin/python");
    assert!(
        python.exists(),
        "the oras SDK is missing: run tests/oras/setup.sh (scripts/test does), or set \
         ATCR_SKIP_CLIENT_TESTS=1 to skip these tests"
    );
    Some(python)
}

/// What `tests/oras/client.py` reported: one JSON value per step, and the SDK's log.
struct Steps {
    results: Vec<Value>,
    log: String,
}

/// Runs `steps` as `user` on one SDK client, in `dir` (files are named relative to it).
fn oras(python: &Path, srv: &Server, dir: &Path, user: (&str, &str), steps: &[&str]) -> Steps {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oras/client.py");
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .args([&srv.host_port(), user.0, user.1])
        .args(steps)
        .current_dir(dir)
        // Nothing of this machine's Docker configuration is read.
        .env("HOME", dir)
        .env("DOCKER_CONFIG", dir.join(".docker"));
    let out = run(&mut cmd);
    let results: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(results.len(), steps.len(), "{}", describe(&cmd, &out));
    Steps {
        results,
        log: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn oras_sdk_pushes_and_pulls_reusing_its_token() {
    let Some(python) = python() else {
        return;
    };
    let srv = Server::start();
    let dir = temp_dir("atcr-oras-");
    std::fs::write(dir.path().join("a.txt"), b"first file\n").unwrap();
    std::fs::write(dir.path().join("b.bin"), [7u8; 3000]).unwrap();
    // One client: its token from the first push's blob check (pull) is reused for the upload
    // (push), then for a pull, then for another repository.
    let steps = oras(
        &python,
        &srv,
        dir.path(),
        ("admin", srv.password()),
        &[
            "push:admin/notes:v1:a.txt,b.bin",
            "pull:admin/notes:v1:out",
            "push:admin/other:v1:a.txt",
        ],
    );
    for result in &steps.results {
        assert_eq!(result["ok"], true, "{result}\n{}", steps.log);
    }
    assert!(!steps.log.contains("Retrying in"), "{}", steps.log);
    for file in ["a.txt", "b.bin"] {
        assert_eq!(
            std::fs::read(dir.path().join("out").join(file)).unwrap(),
            std::fs::read(dir.path().join(file)).unwrap(),
            "{file} round-trips"
        );
    }
}

#[test]
fn oras_sdk_push_into_another_namespace_stops_with_the_reason() {
    let Some(python) = python() else {
        return;
    };
    let srv = Server::start();
    srv.add_user("bob", "bob-password");
    let dir = temp_dir("atcr-oras-");
    std::fs::write(dir.path().join("a.txt"), b"bob's file\n").unwrap();
    let steps = oras(
        &python,
        &srv,
        dir.path(),
        ("bob", "bob-password"),
        &["push:admin/bobs:v1:a.txt", "push:bob/mine:v1:a.txt"],
    );
    let refused = &steps.results[0];
    assert_eq!(refused["ok"], false, "{refused}");
    let error = refused["error"].as_str().unwrap();
    assert!(
        error.contains("bob may not push to admin/bobs: only the owner pushes into a namespace"),
        "{error}"
    );
    // At once: the SDK's retry loop (seconds of sleeping per attempt) never started.
    assert!(!steps.log.contains("Retrying in"), "{}", steps.log);
    assert_eq!(steps.results[1]["ok"], true, "{}", steps.results[1]);
}
