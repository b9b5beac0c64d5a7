//! The node as a *confidential* ATProto OAuth client, against the reference PDS: served over
//! HTTPS at a host name (`atcr.internal`, mapped to 127.0.0.1 for chromium and for the reference
//! PDS, which trusts the test's CA), the node publishes client metadata naming
//! `private_key_jwt` and its key set, and authenticates PAR, the code exchange and the
//! revocation with assertions signed by its client key. The reference PDS refuses a
//! confidential client's PAR without a valid assertion, so the sign-in succeeding is the proof.
//! (The development client on loopback is `tests/federation.rs`'s.)
//!
//! Needs Node.js 22 and the pinned packages in `tests/interop/`, skopeo, curl and chromium;
//! without them the test fails, unless `ATCR_SKIP_CLIENT_TESTS=1`.

mod common;

use std::path::Path;
use std::process::Command;

use common::clients::{Clients, required};
use common::interop::node;
use common::reference_pds::{ReferencePds, oauth_web};
use common::{Server, images};
use serde_json::Value;

/// The host name the node is served at.
const HOST: &str = "atcr.internal";

/// A CA, and a certificate of it for [`HOST`]: (CA PEM, chain PEM, key PEM) files in `dir`.
fn certificates(dir: &Path) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "atcr federation test CA");
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec![HOST.to_owned()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, HOST);
    let issuer = Issuer::from_params(&ca, &ca_key);
    let leaf_pem = leaf.signed_by(&key, &issuer).unwrap().pem();
    let write = |name: &str, contents: &str| {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path.display().to_string()
    };
    (
        write("ca.pem", &ca_pem),
        write("chain.pem", &format!("{leaf_pem}{ca_pem}")),
        write("key.pem", &key.serialize_pem()),
    )
}

#[test]
fn a_confidential_client_signs_in_at_the_reference_pds() {
    if !required(&["skopeo", "curl", "chromium"]) {
        return;
    }
    let Some(node) = node("@atproto/pds") else {
        return;
    };
    let certs = common::temp_dir("atcr-oauth-certs-");
    let (ca, chain, key) = certificates(certs.path());
    let remote = ReferencePds::start_with(
        &node,
        &[("NODE_EXTRA_CA_CERTS", &ca), ("ATCR_PDS_MAP_HOSTS", HOST)],
    );
    let plc = remote.info["plc"].as_str().expect("plc URL").to_owned();
    let resolver = format!("http://127.0.0.1:{}", remote.info["port"]);
    let srv = Server::start_with(&[
        ("ATCR_PDS_PLC_UPSTREAM", &plc),
        ("ATCR_IDENTITY_HANDLE_RESOLVER", &resolver),
        ("ATCR_IDENTITY_LAN_HOSTS", "localhost,127.0.0.1"),
        ("ATCR_TLS_ENABLED", "true"),
        ("ATCR_TLS_LISTEN", "127.0.0.1:0"),
        ("ATCR_TLS_CERT", &chain),
        ("ATCR_TLS_KEY", &key),
    ]);
    let https_port = (0..100)
        .find_map(|_| {
            let port = srv
                .log_tail()
                .lines()
                .find(|l| l.contains("scheme=https"))
                .and_then(|l| l.split("addr=").nth(1))
                .and_then(|a| a.split_whitespace().next())
                .and_then(|a| a.rsplit(':').next())
                .map(str::to_owned);
            if port.is_none() {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            port
        })
        .expect("the HTTPS listener's address in the log");
    let base = format!("https://{HOST}:{https_port}");
    let (carol, carol_did, carol_pw) = remote.user_with_password(0);

    // What the node publishes as a client, read as the reference PDS reads it.
    let get = |path: &str| -> Value {
        let out = common::run(
            Command::new("curl")
                .args(["-sS", "--fail", "--cacert", &ca])
                .args(["--resolve", &format!("{HOST}:{https_port}:127.0.0.1")])
                .arg(format!("{base}{path}")),
        );
        assert!(out.status.success(), "{path}: {out:?}");
        serde_json::from_slice(&out.stdout).expect("JSON")
    };
    let metadata = get("/oauth/client-metadata.json");
    assert_eq!(
        metadata["client_id"],
        format!("{base}/oauth/client-metadata.json")
    );
    assert_eq!(metadata["token_endpoint_auth_method"], "private_key_jwt");
    assert_eq!(metadata["jwks_uri"], format!("{base}/oauth/jwks.json"));
    let jwks = get("/oauth/jwks.json");
    let published = &jwks["keys"][0];
    assert_eq!(
        (&published["kty"], &published["crv"]),
        (&"EC".into(), &"P-256".into())
    );
    assert!(published.get("d").is_none(), "the private key is published");

    // A repository to star: a local user's image on a public hold.
    let c = Clients::new();
    let local = images::fresh_image(&c.path("src"), 4096);
    let image = format!("docker://{}/admin/app:1", srv.host_port());
    srv.must(&mut c.skopeo_copy(&local.reference(), &image, &[]));
    let out = srv.cli(&["hold", "set", "--public", "true"], "");
    assert!(out.status.success(), "{out:?}");

    // Chromium signs in with carol's handle at the reference PDS's own authorization page,
    // comes back signed in and stars the repository; the star lands in carol's repository.
    let rules = format!("MAP {HOST} 127.0.0.1");
    let chromium_args = serde_json::json!([
        format!("--host-resolver-rules={rules}"),
        "--ignore-certificate-errors"
    ]);
    let args = chromium_args.to_string();
    let env = [("ATCR_CHROMIUM_ARGS", args.as_str())];
    let page = (base.as_str(), "admin/app");
    let web = oauth_web(&node, &srv, page, (carol, carol_pw), Some(&remote), &env);
    assert_eq!(web["signedInAs"], carol, "{web}");
    assert_eq!(web["starred"], true, "{web}");
    assert_eq!(web["replayStatus"], 400, "{web}");
    let records = remote.records(&node, carol_did);
    let stars = records["stars"].as_array().expect("stars");
    assert_eq!(stars.len(), 1, "{records}");
    assert!(
        srv.log_tail()
            .contains("signed in to the pages through OAuth"),
        "{}",
        srv.log_tail()
    );
    // Its tokens expired at the reference PDS (two weeks unused): the node's refresh is
    // refused, the session ends, and the page asks to sign in again; the star stays.
    let after = web["afterExpiry"].as_str().unwrap_or_default();
    assert!(
        after.contains("Your session at your PDS has ended"),
        "{web}"
    );
    assert!(srv.log_tail().contains("an OAuth refresh was refused"));
    let records = remote.records(&node, carol_did);
    assert_eq!(
        records["stars"].as_array().map(Vec::len),
        Some(1),
        "{records}"
    );

    cli_login_and_push(&node, &remote, &srv, &c, &local);
}

/// `atcr login HOST --oauth` for dave (never logged in with a password): chromium follows the
/// link the command printed, dave signs in at the reference PDS and allows the command, which
/// keeps the node's secret; skopeo pushes with it, and the records land in dave's repository,
/// written with his OAuth session (the only one he has).
fn cli_login_and_push(
    node: &Path,
    remote: &ReferencePds,
    srv: &Server,
    c: &Clients,
    local: &images::LocalImage,
) {
    use std::io::{BufRead, BufReader};
    let (dave, dave_did, dave_pw) = remote.user_with_password(1);
    let out = srv.cli(&["crew", "add", dave_did, "--role", "write"], "");
    assert!(out.status.success(), "{out:?}");
    let credentials = c.path("credentials.json");
    let mut cli = Command::new(env!("CARGO_BIN_EXE_atcr"))
        .args(["login", &srv.host_port(), "--oauth"])
        .env("ATCR_CREDENTIALS_FILE", &credentials)
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("atcr login");
    let mut lines = BufReader::new(cli.stdout.take().expect("stdout"));
    let link = (0..5)
        .find_map(|_| {
            let mut line = String::new();
            lines.read_line(&mut line).ok()?;
            line.starts_with("http").then(|| line.trim().to_owned())
        })
        .expect("the link atcr login prints");
    let out = common::run(
        Command::new(node)
            .args(["oauth-cli.mjs", &link, dave, dave_pw])
            .current_dir(common::interop::interop_dir())
            .env_remove("NODE_OPTIONS"),
    );
    assert!(
        out.status.success(),
        "oauth-cli.mjs: {out:?}\n{}",
        srv.log_tail()
    );
    let browser: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert!(
        browser["allowPage"]
            .as_str()
            .unwrap_or_default()
            .contains(dave),
        "{browser}"
    );
    assert_eq!(
        browser["listenerText"],
        "atcr login: done. You can close this tab."
    );
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut lines, &mut rest);
    let settings = browser["settings"].as_str().unwrap_or_default();
    assert!(settings.contains("keeps for you: 1."), "{browser}");
    assert!(!settings.contains("Create an app password"), "{browser}");
    let done = cli.wait_with_output().expect("atcr login");
    assert!(done.status.success(), "{done:?}\n{rest}");
    let stored: Value = serde_json::from_slice(&std::fs::read(&credentials).unwrap()).unwrap();
    let kept = &stored[srv.host_port()];
    assert_eq!(kept["Username"], dave_did, "{stored}");
    let secret = kept["Secret"].as_str().expect("the secret").to_owned();
    assert!(secret.starts_with("atcr-cli-"));

    // skopeo logs in with it as the credential helper would give it (his DID and the secret)
    // and pushes into dave's namespace; the records are on his PDS.
    c.without_login();
    let mut login = c.skopeo();
    login.args([
        "login",
        "--tls-verify=false",
        "-u",
        dave_did,
        "--password-stdin",
    ]);
    let out = common::run_with_stdin(login.arg(srv.host_port()), &format!("{secret}\n"));
    assert!(out.status.success(), "{out:?}\n{}", srv.log_tail());
    let image = format!("docker://{}/{dave}/app:1", srv.host_port());
    srv.must(&mut c.skopeo_copy(&local.reference(), &image, &[]));
    let records = remote.records(node, dave_did);
    let tags = records["tags"].as_array().expect("tags");
    assert!(tags.iter().any(|t| t["value"]["tag"] == "1"), "{records}");
    // His repository's page is his to write, on his PDS with any client (io.atcr.repo.page):
    // its README shows on atcr's page within seconds (the node follows his PDS).
    let readme = "Built nightly by the team's CI.";
    let page = serde_json::json!({
        "repository": "app",
        "description": readme,
        "createdAt": "2026-12-07T00:00:00.000Z",
        "updatedAt": "2026-12-07T00:00:00.000Z",
    });
    remote.put_record(node, (dave, dave_pw), ("io.atcr.repo.page", "app"), &page);
    let page_url = format!("{}/r/{dave}/app", srv.base_url());
    srv.wait_until(10, "dave's README is not on his repository's page", || {
        common::clients::curl_anonymous("GET", &page_url, &[], None)
            .text()
            .contains(readme)
    });
    // The secret is dave's alone.
    let mut other = c.skopeo();
    let (carol, _, _) = remote.user(0);
    other.args([
        "login",
        "--tls-verify=false",
        "-u",
        carol,
        "--password-stdin",
    ]);
    let out = common::run_with_stdin(other.arg(srv.host_port()), &format!("{secret}\n"));
    assert!(!out.status.success(), "dave's secret logged carol in");
}
