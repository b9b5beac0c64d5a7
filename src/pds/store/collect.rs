//! Collection of the blocks no repository head reaches: MST nodes, records and commits that
//! later commits replaced or deleted (≈27 KB per push, kept forever otherwise).
//!
//! A mark and sweep, run with the rest of GC (`atcr gc`, `gc.interval_secs`):
//! 1. **Mark**, on one read snapshot: every head's commit block and everything its tree reaches
//!    (nodes and record CIDs). A head whose tree cannot be walked (a block missing) stops the
//!    collection with nothing deleted.
//! 2. **Sweep**, in batches of [`SWEEP_BATCH`] blocks, each one durable write transaction: the
//!    blocks of the snapshot that were not marked are removed — unless a commit wrote them since
//!    the collection began.
//!
//! Why no reachable block goes: every commit's batch carries every block its tree has that the
//! tree of the head it was built on lacks (the MST's new nodes and every record it writes,
//! even one identical to a block that is no longer reachable), and the committer applies it
//! only on that head (`expected`). So what any head reaches, now or later, is what a head
//! reached at the snapshot plus blocks written since. Those are recorded, from the moment the
//! collection starts, by the committer's write transaction ([`Collector::written`]); the start
//! is taken inside a write transaction, so a group commit is either wholly in the snapshot or
//! wholly recorded. Each sweep batch checks the record inside its own write transaction, which
//! no group commit can interleave with. Blocks shared between repositories are marked through
//! either head. A crash loses nothing acknowledged: each batch is one durable transaction
//! (making the groups before it durable too), and `pds.wal` replays only groups after it,
//! whose blocks it writes again.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard, PoisonError};

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata};
use serde::{Deserialize, Serialize};

use super::{BLOCKS, PdsStore, REPOS, RepoHead, Snapshot, StoreError};
use crate::atproto::mst::{Mst, WalkItem};

/// Blocks removed per write transaction: commits wait at most one batch and its sync.
const SWEEP_BATCH: usize = 512;

/// CIDs (binary) of blocks.
type CidSet = HashSet<Vec<u8>>;

/// What one collection of blocks removed (or, dry, would remove).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockCollection {
    /// Blocks stored when the collection began.
    pub blocks_seen: u64,
    /// Blocks no head reached.
    pub blocks_deleted: u64,
    /// Their bytes.
    pub bytes_freed: u64,
}

/// How much of `pds.redb` is in use. redb reuses freed pages but does not shrink its file, so
/// the live size, not the file's, is what a collection brings down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreSize {
    /// Blocks stored.
    pub blocks: u64,
    /// Bytes of their CIDs and contents.
    pub block_bytes: u64,
    /// Bytes of the pages of every table (what they store, their metadata and the free room
    /// inside their pages).
    pub live_bytes: u64,
    /// The size of the file.
    pub file_bytes: u64,
}

/// The state a collection shares with the committer.
#[derive(Default)]
pub(super) struct Collector {
    /// One collection at a time.
    turn: Mutex<()>,
    /// While a collection runs: the blocks commits wrote since it began.
    written: Mutex<Option<CidSet>>,
}

impl Collector {
    /// The blocks written since the running collection began (`None`: none runs). Taken
    /// inside a write transaction only, so the lock order is redb's, then this.
    pub(super) fn written(&self) -> MutexGuard<'_, Option<CidSet>> {
        self.written.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Stops recording written blocks when the collection ends, however it ends.
struct Recording<'a>(&'a Collector);

impl Drop for Recording<'_> {
    fn drop(&mut self) {
        *self.0.written() = None;
    }
}

impl PdsStore {
    /// Removes (with `dry_run`, counts) the blocks no repository head reaches. Blocking:
    /// call it from a blocking thread. Commits go on meanwhile, each waiting at most for one
    /// batch; see the module documentation for why none loses a block it needs.
    pub fn collect_blocks(&self, dry_run: bool) -> Result<BlockCollection, StoreError> {
        self.begin_collection()?.sweep(dry_run)
    }

    /// Phase 1 of [`PdsStore::collect_blocks`]: takes the snapshot, starts recording the
    /// blocks commits write, and marks what the snapshot's heads reach.
    pub(crate) fn begin_collection(&self) -> Result<Collection<'_>, StoreError> {
        let turn = self
            .collector
            .turn
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let snapshot = {
            // No group commit runs while this is held: each is before the snapshot or recorded.
            let tx = self.db.begin_write()?;
            *self.collector.written() = Some(CidSet::new());
            tx.abort()?;
            self.db.begin_read()?
        };
        let recording = Recording(&self.collector);
        let marked = mark(&snapshot)?;
        Ok(Collection {
            store: self,
            snapshot,
            marked,
            _recording: recording,
            _turn: turn,
        })
    }

    /// Removes the blocks of `batch` that no commit wrote since the collection began, in one
    /// durable write transaction. Each batch syncs its own pages: a batch that skipped the
    /// sync would leave them to the next durable commit — the committer's once-a-second
    /// checkpoint, which a request then waits for (measured: 30 ms stalls when sixteen
    /// batches' pages rode on one).
    fn sweep_batch(
        &self,
        batch: &[Vec<u8>],
        report: &mut BlockCollection,
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        let (mut blocks, mut bytes) = (0, 0);
        {
            let written = self.collector.written();
            let mut table = tx.open_table(BLOCKS)?;
            for cid in batch {
                if written.as_ref().is_some_and(|w| w.contains(cid)) {
                    continue;
                }
                if let Some(gone) = table.remove(cid.as_slice())? {
                    blocks += 1;
                    bytes += (cid.len() + gone.value().len()) as u64;
                }
            }
        }
        tx.commit()?;
        report.blocks_deleted += blocks;
        report.bytes_freed += bytes;
        Ok(())
    }

    /// How much of `pds.redb` is in use: the pages of every table, counted on a read snapshot
    /// (redb counts them by walking each tree). Commits go on meanwhile — counting them in a
    /// write transaction, as redb's own database statistics do, would hold every commit for a
    /// time that grows with the file.
    pub fn size(&self) -> Result<StoreSize, StoreError> {
        let tx = self.db.begin_read()?;
        let blocks = tx.open_table(BLOCKS)?;
        let mut live_bytes = 0;
        for table in tx.list_tables()? {
            let stats = tx.open_untyped_table(table)?.stats()?;
            live_bytes += stats.stored_bytes() + stats.metadata_bytes() + stats.fragmented_bytes();
        }
        Ok(StoreSize {
            blocks: blocks.len()?,
            block_bytes: blocks.stats()?.stored_bytes(),
            live_bytes,
            file_bytes: std::fs::metadata(self.path.as_ref()).map_or(0, |m| m.len()),
        })
    }
}

/// A collection between its mark and its sweep.
pub(crate) struct Collection<'a> {
    store: &'a PdsStore,
    snapshot: ReadTransaction,
    marked: CidSet,
    _recording: Recording<'a>,
    _turn: MutexGuard<'a, ()>,
}

impl Collection<'_> {
    /// Phase 2 of [`PdsStore::collect_blocks`]: removes (dry: counts) the blocks of the
    /// snapshot that were not marked, in batches.
    pub(crate) fn sweep(self, dry_run: bool) -> Result<BlockCollection, StoreError> {
        let mut report = BlockCollection::default();
        let mut batch = Vec::with_capacity(SWEEP_BATCH);
        for item in self.snapshot.open_table(BLOCKS)?.iter()? {
            let (cid, bytes) = item?;
            report.blocks_seen += 1;
            if self.marked.contains(cid.value()) {
                continue;
            }
            if dry_run {
                report.blocks_deleted += 1;
                report.bytes_freed += (cid.value().len() + bytes.value().len()) as u64;
                continue;
            }
            batch.push(cid.value().to_vec());
            if batch.len() >= SWEEP_BATCH {
                self.store.sweep_batch(&batch, &mut report)?;
                batch.clear();
            }
        }
        if !batch.is_empty() {
            self.store.sweep_batch(&batch, &mut report)?;
        }
        Ok(report)
    }
}

/// Compacts `pds.redb` at `path` so its file gives back the pages collections freed; returns
/// the file's size before and after. Needs the file to itself: offline only (`atcr gc` with the
/// daemon stopped). redb compacts through ordinary durable commits, so a crash midway leaves a
/// whole database, compacted or not; `pds.wal` is not involved (nothing rides on it offline).
pub fn compact(path: &std::path::Path) -> Result<(u64, u64), StoreError> {
    let file_size = || std::fs::metadata(path).map_or(0, |m| m.len());
    let before = file_size();
    let mut db = redb::Database::create(path)?;
    db.compact()
        .map_err(|e| StoreError::Db(redb::Error::from(e)))?;
    drop(db);
    Ok((before, file_size()))
}

/// Every block a head of `snapshot` reaches: its commit, its tree's nodes and the records they
/// name.
fn mark(snapshot: &ReadTransaction) -> Result<CidSet, StoreError> {
    let blocks = Snapshot::open(snapshot)?;
    let mut marked = CidSet::new();
    for item in snapshot.open_table(REPOS)?.iter()? {
        let (did, head) = item?;
        let head: RepoHead = serde_json::from_slice(head.value())?;
        let unwalkable = |e: crate::atproto::mst::MstError| {
            StoreError::Corrupt(format!(
                "repository {} cannot be walked, no block collected: {e}",
                did.value()
            ))
        };
        marked.insert(head.commit.to_bytes());
        Mst::load(&blocks, head.data)
            .map_err(unwalkable)?
            .walk(&blocks, &mut |item| {
                let cid = match item {
                    WalkItem::Node { cid, .. } => cid,
                    WalkItem::Leaf { value, .. } => value,
                };
                marked.insert(cid.to_bytes());
                Ok(())
            })
            .map_err(unwalkable)?;
    }
    Ok(marked)
}
