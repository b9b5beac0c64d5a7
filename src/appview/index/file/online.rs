//! Compacting the index while the node reads and writes it.
//!
//! A running node's index pages are about half empty (keys arrive in no order), and redb never
//! gives pages back to the file system; offline compaction packs it, but needs the file to
//! itself. Online, the order is:
//! 1. holding the index's writer (so no write transaction is half done), the journal starts
//!    recording and a read snapshot is taken: every commit is either in the snapshot or, whole,
//!    in the journal;
//! 2. the snapshot is copied, table by table in key order, into `index.redb.compacting`, synced
//!    batch by batch (`rewrite::Pace::Beside`) — writers go on meanwhile, and record;
//! 3. what they recorded is applied to the copy, a few rounds, until little is left; the copy's
//!    pages are moved down (the file gives back what the rounds freed) and it is synced;
//! 4. holding the writer again: the rest is applied, the copy committed durably, renamed over
//!    `index.redb`, the directory synced, and the copy put in the old database's place. Writers
//!    that waited for the old database's writer begin again on the new one
//!    (`Index::begin_write`); readers finish on the snapshot they hold.
//!
//! A crash before the rename leaves the old file whole (and the copy is removed by the next
//! collection); after it, the new file has everything. An error before the rename stops the
//! journal, removes the copy and leaves the old file in use; the next attempt waits an hour.
//! Only a failed sync of the directory after the rename is not undone (see `copy_and_swap`).

use std::path::{Path, PathBuf};

use redb::{Database, Durability, ReadableDatabase as _};

use super::super::{CACHE_BYTES, Index, IndexError, gc, journal};
use super::rewrite;

/// Rounds of applying what writers recorded before the final step takes the writer.
const CATCH_UP_ROUNDS: usize = 8;
/// Changes few enough to apply while writers wait.
const FINAL_OPS: usize = 4096;

/// Where the index records the file's size after its last compaction.
const COMPACTED_BYTES: &str = "index_compacted_bytes";
/// The file is compacted again once it is this many times its size after the last compaction
/// (so the copying costs a constant share of what was written).
const REGROWTH: f64 = 1.5;

/// How long after an abandoned compaction the next may start: a node writing faster than the
/// copy keeps up with must not copy its whole index at every collection.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_hours(1);

/// A point between the steps of an online compaction (tests write there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::appview::index) enum Step {
    /// The snapshot is taken; nothing holds the writer.
    Snapshot,
    /// The snapshot is copied; nothing holds the writer.
    Copied,
    /// The compaction holds the writer: a write begun now waits, then lands in the new file.
    Holding,
}

impl Index {
    /// Whether the file has grown enough since its last compaction to compact it again (see
    /// `REGROWTH`; an index never compacted is due), the disk has room for the copy (twice
    /// the file's size free), and no compaction was abandoned in the last `RETRY_AFTER`.
    /// Never for an index in memory.
    pub fn compaction_due(&self) -> Result<bool, IndexError> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        let tx = self.db.begin_read()?;
        let last = tx
            .open_table(gc::GC_META)?
            .get(COMPACTED_BYTES)?
            .map(|v| v.value());
        if self
            .journal
            .since_abandoned()
            .is_some_and(|ago| ago < RETRY_AFTER)
        {
            return Ok(false);
        }
        if !self.journal.is_recording() {
            // A copy left by a crash takes room the check below counts on.
            remove_if_present(&sibling(path, ".compacting"))?;
        }
        let size = file_size(path);
        #[allow(clippy::cast_precision_loss)] // a ratio of file sizes
        let grown = last.is_none_or(|last| size as f64 >= last as f64 * REGROWTH);
        if !grown {
            return Ok(false);
        }
        // The copy needs up to the file's size again; leave at least as much free besides, so
        // that a compaction never takes the last of the disk from the node's writes.
        let dir = path.parent().unwrap_or(Path::new("."));
        let free = rustix::fs::statvfs(dir).map_or(0, |s| s.f_bavail.saturating_mul(s.f_frsize));
        if free < size.saturating_mul(2) {
            tracing::warn!(
                index_bytes = size,
                free_bytes = free,
                "the registry index is not compacted: too little free space for its copy"
            );
            return Ok(false);
        }
        Ok(true)
    }

    /// The bytes the index's file takes on disk (0 in memory).
    #[must_use]
    pub fn file_bytes(&self) -> u64 {
        self.path.as_deref().map_or(0, |p| file_size(p))
    }

    /// Compacts the index file while the node keeps using it (see the module's comment).
    /// Needs room for a second copy while it runs. Returns the file's bytes on disk before and
    /// after; `None` for an index in memory.
    pub fn compact_online(&self) -> Result<Option<(u64, u64)>, IndexError> {
        self.compact_online_with(|_| {})
    }

    pub(in crate::appview::index) fn compact_online_with(
        &self,
        mut between: impl FnMut(Step),
    ) -> Result<Option<(u64, u64)>, IndexError> {
        let Some(path) = self.path.as_deref() else {
            return Ok(None);
        };
        let fresh = sibling(path, ".compacting");
        let before = file_size(path);
        if let Err(e) = self.copy_and_swap(path, &fresh, &mut between) {
            self.journal.abandoned();
            return Err(e);
        }
        let after = file_size(path);
        self.record_compacted(after)?;
        tracing::info!(before, after, "registry index compacted online");
        Ok(Some((before, after)))
    }

    /// Records the file's bytes on disk after a compaction, which the next is measured against.
    pub(in crate::appview::index) fn record_compacted(&self, bytes: u64) -> Result<(), IndexError> {
        let tx = self.begin_write()?;
        tx.open_table(gc::GC_META)?.insert(COMPACTED_BYTES, bytes)?;
        tx.commit()?;
        Ok(())
    }

    fn copy_and_swap(
        &self,
        path: &Path,
        fresh: &Path,
        between: &mut impl FnMut(Step),
    ) -> Result<(), IndexError> {
        let old = self.db.get().map_err(redb::Error::from)?;
        let (snapshot, mut attempt) = {
            let writer = old.begin_write()?;
            self.check_current(&old)?;
            if !self.journal.start() {
                return Err(IndexError::Compaction(
                    "another compaction of the index is running",
                ));
            }
            let attempt = Attempt {
                journal: &self.journal,
                fresh,
                renamed: false,
            };
            remove_if_present(fresh)?;
            let snapshot = old.begin_read()?;
            writer.abort()?;
            (snapshot, attempt)
        };
        between(Step::Snapshot);
        let mut copy = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(fresh)?;
        rewrite::all_tables(&snapshot, &copy, rewrite::Pace::Beside)?;
        drop(snapshot);
        between(Step::Copied);
        for _ in 0..CATCH_UP_ROUNDS {
            // An index that failed meanwhile is reopened by the node: the copy gives way.
            if self.db.is_poisoned() {
                return Err(IndexError::Compaction(
                    "the index failed while it was copied",
                ));
            }
            if self.catch_up(&copy, Durability::None)? <= FINAL_OPS {
                break;
            }
        }
        // Synced, so that the pages the catch-up replaced are free; moving the pages down then
        // lets redb give the end of the file back (and the tail it grew in steps ahead of
        // them). Synced again here, not while writers wait: the final commit then writes only
        // the few pages it changes.
        self.catch_up(&copy, Durability::Immediate)?;
        while copy.compact().map_err(redb::Error::from)? {}
        self.catch_up(&copy, Durability::Immediate)?;
        let writer = old.begin_write()?;
        self.check_current(&old)?;
        between(Step::Holding);
        self.catch_up(&copy, Durability::Immediate)?;
        std::fs::rename(fresh, path).map_err(|e| IndexError::Db(e.into()))?;
        attempt.renamed = true;
        // From here the file at `path` is the copy: it must be the database in use even if the
        // directory cannot be synced, or the writes that follow would go to an unlinked file.
        // (Should that sync fail, a crash could bring the old file back, without the writes
        // made after this: the error is logged as one of the disk's.)
        let synced = sync_parent(path);
        self.db.replace(copy);
        drop(writer);
        synced
    }

    /// Applies what writers recorded since the last call to `copy`; returns how many changes.
    fn catch_up(&self, copy: &Database, durability: Durability) -> Result<usize, IndexError> {
        let ops = self.journal.take().map_err(journal_lost)?;
        let n = ops.len();
        let mut tx = copy.begin_write()?;
        tx.set_durability(durability)
            .map_err(|e| IndexError::Db(redb::Error::from(e)))?;
        journal::replay(&tx, ops)?;
        tx.commit()?;
        Ok(n)
    }

    fn check_current(&self, db: &std::sync::Arc<Database>) -> Result<(), IndexError> {
        if self.db.is_current(db) {
            Ok(())
        } else {
            Err(IndexError::Compaction(
                "the index was reopened during the compaction",
            ))
        }
    }
}

/// Stops the journal however the compaction ends, and removes the copy unless it was renamed
/// into place.
struct Attempt<'a> {
    journal: &'a journal::Journal,
    fresh: &'a Path,
    renamed: bool,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        self.journal.stop();
        if !self.renamed {
            let _ = std::fs::remove_file(self.fresh);
        }
    }
}

fn journal_lost(why: journal::Broken) -> IndexError {
    IndexError::Compaction(match why {
        journal::Broken::NotRecording => "the index's journal stopped during a compaction",
        journal::Broken::Lost => {
            "the index changed faster than it could be compacted, or a write failed: compaction abandoned"
        }
    })
}

pub(super) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The bytes `path` takes on disk. Not its length: redb grows a file by doubling it (sparsely)
/// until it is one region large, so a freshly compacted index's length can jump to twice its
/// pages at its first write after the compaction.
pub(super) fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| std::os::unix::fs::MetadataExt::blocks(&m) * 512)
}

pub(super) fn remove_if_present(path: &Path) -> Result<(), IndexError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(IndexError::Db(e.into())),
        _ => Ok(()),
    }
}

pub(super) fn sync_parent(path: &Path) -> Result<(), IndexError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| IndexError::Db(e.into()))
}
