//! `atcr fsck [--quarantine]`: hash every stored blob and manifest again and report those whose
//! bytes no longer match their digest. Reads only (unless `--quarantine`), so the daemon may
//! keep running.

use anyhow::Context;

use crate::config::Config;

/// Runs the check; an error (exit 1) when any object is bad.
pub fn run(config: &Config, quarantine: bool) -> anyhow::Result<()> {
    if config.storage.backend == crate::config::Backend::Memory {
        return super::print("storage.backend is memory: nothing is stored on disk to check");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let root = config.blob_root();
    let place = match config.storage.s3_settings()? {
        Some(s3) => s3.describe(),
        None => root.display().to_string(),
    };
    let blobs = runtime
        .block_on(async { super::serve::blob_store(config) })
        .with_context(|| format!("cannot open blob storage {place}"))?;
    let report = runtime
        .block_on(blobs.fsck(quarantine))
        .with_context(|| format!("cannot read blob storage {place}"))?;
    let mut lines = Vec::new();
    for bad in &report.bad {
        let moved = bad
            .quarantined
            .as_ref()
            .map(|to| match config.storage.backend {
                crate::config::Backend::S3 => format!(", moved to {to} in {place}"),
                _ => format!(", moved to {}", root.join(to).display()),
            })
            .unwrap_or_default();
        lines.push(format!(
            "BAD {} ({} bytes) hashes to {}{moved}",
            bad.digest, bad.size, bad.actual
        ));
    }
    for key in &report.foreign {
        lines.push(format!("skipped {key}: not a digest key"));
    }
    lines.push(format!(
        "{} objects checked ({}), {} bad",
        report.good + report.bad.len() as u64,
        crate::http::human_bytes(report.bytes),
        report.bad.len()
    ));
    let out = lines.join("\n");
    super::print(&out)?;
    if report.bad.is_empty() {
        Ok(())
    } else if quarantine {
        anyhow::bail!(
            "{} damaged objects quarantined: push those images again",
            report.bad.len()
        )
    } else {
        anyhow::bail!(
            "{} damaged objects: `atcr fsck --quarantine` moves them aside, then push those images again",
            report.bad.len()
        )
    }
}
