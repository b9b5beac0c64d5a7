//! A full disk answers 507, harms nothing stored, turns /readyz red, and pushes work again once
//! space is freed. Needs root (it mounts a 6 MiB tmpfs); CI runs as root.

mod inproc;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use inproc::{TestServer, bytes, expect_error};
use reqwest::{Method, StatusCode};

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
    let free = atcr::server::ops::free_bytes(fs.path()).unwrap();
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
