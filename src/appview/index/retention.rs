//! What retention rules read of a repository, from one read transaction.

use std::collections::BTreeSet;

use super::{
    Index, IndexError, MANIFESTS, ManifestRecord, REFS, RepoKey, TAGS, digest_of_key, ids,
};
use crate::blobstore::Digest;

/// A repository's tags, manifests and what its manifests reference.
#[derive(Debug, Default)]
pub struct RepoContents {
    /// Every tag with the manifest it names.
    pub tags: Vec<(String, Digest)>,
    /// Every manifest with its record.
    pub manifests: Vec<(Digest, ManifestRecord)>,
    /// Digests some manifest of the repository references (child manifests of indexes, blobs).
    pub referenced: BTreeSet<Digest>,
}

impl Index {
    /// The tags, manifests and references of `repo`, consistently.
    pub fn repo_contents(&self, repo: &RepoKey) -> Result<RepoContents, IndexError> {
        let tx = self.db.begin_read()?;
        let mut out = RepoContents::default();
        let Some(id) = ids::find_repo(&tx.open_table(ids::REPO_IDS)?, repo.as_str())? else {
            return Ok(out);
        };
        for entry in tx.open_table(TAGS)?.range((id, "")..(id + 1, ""))? {
            let (key, target) = entry?;
            out.tags
                .push((key.value().1.to_owned(), digest_of_key(target.value())?));
        }
        for entry in tx
            .open_table(MANIFESTS)?
            .range((id, &[][..])..(id + 1, &[][..]))?
        {
            let (key, raw) = entry?;
            out.manifests.push((
                digest_of_key(key.value().1)?,
                ManifestRecord::decode(raw.value())?,
            ));
        }
        for entry in tx
            .open_table(REFS)?
            .range((id, &[][..], &[][..])..(id + 1, &[][..], &[][..]))?
        {
            let (key, _) = entry?;
            out.referenced.insert(digest_of_key(key.value().2)?);
        }
        Ok(out)
    }
}
