//! MST nodes: the in-memory form, and the DAG-CBOR form with key prefix compression.
//!
//! A node is immutable once built. Children are either `Stored` (known by CID, loaded from the
//! block store on first use and cached) or `Fresh` (built by an operation and not yet
//! persisted). A node's encoding and CID are computed at most once, when first asked for, so
//! an operation re-encodes and re-hashes only the nodes it rebuilt.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use super::{MstError, key_height};
use crate::atproto::blockstore::BlockStore;
use crate::atproto::cbor::{write_bytes, write_head, write_int, write_link, write_text};
use crate::atproto::cid::Cid;
use crate::atproto::data::Value;

/// A pointer to a subtree.
#[derive(Clone)]
pub(crate) enum Child {
    /// A persisted node, loaded on demand.
    Stored {
        cid: Cid,
        cache: OnceLock<Arc<Node>>,
    },
    /// A node built in memory since the tree was last persisted.
    Fresh(Arc<Node>),
}

impl Child {
    pub(crate) fn stored(cid: Cid) -> Child {
        Child::Stored {
            cid,
            cache: OnceLock::new(),
        }
    }

    pub(crate) fn fresh(node: Node) -> Child {
        Child::Fresh(Arc::new(node))
    }

    /// The subtree's CID (encodes a fresh node if it was not yet).
    pub(crate) fn cid(&self) -> Cid {
        match self {
            Child::Stored { cid, .. } => *cid,
            Child::Fresh(n) => n.cid(),
        }
    }

    /// The node, loading it from `store` if needed; `layer` is the layer it must be at.
    pub(crate) fn load(&self, store: &dyn BlockStore, layer: u8) -> Result<Arc<Node>, MstError> {
        match self {
            Child::Fresh(n) => Ok(n.clone()),
            Child::Stored { cid, cache } => {
                if let Some(n) = cache.get() {
                    return Ok(n.clone());
                }
                let node = Arc::new(Node::load(store, *cid, Some(layer))?);
                let _ = cache.set(node.clone());
                Ok(node)
            }
        }
    }

    /// The node if it is in memory already, without touching the store.
    pub(crate) fn loaded(&self) -> Option<&Arc<Node>> {
        match self {
            Child::Fresh(n) => Some(n),
            Child::Stored { cache, .. } => cache.get(),
        }
    }
}

/// One key of a node, and the subtree of keys between it and the next key.
#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) value: Cid,
    pub(crate) right: Option<Child>,
}

pub(crate) struct Encoded {
    pub(crate) cid: Cid,
    pub(crate) bytes: Bytes,
}

/// A node at `layer`: every key in `entries` has that height; `left` holds the keys below the
/// first entry, and each entry's `right` the keys between it and the next entry.
pub(crate) struct Node {
    pub(crate) layer: u8,
    pub(crate) left: Option<Child>,
    pub(crate) entries: Vec<Entry>,
    enc: OnceLock<Encoded>,
}

/// The layer of a node's children.
pub(crate) fn below(layer: u8) -> Result<u8, MstError> {
    layer
        .checked_sub(1)
        .ok_or(MstError::InvalidNode("layer-0 node has a subtree"))
}

impl Node {
    pub(crate) fn new(layer: u8, left: Option<Child>, entries: Vec<Entry>) -> Node {
        Node {
            layer,
            left,
            entries,
            enc: OnceLock::new(),
        }
    }

    pub(crate) fn empty() -> Node {
        Node::new(0, None, Vec::new())
    }

    /// No keys and no subtree.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.left.is_none()
    }

    /// The subtree before entry `i` (`i == entries.len()` is the last one).
    pub(crate) fn gap(&self, i: usize) -> Option<&Child> {
        if i == 0 {
            self.left.as_ref()
        } else {
            self.entries[i - 1].right.as_ref()
        }
    }

    pub(crate) fn find(&self, key: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|e| e.key.as_str().cmp(key))
    }

    pub(crate) fn encoded(&self) -> &Encoded {
        self.enc.get_or_init(|| {
            let bytes = self.encode();
            Encoded {
                cid: Cid::for_cbor(&bytes),
                bytes: Bytes::from(bytes),
            }
        })
    }

    pub(crate) fn cid(&self) -> Cid {
        self.encoded().cid
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.entries.len() * 96);
        out.push(0xa2);
        write_text(&mut out, "e");
        write_head(&mut out, 4, self.entries.len() as u64);
        let mut prev: &[u8] = &[];
        for e in &self.entries {
            let key = e.key.as_bytes();
            let prefix = common_prefix_len(prev, key);
            out.push(0xa4);
            write_text(&mut out, "k");
            write_bytes(&mut out, &key[prefix..]);
            write_text(&mut out, "p");
            write_int(&mut out, i64::try_from(prefix).unwrap_or(i64::MAX));
            write_text(&mut out, "t");
            write_opt_link(&mut out, e.right.as_ref());
            write_text(&mut out, "v");
            write_link(&mut out, &e.value);
            prev = key;
        }
        write_text(&mut out, "l");
        write_opt_link(&mut out, self.left.as_ref());
        out
    }

    /// Reads a node from the store and checks it: its bytes hash to `cid`, the shape is
    /// `{e, l}`, keys are valid, sorted and all of the node's layer, a child-layer node is not
    /// empty, and a layer-0 node has no subtrees. `layer` is `None` for a root.
    pub(crate) fn load(
        store: &dyn BlockStore,
        cid: Cid,
        layer: Option<u8>,
    ) -> Result<Node, MstError> {
        let bytes = store.get(&cid)?.ok_or(MstError::MissingBlock(cid))?;
        Node::decode(cid, bytes, layer)
    }

    pub(crate) fn decode(cid: Cid, bytes: Bytes, layer: Option<u8>) -> Result<Node, MstError> {
        if !cid.matches(&bytes) {
            return Err(MstError::HashMismatch(cid));
        }
        let bad = MstError::InvalidNode;
        // Bounded like any bytes from the network: nodes of other PDSes are read too.
        let value = Value::from_untrusted_cbor(&bytes)?;
        let map = value.as_map().ok_or(bad("not a map"))?;
        if map.len() != 2 {
            return Err(bad("node must have exactly the fields e and l"));
        }
        let left = opt_link(map.get("l").ok_or(bad("missing l"))?)?;
        let Some(Value::Array(items)) = map.get("e") else {
            return Err(bad("e is not an array"));
        };
        let mut entries: Vec<Entry> = Vec::with_capacity(items.len());
        let mut prev = String::new();
        for item in items {
            let m = item.as_map().ok_or(bad("entry is not a map"))?;
            if m.len() != 4 {
                return Err(bad("entry must have exactly the fields k, p, t and v"));
            }
            let (
                Some(Value::Bytes(suffix)),
                Some(Value::Integer(p)),
                Some(t),
                Some(Value::Link(v)),
            ) = (m.get("k"), m.get("p"), m.get("t"), m.get("v"))
            else {
                return Err(bad("malformed entry"));
            };
            let p = usize::try_from(*p).map_err(|_| bad("negative prefix length"))?;
            if p > prev.len() {
                return Err(bad("prefix longer than the previous key"));
            }
            let mut key = prev.as_bytes()[..p].to_vec();
            key.extend_from_slice(suffix);
            let key = String::from_utf8(key).map_err(|_| bad("key is not UTF-8"))?;
            super::check_key(&key)?;
            if !entries.is_empty() && key <= prev {
                return Err(bad("keys not sorted"));
            }
            prev.clone_from(&key);
            entries.push(Entry {
                key,
                value: *v,
                right: opt_link(t)?,
            });
        }
        let is_child = layer.is_some();
        let layer = match (layer, entries.first()) {
            (Some(l), _) => l,
            (None, Some(e)) => key_height(&e.key),
            (None, None) if left.is_none() => 0,
            (None, None) => return Err(bad("root node with no keys")),
        };
        if entries.iter().any(|e| key_height(&e.key) != layer) {
            return Err(bad("key height does not match the node's layer"));
        }
        if layer == 0 && (left.is_some() || entries.iter().any(|e| e.right.is_some())) {
            return Err(bad("layer-0 node has a subtree"));
        }
        let node = Node::new(layer, left, entries);
        if node.is_empty() && is_child {
            return Err(bad("empty subtree"));
        }
        let _ = node.enc.set(Encoded { cid, bytes });
        Ok(node)
    }
}

fn write_opt_link(out: &mut Vec<u8>, child: Option<&Child>) {
    match child {
        Some(c) => write_link(out, &c.cid()),
        None => out.push(0xf6),
    }
}

fn opt_link(v: &Value) -> Result<Option<Child>, MstError> {
    match v {
        Value::Null => Ok(None),
        Value::Link(cid) => Ok(Some(Child::stored(*cid))),
        _ => Err(MstError::InvalidNode(
            "subtree pointer is neither a link nor null",
        )),
    }
}

/// How many leading bytes two keys share (the prefix compression of node entries).
#[must_use]
pub fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
