//! Blob links and upload sessions: which stored blobs each repository may serve (uploaded or
//! mounted into it, or vouched for by the hold's layer records), and uploads in progress.

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::{
    BLOBS, Index, IndexError, MAX, REPO_BLOBS, RepoKey, UPLOADS, derived, digest_key, ids,
};
use crate::blobstore::{Digest, UploadId};

/// An upload in progress: `parts` parts stored, `size` bytes in all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadSession {
    pub repo: RepoKey,
    pub parts: u32,
    pub size: u64,
    pub started: u64,
    pub updated: u64,
}

impl Index {
    /// The size of a blob `repo` may serve: one uploaded or mounted into it, or one a hold
    /// layer record vouches for in one of its manifests.
    pub fn repo_blob(&self, repo: &RepoKey, digest: &Digest) -> Result<Option<u64>, IndexError> {
        let tx = self.db.begin_read()?;
        let Some(repo) = ids::find_repo(&tx.open_table(ids::REPO_IDS)?, repo.as_str())? else {
            return Ok(None);
        };
        let d = digest_key(digest);
        let d = d.as_slice();
        if let Some(size) = tx.open_table(REPO_BLOBS)?.get((repo, d))? {
            return Ok(Some(size.value()));
        }
        let vouched = tx.open_table(derived::VOUCHED)?;
        let first = vouched
            .range((repo, d, 0, "")..(repo, d, u32::MAX, MAX))?
            .next();
        Ok(first.transpose()?.map(|(_, size)| size.value()))
    }

    /// The size of a blob in storage, whichever repository it came through.
    pub fn blob(&self, digest: &Digest) -> Result<Option<u64>, IndexError> {
        let tx = self.db.begin_read()?;
        Ok(tx
            .open_table(BLOBS)?
            .get(digest_key(digest).as_slice())?
            .map(|v| v.value()))
    }

    /// Makes a stored blob servable from `repo`, ending the upload `finished` if given: the
    /// blob was uploaded into `repo`, or mounted from a repository the caller may read. Its
    /// last-linked time moves on (the collector's grace starts again).
    pub fn link_blob(
        &self,
        repo: &RepoKey,
        digest: &Digest,
        size: u64,
        finished: Option<UploadId>,
    ) -> Result<(), IndexError> {
        let tx = self.begin_write()?;
        link_in(&tx, repo, digest, size, finished)?;
        tx.commit()?;
        Ok(())
    }

    /// Removes the upload link of a blob to `repo` (see [`crate::appview::AppView::forget_blob`]
    /// for the other kind); the bytes stay until garbage collection.
    pub fn unlink_blob(&self, repo: &RepoKey, digest: &Digest) -> Result<bool, IndexError> {
        let tx = self.begin_write()?;
        let removed = match ids::find_repo(&tx.open_table(ids::REPO_IDS)?, repo.as_str())? {
            Some(repo) => tx
                .open_table(REPO_BLOBS)?
                .remove((repo, digest_key(digest).as_slice()))?
                .is_some(),
            None => false,
        };
        tx.commit()?;
        Ok(removed)
    }

    pub fn upload(&self, id: UploadId) -> Result<Option<UploadSession>, IndexError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(UPLOADS)?;
        let Some(raw) = table.get(id.to_string().as_str())? else {
            return Ok(None);
        };
        Ok(Some(serde_json::from_slice(raw.value())?))
    }

    pub fn put_upload(&self, id: UploadId, session: &UploadSession) -> Result<(), IndexError> {
        let tx = self.begin_write()?;
        tx.open_table(UPLOADS)?.insert(
            id.to_string().as_str(),
            serde_json::to_vec(session)?.as_slice(),
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn delete_upload(&self, id: UploadId) -> Result<bool, IndexError> {
        let tx = self.begin_write()?;
        let removed = tx
            .open_table(UPLOADS)?
            .remove(id.to_string().as_str())?
            .is_some();
        tx.commit()?;
        Ok(removed)
    }

    /// Every upload session with the time it was last written to.
    pub fn uploads(&self) -> Result<Vec<(UploadId, UploadSession)>, IndexError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(UPLOADS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            if let Ok(id) = key.value().parse() {
                out.push((id, serde_json::from_slice(value.value())?));
            }
        }
        Ok(out)
    }
}

/// [`Index::link_blob`] inside a write transaction.
pub(super) fn link_in(
    tx: &super::journal::WriteTransaction,
    repo: &RepoKey,
    digest: &Digest,
    size: u64,
    finished: Option<UploadId>,
) -> Result<(), IndexError> {
    let d = digest_key(digest);
    tx.open_table(BLOBS)?.insert(d.as_slice(), size)?;
    super::gc::touch(tx, &d)?;
    let repo = ids::repo_id(tx, repo.as_str())?;
    tx.open_table(REPO_BLOBS)?
        .insert((repo, d.as_slice()), size)?;
    if let Some(id) = finished {
        tx.open_table(UPLOADS)?.remove(id.to_string().as_str())?;
    }
    Ok(())
}
