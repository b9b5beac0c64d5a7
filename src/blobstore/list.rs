//! Listing what storage holds under `blobs/`, for the collector's look for objects the index
//! does not know (left by a crash between writing an object and recording it).

use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::TryStreamExt;
use opendal::ErrorKind;

use super::fsck::digest_of_key;
use super::{BlobError, BlobStore, Digest};

/// The objects under `blobs/`, a batch at a time (see [`BlobStore::list_objects`]).
pub struct ObjectLister {
    inner: Option<opendal::Lister>,
}

impl ObjectLister {
    /// Up to `n` more digests of stored objects (keys that are not `blobs/<alg>/<xx>/<hex>`
    /// are skipped); empty at the end.
    pub async fn next_batch(&mut self, n: usize) -> Result<Vec<Digest>, BlobError> {
        let mut out = Vec::new();
        let Some(lister) = self.inner.as_mut() else {
            return Ok(out);
        };
        while out.len() < n {
            let Some(entry) = lister.try_next().await? else {
                self.inner = None;
                break;
            };
            if let Some(digest) = digest_of_key(entry.path()) {
                out.push(digest);
            }
        }
        Ok(out)
    }
}

impl BlobStore {
    /// Every stored object's digest, in no promised order.
    pub async fn list_objects(&self) -> Result<ObjectLister, BlobError> {
        match self.op.lister_with("blobs/").recursive(true).await {
            Ok(lister) => Ok(ObjectLister {
                inner: Some(lister),
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(ObjectLister { inner: None }),
            Err(e) => Err(e.into()),
        }
    }

    /// A stored object's size and when it was last written (unix seconds, where the backend
    /// says), or `None` when there is none.
    pub async fn stat_modified(
        &self,
        digest: &Digest,
    ) -> Result<Option<(u64, Option<u64>)>, BlobError> {
        match self.op.stat(&Self::blob_key(digest)).await {
            Ok(meta) => {
                let modified = meta.last_modified().and_then(|t| {
                    SystemTime::from(t)
                        .duration_since(UNIX_EPOCH)
                        .ok()
                        .map(|d| d.as_secs())
                });
                Ok(Some((meta.content_length(), modified)))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
