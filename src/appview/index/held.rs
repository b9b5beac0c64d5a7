//! Blobs whose bytes a hold on another machine keeps: digest → that hold's DID. Written when
//! the registry has sent a blob there; not derived (like the blob sizes beside it), so an index
//! rebuild keeps it. The row goes with the blob's own when the collector removes it.

use redb::ReadableTable;

use super::{HELD, Index, IndexError, RepoKey, digest_key, ids};
use crate::atproto::Did;
use crate::blobstore::{Digest, UploadId};

impl Index {
    /// The hold on another machine that keeps `digest`'s bytes; `None`: this node's storage.
    pub fn held_at(&self, digest: &Digest) -> Result<Option<Did>, IndexError> {
        let tx = self.db.begin_read()?;
        let held = tx.open_table(HELD)?;
        Ok(held
            .get(digest_key(digest).as_slice())?
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
        let tx = self.begin_write()?;
        super::blobs::link_in(&tx, repo, digest, size, finished)?;
        tx.open_table(HELD)?
            .insert(digest_key(digest).as_slice(), hold.as_str())?;
        tx.commit()?;
        Ok(())
    }

    /// Forgets that `hold` keeps `digest` (it said it does not) and the blob's link to `repo`,
    /// in one transaction: the client's next `HEAD` misses and it sends the blob again, to the
    /// hold, instead of the registry trusting the stale row. Other repositories' links stay.
    pub fn forget_held_blob(
        &self,
        repo: &RepoKey,
        digest: &Digest,
        hold: &Did,
    ) -> Result<(), IndexError> {
        let tx = self.begin_write()?;
        {
            let d = digest_key(digest);
            let d = d.as_slice();
            let mut rows = tx.open_table(HELD)?;
            let names_hold = rows.get(d)?.is_some_and(|v| v.value() == hold.as_str());
            if names_hold {
                rows.remove(d)?;
            }
            if let Some(repo) = ids::find_repo(&tx.open_table(ids::REPO_IDS)?, repo.as_str())? {
                tx.open_table(super::REPO_BLOBS)?.remove((repo, d))?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}
