//! Retention rules through the registry: a repository with 30 tags and a keep-10 rule with a
//! pinned pattern ends with the 10 newest and the pinned one; the tag records are gone from the
//! owner's repository (signed deletes; checked with `listRecords` and in the MST `getRepo`
//! exports), and old untagged manifests go too.

mod inproc;

use atcr::appview::retention::Rule;
use inproc::{OCI_MANIFEST, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// The record keys under `prefix` in the test user's repository as `getRepo` exports it.
async fn repo_keys(s: &TestServer, prefix: &str) -> Vec<String> {
    use atcr::atproto::blockstore::{BlockStore as _, MemoryBlockStore};
    use atcr::atproto::car::CarReader;
    use atcr::atproto::commit::Commit;
    use atcr::atproto::mst::Mst;
    let car = s
        .anonymous(
            Method::GET,
            &format!("/xrpc/com.atproto.sync.getRepo?did={}", s.user),
        )
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let store = MemoryBlockStore::default();
    let reader = CarReader::new(&car[..]).unwrap();
    let root = reader.roots()[0];
    reader.load_into(&store).unwrap();
    let commit = Commit::from_cbor(&store.get(&root).unwrap().unwrap()).unwrap();
    Mst::load(&store, commit.unsigned.data)
        .unwrap()
        .entries(&store)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with(prefix))
        .collect()
}

async fn manifest_status(s: &TestServer, reference: &str) -> StatusCode {
    s.req(Method::GET, &format!("/v2/t/app/manifests/{reference}"))
        .header("Accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn keep_the_newest_ten_and_the_pinned_and_old_untagged_go() {
    let s = TestServer::start().await;
    // Three groups of ten tags, each group pushed over a second after the one before, so that
    // "newest" does not depend on order within one second. v1.0.0 is in the oldest group.
    let mut digests = Vec::new();
    for group in 0..3 {
        if group > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        }
        for i in 0..10 {
            let n = group * 10 + i;
            let tag = if n == 0 {
                "v1.0.0".to_owned()
            } else {
                format!("build-{n:02}")
            };
            let (digest, _) = s
                .push_image(
                    "t/app",
                    &tag,
                    &[b"shared layer"],
                    json!({"annotations": {"n": n.to_string()}}),
                )
                .await;
            digests.push((tag, digest));
        }
    }
    assert_eq!(s.records("io.atcr.tag").await.len(), 30);
    let appview = s.app.registry.appview().clone();
    let rule = Rule {
        repositories: "t/*".into(),
        keep_newest: Some(10),
        keep_tags: Some(regex::Regex::new(r"^v\d+\.\d+\.\d+$").unwrap()),
        untagged_older_than: Some(1),
    };
    let rules = [rule];
    // As if an hour had passed: every untagged manifest is old.
    let later = atcr::pds::now_secs() + 3600;

    // A rule for other repositories changes nothing here.
    let elsewhere = Rule {
        repositories: "someone/*".into(),
        ..rules[0].clone()
    };
    assert!(
        appview
            .retention_plan(&[elsewhere], later)
            .unwrap()
            .is_empty()
    );

    let plan = appview.retention_plan(&rules, later).unwrap();
    assert_eq!(plan.len(), 1);
    assert_eq!(plan[0].name, "t/app");
    assert_eq!(plan[0].tags.len(), 19);
    assert_eq!(plan[0].manifests.len(), 19);
    // The plan alone removes nothing.
    assert_eq!(s.records("io.atcr.tag").await.len(), 30);

    let done = appview.apply_retention(&rules, later).await.unwrap();
    assert_eq!(done, plan);

    let kept: Vec<&str> = digests
        .iter()
        .filter(|(tag, _)| tag == "v1.0.0" || tag >= &"build-20".to_owned())
        .map(|(tag, _)| tag.as_str())
        .collect();
    assert_eq!(kept.len(), 11);
    let tag_records = s.records("io.atcr.tag").await;
    let mut left: Vec<String> = tag_records
        .iter()
        .map(|r| r["value"]["tag"].as_str().unwrap().to_owned())
        .collect();
    left.sort();
    let mut expected: Vec<String> = kept.iter().map(|t| (*t).to_owned()).collect();
    expected.sort();
    assert_eq!(left, expected);
    assert_eq!(s.records("io.atcr.manifest").await.len(), 11);
    // The repository itself (`getRepo`, its MST) holds exactly the kept tag records.
    assert_eq!(repo_keys(&s, "io.atcr.tag/").await.len(), 11);
    assert_eq!(repo_keys(&s, "io.atcr.manifest/").await.len(), 11);
    for (tag, digest) in &digests {
        let stays = kept.contains(&tag.as_str());
        let want = if stays {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        assert_eq!(manifest_status(&s, tag).await, want, "{tag}");
        assert_eq!(manifest_status(&s, digest.as_str()).await, want, "{digest}");
    }
    // Applying again removes nothing more.
    assert!(
        appview
            .apply_retention(&rules, later)
            .await
            .unwrap()
            .is_empty()
    );
}
