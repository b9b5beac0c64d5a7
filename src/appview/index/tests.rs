use super::*;
use crate::blobstore::{Algorithm, UploadId};

/// A repository key as the index stores it (tests use short ones).
fn k(key: &str) -> RepoKey {
    RepoKey::from_stored(key)
}

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
        summary: None,
    }
}

fn addr(collection: &str, key: String) -> RecordAddr {
    RecordAddr {
        did: "did:plc:test".into(),
        collection: collection.into(),
        rkey: key,
    }
}

fn manifest_addr(repo: &str, digest: &Digest) -> RecordAddr {
    addr(MANIFEST_COLLECTION, format!("{repo}@{}", digest.hex()))
}

fn tag_addr(repo: &str, tag: &str) -> RecordAddr {
    addr(TAG_COLLECTION, format!("{repo}~{tag}"))
}

/// The changes of a commit that writes a manifest record and, optionally, a tag record.
fn put(
    ix: &Index,
    repo: &str,
    digest: &Digest,
    record: ManifestRecord,
    tag: Option<&str>,
    references: &[Digest],
    referrer: Option<serde_json::Value>,
) {
    let mut changes = vec![IndexChange::PutManifest {
        addr: manifest_addr(repo, digest),
        repo: repo.into(),
        digest: digest.clone(),
        record,
        references: references.to_vec(),
        referrer,
        links: Vec::new(),
        quota: None,
    }];
    if let Some(tag) = tag {
        changes.push(IndexChange::PutTag {
            addr: tag_addr(repo, tag),
            repo: repo.into(),
            tag: tag.into(),
            target: TagTarget::Record(manifest_addr(repo, digest)),
        });
    }
    ix.apply(&changes, None).unwrap();
}

fn delete(ix: &Index, addr: RecordAddr) {
    ix.apply(&[IndexChange::DeleteRecord(addr)], None).unwrap();
}

#[test]
fn manifests_tags_and_referrers() {
    let ix = Index::in_memory().unwrap();
    let (m1, m2, layer) = (d("m1"), d("m2"), d("layer"));
    ix.link_blob(&k("a/b"), &layer, 5, None).unwrap();
    assert_eq!(ix.repo_blob(&k("a/b"), &layer).unwrap(), Some(5));
    assert_eq!(ix.repo_blob(&k("other"), &layer).unwrap(), None);
    assert_eq!(ix.blob(&layer).unwrap(), Some(5));

    let refs = std::slice::from_ref(&layer);
    put(&ix, "a/b", &m1, record(None), Some("v1"), refs, None);
    put(&ix, "a/b", &m1, record(None), Some("latest"), refs, None);
    let desc = serde_json::json!({"digest": m2.as_str()});
    put(
        &ix,
        "a/b",
        &m2,
        record(Some(m1.clone())),
        None,
        &[],
        Some(desc.clone()),
    );

    assert_eq!(ix.tag(&k("a/b"), "v1").unwrap(), Some(m1.clone()));
    let (details, more) = ix.tag_details(&k("a/b"), 10).unwrap();
    assert!(!more);
    let shown: Vec<(&str, &Digest, Contents)> = details
        .iter()
        .map(|d| (d.tag.as_str(), &d.digest, d.contents))
        .collect();
    let m1_contents = Contents {
        blobs: 1,
        blob_bytes: 5,
        children: 0,
        referrers: 1,
    };
    assert_eq!(
        shown,
        vec![("latest", &m1, m1_contents), ("v1", &m1, m1_contents)]
    );
    assert_eq!(details[0].record, Some(record(None)));
    assert!(ix.tag_details(&k("a/b"), 1).unwrap().1);
    assert_eq!(
        ix.tags(&k("a/b"), None, 10).unwrap(),
        (vec!["latest".into(), "v1".into()], false)
    );
    assert_eq!(
        ix.tags(&k("a/b"), None, 1).unwrap(),
        (vec!["latest".into()], true)
    );
    assert_eq!(
        ix.tags(&k("a/b"), Some("latest"), 1).unwrap(),
        (vec!["v1".into()], false)
    );
    assert_eq!(ix.referrers(&k("a/b"), &m1).unwrap(), vec![desc]);
    assert_eq!(ix.repos(None, 10).unwrap(), (vec![k("a/b")], false));

    // Deleting the referrer removes it from its subject's list.
    delete(&ix, manifest_addr("a/b", &m2));
    assert!(ix.manifest(&k("a/b"), &m2).unwrap().is_none());
    assert!(ix.referrers(&k("a/b"), &m1).unwrap().is_empty());
    // Deleting by digest removes every tag pointing at it; a second delete changes nothing.
    delete(&ix, manifest_addr("a/b", &m1));
    delete(&ix, manifest_addr("a/b", &m1));
    assert!(ix.manifest(&k("a/b"), &m1).unwrap().is_none());
    assert_eq!(ix.tags(&k("a/b"), None, 10).unwrap(), (vec![], false));
    // A tag whose manifest record is gone points nowhere and is left out.
    put(&ix, "a/b", &m2, record(None), None, &[], None);
    ix.apply(
        &[IndexChange::PutTag {
            addr: tag_addr("a/b", "dangling"),
            repo: "a/b".into(),
            tag: "dangling".into(),
            target: TagTarget::Record(manifest_addr("a/b", &m1)),
        }],
        Some(7),
    )
    .unwrap();
    assert_eq!(ix.tag(&k("a/b"), "dangling").unwrap(), None);
    assert_eq!(ix.cursor().unwrap(), 7);
    // The audit lists what storage must hold: the uploaded blob and the remaining manifest.
    let audit = ix.audit().unwrap();
    assert!(audit.dangling_tags.is_empty());
    let mut expected = vec![(layer.to_string(), 5), (m2.to_string(), 10)];
    expected.sort();
    assert_eq!(audit.stored, expected);
}

#[test]
fn tag_deletion_and_prefix_isolation() {
    let ix = Index::in_memory().unwrap();
    let m = d("m");
    for repo in ["did:web:a", "did:web:a/b", "did:web:ab"] {
        put(&ix, repo, &m, record(None), Some("t"), &[], None);
    }
    assert_eq!(
        ix.repos_of(&"did:web:a".parse().unwrap(), 10).unwrap(),
        (vec![k("did:web:a/b")], false)
    );
    assert_eq!(
        ix.repos_of(&"did:web:b".parse().unwrap(), 10).unwrap(),
        (vec![], false)
    );
    assert_eq!(
        ix.tags(&k("did:web:a"), None, 10).unwrap().0,
        vec!["t".to_string()]
    );
    delete(&ix, tag_addr("did:web:a", "t"));
    assert_eq!(ix.tag(&k("did:web:a"), "t").unwrap(), None);
    assert_eq!(
        ix.tags(&k("did:web:a/b"), None, 10).unwrap().0,
        vec!["t".to_string()]
    );
    assert!(ix.manifest(&k("did:web:a"), &m).unwrap().is_some());
    assert_eq!(
        ix.repos(Some(&k("did:web:a")), 1).unwrap(),
        (vec![k("did:web:a/b")], true)
    );
}

/// Records another writer keyed by digest (`sha256:<hex>`, as ATCR does) next to a push's: the
/// key is a name, the record's `digest` what it indexes, and a manifest stays while any record
/// indexes it.
#[test]
fn records_keyed_by_digest() {
    let ix = Index::in_memory().unwrap();
    let (x, y) = (d("x"), d("y"));
    let by_digest = |digest: &Digest| addr(MANIFEST_COLLECTION, digest.to_string());
    let manifest = |at: RecordAddr, digest: &Digest| IndexChange::PutManifest {
        addr: at,
        repo: "a/b".into(),
        digest: digest.clone(),
        record: record(None),
        references: Vec::new(),
        referrer: None,
        links: Vec::new(),
        quota: None,
    };
    // A push's record and a tag on it, then another record of the same digest.
    put(&ix, "a/b", &x, record(None), Some("v1"), &[], None);
    ix.apply(&[manifest(by_digest(&x), &x)], None).unwrap();
    // Either record going leaves the manifest (and its tag) while the other stays.
    delete(&ix, by_digest(&x));
    assert!(ix.manifest(&k("a/b"), &x).unwrap().is_some());
    assert_eq!(ix.tag(&k("a/b"), "v1").unwrap(), Some(x.clone()));
    ix.apply(&[manifest(by_digest(&x), &x)], None).unwrap();
    delete(&ix, manifest_addr("a/b", &x));
    assert!(ix.manifest(&k("a/b"), &x).unwrap().is_some());
    delete(&ix, by_digest(&x));
    assert!(ix.manifest(&k("a/b"), &x).unwrap().is_none());
    assert_eq!(ix.tag(&k("a/b"), "v1").unwrap(), None);
    // A key naming one digest over a record of another indexes the record's digest only; when
    // it is rewritten to yet another, the first goes unless another record holds it.
    ix.apply(&[manifest(by_digest(&x), &y)], None).unwrap();
    assert!(ix.manifest(&k("a/b"), &y).unwrap().is_some());
    assert!(ix.manifest(&k("a/b"), &x).unwrap().is_none());
    put(&ix, "a/b", &y, record(None), None, &[], None);
    ix.apply(&[manifest(by_digest(&x), &x)], None).unwrap();
    assert!(ix.manifest(&k("a/b"), &y).unwrap().is_some());
    assert!(ix.manifest(&k("a/b"), &x).unwrap().is_some());
    delete(&ix, manifest_addr("a/b", &y));
    assert!(ix.manifest(&k("a/b"), &y).unwrap().is_none());
}

#[test]
fn upload_sessions() {
    let ix = Index::in_memory().unwrap();
    let id = UploadId::random();
    let s = UploadSession {
        repo: k("r"),
        parts: 1,
        size: 3,
        started: 1,
        updated: 2,
    };
    ix.put_upload(id, &s).unwrap();
    assert_eq!(ix.upload(id).unwrap(), Some(s.clone()));
    assert_eq!(ix.uploads().unwrap(), vec![(id, s)]);
    ix.link_blob(&k("r"), &d("x"), 3, Some(id)).unwrap();
    assert_eq!(ix.upload(id).unwrap(), None);
}

#[test]
fn survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.redb");
    let m = d("m");
    {
        let ix = Index::open(&path).unwrap();
        put(&ix, "r", &m, record(None), Some("t"), &[], None);
    }
    let ix = Index::open(&path).unwrap();
    assert_eq!(ix.tag(&k("r"), "t").unwrap(), Some(m));
}

#[test]
fn events_that_change_nothing_move_the_cursor_without_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.redb");
    {
        let ix = Index::open(&path).unwrap();
        ix.apply_events(&[(1, vec![]), (2, vec![])]).unwrap();
        assert_eq!(ix.cursor().unwrap(), 2);
    }
    {
        // Not synced: the next start reads those events again (they change nothing).
        let ix = Index::open(&path).unwrap();
        assert_eq!(ix.cursor().unwrap(), 0);
        ix.apply_events(&[(1, vec![]), (2, vec![]), (3, vec![])])
            .unwrap();
        ix.sync().unwrap();
    }
    let ix = Index::open(&path).unwrap();
    assert_eq!(ix.cursor().unwrap(), 3);
    // A batch with changes writes the cursor with them; a rebuild's cursor replaces one kept
    // in memory.
    ix.apply_events(&[(4, vec![])]).unwrap();
    ix.clear_derived(2).unwrap();
    assert_eq!(ix.cursor().unwrap(), 2);
}

#[test]
fn applied_events_become_durable_only_when_the_indexer_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.redb");
    let crashed = dir.path().join("crashed.redb");
    let change = || vec![IndexChange::DeleteRecord(tag_addr("r", "t"))];
    let ix = Index::open(&path).unwrap();
    assert!(!ix.sync_due());
    std::thread::sleep(DURABLE_EVERY);
    assert!(!ix.sync_due(), "nothing applied: no sync due");
    // However long since the last sync, applying never syncs by itself: the request waiting
    // for these events is answered first, the indexer syncs after.
    ix.apply_events(&[(1, change())]).unwrap();
    assert!(ix.sync_due());
    // The file as a crash would leave it (a clean close makes everything durable).
    std::fs::copy(&path, &crashed).unwrap();
    assert_eq!(Index::open(&crashed).unwrap().cursor().unwrap(), 0);
    ix.sync().unwrap();
    assert!(!ix.sync_due());
    std::fs::copy(&path, &crashed).unwrap();
    assert_eq!(Index::open(&crashed).unwrap().cursor().unwrap(), 1);
}

#[test]
fn a_damaged_index_is_moved_aside_and_started_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.redb");
    {
        let ix = Index::open(&path).unwrap();
        let digest = d("m");
        put(
            &ix,
            "alice/app",
            &digest,
            record(None),
            Some("v1"),
            &[],
            None,
        );
    }
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len / 2).unwrap();
    drop(file);
    assert!(
        Index::open(&path).is_err(),
        "a cut index.redb does not open"
    );

    let (ix, aside) = Index::open_or_replace(&path).unwrap();
    let aside = aside.expect("moved aside");
    assert!(
        aside
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("index.redb.damaged-"),
        "{aside:?}"
    );
    assert_eq!(std::fs::metadata(&aside).unwrap().len(), len / 2);
    assert_eq!(ix.stats().unwrap().manifests, 0, "an empty index");
    drop(ix);
    let (_, aside) = Index::open_or_replace(&path).unwrap();
    assert!(aside.is_none(), "a sound index is opened as it is");

    // In use by another holder: an error, nothing moved.
    let held = Index::open(&path).unwrap();
    assert!(Index::open_or_replace(&path).is_err());
    drop(held);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

/// Every table's name and rows, as a stopped node's file holds them.
fn table_rows(path: &std::path::Path) -> Vec<(String, u64)> {
    use redb::{ReadableDatabase as _, ReadableTableMetadata as _, TableHandle as _};
    let db = Database::open(path).unwrap();
    let tx = db.begin_read().unwrap();
    let mut out: Vec<(String, u64)> = tx
        .list_tables()
        .unwrap()
        .map(|t| {
            let name = t.name().to_owned();
            (name, tx.open_untyped_table(t).unwrap().len().unwrap())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn compaction_rewrites_every_table_and_keeps_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.redb");
    let (m1, m2, layer) = (d("m1"), d("m2"), d("layer"));
    let id = UploadId::random();
    {
        let ix = Index::open(&path).unwrap();
        ix.link_blob(&k("did:plc:a/app"), &layer, 5, None).unwrap();
        ix.link_held_blob(
            &k("did:plc:a/app"),
            &d("held"),
            6,
            None,
            &"did:web:nas.lan".parse().unwrap(),
        )
        .unwrap();
        for (i, repo) in ["did:plc:a/app", "did:plc:b/app", "did:plc:a/tools"]
            .into_iter()
            .enumerate()
        {
            put(
                &ix,
                repo,
                &m1,
                record(None),
                Some("v1"),
                std::slice::from_ref(&layer),
                None,
            );
            let change = IndexChange::PutStar {
                addr: addr(STAR_COLLECTION, format!("star{i}")),
                repo: repo.into(),
            };
            ix.apply(&[change], None).unwrap();
        }
        let desc = serde_json::json!({"digest": m2.as_str()});
        put(
            &ix,
            "did:plc:a/app",
            &m2,
            record(Some(m1.clone())),
            Some("sig"),
            &[],
            Some(desc),
        );
        let page = IndexChange::PutPage {
            addr: addr(PAGE_COLLECTION, "self".into()),
            repo: "did:plc:a/app".into(),
            text: "# app".into(),
        };
        ix.apply(&[page], Some(9)).unwrap();
        let session = UploadSession {
            repo: k("did:plc:a/app"),
            parts: 0,
            size: 0,
            started: 1,
            updated: 1,
        };
        ix.put_upload(id, &session).unwrap();
        ix.set_gc_last_run(3).unwrap();
    }
    let rows = table_rows(&path);
    assert!(rows.contains(&("tags".to_owned(), 4)), "{rows:?}");
    // A copy left by an interrupted compaction is replaced.
    std::fs::write(dir.path().join("index.redb.compacting"), b"half").unwrap();

    Index::compact(&path).unwrap();
    let mut expected = rows.clone();
    for (name, n) in &mut expected {
        if name == "gc_meta" {
            *n += 1; // the size the next online compaction is measured against
        }
    }
    assert_eq!(table_rows(&path), expected, "every table, every row");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    let ix = Index::open(&path).unwrap();
    assert_eq!(ix.cursor().unwrap(), 9);
    assert_eq!(
        ix.tag(&k("did:plc:a/app"), "sig").unwrap(),
        Some(m2.clone())
    );
    assert_eq!(ix.tag(&k("did:plc:b/app"), "v1").unwrap(), Some(m1.clone()));
    assert_eq!(ix.repo_blob(&k("did:plc:a/app"), &layer).unwrap(), Some(5));
    assert_eq!(ix.referrers(&k("did:plc:a/app"), &m1).unwrap().len(), 1);
    assert!(ix.upload(id).unwrap().is_some());
    assert_eq!(ix.gc_last_run().unwrap(), Some(3));
    assert_eq!(ix.most_starred(10).unwrap().len(), 3);
    let (summary, page) = ix.repo_summary(&k("did:plc:a/app")).unwrap();
    assert_eq!((summary.stars, page.as_deref()), (1, Some("# app")));
    // Repository ids stay what they were: a new repository of an owner takes a new one.
    put(
        &ix,
        "did:plc:a/new",
        &m1,
        record(None),
        Some("v1"),
        &[],
        None,
    );
    assert_eq!(ix.tag(&k("did:plc:a/new"), "v1").unwrap(), Some(m1));
    assert_eq!(ix.tag(&k("did:plc:a/app"), "v1").unwrap(), Some(d("m1")));
}

mod online;
