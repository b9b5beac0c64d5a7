use super::*;
use crate::blobstore::Algorithm;

fn d(s: &str) -> Digest {
    Digest::of(Algorithm::Sha256, s.as_bytes())
}

fn record(subject: Option<Digest>) -> ManifestRecord {
    ManifestRecord {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        size: 10,
        artifact_type: None,
        subject,
        created: 1,
    }
}

#[test]
fn manifests_tags_and_referrers() {
    let ix = Index::in_memory().unwrap();
    let (m1, m2, layer) = (d("m1"), d("m2"), d("layer"));
    ix.link_blob("a/b", &layer, 5, None).unwrap();
    assert_eq!(ix.repo_blob("a/b", &layer).unwrap(), Some(5));
    assert_eq!(ix.repo_blob("other", &layer).unwrap(), None);
    assert_eq!(ix.blob(&layer).unwrap(), Some(5));

    let r1 = record(None);
    ix.put_manifest(&NewManifest {
        repo: "a/b",
        digest: &m1,
        record: &r1,
        tag: Some("v1"),
        references: std::slice::from_ref(&layer),
        referrer: None,
    })
    .unwrap();
    ix.put_manifest(&NewManifest {
        repo: "a/b",
        digest: &m1,
        record: &r1,
        tag: Some("latest"),
        references: std::slice::from_ref(&layer),
        referrer: None,
    })
    .unwrap();
    let r2 = record(Some(m1.clone()));
    let desc = serde_json::json!({"digest": m2.as_str()});
    ix.put_manifest(&NewManifest {
        repo: "a/b",
        digest: &m2,
        record: &r2,
        tag: None,
        references: &[],
        referrer: Some(&desc),
    })
    .unwrap();

    assert_eq!(ix.tag("a/b", "v1").unwrap(), Some(m1.clone()));
    assert_eq!(
        ix.tags("a/b", None, 10).unwrap(),
        (vec!["latest".into(), "v1".into()], false)
    );
    assert_eq!(
        ix.tags("a/b", None, 1).unwrap(),
        (vec!["latest".into()], true)
    );
    assert_eq!(
        ix.tags("a/b", Some("latest"), 1).unwrap(),
        (vec!["v1".into()], false)
    );
    assert_eq!(ix.referrers("a/b", &m1).unwrap(), vec![desc]);
    assert_eq!(ix.repos(None, 10).unwrap(), (vec!["a/b".into()], false));

    // Deleting the referrer removes it from its subject's list.
    assert!(ix.delete_manifest("a/b", &m2).unwrap());
    assert!(ix.referrers("a/b", &m1).unwrap().is_empty());
    // Deleting by digest removes every tag pointing at it.
    assert!(ix.delete_manifest("a/b", &m1).unwrap());
    assert!(!ix.delete_manifest("a/b", &m1).unwrap());
    assert_eq!(ix.tags("a/b", None, 10).unwrap(), (vec![], false));
}

#[test]
fn tag_deletion_and_prefix_isolation() {
    let ix = Index::in_memory().unwrap();
    let m = d("m");
    for repo in ["a", "a/b", "ab"] {
        ix.put_manifest(&NewManifest {
            repo,
            digest: &m,
            record: &record(None),
            tag: Some("t"),
            references: &[],
            referrer: None,
        })
        .unwrap();
    }
    assert_eq!(ix.tags("a", None, 10).unwrap().0, vec!["t".to_string()]);
    assert!(ix.delete_tag("a", "t").unwrap());
    assert!(!ix.delete_tag("a", "t").unwrap());
    assert_eq!(ix.tags("a/b", None, 10).unwrap().0, vec!["t".to_string()]);
    assert!(ix.manifest("a", &m).unwrap().is_some());
    assert_eq!(ix.repos(Some("a"), 1).unwrap(), (vec!["a/b".into()], true));
}

#[test]
fn upload_sessions() {
    let ix = Index::in_memory().unwrap();
    let id = UploadId::random();
    let s = UploadSession {
        repo: "r".into(),
        parts: 1,
        size: 3,
        started: 1,
        updated: 2,
    };
    ix.put_upload(id, &s).unwrap();
    assert_eq!(ix.upload(id).unwrap(), Some(s.clone()));
    assert_eq!(ix.uploads().unwrap(), vec![(id, s)]);
    ix.link_blob("r", &d("x"), 3, Some(id)).unwrap();
    assert_eq!(ix.upload(id).unwrap(), None);
}

#[test]
fn survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.redb");
    let m = d("m");
    {
        let ix = Index::open(&path).unwrap();
        ix.put_manifest(&NewManifest {
            repo: "r",
            digest: &m,
            record: &record(None),
            tag: Some("t"),
            references: &[],
            referrer: None,
        })
        .unwrap();
    }
    let ix = Index::open(&path).unwrap();
    assert_eq!(ix.tag("r", "t").unwrap(), Some(m));
}
