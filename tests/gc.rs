//! Online garbage collection against an in-process server: what is freed and what stays, and
//! manifest `PUT`s racing the sweep (every `201` manifest pulls completely afterwards), also
//! `PUT`s of a deleted manifest's bytes whose object the sweep is taking.

mod inproc;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use atcr::appview::gc::{GcOptions, GcReport};
use atcr::blobstore::{Algorithm, Digest};
use inproc::{OCI_MANIFEST, TestServer, bytes, expect_error};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn gc(s: &TestServer, dry_run: bool, grace_secs: u64) -> GcReport {
    s.app
        .registry
        .collect_garbage(GcOptions {
            dry_run,
            grace_secs,
            upload_expiry_secs: 86_400,
        })
        .await
        .unwrap()
}

async fn blob_status(s: &TestServer, repo: &str, digest: &Digest) -> StatusCode {
    s.req(Method::HEAD, &format!("/v2/{repo}/blobs/{digest}"))
        .send()
        .await
        .unwrap()
        .status()
}

/// Pulls a manifest and every blob it names, checking each digest.
async fn pull_verified(s: &TestServer, repo: &str, digest: &Digest) {
    let r = s
        .req(Method::GET, &format!("/v2/{repo}/manifests/{digest}"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "manifest {digest} of {repo}");
    let body = r.bytes().await.unwrap();
    assert_eq!(&Digest::of(Algorithm::Sha256, &body), digest);
    let m: Value = serde_json::from_slice(&body).unwrap();
    let mut descs = vec![m["config"].clone()];
    descs.extend(m["layers"].as_array().unwrap().iter().cloned());
    for d in descs {
        let want = d["digest"].as_str().unwrap();
        let r = s
            .req(Method::GET, &format!("/v2/{repo}/blobs/{want}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "blob {want} of {repo}");
        let got = Digest::of(Algorithm::Sha256, &r.bytes().await.unwrap());
        assert_eq!(got.as_str(), want, "blob {want} of {repo} has other bytes");
    }
}

#[tokio::test]
async fn unique_layers_of_a_deleted_manifest_go_and_shared_or_young_blobs_stay() {
    let s = TestServer::start().await;
    let shared = bytes(1, 50_000);
    let (only_a, only_b) = (bytes(2, 30_000), bytes(3, 20_000));
    let (a, a_bytes) = s
        .push_image("t/a", "v1", &[&shared, &only_a], json!({}))
        .await;
    let (b, _) = s
        .push_image("t/b", "v1", &[&shared, &only_b], json!({}))
        .await;
    let stray = bytes(4, 10_000);
    let stray_digest = s.push_blob("t/a", &stray).await;

    // Everything is younger than an hour: nothing goes, not even the blob no manifest uses.
    let report = gc(&s, false, 3600).await;
    assert_eq!(report.blobs_deleted, 0, "{report}");
    assert_eq!(blob_status(&s, "t/a", &stray_digest).await, StatusCode::OK);

    let r = s
        .req(Method::DELETE, &format!("/v2/t/a/manifests/{a}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // Past the grace (0 here): A's own layer, A's manifest object and the stray blob; the
    // shared layer and the config (both images have the same one) are still used by B.
    let only_a_digest = Digest::of(Algorithm::Sha256, &only_a);
    let freed = (only_a.len() + stray.len() + a_bytes.len()) as u64;
    let dry = gc(&s, true, 0).await;
    assert_eq!(dry.blobs_deleted, 3, "{dry}");
    assert_eq!(dry.bytes_freed, freed);
    assert_eq!(
        blob_status(&s, "t/a", &only_a_digest).await,
        StatusCode::OK,
        "a dry run deletes nothing"
    );
    let report = gc(&s, false, 0).await;
    assert_eq!(report.blobs_deleted, 3, "{report}");
    assert_eq!(report.bytes_freed, freed);
    for d in [&only_a_digest, &stray_digest] {
        assert_eq!(blob_status(&s, "t/a", d).await, StatusCode::NOT_FOUND);
        assert_eq!(s.app.registry.blobs().stat(d).await.unwrap(), None);
        assert_eq!(s.app.registry.index().blob(d).unwrap(), None);
    }
    assert_eq!(s.app.registry.blobs().stat(&a).await.unwrap(), None);
    assert_eq!(s.app.registry.index().manifest_object(&a).unwrap(), None);
    assert!(
        s.app
            .registry
            .index()
            .manifest_object(&b)
            .unwrap()
            .is_some(),
        "a manifest that is there keeps its object"
    );
    pull_verified(&s, "t/b", &b).await;
    let stats = s.app.registry.appview().gc().stats();
    assert_eq!(stats.blobs_deleted.load(Ordering::Relaxed), 3);
    assert_eq!(
        stats.runs.load(Ordering::Relaxed),
        2,
        "dry runs do not count"
    );
    assert!(s.app.registry.index().gc_last_run().unwrap().is_some());

    // A manifest naming a collected blob is refused.
    let config = br#"{"architecture":"amd64","os":"linux","n":2}"#;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": Digest::of(Algorithm::Sha256, config).as_str(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": only_a_digest.as_str(), "size": only_a.len()}],
    });
    let r = s
        .req(Method::PUT, "/v2/t/a/manifests/again")
        .header("content-type", OCI_MANIFEST)
        .body(serde_json::to_vec(&manifest).unwrap())
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
    // Nothing left to collect.
    assert_eq!(gc(&s, false, 0).await.blobs_deleted, 0);
}

/// One image's layers, uploaded before the race: `(manifest bytes, layers)`.
async fn prepare(s: &TestServer, repo: &str, i: u64, shared: &[u8]) -> Vec<u8> {
    let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"i\":{i}}}");
    let config_digest = s.push_blob(repo, config.as_bytes()).await;
    let own = bytes(1000 + i, 4096);
    let own_digest = s.push_blob(repo, &own).await;
    let shared_digest = s.push_blob(repo, shared).await;
    let layer = |d: &Digest, n: usize| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d.as_str(), "size": n});
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.as_str(), "size": config.len()},
        "layers": [layer(&shared_digest, shared.len()), layer(&own_digest, own.len())],
    }))
    .unwrap()
}

/// Layers uploaded "long ago" (grace 0: the moment they are stored), manifests pushed right
/// after while collection runs in a loop: each `PUT` either gets `201` and its image then pulls
/// completely, or is refused with `MANIFEST_BLOB_UNKNOWN`; never a `201` whose blob is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_puts_racing_the_collector_never_lose_a_blob() {
    const PUSHERS: u64 = 6;
    const ROUNDS: u64 = 8;
    let s = Arc::new(TestServer::start().await);
    let shared = Arc::new(bytes(7, 8192));
    // A base image uses the shared layer, as base layers are in real pushes.
    let base = prepare(&s, "t/race", 999, &shared).await;
    s.put_manifest("t/race", "base", OCI_MANIFEST, &base).await;

    let stop = Arc::new(AtomicBool::new(false));
    let deleted = Arc::new(AtomicU64::new(0));
    let collector = {
        let (s, stop, deleted) = (s.clone(), stop.clone(), deleted.clone());
        tokio::spawn(async move {
            let mut runs = 0u32;
            while !stop.load(Ordering::Relaxed) || runs == 0 {
                deleted.fetch_add(gc(&s, false, 0).await.blobs_deleted, Ordering::Relaxed);
                runs += 1;
                // Paced (not timed): some pushes get through between runs, some do not.
                tokio::time::sleep(std::time::Duration::from_millis(u64::from(runs % 5) * 5)).await;
            }
            runs
        })
    };
    let mut pushers = Vec::new();
    for p in 0..PUSHERS {
        let (s, shared) = (s.clone(), shared.clone());
        pushers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for round in 0..ROUNDS {
                let i = p * ROUNDS + round;
                let m = prepare(&s, "t/race", i, &shared).await;
                let r = s
                    .req(Method::PUT, &format!("/v2/t/race/manifests/tag{i}"))
                    .header("content-type", OCI_MANIFEST)
                    .body(m.clone())
                    .send()
                    .await
                    .unwrap();
                out.push((r.status(), r.text().await.unwrap(), m));
            }
            out
        }));
    }
    let mut created = Vec::new();
    let mut refused = 0;
    for p in pushers {
        for (status, body, m) in p.await.unwrap() {
            match status {
                StatusCode::CREATED => created.push(Digest::of(Algorithm::Sha256, &m)),
                StatusCode::BAD_REQUEST if body.contains("MANIFEST_BLOB_UNKNOWN") => refused += 1,
                other => panic!("unexpected answer {other}: {body}"),
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let runs = collector.await.unwrap();
    // One more collection after the race: whatever it can take, the images must survive it.
    gc(&s, false, 0).await;
    for d in &created {
        pull_verified(&s, "t/race", d).await;
    }
    eprintln!(
        "{} created, {refused} refused, {} blobs collected in {runs} runs",
        created.len(),
        deleted.load(Ordering::Relaxed)
    );
    assert_eq!(created.len() + refused, (PUSHERS * ROUNDS) as usize);
}

/// The same manifest bytes pushed, checked and deleted again and again in several repositories
/// while collection runs in a loop with no grace: its object is collectable whenever every
/// repository has just deleted it (its layers are not: another manifest keeps them). Every
/// `201` is followed by a pull of exactly those bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_of_a_deleted_manifest_racing_the_collector_never_lose_its_object() {
    const PUSHERS: u64 = 4;
    const ROUNDS: usize = 12;
    let s = Arc::new(TestServer::start().await);
    let layer = bytes(11, 4096);
    let m = Arc::new(prepare(&s, "t/m0", 0, &layer).await);
    let digest = Digest::of(Algorithm::Sha256, &m);
    let mut keeper: Value = serde_json::from_slice(&m).unwrap();
    keeper["annotations"] = json!({"keeps": "the layers"});
    let keeper = serde_json::to_vec(&keeper).unwrap();
    for p in 0..PUSHERS {
        let repo = format!("t/m{p}");
        prepare(&s, &repo, 0, &layer).await;
        s.put_manifest(&repo, "keeper", OCI_MANIFEST, &keeper).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let collector = {
        let (s, stop) = (s.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut runs, mut deleted) = (0u32, 0u64);
            while !stop.load(Ordering::Relaxed) || runs == 0 {
                deleted += gc(&s, false, 0).await.blobs_deleted;
                runs += 1;
                tokio::time::sleep(std::time::Duration::from_millis(u64::from(runs % 3))).await;
            }
            (runs, deleted)
        })
    };
    let mut pushers = Vec::new();
    for p in 0..PUSHERS {
        let (s, m, digest) = (s.clone(), m.clone(), digest.clone());
        pushers.push(tokio::spawn(async move {
            let repo = format!("t/m{p}");
            for round in 0..ROUNDS {
                s.put_manifest(&repo, &format!("r{round}"), OCI_MANIFEST, &m)
                    .await;
                // 201, then the manifest's bytes (and its blobs) are there.
                pull_verified(&s, &repo, &digest).await;
                let r = s
                    .req(Method::DELETE, &format!("/v2/{repo}/manifests/{digest}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::ACCEPTED);
            }
        }));
    }
    for p in pushers {
        p.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let (runs, deleted) = collector.await.unwrap();
    eprintln!("{deleted} objects collected in {runs} runs");
    // Deleted everywhere: past the (zero) grace, its object goes; the keepers' stay.
    gc(&s, false, 0).await;
    assert_eq!(s.app.registry.blobs().stat(&digest).await.unwrap(), None);
    pull_verified(&s, "t/m0", &Digest::of(Algorithm::Sha256, &keeper)).await;
}

/// Uploads `bytes` as a blob of the test user's repository through XRPC.
async fn upload_pds_blob(s: &TestServer, mime: &str, bytes: Vec<u8>) {
    upload_blob_as(s, inproc::USER, mime, bytes).await;
}

/// Uploads `bytes` as a blob of local account `user`'s repository through XRPC; returns the
/// blob reference.
async fn upload_blob_as(s: &TestServer, user: &str, mime: &str, bytes: Vec<u8>) -> Value {
    let r = s
        .anonymous(Method::POST, "/xrpc/com.atproto.repo.uploadBlob")
        .bearer_auth(s.session(user).await)
        .header("content-type", mime)
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().await.unwrap()["blob"].clone()
}

/// Uploads `bytes` as an image of the test user's and references it from a record, as an
/// avatar is: a blob of the PDS that stays (an unreferenced upload expires).
async fn upload_referenced_blob(s: &TestServer, bytes: Vec<u8>) {
    let blob = upload_blob_as(s, inproc::USER, "image/png", bytes).await;
    let r = s
        .anonymous(Method::POST, "/xrpc/com.atproto.repo.createRecord")
        .bearer_auth(s.session(inproc::USER).await)
        .json(&json!({"repo": s.user.as_str(), "collection": "app.test.pic", "record": {"img": blob}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
}

/// What a crash between writing an object and recording it leaves: an object no index entry
/// names. A collection past the grace takes it up as an unused blob, the next one deletes it;
/// a young one is left alone, and blobs the PDS holds (uploaded through XRPC) are never taken,
/// except manifests' bytes, which the registry stores as the owner's blob before its commit.
#[tokio::test]
async fn objects_nobody_recorded_are_taken_up_then_collected_and_pds_blobs_stay() {
    let s = TestServer::start().await;
    let store = s.app.registry.blobs().clone();
    let orphan = bytes(91, 3000);
    let orphan_digest = Digest::of(Algorithm::Sha256, &orphan);
    store.put(&orphan_digest, orphan.into()).await.unwrap();
    let avatar = bytes(92, 2000);
    let avatar_bytes = avatar.clone();
    let avatar_digest = Digest::of(Algorithm::Sha256, &avatar);
    upload_referenced_blob(&s, avatar).await;
    // A manifest's bytes stored as the owner's blob, then a crash before the commit naming
    // them: the PDS knows the blob, but it is the registry's, and no record uses it.
    let manifest =
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;
    let manifest_digest = Digest::of(Algorithm::Sha256, manifest);
    upload_pds_blob(&s, OCI_MANIFEST, manifest.to_vec()).await;

    let young = gc(&s, false, 3600).await;
    assert_eq!(young.orphans_adopted, 0, "{young}");
    let dry = gc(&s, true, 0).await;
    assert_eq!(dry.orphans_adopted, 2, "{dry}");
    let first = gc(&s, false, 0).await;
    assert_eq!(first.orphans_adopted, 2, "{first}");
    assert!(store.stat(&orphan_digest).await.unwrap().is_some());
    // Taken up, it is an unused blob no repository serves.
    assert_eq!(
        blob_status(&s, "t/any", &orphan_digest).await,
        StatusCode::NOT_FOUND
    );
    let second = gc(&s, false, 0).await;
    assert_eq!(second.orphans_adopted, 0, "{second}");
    assert!(second.blobs_deleted >= 2, "{second}");
    assert_eq!(store.stat(&orphan_digest).await.unwrap(), None);
    assert_eq!(store.stat(&manifest_digest).await.unwrap(), None);
    // The manifest bytes' blob-table row went with the object; the avatar's stays.
    let listed = s
        .get_json(&format!("/xrpc/com.atproto.sync.listBlobs?did={}", s.user))
        .await;
    let cids: Vec<&str> = listed["cids"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let cid_of = |b: &[u8]| atcr::atproto::Cid::for_raw(b).to_string();
    assert!(!cids.contains(&cid_of(manifest).as_str()), "{cids:?}");
    assert!(cids.contains(&cid_of(&avatar_bytes).as_str()), "{cids:?}");
    assert!(
        store.stat(&avatar_digest).await.unwrap().is_some(),
        "the PDS's blob was collected"
    );
}

/// Storage keeps one object per digest, whoever stored it. The same bytes pushed as a layer
/// (then used by nothing) and uploaded as someone's PDS blob stay when the collector takes the
/// layer's index rows, and another user uploading them again as a "manifest" changes nothing.
#[tokio::test]
async fn an_object_a_pds_blob_shares_is_never_collected_with_a_layer() {
    let s = TestServer::start().await;
    let store = s.app.registry.blobs().clone();
    let avatar = bytes(93, 2500);
    let digest = Digest::of(Algorithm::Sha256, &avatar);
    upload_referenced_blob(&s, avatar.clone()).await;
    s.app
        .pds
        .create_account("mallory", inproc::PASSWORD, false)
        .await
        .unwrap();
    upload_blob_as(&s, "mallory", OCI_MANIFEST, avatar.clone()).await;
    assert_eq!(s.push_blob("t/layers", &avatar).await, digest);

    gc(&s, false, 0).await;
    assert!(
        store.stat(&digest).await.unwrap().is_some(),
        "the PDS blob's object was collected with the unused layer"
    );
    // Unknown to the index now, it is the PDS's: never taken up either.
    let again = gc(&s, false, 0).await;
    assert_eq!(again.orphans_adopted, 0, "{again}");
    assert!(
        store.stat(&digest).await.unwrap().is_some(),
        "the PDS blob's object was collected with the unused layer"
    );
    let r = s
        .anonymous(
            Method::GET,
            &format!(
                "/xrpc/com.atproto.sync.getBlob?did={}&cid={}",
                s.user,
                atcr::atproto::Cid::for_raw(&avatar)
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &avatar[..]);
}
