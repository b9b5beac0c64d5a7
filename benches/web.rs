//! Web UI and search at scale (driven by `bench/web.sh`, which builds it with
//! `cargo bench --bench web --no-run`). Modes:
//!
//! - `fill DATA_DIR OWNERS_FILE REPOS TAGS_PER_REPO [per-push]`: writes `REPOS` repositories (owned in
//!   turn by the accounts of `OWNERS_FILE`, `name<TAB>did` lines) with three manifests each (with
//!   annotations and platforms), `TAGS_PER_REPO` tags and some stars straight into the registry
//!   index of a stopped node, the way the indexer would; writes `DATA_DIR/bench-names.txt`
//!   (`<repository>\t<digest>` per line) for the measuring run, and removes the search index
//!   (the node rebuilds it at start). Changes are written 500 repositories to a transaction;
//!   with `per-push`, each repository's in its own, as the indexer applies a commit.
//! - `measure BASE_URL NAMES_FILE`: times search queries, the home page, repository pages and
//!   manifest pages over loopback HTTP (one keep-alive connection, one request at a time) and
//!   prints p50/p99 per kind as JSON.
//! - `sizes INDEX_FILE`: prints each table of a (stopped node's) redb file with its rows and
//!   bytes, as JSON lines.
//! - `compact INDEX_FILE`: compacts a stopped node's index as offline `atcr gc` does (rewritten
//!   in key order) and prints its size before and after.
//! - `compact-online INDEX_FILE OWNERS_FILE FIRST_REPO`: compacts the index as a running node's
//!   collector does (`Index::compact_online`) while a writer pushes repositories `FIRST_REPO`,
//!   `FIRST_REPO + 1`, … as the fill makes them (one transaction each, as the indexer applies a
//!   push, one every 20 ms); prints the file's bytes on disk before and after, the compaction's
//!   wall time, and the writes' p50/p99 for 10 s before it and during it.

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::too_many_lines
)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[path = "common/redb_sizes.rs"]
mod redb_sizes;

use atcr::appview::index::{Index, IndexChange, ManifestRecord, RecordAddr, TagTarget};
use atcr::appview::summary::{ManifestSummary, Part};
use atcr::blobstore::Digest;
use sha2::Digest as _;

const WORDS: &[&str] = &[
    "api",
    "auth",
    "billing",
    "cache",
    "cart",
    "catalog",
    "checkout",
    "config",
    "cron",
    "db",
    "dns",
    "edge",
    "etl",
    "events",
    "feed",
    "gateway",
    "graph",
    "image",
    "ingest",
    "inventory",
    "kafka",
    "ledger",
    "log",
    "mail",
    "media",
    "metrics",
    "ml",
    "notify",
    "orders",
    "payments",
    "pdf",
    "proxy",
    "queue",
    "redis",
    "report",
    "search",
    "shop",
    "sso",
    "storage",
    "stream",
    "sync",
    "tiles",
    "token",
    "upload",
    "user",
    "video",
    "web",
    "worker",
    "nginx",
    "postgres",
    "python",
    "node",
    "golang",
    "rust",
    "java",
    "backup",
    "monitor",
    "vault",
    "ci",
    "docs",
];
const DOMAINS: &[&str] = &[
    "the storefront",
    "internal tooling",
    "the data platform",
    "mobile clients",
    "partners",
    "the finance team",
    "observability",
    "the build farm",
];

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.first().map(String::as_str) {
        Some("fill") if args.len() == 5 || args.len() == 6 => fill(
            &args[1],
            &args[2],
            args[3].parse().expect("REPOS"),
            args[4].parse().expect("TAGS_PER_REPO"),
            match args.get(5).map(String::as_str) {
                None => false,
                Some("per-push") => true,
                Some(other) => panic!("unknown fill mode {other:?} (per-push?)"),
            },
        ),
        Some("measure") if args.len() == 3 => measure(&args[1], &args[2]),
        Some("sizes") if args.len() == 2 => redb_sizes::print(&args[1]),
        Some("compact-online") if args.len() == 4 => compact_online(
            std::path::Path::new(&args[1]),
            &args[2],
            args[3].parse().expect("FIRST_REPO"),
        ),
        Some("compact") if args.len() == 2 => {
            let (before, after) = Index::compact(std::path::Path::new(&args[1])).expect("compact");
            println!("{{\"before\": {before}, \"after\": {after}}}");
        }
        _ => eprintln!(
            "usage: web fill DATA_DIR OWNERS_FILE REPOS TAGS_PER_REPO | web measure BASE_URL NAMES_FILE | web sizes INDEX_FILE | web compact INDEX_FILE | web compact-online INDEX_FILE OWNERS_FILE FIRST_REPO (see bench/web.sh)"
        ),
    }
}

fn digest_of(parts: &[&str]) -> Digest {
    let hex = hex::encode(sha2::Sha256::digest(parts.join("/").as_bytes()));
    format!("sha256:{hex}").parse().expect("a digest")
}

fn fill(dir: &str, owners_file: &str, repos: usize, tags: usize, per_push: bool) {
    let owners: Vec<(String, String)> = std::fs::read_to_string(owners_file)
        .expect("owners file")
        .lines()
        .filter_map(|l| {
            let (name, did) = l.split_once('\t')?;
            Some((name.to_owned(), did.to_owned()))
        })
        .collect();
    assert!(!owners.is_empty(), "no owners in {owners_file}");
    let index = Index::open(&std::path::Path::new(dir).join("index.redb")).expect("index");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let started = Instant::now();
    let mut names = String::new();
    let mut changes = Vec::new();
    for i in 0..repos {
        let (line, repo_changes) = repo_changes(&owners, i, tags, now);
        changes.extend(repo_changes);
        names.push_str(&line);
        if per_push {
            // As the indexer applies a push's commit: one event, its own transaction (synced
            // once a second).
            index
                .apply_events(&[(i as u64 + 1, std::mem::take(&mut changes))])
                .expect("apply");
        } else if (i + 1) % 500 == 0 || i + 1 == repos {
            index
                .apply(&std::mem::take(&mut changes), None)
                .expect("apply");
        }
    }
    index.sync().expect("sync");
    std::fs::write(std::path::Path::new(dir).join("bench-names.txt"), names).expect("names");
    // The search index no longer reflects the registry index: the next start rebuilds it.
    let _ = std::fs::remove_dir_all(std::path::Path::new(dir).join("search"));
    println!(
        "{{\"repos\": {repos}, \"tags\": {}, \"fill_s\": {:.1}}}",
        repos * tags,
        started.elapsed().as_secs_f64()
    );
}

/// The changes the indexer would make for repository `i` of the fill (three manifests, `tags`
/// tags, some stars), and its `<name>\t<digest>` line.
fn repo_changes(
    owners: &[(String, String)],
    i: usize,
    tags: usize,
    now: u64,
) -> (String, Vec<IndexChange>) {
    let mut changes = Vec::new();
    let w = WORDS.len();
    let (owner_name, did) = &owners[i % owners.len()];
    let (a, b) = (WORDS[i % w], WORDS[(i / w) % w]);
    let path = if i.is_multiple_of(10) {
        format!("team{}/{a}-{b}-{i}", i % 7)
    } else {
        format!("{a}-{b}-{i}")
    };
    let repo = format!("{did}/{path}");
    let addr = |collection: &str, rkey: String| RecordAddr {
        did: did.clone(),
        collection: collection.to_owned(),
        rkey,
    };
    let mut digests = Vec::new();
    for m in 0..3 {
        let digest = digest_of(&[&repo, &m.to_string()]);
        let mut annotations = BTreeMap::new();
        annotations.insert(
            "org.opencontainers.image.description".to_owned(),
            format!(
                "{} {b} service for {}",
                a.to_uppercase(),
                DOMAINS[i % DOMAINS.len()]
            ),
        );
        annotations.insert(
            "org.opencontainers.image.licenses".to_owned(),
            ["MIT", "Apache-2.0", "MPL-2.0"][i % 3].to_owned(),
        );
        let mut platforms = vec!["linux/amd64".to_owned()];
        if i.is_multiple_of(3) {
            platforms.push("linux/arm64".to_owned());
        }
        let part = |kind: &str, size: u64| Part {
            media_type: kind.to_owned(),
            digest: digest_of(&[&repo, &m.to_string(), kind])
                .as_str()
                .to_owned(),
            size,
            platform: None,
        };
        let summary = ManifestSummary {
            annotations,
            platforms,
            parts: vec![
                part("application/vnd.oci.image.config.v1+json", 1500),
                part("application/vnd.oci.image.layer.v1.tar+gzip", 30 << 20),
            ],
            ..ManifestSummary::default()
        };
        changes.push(IndexChange::PutManifest {
            addr: addr("io.atcr.manifest", format!("m{i}x{m}")),
            repo: repo.clone(),
            digest: digest.clone(),
            record: ManifestRecord {
                media_type: "application/vnd.oci.image.manifest.v1+json".to_owned(),
                size: 1200,
                artifact_type: None,
                subject: None,
                created: now - (i as u64 * 37) % (400 * 86_400),
                summary: Some(Box::new(summary)),
            },
            references: Vec::new(),
            referrer: None,
            links: Vec::new(),
            quota: None,
        });
        digests.push(digest);
    }
    for t in 0..tags {
        let tag = if t == 0 {
            "latest".to_owned()
        } else {
            format!("v1.{}.{t}", i % 5)
        };
        changes.push(IndexChange::PutTag {
            addr: addr("io.atcr.tag", format!("t{i}x{t}")),
            repo: repo.clone(),
            tag,
            target: TagTarget::Digest(digests[t % digests.len()].clone()),
        });
    }
    if i.is_multiple_of(7) {
        for (j, (_, starrer)) in owners.iter().enumerate().take(i % 13 + 1) {
            changes.push(IndexChange::PutStar {
                addr: RecordAddr {
                    did: starrer.clone(),
                    collection: "io.atcr.sailor.star".to_owned(),
                    rkey: format!("s{i}x{j}"),
                },
                repo: repo.clone(),
            });
        }
    }
    (format!("{owner_name}/{path}\t{}\n", digests[0]), changes)
}

/// See the module's comment.
fn compact_online(path: &std::path::Path, owners_file: &str, first: usize) {
    let owners: Vec<(String, String)> = std::fs::read_to_string(owners_file)
        .expect("owners file")
        .lines()
        .filter_map(|l| {
            let (name, did) = l.split_once('\t')?;
            Some((name.to_owned(), did.to_owned()))
        })
        .collect();
    let disk = || std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(path).unwrap()) * 512;
    let index = Index::open(path).expect("index");
    let before = disk();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let phase = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(0));
    let writer = {
        let (index, phase) = (index.clone(), phase.clone());
        std::thread::spawn(move || {
            let mut times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
            let mut i = first;
            loop {
                let p = phase.load(std::sync::atomic::Ordering::Relaxed);
                if p == 2 {
                    return times;
                }
                let (_, changes) = repo_changes(&owners, i, 10, now);
                let t = Instant::now();
                index.apply(&changes, None).expect("apply");
                times[usize::from(p)].push(t.elapsed());
                i += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(10));
    phase.store(1, std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    let compacted = index.compact_online().expect("compact").expect("a file");
    let wall = started.elapsed();
    phase.store(2, std::sync::atomic::Ordering::Relaxed);
    let mut times = writer.join().unwrap();
    let stat = |v: &mut Vec<Duration>| {
        v.sort();
        format!(
            "{{\"writes\": {}, \"p50_ms\": {:.2}, \"p99_ms\": {:.2}}}",
            v.len(),
            percentile(v, 0.5),
            percentile(v, 0.99)
        )
    };
    println!(
        "{{\"disk_before\": {before}, \"disk_after\": {}, \"file_before\": {}, \"file_after\": {}, \"compaction_s\": {:.1}, \"without\": {}, \"during\": {}}}",
        disk(),
        compacted.0,
        compacted.1,
        wall.as_secs_f64(),
        stat(&mut times[0]),
        stat(&mut times[1])
    );
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn measure(base: &str, names_file: &str) {
    let names: Vec<(String, String)> = std::fs::read_to_string(names_file)
        .expect("names file")
        .lines()
        .filter_map(|l| {
            let (n, d) = l.split_once('\t')?;
            Some((n.to_owned(), d.to_owned()))
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    atcr::tls::install_crypto_provider();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .unwrap();
        let time = |path: String| {
            let client = client.clone();
            let url = format!("{base}{path}");
            async move {
                let t0 = Instant::now();
                let r = client.get(&url).send().await.expect("request");
                let status = r.status();
                let body = r.bytes().await.expect("body");
                let took = t0.elapsed();
                assert!(status.is_success(), "{url}: {status}");
                (took, body.len())
            }
        };
        let queries = [
            "checkout",
            "payments",
            "chec",
            "paymnets",
            "web proxy",
            "storefront",
            "service",
            "observability",
            "owner:bench03 api",
            "platform:arm64 cache",
            "tag:v1.3.4 web",
            "mpl-2.0 kafka",
            "team3",
            "nginx",
            "ml worker",
            "finance",
            "redis-cache",
            "zzzz",
            "golang search",
            "a",
        ];
        // Warm up (the first reads fault the index files in).
        for q in &queries {
            time(format!("/search?q={}", urlencode(q))).await;
        }
        let mut out = serde_json::Map::new();
        let mut report = |kind: &str, mut times: Vec<Duration>| {
            times.sort();
            out.insert(
                kind.to_owned(),
                serde_json::json!({
                    "n": times.len(),
                    "p50_ms": (percentile(&times, 0.5) * 100.0).round() / 100.0,
                    "p99_ms": (percentile(&times, 0.99) * 100.0).round() / 100.0,
                }),
            );
        };
        let mut search = Vec::new();
        for round in 0..20 {
            for q in &queries {
                let page = if round % 4 == 3 { "&page=2" } else { "" };
                search.push(time(format!("/search?q={}{page}", urlencode(q))).await.0);
            }
        }
        report("search", search);
        let mut home = Vec::new();
        for _ in 0..200 {
            home.push(time("/".to_owned()).await.0);
        }
        report("home", home);
        let step = (names.len() / 500).max(1);
        let mut repo = Vec::new();
        let mut manifest = Vec::new();
        for (name, digest) in names.iter().step_by(step).take(500) {
            repo.push(time(format!("/r/{name}")).await.0);
            manifest.push(time(format!("/r/{name}@{digest}")).await.0);
        }
        report("repository", repo);
        report("manifest", manifest);
        println!("{}", serde_json::Value::Object(out));
    });
}

fn urlencode(q: &str) -> String {
    form_urlencoded::byte_serialize(q.as_bytes()).collect()
}
