//! The crash test: pushes with skopeo while the server is killed with SIGKILL at random points.
//!
//! After every kill the server restarts on the same data directory, and every push that skopeo
//! reported as done must still be there, byte for byte; pushes the kill cut short may have
//! failed, but pushing them again must then succeed. Last, a chunked upload cut by a kill is
//! either resumed where its acknowledged chunks end or reported as `BLOB_UPLOAD_UNKNOWN`.
//!
//! The kill points come from a seeded RNG; the seed is printed, and `ATCR_CRASH_SEED=<seed>`
//! replays the same schedule (timing on a busy machine still varies).

mod common;

use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use common::clients::{Clients, HttpResponse, curl, required};
use common::images::{self, Descriptor, Layout, fresh_seed, random_layer};
use common::{Server, sha256};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Kill-and-restart rounds, each with `PUSHES_PER_ROUND` pushes in flight.
const ROUNDS: usize = 24;
const PUSHES_PER_ROUND: usize = 2;
/// The longest wait before a kill; a small push takes a few hundred milliseconds.
const MAX_KILL_DELAY_MS: u64 = 500;

/// How a push cut by a kill fails: the connection goes away under the client.
const CUT_BY_KILL: &[&str] = &[
    "connection refused",
    "connection reset by peer",
    "broken pipe",
    "EOF",
    // Go's net package, when the connection it is writing to was closed under it.
    "use of closed network connection",
    "server closed idle connection",
];

/// One image to push: its tag in the local layout and what the registry must serve for it.
struct Pushed {
    tag: String,
    manifest: Descriptor,
    manifest_bytes: Vec<u8>,
    blobs: Vec<Descriptor>,
}

impl Pushed {
    fn repo(&self) -> String {
        format!("admin/crash-{}", self.tag)
    }
}

/// `count` small distinct images (one or two layers of up to ~2 MiB) in one layout.
fn make_images(layout_dir: &std::path::Path, rng: &mut StdRng, count: usize) -> Vec<Pushed> {
    let mut layout = Layout::create(layout_dir);
    (0..count)
        .map(|i| {
            let layers: Vec<_> = (0..rng.gen_range(1..=2))
                .map(|_| random_layer(rng.r#gen(), rng.gen_range(1..=2 << 20)))
                .collect();
            let (manifest, layer_descs, config) = layout.image(&layers, "amd64");
            let tag = format!("img-{i:03}");
            layout.tag(&tag, &manifest);
            let manifest_bytes =
                std::fs::read(images::blob_path(layout_dir, &manifest.digest)).unwrap();
            let mut blobs = layer_descs;
            blobs.push(config);
            Pushed {
                tag,
                manifest,
                manifest_bytes,
                blobs,
            }
        })
        .collect()
}

fn push(c: &Clients, srv: &Server, layout: &std::path::Path, image: &Pushed) -> Child {
    let mut cmd = c.skopeo_copy(
        &format!("oci:{}:{}", layout.display(), image.tag),
        &format!("docker://{}/{}:latest", srv.host_port(), image.repo()),
        &[],
    );
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run skopeo")
}

/// Checks over HTTP that the registry serves `image` exactly: manifest by tag and every blob.
fn verify(srv: &Server, image: &Pushed, context: &str) {
    let base = srv.base_url();
    let repo = image.repo();
    let r = curl(
        "GET",
        &format!("{base}/v2/{repo}/manifests/latest"),
        &[("Accept", images::OCI_MANIFEST)],
        None,
    );
    let fail = |what: &str, r: &HttpResponse| -> String {
        format!(
            "{context}: {repo} {what}: status {} {:?} {}\n--- server log:\n{}",
            r.status,
            r.headers,
            r.text(),
            srv.log_tail()
        )
    };
    assert_eq!(r.status, 200, "{}", fail("manifest", &r));
    assert!(
        r.body == image.manifest_bytes,
        "{}",
        fail("manifest bytes", &r)
    );
    assert_eq!(
        r.header("docker-content-digest"),
        Some(image.manifest.digest.as_str()),
        "{}",
        fail("manifest digest", &r)
    );
    for blob in &image.blobs {
        let r = curl(
            "GET",
            &format!("{base}/v2/{repo}/blobs/{}", blob.digest),
            &[],
            None,
        );
        assert_eq!(r.status, 200, "{}", fail(&blob.digest, &r));
        assert_eq!(r.body.len() as u64, blob.size, "{}", fail(&blob.digest, &r));
        assert_eq!(sha256(&r.body), blob.digest, "{}", fail(&blob.digest, &r));
    }
}

/// Pulls `image` back with skopeo and checks the manifest digest it lands with.
fn verify_with_skopeo(c: &Clients, srv: &Server, image: &Pushed, into: &std::path::Path) {
    srv.must(&mut c.skopeo_copy(
        &format!("docker://{}/{}:latest", srv.host_port(), image.repo()),
        &format!("oci:{}:{}", into.display(), image.tag),
        &[],
    ));
    let (desc, bytes) = images::read_tag(into, &image.tag);
    assert_eq!(desc.digest, image.manifest.digest, "{}", image.tag);
    assert!(bytes == image.manifest_bytes, "{}", image.tag);
    for blob in &image.blobs {
        let pulled = std::fs::read(images::blob_path(into, &blob.digest)).unwrap();
        assert_eq!(sha256(&pulled), blob.digest, "{} blob", image.tag);
    }
}

#[test]
fn acknowledged_pushes_survive_kill_9() {
    if !required(&["skopeo", "curl"]) {
        return;
    }
    let seed = std::env::var("ATCR_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(fresh_seed);
    eprintln!("crash test seed: {seed} (replay with ATCR_CRASH_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let c = Clients::new();
    let layout = c.path("images");
    let all = make_images(&layout, &mut rng, ROUNDS * PUSHES_PER_ROUND);
    let mut srv = Server::start();

    let mut acknowledged: Vec<&Pushed> = Vec::new();
    let (mut cut, mut kills_during_pushes) = (0, 0);
    for (round, batch) in all.chunks(PUSHES_PER_ROUND).enumerate() {
        let children: Vec<Child> = batch
            .iter()
            .map(|image| push(&c, &srv, &layout, image))
            .collect();
        thread::sleep(Duration::from_millis(rng.gen_range(0..=MAX_KILL_DELAY_MS)));
        srv.kill9();
        let mut failed = Vec::new();
        for (image, child) in batch.iter().zip(children) {
            let out = child.wait_with_output().expect("skopeo runs");
            if out.status.success() {
                acknowledged.push(image);
            } else {
                // Only the kill may fail a push: an HTTP error from the server would be a bug.
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(
                    CUT_BY_KILL.iter().any(|m| err.contains(m)),
                    "round {round} (seed {seed}): {} failed, not by the kill:\n{err}\n\
                     --- server log:\n{}",
                    image.tag,
                    srv.log_tail()
                );
                failed.push(image);
            }
        }
        if !failed.is_empty() {
            kills_during_pushes += 1;
        }
        cut += failed.len();
        srv.restart();
        let context = format!("round {round} (seed {seed})");

        // What was acknowledged before this kill is intact, and so is everything earlier.
        for image in batch
            .iter()
            .filter(|i| acknowledged.iter().any(|a| a.tag == i.tag))
        {
            verify(&srv, image, &context);
        }
        check_manifests(&srv, &acknowledged, &context);

        // A push the kill interrupted goes through when tried again.
        for image in failed {
            let mut retry = c.skopeo_copy(
                &format!("oci:{}:{}", layout.display(), image.tag),
                &format!("docker://{}/{}:latest", srv.host_port(), image.repo()),
                &[],
            );
            srv.must(&mut retry);
            verify(&srv, image, &format!("{context}, pushed again"));
            acknowledged.push(image);
        }
    }
    eprintln!(
        "{ROUNDS} kills, {kills_during_pushes} of them during a push; {cut} pushes were cut and \
         pushed again"
    );

    // Everything, pulled back with a real client after one more kill.
    srv.kill9();
    srv.restart();
    let back = c.path("back");
    for image in &acknowledged {
        verify_with_skopeo(&c, &srv, image, &back);
    }
    // A restart removes temporary files of interrupted writes; interrupted uploads stay until
    // they expire (they may still be resumed).
    assert_eq!(
        count_files(&srv.data_dir().join("blobs/.partial")),
        0,
        "partial writes survive a restart"
    );
    eprintln!(
        "upload parts left by the kills: {}",
        count_files(&srv.data_dir().join("blobs/uploads"))
    );
}

fn count_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .map(|e| {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    count_files(&e.path())
                } else {
                    1
                }
            })
            .sum()
    })
}

/// One request per acknowledged manifest (`GET` by tag, in one curl run): all still resolve to
/// their digests.
fn check_manifests(srv: &Server, acknowledged: &[&Pushed], context: &str) {
    if acknowledged.is_empty() {
        return;
    }
    let scopes: Vec<String> = acknowledged
        .iter()
        .map(|i| format!("repository:{}:pull", i.repo()))
        .collect();
    let token = common::clients::token(&srv.host_port(), common::ADMIN, srv.password(), &scopes)
        .expect("a registry token");
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-H",
        &format!("Authorization: Bearer {token}"),
        "-H",
        &format!("Accept: {}", images::OCI_MANIFEST),
        "-w",
        "%{http_code} %header{docker-content-digest}\\n",
    ]);
    for image in acknowledged {
        cmd.args(["-o", "/dev/null"]).arg(format!(
            "{}/v2/{}/manifests/latest",
            srv.base_url(),
            image.repo()
        ));
    }
    let out = srv.must(&mut cmd);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), acknowledged.len(), "{context}: {out}");
    for (line, image) in lines.iter().zip(acknowledged) {
        assert_eq!(
            *line,
            format!("200 {}", image.manifest.digest),
            "{context}: {} lost after a kill\n--- server log:\n{}",
            image.tag,
            srv.log_tail()
        );
    }
}

/// An upload URL from a `Location` header (relative or absolute).
fn upload_url(srv: &Server, r: &HttpResponse) -> String {
    let location = r.header("location").expect("a Location header");
    if location.starts_with("http") {
        location.to_owned()
    } else {
        format!("{}{location}", srv.base_url())
    }
}

fn with_query(url: &str, query: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{query}")
}

#[test]
fn a_chunked_upload_cut_by_kill_9_resumes_or_is_cleanly_unknown() {
    if !required(&["curl"]) {
        return;
    }
    let seed = fresh_seed();
    let data = images::Bytes::new(seed).take(3 << 20);
    let digest = sha256(&data);
    let (first, second) = data.split_at((1 << 20) + 17);
    let mut srv = Server::start();

    let r = curl(
        "POST",
        &format!("{}/v2/admin/crash/chunked/blobs/uploads/", srv.base_url()),
        &[],
        Some(b""),
    );
    assert_eq!(r.status, 202, "{r:?}");
    let location = r.header("location").unwrap().to_owned();
    let patch = |srv: &Server, start: usize, chunk: &[u8]| {
        let range = format!("{start}-{}", start + chunk.len() - 1);
        curl(
            "PATCH",
            &format!("{}{location}", srv.base_url()),
            &[("Content-Range", &range)],
            Some(chunk),
        )
    };
    let r = patch(&srv, 0, first);
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(
        r.header("range"),
        Some(format!("0-{}", first.len() - 1).as_str())
    );

    // A second chunk in flight (sent slowly) when the kill comes: it was never acknowledged.
    let body = common::temp_dir("atcr-chunk-");
    std::fs::write(body.path().join("chunk"), second).unwrap();
    let mut slow = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "--limit-rate",
            "256K",
            "-X",
            "PATCH",
        ])
        .args([
            "-H",
            "Content-Type: application/octet-stream",
            "-H",
            "Expect:",
        ])
        .arg("-H")
        .arg(format!("Content-Range: {}-{}", first.len(), data.len() - 1))
        .arg("--data-binary")
        .arg(format!("@{}", body.path().join("chunk").display()))
        .arg(format!("{}{location}", srv.base_url()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot run curl");
    thread::sleep(Duration::from_millis(1500));
    srv.kill9();
    let _ = slow.wait();
    srv.restart();

    let status = curl("GET", &format!("{}{location}", srv.base_url()), &[], None);
    let finished = match status.status {
        204 => {
            // Resumable: exactly the acknowledged bytes are there.
            assert_eq!(
                status.header("range"),
                Some(format!("0-{}", first.len() - 1).as_str()),
                "{status:?}"
            );
            let r = patch(&srv, first.len(), second);
            assert_eq!(r.status, 202, "{r:?}\n{}", srv.log_tail());
            assert_eq!(
                r.header("range"),
                Some(format!("0-{}", data.len() - 1).as_str())
            );
            let r = curl(
                "PUT",
                &with_query(&upload_url(&srv, &r), &format!("digest={digest}")),
                &[],
                Some(b""),
            );
            assert_eq!(r.status, 201, "{r:?}\n{}", srv.log_tail());
            eprintln!("the cut upload was resumed after the restart");
            true
        }
        404 => {
            assert!(
                status.text().contains("BLOB_UPLOAD_UNKNOWN"),
                "{}",
                status.text()
            );
            eprintln!("the cut upload was reported as BLOB_UPLOAD_UNKNOWN after the restart");
            false
        }
        other => panic!("upload status after a restart: {other} {status:?}"),
    };
    if !finished {
        // Unknown uploads start over; the blob still goes in.
        let r = curl(
            "POST",
            &format!(
                "{}/v2/admin/crash/chunked/blobs/uploads/?digest={digest}",
                srv.base_url()
            ),
            &[],
            Some(&data),
        );
        assert_eq!(r.status, 201, "{r:?}");
    }

    // A stale upload URL now answers BLOB_UPLOAD_UNKNOWN, and the blob reads back whole.
    let r = patch(&srv, 0, b"late");
    assert_eq!(r.status, 404, "{r:?}");
    assert!(r.text().contains("BLOB_UPLOAD_UNKNOWN"), "{}", r.text());
    let r = curl(
        "GET",
        &format!("{}/v2/admin/crash/chunked/blobs/{digest}", srv.base_url()),
        &[],
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body == data, "the blob differs from what was uploaded");
}
