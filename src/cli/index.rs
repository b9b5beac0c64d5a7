//! `atcr index rebuild`: recreate the registry index from the repositories and blob storage,
//! then compact it (rewritten in key order: the rebuild fills its pages in record order, about
//! half full).
//!
//! Like the other administration commands it opens the state directly, so the daemon must be
//! stopped (it holds the index).

use std::sync::Arc;

use anyhow::Context;

use crate::appview::AppView;
use crate::config::Config;
use crate::pds::Pds;

pub fn rebuild(config: &Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let summary = runtime.block_on(async {
        let index = super::serve::open_index(config).map_err(|e| {
            if format!("{e:#}").contains("already open") || format!("{e:#}").contains("lock") {
                anyhow::anyhow!(
                    "{}/index.redb is in use: stop `atcr serve` first",
                    config.data_dir.display()
                )
            } else {
                e
            }
        })?;
        let blobs = super::serve::open_blobs(config)?;
        let pds = Pds::open(
            &config.data_dir,
            config.pds_settings(config.listen.port()),
            blobs,
        )
        .await
        .context("cannot open the PDS")?;
        let search = super::serve::open_search(config)?;
        let appview = Arc::new(AppView::new(Arc::new(pds), index, search)?);
        let started = std::time::Instant::now();
        let stats = appview.rebuild().await.context("rebuild failed")?;
        let searchable = appview
            .rebuild_search()
            .await
            .context("search index rebuild failed")?;
        let images = appview
            .index()
            .stats()
            .context("cannot count the rebuilt index")?
            .repositories;
        // An account repository is an ATProto repository (one per user and the node's own);
        // the images live in them.
        anyhow::Ok(format!(
            "index rebuilt from {}: {}, {}, {}, {} searchable ({} ms)",
            count(stats.repos, "account repository", "account repositories"),
            count(images, "image repository", "image repositories"),
            count(stats.manifests, "manifest", "manifests"),
            count(stats.tags, "tag", "tags"),
            searchable,
            started.elapsed().as_millis()
        ))
    })?;
    // Everything holding the index (the indexer's tasks too) goes with the runtime.
    drop(runtime);
    let path = config.data_dir.join("index.redb");
    let (before, after) = crate::appview::index::Index::compact(&path)
        .with_context(|| format!("compacting {}", path.display()))?;
    super::print(&format!(
        "{summary}; index.redb compacted: {} → {}",
        crate::http::human_bytes(before),
        crate::http::human_bytes(after)
    ))
}

/// `n` and the noun for it: `1 tag`, `2 tags`.
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
