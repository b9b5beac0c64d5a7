//! Logging in with real clients: `skopeo login` / `podman login` with an account password and
//! with an app password, namespaces that only their owner pushes to, anonymous pulls, and
//! `atcr login` with `docker-credential-atcr` as skopeo's credential helper.

mod common;

use std::process::Command;

use common::clients::{Clients, curl_anonymous, required};
use common::{Server, images};
use serde_json::{Value, json};

const TOOLS: &[&str] = &["skopeo", "podman", "curl"];

/// An app password for `user`, created over XRPC with the account password.
fn app_password(srv: &Server, user: &str, password: &str) -> String {
    let body = json!({"identifier": user, "password": password}).to_string();
    let r = curl_anonymous(
        "POST",
        &format!("{}/xrpc/com.atproto.server.createSession", srv.base_url()),
        &[("Content-Type", "application/json")],
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let session: Value = serde_json::from_slice(&r.body).unwrap();
    let bearer = format!("Bearer {}", session["accessJwt"].as_str().unwrap());
    let r = curl_anonymous(
        "POST",
        &format!(
            "{}/xrpc/com.atproto.server.createAppPassword",
            srv.base_url()
        ),
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &bearer),
        ],
        Some(br#"{"name":"ci"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let created: Value = serde_json::from_slice(&r.body).unwrap();
    created["password"].as_str().unwrap().to_owned()
}

/// `cmd` with `input` on stdin; returns whether it succeeded and its stdout + stderr.
fn with_stdin(cmd: &mut Command, input: &str) -> (bool, String) {
    let out = common::run_with_stdin(cmd, input);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn skopeo_and_podman_log_in_with_account_and_app_passwords() {
    if !required(TOOLS) {
        return;
    }
    let srv = Server::start();
    let c = Clients::new();
    c.without_login();
    let host = srv.host_port();
    let local = images::fresh_image(&c.path("src"), 2048);

    // Not logged in: the push is refused, the pull of a public image is not.
    let err = srv.must_fail(&mut c.skopeo_copy(
        &local.reference(),
        &format!("docker://{host}/admin/app:0"),
        &[],
    ));
    assert!(
        err.contains("unauthorized") || err.contains("denied"),
        "{err}"
    );

    // skopeo login with the account password; a wrong one is refused.
    let (ok, out) = with_stdin(
        c.skopeo().args([
            "login",
            "--tls-verify=false",
            "-u",
            "admin",
            "--password-stdin",
            &host,
        ]),
        "wrong\n",
    );
    assert!(!ok, "a wrong password logs in: {out}");
    let (ok, out) = with_stdin(
        c.skopeo().args([
            "login",
            "--tls-verify=false",
            "-u",
            "admin",
            "--password-stdin",
            &host,
        ]),
        &format!("{}\n", srv.password()),
    );
    assert!(ok, "{out}");
    srv.must(&mut c.skopeo_copy(
        &local.reference(),
        &format!("docker://{host}/admin/app:1"),
        &[],
    ));

    // podman login with an app password; skopeo shares its auth file.
    srv.must(c.podman().args(["logout", "--all"]));
    let app = app_password(&srv, "admin", srv.password());
    srv.must(c.podman().args([
        "login",
        "--tls-verify=false",
        "-u",
        "admin.atcr.test",
        "-p",
        &app,
        &host,
    ]));
    srv.must(&mut c.skopeo_copy(
        &local.reference(),
        &format!("docker://{host}/admin/app:2"),
        &[],
    ));

    // Logged out, a public image still pulls.
    srv.must(c.podman().args(["logout", "--all"]));
    let mut inspect = c.skopeo();
    inspect.args([
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{host}/admin/app:2"),
    ]);
    let raw = srv.must(&mut inspect);
    assert_eq!(common::sha256(raw.as_bytes()), local.manifest.digest);
}

#[test]
fn users_push_only_into_their_own_namespace() {
    if !required(TOOLS) {
        return;
    }
    let srv = Server::start();
    // Added while the daemon runs: through its admin socket, usable at once.
    srv.add_user("bob", "bob-password");
    let c = Clients::new();
    c.without_login();
    let host = srv.host_port();
    let local = images::fresh_image(&c.path("src"), 1024);
    let bob = ["--dest-creds", "bob:bob-password"];
    srv.must(&mut c.skopeo_copy(
        &local.reference(),
        &format!("docker://{host}/bob/app:1"),
        &bob,
    ));
    let err = srv.must_fail(&mut c.skopeo_copy(
        &local.reference(),
        &format!("docker://{host}/admin/bobs-app:1"),
        &bob,
    ));
    // Refused at once, with the reason.
    assert!(
        err.contains("bob may not push to admin/bobs-app: only the owner pushes into a namespace"),
        "{err}"
    );
    let admin = format!("admin:{}", srv.password());
    let err = srv.must_fail(&mut c.skopeo_copy(
        &local.reference(),
        &format!("docker://{host}/bob/admins-app:1"),
        &["--dest-creds", &admin],
    ));
    assert!(err.contains("denied"), "{err}");
    srv.must(&mut c.skopeo_copy(
        &local.reference(),
        &format!("docker://{host}/admin/app:1"),
        &["--dest-creds", &admin],
    ));
    // Anyone pulls bob's image from this public hold.
    let mut inspect = c.skopeo();
    inspect.args([
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{host}/bob/app:1"),
    ]);
    srv.must(&mut inspect);
}

#[test]
fn atcr_login_feeds_the_credential_helper() {
    if !required(TOOLS) {
        return;
    }
    let srv = Server::start();
    let c = Clients::new();
    c.without_login();
    let host = srv.host_port();
    let creds = c.path("credentials.json");
    let (ok, out) = with_stdin(
        Command::new(env!("CARGO_BIN_EXE_atcr"))
            .args([
                "login",
                &host,
                "-u",
                "admin",
                "--password-stdin",
                "--insecure",
            ])
            .env("ATCR_CREDENTIALS_FILE", &creds),
        &format!("{}\n", srv.password()),
    );
    assert!(ok, "{out}");
    assert!(out.contains("Login Succeeded"), "{out}");
    let stored: Value = serde_json::from_slice(&std::fs::read(&creds).unwrap()).unwrap();
    let secret = stored[&host]["Secret"].as_str().unwrap();
    assert_ne!(
        secret,
        srv.password(),
        "the account password is never stored"
    );

    // skopeo finds the helper through credHelpers and PATH.
    std::fs::write(
        c.path("auth.json"),
        json!({"auths": {}, "credHelpers": {host.clone(): "atcr"}}).to_string(),
    )
    .unwrap();
    let path = c.credential_helper_path();
    let local = images::fresh_image(&c.path("src"), 1024);
    srv.must(
        c.skopeo_copy(
            &local.reference(),
            &format!("docker://{host}/admin/helped:1"),
            &[],
        )
        .env("PATH", &path)
        .env("ATCR_CREDENTIALS_FILE", &creds),
    );
    // The helper speaks the protocol to anyone asking.
    let (ok, listed) = with_stdin(
        Command::new(c.path("bin").join("docker-credential-atcr"))
            .arg("list")
            .env("ATCR_CREDENTIALS_FILE", &creds),
        "",
    );
    assert!(ok);
    let listed: Value = serde_json::from_str(listed.trim()).unwrap();
    assert_eq!(listed[&host], "admin.atcr.test");
}

#[test]
fn atcr_login_speaks_plain_http_to_loopback_only() {
    let srv = Server::start();
    let dir = common::temp_dir("atcr-login-");
    let login = |registry: &str| {
        with_stdin(
            Command::new(env!("CARGO_BIN_EXE_atcr"))
                .args(["login", registry, "-u", "admin", "--password-stdin"])
                .env("ATCR_CREDENTIALS_FILE", dir.path().join("credentials.json")),
            &format!("{}\n", srv.password()),
        )
    };
    // A loopback node without TLS, named without a scheme: plain HTTP, as docker does, said
    // on stderr.
    let (ok, out) = login(&srv.host_port());
    assert!(ok, "{out}");
    assert!(
        out.contains("speaks plain HTTP: using it, as docker does for loopback addresses"),
        "{out}"
    );
    assert!(out.contains("Login Succeeded"), "{out}");
    // Asked for HTTPS explicitly: refused, with the flag that helps (not --ca-file).
    let (ok, out) = login(&format!("https://{}", srv.host_port()));
    assert!(!ok, "{out}");
    assert!(
        out.contains("speaks plain HTTP, not HTTPS: for a node without TLS pass --insecure")
            && !out.contains("--ca-file"),
        "{out}"
    );
}
