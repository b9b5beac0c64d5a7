//! What the write path takes and answers: the writes a caller asks for, what each did, the
//! commit that applied them, and why a write was refused or failed.

use crate::atproto::{Cid, Did, Nsid, RecordKey, Tid, Value};
use crate::pds::store::{CommitFailure, StoreError};

/// Why a write was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("repository not found: {0}")]
    RepoNotFound(Did),
    #[error("repository already exists: {0}")]
    RepoExists(Did),
    #[error("{0}")]
    InvalidSwap(String),
    #[error("{0}")]
    InvalidRequest(String),
    /// An update or delete of a record that does not exist (`collection/rkey`).
    #[error("Could not find a record with key: {0}")]
    RecordNotFound(String),
    #[error("no signing key for {0}")]
    NoKey(Did),
    #[error("repository data: {0}")]
    Data(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<CommitFailure> for RepoError {
    fn from(e: CommitFailure) -> Self {
        match e {
            CommitFailure::HeadMoved => RepoError::InvalidSwap("the repository changed".into()),
            CommitFailure::Store(e) => RepoError::Store(e),
        }
    }
}

impl From<crate::atproto::mst::MstError> for RepoError {
    fn from(e: crate::atproto::mst::MstError) -> Self {
        RepoError::Data(e.to_string())
    }
}

impl From<crate::atproto::car::CarError> for RepoError {
    fn from(e: crate::atproto::car::CarError) -> Self {
        RepoError::Data(e.to_string())
    }
}

/// An expectation on a record's current CID: `None` means "must not exist".
pub type SwapRecord = Option<Cid>;

/// One write of `applyWrites` (or the single write of `createRecord`/`putRecord`/`deleteRecord`).
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// A new record; fails if the key exists. A missing rkey gets a fresh TID.
    Create {
        collection: Nsid,
        rkey: Option<RecordKey>,
        value: Value,
    },
    /// Creates or replaces a record (`putRecord`).
    Update {
        collection: Nsid,
        rkey: RecordKey,
        value: Value,
        swap_record: Option<SwapRecord>,
    },
    /// Replaces a record; fails if it does not exist (`applyWrites`' `#update`).
    Replace {
        collection: Nsid,
        rkey: RecordKey,
        value: Value,
    },
    /// Removes a record; fails if it does not exist.
    Delete {
        collection: Nsid,
        rkey: RecordKey,
        swap_record: Option<SwapRecord>,
    },
}

/// Whether records are checked against their lexicon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Validation {
    /// Validate records of known lexicons; accept others as plain data.
    #[default]
    IfKnown,
    /// The lexicon must be known and the record valid.
    Require,
    /// Only the data model is checked.
    Skip,
}

/// What one write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteResult {
    Create {
        uri: String,
        cid: Cid,
        validated: bool,
    },
    Update {
        uri: String,
        cid: Cid,
        validated: bool,
    },
    Delete,
}

/// A commit that was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    pub cid: Cid,
    pub rev: Tid,
    pub seq: u64,
}
