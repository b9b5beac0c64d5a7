//! The registry on the `s3` backend, against a real S3 server (s3s-fs, see `tests/s3/`): the
//! distribution API's uploads (monolithic, chunked, resumed after a restart, large enough for
//! multipart writes), mounts, ranges, deletes, fsck, `/readyz`, and presigned redirects that
//! the object store itself checks.

mod inproc;
mod s3;

use std::sync::Arc;
use std::time::Duration;

use atcr::blobstore::{Algorithm, Digest, MULTIPART_CHUNK};
use inproc::{TestServer, bytes, expect_error, header};
use reqwest::{Method, StatusCode};
use s3::S3Server;

async fn server_on(s3: &S3Server, prefix: &str, redirect: Option<Duration>) -> TestServer {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    TestServer::start_with_blobs(dir, s3.store(prefix, redirect)).await
}

fn blob_key(prefix: &str, digest: &Digest) -> String {
    format!(
        "{prefix}/blobs/sha256/{}/{}",
        &digest.hex()[..2],
        digest.hex()
    )
}

async fn pull(s: &TestServer, repo: &str, digest: &Digest) -> Vec<u8> {
    let r = s
        .req(Method::GET, &format!("/v2/{repo}/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn uploads_mounts_ranges_and_deletes_on_s3() {
    let s3 = S3Server::start();
    let s = server_on(&s3, "node", None).await;

    // Monolithic, larger than two multipart parts: stored once, under its digest only.
    let big = bytes(1, 2 * MULTIPART_CHUNK + 12_345);
    let big_digest = s.push_blob("t/a", &big).await;
    assert_eq!(pull(&s, "t/a", &big_digest).await, big);
    assert!(s3.object_path(&blob_key("node", &big_digest)).exists());
    assert!(
        s3.keys().iter().all(|k| !k.starts_with("node/uploads/")),
        "upload parts left behind: {:?}",
        s3.keys()
    );

    // A wrong digest: refused, and nothing appears under either digest.
    let wrong = Digest::of(Algorithm::Sha256, b"something else");
    let r = s
        .req(
            Method::POST,
            &format!("/v2/t/a/blobs/uploads/?digest={wrong}"),
        )
        .body(bytes(2, 1000))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    let actual = Digest::of(Algorithm::Sha256, &bytes(2, 1000));
    for d in [&wrong, &actual] {
        assert!(!s3.object_path(&blob_key("node", d)).exists());
    }

    // Chunked: two chunks (one of them a multipart write), then the state is lost (a restart:
    // the running hash is recomputed from the parts in the bucket) and the upload resumes.
    let data = bytes(3, MULTIPART_CHUNK + 300_000);
    let digest = Digest::of(Algorithm::Sha256, &data);
    let r = s
        .req(Method::POST, "/v2/t/b/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = header(&r, "location");
    let split = MULTIPART_CHUNK + 100_000;
    let r = s
        .req(Method::PATCH, &location)
        .header("content-range", format!("0-{}", split - 1))
        .body(data[..split].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let dir = s.stop().await;
    let s = TestServer::start_with_blobs(dir, s3.store("node", None)).await;
    let r = s.req(Method::GET, &location).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "range"), format!("0-{}", split - 1));
    let r = s
        .req(Method::PATCH, &location)
        .header("content-range", format!("{split}-{}", split + 99_999))
        .body(data[split..split + 100_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = s
        .req(Method::PUT, &format!("{location}?digest={digest}"))
        .body(data[split + 100_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    assert_eq!(pull(&s, "t/b", &digest).await, data);

    // Cross-repository mount: no bytes move.
    let r = s
        .req(
            Method::POST,
            &format!("/v2/t/c/blobs/uploads/?mount={digest}&from=t/b"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(pull(&s, "t/c", &digest).await, data);

    // Ranges, small (read whole) and large (streamed).
    for (start, end) in [(10u64, 99u64), (1000, MULTIPART_CHUNK as u64 + 5000)] {
        let r = s
            .req(Method::GET, &format!("/v2/t/b/blobs/{digest}"))
            .header("range", format!("bytes={start}-{end}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(
            r.bytes().await.unwrap().as_ref(),
            &data[start as usize..=end as usize]
        );
    }

    // A manifest and its layers, then a delete of the blob link.
    let (manifest, _) = s
        .push_image("t/d", "v1", &[&bytes(4, 5000)], serde_json::json!({}))
        .await;
    let r = s
        .req(Method::GET, &format!("/v2/t/d/manifests/{manifest}"))
        .header("accept", inproc::OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .req(Method::DELETE, &format!("/v2/t/c/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = s
        .req(Method::GET, &format!("/v2/t/c/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
    assert_eq!(pull(&s, "t/b", &digest).await, data);

    // fsck over the bucket finds a changed byte.
    let report = s.app.registry.blobs().fsck(false).await.unwrap();
    assert!(report.bad.is_empty() && report.good >= 4, "{report:?}");
    let path = s3.object_path(&blob_key("node", &big_digest));
    let mut damaged = std::fs::read(&path).unwrap();
    damaged[7] ^= 1;
    std::fs::write(&path, damaged).unwrap();
    let report = s.app.registry.blobs().fsck(false).await.unwrap();
    assert_eq!(report.bad.len(), 1);
    assert_eq!(report.bad[0].digest, big_digest);
}

#[tokio::test]
async fn readyz_follows_the_object_store() {
    let mut s3 = S3Server::start();
    let s = server_on(&s3, "", None).await;
    let ready = || async { s.client.get(s.url("/readyz")).send().await.unwrap() };
    assert_eq!(ready().await.status(), StatusCode::OK);

    s3.stop();
    let r = ready().await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.text().await.unwrap().contains("storage"));
    // A push fails with an OCI error, not a hang or a bare 500 page.
    let r = s
        .req(Method::POST, "/v2/t/x/blobs/uploads/?digest=sha256:0000000000000000000000000000000000000000000000000000000000000000")
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_server_error());
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["errors"][0]["code"].is_string(), "{body}");

    s3.resume();
    assert_eq!(ready().await.status(), StatusCode::OK);
}

#[tokio::test]
async fn blob_gets_redirect_to_presigned_urls_that_s3_checks() {
    let s3 = S3Server::start();
    let s = server_on(&s3, "r", Some(Duration::from_mins(15))).await;
    let data = bytes(5, 70_000);
    let digest = s.push_blob("t/img", &data).await;
    let path = format!("/v2/t/img/blobs/{digest}");
    atcr::tls::install_crypto_provider();
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let token = s.token_for(&Method::GET, &path);

    // Authorization comes first: no token, no URL.
    let r = no_follow.get(s.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("location").is_none());
    // A repository that does not hold the blob: unknown, no URL.
    let other = format!("/v2/t/other/blobs/{digest}");
    let r = no_follow
        .get(s.url(&other))
        .bearer_auth(s.token_for(&Method::GET, &other))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;

    // HEAD stays local.
    let r = no_follow
        .head(s.url(&path))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-length"), data.len().to_string());

    let r = no_follow
        .get(s.url(&path))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(header(&r, "docker-content-digest"), digest.as_str());
    let url = header(&r, "location");
    assert!(url.starts_with(&s3.endpoint()), "{url}");
    assert!(url.contains("X-Amz-Signature="), "{url}");

    // The object store serves the bytes, and ranges, itself.
    let r = no_follow.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().as_ref(), data.as_slice());
    let r = no_follow
        .get(&url)
        .header("range", "bytes=5-9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[5..10]);

    // A forged signature, or the URL pointed at another object, is refused by s3s-fs.
    let sig = url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let mut forged = url.clone();
    let flipped = if &url[sig..=sig] == "0" { "1" } else { "0" };
    forged.replace_range(sig..=sig, flipped);
    assert_eq!(
        no_follow.get(&forged).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let elsewhere = url.replacen(&digest.hex()[..8], "00000000", 1);
    assert_eq!(
        no_follow.get(&elsewhere).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );

    // An expired URL is refused too.
    let short = s3.store("r", Some(Duration::from_secs(1)));
    let url = short.redirect_url(&digest).await.unwrap().unwrap();
    assert_eq!(
        no_follow.get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        no_follow.get(&url).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );

    // Without redirects the same store streams through the node.
    assert_eq!(
        s3.store("r", None).redirect_url(&digest).await.unwrap(),
        None
    );
}
