//! `atcr storage migrate`: every object under `blobs/` copied to another store (disk to S3,
//! one bucket to another), hashed while it streams and written under its digest key only when
//! the bytes match it. Objects already in the target with the same size are skipped, so an
//! interrupted migration resumes where it stopped.

use futures_util::TryStreamExt;
use opendal::ErrorKind;

use super::fsck::digest_of_key;
use super::{BlobError, BlobStore, Digest, Digester, copy_hashing};

/// What [`BlobStore::migrate_to`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    /// Objects copied, and their bytes.
    pub copied: u64,
    pub copied_bytes: u64,
    /// Objects the target already held with the same size.
    pub skipped: u64,
    /// Objects whose bytes do not match their digest in the source: not copied
    /// (`atcr fsck --quarantine` deals with them).
    pub bad: Vec<Digest>,
    /// Keys under `blobs/` that name no digest (not copied).
    pub foreign: Vec<String>,
}

/// One step of a migration, for progress output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    Copied(&'a Digest, u64),
    Skipped(&'a Digest, u64),
    Bad(&'a Digest),
}

impl BlobStore {
    /// Copies every blob to `target`; `progress` hears of each with its 1-based number and the
    /// total. Stops at the first storage error (running it again resumes).
    pub async fn migrate_to(
        &self,
        target: &BlobStore,
        mut progress: impl FnMut(usize, usize, Step<'_>),
    ) -> Result<MigrateReport, BlobError> {
        let mut report = MigrateReport::default();
        let mut keys = Vec::new();
        match self.op.lister_with("blobs/").recursive(true).await {
            Ok(mut lister) => {
                while let Some(entry) = lister.try_next().await? {
                    if !entry.path().ends_with('/') {
                        keys.push(entry.path().to_owned());
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let total = keys.len();
        for (n, key) in keys.iter().enumerate() {
            let Some(digest) = digest_of_key(key) else {
                report.foreign.push(key.clone());
                continue;
            };
            let Some(size) = self.stat(&digest).await? else {
                continue; // Deleted meanwhile.
            };
            if target.stat(&digest).await? == Some(size) {
                report.skipped += 1;
                progress(n + 1, total, Step::Skipped(&digest, size));
                continue;
            }
            if target.copy_verified(self, key, &digest).await? {
                report.copied += 1;
                report.copied_bytes += size;
                progress(n + 1, total, Step::Copied(&digest, size));
            } else {
                report.bad.push(digest.clone());
                progress(n + 1, total, Step::Bad(&digest));
            }
        }
        Ok(report)
    }

    /// Streams `key` of `source` into this store under `digest`, committing the write only if
    /// the bytes hash to it. Returns whether they did.
    async fn copy_verified(
        &self,
        source: &BlobStore,
        key: &str,
        digest: &Digest,
    ) -> Result<bool, BlobError> {
        let stream = source.read_object(key, ..).await?;
        let mut writer = self.writer(&Self::blob_key(digest)).await?;
        let mut hasher = Digester::new(digest.algorithm());
        if let Err(e) = copy_hashing(stream, &mut writer, &mut hasher).await {
            let _ = writer.abort().await;
            return Err(e);
        }
        if &hasher.finish() != digest {
            // Aborted, the write leaves nothing under the key (a temporary file on `fs`, an
            // uncompleted multipart upload on S3).
            writer.abort().await?;
            return Ok(false);
        }
        writer.close().await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::blobstore::Algorithm;

    #[tokio::test]
    async fn blobs_are_copied_once_and_damaged_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let source = BlobStore::filesystem(dir.path()).unwrap();
        let target = BlobStore::memory().unwrap();
        let a = Digest::of(Algorithm::Sha256, b"a");
        let b = Digest::of(Algorithm::Sha256, b"bb");
        source.put(&a, Bytes::from_static(b"a")).await.unwrap();
        source.put(&b, Bytes::from_static(b"bb")).await.unwrap();

        let mut steps = Vec::new();
        let report = source
            .migrate_to(&target, |n, total, step| {
                steps.push((n, total, matches!(step, Step::Copied(..))));
            })
            .await
            .unwrap();
        assert_eq!(
            (report.copied, report.copied_bytes, report.skipped),
            (2, 3, 0)
        );
        assert_eq!(steps.len(), 2);
        assert_eq!(target.get(&b).await.unwrap(), Bytes::from_static(b"bb"));

        let again = source.migrate_to(&target, |_, _, _| {}).await.unwrap();
        assert_eq!((again.copied, again.skipped), (0, 2));

        let c = Digest::of(Algorithm::Sha256, b"cc");
        source.put(&c, Bytes::from_static(b"cc")).await.unwrap();
        let path = dir
            .path()
            .join(format!("blobs/sha256/{}/{}", &c.hex()[..2], c.hex()));
        std::fs::write(path, b"c?").unwrap();
        let report = source.migrate_to(&target, |_, _, _| {}).await.unwrap();
        assert_eq!(report.bad, vec![c.clone()]);
        assert_eq!(target.stat(&c).await.unwrap(), None);
    }
}
