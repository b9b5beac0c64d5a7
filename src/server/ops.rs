//! Operator endpoints: `/healthz`, `/readyz` and `/metrics` (Prometheus text format).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use http::header::CONTENT_TYPE;
use http::{Response, StatusCode};

use super::App;
use super::body::{self, Body};
use super::storage::free_bytes;

/// Request counters, by endpoint label and status.
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    response_bytes: AtomicU64,
    started: Instant,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::new(BTreeMap::new()),
            response_bytes: AtomicU64::new(0),
            started: Instant::now(),
        }
    }
}

impl Metrics {
    pub fn record(&self, endpoint: &'static str, status: u16, response_bytes: u64) {
        *self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((endpoint, status))
            .or_default() += 1;
        self.response_bytes
            .fetch_add(response_bytes, Ordering::Relaxed);
    }
}

/// How long `/readyz` waits for the blob store to take and remove a probe object.
const STORAGE_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// What `/readyz` checks beyond storage and index.
#[derive(Debug, Clone, Default)]
pub struct DiskFloor {
    /// The directory whose filesystem must keep `min_free_bytes` free (the fs backend's root).
    pub path: Option<PathBuf>,
    pub min_free_bytes: u64,
}

fn text(status: StatusCode, content: String) -> Response<Body> {
    let mut r = Response::new(body::full(content));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The node's CA certificate, for clients to trust (404 when certificates are the operator's).
#[must_use]
pub fn ca_certificate(app: &App) -> Response<Body> {
    match &app.ca_pem {
        Some(pem) => {
            let mut r = text(StatusCode::OK, pem.clone());
            r.headers_mut().insert(
                CONTENT_TYPE,
                http::HeaderValue::from_static("application/x-pem-file"),
            );
            r
        }
        None => text(
            StatusCode::NOT_FOUND,
            "this node does not manage its own CA\n".into(),
        ),
    }
}

/// The process is up.
#[must_use]
pub fn healthz() -> Response<Body> {
    text(StatusCode::OK, "ok\n".into())
}

/// The node can take pushes: stores working (not failed and awaiting a reopen), index readable,
/// storage writable, disk above its floor.
pub async fn readyz(app: &App) -> Response<Body> {
    // A store that failed (a full disk) is reopened here too, as soon as it can be.
    let mut failures = if super::storage::poisoned(app).is_empty() {
        Vec::new()
    } else {
        super::storage::recover(app).await
    };
    if let Err(e) = app.registry.index().stats() {
        failures.push(format!("index: {e}"));
    }
    // An object store that stopped answering must not hold `/readyz` through its retries.
    match tokio::time::timeout(STORAGE_PROBE_TIMEOUT, app.registry.blobs().probe()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => failures.push(format!("storage: {e}")),
        Err(_) => failures.push(format!(
            "storage: no answer within {} s",
            STORAGE_PROBE_TIMEOUT.as_secs()
        )),
    }
    if let Some(path) = &app.disk.path {
        match free_bytes(path) {
            Ok(free) if free < app.disk.min_free_bytes => {
                failures.push(format!(
                    "disk: {free} bytes free, below the floor of {}",
                    app.disk.min_free_bytes
                ));
            }
            Ok(_) => {}
            Err(e) => failures.push(format!("disk: {e}")),
        }
    }
    if failures.is_empty() {
        text(StatusCode::OK, "ready\n".into())
    } else {
        tracing::warn!(?failures, "not ready");
        text(StatusCode::SERVICE_UNAVAILABLE, failures.join("\n") + "\n")
    }
}

/// `/metrics`, to a caller with the configured bearer token (anyone when none is set).
pub fn metrics_if_allowed(app: &App, headers: &http::HeaderMap) -> Response<Body> {
    if let Some(token) = &app.metrics_token {
        let presented = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let ok = presented.is_some_and(|p| {
            crate::pds::passwords::constant_time_eq(p.as_bytes(), token.as_bytes())
        });
        if !ok {
            let mut r = text(
                StatusCode::UNAUTHORIZED,
                "/metrics needs the token of server.metrics_token_file\n".into(),
            );
            r.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"metrics\""),
            );
            return r;
        }
    }
    metrics(app)
}

/// Prometheus text exposition.
pub fn metrics(app: &App) -> Response<Body> {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        name.to_owned()
    };
    let requests = family(
        "atcr_http_requests_total",
        "counter",
        "HTTP requests answered, by endpoint and status.",
    );
    let counts = app
        .metrics
        .requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let mut lines = String::new();
    for ((endpoint, status), n) in counts {
        let _ = writeln!(
            lines,
            "{requests}{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
        );
    }
    out.push_str(&lines);
    let mut gauge = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    gauge(
        "atcr_http_response_bytes_total",
        "counter",
        "Bytes sent in response bodies.",
        app.metrics.response_bytes.load(Ordering::Relaxed),
    );
    gauge(
        "atcr_blob_bytes_received_total",
        "counter",
        "Blob bytes received and stored.",
        app.registry.bytes_received(),
    );
    gauge(
        "atcr_uptime_seconds",
        "gauge",
        "Seconds since the process started.",
        app.metrics.started.elapsed().as_secs(),
    );
    let gc = app.registry.appview().gc().stats();
    gauge(
        "atcr_gc_runs_total",
        "counter",
        "Garbage collections finished (scheduled and `atcr gc`, dry runs not counted).",
        gc.runs.load(Ordering::Relaxed),
    );
    gauge(
        "atcr_gc_blobs_deleted_total",
        "counter",
        "Blobs deleted by garbage collection.",
        gc.blobs_deleted.load(Ordering::Relaxed),
    );
    gauge(
        "atcr_gc_bytes_freed_total",
        "counter",
        "Bytes of blobs deleted by garbage collection.",
        gc.bytes_freed.load(Ordering::Relaxed),
    );
    gauge(
        "atcr_gc_pds_blocks_deleted_total",
        "counter",
        "PDS blocks (MST nodes, records, commits) no repository head reached, deleted by garbage collection.",
        gc.pds_blocks_deleted.load(Ordering::Relaxed),
    );
    gauge(
        "atcr_gc_pds_bytes_freed_total",
        "counter",
        "Bytes of PDS blocks deleted by garbage collection.",
        gc.pds_bytes_freed.load(Ordering::Relaxed),
    );
    gauge(
        "atcr_pds_live_bytes",
        "gauge",
        "Bytes of pds.redb's table pages as the last garbage collection measured them (0: none since start).",
        gc.pds_live_bytes.load(Ordering::Relaxed),
    );
    gauge(
        "atcr_blob_bytes_sendfile_total",
        "counter",
        "Bytes of blob bodies sent with sendfile (plain HTTP/1, filesystem storage).",
        crate::http::sendfile::bytes_sent(),
    );
    gauge(
        "atcr_gc_index_compactions_total",
        "counter",
        "Online compactions of index.redb made by garbage collection.",
        gc.index_compactions.load(Ordering::Relaxed),
    );
    gauge(
        "atcr_index_file_bytes",
        "gauge",
        "Bytes index.redb takes on disk (0: in memory).",
        app.registry.index().file_bytes(),
    );
    gauge(
        "atcr_gc_last_run_timestamp_seconds",
        "gauge",
        "When the last garbage collection finished (Unix seconds; 0: none since start).",
        gc.last_run.load(Ordering::Relaxed),
    );
    match app.registry.index().stats() {
        Ok(s) => {
            gauge(
                "atcr_repositories",
                "gauge",
                "Repositories in the index.",
                s.repositories,
            );
            gauge(
                "atcr_manifests",
                "gauge",
                "Manifests in the index.",
                s.manifests,
            );
            gauge("atcr_tags", "gauge", "Tags in the index.", s.tags);
            gauge("atcr_blobs", "gauge", "Distinct blobs stored.", s.blobs);
            gauge(
                "atcr_storage_bytes",
                "gauge",
                "Bytes of the blobs stored (each digest once, whoever uses it).",
                s.blob_bytes,
            );
            gauge(
                "atcr_storage_blob_bytes",
                "gauge",
                "Bytes of distinct blobs stored (the older name of atcr_storage_bytes).",
                s.blob_bytes,
            );
            gauge(
                "atcr_upload_sessions",
                "gauge",
                "Upload sessions open.",
                s.uploads,
            );
        }
        Err(e) => tracing::error!(error = %e, "metrics: index unreadable"),
    }
    if let Some(free) = app.disk.path.as_deref().and_then(|p| free_bytes(p).ok()) {
        gauge(
            "atcr_storage_free_bytes",
            "gauge",
            "Free bytes on the blob filesystem.",
            free,
        );
    }
    if let Err(e) = super::usage::write_metrics(app, &mut out) {
        tracing::error!(error = %e, "metrics: storage usage unreadable");
    }
    let mut r = text(StatusCode::OK, out);
    r.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}
