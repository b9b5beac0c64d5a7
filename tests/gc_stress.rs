//! Online garbage collection under load, with real clients and the real binary: concurrent
//! `skopeo` push loops of images that share layers, deletes of old manifests and tags, and
//! re-pushes of deleted images, while `atcr gc` runs in a loop (through the admin socket) with a
//! grace of a few seconds. Then, and again with the server killed (`SIGKILL`) in the middle:
//!
//! - every manifest answered `201` (skopeo succeeded) and not deleted since pulls completely,
//!   every blob's bytes matching its digest; every manifest whose delete was answered `202` is
//!   gone; a push or delete that failed may have happened or not, but if the manifest is there
//!   it pulls completely too;
//! - after one more collection past the grace, the index lists, and the blob store holds, exactly
//!   the objects of the manifests that are there: no unreferenced blob or manifest older than the
//!   grace is left. After the kill too: objects a crash left unlisted in the index are taken up
//!   by the first of those collections and deleted by the next (see `docs/registry.md`);
//! - the collections compact `index.redb` online (the first always: it never was) while the
//!   pushes run, so all of the above also holds across the index's file being swapped.
//!
//! Bounded by a fixed number of pushes, not by a duration. The figures (pushes, deletes,
//! collections, objects freed) are printed with the result.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use common::clients::{Clients, curl, required};
use common::images::{self, Layer, Layout, LocalImage, fresh_seed, random_layer};
use common::{Server, sha256};

const TOOLS: &[&str] = &["skopeo", "curl"];
/// Push loops running at once, and images each pushes.
const WORKERS: usize = 6;
const ROUNDS: usize = 8;
/// Repositories the loops push into (two loops share each).
const REPOS: usize = 3;
/// The server's `gc.grace_secs`.
const GRACE_SECS: u64 = 2;

/// What the test knows of one image after its loop is done: the outcome of the last operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    /// Pushed (`201`) and not deleted since.
    Pushed,
    /// Deleted (`202`, or `404`: not there).
    Deleted,
    /// The last push or delete failed: it may have happened or not.
    Unsure,
}

/// One image of one loop.
struct Image {
    repo: String,
    local: LocalImage,
}

impl Image {
    /// The digests it is made of: manifest, config, layers.
    fn objects(&self) -> Vec<String> {
        let mut out = vec![self.local.manifest.digest.clone()];
        out.extend(self.local.config.iter().map(|c| c.digest.clone()));
        out.extend(self.local.layers.iter().map(|l| l.digest.clone()));
        out
    }
}

/// Figures of one run.
#[derive(Default)]
struct Figures {
    pushes: AtomicU64,
    pushed: AtomicU64,
    deletes: AtomicU64,
    tag_deletes: AtomicU64,
    gc_runs: AtomicU64,
    gc_failures: AtomicU64,
    objects_freed: AtomicU64,
    bytes_freed: AtomicU64,
    /// Collections that compacted the index online, while the pushes went on.
    compactions: AtomicU64,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        write!(
            f,
            "{} pushes ({} answered 201), {} manifest deletes, {} tag deletes, {} collections \
             ({} failed while the server was down, {} compacted the index), {} objects ({} bytes) \
             freed",
            n(&self.pushes),
            n(&self.pushed),
            n(&self.deletes),
            n(&self.tag_deletes),
            n(&self.gc_runs),
            n(&self.gc_failures),
            n(&self.compactions),
            n(&self.objects_freed),
            n(&self.bytes_freed),
        )
    }
}

/// Every loop's images, in a layout of its own: a base layer all share, a layer shared by every
/// loop's rounds `2j` and `2j + 1` (it loses its last user as the loops move on, and is then
/// collected while slower loops may still push it), and a layer of its own.
fn images(root: &Path) -> Vec<Vec<Image>> {
    let seed = fresh_seed();
    let base = random_layer(seed, 96 * 1024);
    let rolling: Vec<Layer> = (0..ROUNDS.div_ceil(2))
        .map(|j| random_layer(seed ^ (0x100 + j as u64), 48 * 1024))
        .collect();
    (0..WORKERS)
        .map(|w| {
            let dir = root.join(format!("layout{w}"));
            let mut layout = Layout::create(&dir);
            (0..ROUNDS)
                .map(|i| {
                    let own = random_layer(seed ^ (0x1_0000 + (w * 100 + i) as u64), 16 * 1024);
                    let layers = [
                        Layer {
                            gzip: base.gzip.clone(),
                            diff_id: base.diff_id.clone(),
                        },
                        Layer {
                            gzip: rolling[i / 2].gzip.clone(),
                            diff_id: rolling[i / 2].diff_id.clone(),
                        },
                        own,
                    ];
                    let (manifest, layers, config) = layout.image(&layers, "amd64");
                    let tag = format!("i{i}");
                    layout.tag(&tag, &manifest);
                    Image {
                        repo: format!("admin/stress{}", w % REPOS),
                        local: LocalImage {
                            layout: dir.clone(),
                            tag,
                            manifest,
                            layers,
                            config: Some(config),
                        },
                    }
                })
                .collect()
        })
        .collect()
}

/// One push loop: push round `i`; delete round `i - 2` by digest and the tag of round `i - 1`;
/// every third round push the image deleted one round before again. Returns what it knows of
/// each of its images.
fn push_loop(host: &str, w: usize, images: &[Image], figures: &Figures) -> Vec<Known> {
    let c = Clients::new();
    let mut known = vec![Known::Deleted; images.len()];
    let push = |i: usize, tag: &str, known: &mut Vec<Known>| {
        let img = &images[i];
        let digest_file = c.path(&format!("digest-{tag}"));
        let out = common::run(&mut c.skopeo_copy(
            &img.local.reference(),
            &format!("docker://{host}/{}:{tag}", img.repo),
            &["--digestfile", digest_file.to_str().unwrap()],
        ));
        figures.pushes.fetch_add(1, Ordering::Relaxed);
        known[i] = if out.status.success() {
            let pushed = std::fs::read_to_string(&digest_file).unwrap();
            assert_eq!(
                pushed.trim(),
                img.local.manifest.digest,
                "skopeo changed the manifest"
            );
            figures.pushed.fetch_add(1, Ordering::Relaxed);
            Known::Pushed
        } else {
            Known::Unsure
        };
    };
    let delete = |repo: &str, reference: &str| {
        curl(
            "DELETE",
            &format!("http://{host}/v2/{repo}/manifests/{reference}"),
            &[],
            None,
        )
        .status
    };
    for i in 0..images.len() {
        push(i, &format!("w{w}-i{i}"), &mut known);
        if i >= 1 && delete(&images[i - 1].repo, &format!("w{w}-i{}", i - 1)) == 202 {
            figures.tag_deletes.fetch_add(1, Ordering::Relaxed);
        }
        if i >= 2 {
            let old = &images[i - 2];
            known[i - 2] = match delete(&old.repo, &old.local.manifest.digest) {
                202 => {
                    figures.deletes.fetch_add(1, Ordering::Relaxed);
                    Known::Deleted
                }
                404 => {
                    assert_ne!(
                        known[i - 2],
                        Known::Pushed,
                        "w{w} i{}: an acknowledged push was gone before its delete",
                        i - 2
                    );
                    Known::Deleted
                }
                _ => Known::Unsure,
            };
        }
        if i >= 3 && i % 3 == 0 {
            push(i - 3, &format!("w{w}-again{i}"), &mut known);
        }
    }
    known
}

/// `atcr gc` through the running daemon, in a loop until `stop`; the server is locked for each
/// run, so a kill and restart happen between runs (the daemon's own schedule may still be
/// interrupted).
fn gc_loop(srv: &Mutex<Server>, stop: &AtomicBool, figures: &Figures) {
    while !stop.load(Ordering::Relaxed) {
        let out = {
            let srv = srv.lock().unwrap_or_else(PoisonError::into_inner);
            srv.cli(&["gc"], "")
        };
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        match parse_gc(&text) {
            Some((objects, bytes)) if out.status.success() => {
                figures.gc_runs.fetch_add(1, Ordering::Relaxed);
                figures.objects_freed.fetch_add(objects, Ordering::Relaxed);
                figures.bytes_freed.fetch_add(bytes, Ordering::Relaxed);
                if text.contains("index.redb compacted") {
                    figures.compactions.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {
                figures.gc_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        std::thread::sleep(Duration::from_millis(150));
    }
}

/// `deleted N of M blobs (B bytes) …` → (N, B).
fn parse_gc(text: &str) -> Option<(u64, u64)> {
    let rest = text.trim().strip_prefix("deleted ")?;
    let objects = rest.split_whitespace().next()?.parse().ok()?;
    let bytes = rest
        .split('(')
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((objects, bytes))
}

/// `… of M blobs …` → M, the objects the index lists.
fn seen(text: &str) -> Option<u64> {
    text.split(" of ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The digests of every object in the server's blob store (`…/blobs/sha256/<2 hex>/<hex>`).
fn stored_objects(data: &Path) -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
                continue;
            }
            let parent = path.parent().and_then(Path::file_name);
            let grand = path.parent().and_then(Path::parent);
            let in_blobs = grand
                .and_then(Path::file_name)
                .is_some_and(|n| n == "sha256")
                && grand
                    .and_then(Path::parent)
                    .and_then(Path::file_name)
                    .is_some_and(|n| n == "blobs");
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if in_blobs
                && name.len() == 64
                && parent.is_some_and(|p| name.starts_with(&*p.to_string_lossy()))
            {
                out.insert(format!("sha256:{name}"));
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(data, &mut out);
    out
}

/// Pulls `img` by digest into a `dir:` with skopeo and checks every object's bytes.
fn pull_verified(srv: &Server, c: &Clients, img: &Image, n: usize) {
    let back = c.path(&format!("pulled{n}"));
    let digest = &img.local.manifest.digest;
    srv.must(&mut c.skopeo_copy(
        &format!("docker://{}/{}@{digest}", srv.host_port(), img.repo),
        &format!("dir:{}", back.display()),
        &[],
    ));
    let manifest = std::fs::read(back.join("manifest.json")).unwrap();
    assert_eq!(&sha256(&manifest), digest, "manifest of {}", img.repo);
    for d in img.objects().iter().skip(1) {
        let bytes = std::fs::read(back.join(d.trim_start_matches("sha256:")))
            .unwrap_or_else(|e| panic!("{d} of {digest} was not pulled: {e}"));
        assert_eq!(&sha256(&bytes), d, "blob {d} of {digest} has other bytes");
    }
}

/// Whether the server has manifest `img` (`HEAD` by digest).
fn has_manifest(srv: &Server, img: &Image) -> bool {
    let r = curl(
        "HEAD",
        &format!(
            "{}/v2/{}/manifests/{}",
            srv.base_url(),
            img.repo,
            img.local.manifest.digest
        ),
        &[("Accept", images::OCI_MANIFEST)],
        None,
    );
    assert!(r.status == 200 || r.status == 404, "HEAD manifest: {r:?}");
    r.status == 200
}

/// The whole run; `kill` kills the server with `SIGKILL` once half the pushes are done, and
/// starts it again on the same data.
fn stress(kill: bool) {
    if !required(TOOLS) {
        return;
    }
    let grace = GRACE_SECS.to_string();
    let mut env = vec![("ATCR_GC_GRACE_SECS", grace.as_str())];
    if kill {
        // The daemon collects on its own too, so the kill may land in one of its sweeps.
        env.push(("ATCR_GC_INTERVAL_SECS", "1"));
    }
    let srv = Arc::new(Mutex::new(Server::start_with(&env)));
    let host = srv.lock().unwrap().host_port();
    let data = srv.lock().unwrap().data_dir().to_owned();
    let work = common::temp_dir("atcr-gc-stress-");
    let all = Arc::new(images(work.path()));
    let figures = Arc::new(Figures::default());
    let stop = Arc::new(AtomicBool::new(false));

    let collector = {
        let (srv, stop, figures) = (srv.clone(), stop.clone(), figures.clone());
        std::thread::spawn(move || gc_loop(&srv, &stop, &figures))
    };
    let loops: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (host, all, figures) = (host.clone(), all.clone(), figures.clone());
            std::thread::spawn(move || push_loop(&host, w, &all[w], &figures))
        })
        .collect();
    if kill {
        let half = (WORKERS * ROUNDS / 2) as u64;
        while figures.pushes.load(Ordering::Relaxed) < half {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut srv = srv.lock().unwrap_or_else(PoisonError::into_inner);
        srv.kill9();
        srv.restart_same_port();
    }
    let known: Vec<Vec<Known>> = loops.into_iter().map(|l| l.join().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    collector.join().unwrap();

    let srv = srv.lock().unwrap_or_else(PoisonError::into_inner);
    let c = Clients::new();
    let mut present: BTreeMap<String, &Image> = BTreeMap::new();
    let mut pulled = 0;
    for (w, known) in known.iter().enumerate() {
        for (i, k) in known.iter().enumerate() {
            let img = &all[w][i];
            let there = has_manifest(&srv, img);
            match k {
                Known::Pushed => assert!(there, "acknowledged push of w{w} i{i} is gone"),
                Known::Deleted => assert!(!there, "acknowledged delete of w{w} i{i} undone"),
                Known::Unsure => {}
            }
            if there {
                pull_verified(&srv, &c, img, pulled);
                pulled += 1;
                for d in img.objects() {
                    present.insert(d, img);
                }
            }
        }
    }

    // Past the grace, a collection takes up what a crash left unlisted; past another, one more
    // leaves exactly what the manifests there use.
    let mut last = String::new();
    for _ in 0..2 {
        std::thread::sleep(Duration::from_secs(GRACE_SECS + 1));
        let out = srv.cli(&["gc"], "");
        assert!(out.status.success(), "{out:?}");
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        eprintln!("final collection: {}", last.trim());
    }
    let stored = stored_objects(&data);
    let wanted: BTreeSet<String> = present.keys().cloned().collect();
    let missing: Vec<_> = wanted.difference(&stored).collect();
    let left: Vec<_> = stored.difference(&wanted).collect();
    eprintln!(
        "gc stress (kill -9: {kill}): {figures}; {pulled} manifests pulled and verified; \
         last collection: {}; {} objects stored",
        last.trim(),
        stored.len()
    );
    assert!(
        missing.is_empty(),
        "objects of present manifests missing: {missing:?}"
    );
    let what = |d: &String| {
        all.iter()
            .flatten()
            .find_map(|img| {
                let at = img.objects().iter().position(|o| o == d)?;
                let kind = ["manifest", "config"].get(at).copied().unwrap_or("layer");
                Some(format!("{d} ({kind} of {}:{})", img.repo, img.local.tag))
            })
            .unwrap_or_else(|| d.clone())
    };
    let left: Vec<String> = left.into_iter().map(what).collect();
    // Objects the index lists (`of M blobs`, less those deleted) are exactly those of the
    // manifests there.
    let listed = seen(&last).zip(parse_gc(&last)).map(|(m, (n, _))| m - n);
    assert_eq!(
        listed,
        Some(wanted.len() as u64),
        "the index still lists unreferenced objects past the grace: {left:?}"
    );
    assert!(
        left.is_empty(),
        "unreferenced objects older than the grace left after the collections: {left:?}"
    );
    assert!(figures.pushed.load(Ordering::Relaxed) > 0, "{figures}");
    assert!(
        figures.objects_freed.load(Ordering::Relaxed) > 0,
        "{figures}"
    );
    // The first collection compacts the index (never compacted before): with the pushes
    // running, so every check above ran on an index swapped under them. (With the kill, the
    // daemon's own collections, every second, may be the ones that compact it.)
    if !kill {
        assert!(figures.compactions.load(Ordering::Relaxed) > 0, "{figures}");
    }
    if kill {
        let fsck = srv.cli(&["fsck"], "");
        assert!(fsck.status.success(), "atcr fsck after the crash: {fsck:?}");
    }
}

#[test]
fn collection_during_concurrent_pushes_and_deletes_loses_nothing_and_leaves_nothing() {
    stress(false);
}

#[test]
fn the_same_with_the_server_killed_in_the_middle() {
    stress(true);
}
