//! A full disk answers 507, harms nothing stored, turns /readyz red, and pushes work again once
//! space is freed — writes below `storage.min_free_bytes` are refused before they start, and a
//! store redb poisoned with its I/O error is reopened without a restart. Needs root (it mounts
//! small tmpfs filesystems); CI runs as root.

mod inproc;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use inproc::{TestServer, bytes, expect_error};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A small tmpfs, unmounted on drop.
struct SmallFs(tempfile::TempDir);

impl SmallFs {
    fn mount(size: &str) -> Option<SmallFs> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("disk_full: not root; this test runs in CI (as root)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "mounting a tmpfs failed");
        Some(SmallFs(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[tokio::test]
async fn full_disk_answers_507_and_recovers() {
    let Some(fs) = SmallFs::mount("6m") else {
        return;
    };
    let state = Arc::new(tempfile::tempdir_in(fs.path()).unwrap());
    let s = TestServer::start_with_floor(state.clone(), 1024 * 1024).await;

    let kept = bytes(1, 1024 * 1024);
    let kept_digest = s.push_blob("t/r", &kept).await;
    assert_eq!(
        s.req(Method::GET, "/readyz").send().await.unwrap().status(),
        StatusCode::OK
    );

    // A blob bigger than what is left.
    let big = bytes(2, 8 * 1024 * 1024);
    let big_digest = atcr::blobstore::Digest::of(atcr::blobstore::Algorithm::Sha256, &big);
    let r = s
        .req(
            Method::POST,
            &format!("/v2/t/r/blobs/uploads/?digest={big_digest}"),
        )
        .body(big.clone())
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::INSUFFICIENT_STORAGE, "INSUFFICIENT_STORAGE").await;
    // Chunked too.
    let r = s
        .req(Method::POST, "/v2/t/r/blobs/uploads/")
        .send()
        .await
        .unwrap();
    let location = inproc::header(&r, "location");
    let r = s
        .req(Method::PATCH, &location)
        .body(big.clone())
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::INSUFFICIENT_STORAGE, "INSUFFICIENT_STORAGE").await;

    // A final PUT that runs out of space keeps the upload's earlier chunks: it can be retried.
    let r = s
        .req(Method::POST, "/v2/t/r/blobs/uploads/")
        .send()
        .await
        .unwrap();
    let location = inproc::header(&r, "location");
    let head = bytes(4, 1000);
    let r = s
        .req(Method::PATCH, &location)
        .body(head.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let mut whole = head.clone();
    whole.extend_from_slice(&big);
    let whole_digest = atcr::blobstore::Digest::of(atcr::blobstore::Algorithm::Sha256, &whole);
    let r = s
        .req(Method::PUT, &format!("{location}?digest={whole_digest}"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::INSUFFICIENT_STORAGE, "INSUFFICIENT_STORAGE").await;
    let r = s.req(Method::GET, &location).send().await.unwrap();
    assert_eq!(
        (r.status(), inproc::header(&r, "range")),
        (StatusCode::NO_CONTENT, "0-999".to_owned())
    );
    let head_digest = atcr::blobstore::Digest::of(atcr::blobstore::Algorithm::Sha256, &head);
    let r = s
        .req(Method::PUT, &format!("{location}?digest={head_digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "the stored chunk survived the failed PUT"
    );
    let r = s
        .req(Method::GET, &format!("/v2/t/r/blobs/{head_digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), head);

    // What was stored is intact, and nothing partial is left behind.
    let r = s
        .req(Method::GET, &format!("/v2/t/r/blobs/{kept_digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), kept);
    let r = s
        .req(Method::HEAD, &format!("/v2/t/r/blobs/{big_digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Fill the disk from outside: readiness turns red.
    let filler = fs.path().join("filler");
    let free = atcr::server::storage::free_bytes(fs.path()).unwrap();
    std::fs::write(&filler, vec![0u8; free.saturating_sub(512 * 1024) as usize]).unwrap();
    let r = s.req(Method::GET, "/readyz").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);

    // Space freed: pushes work again.
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(
        s.req(Method::GET, "/readyz").send().await.unwrap().status(),
        StatusCode::OK
    );
    let again = bytes(3, 2 * 1024 * 1024);
    let d = s.push_blob("t/r", &again).await;
    let r = s
        .req(Method::GET, &format!("/v2/t/r/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), again);
    let dir = s.stop().await;
    drop(dir);
    drop(state);
}

/// Fills the filesystem of `dir` until `leave` bytes are free (or nothing is, for 0).
fn fill(dir: &Path, leave: u64) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        let free = atcr::server::storage::free_bytes(dir).unwrap();
        if free <= leave {
            break;
        }
        let n = usize::try_from((free - leave).min(chunk.len() as u64)).unwrap();
        if file.write_all(&chunk[..n]).is_err() {
            break;
        }
    }
    let _ = file.sync_all();
    path
}

/// An XRPC call as the test user; status and JSON body.
async fn xrpc(s: &TestServer, nsid: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
    let mut req = s.client.post(s.url(&format!("/xrpc/{nsid}"))).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn sign_in(s: &TestServer) -> (StatusCode, Value) {
    xrpc(
        s,
        "com.atproto.server.createSession",
        None,
        json!({"identifier": inproc::USER, "password": inproc::PASSWORD}),
    )
    .await
}

async fn create_record(s: &TestServer, token: &str, text: &str) -> (StatusCode, Value) {
    xrpc(
        s,
        "com.atproto.repo.createRecord",
        Some(token),
        json!({"repo": s.user.as_str(), "collection": "app.test.note", "record": {"text": text}}),
    )
    .await
}

async fn ready(s: &TestServer) -> StatusCode {
    s.req(Method::GET, "/readyz").send().await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_below_the_floor_answer_507_until_space_is_freed() {
    let Some(fs) = SmallFs::mount("24m") else {
        return;
    };
    let state = Arc::new(tempfile::tempdir_in(fs.path()).unwrap());
    let s = TestServer::start_with_floor(state.clone(), 4 * 1024 * 1024).await;
    let (status, session) = sign_in(&s).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    let token = session["accessJwt"].as_str().unwrap().to_owned();
    let layer = bytes(10, 100 * 1024);
    let (_, manifest) = s.push_image("t/floor", "v1", &[&layer], json!({})).await;

    // Below the floor but far from full: every write path refuses, nothing is harmed.
    let filler = fill(fs.path(), 2 * 1024 * 1024);
    let small = bytes(11, 1000);
    let digest = atcr::blobstore::Digest::of(atcr::blobstore::Algorithm::Sha256, &small);
    let upload = || {
        s.req(
            Method::POST,
            &format!("/v2/t/floor/blobs/uploads/?digest={digest}"),
        )
        .body(small.clone())
        .send()
    };
    expect_error(
        upload().await.unwrap(),
        StatusCode::INSUFFICIENT_STORAGE,
        "INSUFFICIENT_STORAGE",
    )
    .await;
    let put = || {
        s.req(Method::PUT, "/v2/t/floor/manifests/v2")
            .header("content-type", inproc::OCI_MANIFEST)
            .body(manifest.clone())
            .send()
    };
    expect_error(
        put().await.unwrap(),
        StatusCode::INSUFFICIENT_STORAGE,
        "INSUFFICIENT_STORAGE",
    )
    .await;
    let (status, body) = create_record(&s, &token, "below the floor").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::INSUFFICIENT_STORAGE, Some("StorageFull")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("floor")),
        "{body}"
    );
    assert_eq!(ready(&s).await, StatusCode::SERVICE_UNAVAILABLE);
    // Reads, and signing in, still work.
    let r = s
        .req(Method::GET, "/v2/t/floor/manifests/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(sign_in(&s).await.0, StatusCode::OK);

    // Space freed: the same requests succeed.
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(ready(&s).await, StatusCode::OK);
    assert_eq!(upload().await.unwrap().status(), StatusCode::CREATED);
    assert_eq!(put().await.unwrap().status(), StatusCode::CREATED);
    assert_eq!(create_record(&s, &token, "after").await.0, StatusCode::OK);
    drop(s.stop().await);
    drop(state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_poisons_no_store_for_good() {
    let Some(fs) = SmallFs::mount("24m") else {
        return;
    };
    let state = Arc::new(tempfile::tempdir_in(fs.path()).unwrap());
    // No floor: writes run into the full disk itself.
    let s = TestServer::start_with_floor(state.clone(), 0).await;
    let (status, session) = sign_in(&s).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    let token = session["accessJwt"].as_str().unwrap().to_owned();
    let (_, manifest) = s
        .push_image("t/full", "v1", &[&bytes(20, 1000)], json!({}))
        .await;
    let mut acked = Vec::new();
    for i in 0..5 {
        let (status, body) = create_record(&s, &token, &format!("kept {i}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        acked.push(body["uri"].as_str().unwrap().to_owned());
    }

    // Full: large records until the stores hit ENOSPC. Never a 500.
    let filler = fill(fs.path(), 0);
    let big = "x".repeat(200 * 1024);
    let mut refused = 0;
    for _ in 0..40 {
        let (status, body) = create_record(&s, &token, &big).await;
        match status {
            StatusCode::OK => acked.push(body["uri"].as_str().unwrap().to_owned()),
            StatusCode::INSUFFICIENT_STORAGE => {
                assert_eq!(body["error"], "StorageFull", "{body}");
                refused += 1;
            }
            other => panic!("createRecord on a full disk answered {other}: {body}"),
        }
        if refused >= 3 {
            break;
        }
    }
    assert!(refused > 0, "the disk never filled");
    let r = s
        .req(Method::PUT, "/v2/t/full/manifests/v2")
        .header("content-type", inproc::OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    // redb refuses everything after its I/O error until reopened: /readyz says so.
    assert_eq!(atcr::server::storage::poisoned(&s.app), ["pds.redb"]);
    let r = s.req(Method::GET, "/readyz").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let why = r.text().await.unwrap();
    assert!(why.contains("pds.redb"), "{why}");

    // Space freed: without a restart, the store is reopened and everything works again.
    std::fs::remove_file(&filler).unwrap();
    let mut tries = 0;
    while !atcr::server::storage::poisoned(&s.app).is_empty() {
        tries += 1;
        assert!(tries < 300, "the stores were not reopened");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(ready(&s).await, StatusCode::OK);
    let (status, session) = sign_in(&s).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    let token = session["accessJwt"].as_str().unwrap().to_owned();
    assert_eq!(create_record(&s, &token, "after").await.0, StatusCode::OK);
    let r = s
        .req(Method::PUT, "/v2/t/full/manifests/v3")
        .header("content-type", inproc::OCI_MANIFEST)
        .body(manifest)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s.anonymous(Method::GET, "/").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Every acknowledged record is there.
    for uri in &acked {
        let rkey = uri.rsplit('/').next().unwrap();
        let r = s
            .client
            .get(s.url(&format!(
                "/xrpc/com.atproto.repo.getRecord?repo={}&collection=app.test.note&rkey={rkey}",
                s.user.as_str()
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "acknowledged {uri} lost");
    }
    drop(s.stop().await);
    drop(state);
}
