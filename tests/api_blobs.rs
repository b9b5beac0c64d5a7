//! Blob reads, uploads (monolithic, chunked, resumed), mounts and deletes over real HTTP.

mod inproc;

use atcr::auth::{Access, Scope};
use atcr::blobstore::{Algorithm, Digest};
use inproc::{TestServer, bytes, expect_error, header};
use reqwest::{Method, StatusCode};

#[tokio::test]
async fn base_endpoint_and_unknown_paths() {
    let s = TestServer::start().await;
    let r = s.req(Method::GET, "/v2/").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(&r, "docker-distribution-api-version"),
        "registry/2.0"
    );
    let r = s.req(Method::GET, "/nothing").send().await.unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "UNSUPPORTED").await;
    let r = s.req(Method::POST, "/v2/").send().await.unwrap();
    expect_error(r, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
    let r = s
        .req(Method::GET, "/v2/Upper/tags/list")
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "NAME_INVALID").await;
    let r = s
        .req(Method::GET, "/v2/t/r/blobs/sha256:1234")
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    let r = s
        .req(
            Method::GET,
            "/v2/t/r/blobs/md5:d41d8cd98f00b204e9800998ecf8427e",
        )
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
}

#[tokio::test]
async fn monolithic_upload_ranges_and_delete() {
    let s = TestServer::start().await;
    let data = bytes(1, 100_000);
    let digest = s.push_blob("t/a/b", &data).await;
    let path = format!("/v2/t/a/b/blobs/{digest}");

    let r = s.req(Method::HEAD, &path).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-length"), "100000");
    assert_eq!(header(&r, "docker-content-digest"), digest.as_str());
    let r = s.req(Method::GET, &path).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap(), data);

    let r = s
        .req(Method::GET, &path)
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&r, "content-range"), "bytes 10-19/100000");
    assert_eq!(r.bytes().await.unwrap(), &data[10..20]);
    let r = s
        .req(Method::GET, &path)
        .header("range", "bytes=-5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), &data[99_995..]);
    let r = s
        .req(Method::GET, &path)
        .header("range", "bytes=100000-")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "content-range"), "bytes */100000");
    expect_error(r, StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID").await;
    let r = s
        .req(Method::GET, &path)
        .header("range", "lines=1-2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Another repository cannot read it without a mount.
    let r = s
        .req(Method::GET, &format!("/v2/t/other/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;

    let r = s.req(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = s.req(Method::HEAD, &path).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = s.req(Method::DELETE, &path).send().await.unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;

    // A wrong digest is refused and nothing is stored under either digest.
    let wrong = Digest::of(Algorithm::Sha256, b"something else");
    let r = s
        .req(
            Method::POST,
            &format!("/v2/t/a/b/blobs/uploads/?digest={wrong}"),
        )
        .body(data.clone())
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    let r = s
        .req(Method::HEAD, &format!("/v2/t/a/b/blobs/{wrong}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // An empty blob.
    let empty = s.push_blob("t/a/b", b"").await;
    let r = s
        .req(Method::GET, &format!("/v2/t/a/b/blobs/{empty}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status(), r.bytes().await.unwrap().len()),
        (StatusCode::OK, 0)
    );
}

#[tokio::test]
async fn chunked_upload_with_status_and_order_checks() {
    let s = TestServer::start().await;
    let data = bytes(2, 300_000);
    let digest = Digest::of(Algorithm::Sha256, &data);

    let r = s
        .req(Method::POST, "/v2/t/r/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range"), "0-0");
    let uuid = header(&r, "docker-upload-uuid");
    let location = header(&r, "location");
    assert_eq!(location, format!("/v2/t/r/blobs/uploads/{uuid}"));

    let mut offset = 0;
    for chunk in data[..200_000].chunks(70_000) {
        let end = offset + chunk.len() - 1;
        let r = s
            .req(Method::PATCH, &location)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{offset}-{end}"))
            .body(chunk.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(header(&r, "range"), format!("0-{end}"));
        offset = end + 1;
    }

    // Out of order: the server says where the upload really ends.
    let r = s
        .req(Method::PATCH, &location)
        .header("content-range", "0-9")
        .body(vec![0u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "range"), "0-199999");
    let detail = expect_error(r, StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID").await;
    assert_eq!(detail["offset"], 200_000);

    let r = s.req(Method::GET, &location).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "range"), "0-199999");
    assert_eq!(header(&r, "docker-upload-uuid"), uuid);

    // The same upload is unknown under another repository.
    let r = s
        .req(Method::GET, &format!("/v2/t/other/blobs/uploads/{uuid}"))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;

    // A PATCH without Content-Range streams on; the PUT carries the rest.
    let r = s
        .req(Method::PATCH, &location)
        .body(data[200_000..250_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "range"), "0-249999");
    let r = s
        .req(Method::PUT, &format!("{location}?digest={digest}"))
        .body(data[250_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "location"), format!("/v2/t/r/blobs/{digest}"));
    let r = s
        .req(Method::GET, &format!("/v2/t/r/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), data);

    // The session is gone once completed.
    let r = s.req(Method::GET, &location).send().await.unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
}

#[tokio::test]
async fn post_put_sha512_cancel_and_bad_finishes() {
    let s = TestServer::start().await;
    let data = bytes(3, 5000);

    // POST then PUT with the whole body, by sha512.
    let d512 = Digest::of(Algorithm::Sha512, &data);
    let r = s
        .req(Method::POST, "/v2/t/r/blobs/uploads/")
        .send()
        .await
        .unwrap();
    let location = header(&r, "location");
    let r = s
        .req(Method::PUT, &format!("{location}?digest={d512}"))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "docker-content-digest"), d512.as_str());
    let r = s
        .req(Method::GET, &format!("/v2/t/r/blobs/{d512}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), data);

    // A PUT without a digest, and a digest that does not match.
    let r = s
        .req(Method::POST, "/v2/t/r/blobs/uploads/")
        .send()
        .await
        .unwrap();
    let location = header(&r, "location");
    let r = s
        .req(Method::PUT, &location)
        .body(data.clone())
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    let wrong = Digest::of(Algorithm::Sha256, b"x");
    let r = s
        .req(Method::PUT, &format!("{location}?digest={wrong}"))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    let detail = expect_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert_eq!(
        detail["actual"],
        Digest::of(Algorithm::Sha256, &data).as_str()
    );

    // Cancel.
    let r = s
        .req(Method::POST, "/v2/t/r/blobs/uploads/")
        .send()
        .await
        .unwrap();
    let location = header(&r, "location");
    s.req(Method::PATCH, &location)
        .body(data.clone())
        .send()
        .await
        .unwrap();
    let r = s.req(Method::DELETE, &location).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = s.req(Method::GET, &location).send().await.unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    let r = s.req(Method::DELETE, &location).send().await.unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;

    // Unknown and malformed upload ids.
    let r = s
        .req(
            Method::PATCH,
            "/v2/t/r/blobs/uploads/0d9b3a3e-3c55-4f0e-9c1f-1f7a6c7a0000",
        )
        .body("x")
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    let r = s
        .req(Method::PATCH, "/v2/t/r/blobs/uploads/nonsense")
        .body("x")
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
}

#[tokio::test]
async fn cross_repository_mount() {
    let s = TestServer::start().await;
    let data = bytes(4, 1000);
    let digest = s.push_blob("t/src/repo", &data).await;

    let r = s
        .req(
            Method::POST,
            &format!("/v2/t/dst/blobs/uploads/?mount={digest}&from=t/src/repo"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "location"), format!("/v2/t/dst/blobs/{digest}"));
    let r = s
        .req(Method::GET, &format!("/v2/t/dst/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), data);

    // Mounting from a repository that lacks the blob falls back to a new upload session.
    let r = s
        .req(
            Method::POST,
            &format!("/v2/t/third/blobs/uploads/?mount={digest}&from=t/nothing/here"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(header(&r, "location").starts_with("/v2/t/third/blobs/uploads/"));
    // Without `from`, a mount is an ordinary upload: a blob is never found by digest alone.
    let r = s
        .req(
            Method::POST,
            &format!("/v2/t/fourth/blobs/uploads/?mount={digest}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // Nor does a source the token may not pull from lend its blobs.
    let only_target = s.app.auth.tokens.issue(
        Some(&s.user),
        vec![Access::from_scope(
            &Scope::parse("repository:t/fifth:pull,push").unwrap(),
        )],
        atcr::pds::accounts::now_secs(),
    );
    let r = s
        .anonymous(
            Method::POST,
            &format!("/v2/t/fifth/blobs/uploads/?mount={digest}&from=t/src/repo"),
        )
        .bearer_auth(only_target)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn uploads_resume_after_restart_and_expire() {
    let s = TestServer::start().await;
    let data = bytes(5, 120_000);
    let digest = Digest::of(Algorithm::Sha256, &data);
    let r = s
        .req(Method::POST, "/v2/t/r/blobs/uploads/")
        .send()
        .await
        .unwrap();
    let location = header(&r, "location");
    s.req(Method::PATCH, &location)
        .header("content-range", "0-59999")
        .body(data[..60_000].to_vec())
        .send()
        .await
        .unwrap();
    let abandoned = header(
        &s.req(Method::POST, "/v2/t/r/blobs/uploads/")
            .send()
            .await
            .unwrap(),
        "location",
    );
    s.req(Method::PATCH, &abandoned)
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();

    // A restart loses the in-memory hash state; the upload goes on from what is stored.
    let dir = s.stop().await;
    let s = TestServer::start_in(dir).await;
    let r = s.req(Method::GET, &location).send().await.unwrap();
    assert_eq!(header(&r, "range"), "0-59999");
    s.req(Method::PATCH, &location)
        .header("content-range", "60000-119999")
        .body(data[60_000..].to_vec())
        .send()
        .await
        .unwrap();
    let r = s
        .req(Method::PUT, &format!("{location}?digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s
        .req(Method::GET, &format!("/v2/t/r/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), data);

    // Expiry removes idle sessions and their parts, and parts that no session owns.
    let orphan = s
        .dir
        .path()
        .join("blobs/uploads/7c1e0f52-9d0a-4c57-8c0b-36a52b3b2d11");
    std::fs::create_dir_all(&orphan).unwrap();
    std::fs::write(orphan.join("00000000"), b"left by a crash").unwrap();
    assert_eq!(s.app.registry.expire_uploads(0, false).await.unwrap(), 2);
    let r = s.req(Method::GET, &abandoned).send().await.unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    assert!(!orphan.exists());
    assert_eq!(
        std::fs::read_dir(s.dir.path().join("blobs/uploads"))
            .unwrap()
            .count(),
        0
    );
}

/// Client-supplied ranges at the edges of u64: no arithmetic wraps.
#[tokio::test]
async fn ranges_at_the_u64_limit_are_refused_not_wrapped() {
    let s = TestServer::start().await;
    let r = s
        .req(Method::POST, "/v2/t/edge/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = header(&r, "location");
    // `end - start + 1` would wrap to 0 and match the empty body.
    let r = s
        .req(Method::PATCH, &location)
        .header("content-range", "0-18446744073709551615")
        .body(Vec::new())
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID").await;
    let r = s
        .req(Method::PATCH, &location)
        .header("content-range", "0-18446744073709551614")
        .body(Vec::new())
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID").await;
    let r = s.req(Method::GET, &location).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "range"), "0-0");

    let data = bytes(9, 100);
    let digest = s.push_blob("t/edge", &data).await;
    let path = format!("/v2/t/edge/blobs/{digest}");
    for (range, expected) in [
        ("bytes=0-18446744073709551615", &data[..]),
        ("bytes=99-18446744073709551615", &data[99..]),
        ("bytes=-18446744073709551615", &data[..]),
    ] {
        let r = s
            .req(Method::GET, &path)
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(r.bytes().await.unwrap(), expected, "{range}");
    }
    for range in [
        "bytes=18446744073709551615-",
        "bytes=18446744073709551615-18446744073709551615",
    ] {
        let r = s
            .req(Method::GET, &path)
            .header("range", range)
            .send()
            .await
            .unwrap();
        expect_error(r, StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID").await;
    }
    let r = s
        .req(Method::GET, &path)
        .header("range", "bytes=0-18446744073709551616")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "an unparseable range is ignored"
    );
}
