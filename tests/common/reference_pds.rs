//! The reference PDS (`@atproto/pds`, with its own `@did-plc/server` directory,
//! `tests/interop/reference-pds.mjs`) on 127.0.0.1, as another PDS for `tests/federation.rs`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use super::interop::interop_dir;

/// How long the reference PDS may take to start and create its accounts.
const START_TIMEOUT: Duration = Duration::from_mins(3);

/// How long the reference PDS may take to stop or start again.
const COMMAND_TIMEOUT: Duration = Duration::from_mins(1);

/// The reference PDS as a child process, killed (by its PID) when dropped.
pub struct ReferencePds {
    child: Child,
    /// Commands to `reference-pds.mjs` (`stop`, `start`).
    commands: Option<ChildStdin>,
    /// The lines it prints after the first.
    answers: mpsc::Receiver<String>,
    /// What `reference-pds.mjs` printed: `plc`, `url`, `port`, `admin`, `users`.
    pub info: Value,
    dir: tempfile::TempDir,
}

impl ReferencePds {
    #[must_use]
    pub fn start(node: &Path) -> ReferencePds {
        ReferencePds::start_with(node, &[])
    }

    /// [`ReferencePds::start`] with extra environment for `reference-pds.mjs` (e.g.
    /// `NODE_EXTRA_CA_CERTS`, `ATCR_PDS_MAP_HOSTS`).
    #[must_use]
    pub fn start_with(node: &Path, env: &[(&str, &str)]) -> ReferencePds {
        let dir = super::temp_dir("atcr-refpds-");
        let log = std::fs::File::create(dir.path().join("log")).expect("log file");
        let mut child = Command::new(node)
            .arg("reference-pds.mjs")
            .current_dir(interop_dir())
            .env("ATCR_PDS_DIR", dir.path())
            .env_remove("NODE_OPTIONS")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("cannot start node");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let line = rx.recv_timeout(START_TIMEOUT).unwrap_or_default();
        let Ok(info) = serde_json::from_str::<Value>(&line) else {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
            panic!("the reference PDS did not start: {line:?}\n{log}");
        };
        ReferencePds {
            commands: child.stdin.take(),
            child,
            answers: rx,
            info,
            dir,
        }
    }

    /// Stops the PDS alone (its PLC directory stays up), as an outage of the user's PDS.
    pub fn pause(&mut self) {
        self.command("stop");
    }

    /// Starts the PDS again after [`ReferencePds::pause`], on the same port and data.
    pub fn resume(&mut self) {
        self.command("start");
    }

    /// From now on every `#commit` frame of this PDS's firehose is signed by another key
    /// (`tests/interop/tamper.mjs`), or, with `false`, no longer.
    pub fn tamper(&mut self, on: bool) {
        self.command(if on { "tamper on" } else { "tamper off" });
    }

    fn command(&mut self, command: &str) {
        let stdin = self.commands.as_mut().expect("the reference PDS runs");
        writeln!(stdin, "{command}").expect("write to the reference PDS");
        stdin.flush().expect("write to the reference PDS");
        let answer = self.answers.recv_timeout(COMMAND_TIMEOUT);
        assert_eq!(answer.as_deref(), Ok("ok"), "reference PDS: {command}");
    }

    #[must_use]
    pub fn user(&self, i: usize) -> (&str, &str, &str) {
        let u = &self.info["users"][i];
        (
            u["handle"].as_str().expect("handle"),
            u["did"].as_str().expect("did"),
            u["appPassword"].as_str().expect("app password"),
        )
    }

    /// User `i`'s handle, DID and account password (not an app password: for the user's own
    /// client).
    #[must_use]
    pub fn user_with_password(&self, i: usize) -> (&str, &str, &str) {
        let u = &self.info["users"][i];
        (
            u["handle"].as_str().expect("handle"),
            u["did"].as_str().expect("did"),
            u["password"].as_str().expect("password"),
        )
    }

    /// The PDS's URL (`http://localhost:PORT`).
    #[must_use]
    pub fn url(&self) -> &str {
        self.info["url"].as_str().expect("url")
    }

    /// The `io.atcr.*` records of `did` on this PDS (`tests/interop/remote-records.mjs`: read
    /// with `@atproto/api`, validated with `@atproto/lexicon`).
    #[must_use]
    pub fn records(&self, node: &Path, did: &str) -> Value {
        let out = super::run(
            Command::new(node)
                .args(["remote-records.mjs", self.url(), did])
                .current_dir(interop_dir())
                .env(
                    "ATCR_LEXICONS",
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("lexicons"),
                )
                .env_remove("NODE_OPTIONS"),
        );
        assert!(out.status.success(), "remote-records.mjs: {out:?}");
        serde_json::from_slice(&out.stdout).expect("one JSON line")
    }

    /// The record key of the tag record for `tag` among `records` (see [`ReferencePds::records`]).
    #[must_use]
    pub fn tag_rkey(records: &Value, tag: &str) -> String {
        let tags = records["tags"].as_array().expect("tags");
        let found = tags.iter().find(|t| t["value"]["tag"] == tag);
        found.expect("the tag's record")["rkey"]
            .as_str()
            .expect("rkey")
            .to_owned()
    }

    /// Deletes a record directly on this PDS as its user (`(handle, account password)`) would
    /// with any ATProto client (`tests/interop/remote-delete.mjs`).
    pub fn delete_record(&self, node: &Path, who: (&str, &str), collection: &str, rkey: &str) {
        let out = super::run(
            Command::new(node)
                .args(["remote-delete.mjs", self.url(), who.0, who.1])
                .args([collection, rkey])
                .current_dir(interop_dir())
                .env_remove("NODE_OPTIONS"),
        );
        assert!(out.status.success(), "remote-delete.mjs: {out:?}");
    }

    /// Writes `record` (its `$type` added) under `collection`/`rkey` directly on this PDS as its
    /// user (`(handle, account password)`) would with any ATProto client
    /// (`tests/interop/remote-put.mjs`).
    pub fn put_record(&self, node: &Path, who: (&str, &str), at: (&str, &str), record: &Value) {
        let out = super::run(
            Command::new(node)
                .args(["remote-put.mjs", self.url(), who.0, who.1, at.0, at.1])
                .arg(record.to_string())
                .current_dir(interop_dir())
                .env_remove("NODE_OPTIONS"),
        );
        assert!(out.status.success(), "remote-put.mjs: {out:?}");
    }

    /// Takes `did`'s account down (or reinstates it) as this PDS's administrator would
    /// (`com.atproto.admin.updateSubjectStatus`), which announces it with an `#account` event.
    pub fn take_down(&self, did: &str, applied: bool) {
        use base64::Engine;
        let admin = self.info["admin"].as_str().expect("admin password");
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("admin:{admin}"));
        let body = serde_json::json!({
            "subject": { "$type": "com.atproto.admin.defs#repoRef", "did": did },
            "takedown": { "applied": applied, "ref": "atcr-test" },
        });
        let r = super::clients::curl_anonymous(
            "POST",
            &format!("{}/xrpc/com.atproto.admin.updateSubjectStatus", self.url()),
            &[
                ("Authorization", &format!("Basic {basic}")),
                ("Content-Type", "application/json"),
            ],
            Some(body.to_string().as_bytes()),
        );
        assert_eq!(r.status, 200, "updateSubjectStatus: {}", r.text());
    }

    pub fn stop(&mut self) {
        self.commands = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ReferencePds {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `tests/interop/oauth-web.mjs`: `who` (handle, account password) signs in to the node's
/// pages at `base` through OAuth at the reference PDS in chromium and stars `repository`;
/// with `expire` (this PDS), then has the user's tokens expire there and clicks the star
/// again. `env` goes to the script (e.g. `ATCR_CHROMIUM_ARGS`).
#[must_use]
pub fn oauth_web(
    node: &Path,
    srv: &super::Server,
    (base, repository): (&str, &str),
    who: (&str, &str),
    expire: Option<&ReferencePds>,
    env: &[(&str, &str)],
) -> Value {
    let artifacts = super::temp_dir("atcr-oauth-artifacts-");
    let out = super::run(
        Command::new(node)
            .args(["oauth-web.mjs", base, who.0, who.1, repository])
            .args(expire.map(|pds| pds.dir.path()))
            .current_dir(interop_dir())
            .env("ATCR_ARTIFACTS", artifacts.path())
            .envs(env.iter().copied())
            .env_remove("NODE_OPTIONS"),
    );
    assert!(
        out.status.success(),
        "oauth-web.mjs: {out:?}\n--- server log:\n{}",
        srv.log_tail()
    );
    serde_json::from_slice(&out.stdout).expect("one JSON line")
}
