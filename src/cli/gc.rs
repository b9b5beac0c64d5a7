//! `atcr gc [--dry-run]`: one garbage collection of blobs no manifest uses and of stale uploads.
//! Through the running daemon's admin socket (the node keeps serving), or, with the daemon
//! stopped, on the state opened here.

use std::fmt::Write as _;

use anyhow::Context;

use crate::admin::Op;
use crate::appview::gc::{Gc, GcOptions, GcReport};
use crate::config::Config;

pub fn run(config: &Config, dry_run: bool) -> anyhow::Result<()> {
    let report: GcReport = match crate::admin::call(&config.data_dir, &Op::Gc { dry_run }) {
        Some(reply) => {
            serde_json::from_str(&reply?).context("unreadable answer from the daemon")?
        }
        None => offline(config, dry_run)?,
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
        let opts = GcOptions {
            dry_run,
            grace_secs: config.gc.grace_secs,
            upload_expiry_secs: config.uploads.expire_after_secs,
        };
        Ok(Gc::new(index, blobs).run(opts, &|_| false).await?)
    })
}
