//! Taking up an index file written by an older version. What records put in is thrown away and
//! rebuilt: the indexer starts over from the first event (replaying the event log or, where it
//! was pruned, rebuilding from the repositories). What is not derived from records — upload
//! sessions, the blobs storage holds and the ones uploaded into each repository, their
//! last-linked times, the blobs other holds keep — is carried over into this version's keys.

use redb::{ReadableTable, TableDefinition, TableHandle};

use super::journal::WriteTransaction;

use super::codec::FORMAT;
use super::{IndexError, digest_key, gc};
use crate::blobstore::Digest;

/// The tables kept across an upgrade as formats 1 and 2 keyed them (repository names and
/// digests as strings).
mod v2 {
    use redb::TableDefinition;

    pub(super) const REPO_BLOBS: TableDefinition<(&str, &str), u64> =
        TableDefinition::new("repo_blobs");
    pub(super) const BLOBS: TableDefinition<&str, u64> = TableDefinition::new("blobs");
    pub(super) const TOUCHED: TableDefinition<&str, u64> = TableDefinition::new("blob_touched");
    pub(super) const MANIFEST_OBJECTS: TableDefinition<&str, u64> =
        TableDefinition::new("manifest_objects");
    pub(super) const HELD: TableDefinition<&str, &str> = TableDefinition::new("held_elsewhere");
}

/// Tables whose rows an upgrade keeps as they are (their keys did not change).
const KEPT_AS_THEY_ARE: &[&str] = &["meta", "uploads", "gc_meta"];

/// Brings an index of another format than [`FORMAT`] to it, in `tx`, before any table is
/// opened with this version's types; returns whether the file held an older index (whose
/// derived part is then to be rebuilt: the cursor is 0). A new file only gets its format.
pub(super) fn upgrade_format(tx: &WriteTransaction) -> Result<bool, IndexError> {
    let format = tx
        .open_table(super::derived::META)?
        .get("format")?
        .map(|v| v.value());
    if format == Some(FORMAT) {
        return Ok(false);
    }
    let older = tx
        .unrecorded()
        .list_tables()?
        .any(|t| !KEPT_AS_THEY_ARE.contains(&t.name()));
    if older {
        let kept = take_kept(tx)?;
        let others: Vec<_> = tx
            .unrecorded()
            .list_tables()?
            .filter(|t| !KEPT_AS_THEY_ARE.contains(&t.name()))
            .collect();
        for table in others {
            tx.unrecorded().delete_table(table)?;
        }
        kept.put(tx)?;
        super::derived::clear_derived_in(tx, 0)?;
    }
    tx.open_table(super::derived::META)?
        .insert("format", FORMAT)?;
    Ok(older)
}

/// What an upgrade carries over, read out of the old tables.
#[derive(Default)]
struct Kept {
    blobs: Vec<(Digest, u64)>,
    touched: Vec<(Digest, u64)>,
    manifest_objects: Vec<(Digest, u64)>,
    held: Vec<(Digest, String)>,
    repo_blobs: Vec<(String, Digest, u64)>,
}

/// The rows of an old table of sizes or times by digest; a key that is not a digest (never
/// written) is dropped.
fn number_rows(
    tx: &WriteTransaction,
    table: TableDefinition<'static, &'static str, u64>,
) -> Result<Vec<(Digest, u64)>, IndexError> {
    let mut out = Vec::new();
    for row in tx.open_table(table)?.iter()? {
        let (k, v) = row?;
        if let Ok(d) = k.value().parse() {
            out.push((d, v.value()));
        }
    }
    Ok(out)
}

fn take_kept(tx: &WriteTransaction) -> Result<Kept, IndexError> {
    let mut kept = Kept {
        blobs: number_rows(tx, v2::BLOBS)?,
        touched: number_rows(tx, v2::TOUCHED)?,
        manifest_objects: number_rows(tx, v2::MANIFEST_OBJECTS)?,
        ..Kept::default()
    };
    for row in tx.open_table(v2::HELD)?.iter()? {
        let (k, hold) = row?;
        if let Ok(d) = k.value().parse() {
            kept.held.push((d, hold.value().to_owned()));
        }
    }
    for row in tx.open_table(v2::REPO_BLOBS)?.iter()? {
        let (k, size) = row?;
        let (repo, digest) = k.value();
        if let Ok(d) = digest.parse() {
            kept.repo_blobs.push((repo.to_owned(), d, size.value()));
        }
    }
    Ok(kept)
}

impl Kept {
    /// Writes the rows into this version's tables (the old ones deleted).
    fn put(self, tx: &WriteTransaction) -> Result<(), IndexError> {
        let put_numbers = |table: TableDefinition<'static, &'static [u8], u64>,
                           rows: Vec<(Digest, u64)>| {
            let mut t = tx.open_table(table)?;
            for (d, n) in rows {
                t.insert(digest_key(&d).as_slice(), n)?;
            }
            Ok::<_, IndexError>(())
        };
        put_numbers(super::BLOBS, self.blobs)?;
        put_numbers(gc::TOUCHED, self.touched)?;
        put_numbers(gc::MANIFEST_OBJECTS, self.manifest_objects)?;
        let mut held = tx.open_table(super::HELD)?;
        for (d, hold) in self.held {
            held.insert(digest_key(&d).as_slice(), hold.as_str())?;
        }
        drop(held);
        for (repo, d, size) in self.repo_blobs {
            let id = super::ids::repo_id(tx, &repo)?;
            tx.open_table(super::REPO_BLOBS)?
                .insert((id, digest_key(&d).as_slice()), size)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use redb::{Database, TableDefinition};

    use super::v2;
    use crate::appview::index::{
        Index, IndexChange, MANIFEST_COLLECTION, ManifestRecord, RecordAddr, RepoKey,
        TAG_COLLECTION, TagTarget, UploadSession,
    };
    use crate::blobstore::{Algorithm, Digest, UploadId};

    /// Derived tables as format 2 keyed them.
    const V2_TAGS: TableDefinition<(&str, &str), &str> = TableDefinition::new("tags");
    const V2_MANIFESTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("manifests");
    const V2_RECORDS: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("records");
    const V2_REPOS: TableDefinition<&str, u64> = TableDefinition::new("repos");
    const V2_STARS: TableDefinition<(&str, &str), &str> = TableDefinition::new("stars");
    const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
    const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");

    const REPO: &str = "did:plc:alice/app";

    fn d(s: &str) -> Digest {
        Digest::of(Algorithm::Sha256, s.as_bytes())
    }

    fn record() -> ManifestRecord {
        ManifestRecord {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 10,
            artifact_type: None,
            subject: None,
            created: 1,
            summary: None,
        }
    }

    fn addr(collection: &str, rkey: &str) -> RecordAddr {
        RecordAddr {
            did: "did:plc:alice".into(),
            collection: collection.into(),
            rkey: rkey.into(),
        }
    }

    /// Writes what a format-2 node left: derived rows under string keys, blobs linked and
    /// held elsewhere, an upload session, the cursor at 7.
    fn write_v2(path: &std::path::Path, id: UploadId) {
        let (m, layer, held) = (d("m"), d("layer"), d("held"));
        let db = Database::create(path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut meta = tx.open_table(META).unwrap();
            meta.insert("format", 2).unwrap();
            meta.insert("cursor", 7).unwrap();
            tx.open_table(V2_REPOS).unwrap().insert(REPO, 1).unwrap();
            tx.open_table(V2_MANIFESTS)
                .unwrap()
                .insert((REPO, m.as_str()), record().encode().as_slice())
                .unwrap();
            tx.open_table(V2_TAGS)
                .unwrap()
                .insert((REPO, "v1"), m.as_str())
                .unwrap();
            tx.open_table(V2_RECORDS)
                .unwrap()
                .insert(("did:plc:alice", TAG_COLLECTION, "t"), &[2u8][..])
                .unwrap();
            tx.open_table(V2_STARS)
                .unwrap()
                .insert(("did:plc:bob", "s"), REPO)
                .unwrap();
            let mut blobs = tx.open_table(v2::BLOBS).unwrap();
            blobs.insert(layer.as_str(), 5).unwrap();
            blobs.insert(held.as_str(), 6).unwrap();
            blobs.insert("not a digest", 6).unwrap();
            let mut touched = tx.open_table(v2::TOUCHED).unwrap();
            touched.insert(layer.as_str(), 100).unwrap();
            tx.open_table(v2::MANIFEST_OBJECTS)
                .unwrap()
                .insert(m.as_str(), 10)
                .unwrap();
            tx.open_table(v2::HELD)
                .unwrap()
                .insert(held.as_str(), "did:web:nas.lan")
                .unwrap();
            let mut repo_blobs = tx.open_table(v2::REPO_BLOBS).unwrap();
            repo_blobs.insert((REPO, layer.as_str()), 5).unwrap();
            repo_blobs.insert((REPO, held.as_str()), 6).unwrap();
            let session = UploadSession {
                repo: RepoKey::from_stored(REPO),
                parts: 0,
                size: 0,
                started: 1,
                updated: 1,
            };
            tx.open_table(UPLOADS)
                .unwrap()
                .insert(
                    id.to_string().as_str(),
                    serde_json::to_vec(&session).unwrap().as_slice(),
                )
                .unwrap();
        }
        tx.commit().unwrap();
    }

    #[test]
    fn an_index_of_an_older_format_is_rebuilt_keeping_what_records_do_not_say() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        let id = UploadId::random();
        write_v2(&path, id);
        let repo = RepoKey::from_stored(REPO);
        let (m, layer, held) = (d("m"), d("layer"), d("held"));

        let ix = Index::open(&path).unwrap();
        assert_eq!(ix.cursor().unwrap(), 0, "the events are applied again");
        assert_eq!(ix.tag(&repo, "v1").unwrap(), None);
        assert_eq!(ix.manifest(&repo, &m).unwrap(), None);
        assert_eq!(ix.stats().unwrap().repositories, 0);
        assert!(ix.upload(id).unwrap().is_some(), "upload sessions stay");
        assert_eq!(ix.repo_blob(&repo, &layer).unwrap(), Some(5));
        assert_eq!(ix.repo_blob(&repo, &held).unwrap(), Some(6));
        assert_eq!(ix.blob(&layer).unwrap(), Some(5));
        assert_eq!(ix.manifest_object(&m).unwrap(), Some(10));
        assert_eq!(
            ix.held_at(&held).unwrap().map(|h| h.as_str().to_owned()),
            Some("did:web:nas.lan".to_owned())
        );
        assert_eq!(
            ix.stats().unwrap().blobs,
            2,
            "a key that was no digest is dropped"
        );
        let marked = ix.gc_mark(u64::MAX / 2, 0).unwrap();
        let mut untimed = marked.untimed.clone();
        untimed.sort();
        let mut expected = vec![held.clone(), m.clone()];
        expected.sort();
        assert_eq!(
            untimed, expected,
            "the held blob and the manifest had no time"
        );
        assert!(
            marked
                .candidates
                .iter()
                .any(|c| c.digest == layer && c.touched == 100)
        );

        // The rebuild puts the records in again; the next open leaves the index alone.
        let changes = vec![
            IndexChange::PutManifest {
                addr: addr(MANIFEST_COLLECTION, "m"),
                repo: REPO.into(),
                digest: m.clone(),
                record: record(),
                references: vec![layer.clone()],
                referrer: None,
                links: Vec::new(),
                quota: None,
            },
            IndexChange::PutTag {
                addr: addr(TAG_COLLECTION, "t"),
                repo: REPO.into(),
                tag: "v1".into(),
                target: TagTarget::Record(addr(MANIFEST_COLLECTION, "m")),
            },
        ];
        ix.apply(&changes, Some(8)).unwrap();
        drop(ix);
        let ix = Index::open(&path).unwrap();
        assert_eq!(ix.cursor().unwrap(), 8);
        assert_eq!(ix.tag(&repo, "v1").unwrap(), Some(m.clone()));
        assert_eq!(ix.manifest(&repo, &m).unwrap(), Some(record()));
        assert!(ix.blob_is_used(&layer).unwrap());
        assert!(ix.upload(id).unwrap().is_some());
    }

    #[test]
    fn a_new_file_is_not_an_older_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        let ix = Index::open(&path).unwrap();
        ix.apply_events(&[(3, vec![])]).unwrap();
        ix.sync().unwrap();
        drop(ix);
        assert_eq!(Index::open(&path).unwrap().cursor().unwrap(), 3);
    }
}
