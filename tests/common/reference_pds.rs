//! The reference PDS (`@atproto/pds`, with its own `@did-plc/server` directory,
//! `tests/interop/reference-pds.mjs`) on 127.0.0.1, as another PDS for `tests/federation.rs`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use super::interop::interop_dir;

/// How long the reference PDS may take to start and create its accounts.
const START_TIMEOUT: Duration = Duration::from_mins(3);

/// The reference PDS as a child process, killed (by its PID) when dropped.
pub struct ReferencePds {
    child: Child,
    /// What `reference-pds.mjs` printed: `plc`, `url`, `port`, `users`.
    pub info: Value,
    _dir: tempfile::TempDir,
}

impl ReferencePds {
    #[must_use]
    pub fn start(node: &Path) -> ReferencePds {
        let dir = super::temp_dir("atcr-refpds-");
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

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ReferencePds {
    fn drop(&mut self) {
        self.stop();
    }
}
