//! The index's write transactions, which can also record their changes for replay into another
//! database: what lets the index be compacted while the node keeps writing to it (see
//! `file/online.rs`).
//!
//! While a compaction copies a snapshot of the index into a fresh file, every write
//! transaction begun after that snapshot keeps its changes — inserts, removes, tables
//! deleted — as operations on the tables, and hands them to the [`Journal`] when it commits,
//! still holding redb's single writer: the journal is in commit order. The compaction applies
//! them to the copy, the last ones while it holds the writer itself, then swaps the copy in.
//! Outside a compaction a transaction records nothing.
//!
//! The index's code opens tables only through [`WriteTransaction`]; the [`Table`] it returns
//! reads like redb's but mutates only through `insert` and `remove`,
//! which record. redb's other mutations (`retain_in`, `extract_from_if`, …) are out of reach
//! through it, so none can bypass the journal.

use std::borrow::Borrow;
use std::sync::{Arc, Mutex, PoisonError};

use std::ops::RangeBounds;

use redb::{
    AccessGuard, CommitError, Durability, Key, Range, ReadableTable, ReadableTableMetadata,
    SetDurabilityError, StorageError, TableDefinition, TableError, TableStats, Value,
};

/// One committed change, replayable into any database that has the index's tables.
pub(super) type Op = Box<dyn FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error> + Send>;

/// How many bytes of changes a compaction may have waiting before it gives up: a node writing
/// faster than the copy keeps up with must not grow without bound in memory.
const MAX_PENDING_BYTES: usize = 64 << 20;

/// What a change costs in memory besides its key and value: the boxed closure, its two
/// vectors' allocations and its place in the list.
const OP_OVERHEAD: usize = 160;

/// The changes committed since a compaction took its snapshot, in commit order.
#[derive(Default)]
pub(super) struct Journal {
    recording: Mutex<Option<Recorded>>,
    /// When a compaction was last abandoned: the next waits a while (see
    /// `Index::compaction_due`) rather than copying the whole index again at every collection.
    abandoned: Mutex<Option<std::time::Instant>>,
}

#[derive(Default)]
struct Recorded {
    ops: Vec<Op>,
    bytes: usize,
    /// A commit failed after handing over its changes, or the changes grew past
    /// [`MAX_PENDING_BYTES`]: the journal no longer says what happened, and the compaction
    /// must be abandoned.
    broken: bool,
}

/// Why the journal cannot be replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Broken {
    /// Nothing is being recorded (no compaction started it, or it was stopped).
    NotRecording,
    /// See [`Recorded::broken`].
    Lost,
}

impl Journal {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Recorded>> {
        self.recording
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts recording; false when it already records (another compaction runs). Call
    /// holding the database's writer, so that no transaction is between its begin (which
    /// decides whether it records) and its commit.
    #[must_use]
    pub(super) fn start(&self) -> bool {
        let mut recording = self.lock();
        if recording.is_some() {
            return false;
        }
        *recording = Some(Recorded::default());
        true
    }

    /// Stops recording and drops what was recorded.
    pub(super) fn stop(&self) {
        *self.lock() = None;
    }

    /// Notes that a compaction was abandoned now.
    pub(super) fn abandoned(&self) {
        *self
            .abandoned
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(std::time::Instant::now());
    }

    /// How long ago a compaction was last abandoned.
    pub(super) fn since_abandoned(&self) -> Option<std::time::Duration> {
        self.abandoned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map(|at| at.elapsed())
    }

    pub(super) fn is_recording(&self) -> bool {
        self.lock().is_some()
    }

    /// Takes the changes recorded so far (recording goes on).
    pub(super) fn take(&self) -> Result<Vec<Op>, Broken> {
        match &mut *self.lock() {
            None => Err(Broken::NotRecording),
            Some(r) if r.broken => Err(Broken::Lost),
            Some(r) => {
                r.bytes = 0;
                Ok(std::mem::take(&mut r.ops))
            }
        }
    }

    fn append(&self, ops: Vec<Op>, bytes: usize) {
        if let Some(r) = &mut *self.lock() {
            r.bytes += bytes;
            if r.broken || r.bytes > MAX_PENDING_BYTES {
                *r = Recorded {
                    broken: true,
                    ..Recorded::default()
                };
            } else {
                r.ops.extend(ops);
            }
        }
    }

    pub(super) fn lose(&self) {
        if let Some(r) = &mut *self.lock() {
            *r = Recorded {
                broken: true,
                ..Recorded::default()
            };
        }
    }
}

impl super::Index {
    /// Begins a write transaction on the current database: one begun on a database that an
    /// online compaction swapped out while this waited for the writer is dropped and begun again.
    pub(super) fn begin_write(&self) -> Result<WriteTransaction, super::IndexError> {
        loop {
            let db = self.db.get().map_err(redb::Error::from)?;
            let tx = db.begin_write().map_err(redb::Error::from)?;
            if self.db.is_current(&db) {
                return Ok(WriteTransaction::new(tx, &self.journal));
            }
        }
    }
}

/// Applies recorded changes, in order, inside `tx`.
pub(super) fn replay(tx: &redb::WriteTransaction, ops: Vec<Op>) -> Result<(), redb::Error> {
    ops.into_iter().try_for_each(|op| op(tx))
}

/// Changes a transaction made, kept until it commits.
#[derive(Default)]
struct Pending {
    ops: Vec<Op>,
    bytes: usize,
    /// The transaction changed more than the journal may hold: its changes were dropped, and
    /// its commit breaks the journal.
    overflowed: bool,
}

/// A write transaction on the index: redb's, plus the changes it made when a compaction is
/// recording them.
pub struct WriteTransaction {
    tx: redb::WriteTransaction,
    /// Where the changes go on commit; `None` when no compaction was recording at the begin.
    journal: Option<Arc<Journal>>,
    pending: Mutex<Pending>,
}

impl WriteTransaction {
    /// Wraps a transaction just begun. `journal` decides now, holding the writer, whether it
    /// records.
    pub(super) fn new(tx: redb::WriteTransaction, journal: &Arc<Journal>) -> WriteTransaction {
        WriteTransaction {
            tx,
            journal: journal.is_recording().then(|| Arc::clone(journal)),
            pending: Mutex::default(),
        }
    }

    /// The transaction itself, for the format upgrade that runs when the index is opened
    /// (before any compaction can record).
    pub(super) fn unrecorded(&self) -> &redb::WriteTransaction {
        debug_assert!(
            self.journal.is_none(),
            "a recorded transaction used unrecorded"
        );
        &self.tx
    }

    /// Opens (creating if need be) a table to read and change. The opening is recorded too:
    /// it creates a table that a delete earlier in the journal removed.
    pub fn open_table<K: Key + Send + 'static, V: Value + Send + 'static>(
        &self,
        definition: TableDefinition<'static, K, V>,
    ) -> Result<Table<'_, K, V>, TableError> {
        let inner = self.tx.open_table(definition)?;
        self.record(0, move |tx| {
            tx.open_table(definition)?;
            Ok(())
        });
        Ok(Table {
            inner,
            definition,
            pending: self.journal.is_some().then_some(&self.pending),
        })
    }

    /// Deletes a table; returns whether it existed.
    pub fn delete_table<K: Key + Send + 'static, V: Value + Send + 'static>(
        &self,
        definition: TableDefinition<'static, K, V>,
    ) -> Result<bool, TableError> {
        let existed = self.tx.delete_table(definition)?;
        self.record(0, move |tx| {
            tx.delete_table(definition)?;
            Ok(())
        });
        Ok(existed)
    }

    pub fn set_durability(&mut self, durability: Durability) -> Result<(), SetDurabilityError> {
        self.tx.set_durability(durability)
    }

    /// Commits. The changes join the journal first, while this transaction still holds the
    /// writer, so the journal is in commit order; a failed commit breaks the journal.
    pub fn commit(self) -> Result<(), CommitError> {
        let WriteTransaction {
            tx,
            journal,
            pending,
        } = self;
        if let Some(journal) = &journal {
            let pending = pending.into_inner().unwrap_or_else(PoisonError::into_inner);
            if pending.overflowed {
                journal.lose();
            } else {
                journal.append(pending.ops, pending.bytes);
            }
        }
        let committed = tx.commit();
        if committed.is_err()
            && let Some(journal) = &journal
        {
            journal.lose();
        }
        committed
    }

    fn record(
        &self,
        bytes: usize,
        op: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error> + Send + 'static,
    ) {
        if self.journal.is_some() {
            push(&self.pending, bytes, op);
        }
    }
}

/// A table opened in a [`WriteTransaction`]. Reads go to redb's table ([`ReadableTable`]);
/// changes go through [`Table::insert`] and [`Table::remove`], which record them when the
/// transaction does.
pub struct Table<'t, K: Key + 'static, V: Value + 'static> {
    inner: redb::Table<'t, K, V>,
    definition: TableDefinition<'static, K, V>,
    pending: Option<&'t Mutex<Pending>>,
}

impl<K: Key + 'static, V: Value + 'static> ReadableTableMetadata for Table<'_, K, V> {
    fn stats(&self) -> Result<TableStats, StorageError> {
        self.inner.stats()
    }

    fn len(&self) -> Result<u64, StorageError> {
        self.inner.len()
    }
}

impl<K: Key + 'static, V: Value + 'static> ReadableTable<K, V> for Table<'_, K, V> {
    fn get<'a>(
        &self,
        key: impl Borrow<K::SelfType<'a>>,
    ) -> Result<Option<AccessGuard<'_, V>>, StorageError> {
        self.inner.get(key)
    }

    fn range<'a, KR>(
        &self,
        range: impl RangeBounds<KR> + 'a,
    ) -> Result<Range<'_, K, V>, StorageError>
    where
        KR: Borrow<K::SelfType<'a>> + 'a,
    {
        self.inner.range(range)
    }

    fn first(&self) -> Result<Option<(AccessGuard<'_, K>, AccessGuard<'_, V>)>, StorageError> {
        self.inner.first()
    }

    fn last(&self) -> Result<Option<(AccessGuard<'_, K>, AccessGuard<'_, V>)>, StorageError> {
        self.inner.last()
    }
}

impl<K: Key + Send + 'static, V: Value + Send + 'static> Table<'_, K, V> {
    /// Inserts or replaces; returns the old value. Recorded once redb has done it.
    pub fn insert<'k, 'v>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
        value: impl Borrow<V::SelfType<'v>>,
    ) -> Result<Option<AccessGuard<'_, V>>, StorageError> {
        let bytes = self.pending.map(|_| {
            (
                K::as_bytes(key.borrow()).as_ref().to_vec(),
                V::as_bytes(value.borrow()).as_ref().to_vec(),
            )
        });
        let old = self.inner.insert(key, value)?;
        if let (Some(pending), Some((k, v))) = (self.pending, bytes) {
            let definition = self.definition;
            push(pending, k.len() + v.len(), move |tx| {
                tx.open_table(definition)?
                    .insert(K::from_bytes(&k), V::from_bytes(&v))?;
                Ok(())
            });
        }
        Ok(old)
    }

    /// Removes; returns the old value. Recorded once redb has done it.
    pub fn remove<'k>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
    ) -> Result<Option<AccessGuard<'_, V>>, StorageError> {
        let k = self
            .pending
            .map(|_| K::as_bytes(key.borrow()).as_ref().to_vec());
        let old = self.inner.remove(key)?;
        if let (Some(pending), Some(k)) = (self.pending, k) {
            let definition = self.definition;
            push(pending, k.len(), move |tx| {
                tx.open_table(definition)?.remove(K::from_bytes(&k))?;
                Ok(())
            });
        }
        Ok(old)
    }
}

fn push(
    pending: &Mutex<Pending>,
    bytes: usize,
    op: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error> + Send + 'static,
) {
    let mut pending = pending.lock().unwrap_or_else(PoisonError::into_inner);
    if pending.overflowed {
        return;
    }
    pending.bytes += bytes + OP_OVERHEAD;
    if pending.bytes > MAX_PENDING_BYTES {
        *pending = Pending {
            overflowed: true,
            ..Pending::default()
        };
        return;
    }
    pending.ops.push(Box::new(op));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop() -> Vec<Op> {
        vec![Box::new(|_: &redb::WriteTransaction| Ok(()))]
    }

    #[test]
    fn records_only_while_started_and_gives_up_past_its_bound() {
        let j = Journal::default();
        j.append(noop(), 10);
        assert_eq!(j.take().err(), Some(Broken::NotRecording));
        assert!(j.start());
        assert!(!j.start(), "one compaction at a time");
        j.append(noop(), 10);
        j.append(noop(), 10);
        assert_eq!(j.take().map(|ops| ops.len()).ok(), Some(2));
        assert_eq!(j.take().map(|ops| ops.len()).ok(), Some(0));
        j.append(noop(), MAX_PENDING_BYTES / 2);
        j.take().unwrap();
        j.append(noop(), MAX_PENDING_BYTES / 2);
        j.append(noop(), MAX_PENDING_BYTES / 2 + 1);
        assert_eq!(j.take().err(), Some(Broken::Lost), "past the bound");
        j.append(noop(), 1);
        assert_eq!(j.take().err(), Some(Broken::Lost), "for good");
        j.stop();
        assert!(j.start());
        assert!(j.take().is_ok(), "a new start is a new journal");
        j.lose();
        assert_eq!(j.take().err(), Some(Broken::Lost), "a failed commit");
    }
}
