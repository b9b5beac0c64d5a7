//! Shared by the black-box tests: the built binary as a child process, test images written by
//! hand as OCI layouts, and the real clients (skopeo, podman, buildah, curl) in isolated
//! per-test configuration.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod clients;
pub mod images;
pub mod interop;
pub mod reference_pds;
pub mod two_nodes;
pub mod web;
pub mod xrpc;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

/// Server log lines kept for failure messages.
const LOG_LINES: usize = 200;
/// How long the server may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_mins(1);

/// The account every server's first start creates; tests push into `admin/…`.
pub const ADMIN: &str = "admin";

/// Credentials of the servers running in this test process, by `127.0.0.1:PORT`: `curl` and
/// the clients' `auth.json` log in with them (see `clients`).
fn credentials() -> &'static Mutex<std::collections::HashMap<String, (String, String)>> {
    static CREDENTIALS: std::sync::OnceLock<
        Mutex<std::collections::HashMap<String, (String, String)>>,
    > = std::sync::OnceLock::new();
    CREDENTIALS.get_or_init(Mutex::default)
}

/// Records `user`/`password` as the credentials for `host_port`.
pub fn remember_credentials(host_port: &str, user: &str, password: &str) {
    credentials()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(host_port.to_owned(), (user.to_owned(), password.to_owned()));
}

/// The credentials recorded for `host_port`.
#[must_use]
pub fn credentials_for(host_port: &str) -> Option<(String, String)> {
    credentials()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(host_port)
        .cloned()
}

/// Every recorded server with its credentials.
#[must_use]
pub fn all_credentials() -> Vec<(String, (String, String))> {
    credentials()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `sha256:<hex>` of `bytes`. Large inputs go to coreutils' `sha256sum`: the `sha2` crate in a
/// debug build hashes at a few tens of MB/s.
#[must_use]
pub fn sha256(bytes: &[u8]) -> String {
    if bytes.len() < 4 << 20 {
        return format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
    }
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot run sha256sum");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let (written, out) = thread::scope(|s| {
        let writer = s.spawn(move || stdin.write_all(bytes));
        let out = child.wait_with_output().expect("sha256sum runs");
        (writer.join().expect("writer thread"), out)
    });
    written.expect("write to sha256sum");
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text
        .split_whitespace()
        .next()
        .expect("sha256sum prints a digest");
    format!("sha256:{hex}")
}

/// The atcr binary serving a temporary data directory on `127.0.0.1:<random port>`.
///
/// Dropping it kills the child (by its own PID) and removes the data directory.
pub struct Server {
    child: Option<Child>,
    port: u16,
    /// The password of `admin`, logged once by the first start.
    password: String,
    log: Arc<Mutex<VecDeque<String>>>,
    /// Extra environment of the server process (kept for restarts).
    env: Vec<(String, String)>,
    /// Extra arguments of `atcr serve` (kept for restarts).
    args: Vec<String>,
    /// Dropped last: the child must be gone before its data directory is removed.
    data: tempfile::TempDir,
}

impl Server {
    /// Starts the binary with a fresh data directory.
    #[must_use]
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts the binary with a fresh data directory and these extra environment variables
    /// (`ATCR_*` configuration).
    #[must_use]
    pub fn start_with(env: &[(&str, &str)]) -> Server {
        Server::start_serving(&[], env)
    }

    /// Starts `atcr serve ARGS` (`--role hold`) with a fresh data directory and these extra
    /// environment variables.
    #[must_use]
    pub fn start_serving(args: &[&str], env: &[(&str, &str)]) -> Server {
        let data = temp_dir("atcr-data-");
        let args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let env: Vec<(String, String)> = env
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let (child, port) = spawn(data.path(), &log, "127.0.0.1:0", &env, &args);
        let password = first_start_password(&log);
        let server = Server {
            child: Some(child),
            port,
            password,
            log,
            env,
            args,
            data,
        };
        remember_credentials(&server.host_port(), ADMIN, &server.password);
        server
    }

    /// The password of the account `admin`.
    #[must_use]
    pub fn password(&self) -> &str {
        &self.password
    }

    /// `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference.
    #[must_use]
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    #[must_use]
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// The child's PID, while it runs.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL to the server (its PID only) and reap it. No-op if it is not running.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.note("--- test: server killed with SIGKILL");
        }
    }

    /// SIGTERM to the server (its PID only); waits for it to exit and returns whether it
    /// exited successfully.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !sent {
            let _ = child.kill();
        }
        child.wait().is_ok_and(|s| s.success())
    }

    /// Starts the server again on the same data directory (killing it first if it still
    /// runs). The port changes: read `host_port()` again afterwards.
    pub fn restart(&mut self) {
        self.kill9();
        self.note("--- test: restarting");
        let (child, port) = spawn(
            self.data.path(),
            &self.log,
            "127.0.0.1:0",
            &self.env,
            &self.args,
        );
        self.child = Some(child);
        self.port = port;
        remember_credentials(&self.host_port(), ADMIN, &self.password);
    }

    /// Changes the extra environment for the next restart (e.g. another storage backend).
    pub fn set_env(&mut self, env: &[(&str, &str)]) {
        self.env = env
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    }

    /// Starts the server again on the same data directory and the same port (killing it first
    /// if it still runs): for state that names the port, such as the PDS's
    /// `did:web:localhost%3APORT` and the endpoints in its users' DID documents.
    pub fn restart_same_port(&mut self) {
        self.kill9();
        self.note("--- test: restarting on the same port");
        let listen = format!("127.0.0.1:{}", self.port);
        let (child, port) = spawn(self.data.path(), &self.log, &listen, &self.env, &self.args);
        assert_eq!(port, self.port, "the server moved to another port");
        self.child = Some(child);
    }

    /// Runs `atcr ARGS` on this server's data directory and port (as `--listen`, which the
    /// PDS uses for its `localhost:PORT` identity) with `stdin`; for commands that need the
    /// daemon stopped, such as `atcr user add`.
    #[must_use]
    pub fn cli(&self, args: &[&str], stdin: &str) -> Output {
        run_with_stdin(
            Command::new(env!("CARGO_BIN_EXE_atcr"))
                .args(args)
                .arg("--data-dir")
                .arg(self.data.path())
                .arg("--listen")
                .arg(format!("127.0.0.1:{}", self.port))
                .env_remove("ATCR_LISTEN")
                .env_remove("ATCR_DATA_DIR")
                .env("ATCR_CONFIG", "/dev/null")
                .env("RUST_LOG", "warn"),
            stdin,
        )
    }

    /// Adds a local account while the daemon runs (through its admin socket: usable at once).
    ///
    /// # Panics
    /// If `atcr user add` fails.
    pub fn add_user(&self, name: &str, password: &str) {
        let out = self.cli(
            &["user", "add", name, "--password-stdin"],
            &format!("{password}\n"),
        );
        assert!(out.status.success(), "{out:?}");
    }

    /// What the server logged since it was last restarted on the same port (all of the log
    /// tail when it was not).
    #[must_use]
    pub fn log_since_restart(&self) -> String {
        let log = self.log_tail();
        log.rsplit("restarting on the same port")
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    /// Polls `done` every 100 ms until it holds; after `secs` seconds, panics with `what` and
    /// the server's log.
    pub fn wait_until(&self, secs: u64, what: &str, mut done: impl FnMut() -> bool) {
        let since = std::time::Instant::now();
        while !done() {
            assert!(
                since.elapsed() < Duration::from_secs(secs),
                "{what} after {secs} s\n{}",
                self.log_tail()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last lines the server wrote to stderr.
    #[must_use]
    pub fn log_tail(&self) -> String {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        log.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn note(&self, line: &str) {
        push_line(&self.log, line.to_owned());
    }

    /// Runs `cmd`, panicking with its output and the server's log if it fails. Returns stdout.
    pub fn must(&self, cmd: &mut Command) -> String {
        let out = run(cmd);
        assert!(
            out.status.success(),
            "{}\n--- server log (last lines):\n{}",
            describe(cmd, &out),
            self.log_tail()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Like `must`, but the command must fail; returns stderr.
    pub fn must_fail(&self, cmd: &mut Command) -> String {
        let out = run(cmd);
        assert!(
            !out.status.success(),
            "expected a failure:\n{}\n--- server log (last lines):\n{}",
            describe(cmd, &out),
            self.log_tail()
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn push_line(log: &Mutex<VecDeque<String>>, line: String) {
    let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
    if log.len() == LOG_LINES {
        log.pop_front();
    }
    log.push_back(line);
}

/// Spawns `atcr serve` on `data` and waits for its listening line. A thread keeps draining
/// stderr into `log` for the life of the child, so the pipe never fills.
fn spawn(
    data: &Path,
    log: &Arc<Mutex<VecDeque<String>>>,
    listen: &str,
    env: &[(String, String)],
    args: &[String],
) -> (Child, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_atcr"))
        .args(["serve", "--listen", listen, "--data-dir"])
        .arg(data)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env_remove("ATCR_LISTEN")
        .env_remove("ATCR_DATA_DIR")
        // Built-in defaults, whatever /etc/atcr/atcr.toml says on this machine.
        .env("ATCR_CONFIG", "/dev/null")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start the atcr binary");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = mpsc::channel();
    let sink = log.clone();
    thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(port) = listening_port(&line)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(port);
            }
            push_line(&sink, line);
        }
    });
    if let Ok(port) = rx.recv_timeout(START_TIMEOUT) {
        return (child, port);
    }
    let _ = child.kill();
    let _ = child.wait();
    // Give the reader a moment to collect the last lines.
    thread::sleep(Duration::from_millis(100));
    let log = log.lock().unwrap_or_else(PoisonError::into_inner);
    panic!(
        "atcr did not print its listening line; its stderr:\n{}",
        log.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Waits for the first start's `password=…` line in `log`.
fn first_start_password(log: &Mutex<VecDeque<String>>) -> String {
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    loop {
        let found = log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find_map(|l| {
                let rest = l.split("password=").nth(1)?;
                Some(rest.split_whitespace().next()?.to_owned())
            });
        if let Some(pw) = found {
            return pw;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "atcr logged no first-start password"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// The port of a `listening addr=127.0.0.1:PORT` log line.
fn listening_port(line: &str) -> Option<u16> {
    if !line.contains("listening") {
        return None;
    }
    let addr = line.split("addr=").nth(1)?.split_whitespace().next()?;
    addr.rsplit(':').next()?.parse().ok()
}

/// Runs a command to completion, capturing its output.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs `cmd` with `input` on its stdin and collects its output.
///
/// # Panics
/// If the command cannot be started.
pub fn run_with_stdin(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin.write_all(input.as_bytes()).expect("write to stdin");
    drop(stdin);
    child.wait_with_output().expect("the command runs")
}

/// `atcr ARGS` on a state directory with no server running (`--listen 127.0.0.1:0`, built-in
/// configuration), with `stdin`: success, stdout, stderr.
pub fn atcr_offline(dir: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let out = run_with_stdin(
        Command::new(env!("CARGO_BIN_EXE_atcr"))
            .args(args)
            .arg("--data-dir")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .env_remove("ATCR_CONFIG")
            .env("RUST_LOG", "warn"),
        stdin.unwrap_or(""),
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A command and what it printed, for failure messages.
#[must_use]
pub fn describe(cmd: &Command, out: &Output) -> String {
    format!(
        "command: {cmd:?}\nstatus: {}\n--- stdout:\n{}\n--- stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A fresh temporary directory for one test's files. Its name is lowercase: podman derives
/// image names from `oci:` paths, and those must be lowercase.
#[must_use]
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let unique = images::fresh_seed() ^ COUNTER.fetch_add(1, Ordering::Relaxed);
        match tempfile::Builder::new()
            .prefix(&format!("{prefix}{unique:016x}"))
            .rand_bytes(0)
            .tempdir()
        {
            Ok(dir) => return dir,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => panic!("cannot create a temporary directory: {e}"),
        }
    }
}

/// `dir/name`, created.
#[must_use]
pub fn subdir(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(&path).expect("cannot create a directory");
    path
}
