//! Sync 1.1 "inductive" proofs: the blocks a `#commit` event carries so that a consumer
//! holding only the event can undo its operations and arrive at the previous root.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::node::{Child, below};
use super::{Mst, MstError, key_height};
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
    invert_on(Mst::load(store, root)?, store, ops)
}

/// [`invert_ops`] on a tree already open (its loaded nodes are not read again).
fn invert_on(mut mst: Mst, store: &dyn BlockStore, ops: &[RecordOp]) -> Result<Cid, MstError> {
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
/// for [`invert_ops`] to succeed: the new root, every node the inversion reads, and for each
/// key present after the commit the nodes holding its nearest neighbours on the lower layers
/// (the rightmost path of the subtree just before it and the leftmost path of the subtree just
/// after it), which other implementations read when they undo the operation. This is the set
/// the upstream sync 1.1 fixtures expect. Sorted by CID.
pub fn proof_blocks(
    store: &dyn BlockStore,
    root: Cid,
    ops: &[RecordOp],
) -> Result<Vec<(Cid, Bytes)>, MstError> {
    let recording = RecordingStore::new(store);
    // One tree for both passes: a node is read from the store (and recorded) once, then kept
    // decoded in the tree, which the inversion works on copy-on-write.
    let tree = Mst::load(&recording, root)?;
    for op in ops {
        if let RecordOp::Create { key, .. } | RecordOp::Update { key, .. } = op {
            read_neighbours(&recording, &tree, key)?;
        }
    }
    invert_on(tree, &recording, ops)?;
    let cids: BTreeSet<Cid> = recording.reads().into_iter().chain([root]).collect();
    cids.into_iter()
        .map(|cid| Ok((cid, store.get(&cid)?.ok_or(MstError::MissingBlock(cid))?)))
        .collect()
}

/// Reads the path to `key` in `tree` and the spines of the subtrees on either side, loading
/// (through `store`) the nodes not loaded yet.
fn read_neighbours(store: &dyn BlockStore, tree: &Mst, key: &str) -> Result<(), MstError> {
    let h = key_height(key);
    let mut node = tree.root.clone();
    let spine = |start: Option<&Child>, layer: u8, rightmost: bool| -> Result<(), MstError> {
        let Some(first) = start else {
            return Ok(());
        };
        let mut layer = below(layer)?;
        let mut n = first.load(store, layer)?;
        loop {
            let next = if rightmost {
                n.gap(n.entries.len())
            } else {
                n.left.as_ref()
            };
            let Some(child) = next else {
                return Ok(());
            };
            layer = below(layer)?;
            n = child.load(store, layer)?;
        }
    };
    loop {
        if h > node.layer {
            return Ok(());
        }
        match node.find(key) {
            Ok(i) => {
                spine(node.gap(i), node.layer, true)?;
                return spine(node.entries[i].right.as_ref(), node.layer, false);
            }
            Err(i) => match node.gap(i) {
                Some(c) if h < node.layer => {
                    let layer = below(node.layer)?;
                    node = c.load(store, layer)?;
                }
                _ => return Ok(()),
            },
        }
    }
}
