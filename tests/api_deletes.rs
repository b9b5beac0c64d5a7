//! Deletes racing each other: of concurrent deletes of one manifest or tag, one answers 202 and
//! the others 404, never 500; stars and unstars at once settle to what was asked.

mod inproc;

use inproc::{OCI_MANIFEST, TestServer, bytes, expect_error};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// Counts of the statuses `n` parallel `DELETE`s of `path` answered.
async fn parallel_deletes(s: &TestServer, path: &str, n: usize) -> Vec<StatusCode> {
    let requests = (0..n).map(|_| async {
        let r = s.req(Method::DELETE, path).send().await.unwrap();
        let status = r.status();
        assert!(
            !status.is_server_error(),
            "{status}: {}",
            r.text().await.unwrap()
        );
        status
    });
    let mut statuses = futures_util::future::join_all(requests).await;
    statuses.sort();
    statuses
}

#[tokio::test]
async fn concurrent_deletes_answer_one_202_and_404s() {
    let s = TestServer::start().await;
    let (digest, body) = s
        .push_image("t/race", "v1", &[&bytes(40, 64)], json!({}))
        .await;
    let mut expected = vec![StatusCode::ACCEPTED];
    expected.extend([StatusCode::NOT_FOUND; 19]);

    // The same tag, 20 at once: one deletes it, the others find it gone.
    assert_eq!(
        parallel_deletes(&s, "/v2/t/race/manifests/v1", 20).await,
        expected
    );
    // The same digest, 20 at once, while a tag still points at it.
    s.put_manifest("t/race", "v2", OCI_MANIFEST, &body).await;
    assert_eq!(
        parallel_deletes(&s, &format!("/v2/t/race/manifests/{digest}"), 20).await,
        expected
    );
    let r = s
        .req(Method::GET, "/v2/t/race/manifests/v2")
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;

    // A tag and its manifest deleted at the same time: both go, neither answers 500.
    let digest = s.put_manifest("t/race", "v3", OCI_MANIFEST, &body).await;
    let tag = s.req(Method::DELETE, "/v2/t/race/manifests/v3").send();
    let manifest = s
        .req(Method::DELETE, &format!("/v2/t/race/manifests/{digest}"))
        .send();
    let (tag, manifest) = tokio::join!(tag, manifest);
    let tag = tag.unwrap().status();
    assert!(
        [StatusCode::ACCEPTED, StatusCode::NOT_FOUND].contains(&tag),
        "tag delete answered {tag}"
    );
    assert_eq!(manifest.unwrap().status(), StatusCode::ACCEPTED);
    let r = s
        .req(Method::HEAD, &format!("/v2/t/race/manifests/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Unstarring twice at once is a no-op for the slower one.
    let appview = s.app.registry.appview();
    let loc = appview.locate(&"t/race".parse().unwrap()).unwrap();
    s.push_image("t/race", "v4", &[&bytes(41, 64)], json!({}))
        .await;
    appview.set_star(&s.user, &loc, true).await.unwrap();
    assert!(
        appview
            .index()
            .star_of(&s.user, &loc.key)
            .unwrap()
            .is_some()
    );
    let unstars = (0..10).map(|_| appview.set_star(&s.user, &loc, false));
    for r in futures_util::future::join_all(unstars).await {
        r.unwrap();
    }
    assert!(
        appview
            .index()
            .star_of(&s.user, &loc.key)
            .unwrap()
            .is_none()
    );
}
