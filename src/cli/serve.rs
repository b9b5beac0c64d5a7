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
    let app = Arc::new(App {
        registry: Registry::new(blobs, index),
    });

    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(addr = %listener.local_addr()?, data_dir = %config.data_dir.display(), "listening");

    let shutdown = CancellationToken::new();
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
    tokio::spawn(stop_on_signal(shutdown.clone()));

    let limits = ServerLimits {
        drain: Duration::from_secs(config.server.shutdown_drain_secs),
        header_read_timeout: Duration::from_secs(config.server.header_read_timeout_secs),
    };
    server::run(listener, app, shutdown, limits).await;
    workers.stop(Duration::from_secs(10)).await;
    tracing::info!("stopped");
    Ok(())
}

/// Cancels `shutdown` on the first SIGTERM or SIGINT.
async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the process with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "stopping"),
        _ = int.recv() => tracing::info!(signal = "SIGINT", "stopping"),
    }
    shutdown.cancel();
}
