//! The key the index files a repository under: `<owner did>/<path>`, stable across handle changes.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::atproto::Did;

/// A repository's index key, `<owner did>/<path>` (`did:plc:…/tools/cli`). Built from an owner
/// and a path, or read back from the index, which stores only keys built that way.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RepoKey(String);

impl RepoKey {
    #[must_use]
    pub fn new(owner: &Did, path: &str) -> RepoKey {
        RepoKey(format!("{owner}/{path}"))
    }

    /// A key as the index stored it (or as a record's `repository` and author make it).
    #[must_use]
    pub fn from_stored(key: impl Into<String>) -> RepoKey {
        RepoKey(key.into())
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The owner's DID as written in the key.
    #[must_use]
    pub fn owner(&self) -> &str {
        self.0
            .split_once('/')
            .map_or(self.0.as_str(), |(did, _)| did)
    }

    /// The repository below the owner (`app`, `tools/cli`).
    #[must_use]
    pub fn path(&self) -> &str {
        self.0.split_once('/').map_or("", |(_, path)| path)
    }
}

impl fmt::Display for RepoKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for RepoKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::RepoKey;

    #[test]
    fn a_key_splits_into_owner_and_path() {
        let did = "did:plc:abcdefghijklmnopqrstuvwx".parse().unwrap();
        let key = RepoKey::new(&did, "tools/cli");
        assert_eq!(key.as_str(), "did:plc:abcdefghijklmnopqrstuvwx/tools/cli");
        assert_eq!(key.owner(), did.as_str());
        assert_eq!(key.path(), "tools/cli");
        assert_eq!(RepoKey::from_stored(key.as_str()), key);
    }
}
