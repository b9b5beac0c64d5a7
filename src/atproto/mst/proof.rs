//! Sync 1.1 "inductive" proofs: the blocks a `#commit` event carries so that a consumer
//! holding only the event can undo its operations and arrive at the previous root.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::{Mst, MstError};
use crate::atproto::blockstore::{BlockStore, RecordingStore};
use crate::atproto::cid::Cid;

/// One record operation of a commit, as a `#commit` event lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOp {
    /// A new key.
    Create {
        /// `collection/rkey`.
        key: String,
        /// The new record CID.
        cid: Cid,
    },
    /// A key whose value changed.
    Update {
        /// `collection/rkey`.
        key: String,
        /// The new record CID.
        cid: Cid,
        /// The previous record CID.
        prev: Cid,
    },
    /// A removed key.
    Delete {
        /// `collection/rkey`.
        key: String,
        /// The previous record CID.
        prev: Cid,
    },
}

/// Undoes `ops` on the tree rooted at `root` and returns the root before them. This is the
/// consumer's check of a `#commit` event: `store` holds only the event's blocks, and the
/// result must equal the event's `prevData`. Fails if a needed block is missing or an op does
/// not match the tree (a create whose key is absent, an update whose value differs, a delete
/// whose key is present).
pub fn invert_ops(store: &dyn BlockStore, root: Cid, ops: &[RecordOp]) -> Result<Cid, MstError> {
    let mut mst = Mst::load(store, root)?;
    for op in ops.iter().rev() {
        match op {
            RecordOp::Create { key, cid } => {
                if mst.delete(store, key)? != Some(*cid) {
                    return Err(MstError::Conflict(
                        "created key absent or with another value",
                    ));
                }
            }
            RecordOp::Update { key, cid, prev } => {
                if mst.insert(store, key, *prev)? != Some(*cid) {
                    return Err(MstError::Conflict(
                        "updated key absent or with another value",
                    ));
                }
            }
            RecordOp::Delete { key, prev } => {
                if mst.insert(store, key, *prev)?.is_some() {
                    return Err(MstError::Conflict("deleted key still present"));
                }
            }
        }
    }
    Ok(mst.root_cid())
}

/// The MST blocks of the tree rooted at `root` (after `ops`) that a `#commit` event must carry
/// for [`invert_ops`] to succeed: the new root and every node the inversion reads. Sorted by
/// CID.
pub fn proof_blocks(
    store: &dyn BlockStore,
    root: Cid,
    ops: &[RecordOp],
) -> Result<Vec<(Cid, Bytes)>, MstError> {
    let recording = RecordingStore::new(store);
    invert_ops(&recording, root, ops)?;
    let cids: BTreeSet<Cid> = recording.reads().into_iter().chain([root]).collect();
    cids.into_iter()
        .map(|cid| Ok((cid, store.get(&cid)?.ok_or(MstError::MissingBlock(cid))?)))
        .collect()
}
