//! The blobs of each repository: their metadata, and which commits referenced which.

use super::{BlobMeta, COMMITS, CommitRef, MAX, PdsStore, REPO_BLOBS, StoreError};
use crate::atproto::{Cid, Did};

impl PdsStore {
    /// Whether `cid` was uploaded as a blob of `did`'s repository.
    pub fn has_blob(&self, did: &Did, cid: &Cid) -> Result<bool, StoreError> {
        Ok(self.blob_meta(did, cid)?.is_some())
    }

    /// The metadata of a blob uploaded to `did`'s repository.
    pub fn blob_meta(&self, did: &Did, cid: &Cid) -> Result<Option<BlobMeta>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(REPO_BLOBS)?;
        let cid = cid.to_string();
        table
            .get((did.as_str(), cid.as_str()))?
            .map(|v| serde_json::from_slice(v.value()).map_err(StoreError::from))
            .transpose()
    }

    /// Records a blob as uploaded to `did`'s repository.
    pub async fn put_blob_meta(
        &self,
        did: &Did,
        cid: Cid,
        meta: BlobMeta,
    ) -> Result<(), StoreError> {
        let did = did.clone();
        self.write(move |tx| {
            let mut t = tx.open_table(REPO_BLOBS)?;
            let json = serde_json::to_vec(&meta)?;
            let cid = cid.to_string();
            t.insert((did.as_str(), cid.as_str()), json.as_slice())?;
            Ok::<_, StoreError>(())
        })
        .await
    }

    /// Forgets uploads of blobs whose objects are gone: `(DID, CID)` rows of the blob table.
    pub async fn forget_blobs(&self, rows: Vec<(String, Cid)>) -> Result<(), StoreError> {
        self.write(move |tx| {
            let mut t = tx.open_table(REPO_BLOBS)?;
            for (did, cid) in &rows {
                t.remove((did.as_str(), cid.to_string().as_str()))?;
            }
            Ok::<_, StoreError>(())
        })
        .await
    }

    /// Blob CIDs of `did`'s repository in CID order, after `cursor`.
    pub fn list_blobs(
        &self,
        did: &Did,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        use std::ops::Bound::{Excluded, Included};
        let tx = self.db.begin_read()?;
        let table = tx.open_table(REPO_BLOBS)?;
        let d = did.as_str();
        let lo = match cursor {
            Some(c) => Excluded((d, c)),
            None => Included((d, "")),
        };
        let mut out = Vec::new();
        for item in table.range::<(&str, &str)>((lo, Included((d, MAX))))? {
            let (k, _) = item?;
            out.push(k.value().1.to_owned());
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Blobs referenced by records `did` wrote in commits after revision `since`, in CID order,
    /// after `cursor`, at most `limit`.
    pub fn blobs_since(
        &self,
        did: &Did,
        since: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        use std::ops::Bound::{Excluded, Included};
        let tx = self.db.begin_read()?;
        let table = tx.open_table(COMMITS)?;
        let d = did.as_str();
        let mut all = std::collections::BTreeSet::new();
        for item in table.range::<(&str, &str)>((Excluded((d, since)), Included((d, MAX))))? {
            let (_, v) = item?;
            let commit: CommitRef = serde_json::from_slice(v.value())?;
            all.extend(commit.blobs.iter().map(ToString::to_string));
        }
        Ok(all
            .into_iter()
            .filter(|c| cursor.is_none_or(|cur| c.as_str() > cur))
            .take(limit)
            .collect())
    }
}

impl PdsStore {
    /// Which of `digests` (SHA-256, of raw bytes) are blobs some repository uploaded, with
    /// every such upload's repository (DID) and MIME type: objects of the shared blob store that
    /// the PDS accounts for. The table is keyed by (DID, CID): with few repositories and many
    /// rows, each repository is asked for each CID; otherwise the table is read through once.
    #[allow(clippy::type_complexity)]
    pub fn uploaded_blobs_among(
        &self,
        digests: &[crate::blobstore::Digest],
    ) -> Result<
        std::collections::HashMap<crate::blobstore::Digest, Vec<(String, String)>>,
        StoreError,
    > {
        let mut out = std::collections::HashMap::new();
        if digests.is_empty() {
            return Ok(out);
        }
        let wanted: std::collections::HashMap<String, &crate::blobstore::Digest> = digests
            .iter()
            .filter(|d| d.algorithm() == crate::blobstore::Algorithm::Sha256)
            .filter_map(|d| {
                let mut raw = [0u8; 32];
                hex::decode_to_slice(d.hex(), &mut raw).ok()?;
                Some((
                    Cid::from_digest(crate::atproto::cid::RAW, raw).to_string(),
                    d,
                ))
            })
            .collect();
        let tx = self.db.begin_read()?;
        let table = tx.open_table(REPO_BLOBS)?;
        let mut found = |did: &str, cid: &str, meta: &[u8]| -> Result<(), StoreError> {
            if let Some(d) = wanted.get(cid) {
                let meta: BlobMeta = serde_json::from_slice(meta)?;
                out.entry((*d).clone())
                    .or_insert_with(Vec::new)
                    .push((did.to_owned(), meta.mime_type));
            }
            Ok(())
        };
        let owners = blob_owners(&table)?;
        let lookups = (owners.len() as u64).saturating_mul(wanted.len() as u64);
        if lookups < redb::ReadableTableMetadata::len(&table)? {
            for did in &owners {
                for cid in wanted.keys() {
                    if let Some(meta) =
                        redb::ReadableTable::get(&table, (did.as_str(), cid.as_str()))?
                    {
                        found(did, cid, meta.value())?;
                    }
                }
            }
        } else {
            for item in redb::ReadableTable::iter(&table)? {
                let (key, meta) = item?;
                found(key.value().0, key.value().1, meta.value())?;
            }
        }
        Ok(out)
    }
}

/// The DIDs that have rows in the blob table, in order: one range lookup per DID, skipping
/// over its rows.
fn blob_owners(
    table: &impl redb::ReadableTable<(&'static str, &'static str), &'static [u8]>,
) -> Result<Vec<String>, StoreError> {
    let mut owners: Vec<String> = Vec::new();
    loop {
        let next = match owners.last() {
            None => table.first()?,
            Some(last) => table.range((last.as_str(), MAX)..)?.next().transpose()?,
        };
        match next {
            Some((key, _)) => owners.push(key.value().0.to_owned()),
            None => return Ok(owners),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blobstore::{Algorithm, Digest};

    fn meta(mime: &str) -> BlobMeta {
        BlobMeta {
            mime_type: mime.to_owned(),
            size: 1,
            created: 1,
        }
    }

    /// The same answer whichever way the table is read: through per-repository lookups (few
    /// repositories, many rows) or one pass (many repositories per digest asked about).
    #[tokio::test]
    async fn uploads_among_digests_are_found_by_lookup_and_by_scan_alike() {
        let dir = tempfile::tempdir().unwrap();
        let store = PdsStore::open(&dir.path().join("pds.redb")).unwrap();
        let did = |i: usize| format!("did:plc:owner{i}").parse::<Did>().unwrap();
        let digest = |i: usize| Digest::of(Algorithm::Sha256, format!("blob {i}").as_bytes());
        let cid = |i: usize| Cid::for_raw(format!("blob {i}").as_bytes());
        // Three repositories with 40 blobs each; blob 7 is also the second one's, as a layer.
        for owner in 0..3 {
            for i in 0..40 {
                let mime = if owner == 1 {
                    "image/png"
                } else {
                    "text/plain"
                };
                store
                    .put_blob_meta(&did(owner), cid(owner * 100 + i), meta(mime))
                    .await
                    .unwrap();
            }
        }
        store
            .put_blob_meta(
                &did(1),
                cid(7),
                meta("application/vnd.oci.image.manifest.v1+json"),
            )
            .await
            .unwrap();
        let expect = |found: &std::collections::HashMap<Digest, Vec<(String, String)>>| {
            assert_eq!(found.len(), 3, "{found:?}");
            assert_eq!(
                found[&digest(7)],
                vec![
                    ("did:plc:owner0".to_owned(), "text/plain".to_owned()),
                    (
                        "did:plc:owner1".to_owned(),
                        "application/vnd.oci.image.manifest.v1+json".to_owned()
                    )
                ]
            );
            assert_eq!(
                found[&digest(105)],
                vec![("did:plc:owner1".to_owned(), "image/png".to_owned())]
            );
            assert_eq!(
                found[&digest(239)],
                vec![("did:plc:owner2".to_owned(), "text/plain".to_owned())]
            );
        };
        // 4 asked × 3 owners < 121 rows: lookups.
        let few = [digest(7), digest(105), digest(239), digest(999)];
        expect(&store.uploaded_blobs_among(&few).unwrap());
        // 50 asked × 3 owners ≥ 121 rows: one pass.
        let mut many: Vec<Digest> = (1000..1046).map(digest).collect();
        many.extend(few);
        expect(&store.uploaded_blobs_among(&many).unwrap());
        let tx = store.db.begin_read().unwrap();
        let owners = blob_owners(&tx.open_table(REPO_BLOBS).unwrap()).unwrap();
        assert_eq!(
            owners,
            ["did:plc:owner0", "did:plc:owner1", "did:plc:owner2"]
        );
    }
}
