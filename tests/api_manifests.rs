//! Manifests, tags and referrers over real HTTP (lists: `api_lists.rs`).

mod inproc;

use atcr::blobstore::{Algorithm, Digest};
use inproc::{DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, TestServer, bytes, expect_error, header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test]
async fn push_pull_byte_identical_with_negotiation() {
    let s = TestServer::start().await;
    let (digest, body) = s
        .push_image(
            "t/lib/app",
            "v1",
            &[&bytes(1, 500)],
            json!({"annotations": {"a": "b"}}),
        )
        .await;

    for reference in ["v1".to_owned(), digest.to_string()] {
        let r = s
            .req(Method::GET, &format!("/v2/t/lib/app/manifests/{reference}"))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "content-type"), OCI_MANIFEST);
        assert_eq!(header(&r, "docker-content-digest"), digest.as_str());
        assert_eq!(
            r.bytes().await.unwrap(),
            body,
            "served bytes are the pushed bytes"
        );
    }
    let r = s
        .req(Method::HEAD, "/v2/t/lib/app/manifests/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status(), header(&r, "content-length")),
        (StatusCode::OK, body.len().to_string())
    );

    // A client that accepts only other types does not get this one.
    let r = s
        .req(Method::GET, "/v2/t/lib/app/manifests/v1")
        .header("accept", DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    let r = s
        .req(Method::GET, "/v2/t/lib/app/manifests/v1")
        .header("accept", format!("{DOCKER_MANIFEST}, {OCI_MANIFEST};q=0.9"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let r = s
        .req(Method::GET, "/v2/t/lib/app/manifests/nope")
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    // A reference that cannot be written names no manifest: a miss, as conformance expects.
    for reference in [".INVALID_MANIFEST_NAME", "sha256:abc"] {
        let path = format!("/v2/t/lib/app/manifests/{reference}");
        let r = s.req(Method::GET, &path).send().await.unwrap();
        let detail = expect_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
        assert_eq!(detail["reference"], reference);
        let r = s.req(Method::HEAD, &path).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    let r = s
        .req(Method::GET, "/v2/t/no/such/manifests/v1")
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;

    // By digest with sha512: not recordable.
    let d512 = Digest::of(Algorithm::Sha512, &body);
    let r = s
        .req(Method::PUT, &format!("/v2/t/lib/app/manifests/{d512}"))
        .header("content-type", OCI_MANIFEST)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    // Records hold sha256 digests only (the schema's 128 characters): refused, clearly.
    let detail = expect_error(r, StatusCode::BAD_REQUEST, "UNSUPPORTED").await;
    assert_eq!(detail["digest"], d512.as_str());
}

#[tokio::test]
async fn manifest_validation_errors() {
    let s = TestServer::start().await;
    let put = |reference: &str, media_type: &str, body: Vec<u8>| {
        s.req(Method::PUT, &format!("/v2/t/r/manifests/{reference}"))
            .header("content-type", media_type.to_owned())
            .body(body)
            .send()
    };
    let missing = Digest::of(Algorithm::Sha256, b"missing");
    let manifest = |digest: &Digest| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest.as_str(), "size": 7},
            "layers": [],
        }))
        .unwrap()
    };
    let detail = expect_error(
        put("v1", OCI_MANIFEST, manifest(&missing)).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "MANIFEST_BLOB_UNKNOWN",
    )
    .await;
    assert_eq!(detail["digest"], missing.as_str());
    expect_error(
        put("v1", OCI_MANIFEST, b"{not json".to_vec())
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "MANIFEST_INVALID",
    )
    .await;
    expect_error(
        put("v1", OCI_MANIFEST, b"{\"schemaVersion\":1}".to_vec())
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "MANIFEST_INVALID",
    )
    .await;
    expect_error(
        put("v1", DOCKER_MANIFEST, manifest(&missing))
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "MANIFEST_INVALID",
    )
    .await;
    expect_error(
        put("-bad", OCI_MANIFEST, manifest(&missing)).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "TAG_INVALID",
    )
    .await;

    // A descriptor whose size disagrees with the stored blob.
    let config = s.push_blob("t/r", b"config!!").await;
    expect_error(
        put("v1", OCI_MANIFEST, manifest(&config)).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "MANIFEST_INVALID",
    )
    .await;

    // By digest, the content must hash to it.
    let good = {
        let c = s.push_blob("t/r", b"config!").await;
        manifest(&c)
    };
    expect_error(
        put(missing.as_str(), OCI_MANIFEST, good.clone())
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "DIGEST_INVALID",
    )
    .await;
    assert_eq!(
        put(
            Digest::of(Algorithm::Sha256, &good).as_str(),
            OCI_MANIFEST,
            good
        )
        .await
        .unwrap()
        .status(),
        StatusCode::CREATED
    );

    // Over 4 MiB: 413.
    let mut huge = manifest(&missing);
    huge.extend(std::iter::repeat_n(b' ', 4 * 1024 * 1024));
    expect_error(
        put("big", OCI_MANIFEST, huge).await.unwrap(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "SIZE_INVALID",
    )
    .await;

    // A non-distributable layer need not be pushed.
    let c = s.push_blob("t/r", b"config!").await;
    let foreign = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": c.as_str(), "size": 7},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "digest": missing.as_str(), "size": 5, "urls": ["https://example.invalid/layer"]}],
    }))
    .unwrap();
    assert_eq!(
        put("win", DOCKER_MANIFEST, foreign).await.unwrap().status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn indexes_tag_moves_and_deletes() {
    let s = TestServer::start().await;
    let (amd, amd_body) = s
        .push_image("t/multi", "amd", &[&bytes(2, 100)], json!({}))
        .await;
    let (arm, _) = s
        .push_image("t/multi", "arm", &[&bytes(3, 100)], json!({}))
        .await;
    let index = |children: &[(&Digest, usize, &str)]| {
        let manifests: Vec<Value> = children
            .iter()
            .map(|(d, size, arch)| json!({"mediaType": OCI_MANIFEST, "digest": d.as_str(), "size": size, "platform": {"os": "linux", "architecture": arch}}))
            .collect();
        serde_json::to_vec(
            &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}),
        )
        .unwrap()
    };
    let missing = Digest::of(Algorithm::Sha256, b"no such manifest");
    let r = s
        .req(Method::PUT, "/v2/t/multi/manifests/latest")
        .header("content-type", OCI_INDEX)
        .body(index(&[
            (&amd, amd_body.len(), "amd64"),
            (&missing, 10, "arm64"),
        ]))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;

    // `latest` first names a single image, then moves to an index: the type follows the tag.
    s.put_manifest("t/multi", "latest", OCI_MANIFEST, &amd_body)
        .await;
    let idx_body = index(&[(&amd, amd_body.len(), "amd64"), (&arm, 1, "arm64")]);
    let idx = s
        .put_manifest("t/multi", "latest", OCI_INDEX, &idx_body)
        .await;
    let r = s
        .req(Method::GET, "/v2/t/multi/manifests/latest")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "content-type"), OCI_INDEX);
    assert_eq!(header(&r, "docker-content-digest"), idx.as_str());

    // Deleting a tag leaves the manifest; deleting by digest removes every tag pointing at it.
    s.put_manifest("t/multi", "also-amd", OCI_MANIFEST, &amd_body)
        .await;
    let r = s
        .req(Method::DELETE, "/v2/t/multi/manifests/also-amd")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = s
        .req(Method::GET, "/v2/t/multi/manifests/also-amd")
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    assert_eq!(
        s.req(Method::HEAD, &format!("/v2/t/multi/manifests/{amd}"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let r = s
        .req(Method::DELETE, &format!("/v2/t/multi/manifests/{amd}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = s
        .req(Method::GET, "/v2/t/multi/manifests/amd")
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    let r = s
        .req(Method::DELETE, &format!("/v2/t/multi/manifests/{amd}"))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
}

#[tokio::test]
async fn referrers_with_subject_and_filters() {
    let s = TestServer::start().await;
    let (subject, subject_body) = s
        .push_image("t/app", "v1", &[&bytes(4, 64)], json!({}))
        .await;
    let subject_desc =
        json!({"mediaType": OCI_MANIFEST, "digest": subject.as_str(), "size": subject_body.len()});

    // An artifact: image manifest with artifactType and the empty config.
    let empty = s.push_blob("t/app", b"{}").await;
    let sig = s.push_blob("t/app", b"signature").await;
    let artifact = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty.as_str(), "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": sig.as_str(), "size": 9}],
        "subject": subject_desc, "annotations": {"org.example": "yes"},
    }))
    .unwrap();
    let r = s
        .req(Method::PUT, "/v2/t/app/manifests/sig")
        .header("content-type", OCI_MANIFEST)
        .body(artifact.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "oci-subject"), subject.as_str());
    let sig_manifest = Digest::of(Algorithm::Sha256, &artifact);

    // A second referrer without artifactType reports its config media type.
    let (sbom, _) = s
        .push_image(
            "t/app",
            "sbom",
            &[&bytes(5, 10)],
            json!({"subject": subject_desc}),
        )
        .await;

    let r = s
        .req(Method::GET, &format!("/v2/t/app/referrers/{subject}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type"), OCI_INDEX);
    let list: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let manifests = list["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 2);
    let sig_entry = manifests
        .iter()
        .find(|m| m["digest"] == sig_manifest.as_str())
        .unwrap();
    assert_eq!(sig_entry["artifactType"], "application/vnd.example.sig");
    assert_eq!(sig_entry["size"], artifact.len());
    assert_eq!(sig_entry["annotations"]["org.example"], "yes");
    let sbom_entry = manifests
        .iter()
        .find(|m| m["digest"] == sbom.as_str())
        .unwrap();
    assert_eq!(
        sbom_entry["artifactType"],
        "application/vnd.oci.image.config.v1+json"
    );

    let r = s
        .req(
            Method::GET,
            &format!("/v2/t/app/referrers/{subject}?artifactType=application/vnd.example.sig"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "oci-filters-applied"), "artifactType");
    let list: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(list["manifests"].as_array().unwrap().len(), 1);

    // Unknown subjects have an empty list; bad digests are refused.
    let r = s
        .req(
            Method::GET,
            &format!(
                "/v2/t/app/referrers/{}",
                Digest::of(Algorithm::Sha256, b"?")
            ),
        )
        .send()
        .await
        .unwrap();
    let list: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(list["manifests"], json!([]));
    let r = s
        .req(Method::GET, "/v2/t/app/referrers/sha256:zz")
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;

    // Deleting the referrer removes it from the list.
    s.req(
        Method::DELETE,
        &format!("/v2/t/app/manifests/{sig_manifest}"),
    )
    .send()
    .await
    .unwrap();
    let r = s
        .req(Method::GET, &format!("/v2/t/app/referrers/{subject}"))
        .send()
        .await
        .unwrap();
    let list: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(list["manifests"].as_array().unwrap().len(), 1);

    // An OCI artifact manifest (the 1.1-rc media type) is accepted too.
    let art = serde_json::to_vec(&json!({
        "mediaType": "application/vnd.oci.artifact.manifest.v1+json", "artifactType": "application/x-demo",
        "blobs": [{"mediaType": "application/octet-stream", "digest": sig.as_str(), "size": 9}], "subject": subject_desc,
    }))
    .unwrap();
    let r = s
        .req(Method::PUT, "/v2/t/app/manifests/art")
        .header(
            "content-type",
            "application/vnd.oci.artifact.manifest.v1+json",
        )
        .body(art)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn pushes_survive_restart() {
    let s = TestServer::start().await;
    let layer = bytes(9, 10_000);
    let (digest, body) = s.push_image("t/keep", "v1", &[&layer], json!({})).await;
    let dir = s.stop().await;
    let s = TestServer::start_in(dir).await;
    let r = s
        .req(Method::GET, "/v2/t/keep/manifests/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "docker-content-digest"), digest.as_str());
    assert_eq!(r.bytes().await.unwrap(), body);
    let layer_digest = Digest::of(Algorithm::Sha256, &layer);
    let r = s
        .req(Method::GET, &format!("/v2/t/keep/blobs/{layer_digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), layer);
}

#[tokio::test]
async fn sha512_manifests_are_refused_before_anything_is_stored() {
    let s = TestServer::start().await;
    // Blobs by sha512 are fine on their own.
    let blob = |data: &'static [u8]| {
        let digest = Digest::of(Algorithm::Sha512, data);
        let path = format!("/v2/t/five12/blobs/uploads/?digest={digest}");
        let req = s.req(Method::POST, &path).body(data);
        async move {
            assert_eq!(req.send().await.unwrap().status(), StatusCode::CREATED);
            digest
        }
    };
    let config = blob(b"{}").await;
    let layer = blob(b"layer bytes").await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.as_str(), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.as_str(), "size": 11}],
    }))
    .unwrap();
    let sha256 = Digest::of(Algorithm::Sha256, &manifest);
    let r = s
        .req(Method::PUT, "/v2/t/five12/manifests/v1")
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    // UNSUPPORTED, naming the digest and why: not MANIFEST_INVALID from the record's schema.
    let body: Value = r.json().await.unwrap();
    let error = &body["errors"][0];
    assert_eq!(error["code"], "UNSUPPORTED", "{body}");
    assert_eq!(error["detail"]["digest"], config.as_str());
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("{config} is a sha512 digest: "))
            && message.contains("128 characters"),
        "{message}"
    );
    // Nothing was stored: no repository, no manifest, no manifest bytes.
    for (reference, code) in [
        ("v1", "NAME_UNKNOWN"),
        (sha256.as_str(), "MANIFEST_UNKNOWN"),
    ] {
        let r = s
            .req(Method::GET, &format!("/v2/t/five12/manifests/{reference}"))
            .send()
            .await
            .unwrap();
        expect_error(r, StatusCode::NOT_FOUND, code).await;
    }
    assert_eq!(s.app.registry.blobs().stat(&sha256).await.unwrap(), None);
}
