//! The difference between two trees, skipping every subtree they share.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::node::{Child, Node, below};
use super::{Mst, MstError};
use crate::atproto::blockstore::BlockStore;
use crate::atproto::cid::Cid;

/// What changed from one tree to another.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MstDiff {
    /// Keys only in the new tree, with their values.
    pub creates: Vec<(String, Cid)>,
    /// Keys in both with different values: `(key, old, new)`.
    pub updates: Vec<(String, Cid, Cid)>,
    /// Keys only in the old tree, with their old values.
    pub deletes: Vec<(String, Cid)>,
    /// Nodes of the new tree that the walk did not find in the old one.
    pub new_nodes: BTreeSet<Cid>,
    /// Nodes of the old tree that the walk did not find in the new one.
    pub removed_nodes: BTreeSet<Cid>,
}

enum Item {
    Leaf(String, Cid),
    Tree(Child, u8),
}

/// A key-ordered stream of a tree's leaves and not-yet-opened subtrees.
struct Walker<'a> {
    store: &'a dyn BlockStore,
    stack: Vec<Item>,
    opened: BTreeSet<Cid>,
}

impl<'a> Walker<'a> {
    fn new(store: &'a dyn BlockStore, mst: &Mst) -> Self {
        let root = mst.root_child();
        Walker {
            store,
            stack: vec![Item::Tree(root, mst.root.layer)],
            opened: BTreeSet::new(),
        }
    }

    fn open(&mut self) -> Result<(), MstError> {
        let Some(Item::Tree(child, layer)) = self.stack.pop() else {
            return Ok(());
        };
        let node: Arc<Node> = child.load(self.store, layer)?;
        self.opened.insert(child.cid());
        let sub = || below(layer);
        for e in node.entries.iter().rev() {
            if let Some(r) = &e.right {
                self.stack.push(Item::Tree(r.clone(), sub()?));
            }
            self.stack.push(Item::Leaf(e.key.clone(), e.value));
        }
        if let Some(l) = &node.left {
            self.stack.push(Item::Tree(l.clone(), sub()?));
        }
        Ok(())
    }
}

/// Compares two trees. Subtrees with equal CIDs are skipped without being read, so the cost
/// follows the size of the change, not of the trees.
pub fn diff(store: &dyn BlockStore, old: &Mst, new: &Mst) -> Result<MstDiff, MstError> {
    let mut ow = Walker::new(store, old);
    let mut nw = Walker::new(store, new);
    let mut out = MstDiff::default();
    loop {
        match (ow.stack.last(), nw.stack.last()) {
            (None, None) => break,
            (Some(Item::Tree(x, _)), Some(Item::Tree(y, _))) if x.cid() == y.cid() => {
                ow.stack.pop();
                nw.stack.pop();
            }
            (Some(Item::Tree(_, la)), Some(Item::Tree(_, lb))) => {
                let (la, lb) = (*la, *lb);
                if la >= lb {
                    ow.open()?;
                }
                if lb >= la {
                    nw.open()?;
                }
            }
            (Some(Item::Tree(..)), _) => ow.open()?,
            (_, Some(Item::Tree(..))) => nw.open()?,
            (Some(Item::Leaf(ka, va)), Some(Item::Leaf(kb, vb))) => match ka.cmp(kb) {
                std::cmp::Ordering::Equal => {
                    if va != vb {
                        out.updates.push((ka.clone(), *va, *vb));
                    }
                    ow.stack.pop();
                    nw.stack.pop();
                }
                std::cmp::Ordering::Less => {
                    out.deletes.push((ka.clone(), *va));
                    ow.stack.pop();
                }
                std::cmp::Ordering::Greater => {
                    out.creates.push((kb.clone(), *vb));
                    nw.stack.pop();
                }
            },
            (Some(Item::Leaf(ka, va)), None) => {
                out.deletes.push((ka.clone(), *va));
                ow.stack.pop();
            }
            (None, Some(Item::Leaf(kb, vb))) => {
                out.creates.push((kb.clone(), *vb));
                nw.stack.pop();
            }
        }
    }
    out.new_nodes = nw.opened.difference(&ow.opened).copied().collect();
    out.removed_nodes = ow.opened.difference(&nw.opened).copied().collect();
    Ok(out)
}
