//! A real S3 server for tests: `s3s-fs` (built into `tests/s3/bin` by `tests/s3/setup.sh`,
//! which `scripts/test` runs) on `127.0.0.1:<free port>` over a temporary directory. It checks
//! every signature, presigned URLs included. Dropping it kills the child by its PID.
#![allow(dead_code, clippy::missing_panics_doc)] // Each test crate uses a different subset.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use atcr::blobstore::{BlobStore, S3Settings};

pub const BUCKET: &str = "atcr";
pub const ACCESS_KEY: &str = "atcr-test-key";
pub const SECRET_KEY: &str = "atcr-test-secret-0123456789";

pub struct S3Server {
    child: Option<Child>,
    pub port: u16,
    /// The server's root: bucket `atcr` is the directory `atcr/` in it.
    pub dir: tempfile::TempDir,
}

fn binary() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3/bin/s3s-fs");
    assert!(
        path.exists(),
        "{} is missing: run tests/s3/setup.sh (scripts/test does)",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

impl S3Server {
    /// Starts s3s-fs with an empty bucket `atcr`.
    #[must_use]
    pub fn start() -> S3Server {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(BUCKET)).unwrap();
        let mut server = S3Server {
            child: None,
            port: free_port(),
            dir,
        };
        server.resume();
        server
    }

    /// Starts it again on the same port and directory after [`S3Server::stop`].
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run s3s-fs");
        self.child = Some(child);
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("s3s-fs did not start listening on port {}", self.port);
    }

    /// Kills the server (its PID only) and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Settings for a store under `prefix` in the bucket.
    #[must_use]
    pub fn settings(&self, prefix: &str, redirect_ttl: Option<Duration>) -> S3Settings {
        S3Settings {
            bucket: BUCKET.to_owned(),
            endpoint: Some(self.endpoint()),
            region: "us-east-1".to_owned(),
            prefix: prefix.to_owned(),
            path_style: true,
            access_key_id: Some(ACCESS_KEY.to_owned()),
            secret_access_key: Some(SECRET_KEY.to_owned()),
            ca_file: None,
            redirect_ttl,
        }
    }

    #[must_use]
    pub fn store(&self, prefix: &str, redirect_ttl: Option<Duration>) -> BlobStore {
        BlobStore::s3(&self.settings(prefix, redirect_ttl)).unwrap()
    }

    /// The file s3s-fs keeps object `key` of the bucket in.
    #[must_use]
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.dir.path().join(BUCKET).join(key)
    }

    /// Every object key in the bucket (s3s-fs keeps objects as files; its own bookkeeping
    /// files start with a dot).
    #[must_use]
    pub fn keys(&self) -> Vec<String> {
        fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, root, out);
                } else if !entry.file_name().to_string_lossy().starts_with('.') {
                    out.push(
                        path.strip_prefix(root)
                            .unwrap()
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
        }
        let root = self.dir.path().join(BUCKET);
        let mut out = Vec::new();
        walk(&root, &root, &mut out);
        out.sort();
        out
    }

    /// `[storage]` of an atcr.toml for this server, credentials in owner-only files in `dir`.
    #[must_use]
    pub fn storage_toml(&self, dir: &Path, prefix: &str, redirect: bool) -> String {
        use std::os::unix::fs::PermissionsExt;
        let mut files = Vec::new();
        for (name, value) in [("s3-key-id", ACCESS_KEY), ("s3-secret", SECRET_KEY)] {
            let path = dir.join(name);
            std::fs::write(&path, format!("{value}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            files.push(path);
        }
        format!(
            "[storage]\nbackend = \"s3\"\nbucket = \"{BUCKET}\"\nendpoint = \"{}\"\nroot = \"{prefix}\"\naccess_key_id_file = \"{}\"\nsecret_access_key_file = \"{}\"\nredirect = {redirect}\n",
            self.endpoint(),
            files[0].display(),
            files[1].display()
        )
    }
}

impl S3Server {
    /// The `ATCR_STORAGE_*` settings of a node on this server under `prefix`, credentials in
    /// files in `dir`.
    #[must_use]
    pub fn env(&self, dir: &Path, prefix: &str, redirect: bool) -> Vec<(String, String)> {
        let toml: toml::Table = toml::from_str(&self.storage_toml(dir, prefix, redirect)).unwrap();
        toml["storage"]
            .as_table()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (format!("ATCR_STORAGE_{}", k.to_uppercase()), value)
            })
            .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
