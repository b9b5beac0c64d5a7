//! The Merkle Search Tree that maps a repository's keys (`collection/rkey`) to record CIDs.
//!
//! The tree is canonical: the same set of keys and values always gives the same nodes and the
//! same root CID, whatever order the operations came in. A key's height is the number of
//! leading zero bits of SHA-256(key) divided by two (fanout 4); a key lives in the node of
//! its height.
//!
//! [`Mst`] is a cheap-to-clone, copy-on-write handle: operations load only the nodes they touch
//! from a [`BlockStore`], rebuild only the changed path, and hash only rebuilt nodes when the
//! root CID is asked for. [`Mst::take_new_blocks`] hands over the blocks to persist.

mod diff;
mod node;
mod ops;
mod proof;
mod walk;

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use thiserror::Error;

pub use diff::{MstDiff, diff};
pub use node::common_prefix_len;
pub use proof::{RecordOp, invert_ops, proof_blocks};
pub use walk::WalkItem;

use crate::atproto::blockstore::{BlockStore, BlockStoreError};
use crate::atproto::cid::Cid;
use crate::atproto::data::DataError;
use node::{Child, Node};

/// What can go wrong reading or changing a tree.
#[derive(Debug, Error)]
pub enum MstError {
    /// A node or record the operation needs is not in the block store.
    #[error("block {0} is missing")]
    MissingBlock(Cid),
    /// A block whose bytes do not hash to its CID.
    #[error("block {0} does not match its CID")]
    HashMismatch(Cid),
    /// A node that is not a well-formed, canonical MST node.
    #[error("invalid MST node: {0}")]
    InvalidNode(&'static str),
    /// A key that is not `collection/rkey` with allowed characters.
    #[error("invalid MST key: {0}")]
    InvalidKey(&'static str),
    /// A node that is not valid DAG-CBOR.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The block store failed.
    #[error(transparent)]
    Store(#[from] BlockStoreError),
    /// An operation that does not apply to the tree (e.g. deleting a key that is absent).
    #[error("operation does not apply: {0}")]
    Conflict(&'static str),
}

/// The height of a key: leading zero bits of SHA-256(key), counted in pairs.
#[must_use]
pub fn key_height(key: &str) -> u8 {
    let hash = Sha256::digest(key.as_bytes());
    let mut zeros = 0u32;
    for b in hash {
        zeros += b.leading_zeros();
        if b != 0 {
            break;
        }
    }
    (zeros / 2) as u8
}

/// Checks an MST key: `collection/rkey`, at most 1024 bytes, both parts non-empty and made of
/// `A-Za-z0-9_~-:.`.
pub fn check_key(key: &str) -> Result<(), MstError> {
    if key.len() > 1024 {
        return Err(MstError::InvalidKey("longer than 1024 bytes"));
    }
    let Some((collection, rkey)) = key.split_once('/') else {
        return Err(MstError::InvalidKey("not collection/rkey"));
    };
    let ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'~' | b'-' | b':' | b'.'))
    };
    if ok(collection) && ok(rkey) {
        Ok(())
    } else {
        Err(MstError::InvalidKey("disallowed character or empty part"))
    }
}

/// A Merkle Search Tree: a persistent, copy-on-write map from keys to CIDs backed by a block
/// store. Cloning is O(1) and gives an independent snapshot.
#[derive(Clone)]
pub struct Mst {
    root: Arc<Node>,
    /// The root's CID if the root is persisted (then it yields no new blocks).
    stored: Option<Cid>,
}

impl std::fmt::Debug for Mst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mst({})", self.root_cid())
    }
}

impl Default for Mst {
    fn default() -> Self {
        Self::new()
    }
}

impl Mst {
    /// An empty tree (its root is one empty node).
    #[must_use]
    pub fn new() -> Mst {
        Mst {
            root: Arc::new(Node::empty()),
            stored: None,
        }
    }

    /// Opens the tree whose root node is `root` in `store`. Only the root is read now; other
    /// nodes are read when an operation reaches them.
    pub fn load(store: &dyn BlockStore, root: Cid) -> Result<Mst, MstError> {
        let node = Node::load(store, root, None)?;
        Ok(Mst {
            root: Arc::new(node),
            stored: Some(root),
        })
    }

    /// Builds a tree from entries in any order, bottom-up in one pass per layer (much faster
    /// than inserting one by one). Duplicate keys are an error.
    pub fn from_entries(entries: impl IntoIterator<Item = (String, Cid)>) -> Result<Mst, MstError> {
        let mut items: Vec<(String, Cid, u8)> = Vec::new();
        for (k, v) in entries {
            check_key(&k)?;
            let h = key_height(&k);
            items.push((k, v, h));
        }
        items.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if items.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(MstError::Conflict("duplicate key"));
        }
        let top = items.iter().map(|i| i.2).max().unwrap_or(0);
        Ok(Mst {
            root: Arc::new(walk::build(&items, top)),
            stored: None,
        })
    }

    /// The root CID (hashes whatever nodes changed since it was last asked for).
    #[must_use]
    pub fn root_cid(&self) -> Cid {
        self.stored.unwrap_or_else(|| self.root.cid())
    }

    /// The height of the tree's top layer.
    #[must_use]
    pub fn layer(&self) -> u8 {
        self.root.layer
    }

    fn root_child(&self) -> Child {
        match self.stored {
            Some(cid) => Child::Stored {
                cid,
                cache: OnceLock::from(self.root.clone()),
            },
            None => Child::Fresh(self.root.clone()),
        }
    }

    /// The value of `key`.
    pub fn get(&self, store: &dyn BlockStore, key: &str) -> Result<Option<Cid>, MstError> {
        ops::get(store, &self.root, key, key_height(key))
    }

    /// Sets `key` to `value`; returns the previous value. Setting the value a key already has
    /// leaves the tree untouched.
    pub fn insert(
        &mut self,
        store: &dyn BlockStore,
        key: &str,
        value: Cid,
    ) -> Result<Option<Cid>, MstError> {
        check_key(key)?;
        let h = key_height(key);
        if self.root.is_empty() {
            self.set_root(ops::chain(key, value, h, h));
            return Ok(None);
        }
        if h > self.root.layer {
            let whole = self.root_child();
            let (l, r) = ops::split(store, &whole, self.root.layer, key)?.halves(&whole);
            let l = ops::wrap(l, self.root.layer, h - 1);
            let r = ops::wrap(r, self.root.layer, h - 1);
            let entry = node::Entry {
                key: key.to_owned(),
                value,
                right: r,
            };
            self.set_root(Node::new(h, l, vec![entry]));
            return Ok(None);
        }
        let (node, old) = ops::insert(store, &self.root, key, h, value)?;
        if old != Some(value) {
            self.set_root(node);
        }
        Ok(old)
    }

    /// Removes `key`; returns the value it had, or `None` (and no change) if it was absent.
    pub fn delete(&mut self, store: &dyn BlockStore, key: &str) -> Result<Option<Cid>, MstError> {
        let Some((node, old)) = ops::delete(store, &self.root, key, key_height(key))? else {
            return Ok(None);
        };
        self.set_root(node);
        // A root left with no keys gives way to its only subtree (the tree gets shorter).
        while self.root.entries.is_empty() {
            let Some(child) = self.root.left.clone() else {
                self.set_root(Node::empty());
                break;
            };
            self.root = child.load(store, node::below(self.root.layer)?)?;
            self.stored = match child {
                Child::Stored { cid, .. } => Some(cid),
                Child::Fresh(_) => None,
            };
        }
        Ok(Some(old))
    }

    fn set_root(&mut self, node: Node) {
        self.root = Arc::new(node);
        self.stored = None;
    }

    /// The blocks built since the tree was loaded or last persisted (root included), without
    /// marking them persisted.
    #[must_use]
    pub fn new_blocks(&self) -> Vec<(Cid, Bytes)> {
        let mut out = Vec::new();
        if self.stored.is_none() {
            walk::collect_fresh(&self.root, &mut out);
        }
        out
    }

    /// The blocks built since the tree was loaded or last persisted, which the caller must now
    /// store; afterwards the tree treats them as persisted (they are not returned again).
    pub fn take_new_blocks(&mut self) -> Vec<(Cid, Bytes)> {
        if self.stored.is_some() {
            return Vec::new();
        }
        let mut out = Vec::new();
        self.root = walk::persist(&self.root, &mut out);
        self.stored = Some(self.root.cid());
        out
    }

    /// Visits the tree depth-first: each node (preorder) and each leaf (in key order). Nodes
    /// are read from the store as the walk reaches them and not kept, so walking a stored tree
    /// holds only one root-to-leaf path in memory.
    pub fn walk(
        &self,
        store: &dyn BlockStore,
        visit: &mut dyn FnMut(WalkItem<'_>) -> Result<(), MstError>,
    ) -> Result<(), MstError> {
        walk::walk(store, &self.root, visit)
    }

    /// Every `(key, value)` in key order.
    pub fn entries(&self, store: &dyn BlockStore) -> Result<Vec<(String, Cid)>, MstError> {
        let mut out = Vec::new();
        self.walk(store, &mut |item| {
            if let WalkItem::Leaf { key, value } = item {
                out.push((key.to_owned(), value));
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Up to `limit` entries whose key starts with `prefix`, in key order, starting after
    /// `cursor` if given (pagination: pass the last key of the previous page).
    pub fn list(
        &self,
        store: &dyn BlockStore,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Cid)>, MstError> {
        walk::list(store, &self.root, prefix, cursor, limit)
    }
}
