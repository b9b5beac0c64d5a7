//! A redb [`Database`] that can be closed and opened again while the process runs. After an I/O
//! error (a full disk, typically) redb refuses every later operation with "previous I/O error"
//! until the database is reopened; the stores keep theirs in a [`DbSlot`] so that the node can
//! recover once the cause is gone, without a restart.

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redb::{
    Database, ReadTransaction, ReadableDatabase, StorageError, TransactionError, WriteTransaction,
};

/// The current database of a store, or none while it is being reopened.
pub struct DbSlot {
    current: RwLock<Option<Arc<Database>>>,
    /// One reopen at a time.
    reopening: Mutex<()>,
}

/// Why [`DbSlot::reopen`] did not put a working database in place.
#[derive(Debug, thiserror::Error)]
pub enum ReopenError<E> {
    #[error("the database is still in use")]
    Busy,
    #[error(transparent)]
    Open(E),
}

impl DbSlot {
    #[must_use]
    pub fn new(db: Database) -> DbSlot {
        DbSlot {
            current: RwLock::new(Some(Arc::new(db))),
            reopening: Mutex::new(()),
        }
    }

    /// The current database; `DatabaseClosed` while it is being reopened (or failed to).
    pub fn get(&self) -> Result<Arc<Database>, StorageError> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(StorageError::DatabaseClosed)
    }

    pub fn begin_read(&self) -> Result<ReadTransaction, TransactionError> {
        self.get()?.begin_read()
    }

    pub fn begin_write(&self) -> Result<WriteTransaction, TransactionError> {
        self.get()?.begin_write()
    }

    /// Whether `db` is the current database (a transaction begun on another one must not
    /// commit: its changes would be lost with the file that was swapped out).
    #[must_use]
    pub fn is_current(&self, db: &Arc<Database>) -> bool {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, db))
    }

    /// Puts `db` in place of the current database, which stays open for whoever still holds
    /// it. Callers make sure nobody can write to the old one any more.
    pub fn replace(&self, db: Database) {
        // Not in the middle of a reopen, which would put back the database it took out.
        let _one = self
            .reopening
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(db));
    }

    /// Whether the store cannot work until it is reopened: redb has seen an I/O error, or an
    /// earlier reopen failed. Does not wait for a writer.
    #[must_use]
    pub fn is_poisoned(&self) -> bool {
        match self.get() {
            Err(_) => true,
            Ok(db) => matches!(
                db.try_begin_write(),
                Err(TransactionError::Storage(
                    StorageError::PreviousIo | StorageError::DatabaseClosed
                ))
            ),
        }
    }

    /// Closes the current database — once nobody else holds it, waiting at most `wait` — and
    /// puts what `open` returns in its place. Meanwhile every operation answers
    /// `DatabaseClosed`. When `open` fails the slot stays empty, and a later call tries again.
    pub fn reopen<E>(
        &self,
        wait: Duration,
        open: impl FnOnce() -> Result<Database, E>,
    ) -> Result<(), ReopenError<E>> {
        let _one = self
            .reopening
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let old = self
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut old) = old {
            let deadline = Instant::now() + wait;
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        // A poisoned database reports errors while closing: they are why it is
                        // being reopened.
                        let _ = db.close();
                        break;
                    }
                    Err(still) if Instant::now() < deadline => {
                        old = still;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(still) => {
                        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(still);
                        return Err(ReopenError::Busy);
                    }
                }
            }
        }
        let db = open().map_err(ReopenError::Open)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(db));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopens_when_nobody_holds_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.redb");
        let slot = DbSlot::new(Database::create(&path).unwrap());
        assert!(!slot.is_poisoned());
        let held = slot.get().unwrap();
        let r = slot.reopen(Duration::from_millis(20), || Database::create(&path));
        assert!(matches!(r, Err(ReopenError::Busy)));
        assert!(slot.begin_read().is_ok(), "the old one is put back");
        drop(held);
        let r = slot.reopen(Duration::from_millis(20), || {
            Err::<Database, _>(std::io::Error::other("no"))
        });
        assert!(matches!(r, Err(ReopenError::Open(_))));
        assert!(slot.is_poisoned(), "closed until a reopen succeeds");
        assert!(slot.begin_write().is_err());
        slot.reopen(Duration::ZERO, || Database::create(&path))
            .unwrap();
        assert!(!slot.is_poisoned());
    }
}
