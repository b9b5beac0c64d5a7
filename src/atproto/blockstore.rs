//! Where MST nodes, records and commits live: a content-addressed block store.

use std::collections::HashMap;
use std::sync::RwLock;

use bytes::Bytes;
use thiserror::Error;

use super::cid::Cid;

/// A failure of the storage behind a [`BlockStore`].
#[derive(Debug, Error)]
#[error("block store: {0}")]
pub struct BlockStoreError(pub Box<dyn std::error::Error + Send + Sync>);

/// Content-addressed block storage. The MST reads nodes through it lazily; writers persist the
/// blocks a commit produces (see [`super::mst::Mst::take_new_blocks`]). Implementations need
/// not check that bytes hash to their CID on `get` (readers that need it do).
pub trait BlockStore {
    /// The bytes of a block, or `None` if the store does not hold it.
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, BlockStoreError>;

    /// Stores a block. Storing a block that is already present is not an error.
    fn put(&self, cid: Cid, bytes: Bytes) -> Result<(), BlockStoreError>;

    /// Whether the store holds a block.
    fn has(&self, cid: &Cid) -> Result<bool, BlockStoreError> {
        Ok(self.get(cid)?.is_some())
    }

    /// Stores many blocks (an implementation may do it in one transaction).
    fn put_many(&self, blocks: Vec<(Cid, Bytes)>) -> Result<(), BlockStoreError> {
        blocks
            .into_iter()
            .try_for_each(|(cid, bytes)| self.put(cid, bytes))
    }
}

impl<T: BlockStore + ?Sized> BlockStore for &T {
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, BlockStoreError> {
        (**self).get(cid)
    }
    fn put(&self, cid: Cid, bytes: Bytes) -> Result<(), BlockStoreError> {
        (**self).put(cid, bytes)
    }
}

impl<T: BlockStore + ?Sized> BlockStore for std::sync::Arc<T> {
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, BlockStoreError> {
        (**self).get(cid)
    }
    fn put(&self, cid: Cid, bytes: Bytes) -> Result<(), BlockStoreError> {
        (**self).put(cid, bytes)
    }
}

/// An in-memory block store (tests, CAR imports, commit slices).
#[derive(Debug, Default)]
pub struct MemoryBlockStore {
    blocks: RwLock<HashMap<Cid, Bytes>>,
}

impl MemoryBlockStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// How many blocks it holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.blocks.read().map_or(0, |b| b.len())
    }

    /// Whether it holds no block.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every CID it holds, in no particular order.
    #[must_use]
    pub fn cids(&self) -> Vec<Cid> {
        self.blocks
            .read()
            .map(|b| b.keys().copied().collect())
            .unwrap_or_default()
    }
}

impl BlockStore for MemoryBlockStore {
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, BlockStoreError> {
        let blocks = self.blocks.read().map_err(|_| poisoned())?;
        Ok(blocks.get(cid).cloned())
    }

    fn put(&self, cid: Cid, bytes: Bytes) -> Result<(), BlockStoreError> {
        let mut blocks = self.blocks.write().map_err(|_| poisoned())?;
        blocks.insert(cid, bytes);
        Ok(())
    }
}

fn poisoned() -> BlockStoreError {
    BlockStoreError("memory block store lock poisoned".into())
}

/// A store wrapper that records which CIDs were read, to learn the blocks an operation needs
/// (for instance the proof blocks of a `#commit` event).
#[derive(Debug)]
pub struct RecordingStore<S> {
    inner: S,
    read: RwLock<Vec<Cid>>,
}

impl<S: BlockStore> RecordingStore<S> {
    /// Wraps a store.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            read: RwLock::new(Vec::new()),
        }
    }

    /// The CIDs read so far, in order (a CID read twice appears twice).
    #[must_use]
    pub fn reads(&self) -> Vec<Cid> {
        self.read.read().map(|r| r.clone()).unwrap_or_default()
    }
}

impl<S: BlockStore> BlockStore for RecordingStore<S> {
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, BlockStoreError> {
        if let Ok(mut r) = self.read.write() {
            r.push(*cid);
        }
        self.inner.get(cid)
    }
    fn put(&self, cid: Cid, bytes: Bytes) -> Result<(), BlockStoreError> {
        self.inner.put(cid, bytes)
    }
}
