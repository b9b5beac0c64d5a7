//! An atcr server inside the test process, on 127.0.0.1:0, over a temp dir; and small HTTP
//! helpers for the distribution API.
#![allow(dead_code, clippy::missing_panics_doc)] // Each test crate uses a different subset.

use std::sync::Arc;

use atcr::appview::index::Index;
use atcr::atproto::Did;
use atcr::auth::{Access, Scope};
use atcr::blobstore::{Algorithm, BlobStore, Digest};
use atcr::hold::Permission;
use atcr::oci::OciEndpoint;
use atcr::pds::{Pds, PdsSettings};
use atcr::server::{self, App, ServerLimits};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The test user: every repository the tests push is under `t/`.
pub const USER: &str = "t";
pub const PASSWORD: &str = "test-password";

pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    pub app: Arc<App>,
    /// The test user's DID: repositories are `t/<name>`.
    pub user: Did,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    pub dir: Arc<tempfile::TempDir>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_in(Arc::new(tempfile::tempdir().unwrap())).await
    }

    /// A server over an existing state directory (to test what survives a restart).
    pub async fn start_in(dir: Arc<tempfile::TempDir>) -> TestServer {
        Self::start_with_floor(dir, 1).await
    }

    /// A server whose `/readyz` wants `min_free_bytes` free on the temp dir's filesystem.
    pub async fn start_with_floor(dir: Arc<tempfile::TempDir>, min_free_bytes: u64) -> TestServer {
        Self::start_full(dir, min_free_bytes, ServerLimits::default()).await
    }

    /// A server with the given connection limits and timeouts.
    pub async fn start_with_limits(limits: ServerLimits) -> TestServer {
        Self::start_full(Arc::new(tempfile::tempdir().unwrap()), 1, limits).await
    }

    /// A server whose blobs live in `blobs` (an S3 bucket, say) and the rest in `dir`.
    pub async fn start_with_blobs(dir: Arc<tempfile::TempDir>, blobs: BlobStore) -> TestServer {
        Self::start_on(dir, blobs, 1, ServerLimits::default()).await
    }

    async fn start_full(
        dir: Arc<tempfile::TempDir>,
        min_free_bytes: u64,
        limits: ServerLimits,
    ) -> TestServer {
        let blobs = BlobStore::filesystem(&dir.path().join("blobs")).unwrap();
        Self::start_on(dir, blobs, min_free_bytes, limits).await
    }

    async fn start_on(
        dir: Arc<tempfile::TempDir>,
        blobs: BlobStore,
        min_free_bytes: u64,
        limits: ServerLimits,
    ) -> TestServer {
        let index = Index::open(&dir.path().join("index.redb")).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base = format!("http://{addr}");
        let pds = Pds::open(dir.path(), PdsSettings::localhost(addr.port()), blobs)
            .await
            .unwrap();
        let user = if let Some(account) = pds.accounts.find(USER).unwrap() {
            account.did
        } else {
            pds.create_account(USER, PASSWORD, false).await.unwrap().did
        };
        let app = App::assemble(
            pds,
            index,
            std::sync::Arc::new(atcr::search::Search::in_memory().unwrap()),
        )
        .await
        .unwrap();
        app.hold
            .add_crew(
                &user,
                "write",
                &[Permission::BlobRead, Permission::BlobWrite],
            )
            .await
            .unwrap();
        let app = Arc::new(app.with_disk_floor(dir.path().to_owned(), min_free_bytes));
        let shutdown = CancellationToken::new();
        let indexer = tokio::spawn(app.indexer(shutdown.clone()));
        tokio::spawn(app.storage_recovery(shutdown.clone()));
        let task = tokio::spawn({
            let (app, shutdown) = (app.clone(), shutdown.clone());
            async move {
                server::run(
                    vec![server::Listener::plain(listener)],
                    app,
                    shutdown,
                    limits,
                )
                .await;
                indexer.await.unwrap();
            }
        });
        TestServer {
            base,
            client: {
                atcr::tls::install_crypto_provider();
                reqwest::Client::new()
            },
            app,
            user,
            shutdown,
            task: Some(task),
            dir,
        }
    }

    /// Stops the server and waits until its state is released.
    pub async fn stop(mut self) -> Arc<tempfile::TempDir> {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
        let dir = self.dir.clone();
        drop(self);
        dir
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    /// A request with a registry token for the test user, granting every action on the
    /// repository the path names (and on a mount's source) and the catalog.
    pub fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let token = self.token_for(&method, path);
        self.anonymous(method, path).bearer_auth(token)
    }

    /// A request with no credentials.
    pub fn anonymous(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// A token for the test user covering what `method path` addresses.
    pub fn token_for(&self, method: &Method, path: &str) -> String {
        let url = reqwest::Url::parse(&self.url(path)).unwrap();
        let mut scopes = vec!["registry:catalog:*".to_owned()];
        let http_method = http::Method::from_bytes(method.as_str().as_bytes()).unwrap();
        if let Ok(Some(endpoint)) = OciEndpoint::parse(&http_method, url.path(), url.query())
            && let Some(name) = endpoint.name()
        {
            scopes.push(format!("repository:{name}:*"));
        }
        for (k, v) in url.query_pairs() {
            if k == "from" {
                scopes.push(format!("repository:{v}:*"));
            }
        }
        let access = scopes
            .iter()
            .map(|s| Access::from_scope(&Scope::parse(s).unwrap()))
            .collect();
        self.app
            .auth
            .tokens
            .issue(Some(&self.user), access, atcr::pds::accounts::now_secs())
    }

    /// Uploads a blob in one request; returns its digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let digest = Digest::of(Algorithm::Sha256, data);
        let r = self
            .req(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
            )
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
        digest
    }

    /// An XRPC access token for local account `name` (password [`PASSWORD`]).
    pub async fn session(&self, name: &str) -> String {
        let v: Value = self
            .anonymous(Method::POST, "/xrpc/com.atproto.server.createSession")
            .json(&json!({"identifier": name, "password": PASSWORD}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["accessJwt"].as_str().unwrap().to_owned()
    }

    /// An anonymous `GET path` answered `200` with JSON: that JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.anonymous(Method::GET, path).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        r.json().await.unwrap()
    }

    /// The test user's records in `collection` (`com.atproto.repo.listRecords`, first 100).
    pub async fn records(&self, collection: &str) -> Vec<Value> {
        let r = self
            .anonymous(
                Method::GET,
                &format!(
                    "/xrpc/com.atproto.repo.listRecords?repo={}&collection={collection}&limit=100",
                    self.user
                ),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.unwrap();
        body["records"].as_array().unwrap().clone()
    }

    /// Pushes an image manifest with one config and the given layers; returns its digest and bytes.
    pub async fn push_image(
        &self,
        repo: &str,
        reference: &str,
        layers: &[&[u8]],
        extra: Value,
    ) -> (Digest, Vec<u8>) {
        let config = format!(
            "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"n\":{}}}",
            layers.len()
        );
        let config_digest = self.push_blob(repo, config.as_bytes()).await;
        let mut descs = Vec::new();
        for layer in layers {
            let d = self.push_blob(repo, layer).await;
            descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d.as_str(), "size": layer.len()}));
        }
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.as_str(), "size": config.len()},
            "layers": descs,
        });
        if let (Some(m), Some(e)) = (manifest.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        let bytes = serde_json::to_vec_pretty(&manifest).unwrap();
        let digest = self
            .put_manifest(repo, reference, OCI_MANIFEST, &bytes)
            .await;
        (digest, bytes)
    }

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Digest {
        let r = self
            .req(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
            .header("content-type", media_type)
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
        let digest = Digest::of(Algorithm::Sha256, bytes);
        assert_eq!(header(&r, "docker-content-digest"), digest.as_str());
        assert_eq!(
            header(&r, "location"),
            format!("/v2/{repo}/manifests/{digest}")
        );
        digest
    }
}

pub fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Asserts a spec-shaped error answer and returns its detail.
pub async fn expect_error(r: reqwest::Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(r.status(), status, "unexpected status for expected {code}");
    assert_eq!(
        header(&r, "docker-distribution-api-version"),
        "registry/2.0"
    );
    let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let error = &body["errors"][0];
    assert_eq!(error["code"], code, "{body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    error["detail"].clone()
}

/// Deterministic pseudo-random bytes.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
