//! Traversals: bottom-up building, preorder walks, listing, and persisting fresh nodes.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use super::MstError;
use super::node::{Child, Entry, Node, below};
use crate::atproto::blockstore::BlockStore;
use crate::atproto::cid::Cid;

/// One step of [`super::Mst::walk`].
#[derive(Debug, Clone, Copy)]
pub enum WalkItem<'a> {
    /// A node block, visited before its subtrees and leaves.
    Node {
        /// The node's CID.
        cid: Cid,
        /// Its DAG-CBOR bytes.
        bytes: &'a Bytes,
    },
    /// A key and its value, in key order.
    Leaf {
        /// The key (`collection/rkey`).
        key: &'a str,
        /// The record CID.
        value: Cid,
    },
}

/// Builds the node at `layer` over sorted items (all of height ≤ `layer`).
pub(crate) fn build(items: &[(String, Cid, u8)], layer: u8) -> Node {
    let sub = |range: &[(String, Cid, u8)]| {
        (!range.is_empty()).then(|| Child::fresh(build(range, layer.saturating_sub(1))))
    };
    let mut left = None;
    let mut entries: Vec<Entry> = Vec::new();
    let mut start = 0;
    for (i, item) in items.iter().enumerate() {
        if item.2 == layer {
            let gap = sub(&items[start..i]);
            match entries.last_mut() {
                Some(e) => e.right = gap,
                None => left = gap,
            }
            entries.push(Entry {
                key: item.0.clone(),
                value: item.1,
                right: None,
            });
            start = i + 1;
        }
    }
    let gap = sub(&items[start..]);
    match entries.last_mut() {
        Some(e) => e.right = gap,
        None => left = gap,
    }
    Node::new(layer, left, entries)
}

fn fresh_children(node: &Node) -> impl Iterator<Item = &Arc<Node>> {
    std::iter::once(&node.left)
        .chain(node.entries.iter().map(|e| &e.right))
        .filter_map(|c| match c {
            Some(Child::Fresh(n)) => Some(n),
            _ => None,
        })
}

pub(crate) fn collect_fresh(node: &Arc<Node>, out: &mut Vec<(Cid, Bytes)>) {
    let enc = node.encoded();
    out.push((enc.cid, enc.bytes.clone()));
    for child in fresh_children(node) {
        collect_fresh(child, out);
    }
}

/// Emits `node` and its fresh descendants, and returns the same tree with those descendants
/// turned into stored children (kept in memory as their cache).
pub(crate) fn persist(node: &Arc<Node>, out: &mut Vec<(Cid, Bytes)>) -> Arc<Node> {
    let enc = node.encoded();
    out.push((enc.cid, enc.bytes.clone()));
    let mut convert = |c: &Option<Child>| match c {
        Some(Child::Fresh(n)) => {
            let p = persist(n, out);
            Some(Child::Stored {
                cid: p.cid(),
                cache: OnceLock::from(p),
            })
        }
        other => other.clone(),
    };
    let left = convert(&node.left);
    let entries = node
        .entries
        .iter()
        .map(|e| Entry {
            key: e.key.clone(),
            value: e.value,
            right: convert(&e.right),
        })
        .collect();
    let new = Node::new(node.layer, left, entries);
    debug_assert_eq!(new.cid(), enc.cid);
    Arc::new(new)
}

/// Loads a child for a walk without caching it in the tree.
fn peek(store: &dyn BlockStore, child: &Child, layer: u8) -> Result<Arc<Node>, MstError> {
    match child.loaded() {
        Some(n) => Ok(n.clone()),
        None => Ok(Arc::new(Node::load(store, child.cid(), Some(layer))?)),
    }
}

pub(crate) fn walk(
    store: &dyn BlockStore,
    node: &Arc<Node>,
    visit: &mut dyn FnMut(WalkItem<'_>) -> Result<(), MstError>,
) -> Result<(), MstError> {
    let enc = node.encoded();
    visit(WalkItem::Node {
        cid: enc.cid,
        bytes: &enc.bytes,
    })?;
    let sub =
        |c: &Option<Child>, visit: &mut dyn FnMut(WalkItem<'_>) -> Result<(), MstError>| match c {
            Some(c) => walk(store, &peek(store, c, below(node.layer)?)?, visit),
            None => Ok(()),
        };
    sub(&node.left, visit)?;
    for e in &node.entries {
        visit(WalkItem::Leaf {
            key: &e.key,
            value: e.value,
        })?;
        sub(&e.right, visit)?;
    }
    Ok(())
}

struct Lister<'a> {
    store: &'a dyn BlockStore,
    prefix: &'a str,
    cursor: Option<&'a str>,
    limit: usize,
    out: Vec<(String, Cid)>,
}

impl Lister<'_> {
    /// Whether `key` is at or after the start of the range.
    fn after_start(&self, key: &str) -> bool {
        match self.cursor {
            Some(c) if c >= self.prefix => key > c,
            _ => key >= self.prefix,
        }
    }

    /// Visits a node; returns `false` once the listing is complete.
    fn visit(&mut self, node: &Arc<Node>) -> Result<bool, MstError> {
        // Entries before the start, and the subtrees before them, can be skipped.
        let first = node.entries.partition_point(|e| !self.after_start(&e.key));
        for i in first..=node.entries.len() {
            if let Some(c) = node.gap(i) {
                let child = c.load(self.store, below(node.layer)?)?;
                if !self.visit(&child)? {
                    return Ok(false);
                }
            }
            let Some(e) = node.entries.get(i) else { break };
            if !e.key.starts_with(self.prefix) || self.out.len() >= self.limit {
                return Ok(false);
            }
            self.out.push((e.key.clone(), e.value));
        }
        Ok(self.out.len() < self.limit)
    }
}

pub(crate) fn list(
    store: &dyn BlockStore,
    root: &Arc<Node>,
    prefix: &str,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, Cid)>, MstError> {
    let mut lister = Lister {
        store,
        prefix,
        cursor,
        limit,
        out: Vec::new(),
    };
    if limit > 0 {
        lister.visit(root)?;
    }
    Ok(lister.out)
}
