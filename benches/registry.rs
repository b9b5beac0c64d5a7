//! Registry-on-ATProto benchmark (`cargo bench --bench registry`): the cost of a manifest push
//! now that each one is a signed commit, on a repository that grows to `N` manifests, and the
//! read rates with token auth on.
//!
//! A real server on 127.0.0.1:0 in this process (the test harness's), a filesystem blob store in
//! a temp dir, reqwest as the client over loopback HTTP/1.1. Every push is a tagged manifest
//! (one commit of a manifest record and a tag record) sharing one config and one layer, so the
//! figures are the record path, not blob I/O. `ATCR_BENCH_MANIFESTS` overrides `N`. At the end
//! every other manifest is deleted and one collection runs: `pds.redb` and `index.redb` before,
//! after it, and compacted.

// Report arithmetic on counts far below 2^52; `main` is a flat script.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::many_single_char_names,
    clippy::too_many_lines
)]

#[path = "../tests/inproc/mod.rs"]
mod inproc;
#[path = "common/redb_sizes.rs"]
mod redb_sizes;

use std::time::{Duration, Instant};

use inproc::{OCI_MANIFEST, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::json;

const N: usize = 10_000;
const READ_SECONDS: u64 = 5;
const READ_CLIENTS: usize = 16;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn process_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
    });
    ticks / 100.0
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Requests/s and p99 of `clients` loops sending `GET path` for `READ_SECONDS`, each with its own
/// token (minted once, as a client would reuse it).
async fn read_rate(s: &TestServer, path: &str, clients: usize) -> (f64, Duration) {
    let deadline = Instant::now() + Duration::from_secs(READ_SECONDS);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let token = s.token_for(&Method::GET, path);
        let (client, url) = (s.client.clone(), s.url(path));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = client.get(&url).bearer_auth(&token).send().await.unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                r.bytes().await.unwrap();
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    (
        all.len() as f64 / READ_SECONDS as f64,
        percentile(&all, 0.99),
    )
}

fn main() {
    let n: usize = std::env::var("ATCR_BENCH_MANIFESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(N);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let s = TestServer::start().await;
        let repo = "t/bench";
        let config = br#"{"architecture":"amd64","os":"linux"}"#;
        let layer = inproc::bytes(1, 4096);
        let config_digest = s.push_blob(repo, config).await;
        let layer_digest = s.push_blob(repo, &layer).await;
        let manifest = |i: usize| {
            serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.as_str(), "size": config.len()},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest.as_str(), "size": layer.len()}],
                "annotations": {"bench.build": i.to_string()},
            }))
            .unwrap()
        };
        println!("manifest PUT, tagged, sequential, into one repository growing to {n} manifests");
        let cpu0 = process_cpu_secs();
        let started = Instant::now();
        let mut lat = Vec::with_capacity(n);
        let mut window = Vec::new();
        for i in 0..n {
            let body = manifest(i);
            let path = format!("/v2/{repo}/manifests/v{i}");
            let req = s
                .req(Method::PUT, &path)
                .header("content-type", OCI_MANIFEST)
                .body(body);
            let t = Instant::now();
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            let d = t.elapsed();
            lat.push(d);
            window.push(d);
            if (i + 1) % (n / 5).max(1) == 0 {
                window.sort();
                println!(
                    "  up to {:>6}: p50 {:>7.2} ms, p99 {:>7.2} ms",
                    i + 1,
                    percentile(&window, 0.5).as_secs_f64() * 1e3,
                    percentile(&window, 0.99).as_secs_f64() * 1e3
                );
                window.clear();
            }
        }
        let wall = started.elapsed().as_secs_f64();
        let cpu = process_cpu_secs() - cpu0;
        lat.sort();
        println!(
            "  {n} PUTs in {wall:.1} s: {:.0} manifests/s, p50 {:.2} ms, p99 {:.2} ms, CPU {:.0} µs per push (server and client)",
            n as f64 / wall,
            percentile(&lat, 0.5).as_secs_f64() * 1e3,
            percentile(&lat, 0.99).as_secs_f64() * 1e3,
            cpu / n as f64 * 1e6
        );
        let pds = s.dir.path().join("pds.redb");
        let index = s.dir.path().join("index.redb");
        let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len()) as f64 / 1_048_576.0;
        println!(
            "  pds.redb {:.1} MiB, index.redb {:.1} MiB, process RSS {:.1} MiB",
            size(&pds),
            size(&index),
            rss_mib()
        );

        let (rate, p99) = read_rate(&s, &format!("/v2/{repo}/blobs/{layer_digest}"), READ_CLIENTS).await;
        println!(
            "4 KiB blob GET with a bearer token, {READ_CLIENTS} clients: {rate:.0} requests/s, p99 {:.2} ms",
            p99.as_secs_f64() * 1e3
        );
        let (rate, p99) = read_rate(&s, &format!("/v2/{repo}/manifests/v{}", n / 2), READ_CLIENTS).await;
        println!(
            "manifest GET by tag with a bearer token, {READ_CLIENTS} clients: {rate:.0} requests/s, p99 {:.2} ms",
            p99.as_secs_f64() * 1e3
        );
        let rebuild = Instant::now();
        let stats = s.app.registry.appview().rebuild().await.unwrap();
        println!(
            "index rebuild: {} manifests, {} tags in {:.2} s",
            stats.manifests,
            stats.tags,
            rebuild.elapsed().as_secs_f64()
        );

        // Storage given back: every other manifest deleted (signed deletes of its records),
        // then one collection with no grace (blobs, the manifests' objects, the PDS's blocks).
        let deleted = Instant::now();
        for i in (0..n).step_by(2) {
            let digest = atcr::blobstore::Digest::of(atcr::blobstore::Algorithm::Sha256, &manifest(i));
            let r = s
                .req(Method::DELETE, &format!("/v2/{repo}/manifests/{digest}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::ACCEPTED);
        }
        println!(
            "{} manifest DELETEs in {:.1} s; pds.redb {:.1} MiB, index.redb {:.1} MiB",
            n.div_ceil(2),
            deleted.elapsed().as_secs_f64(),
            size(&pds),
            size(&index)
        );
        let report = s
            .app
            .registry
            .collect_garbage(atcr::appview::gc::GcOptions {
                dry_run: false,
                grace_secs: 0,
                upload_expiry_secs: 86_400,
            })
            .await
            .unwrap();
        println!("collection: {report}");
        println!(
            "  after it: pds.redb live {:.1} MiB (file {:.1} MiB), index.redb file {:.1} MiB, process RSS {:.1} MiB",
            report.pds_live_bytes as f64 / 1_048_576.0,
            size(&pds),
            size(&index),
            rss_mib()
        );
        let _dir = s.stop().await;
        for (name, path) in [("pds.redb", &pds), ("index.redb", &index)] {
            let before = size(path);
            let mut db = redb::Database::open(path).unwrap();
            while db.compact().unwrap() {}
            drop(db);
            println!("  {name} compacted (as offline `atcr gc` does): {before:.1} → {:.1} MiB", size(path));
        }
        println!("pds.redb's tables at the end:");
        redb_sizes::print(&pds.to_string_lossy());
    });
}
