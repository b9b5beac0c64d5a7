//! `pds.redb`: the PDS's source of truth — repository blocks, heads, the record index, the
//! event log, accounts, sessions and the PLC operation log.
//!
//! A commit's blocks, the new head, the record index changes and its event commit in ONE write
//! transaction ([`PdsStore::commit_group`]), so a crash leaves every repository at its last
//! acknowledged commit. Commits go through the committer thread (`repo/committer.rs`) and are
//! made durable by `pds.wal` (`wal.rs`) or, now and then, by redb itself; other writes are
//! ordinary durable transactions, through `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::atproto::{Cid, Did, Tid};
use crate::dbslot::{DbSlot, ReopenError};
use crate::pds::wal::Wal;

mod blobs;
mod blocks;
mod collect;
mod commit;
mod events;
mod remote;
mod temp_blobs;

pub use blocks::Snapshot;
pub use collect::{BlockCollection, StoreSize, compact};
pub use commit::{CommitBatch, CommitFailure, Committed, Recovery};
pub use remote::{MirrorWrite, RemoteUser};
pub use temp_blobs::{TempAdmit, TempExpiry};

/// CID (binary) → block bytes: MST nodes, records and commits of every repository.
const BLOCKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blocks");
/// DID → [`RepoHead`] (JSON).
const REPOS: TableDefinition<&str, &[u8]> = TableDefinition::new("repos");
/// (DID, collection, rkey) → record CID (string): what `listRecords` pages through.
const RECORDS: TableDefinition<(&str, &str, &str), &str> = TableDefinition::new("records");
/// seq → one firehose frame (DAG-CBOR header + body), gap-free from the oldest kept event
/// (the log keeps `pds.events_keep_secs`; see `store/events.rs`).
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// seq → when the event was appended (unix seconds), for pruning the log by age. Events
/// replayed from `pds.wal`, or written before this table existed, have none.
const EVENT_TIMES: TableDefinition<u64, u64> = TableDefinition::new("event_times");
/// DID → account (JSON, see `accounts.rs`).
pub(crate) const ACCOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("accounts");
/// normalized handle → DID.
pub(crate) const HANDLES: TableDefinition<&str, &str> = TableDefinition::new("handles");
/// (DID, app password name) → app password (JSON).
pub(crate) const APP_PASSWORDS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("app_passwords");
/// refresh token id → session (JSON). Deleting the row revokes the session's tokens.
pub(crate) const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
/// (DID, index) → PLC log entry (JSON) of the built-in directory.
pub(crate) const PLC_OPS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("plc_ops");
/// (DID, blob CID) → blob metadata (JSON): blobs uploaded to a repository.
pub(crate) const REPO_BLOBS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("repo_blobs");

/// (DID, rev) → [`CommitRef`] (JSON): each commit's CID and the blobs its records reference,
/// for `getRepo` and `listBlobs` with `since`.
const COMMITS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("commits");

/// name → number: `wal_group`, the last commit group written; `wal_epoch`, the epoch of the
/// `pds.wal` that holds the groups redb may not have made durable; `wal_clean`, 1 while no group
/// rides on the log (see `store/commit.rs`).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const WAL_GROUP: &str = "wal_group";
const WAL_EPOCH: &str = "wal_epoch";
const WAL_CLEAN: &str = "wal_clean";

/// A commit of a repository, by revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRef {
    pub commit: Cid,
    /// Blobs referenced by the records this commit wrote.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blobs: Vec<Cid>,
}

/// Errors of the PDS store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("pds database: {0}")]
    Db(#[from] redb::Error),
    #[error("pds record is corrupt: {0}")]
    Corrupt(String),
    #[error("pds commit failed: {0}")]
    Commit(String),
    /// `pds.wal` is not the log `pds.redb` needs: acknowledged commits may be lost.
    #[error("{0}")]
    LogLost(String),
    /// Storage failed (full disk, I/O error) and the store is closed until it is reopened.
    #[error("pds storage unavailable: {0}")]
    Unavailable(String),
    #[error("pds task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

crate::macros::redb_errors_into!(StoreError::Db);

impl StoreError {
    /// Whether storage failed (full, I/O error, closed for a reopen) rather than the request.
    #[must_use]
    pub fn is_storage_failure(&self) -> bool {
        matches!(
            self,
            StoreError::Db(
                redb::Error::Io(_) | redb::Error::PreviousIo | redb::Error::DatabaseClosed
            ) | StoreError::Unavailable(_)
        )
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

/// The head of a repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoHead {
    /// The CID of the signed commit block.
    pub commit: Cid,
    /// The commit's revision.
    pub rev: Tid,
    /// The MST root the commit signs.
    pub data: Cid,
    /// Whether the repository is active (deactivated and taken-down repos are not served).
    #[serde(default = "yes")]
    pub active: bool,
}

/// A blob uploaded to a repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobMeta {
    pub mime_type: String,
    pub size: u64,
    pub created: u64,
}

fn yes() -> bool {
    true
}

/// A change of the record index.
#[derive(Debug, Clone)]
pub enum IndexChange {
    Put {
        collection: String,
        rkey: String,
        cid: Cid,
    },
    Delete {
        collection: String,
        rkey: String,
    },
}

/// redb's page cache for the PDS store (redb's default is 1 GiB per database): enough for the
/// interior pages and hot MST nodes, while the memory of a long-running node stays bounded.
const CACHE_BYTES: usize = 32 << 20;

/// The PDS database. Cheap to clone.
#[derive(Clone)]
pub struct PdsStore {
    db: Arc<DbSlot>,
    log: Arc<Mutex<commit::Log>>,
    /// What a block collection shares with the committer (see `store/collect.rs`).
    collector: Arc<collect::Collector>,
    /// `pds.redb`, for [`PdsStore::reopen`].
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for PdsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PdsStore")
    }
}

impl PdsStore {
    /// Opens (or creates) `pds.redb` at `path` and `pds.wal` beside it, replaying the commit
    /// groups the log holds that redb did not keep. A log that is missing, empty or not the one
    /// redb names while redb says groups may exist only there is refused
    /// ([`StoreError::LogLost`]).
    pub fn open(path: &Path) -> Result<PdsStore, StoreError> {
        PdsStore::open_with(path, Recovery::Refuse)
    }

    /// [`PdsStore::open`], with `Recovery::AcceptLoss` starting without the groups a lost log
    /// held (`atcr pds recover --accept-loss`).
    pub fn open_with(path: &Path, recovery: Recovery) -> Result<PdsStore, StoreError> {
        let (db, log) = open_files(path, recovery)?;
        Ok(PdsStore {
            db: Arc::new(DbSlot::new(db)),
            log: Arc::new(Mutex::new(log)),
            collector: Arc::default(),
            path: Arc::new(path.to_owned()),
        })
    }

    /// Whether the store refuses work until it is reopened: redb saw an I/O error (a full disk),
    /// or an earlier reopen failed.
    #[must_use]
    pub fn is_poisoned(&self) -> bool {
        self.db.is_poisoned()
    }

    /// Closes `pds.redb` and opens it again as a start does (replaying `pds.wal`, which holds
    /// every group acknowledged since redb's last durable commit): recovery from an I/O error
    /// without a restart; nothing to do unless [`PdsStore::is_poisoned`]. Commits fail with a
    /// storage error meanwhile; a failed reopen leaves the store closed (every operation fails)
    /// until a later call succeeds.
    pub fn reopen(&self) -> Result<(), StoreError> {
        // A healthy database may have a write transaction running: never reopen under it.
        if !self.is_poisoned() {
            return Ok(());
        }
        let mut log = self
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut fresh = None;
        self.db
            .reopen(REOPEN_WAIT, || {
                let (db, new_log) = open_files(&self.path, Recovery::Refuse)?;
                fresh = Some(new_log);
                Ok::<_, StoreError>(db)
            })
            .map_err(|e| match e {
                ReopenError::Busy => StoreError::Unavailable("pds.redb is still in use".into()),
                ReopenError::Open(e) => e,
            })?;
        if let Some(new_log) = fresh {
            *log = new_log;
        }
        tracing::warn!(path = %self.path.display(), "pds.redb reopened after a storage error");
        Ok(())
    }

    /// A read transaction (for the account, session and PLC tables).
    pub(crate) fn read(&self) -> Result<redb::ReadTransaction, StoreError> {
        Ok(self.db.begin_read()?)
    }

    /// Runs a write transaction synchronously (CLI and tests).
    pub(crate) fn write_sync<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&WriteTransaction) -> Result<T, E>,
        E: From<StoreError>,
    {
        let tx = self.db.begin_write().map_err(StoreError::from)?;
        let out = f(&tx)?;
        tx.commit().map_err(StoreError::from)?;
        Ok(out)
    }

    /// Runs a write transaction on a blocking thread and commits it if `f` succeeds.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&WriteTransaction) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_write().map_err(StoreError::from)?;
            let out = f(&tx)?;
            tx.commit().map_err(StoreError::from)?;
            Ok(out)
        })
        .await
        .map_err(StoreError::from)?
    }

    /// The head of a repository.
    pub fn head(&self, did: &Did) -> Result<Option<RepoHead>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(REPOS)?;
        table
            .get(did.as_str())?
            .map(|v| serde_json::from_slice(v.value()).map_err(StoreError::from))
            .transpose()
    }

    /// Every repository, in DID order, after `cursor`, at most `limit`.
    pub fn list_repos(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(Did, RepoHead)>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(REPOS)?;
        let mut out = Vec::new();
        let range = match cursor {
            Some(c) => {
                table.range::<&str>((std::ops::Bound::Excluded(c), std::ops::Bound::Unbounded))?
            }
            None => table.range::<&str>(..)?,
        };
        for item in range {
            let (k, v) = item?;
            let did: Did = k
                .value()
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("repo key {}", k.value())))?;
            out.push((did, serde_json::from_slice(v.value())?));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The CID of a record from the index.
    pub fn record_cid(
        &self,
        did: &Did,
        collection: &str,
        rkey: &str,
    ) -> Result<Option<Cid>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(RECORDS)?;
        table
            .get((did.as_str(), collection, rkey))?
            .map(|v| {
                v.value()
                    .parse::<Cid>()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .transpose()
    }

    /// The number kept under `name` in the store's meta table, first set to `value` if none
    /// is (`dry`: not set, `value` answered).
    pub fn meta_or_insert(&self, name: &str, value: u64, dry: bool) -> Result<u64, StoreError> {
        if let Some(v) = self.db.begin_read()?.open_table(META)?.get(name)? {
            return Ok(v.value());
        }
        if dry {
            return Ok(value);
        }
        let tx = self.db.begin_write()?;
        let kept = {
            let mut meta = tx.open_table(META)?;
            let existing = meta.get(name)?.map(|v| v.value());
            if let Some(v) = existing {
                v
            } else {
                meta.insert(name, value)?;
                value
            }
        };
        tx.commit()?;
        Ok(kept)
    }

    /// Records of one collection in rkey order (or reversed), after `cursor` (exclusive).
    pub fn list_records(
        &self,
        did: &Did,
        collection: &str,
        cursor: Option<&str>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<(String, Cid)>, StoreError> {
        use std::ops::Bound::{Excluded, Included};
        let tx = self.db.begin_read()?;
        let table = tx.open_table(RECORDS)?;
        let d = did.as_str();
        // rkeys are ASCII; U+10FFFF sorts after all of them.
        let (lo, hi) = match (cursor, reverse) {
            (Some(c), false) => (Excluded((d, collection, c)), Included((d, collection, MAX))),
            (Some(c), true) => (Included((d, collection, "")), Excluded((d, collection, c))),
            (None, _) => (
                Included((d, collection, "")),
                Included((d, collection, MAX)),
            ),
        };
        let range = table.range::<(&str, &str, &str)>((lo, hi))?;
        let mut out = Vec::new();
        let mut push = |item: RecordEntry<'_>| -> Result<bool, StoreError> {
            let (k, v) = item?;
            let cid = v
                .value()
                .parse::<Cid>()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            out.push((k.value().2.to_owned(), cid));
            Ok(out.len() < limit)
        };
        if reverse {
            for item in range.rev() {
                if !push(item)? {
                    break;
                }
            }
        } else {
            for item in range {
                if !push(item)? {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The collections a repository has records in, in order.
    pub fn collections(&self, did: &Did) -> Result<Vec<String>, StoreError> {
        use std::ops::Bound::{Excluded, Included};
        let tx = self.db.begin_read()?;
        let table = tx.open_table(RECORDS)?;
        let d = did.as_str();
        let mut out: Vec<String> = Vec::new();
        let mut last = String::new();
        loop {
            let lo = if out.is_empty() {
                Included((d, "", ""))
            } else {
                Excluded((d, last.as_str(), MAX))
            };
            let Some(item) = table
                .range::<(&str, &str, &str)>((lo, Included((d, MAX, MAX))))?
                .next()
            else {
                break;
            };
            let (k, _) = item?;
            last = k.value().1.to_owned();
            out.push(last.clone());
        }
        Ok(out)
    }

    /// The commit of `did` at revision `rev`, if it was made here (commits from before this
    /// table existed are not known).
    pub fn commit_at(&self, did: &Did, rev: &str) -> Result<Option<CommitRef>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(COMMITS)?;
        Ok(table
            .get((did.as_str(), rev))?
            .map(|v| serde_json::from_slice(v.value()))
            .transpose()?)
    }
}

/// How long a reopen waits for requests still holding the old database.
const REOPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Opens `pds.redb` at `path` and `pds.wal` beside it, replays the log and starts this run's.
fn open_files(path: &Path, recovery: Recovery) -> Result<(Database, commit::Log), StoreError> {
    let db = Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create(path)?;
    let wal_path = path.with_extension("wal");
    let io = |e: std::io::Error| StoreError::Commit(format!("{}: {e}", wal_path.display()));
    let (mut wal, opened) = Wal::open(&wal_path).map_err(io)?;
    let tx = db.begin_write()?;
    tx.open_table(ACCOUNTS)?;
    tx.open_table(HANDLES)?;
    tx.open_table(APP_PASSWORDS)?;
    tx.open_table(SESSIONS)?;
    tx.open_table(PLC_OPS)?;
    tx.open_table(REPO_BLOBS)?;
    temp_blobs::TempTables::open(&tx)?;
    let last = commit::recover(&tx, &opened, recovery, path, &wal_path)?;
    tx.commit()?;
    // Redb now holds everything (and says so): the log of this run starts afresh.
    let epoch = commit::new_epoch();
    wal.reset(epoch).map_err(io)?;
    Ok((db, commit::Log::new(wal, last + 1, epoch)))
}

type RecordEntry<'a> = Result<
    (
        redb::AccessGuard<'a, (&'static str, &'static str, &'static str)>,
        redb::AccessGuard<'a, &'static str>,
    ),
    redb::StorageError,
>;

const MAX: &str = "\u{10FFFF}";
