//! The PDS of the built binary driven by the official `@atproto/*` npm libraries: the node
//! tests in `tests/interop/*.mjs` (node:test) run against `atcr serve` with real accounts.
//!
//! They need Node.js 22 and the pinned packages in `tests/interop/` (`tests/interop/setup.sh`
//! installs both; `scripts/test` runs it). Without them each test fails, unless
//! `ATCR_SKIP_CLIENT_TESTS=1`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Server;
use common::interop::interop_dir;
use serde_json::{Value, json};

/// The Node.js 22 binary, or `None` when the client tests are skipped.
fn node() -> Option<PathBuf> {
    common::interop::node("@atproto/api")
}

/// A running node with the accounts `alice` and `bob` (the node's `did:web:localhost%3APORT` and
/// the users' DID documents name its port).
struct Node {
    server: Server,
    users: Vec<Value>,
}

impl Node {
    fn start() -> Node {
        Node::start_with(&[])
    }

    /// `start` with `ATCR_*` settings for the server.
    fn start_with(env: &[(&str, &str)]) -> Node {
        // The users are added through the running daemon (its admin socket).
        let server = Server::start_with(env);
        let users = ["alice", "bob"]
            .into_iter()
            .map(|name| {
                let password = format!("{name}-interop-pw");
                let out = server.cli(
                    &["user", "add", name, "--password-stdin"],
                    &format!("{password}\n"),
                );
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success(),
                    "atcr user add {name}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let (handle, did) = stdout
                    .trim()
                    .split_once('\t')
                    .unwrap_or_else(|| panic!("atcr user add printed {stdout:?}"));
                json!({"name": name, "handle": handle, "did": did, "password": password})
            })
            .collect();
        Node { server, users }
    }

    fn port(&self) -> u16 {
        self.server
            .base_url()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("base URL has a port")
    }

    /// Runs `node --test tests/interop/FILE` against this node; panics with node's output and
    /// the server's log unless every test passed.
    fn run(&self, file: &str) {
        self.run_with(file, &[]);
    }

    /// `run` with extra environment variables for the script.
    fn run_with(&self, file: &str, env: &[(&str, String)]) {
        let Some(node) = node() else { return };
        let dir = interop_dir();
        let bin = node.parent().expect("node/bin");
        let path = std::env::join_paths(std::iter::once(bin.to_path_buf()).chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
        ))
        .expect("PATH");
        let port = self.port();
        let mut cmd = Command::new(&node);
        cmd.args([
            "--test",
            "--test-reporter=spec",
            "--test-timeout=120000",
            file,
        ])
        .current_dir(&dir)
        .env("PATH", path)
        .env("ATCR_URL", format!("http://localhost:{port}"))
        .env("ATCR_NODE_DID", format!("did:web:localhost%3A{port}"))
        .env("ATCR_USERS", Value::from(self.users.clone()).to_string())
        .env(
            "ATCR_LEXICONS",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("lexicons"),
        )
        .env_remove("NODE_OPTIONS");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = common::run(&mut cmd);
        assert!(
            out.status.success(),
            "node tests failed: {}\n--- server log (last lines):\n{}",
            common::describe(&cmd, &out),
            self.server.log_tail()
        );
        eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    }
}

/// `@atproto/api`'s `AtpAgent`: login, resume, refresh, every repo operation, blobs, app
/// passwords.
#[test]
fn atp_agent() {
    Node::start().run("agent.mjs");
}

/// `@atproto/repo` + `@atproto/identity`: `sync.getRepo` of every repository verified against
/// the `#atproto` key of its DID document (did:plc via the node's directory, the node's did:web).
#[test]
fn repo_verification() {
    Node::start().run("repo.mjs");
}

/// `subscribeRepos` through `@atproto/xrpc-server` and `@atproto/sync`: signatures, per-op
/// proofs, the sync 1.1 inductive proof (`prevData`), gap-free sequence numbers.
#[test]
fn firehose() {
    Node::start().run("firehose.mjs");
}

/// The firehose's window through the reference client: with `pds.events_keep_secs = 1`, a
/// cursor older than the oldest kept event gets `#info OutdatedCursor`, then the oldest kept
/// events (`@atproto/xrpc-server`'s `Subscription`, commits checked by `@atproto/sync`).
#[test]
fn firehose_window() {
    Node::start_with(&[("ATCR_PDS_EVENTS_KEEP_SECS", "1")]).run("firehose-window.mjs");
}

/// The PDS's block collection: after many updates and deletes, `atcr gc` (through the admin
/// socket) deletes the blocks no head reaches and `pds.redb`'s live size goes down; offline it
/// also compacts the file, which shrinks; then `@atproto/repo` still verifies both repositories (one shares a record block with the
/// other's deleted record), a `getRecord` proof verifies and `getRepo` since a collected
/// revision answers a superset (`collect.mjs`).
#[test]
fn pds_blocks_collected_and_repositories_still_verify() {
    if node().is_none() {
        return;
    }
    let mut node = Node::start();
    let state = tempfile::NamedTempFile::new().expect("temp file");
    let state = ("ATCR_STATE", state.path().display().to_string());
    node.run_with(
        "collect.mjs",
        &[("ATCR_PHASE", "write".into()), state.clone()],
    );
    let gc = |args: &[&str]| {
        let out = node.server.cli(args, "");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{out:?}");
        // "…; deleted N PDS blocks (B bytes), pds.redb live size L bytes (file F bytes)…"
        let number_before = |word: &str| -> u64 {
            let at = text
                .find(word)
                .unwrap_or_else(|| panic!("no {word:?} in {text:?}"));
            text[..at]
                .split_whitespace()
                .last()
                .and_then(|n| n.parse().ok())
                .expect(word)
        };
        let live = text
            .split("live size ")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no live size in {text:?}"));
        (number_before(" PDS blocks"), live)
    };
    let (would, before) = gc(&["gc", "--dry-run"]);
    assert!(would > 100, "{would} blocks to collect after 160 commits");
    let (deleted, after) = gc(&["gc"]);
    assert_eq!(deleted, would);
    assert!(
        after < before,
        "pds.redb's live size: {before} → {after} bytes"
    );
    assert_eq!(gc(&["gc"]).0, 0, "nothing left to collect");

    // Offline, `atcr gc` compacts the file too; the node starts again on it, same port.
    assert!(node.server.stop(), "atcr serve did not stop cleanly");
    let file = node.server.data_dir().join("pds.redb");
    let size = || std::fs::metadata(&file).expect("pds.redb").len();
    let uncompacted = size();
    let out = node.server.cli(&["gc"], "");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("pds.redb compacted"),
        "{out:?}"
    );
    assert!(
        size() < uncompacted,
        "pds.redb: {uncompacted} → {} bytes",
        size()
    );
    eprintln!(
        "{deleted} blocks collected; live size {before} → {after} bytes; file {uncompacted} → {} \
         bytes compacted",
        size()
    );
    node.server.restart_same_port();
    node.run_with("collect.mjs", &[("ATCR_PHASE", "verify".into()), state]);
}

/// `@atproto/lexicon`: stored `io.atcr.*` records are valid; invalid ones are refused.
#[test]
fn lexicon() {
    Node::start().run("lexicon.mjs");
}

/// The registry on the AT Protocol: alice pushes with skopeo (a tagged image under two tags, a
/// multi-arch index); `@atproto/repo` verifies her repository, `@atproto/lexicon` validates
/// every `io.atcr.*` record, `manifestBlob` hashes to the digest, tags name what the registry
/// serves; records alice writes with `@atproto/api` pull like pushes.
#[test]
fn registry_records() {
    use common::clients::{Clients, required};
    use common::images;
    if node().is_none() || !required(&["skopeo"]) {
        return;
    }
    let node = Node::start();
    let srv = &node.server;
    let c = Clients::new();
    c.without_login();
    let host = srv.host_port();
    let creds = format!("alice:{}", node.users[0]["password"].as_str().unwrap());
    let flags = ["--dest-creds", creds.as_str()];
    let single = images::fresh_image(&c.path("single"), 4096);
    for tag in ["1.0", "latest"] {
        srv.must(&mut c.skopeo_copy(
            &single.reference(),
            &format!("docker://{host}/alice/app:{tag}"),
            &flags,
        ));
    }
    let multi = images::multi_arch_image(&c.path("multi"), images::fresh_seed());
    srv.must(&mut c.skopeo_copy(
        &multi.reference(),
        &format!("docker://{host}/alice/multi:1"),
        &["--all", "--dest-creds", creds.as_str()],
    ));
    let pushed = json!({
        "app": {"1.0": single.manifest.digest, "latest": single.manifest.digest},
        "multi": {"1": multi.manifest.digest},
    });
    node.run_with("registry.mjs", &[("ATCR_PUSHED", pushed.to_string())]);
}

/// A child process killed (by PID) however the test ends.
struct Upstream(std::process::Child);

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// With `pds.plc_upstream` set, the node sends its users' did:plc operations to the reference
/// PLC directory (`@did-plc/server`, which verifies them), and an account the upstream cannot
/// take is not created.
#[test]
fn plc_operations_reach_the_upstream_directory() {
    use std::io::BufRead;
    let Some(node) = node() else { return };
    let mut upstream = Upstream(
        Command::new(&node)
            .arg("plc-upstream.mjs")
            .current_dir(interop_dir())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("cannot start node"),
    );
    let mut line = String::new();
    std::io::BufReader::new(upstream.0.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("the upstream directory printed no URL");
    let url = line.trim().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url:?}");

    // The first start's admin account, and one added through the running daemon.
    let srv = Server::start_with(&[("ATCR_PDS_PLC_UPSTREAM", &url)]);
    let out = srv.cli(&["user", "add", "carol", "--password-stdin"], "carol-pw\n");
    assert!(out.status.success(), "{out:?}\n{}", srv.log_tail());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let did = stdout
        .trim()
        .split('\t')
        .nth(1)
        .expect("handle and DID")
        .to_owned();
    let get = |url: String| {
        let r = common::clients::curl_anonymous("GET", &url, &[], None);
        assert_eq!(r.status, 200, "{url}: {}", r.text());
        serde_json::from_str::<Value>(&r.text()).expect("JSON")
    };
    // The same identity data (keys, handle, endpoint) there as here.
    let theirs = get(format!("{url}/{did}/data"));
    let ours = get(format!("{}/{did}/data", srv.base_url()));
    assert_eq!(theirs, ours, "the upstream holds the node's data for {did}");
    assert_eq!(theirs["alsoKnownAs"], json!(["at://carol.atcr.test"]));
    let doc = get(format!("{url}/{did}"));
    assert_eq!(doc["id"], json!(did));
    let audit = get(format!("{url}/{did}/log/audit"));
    let local = get(format!("{}/{did}/log", srv.base_url()));
    assert_eq!(audit[0]["operation"], local[0]);
    assert!(srv.log_tail().contains("PLC operation forwarded"));

    // Upstream gone: no account.
    drop(upstream);
    let out = srv.cli(
        &["user", "add", "dave", "--password-stdin"],
        "dave-password\n",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("PLC directory {url}")), "{err}");
    let out = srv.cli(&["user", "list"], "");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("dave"));
}

/// The web pages in headless Chromium driven over the devtools protocol (`browser.mjs`, npm
/// `puppeteer-core`): sign in, search (with a typo) for the image alice pushed, open it, star
/// it, open its manifest page, create an app password on the settings page, sign out; then
/// skopeo logs in with that app password. Screenshots stay in `target/test-artifacts/`.
#[test]
fn a_browser_searches_stars_and_makes_an_app_password_skopeo_uses() {
    if node().is_none() || !common::clients::required(&["chromium", "skopeo"]) {
        return;
    }
    let node = Node::start();
    // Something to search for and star: alice's image.
    let c = common::clients::Clients::new();
    c.without_login();
    node.server.must(&mut c.skopeo_copy(
        &common::images::busybox_image(&c.path("shop")).reference(),
        &format!("docker://{}/alice/browser-shop:v1", node.server.host_port()),
        &["--dest-creds", "alice:alice-interop-pw"],
    ));
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts directory");
    let file = artifacts.join("app-password.txt");
    let _ = std::fs::remove_file(&file);
    node.run_with(
        "browser.mjs",
        &[("ATCR_ARTIFACTS", artifacts.display().to_string())],
    );
    let password = std::fs::read_to_string(&file).expect("the browser test wrote no app password");
    let out = common::run(c.skopeo().args([
        "login",
        "--tls-verify=false",
        "-u",
        "alice",
        "-p",
        password.trim(),
        &node.server.host_port(),
    ]));
    assert!(out.status.success(), "{out:?}");
}

/// The hold's upload XRPC with service tokens `AtpAgent` requested from the node's PDS
/// (`getServiceAuth`), and the blob read back through `com.atproto.sync.getBlob`.
#[test]
fn hold_service_auth() {
    Node::start().run("hold.mjs");
}
