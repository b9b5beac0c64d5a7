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
    /// the PDS accounts for. One pass over the blob table.
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
        for item in redb::ReadableTable::iter(&tx.open_table(REPO_BLOBS)?)? {
            let (key, meta) = item?;
            if let Some(d) = wanted.get(key.value().1) {
                let meta: BlobMeta = serde_json::from_slice(meta.value())?;
                out.entry((*d).clone())
                    .or_insert_with(Vec::new)
                    .push((key.value().0.to_owned(), meta.mime_type));
            }
        }
        Ok(out)
    }
}
