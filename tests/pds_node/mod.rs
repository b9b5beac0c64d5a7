//! An in-process node with the PDS role on 127.0.0.1:0 (accounts alice and bob), and helpers to
//! call its XRPC methods.
#![allow(dead_code)] // Each test crate uses a different subset.

use std::sync::Arc;

use atcr::appview::index::Index;
use atcr::blobstore::BlobStore;
use atcr::pds::{Pds, PdsSettings};
use atcr::server::{self, App, ServerLimits};
use reqwest::StatusCode;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

#[path = "../common/xrpc.rs"]
pub mod xrpc;
#[allow(unused_imports)] // Not every test crate asserts XRPC errors.
pub use xrpc::{Xrpc, assert_error};

pub trait JsonBody {
    async fn json_value<T: serde::de::DeserializeOwned>(self) -> T;
}

impl JsonBody for reqwest::Response {
    async fn json_value<T: serde::de::DeserializeOwned>(self) -> T {
        serde_json::from_slice(&self.bytes().await.unwrap()).unwrap()
    }
}

pub struct Node {
    pub base: String,
    pub client: reqwest::Client,
    pub app: Arc<App>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Node {
    pub async fn start() -> Node {
        Node::start_configured(|_| {}, |_| {}).await
    }

    /// A node whose PDS settings `adjust` changes first.
    pub async fn start_with(adjust: impl FnOnce(&mut PdsSettings)) -> Node {
        Node::start_configured(adjust, |_| {}).await
    }

    /// A node whose `App` is adjusted by `configure` before it serves.
    pub async fn start_app(configure: impl FnOnce(&mut App)) -> Node {
        Node::start_configured(|_| {}, configure).await
    }

    /// A node with its PDS settings and then its `App` adjusted.
    pub async fn start_configured(
        adjust: impl FnOnce(&mut PdsSettings),
        configure: impl FnOnce(&mut App),
    ) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let blobs = BlobStore::filesystem(&dir.path().join("blobs")).unwrap();
        let index = Index::open(&dir.path().join("index.redb")).unwrap();
        let mut settings = PdsSettings::localhost(port);
        adjust(&mut settings);
        let pds = Pds::open(dir.path(), settings, blobs).await.unwrap();
        pds.create_account("alice", "alice-pw", false)
            .await
            .unwrap();
        pds.create_account("bob", "bob-password", false)
            .await
            .unwrap();
        let mut app = App::assemble(
            pds,
            index,
            std::sync::Arc::new(atcr::search::Search::in_memory().unwrap()),
        )
        .await
        .unwrap();
        configure(&mut app);
        let app = Arc::new(app);
        let shutdown = CancellationToken::new();
        tokio::spawn(app.indexer(shutdown.clone()));
        tokio::spawn(server::run(
            vec![server::Listener::plain(listener)],
            app.clone(),
            shutdown.clone(),
            ServerLimits::default(),
        ));
        Node {
            base: format!("http://127.0.0.1:{port}"),
            client: {
                atcr::tls::install_crypto_provider();
                reqwest::Client::new()
            },
            app,
            shutdown,
            _dir: dir,
        }
    }

    pub fn pds(&self) -> &Pds {
        &self.app.pds
    }

    /// The node's XRPC over HTTP.
    pub fn xrpc(&self) -> Xrpc<'_> {
        Xrpc {
            client: &self.client,
            base: &self.base,
        }
    }

    pub async fn get(&self, path_and_query: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.xrpc().get(path_and_query, token).await
    }

    pub async fn post(&self, nsid: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.xrpc().post(nsid, token, body).await
    }

    pub async fn login(&self, who: &str, pw: &str) -> Value {
        self.xrpc().login(who, pw).await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
