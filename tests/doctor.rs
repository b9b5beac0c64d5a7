//! `atcr doctor` through the binary: a healthy node passes, running and stopped; what is broken
//! is named with its fix, and the command exits 1.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::clients::{Clients, curl_anonymous, required};
use common::{Server, images};

fn doctor(srv: &Server) -> (bool, String) {
    let out = srv.cli(&["doctor"], "");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn assert_lines(out: &str, expected: &[&str]) {
    for line in expected {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
}

/// The file named `name` somewhere under `dir`.
fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find(&path, name) {
                return Some(found);
            }
        } else if entry.file_name() == name {
            return Some(path);
        }
    }
    None
}

#[test]
fn doctor_passes_a_healthy_node_and_names_what_is_broken() {
    if !required(&["skopeo"]) {
        return;
    }
    let mut srv = Server::start();
    let c = Clients::new();
    let host = srv.host_port();
    let layer = images::random_layer(images::fresh_seed(), 4096);
    let local = images::single_image(&c.path("src"), "t", &[layer]);
    srv.must(&mut c.skopeo_copy(
        &local.reference(),
        &format!("docker://{host}/admin/app:1"),
        &[],
    ));

    // Running: the state checks run inside the daemon; its port answers /readyz.
    let (ok, out) = doctor(&srv);
    assert!(ok, "{out}\n{}", srv.log_tail());
    assert_lines(
        &out,
        &[
            "ok    daemon   running",
            "ok    index    up to date with the PDS event log",
            "all 3 blobs and manifests the index lists are in storage",
            "/readyz says ready",
            "private keys owner-only",
            "0 failures",
        ],
    );

    // Stopped: the same checks on the state opened directly; the port is free.
    assert!(srv.stop(), "atcr serve did not stop cleanly");
    let (ok, out) = doctor(&srv);
    assert!(ok, "{out}");
    assert_lines(
        &out,
        &[
            "ok    daemon   not running",
            "ok    index    up to date",
            "all 3 blobs",
            &format!("http {host} is free"),
        ],
    );

    // Broken: a layer gone from storage, a private key readable by others, the port taken.
    let data = srv.data_dir();
    let digest = &local.layers[0].digest;
    let hex = digest.strip_prefix("sha256:").unwrap();
    std::fs::remove_file(find(&data.join("blobs"), hex).expect("the layer's file")).unwrap();
    let key = data.join("keys/repo.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _squatter = std::net::TcpListener::bind(&host).unwrap();
    let (ok, out) = doctor(&srv);
    assert!(!ok, "{out}");
    assert_lines(
        &out,
        &[
            &format!(
                "FAIL  storage  1 of 3 blobs and manifests the index lists are missing from storage: {digest}"
            ),
            "restore the blob storage from a backup",
            &format!("private key {} is readable by other users", key.display()),
            &format!("fix: chmod 600 {}", key.display()),
            &format!(
                "FAIL  files    1 state entries are open to other users (group or world permissions): {}",
                key.display()
            ),
            &format!("fix: chmod -R go-rwx {}", data.display()),
            &format!("http {host} is in use by another process"),
            "4 failures",
        ],
    );
    // Failures come first.
    assert!(out.starts_with("FAIL"), "{out}");
}

/// Entries under `dir` that group or others may use (sockets aside: their directory guards
/// them).
fn open_to_others(dir: &Path) -> Vec<(PathBuf, u32)> {
    use std::os::unix::fs::FileTypeExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        if !meta.file_type().is_socket() && mode & 0o077 != 0 {
            out.push((path.clone(), mode));
        }
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    out
}

#[test]
fn state_is_owner_only_whatever_the_umask_and_holds_no_session_id() {
    if !required(&["curl"]) {
        return;
    }
    // The server inherits this process's umask: the usual, permissive one.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let mut srv = Server::start();
    // A data directory an operator made world-readable is closed at the next start.
    std::fs::set_permissions(srv.data_dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    srv.restart();
    // Sessions of both kinds: a web sign-in (the cookie is the session id) and an XRPC one.
    let r = curl_anonymous(
        "POST",
        &format!("{}/signin", srv.base_url()),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(format!("identifier=admin&password={}", srv.password()).as_bytes()),
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let cookie = r.header("set-cookie").expect("a session cookie").to_owned();
    let id = cookie
        .split(';')
        .next()
        .and_then(|c| c.split_once('='))
        .map(|(_, v)| v.to_owned())
        .unwrap();
    let body = format!(
        r#"{{"identifier":"admin","password":"{}"}}"#,
        srv.password()
    );
    let r = curl_anonymous(
        "POST",
        &format!("{}/xrpc/com.atproto.server.createSession", srv.base_url()),
        &[("Content-Type", "application/json")],
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(srv.stop(), "atcr serve did not stop cleanly");

    let open = open_to_others(srv.data_dir());
    assert!(open.is_empty(), "open to other users: {open:?}");
    let pds = std::fs::read(srv.data_dir().join("pds.redb")).unwrap();
    assert!(
        !pds.windows(id.len()).any(|w| w == id.as_bytes()),
        "the web session id is stored in the clear"
    );
    // And doctor agrees.
    let (ok, out) = doctor(&srv);
    assert!(ok, "{out}");
    assert_lines(&out, &["state and private keys owner-only"]);
}
