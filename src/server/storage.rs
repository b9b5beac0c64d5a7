//! Storage health: the free-space floor every write checks (`storage.min_free_bytes`), and
//! recovery of the redb stores after an I/O error. After a write fails on a full disk redb
//! refuses all later work ("previous I/O error") until the database is reopened; the stores are
//! reopened here — `pds.redb` replaying `pds.wal`, so nothing acknowledged is lost — as soon as
//! that succeeds, and `/readyz` says not ready meanwhile. And one garbage collection of the
//! node: the hold's share, then the registry's.

use std::time::Duration;

use http::StatusCode;

use super::App;
use crate::http::human_bytes;
use crate::oci::{ErrorCode, OciError};
use crate::pds::xrpc::{XrpcError, XrpcMethod};

/// How often the recovery task looks at the stores.
pub const RECOVERY_INTERVAL: Duration = Duration::from_secs(2);

/// Whether an XRPC procedure stores something, and is refused below the floor. Deletes, sign-in
/// and session upkeep stay allowed: they are small, and an operator must be able to sign in.
fn stores(method: XrpcMethod) -> bool {
    matches!(
        method,
        XrpcMethod::CreateRecord
            | XrpcMethod::PutRecord
            | XrpcMethod::ApplyWrites
            | XrpcMethod::UploadBlob
    )
}

/// `(free, floor)` when the filesystem of the blob store has less than the floor free.
fn below_floor(app: &App) -> Option<(u64, u64)> {
    let path = app.disk.path.as_ref()?;
    let free = free_bytes(path).ok()?;
    (free < app.disk.min_free_bytes).then_some((free, app.disk.min_free_bytes))
}

fn floor_message((free, floor): (u64, u64)) -> String {
    format!(
        "the registry's storage is nearly full ({} free, below the floor of {}); try again once space is freed",
        human_bytes(free),
        human_bytes(floor)
    )
}

/// A registry write (`POST`, `PATCH`, `PUT` under `/v2/`) below the floor: 507
/// `INSUFFICIENT_STORAGE`.
pub fn refuse_oci_write(app: &App, method: &http::Method) -> Result<(), OciError> {
    if !matches!(
        *method,
        http::Method::POST | http::Method::PATCH | http::Method::PUT
    ) {
        return Ok(());
    }
    match below_floor(app) {
        Some(low) => {
            tracing::warn!(
                free = low.0,
                floor = low.1,
                "write refused below the free-space floor"
            );
            Err(OciError::new(
                ErrorCode::InsufficientStorage,
                floor_message(low),
            ))
        }
        None => Ok(()),
    }
}

/// An XRPC procedure that stores something, below the floor: 507 `StorageFull`, with the
/// method's metrics label.
pub fn refuse_xrpc_write(app: &App, path: &str) -> Option<(&'static str, XrpcError)> {
    let method = XrpcMethod::parse(path.strip_prefix("/xrpc/")?)?;
    if !stores(method) {
        return None;
    }
    let low = below_floor(app)?;
    let nsid = method.nsid();
    tracing::warn!(free = low.0, floor = low.1, %nsid, "write refused below the free-space floor");
    Some((
        nsid,
        XrpcError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "StorageFull",
            floor_message(low),
        ),
    ))
}

/// The stores that refuse work until they are reopened.
#[must_use]
pub fn poisoned(app: &App) -> Vec<&'static str> {
    let mut out = Vec::new();
    if app.pds.store().is_poisoned() {
        out.push("pds.redb");
    }
    if app.registry.index().is_poisoned() {
        out.push("index.redb");
    }
    out
}

/// Reopens every poisoned store; what is still failing, as `/readyz` lines.
pub async fn recover(app: &App) -> Vec<String> {
    let pds = app.pds.store().clone();
    let index = app.registry.index().clone();
    let attempt = tokio::task::spawn_blocking(move || {
        let mut failures = Vec::new();
        if pds.is_poisoned()
            && let Err(e) = pds.reopen()
        {
            failures.push(format!("pds.redb: storage failed, reopening: {e}"));
        }
        if index.is_poisoned()
            && let Err(e) = index.reopen()
        {
            failures.push(format!("index.redb: storage failed, reopening: {e}"));
        }
        failures
    })
    .await;
    attempt.unwrap_or_else(|e| vec![format!("storage recovery: {e}")])
}

/// The background task: reopens a poisoned store as soon as it can, every
/// [`RECOVERY_INTERVAL`]. Its failures are logged by the worker.
pub async fn recovery_tick(app: &App) -> Result<(), String> {
    if poisoned(app).is_empty() {
        return Ok(());
    }
    let failures = recover(app).await;
    if failures.is_empty() {
        tracing::warn!("storage recovered: every store reopened");
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// Free bytes for unprivileged users on the filesystem holding `path`.
pub fn free_bytes(path: &std::path::Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(path)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

impl App {
    /// One garbage collection: the hold's share first (`crate::hold::gc`: layer records of
    /// manifests gone, uploads no layer record names), then the registry's, which takes up the
    /// blobs the hold released. A failure of the hold's share leaves its blobs and the rest runs.
    pub async fn collect_garbage(
        &self,
        opts: crate::appview::gc::GcOptions,
    ) -> Result<crate::appview::gc::GcReport, crate::appview::gc::GcError> {
        let now = crate::pds::now_secs();
        let held = match self.hold.collect(now, opts.grace_secs, opts.dry_run).await {
            Ok(held) => held,
            Err(e) => {
                tracing::error!(error = %e, "hold collection failed; its blobs stay");
                crate::hold::HoldCollection::default()
            }
        };
        let mut report = self.registry.collect_garbage(opts).await?;
        report.hold_manifests_gone = held.manifests_gone;
        report.hold_manifests_unverified = held.manifests_unverified;
        report.hold_layers_removed = held.layers_removed;
        report.hold_blobs_released = held.blobs_released;
        report.hold_bytes_released = held.bytes_released;
        Ok(report)
    }
}
