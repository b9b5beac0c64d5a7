//! What retention rules read of a repository, from one read transaction.

use std::collections::BTreeSet;

use super::{Index, IndexError, MANIFESTS, MAX, ManifestRecord, REFS, RepoKey, TAGS};
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
        let repo = repo.as_str();
        let tx = self.db.begin_read()?;
        let mut out = RepoContents::default();
        for entry in tx.open_table(TAGS)?.range((repo, "")..(repo, MAX))? {
            let (key, digest) = entry?;
            if let Ok(d) = digest.value().parse() {
                out.tags.push((key.value().1.to_owned(), d));
            }
        }
        for entry in tx.open_table(MANIFESTS)?.range((repo, "")..(repo, MAX))? {
            let (key, raw) = entry?;
            if let Ok(d) = key.value().1.parse() {
                out.manifests
                    .push((d, ManifestRecord::decode(raw.value())?));
            }
        }
        for entry in tx
            .open_table(REFS)?
            .range((repo, "", "")..(repo, MAX, MAX))?
        {
            let (key, _) = entry?;
            if let Ok(d) = key.value().2.parse() {
                out.referenced.insert(d);
            }
        }
        Ok(out)
    }
}
