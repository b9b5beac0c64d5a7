//! Blobs whose bytes a hold on another machine keeps: digest → that hold's DID. Written when
//! the registry has sent a blob there; not derived (like the blob sizes beside it), so an index
//! rebuild keeps it. The row goes with the blob's own when the collector removes it.

use super::{HELD, Index, IndexError, RepoKey};
use crate::atproto::Did;
use crate::blobstore::{Digest, UploadId};

impl Index {
    /// The hold on another machine that keeps `digest`'s bytes; `None`: this node's storage.
    pub fn held_at(&self, digest: &Digest) -> Result<Option<Did>, IndexError> {
        let tx = self.db.begin_read()?;
        let held = tx.open_table(HELD)?;
        Ok(held
            .get(digest.as_str())?
            .and_then(|v| v.value().parse().ok()))
    }

    /// [`Index::link_blob`] for a blob `hold` keeps: linked in `repo` with its size, and
    /// noted as held there, in one transaction.
    pub fn link_held_blob(
        &self,
        repo: &RepoKey,
        digest: &Digest,
        size: u64,
        finished: Option<UploadId>,
        hold: &Did,
    ) -> Result<(), IndexError> {
        let tx = self.db.begin_write()?;
        super::blobs::link_in(&tx, repo, digest, size, finished)?;
        tx.open_table(HELD)?
            .insert(digest.as_str(), hold.as_str())?;
        tx.commit()?;
        Ok(())
    }
}
