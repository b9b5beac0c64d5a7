//! `atcr serve`: open the state, bind, serve until a signal.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::blobstore::BlobStore;
use crate::config::{Backend, Config};
use crate::oci::Registry;
use crate::oci::index::Index;
use crate::server::{self, App, ServerLimits};
use crate::worker::Workers;

pub fn run(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let blobs = match config.storage.backend {
        Backend::Fs => {
            let root = config.blob_root();
            std::fs::create_dir_all(&root)
                .with_context(|| format!("cannot create {}", root.display()))?;
            BlobStore::filesystem(&root)?
        }
        Backend::Memory => BlobStore::memory()?,
    };
    let index_path = config.data_dir.join("index.redb");
    let index = Index::open(&index_path)
        .with_context(|| format!("cannot open index {}", index_path.display()))?;
    let mut app = App::new(Registry::new(blobs, index));
    if config.storage.backend == Backend::Fs {
        app = app.with_disk_floor(config.blob_root(), config.storage.min_free_bytes);
    }
    let app = Arc::new(app);

    // Signal handlers go in before the "listening" line: a signal sent as soon as that line
    // appears must already be caught.
    let shutdown = CancellationToken::new();
    let signals = Signals::install()?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(addr = %listener.local_addr()?, data_dir = %config.data_dir.display(), "listening");

    let workers = Workers::new(shutdown.clone());
    let sweeper = app.clone();
    let max_idle = config.uploads.expire_after_secs;
    workers.every(
        "upload-sweeper",
        Duration::from_secs(config.uploads.sweep_interval_secs),
        move || {
            let app = sweeper.clone();
            async move {
                app.registry
                    .expire_uploads(max_idle)
                    .await
                    .map_err(|e| e.message)
            }
        },
    );
    tokio::spawn(signals.cancel_on_first(shutdown.clone()));

    let limits = ServerLimits {
        drain: Duration::from_secs(config.server.shutdown_drain_secs),
        header_read_timeout: Duration::from_secs(config.server.header_read_timeout_secs),
    };
    server::run(listener, app, shutdown, limits).await;
    workers.stop(Duration::from_secs(10)).await;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM and SIGINT, caught from the moment they are installed.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot install a SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("cannot install a SIGINT handler")?,
        })
    }

    /// Cancels `shutdown` on the first SIGTERM or SIGINT.
    async fn cancel_on_first(mut self, shutdown: CancellationToken) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!(signal = "SIGTERM", "stopping"),
            _ = self.int.recv() => tracing::info!(signal = "SIGINT", "stopping"),
        }
        shutdown.cancel();
    }
}
