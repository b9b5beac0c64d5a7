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
    /// No session with a remote user's PDS: they log in again.
    #[error("{0}")]
    RemoteSession(String),
    /// A remote user's PDS refused a write.
    #[error("{0}")]
    RemoteRefused(String),
    /// A remote user's PDS could not be reached (or answered nonsense).
    #[error("{0}")]
    RemoteUnavailable(String),
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

impl From<crate::pds::remote_repo::RemoteCallError> for AppViewError {
    fn from(e: crate::pds::remote_repo::RemoteCallError) -> Self {
        use crate::pds::remote_repo::RemoteCallError as E;
        match &e {
            E::NoSession(_) => AppViewError::RemoteSession(e.to_string()),
            E::Refused { .. } => AppViewError::RemoteRefused(e.to_string()),
            E::Unavailable(_) => AppViewError::RemoteUnavailable(e.to_string()),
        }
    }
}
