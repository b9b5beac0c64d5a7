//! The block table of `pds.redb` as a [`BlockStore`], and read-only snapshots of it.

use bytes::Bytes;
use redb::ReadableTableMetadata;

use super::{BLOCKS, PdsStore, RECORDS, REPOS, RepoHead, StoreError};
use crate::atproto::blockstore::{BlockStore, BlockStoreError};
use crate::atproto::{Cid, Did};

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

/// A snapshot reader: one read transaction for many block reads (exports, proofs, walks), and
/// for the heads and records they start from — a head and its blocks read from one snapshot are
/// consistent, while a head read earlier may since have been replaced and its blocks collected
/// (`store/collect.rs`).
pub struct Snapshot {
    table: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
    repos: redb::ReadOnlyTable<&'static str, &'static [u8]>,
    records: redb::ReadOnlyTable<(&'static str, &'static str, &'static str), &'static str>,
}

impl Snapshot {
    pub(super) fn open(tx: &redb::ReadTransaction) -> Result<Snapshot, StoreError> {
        Ok(Snapshot {
            table: tx.open_table(BLOCKS)?,
            repos: tx.open_table(REPOS)?,
            records: tx.open_table(RECORDS)?,
        })
    }

    /// The head of a repository as of the snapshot.
    pub fn head(&self, did: &Did) -> Result<Option<RepoHead>, StoreError> {
        self.repos
            .get(did.as_str())?
            .map(|v| serde_json::from_slice(v.value()).map_err(StoreError::from))
            .transpose()
    }

    /// A record's CID (from the record index) and block, as of the snapshot.
    pub fn record(
        &self,
        did: &Did,
        collection: &str,
        rkey: &str,
    ) -> Result<Option<(Cid, Bytes)>, StoreError> {
        let Some(cid) = self.records.get((did.as_str(), collection, rkey))? else {
            return Ok(None);
        };
        let cid = cid
            .value()
            .parse::<Cid>()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let bytes = self
            .table
            .get(cid.to_bytes().as_slice())?
            .ok_or_else(|| StoreError::Corrupt(format!("record block {cid} is missing")))?;
        Ok(Some((cid, Bytes::copy_from_slice(bytes.value()))))
    }
}

impl PdsStore {
    /// A consistent view of the blocks, heads and record index as of now.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        Snapshot::open(&self.db.begin_read()?)
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
