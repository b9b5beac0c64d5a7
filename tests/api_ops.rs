//! Operator endpoints: health, readiness, metrics.

mod inproc;

use std::sync::Arc;

use inproc::{TestServer, bytes};
use reqwest::{Method, StatusCode};

async fn text(s: &TestServer, path: &str) -> (StatusCode, String) {
    let r = s.req(Method::GET, path).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let s = TestServer::start().await;
    assert_eq!(text(&s, "/healthz").await, (StatusCode::OK, "ok\n".into()));
    assert_eq!(
        text(&s, "/readyz").await,
        (StatusCode::OK, "ready\n".into())
    );

    s.push_blob("t/m", &bytes(1, 1234)).await;
    let r = s
        .req(Method::GET, "/v2/t/m/tags/list")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let (status, metrics) = text(&s, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    for line in [
        "atcr_http_requests_total{endpoint=\"upload_start\",status=\"201\"} 1",
        "atcr_http_requests_total{endpoint=\"tags_list\",status=\"404\"} 1",
        "atcr_http_requests_total{endpoint=\"readyz\",status=\"200\"} 1",
        "atcr_blob_bytes_received_total 1234",
        "atcr_blobs 1",
        "atcr_storage_blob_bytes 1234",
        "atcr_repositories 0",
        "atcr_upload_sessions 0",
        "# TYPE atcr_http_requests_total counter",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in\n{metrics}"
        );
    }
    assert!(metrics.contains("atcr_storage_free_bytes "));
}

#[tokio::test]
async fn readiness_fails_below_the_disk_floor() {
    let s = TestServer::start_with_floor(Arc::new(tempfile::tempdir().unwrap()), u64::MAX).await;
    let (status, body) = text(&s, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("below the floor"), "{body}");
    assert_eq!(text(&s, "/healthz").await.0, StatusCode::OK);
}
