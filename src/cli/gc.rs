//! `atcr gc [--dry-run]`: one garbage collection of blobs no manifest uses, of stale uploads
//! and of PDS blocks no repository head reaches. Through the running daemon's admin socket (the
//! node keeps serving), or, with the daemon stopped, on the state opened here — then
//! `pds.redb` and `index.redb` are also compacted, so their files give back what was freed (the
//! daemon cannot: compaction needs the file to itself).

use std::fmt::Write as _;

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
                compact_files(config)?;
            }
            report
        };
    let mut out = format!(
        "{report} ({})",
        crate::http::human_bytes(report.bytes_freed)
    );
    for r in &report.retention {
        let _ = write!(
            out,
            "\nretention would delete from {}: {} tags ({}) and {} untagged manifests",
            r.repository,
            r.tags.len(),
            r.tags.join(", "),
            r.manifests.len()
        );
    }
    super::print(&out)
}

/// Compacts `pds.redb` and `index.redb`, so their files give back the pages the collection
/// (and the index's rebuilds and deletes) freed.
fn compact_files(config: &Config) -> anyhow::Result<()> {
    let pds = config.data_dir.join("pds.redb");
    let sizes = crate::pds::store::compact(&pds)
        .with_context(|| format!("compacting {}", pds.display()))?;
    print_compacted("pds.redb", sizes)?;
    let index = config.data_dir.join("index.redb");
    let sizes = crate::appview::index::Index::compact(&index)
        .with_context(|| format!("compacting {}", index.display()))?;
    print_compacted("index.redb", sizes)
}

fn print_compacted(name: &str, (before, after): (u64, u64)) -> anyhow::Result<()> {
    super::print(&format!(
        "{name} compacted: {} → {}",
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
