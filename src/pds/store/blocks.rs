//! The block table of `pds.redb` as a [`BlockStore`], and read-only snapshots of it.

use bytes::Bytes;
use redb::ReadableTableMetadata;

use super::{BLOCKS, PdsStore, StoreError};
use crate::atproto::Cid;
use crate::atproto::blockstore::{BlockStore, BlockStoreError};

impl PdsStore {
    /// Number of blocks stored (for metrics and tests).
    pub fn block_count(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read()?;
        Ok(tx.open_table(BLOCKS)?.len()?)
    }
}

impl BlockStore for PdsStore {
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, BlockStoreError> {
        let tx = self.db.begin_read().map_err(block_err)?;
        let table = tx.open_table(BLOCKS).map_err(block_err)?;
        Ok(table
            .get(cid.to_bytes().as_slice())
            .map_err(block_err)?
            .map(|v| Bytes::copy_from_slice(v.value())))
    }

    fn put(&self, cid: Cid, bytes: Bytes) -> Result<(), BlockStoreError> {
        self.put_many(vec![(cid, bytes)])
    }

    fn put_many(&self, blocks: Vec<(Cid, Bytes)>) -> Result<(), BlockStoreError> {
        let tx = self.db.begin_write().map_err(block_err)?;
        {
            let mut table = tx.open_table(BLOCKS).map_err(block_err)?;
            let mut written = self.collector.written();
            for (cid, bytes) in blocks {
                let cid = cid.to_bytes();
                table
                    .insert(cid.as_slice(), bytes.as_ref())
                    .map_err(block_err)?;
                if let Some(w) = written.as_mut() {
                    w.insert(cid);
                }
            }
        }
        tx.commit().map_err(block_err)
    }
}

fn block_err(e: impl Into<redb::Error>) -> BlockStoreError {
    BlockStoreError(Box::new(e.into()))
}

/// A snapshot reader: one read transaction for many block reads (exports, proofs, walks).
pub struct Snapshot {
    pub(super) table: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl PdsStore {
    /// A consistent view of the blocks as of now.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let tx = self.db.begin_read()?;
        Ok(Snapshot {
            table: tx.open_table(BLOCKS)?,
        })
    }
}

impl BlockStore for Snapshot {
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, BlockStoreError> {
        Ok(self
            .table
            .get(cid.to_bytes().as_slice())
            .map_err(block_err)?
            .map(|v| Bytes::copy_from_slice(v.value())))
    }

    fn put(&self, _cid: Cid, _bytes: Bytes) -> Result<(), BlockStoreError> {
        Err(BlockStoreError("snapshot is read-only".into()))
    }
}
