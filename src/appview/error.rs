//! What `AppView` answers when it cannot: its own errors. Each HTTP surface maps them to its wire
//! format at its edge (the registry's in `registry/errors.rs`); nothing here knows OCI codes.

use crate::appview::index::IndexError;
use crate::atproto::Did;
use crate::blobstore::BlobError;
use crate::oci::name::RepoName;
use crate::pds::accounts::AccountError;
use crate::pds::repo::RepoError;
use crate::pds::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppViewError {
    /// A repository name without an owner part.
    #[error("repository names are <owner>/<repository>, the owner a user name, handle or DID")]
    NameInvalid(RepoName),
    /// A repository name whose owner is no account here.
    #[error("repository name not known to registry")]
    NameUnknown(RepoName),
    /// A push whose record the lexicon refuses; `message` says which step refused it.
    #[error("{message}: {reason}")]
    RecordInvalid {
        message: &'static str,
        reason: String,
    },
    /// The index did not take in a commit within the wait.
    #[error("the index did not take in commit {seq} within {secs}s")]
    IndexBehind { seq: u64, secs: u64 },
    /// Deletes in one repository kept losing to concurrent writes.
    #[error("deletes in {0} kept racing with other writes")]
    Raced(Did),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Accounts(#[from] AccountError),
    #[error(transparent)]
    Syntax(#[from] crate::atproto::syntax::SyntaxError),
    #[error(transparent)]
    Blocks(#[from] crate::atproto::BlockStoreError),
    /// A remote user's PDS did not take a write (or could not be reached).
    #[error(transparent)]
    Remote(#[from] crate::pds::remote_repo::RemoteCallError),
    #[error("{0}")]
    Data(String),
}

impl AppViewError {
    /// The PDS store error underneath, if storage is what failed.
    #[must_use]
    pub fn store_error(&self) -> Option<&StoreError> {
        match self {
            AppViewError::Store(e) | AppViewError::Repo(RepoError::Store(e)) => Some(e),
            _ => None,
        }
    }
}
