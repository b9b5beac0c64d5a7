//! Copy-on-write insert, delete and lookup. Each operation rebuilds only the nodes on the path
//! it changes; every other subtree is shared with the previous version of the tree.

use std::sync::Arc;

use super::MstError;
use super::node::{Child, Entry, Node, below};
use crate::atproto::blockstore::BlockStore;
use crate::atproto::cid::Cid;

fn set_gap(left: &mut Option<Child>, entries: &mut [Entry], i: usize, child: Option<Child>) {
    if i == 0 {
        *left = child;
    } else {
        entries[i - 1].right = child;
    }
}

fn make(layer: u8, left: Option<Child>, entries: Vec<Entry>) -> Option<Child> {
    let node = Node::new(layer, left, entries);
    (!node.is_empty()).then(|| Child::fresh(node))
}

/// A node holding only `key` at layer `h`, under empty nodes up to layer `top`.
pub(crate) fn chain(key: &str, value: Cid, h: u8, top: u8) -> Node {
    let mut node = Node::new(
        h,
        None,
        vec![Entry {
            key: key.to_owned(),
            value,
            right: None,
        }],
    );
    while node.layer < top {
        node = Node::new(node.layer + 1, Some(Child::fresh(node)), Vec::new());
    }
    node
}

/// Raises a subtree to `top` by stacking nodes that hold only a left pointer.
pub(crate) fn wrap(mut child: Option<Child>, mut layer: u8, top: u8) -> Option<Child> {
    while layer < top {
        layer += 1;
        child = child.map(|c| Child::fresh(Node::new(layer, Some(c), Vec::new())));
    }
    child
}

pub(crate) fn get(
    store: &dyn BlockStore,
    root: &Arc<Node>,
    key: &str,
    h: u8,
) -> Result<Option<Cid>, MstError> {
    let mut node = root.clone();
    loop {
        if h > node.layer {
            return Ok(None);
        }
        match node.find(key) {
            Ok(i) => return Ok((h == node.layer).then(|| node.entries[i].value)),
            Err(i) if h < node.layer => match node.gap(i) {
                Some(c) => node = c.load(store, below(node.layer)?)?,
                None => return Ok(None),
            },
            Err(_) => return Ok(None),
        }
    }
}

/// Inserts or replaces `key` in a node at a layer ≥ `h`. Returns the new node and the value
/// the key had.
pub(crate) fn insert(
    store: &dyn BlockStore,
    node: &Node,
    key: &str,
    h: u8,
    value: Cid,
) -> Result<(Node, Option<Cid>), MstError> {
    let mut left = node.left.clone();
    let mut entries = node.entries.clone();
    let found = node.find(key);
    if h == node.layer {
        match found {
            Ok(i) => {
                let old = entries[i].value;
                entries[i].value = value;
                return Ok((Node::new(node.layer, left, entries), Some(old)));
            }
            Err(i) => {
                let (l, r) = match node.gap(i) {
                    Some(c) => split(store, c, below(node.layer)?, key)?.halves(c),
                    None => (None, None),
                };
                set_gap(&mut left, &mut entries, i, l);
                entries.insert(
                    i,
                    Entry {
                        key: key.to_owned(),
                        value,
                        right: r,
                    },
                );
                return Ok((Node::new(node.layer, left, entries), None));
            }
        }
    }
    let Err(i) = found else {
        return Err(MstError::InvalidNode("key found at the wrong layer"));
    };
    let child_layer = below(node.layer)?;
    let (child, old) = match node.gap(i) {
        Some(c) => {
            let n = c.load(store, child_layer)?;
            insert(store, &n, key, h, value)?
        }
        None => (chain(key, value, h, child_layer), None),
    };
    set_gap(&mut left, &mut entries, i, Some(Child::fresh(child)));
    Ok((Node::new(node.layer, left, entries), old))
}

/// How a subtree divides around a key that is not in it.
pub(crate) enum Split {
    /// Every key is before the split key.
    Left,
    /// Every key is after the split key.
    Right,
    /// Keys on both sides.
    Parts(Option<Child>, Option<Child>),
}

impl Split {
    pub(crate) fn halves(self, whole: &Child) -> (Option<Child>, Option<Child>) {
        match self {
            Split::Left => (Some(whole.clone()), None),
            Split::Right => (None, Some(whole.clone())),
            Split::Parts(l, r) => (l, r),
        }
    }
}

/// Splits the subtree `child` (at `layer`) around `key`, which is taller than the subtree.
pub(crate) fn split(
    store: &dyn BlockStore,
    child: &Child,
    layer: u8,
    key: &str,
) -> Result<Split, MstError> {
    let node = child.load(store, layer)?;
    let Err(i) = node.find(key) else {
        return Err(MstError::InvalidNode("split key found in a lower layer"));
    };
    let gap_split = match node.gap(i) {
        Some(c) => Some((split(store, c, below(layer)?, key)?, c)),
        None => None,
    };
    let n = node.entries.len();
    match &gap_split {
        None | Some((Split::Left, _)) if i == n => return Ok(Split::Left),
        None | Some((Split::Right, _)) if i == 0 => return Ok(Split::Right),
        _ => {}
    }
    let (gl, gr) = gap_split.map_or((None, None), |(s, c)| s.halves(c));
    let mut left_entries = node.entries[..i].to_vec();
    let mut left_left = node.left.clone();
    set_gap(&mut left_left, &mut left_entries, i, gl);
    let right_entries = node.entries[i..].to_vec();
    Ok(Split::Parts(
        make(layer, left_left, left_entries),
        make(layer, gr, right_entries),
    ))
}

/// Removes `key` from a node. `None` if the key is absent; otherwise the new node (possibly
/// empty) and the value the key had.
pub(crate) fn delete(
    store: &dyn BlockStore,
    node: &Node,
    key: &str,
    h: u8,
) -> Result<Option<(Node, Cid)>, MstError> {
    if h > node.layer {
        return Ok(None);
    }
    let found = node.find(key);
    if h == node.layer {
        let Ok(i) = found else { return Ok(None) };
        let mut left = node.left.clone();
        let mut entries = node.entries.clone();
        let removed = entries.remove(i);
        let merged = merge(store, node.gap(i).cloned(), removed.right, node.layer)?;
        set_gap(&mut left, &mut entries, i, merged);
        return Ok(Some((Node::new(node.layer, left, entries), removed.value)));
    }
    let Err(i) = found else { return Ok(None) };
    let Some(c) = node.gap(i) else {
        return Ok(None);
    };
    let child = c.load(store, below(node.layer)?)?;
    let Some((new_child, old)) = delete(store, &child, key, h)? else {
        return Ok(None);
    };
    let mut left = node.left.clone();
    let mut entries = node.entries.clone();
    let new_child = (!new_child.is_empty()).then(|| Child::fresh(new_child));
    set_gap(&mut left, &mut entries, i, new_child);
    Ok(Some((Node::new(node.layer, left, entries), old)))
}

/// Joins two adjacent subtrees that are children of a node at `parent_layer`.
fn merge(
    store: &dyn BlockStore,
    a: Option<Child>,
    b: Option<Child>,
    parent_layer: u8,
) -> Result<Option<Child>, MstError> {
    let (a, b) = match (a, b) {
        (None, x) | (x, None) => return Ok(x),
        (Some(a), Some(b)) => (a, b),
    };
    let layer = below(parent_layer)?;
    let an = a.load(store, layer)?;
    let bn = b.load(store, layer)?;
    let a_last = an.gap(an.entries.len()).cloned();
    let boundary = merge(store, a_last, bn.left.clone(), layer)?;
    let mut left = an.left.clone();
    let mut entries = an.entries.clone();
    let n = entries.len();
    set_gap(&mut left, &mut entries, n, boundary);
    entries.extend(bn.entries.iter().cloned());
    Ok(Some(Child::fresh(Node::new(layer, left, entries))))
}
