//! Garbage collection at scale (driven by `bench/gc.sh`, which builds it with
//! `cargo bench --bench gc --no-run`). Two modes:
//!
//! - `fill DATA_DIR OWNERS_FILE REPOS TAGS_PER_REPO BLOBS`: writes `BLOBS` small blobs straight
//!   into the filesystem blob store's layout and links each into a repository (as an upload
//!   would), then `REPOS` repositories with three manifests each (every manifest references a
//!   config and a layer from the first nine tenths of the blobs) and `TAGS_PER_REPO` tags each
//!   into the registry index of a stopped node, the way the indexer would. The last tenth of the
//!   blobs is referenced by nothing: what a collection past the grace deletes. Removes the
//!   search index, which the node rebuilds at start.
//! - `puts BASE_URL USER PASSWORD STOP_FILE OUT_FILE`: pushes one config and one layer into
//!   `USER/gc-bench`, then tagged manifests one after another until `STOP_FILE` exists, writing
//!   `<unix ms at the start> <latency µs>` per `PUT` to `OUT_FILE`.

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use atcr::appview::index::{Index, IndexChange, ManifestRecord, RecordAddr, TagTarget};
use atcr::blobstore::{Algorithm, Digest};

const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.first().map(String::as_str) {
        Some("fill") if args.len() == 6 => fill(
            Path::new(&args[1]),
            &args[2],
            args[3].parse().expect("REPOS"),
            args[4].parse().expect("TAGS_PER_REPO"),
            args[5].parse().expect("BLOBS"),
        ),
        Some("puts") if args.len() == 6 => {
            atcr::tls::install_crypto_provider();
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(puts(&args[1], &args[2], &args[3], &args[4], &args[5]));
        }
        _ => eprintln!(
            "usage: gc fill DATA_DIR OWNERS_FILE REPOS TAGS_PER_REPO BLOBS | gc puts BASE_URL USER PASSWORD STOP_FILE OUT_FILE (see bench/gc.sh)"
        ),
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn fill(dir: &Path, owners_file: &str, repos: usize, tags: usize, blobs: usize) {
    let owners: Vec<String> = std::fs::read_to_string(owners_file)
        .expect("owners file")
        .lines()
        .filter_map(|l| Some(l.split_once('\t')?.1.to_owned()))
        .collect();
    assert!(!owners.is_empty(), "no owners in {owners_file}");
    let index = Index::open(&dir.join("index.redb")).expect("index");
    let started = Instant::now();
    let repo_of = |i: usize| format!("{}/app-{i}", owners[i % owners.len()]);

    // The blobs: files in the store's layout, each linked into the repository that uses it
    // first (one durable index write each, as uploads make them).
    let mut digests = Vec::with_capacity(blobs);
    for j in 0..blobs {
        let bytes = format!("gc bench blob {j}\n").repeat(4);
        let digest = Digest::of(Algorithm::Sha256, bytes.as_bytes());
        let hex = digest.hex();
        let file = dir.join("blobs/blobs/sha256").join(&hex[..2]).join(hex);
        std::fs::create_dir_all(file.parent().unwrap()).expect("blob dir");
        std::fs::write(&file, &bytes).expect("blob");
        let repo = atcr::appview::index::RepoKey::from_stored(repo_of(j % repos));
        index
            .link_blob(&repo, &digest, bytes.len() as u64, None)
            .expect("link");
        digests.push((digest, bytes.len() as u64));
    }
    let linked_s = started.elapsed().as_secs_f64();

    let used = (blobs * 9 / 10).max(2);
    let now = now_secs();
    let mut changes = Vec::new();
    for i in 0..repos {
        let did = &owners[i % owners.len()];
        let repo = repo_of(i);
        let addr = |collection: &str, rkey: String| RecordAddr {
            did: did.clone(),
            collection: collection.to_owned(),
            rkey,
        };
        let mut manifests = Vec::new();
        for m in 0..3 {
            let n = i * 3 + m;
            let config = &digests[n % used].0;
            let layer = &digests[(n * 7 + 1) % used].0;
            let manifest = Digest::of(Algorithm::Sha256, format!("{repo} {m}").as_bytes());
            changes.push(IndexChange::PutManifest {
                addr: addr("io.atcr.manifest", format!("m{i}x{m}")),
                repo: repo.clone(),
                digest: manifest.clone(),
                record: ManifestRecord {
                    media_type: MANIFEST.to_owned(),
                    size: 800,
                    artifact_type: None,
                    subject: None,
                    created: now - (i as u64 * 37) % (400 * 86_400),
                    summary: None,
                },
                references: vec![config.clone(), layer.clone()],
                referrer: None,
                links: Vec::new(),
                quota: None,
            });
            manifests.push(manifest);
        }
        for t in 0..tags {
            changes.push(IndexChange::PutTag {
                addr: addr("io.atcr.tag", format!("t{i}x{t}")),
                repo: repo.clone(),
                tag: format!("v{t}"),
                target: TagTarget::Digest(manifests[t % manifests.len()].clone()),
            });
        }
        if (i + 1) % 500 == 0 || i + 1 == repos {
            index
                .apply(&std::mem::take(&mut changes), None)
                .expect("apply");
        }
    }
    index.sync().expect("sync");
    // The search index no longer reflects the registry index: the next start rebuilds it.
    let _ = std::fs::remove_dir_all(dir.join("search"));
    println!(
        "{{\"repos\": {repos}, \"tags\": {}, \"blobs\": {blobs}, \"unreferenced\": {}, \"link_s\": {linked_s:.1}, \"fill_s\": {:.1}}}",
        repos * tags,
        blobs - used,
        started.elapsed().as_secs_f64()
    );
}

/// A bearer token for `scope` from the registry's token endpoint (the realm its challenge names).
async fn token(
    client: &reqwest::Client,
    base: &str,
    user: &str,
    password: &str,
    scope: &str,
) -> String {
    let challenge = client
        .get(format!("{base}/v2/"))
        .send()
        .await
        .expect("GET /v2/");
    let header = challenge
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .expect("a challenge")
        .to_owned();
    let param = |name: &str| {
        let start = header.find(&format!("{name}=\"")).expect(name) + name.len() + 2;
        header[start..][..header[start..].find('"').unwrap()].to_owned()
    };
    let reply: serde_json::Value = client
        .get(param("realm"))
        .query(&[("service", param("service").as_str()), ("scope", scope)])
        .basic_auth(user, Some(password))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token JSON");
    reply["token"].as_str().expect("a token").to_owned()
}

async fn puts(base: &str, user: &str, password: &str, stop: &str, out: &str) {
    let client = reqwest::Client::new();
    let repo = format!("{user}/gc-bench");
    let scope = format!("repository:{repo}:push,pull");
    let bearer = token(&client, base, user, password, &scope).await;
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer = vec![7u8; 4096];
    let mut pushed = Vec::new();
    for bytes in [&config[..], &layer[..]] {
        let digest = Digest::of(Algorithm::Sha256, bytes);
        let r = client
            .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}"))
            .bearer_auth(&bearer)
            .body(bytes.to_vec())
            .send()
            .await
            .expect("blob POST");
        assert_eq!(r.status(), reqwest::StatusCode::CREATED, "blob push");
        pushed.push(digest);
    }
    let (config_digest, layer_digest) = (&pushed[0], &pushed[1]);
    let mut lines = String::new();
    let mut i = 0u64;
    while !Path::new(stop).exists() {
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": CONFIG, "digest": config_digest.as_str(), "size": config.len()},
            "layers": [{"mediaType": LAYER, "digest": layer_digest.as_str(), "size": layer.len()}],
            "annotations": {"bench.build": i.to_string()},
        });
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let t = Instant::now();
        let r = client
            .put(format!("{base}/v2/{repo}/manifests/b{i}"))
            .bearer_auth(&bearer)
            .header("content-type", MANIFEST)
            .body(serde_json::to_vec(&body).unwrap())
            .send()
            .await
            .expect("manifest PUT");
        assert_eq!(r.status(), reqwest::StatusCode::CREATED, "manifest PUT");
        let _ = writeln!(lines, "{at} {}", t.elapsed().as_micros());
        i += 1;
    }
    std::fs::File::create(out)
        .and_then(|mut f| f.write_all(lines.as_bytes()))
        .expect("write latencies");
}
