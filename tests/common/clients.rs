//! The real clients in isolated per-test configuration, and raw HTTP through `curl`.
//!
//! Each `Clients` owns a temporary directory holding its own `storage.conf` (vfs storage, run
//! and graph roots inside the directory), `containers.conf` (cgroupfs, file events, its own
//! libpod tmp dir), `registries.conf` (no search registries) and `auth.json`, passed through
//! `CONTAINERS_STORAGE_CONF`, `CONTAINERS_CONF`, `CONTAINERS_REGISTRIES_CONF` and
//! `REGISTRY_AUTH_FILE`, so tests running in parallel share nothing but the blob-info cache.
//!
//! The blob-info cache (`/var/lib/containers/cache/blob-info-cache-v1.boltdb` for root) has no
//! per-process switch in skopeo 1.9, and deleting it would race with other tests. So these tests
//! never delete it: content that must really be uploaded is made from a fresh seed each run (no
//! cache can know it), and the one test that wants a mount relies on the cache on purpose.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether the real-client tests run. They are skipped only when `ATCR_SKIP_CLIENT_TESTS=1`;
/// otherwise a missing tool fails the test with a message naming the Debian package.
///
/// # Panics
/// If one of `tools` is not on `PATH` (and the skip variable is not set).
#[must_use]
pub fn required(tools: &[&str]) -> bool {
    if std::env::var("ATCR_SKIP_CLIENT_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("ATCR_SKIP_CLIENT_TESTS=1: skipping a test that needs {tools:?}");
        return false;
    }
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !on_path(t)).collect();
    assert!(
        missing.is_empty(),
        "missing client tools {missing:?}: install the Debian packages skopeo podman buildah \
         busybox-static curl (and runc, for `podman run`), or set ATCR_SKIP_CLIENT_TESTS=1 to \
         skip these tests"
    );
    true
}

/// Whether `tool` is an executable file on `PATH` (or an absolute path to one).
#[must_use]
pub fn on_path(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if tool.starts_with('/') {
        return executable(Path::new(tool));
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| executable(&dir.join(tool))))
}

/// Names of `auth.json` versions being written.
static AUTH_FILE_VERSIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// One test's client configuration.
pub struct Clients {
    dir: tempfile::TempDir,
    /// Whether `auth.json` carries the credentials of the servers this process runs (the
    /// default); off for tests of anonymous access and of `login` itself.
    auto_login: std::cell::Cell<bool>,
}

impl Default for Clients {
    fn default() -> Self {
        Self::new()
    }
}

impl Clients {
    #[must_use]
    pub fn new() -> Clients {
        let dir = super::temp_dir("atcr-clients-");
        let root = dir.path();
        let write = |name: &str, text: String| {
            std::fs::write(root.join(name), text).expect("cannot write client configuration");
        };
        write(
            "storage.conf",
            format!(
                "[storage]\ndriver = \"vfs\"\nrunroot = \"{0}/run\"\ngraphroot = \"{0}/graph\"\n",
                root.display()
            ),
        );
        write(
            "containers.conf",
            format!(
                "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
                 events_logfile_path = \"{0}/events.log\"\ntmp_dir = \"{0}/libpod-tmp\"\n\
                 volume_path = \"{0}/volumes\"\nruntime = \"runc\"\n",
                root.display()
            ),
        );
        write(
            "registries.conf",
            "unqualified-search-registries = []\n".to_owned(),
        );
        write("auth.json", "{\"auths\":{}}\n".to_owned());
        std::fs::create_dir_all(root.join("tmp")).expect("cannot create a tmp dir");
        Clients {
            dir,
            auto_login: std::cell::Cell::new(true),
        }
    }

    /// Stops writing the servers' credentials into `auth.json` (and empties it).
    pub fn without_login(&self) {
        self.auto_login.set(false);
        std::fs::write(self.dir.path().join("auth.json"), "{\"auths\":{}}\n")
            .expect("cannot write auth.json");
    }

    /// The directory the clients' state lives in.
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A new directory for test files (layouts, digest files), removed with `self`.
    #[must_use]
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, program: &str) -> Command {
        let root = self.dir.path();
        if self.auto_login.get() {
            use base64::Engine;
            let auths: serde_json::Map<String, serde_json::Value> = super::all_credentials()
                .into_iter()
                .map(|(host, (user, pw))| {
                    let auth =
                        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
                    (host, serde_json::json!({ "auth": auth }))
                })
                .collect();
            // Replaced atomically: clients of parallel commands may be reading it.
            let n = AUTH_FILE_VERSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let tmp = root.join(format!("auth.json.{n}"));
            std::fs::write(&tmp, serde_json::json!({ "auths": auths }).to_string())
                .expect("cannot write auth.json");
            std::fs::rename(&tmp, root.join("auth.json")).expect("cannot replace auth.json");
        }
        let mut cmd = Command::new(program);
        cmd.env("CONTAINERS_STORAGE_CONF", root.join("storage.conf"))
            .env("CONTAINERS_CONF", root.join("containers.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", root.join("registries.conf"))
            .env("REGISTRY_AUTH_FILE", root.join("auth.json"))
            .env("TMPDIR", root.join("tmp"));
        cmd
    }

    /// `skopeo` with this test's configuration.
    #[must_use]
    pub fn skopeo(&self) -> Command {
        self.command("skopeo")
    }

    /// `podman` with this test's configuration (vfs storage in the temp dir).
    #[must_use]
    pub fn podman(&self) -> Command {
        self.command("podman")
    }

    /// `buildah` with this test's configuration (vfs storage in the temp dir).
    #[must_use]
    pub fn buildah(&self) -> Command {
        self.command("buildah")
    }

    /// A `PATH` whose first directory holds `docker-credential-atcr`, a link to the built
    /// binary (as the packages install it), for clients that use the credential helper.
    #[must_use]
    pub fn credential_helper_path(&self) -> String {
        let bin = self.path("bin");
        std::fs::create_dir_all(&bin).expect("cannot create a bin dir");
        let helper = bin.join("docker-credential-atcr");
        if !helper.exists() {
            std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_atcr"), &helper)
                .expect("cannot link the credential helper");
        }
        format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// `skopeo copy` between two references over plain HTTP, with extra flags.
    #[must_use]
    pub fn skopeo_copy(&self, from: &str, to: &str, flags: &[&str]) -> Command {
        let mut cmd = self.skopeo();
        cmd.args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ])
        .args(flags)
        .args([from, to]);
        cmd
    }
}

impl Drop for Clients {
    /// vfs storage can leave read-only directories behind; make them writable so the temp dir
    /// goes away.
    fn drop(&mut self) {
        let _ = Command::new("chmod")
            .args(["-R", "u+rwX"])
            .arg(self.dir.path())
            .status();
    }
}

/// An HTTP answer read by `curl`.
#[derive(Debug)]
pub struct HttpResponse {
    /// 0 when no answer came (connection refused or cut).
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The repository a `/v2/<name>/…` path names.
fn repository_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v2/")?;
    ["/manifests/", "/blobs/", "/tags/", "/referrers/"]
        .iter()
        .filter_map(|m| rest.rfind(m))
        .max()
        .map(|i| &rest[..i])
}

/// A bearer token for the credentials recorded for the server of `url`, granting everything on
/// the repository its path names (and on a mount's source) and the catalog.
fn token_for(url: &str) -> Option<String> {
    let without_scheme = url.strip_prefix("http://")?;
    let (host, path_and_query) = without_scheme.split_once('/')?;
    let (user, password) = super::credentials_for(host)?;
    let path_and_query = format!("/{path_and_query}");
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query.as_str(), ""));
    if !path.starts_with("/v2/") {
        return None;
    }
    let mut scopes = vec!["registry:catalog:*".to_owned()];
    if let Some(repo) = repository_of(path) {
        scopes.push(format!("repository:{repo}:*"));
    }
    for pair in query.split('&') {
        if let Some(from) = pair.strip_prefix("from=") {
            scopes.push(format!("repository:{from}:*"));
        }
    }
    token(host, &user, &password, &scopes)
}

/// A token from the server at `host` (`127.0.0.1:PORT`) for `scopes`, logged in as `user`.
#[must_use]
pub fn token(host: &str, user: &str, password: &str, scopes: &[String]) -> Option<String> {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sSf",
        "--max-time",
        "30",
        "-u",
        &format!("{user}:{password}"),
        "-G",
    ])
    .arg(format!("http://{host}/auth/token"))
    .args([
        "--data-urlencode",
        &format!("service=localhost:{}", host.rsplit(':').next()?),
    ]);
    for s in scopes {
        cmd.args(["--data-urlencode", &format!("scope={s}")]);
    }
    let out = super::run(&mut cmd);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(v["token"].as_str()?.to_owned())
}

/// One HTTP request with `curl` (no retries, no redirects followed). A request to `/v2/…` of a
/// server this process started carries a bearer token for its `admin` (unless `headers` has an
/// `Authorization` of its own): use `curl_anonymous` to go without.
///
/// # Panics
/// If curl cannot be run at all.
#[must_use]
pub fn curl(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> HttpResponse {
    let has_auth = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("authorization"));
    match token_for(url).filter(|_| !has_auth) {
        Some(token) => {
            let bearer = format!("Bearer {token}");
            let mut all = headers.to_vec();
            all.push(("Authorization", &bearer));
            curl_anonymous(method, url, &all, body)
        }
        None => curl_anonymous(method, url, headers, body),
    }
}

/// `curl` exactly as asked: no credentials added.
///
/// # Panics
/// If curl cannot be run at all.
#[must_use]
pub fn curl_anonymous(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> HttpResponse {
    let dir = super::temp_dir("atcr-curl-");
    let (head_file, body_file, req_file) = (
        dir.path().join("head"),
        dir.path().join("body"),
        dir.path().join("req"),
    );
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "120", "-H", "Expect:"]);
    if method == "HEAD" {
        cmd.arg("-I");
    } else {
        cmd.args(["-X", method]);
    }
    cmd.arg("-D")
        .arg(&head_file)
        .arg("-o")
        .arg(&body_file)
        .args(["-w", "%{http_code}"]);
    for (name, value) in headers {
        cmd.arg("-H").arg(format!("{name}: {value}"));
    }
    if let Some(body) = body {
        std::fs::write(&req_file, body).expect("cannot write a request body");
        cmd.arg("--data-binary")
            .arg(format!("@{}", req_file.display()));
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            cmd.args(["-H", "Content-Type: application/octet-stream"]);
        }
    }
    cmd.arg(url);
    let out = super::run(&mut cmd);
    let status = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let head = std::fs::read_to_string(&head_file).unwrap_or_default();
    let headers = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: std::fs::read(&body_file).unwrap_or_default(),
    }
}

/// What [`push_with_curl`] pushed: digests (`sha256:…`) and the manifest's bytes.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub manifest: String,
    pub manifest_bytes: Vec<u8>,
    pub layer: String,
}

/// Pushes a one-layer image (`layer` as its layer) to `<base>/v2/<repo>` as `tag` with plain
/// HTTP requests (no client tools needed).
///
/// # Panics
/// If a request is refused.
#[must_use]
pub fn push_with_curl(base: &str, repo: &str, tag: &str, layer: &[u8]) -> Pushed {
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let mut digests = Vec::new();
    for blob in [&config[..], layer] {
        let digest = super::sha256(blob);
        let r = curl(
            "POST",
            &format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}"),
            &[("Content-Type", "application/octet-stream")],
            Some(blob),
        );
        assert_eq!(r.status, 201, "blob upload: {}", r.text());
        digests.push(digest);
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": super::images::OCI_MANIFEST,
        "config": {"mediaType": super::images::OCI_CONFIG, "digest": digests[0], "size": config.len()},
        "layers": [{"mediaType": super::images::OCI_LAYER_GZIP, "digest": digests[1], "size": layer.len()}],
    });
    let bytes = serde_json::to_vec(&manifest).expect("JSON");
    let r = curl(
        "PUT",
        &format!("{base}/v2/{repo}/manifests/{tag}"),
        &[("Content-Type", super::images::OCI_MANIFEST)],
        Some(&bytes),
    );
    assert_eq!(r.status, 201, "manifest PUT: {}", r.text());
    Pushed {
        manifest: super::sha256(&bytes),
        manifest_bytes: bytes,
        layer: digests.swap_remove(1),
    }
}

/// The media type of a Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// `skopeo inspect --raw`: the manifest bytes exactly as the registry serves them.
pub fn inspect_raw(srv: &super::Server, c: &Clients, image: &str) -> Vec<u8> {
    let mut cmd = c.skopeo();
    cmd.args(["inspect", "--raw", "--tls-verify=false", image]);
    srv.must(&mut cmd).into_bytes()
}

/// `skopeo inspect` (parsed JSON).
pub fn inspect(srv: &super::Server, c: &Clients, image: &str, flags: &[&str]) -> serde_json::Value {
    let mut cmd = c.skopeo();
    cmd.args(["inspect", "--tls-verify=false"])
        .args(flags)
        .arg(image);
    serde_json::from_str(&srv.must(&mut cmd)).expect("skopeo inspect prints JSON")
}

/// The digest the registry reports for a manifest (`HEAD`, any manifest type accepted).
pub fn head_digest(srv: &super::Server, repo: &str, reference: &str) -> String {
    let accept = [
        super::images::OCI_MANIFEST,
        super::images::OCI_INDEX,
        super::images::DOCKER_MANIFEST,
        DOCKER_LIST,
    ]
    .join(", ");
    let r = curl(
        "HEAD",
        &format!("{}/v2/{repo}/manifests/{reference}", srv.base_url()),
        &[("Accept", &accept)],
        None,
    );
    assert_eq!(r.status, 200, "HEAD {repo}:{reference}: {r:?}");
    r.header("docker-content-digest")
        .expect("a Docker-Content-Digest header")
        .to_owned()
}

/// A counter of the node's `/metrics`: the sum over lines starting with `prefix`.
///
/// # Panics
/// If `/metrics` does not answer 200.
#[must_use]
pub fn metric(srv: &super::Server, prefix: &str) -> u64 {
    let r = curl("GET", &format!("{}/metrics", srv.base_url()), &[], None);
    assert_eq!(r.status, 200);
    r.text()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
