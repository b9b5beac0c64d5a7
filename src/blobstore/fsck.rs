//! `atcr fsck`: every stored object hashed again against the digest its key names. A byte
//! changed on disk (bit rot, a bad sector, a hand edit) keeps the object's size, so neither
//! `stat` nor `atcr doctor` notices it, and pulls would be served the damaged bytes.

use futures_util::{StreamExt, TryStreamExt};
use opendal::ErrorKind;

use super::{BlobError, BlobStore, Digest, Digester};

/// Where damaged objects are moved by [`BlobStore::fsck`] with `quarantine`.
pub const QUARANTINE: &str = "quarantine/";

/// What [`BlobStore::fsck`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FsckReport {
    /// Objects whose bytes hash to the digest they are stored under.
    pub good: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Objects whose bytes do not: the digest they are stored under, and what they hash to.
    pub bad: Vec<BadObject>,
    /// Keys under `blobs/` that do not name a digest (left alone).
    pub foreign: Vec<String>,
}

/// A stored object whose bytes do not match its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadObject {
    pub digest: Digest,
    pub actual: Digest,
    pub size: u64,
    /// Where it was moved, with `quarantine`.
    pub quarantined: Option<String>,
}

impl BlobStore {
    /// Hashes every object under `blobs/` again. With `quarantine`, an object that does not
    /// match its digest is moved to `quarantine/<algorithm>/<hex>` (copied then deleted where
    /// the backend cannot rename), so it is no longer served: a pull fails rather than getting
    /// damaged bytes, and `atcr doctor` lists it as missing. Only reads otherwise, so it may run
    /// beside the daemon.
    pub async fn fsck(&self, quarantine: bool) -> Result<FsckReport, BlobError> {
        let mut report = FsckReport::default();
        let mut lister = match self.op.lister_with("blobs/").recursive(true).await {
            Ok(lister) => lister,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(report),
            Err(e) => return Err(e.into()),
        };
        while let Some(entry) = lister.try_next().await? {
            let key = entry.path();
            if key.ends_with('/') {
                continue;
            }
            let Some(digest) = digest_of_key(key) else {
                report.foreign.push(key.to_owned());
                continue;
            };
            let mut hasher = Digester::new(digest.algorithm());
            let mut size = 0u64;
            let mut stream = match self.read_object(key, ..).await {
                Ok(stream) => stream,
                // Deleted meanwhile (garbage collection on a running node).
                Err(BlobError::NotFound) => continue,
                Err(e) => return Err(e),
            };
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| BlobError::Body(e.to_string()))?;
                hasher.update(&chunk);
                size += chunk.len() as u64;
            }
            report.bytes += size;
            let actual = hasher.finish();
            if actual == digest {
                report.good += 1;
                continue;
            }
            tracing::warn!(digest = %digest, actual = %actual, size, "stored object does not match its digest");
            let quarantined = if quarantine {
                let to = format!("{QUARANTINE}{}/{}", digest.algorithm().name(), digest.hex());
                if self.capability.rename {
                    self.op.rename(key, &to).await?;
                } else {
                    self.op.copy(key, &to).await?;
                    self.op.delete(key).await?;
                }
                Some(to)
            } else {
                None
            };
            report.bad.push(BadObject {
                digest,
                actual,
                size,
                quarantined,
            });
        }
        Ok(report)
    }
}

/// The digest `blobs/<algorithm>/<2 hex>/<hex>` names, if the key is one.
pub(super) fn digest_of_key(key: &str) -> Option<Digest> {
    let mut parts = key.strip_prefix("blobs/")?.split('/');
    let (algorithm, prefix, hex) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !hex.starts_with(prefix) {
        return None;
    }
    format!("{algorithm}:{hex}").parse().ok()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::blobstore::Algorithm;

    #[tokio::test]
    async fn a_changed_byte_is_found_and_quarantined() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::filesystem(dir.path()).unwrap();
        let good = Digest::of(Algorithm::Sha256, b"good");
        store.put(&good, Bytes::from_static(b"good")).await.unwrap();
        let bad = Digest::of(Algorithm::Sha256, b"bad!");
        store.put(&bad, Bytes::from_static(b"bad!")).await.unwrap();
        let path = dir
            .path()
            .join(format!("blobs/sha256/{}/{}", &bad.hex()[..2], bad.hex()));
        std::fs::write(&path, b"bad?").unwrap();

        let report = store.fsck(false).await.unwrap();
        assert_eq!((report.good, report.bytes), (1, 8));
        assert_eq!(report.bad.len(), 1);
        assert_eq!(report.bad[0].digest, bad);
        assert_eq!(report.bad[0].actual, Digest::of(Algorithm::Sha256, b"bad?"));
        assert!(path.exists(), "only read without --quarantine");

        let report = store.fsck(true).await.unwrap();
        assert_eq!(
            report.bad[0].quarantined.as_deref(),
            Some(format!("quarantine/sha256/{}", bad.hex()).as_str())
        );
        assert!(!path.exists());
        assert_eq!(store.stat(&bad).await.unwrap(), None);
        let report = store.fsck(false).await.unwrap();
        assert!(report.bad.is_empty() && report.good == 1);
    }

    #[test]
    fn keys_name_digests() {
        let d = Digest::of(Algorithm::Sha256, b"x");
        let key = format!("blobs/sha256/{}/{}", &d.hex()[..2], d.hex());
        assert_eq!(digest_of_key(&key), Some(d.clone()));
        assert_eq!(digest_of_key(&format!("blobs/sha256/zz/{}", d.hex())), None);
        assert_eq!(digest_of_key("blobs/sha256/ab/notahexdigest"), None);
    }
}
