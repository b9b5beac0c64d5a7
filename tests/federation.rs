//! Users of another PDS: the reference PDS (`@atproto/pds`, with its own `@did-plc/server`
//! directory, `tests/interop/reference-pds.mjs`) on 127.0.0.1, and the built binary configured
//! with that directory as `pds.plc_upstream`, that PDS as `identity.handle_resolver` (loopback
//! has no DNS for its handles) and loopback as `identity.lan_hosts`. skopeo logs in with a remote handle and an app password of the
//! reference PDS (see `docs/federation.md`).
//!
//! Needs Node.js 22 and the pinned packages in `tests/interop/` (`tests/interop/setup.sh`) and
//! skopeo and curl; without them the test fails, unless `ATCR_SKIP_CLIENT_TESTS=1`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine;
use common::clients::{Clients, HttpResponse, curl_anonymous, required};
use common::interop::{interop_dir, node};
use common::{Server, images};
use serde_json::Value;

/// How long the reference PDS may take to start and create its accounts.
const START_TIMEOUT: Duration = Duration::from_mins(3);

/// The reference PDS as a child process, killed (by its PID) when dropped.
struct ReferencePds {
    child: Child,
    info: Value,
    _dir: tempfile::TempDir,
}

impl ReferencePds {
    fn start(node: &Path) -> ReferencePds {
        let dir = common::temp_dir("atcr-refpds-");
        let log = std::fs::File::create(dir.path().join("log")).expect("log file");
        let mut child = Command::new(node)
            .arg("reference-pds.mjs")
            .current_dir(interop_dir())
            .env("ATCR_PDS_DIR", dir.path())
            .env_remove("NODE_OPTIONS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("cannot start node");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(START_TIMEOUT).unwrap_or_default();
        let Ok(info) = serde_json::from_str::<Value>(&line) else {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
            panic!("the reference PDS did not start: {line:?}\n{log}");
        };
        ReferencePds {
            child,
            info,
            _dir: dir,
        }
    }

    fn user(&self, i: usize) -> (&str, &str, &str) {
        let u = &self.info["users"][i];
        (
            u["handle"].as_str().expect("handle"),
            u["did"].as_str().expect("did"),
            u["appPassword"].as_str().expect("app password"),
        )
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ReferencePds {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `/auth/token` for `scopes` with Basic credentials.
fn token(srv: &Server, user: &str, password: &str, scopes: &[&str]) -> HttpResponse {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut url = format!(
        "{}/auth/token?service=localhost:{}",
        srv.base_url(),
        srv.host_port().rsplit(':').next().unwrap_or_default()
    );
    for s in scopes {
        url.push_str("&scope=");
        url.push_str(s);
    }
    curl_anonymous(
        "GET",
        &url,
        &[("Authorization", &format!("Basic {basic}"))],
        None,
    )
}

fn error_code(r: &HttpResponse) -> String {
    let v: Value = serde_json::from_slice(&r.body).unwrap_or_default();
    v["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn users_of_another_pds_log_in_with_an_app_password_and_pull() {
    if !required(&["skopeo", "curl"]) {
        return;
    }
    let Some(node) = node("@atproto/pds") else {
        return;
    };
    let mut remote = ReferencePds::start(&node);
    let plc = remote.info["plc"].as_str().expect("plc URL").to_owned();
    let resolver = format!("http://127.0.0.1:{}", remote.info["port"]);
    let srv = Server::start_with(&[
        ("ATCR_PDS_PLC_UPSTREAM", &plc),
        ("ATCR_IDENTITY_HANDLE_RESOLVER", &resolver),
        // The reference PDS is on this machine (its documents name http://localhost:PORT):
        // named here, or the node would refuse it, as it refuses anyone's DID document naming
        // a loopback or private address.
        ("ATCR_IDENTITY_LAN_HOSTS", "localhost,127.0.0.1"),
    ]);
    let (carol, carol_did, carol_pw) = remote.user(0);
    let (carol, carol_did, carol_pw) =
        (carol.to_owned(), carol_did.to_owned(), carol_pw.to_owned());
    let (dave, _, dave_pw) = remote.user(1);
    let (dave, dave_pw) = (dave.to_owned(), dave_pw.to_owned());

    // A local user's image on a private hold.
    let c = Clients::new();
    let local = images::fresh_image(&c.path("src"), 4096);
    let image = format!("docker://{}/admin/app:1", srv.host_port());
    srv.must(&mut c.skopeo_copy(&local.reference(), &image, &[]));
    admin(&srv, &["hold", "set", "--public", "false"]);

    // The remote user logs in with the app password of their PDS...
    c.without_login();
    let login = |user: &str, password: &str| {
        let mut cmd = c.skopeo();
        cmd.args([
            "login",
            "--tls-verify=false",
            "-u",
            user,
            "--password-stdin",
        ])
        .arg(srv.host_port());
        common::run_with_stdin(&mut cmd, &format!("{password}\n"))
    };
    let out = login(&carol, &carol_pw);
    assert!(out.status.success(), "{out:?}\n{}", srv.log_tail());
    // ... but pulls only what the hold lets them: nothing until they are crew.
    let back = c.path("back");
    let pull = c
        .skopeo_copy(&image, &format!("oci:{}:pulled", back.display()), &[])
        .output()
        .unwrap();
    assert!(!pull.status.success(), "a private hold let a stranger pull");
    admin(&srv, &["crew", "add", &carol_did, "--role", "read"]);
    srv.must(&mut c.skopeo_copy(&image, &format!("oci:{}:pulled", back.display()), &[]));
    let (desc, _) = images::read_tag(&back, "pulled");
    assert_eq!(desc.digest, local.manifest.digest);

    // A wrong app password is refused by the real client too.
    let out = login(&carol, "wrong-password");
    assert!(!out.status.success(), "{out:?}");

    // Their pushes are refused, with the reason.
    let push = c
        .skopeo_copy(
            &local.reference(),
            &format!("docker://{}/{carol}/app:1", srv.host_port()),
            &[],
        )
        .output()
        .unwrap();
    assert!(!push.status.success(), "a remote user pushed");
    let scope = format!("repository:{carol}/app:pull,push");
    let granted = token(&srv, &carol_did, &carol_pw, &[&scope]);
    assert_eq!(granted.status, 200, "{}", granted.text());
    let bearer: Value = serde_json::from_slice(&granted.body).unwrap();
    let upload = curl_anonymous(
        "POST",
        &format!("{}/v2/{carol}/app/blobs/uploads/", srv.base_url()),
        &[(
            "Authorization",
            &format!("Bearer {}", bearer["token"].as_str().unwrap()),
        )],
        None,
    );
    assert_eq!(error_code(&upload), "DENIED", "{}", upload.text());
    assert!(
        upload.text().contains("not supported yet"),
        "{}",
        upload.text()
    );

    // A wrong app password is refused, and counts as a local one does (pds::limiter: five free
    // failures, then a wait from the next attempt on): past them even the right one waits.
    for i in 0..6 {
        let r = token(&srv, &dave, "wrong-password", &[]);
        assert_eq!(r.status, 401, "attempt {i}: {}", r.text());
    }
    let limited = token(&srv, &dave, "wrong-password", &[]);
    assert_eq!(limited.status, 429, "{}", limited.text());
    assert!(limited.header("retry-after").is_some());
    assert_eq!(token(&srv, &dave, &dave_pw, &[]).status, 429);

    // The remote PDS down: a password checked a moment ago still works (it is remembered); one
    // not checked yet cannot be, which is said (503), not taken for a wrong one.
    remote.stop();
    let cached = token(&srv, &carol, &carol_pw, &[]);
    assert_eq!(cached.status, 200, "{}", cached.text());
    let unchecked = token(&srv, &carol, "another-password", &[]);
    assert_eq!(unchecked.status, 503, "{}", unchecked.text());
    assert_eq!(
        error_code(&unchecked),
        "UNAVAILABLE",
        "{}",
        unchecked.text()
    );
    let out = login(&carol, "another-password");
    assert!(!out.status.success());
}

/// `atcr ARGS` against the running server (its admin socket); panics if it fails.
fn admin(srv: &Server, args: &[&str]) {
    let out = srv.cli(args, "");
    assert!(out.status.success(), "atcr {args:?}: {out:?}");
}
