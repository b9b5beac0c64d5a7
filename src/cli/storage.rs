//! `atcr storage migrate --to-config FILE`: copy every blob from the configured backend to the
//! one `[storage]` of FILE describes (disk to S3, one bucket to another), so a node can move.
//!
//! Offline, like `atcr index rebuild`: the daemon must be stopped (the index lock proves it),
//! so no push lands in the old store after its blob was copied. Resumable: blobs the target
//! already holds with the right size are skipped. Nothing is deleted from the source.

use std::path::Path;

use anyhow::Context;

use crate::blobstore::Step;
use crate::config::{Backend, Config};
use crate::http::human_bytes;

pub fn migrate(config: &Config, to_config: &Path) -> anyhow::Result<()> {
    let target = target_config(config, to_config)?;
    if same_store(config, &target) {
        anyhow::bail!(
            "{} names the storage this node already uses: nothing to migrate",
            to_config.display()
        );
    }
    if target.storage.backend == Backend::Memory {
        anyhow::bail!("migrating to the memory backend would keep nothing");
    }
    // Held until the end: the daemon cannot start meanwhile.
    let _index = super::serve::open_index(config).map_err(|e| {
        let text = format!("{e:#}");
        if text.contains("already open") || text.contains("lock") {
            anyhow::anyhow!(
                "{}/index.redb is in use: stop `atcr serve` first (blobs pushed during a migration would be missed)",
                config.data_dir.display()
            )
        } else {
            e
        }
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let source = super::serve::blob_store(config)?;
        let dest = super::serve::open_blobs(&target)?;
        let (from, to) = (describe(config), describe(&target));
        println!("migrating blobs from {from} to {to}");
        let report = source
            .migrate_to(&dest, |n, total, step| {
                let line = match step {
                    Step::Copied(d, size) => format!("copied  {d} ({})", human_bytes(size)),
                    Step::Skipped(d, size) => format!("present {d} ({})", human_bytes(size)),
                    Step::Bad(d) => format!("BAD     {d}: bytes do not match the digest; not copied"),
                };
                println!("[{n}/{total}] {line}");
            })
            .await
            .with_context(|| format!("migration from {from} to {to} stopped; run it again to resume"))?;
        for key in &report.foreign {
            println!("skipped {key}: not a digest key");
        }
        println!(
            "{} copied ({}), {} already present, {} damaged",
            report.copied,
            human_bytes(report.copied_bytes),
            report.skipped,
            report.bad.len()
        );
        if !report.bad.is_empty() {
            anyhow::bail!(
                "{} damaged blobs were not copied: `atcr fsck --quarantine`, then push those images again",
                report.bad.len()
            );
        }
        println!(
            "done: put the [storage] section of {} into the node's configuration, then start it",
            to_config.display()
        );
        Ok(())
    })
}

/// The node's configuration with the `[storage]` of `path` (the rest of that file is not read).
fn target_config(config: &Config, path: &Path) -> anyhow::Result<Config> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let other = Config::from_toml(&text, path)?;
    let mut target = config.clone();
    target.storage = other.storage;
    target
        .check()
        .with_context(|| format!("[storage] of {}", path.display()))?;
    Ok(target)
}

fn same_store(a: &Config, b: &Config) -> bool {
    let (sa, sb) = (&a.storage, &b.storage);
    match (sa.backend, sb.backend) {
        (Backend::Fs, Backend::Fs) => a.blob_root() == b.blob_root(),
        (Backend::S3, Backend::S3) => {
            sa.bucket == sb.bucket && sa.endpoint == sb.endpoint && sa.root == sb.root
        }
        _ => false,
    }
}

fn describe(config: &Config) -> String {
    match config.storage.s3_settings() {
        Ok(Some(s3)) => s3.describe(),
        _ => match config.storage.backend {
            Backend::Memory => "memory".to_owned(),
            _ => config.blob_root().display().to_string(),
        },
    }
}
