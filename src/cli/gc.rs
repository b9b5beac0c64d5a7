//! `atcr gc [--dry-run]`: one garbage collection of blobs no manifest uses, of stale uploads
//! and of PDS blocks no repository head reaches. Through the running daemon's admin socket (the
//! node keeps serving), or, with the daemon stopped, on the state opened here — then
//! `pds.redb` is also compacted, so its file gives back what was freed (the daemon cannot:
//! compaction needs the file to itself).

use anyhow::Context;

use crate::admin::Op;
use crate::appview::gc::{Gc, GcOptions, GcReport};
use crate::config::Config;

pub fn run(config: &Config, dry_run: bool) -> anyhow::Result<()> {
    let report: GcReport =
        if let Some(reply) = crate::admin::call(&config.data_dir, &Op::Gc { dry_run }) {
            serde_json::from_str(&reply?).context("unreadable answer from the daemon")?
        } else {
            let report = offline(config, dry_run)?;
            if !dry_run {
                compact_pds(config)?;
            }
            report
        };
    super::print(&format!(
        "{report} ({})",
        crate::http::human_bytes(report.bytes_freed)
    ))
}

/// Compacts `pds.redb`, so its file gives back the pages the collection freed.
fn compact_pds(config: &Config) -> anyhow::Result<()> {
    let path = config.data_dir.join("pds.redb");
    let (before, after) = crate::pds::store::compact(&path)
        .with_context(|| format!("compacting {}", path.display()))?;
    super::print(&format!(
        "pds.redb compacted: {} → {}",
        crate::http::human_bytes(before),
        crate::http::human_bytes(after)
    ))
}

/// The daemon is stopped: no request is writing, so nothing is pinned and no upload active.
fn offline(config: &Config, dry_run: bool) -> anyhow::Result<GcReport> {
    let runtime = super::admin::runtime()?;
    runtime.block_on(async {
        let index = super::serve::open_index(config).map_err(|e| {
            if format!("{e:#}").contains("already open") || format!("{e:#}").contains("lock") {
                anyhow::anyhow!(
                    "{}/index.redb is in use, and no daemon answers on its admin socket",
                    config.data_dir.display()
                )
            } else {
                e
            }
        })?;
        let blobs = super::serve::open_blobs(config)?;
        let pds_path = config.data_dir.join("pds.redb");
        let pds = crate::pds::store::PdsStore::open(&pds_path)
            .with_context(|| format!("cannot open {}", pds_path.display()))?;
        let opts = GcOptions {
            dry_run,
            grace_secs: config.gc.grace_secs,
            upload_expiry_secs: config.uploads.expire_after_secs,
        };
        Ok(Gc::new(index, blobs)
            .with_pds(pds)
            .run(opts, &|_| false)
            .await?)
    })
}
