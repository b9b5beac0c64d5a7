//! The commit path of the PDS store: a group of commits written in one transaction, the
//! writes it logs to `pds.wal` (`wal.rs`) and their replay when the store opens.

use std::collections::HashSet;
use std::path::Path;

use bytes::Bytes;
use redb::{Durability, ReadableTable, WriteTransaction};

use super::{
    BLOCKS, COMMITS, CommitRef, EVENT_TIMES, EVENTS, IndexChange, META, PdsStore, RECORDS, REPOS,
    RepoHead, StoreError, WAL_CLEAN, WAL_EPOCH, WAL_GROUP,
};
use crate::atproto::{Cid, Did};
use crate::pds::wal::{self, LogHeader, Wal};

/// Everything one commit changes, written in one transaction.
pub struct CommitBatch {
    pub did: Did,
    /// The head the commit was built on (`None` for a new repository); checked again inside
    /// the transaction.
    pub expected: Option<Cid>,
    pub head: RepoHead,
    pub blocks: Vec<(Cid, Bytes)>,
    pub index: Vec<IndexChange>,
    /// Blobs referenced by the records the commit writes.
    pub blobs: Vec<Cid>,
    /// Builds the event frame once its sequence number is known.
    pub event: Box<dyn FnOnce(u64) -> Vec<u8> + Send>,
}

/// `pds.wal` and the number of the next commit group.
///
/// Whether a start may trust what redb holds depends on what is durable in redb: `wal_clean`
/// (1: no group rides on the log) and `wal_epoch` (the epoch of the log holding the groups that
/// do). Redb is marked clean when the store opens (after replaying the log) and at a clean stop
/// ([`PdsStore::checkpoint`]); the first group after either is committed durably, marking redb
/// not clean with this run's epoch — only then do groups ride on the log. So a redb that is not
/// clean names the log that may hold acknowledged commits it lacks, and a start without that log
/// refuses instead of losing them silently.
pub(super) struct Log {
    pub(super) wal: Wal,
    pub(super) next: u64,
    /// The epoch of this run's log (its header says it).
    epoch: u64,
    /// Whether redb durably names this run's epoch and is marked not clean: groups may be
    /// logged.
    armed: bool,
    /// The second of the last append time a group wrote (`event_times`): one per second is
    /// enough for pruning the log by age (see `store/events.rs`).
    timed: u64,
}

impl Log {
    pub(super) fn new(wal: Wal, next: u64, epoch: u64) -> Log {
        Log {
            wal,
            next,
            epoch,
            armed: false,
            timed: 0,
        }
    }
}

/// A log epoch: random, so no other log (an older one, another node's) has it.
pub(super) fn new_epoch() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0 | 1
}

/// What to do at open when `pds.wal` is not the log `pds.redb` needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Refuse to open ([`StoreError::LogLost`]).
    Refuse,
    /// Open with what redb holds, losing the groups only the log had (logged at WARN).
    AcceptLoss,
}

impl PdsStore {
    /// Applies commits in order in one transaction (group commit) that one sync makes durable:
    /// of `pds.wal` usually, of redb now and then (see `wal.rs`). A commit whose expected head
    /// is not the current one (checked after the earlier commits of the group) is skipped with
    /// [`CommitFailure::HeadMoved`]; the others still apply. An error fails the whole group and
    /// changes nothing.
    pub fn commit_group(&self, batches: Vec<CommitBatch>) -> Result<Vec<Committed>, StoreError> {
        let mut tx = self.db.begin_write()?;
        let mut log = self
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let group = log.next;
        let mut out = Vec::with_capacity(batches.len());
        let mut redo = wal::Writer::default();
        // One append time per second (see `store/events.rs`): the group's first commit that
        // lands carries it when the second changed. `None` after the loop: this second is
        // stamped (now, or by an earlier group).
        let now = crate::pds::accounts::now_secs();
        let mut stamp = (log.timed != now).then_some(now);
        {
            let mut tables = Tables::open(&tx)?;
            let mut written = self.collector.written();
            for batch in batches {
                let committed =
                    apply_commit(&mut tables, batch, &mut redo, written.as_mut(), stamp)?;
                if committed.is_ok() {
                    stamp = None;
                }
                out.push(committed);
            }
            tables.meta.insert(WAL_GROUP, group)?;
            if !log.armed {
                tables.meta.insert(WAL_EPOCH, log.epoch)?;
                tables.meta.insert(WAL_CLEAN, 0)?;
            }
        }
        let logged = log.armed
            && !log.wal.checkpoint_due()
            && log.wal.append(group, &redo.0).unwrap_or_else(|e| {
                tracing::error!(error = %e, "pds.wal write failed; commits sync redb from now on");
                false
            });
        if logged {
            tx.set_durability(Durability::None)
                .map_err(|e| StoreError::Commit(e.to_string()))?;
        }
        if let Err(e) = tx.commit() {
            if logged {
                log.wal.retract(group, &redo.0);
            }
            return Err(e.into());
        }
        log.next += 1;
        if stamp.is_none() {
            log.timed = now;
        }
        if !logged {
            log.wal.checkpointed();
            log.armed = true;
        }
        Ok(out)
    }

    /// Whether the next group would be made durable by `pds.wal` alone (its sync, ≈0.1 ms),
    /// not by a sync of redb (milliseconds, more at a checkpoint). `false` while a group is
    /// being committed.
    #[must_use]
    pub fn next_commit_is_logged(&self) -> bool {
        match self.log.try_lock() {
            Ok(log) => log.armed && !log.wal.checkpoint_due(),
            Err(_) => false,
        }
    }

    /// Makes every commit durable in redb and empties `pds.wal` (at a clean stop, so the next
    /// start has nothing to replay).
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        // Redb's write lock first, then the log's, as in `commit_group`.
        let tx = self.db.begin_write()?;
        let mut log = self
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tx.open_table(META)?.insert(WAL_CLEAN, 1)?;
        tx.commit()?;
        log.wal.checkpointed();
        log.armed = false;
        Ok(())
    }
}

/// What one commit of a group came to: its event's sequence number and frame, or why not.
pub type Committed = Result<(u64, Vec<u8>), CommitFailure>;

/// Why [`PdsStore::commit_group`] did not apply a commit.
#[derive(Debug, thiserror::Error)]
pub enum CommitFailure {
    /// The head is not the one the commit was built on: a commit it was built on failed.
    #[error("the repository head moved")]
    HeadMoved,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The tables a commit writes, open for one group.
struct Tables<'tx> {
    blocks: redb::Table<'tx, &'static [u8], &'static [u8]>,
    repos: redb::Table<'tx, &'static str, &'static [u8]>,
    commits: redb::Table<'tx, (&'static str, &'static str), &'static [u8]>,
    records: redb::Table<'tx, (&'static str, &'static str, &'static str), &'static str>,
    events: redb::Table<'tx, u64, &'static [u8]>,
    event_times: redb::Table<'tx, u64, u64>,
    meta: redb::Table<'tx, &'static str, u64>,
    temp: super::temp_blobs::TempTables<'tx>,
}

impl<'tx> Tables<'tx> {
    fn open(tx: &'tx WriteTransaction) -> Result<Tables<'tx>, StoreError> {
        Ok(Tables {
            blocks: tx.open_table(BLOCKS)?,
            repos: tx.open_table(REPOS)?,
            commits: tx.open_table(COMMITS)?,
            records: tx.open_table(RECORDS)?,
            events: tx.open_table(EVENTS)?,
            event_times: tx.open_table(EVENT_TIMES)?,
            meta: tx.open_table(META)?,
            temp: super::temp_blobs::TempTables::open(tx)?,
        })
    }
}

/// The kinds of write a commit makes, as `pds.wal` names them.
const REDO_BLOCK: u8 = 1;
const REDO_HEAD: u8 = 2;
const REDO_COMMIT: u8 = 3;
const REDO_RECORD_PUT: u8 = 4;
const REDO_RECORD_DELETE: u8 = 5;
const REDO_EVENT: u8 = 6;

/// Writes one commit into the group's tables and its writes to `redo`, its blocks to `written`
/// while a block collection runs, and `time` as its event's append time if given;
/// `Ok(Err(HeadMoved))` when its expected head is not current (nothing written for it).
fn apply_commit(
    t: &mut Tables<'_>,
    batch: CommitBatch,
    redo: &mut wal::Writer,
    mut written: Option<&mut HashSet<Vec<u8>>>,
    time: Option<u64>,
) -> Result<Committed, StoreError> {
    let did = batch.did.as_str();
    let current: Option<RepoHead> = t
        .repos
        .get(did)?
        .map(|v| serde_json::from_slice(v.value()))
        .transpose()?;
    if current.as_ref().map(|h| h.commit) != batch.expected {
        return Ok(Err(CommitFailure::HeadMoved));
    }
    for (cid, bytes) in &batch.blocks {
        let cid = cid.to_bytes();
        t.blocks.insert(cid.as_slice(), bytes.as_ref())?;
        redo.byte(REDO_BLOCK);
        redo.bytes(&cid);
        redo.bytes(bytes);
        if let Some(w) = written.as_deref_mut() {
            w.insert(cid);
        }
    }
    let head = serde_json::to_vec(&batch.head)?;
    t.repos.insert(did, head.as_slice())?;
    redo.byte(REDO_HEAD);
    redo.bytes(did.as_bytes());
    redo.bytes(&head);
    let commit = serde_json::to_vec(&CommitRef {
        commit: batch.head.commit,
        blobs: batch.blobs.clone(),
    })?;
    let rev = batch.head.rev.as_str();
    t.commits.insert((did, rev), commit.as_slice())?;
    // Not in `redo`: after a crash the collector finds these referenced (see `temp_blobs`).
    t.temp.untether(did, &batch.blobs)?;
    redo.byte(REDO_COMMIT);
    for part in [did.as_bytes(), rev.as_bytes(), &commit] {
        redo.bytes(part);
    }
    for change in &batch.index {
        match change {
            IndexChange::Put {
                collection,
                rkey,
                cid,
            } => {
                let cid = cid.to_string();
                t.records
                    .insert((did, collection.as_str(), rkey.as_str()), cid.as_str())?;
                redo.byte(REDO_RECORD_PUT);
                for part in [did, collection, rkey, &cid] {
                    redo.bytes(part.as_bytes());
                }
            }
            IndexChange::Delete { collection, rkey } => {
                t.records
                    .remove((did, collection.as_str(), rkey.as_str()))?;
                redo.byte(REDO_RECORD_DELETE);
                for part in [did, collection, rkey] {
                    redo.bytes(part.as_bytes());
                }
            }
        }
    }
    let seq = t.events.last()?.map_or(0, |(k, _)| k.value()) + 1;
    let frame = (batch.event)(seq);
    t.events.insert(seq, frame.as_slice())?;
    if let Some(time) = time {
        t.event_times.insert(seq, time)?;
    }
    redo.byte(REDO_EVENT);
    redo.u64(seq);
    redo.bytes(&frame);
    Ok(Ok((seq, frame)))
}

/// At open: checks that the log is the one redb needs, writes the logged groups redb did not
/// keep into `tx` and marks redb clean (the caller commits `tx` durably). The number of the last
/// group. `path`/`wal_path` name the files in errors.
pub(super) fn recover(
    tx: &WriteTransaction,
    log: &wal::Opened,
    recovery: Recovery,
    path: &Path,
    wal_path: &Path,
) -> Result<u64, StoreError> {
    let mut tables = Tables::open(tx)?;
    let kept = tables.meta.get(WAL_GROUP)?.map_or(0, |v| v.value());
    let epoch = tables.meta.get(WAL_EPOCH)?.map(|v| v.value());
    let clean = tables.meta.get(WAL_CLEAN)?.map(|v| v.value()) == Some(1);
    let entries: &[wal::Entry] = match epoch {
        // A store from before epochs: its log is trusted as it reads.
        None => &log.entries,
        Some(e) if log.header == LogHeader::Epoch(e) => &log.entries,
        Some(_) if clean => &[],
        Some(e) => {
            let message = format!(
                "{} {}, but {} says the node did not stop cleanly: commits acknowledged after \
                 its last checkpoint (commit group {kept}) may exist only in the log of epoch \
                 {e:016x}, so starting would lose them silently. Put back the pds.wal that \
                 belongs with this pds.redb (from the same backup or snapshot), or start without \
                 them with `atcr pds recover --accept-loss` (docs/operations.md)",
                wal_path.display(),
                log.header,
                path.display(),
            );
            if recovery == Recovery::Refuse {
                return Err(StoreError::LogLost(message));
            }
            tracing::warn!(
                redb = %path.display(),
                wal = %wal_path.display(),
                kept_group = kept,
                "starting without the commits the lost pds.wal held (--accept-loss): {message}"
            );
            &[]
        }
    };
    let mut last = kept;
    for entry in entries.iter().filter(|e| e.group > kept) {
        if entry.group != last + 1 {
            return Err(StoreError::Corrupt(format!(
                "{} continues at commit group {} but {} ends at group {last}: \
                 the two files are not from the same moment",
                wal_path.display(),
                entry.group,
                path.display()
            )));
        }
        replay(&mut tables, &entry.payload).ok_or_else(|| {
            StoreError::Corrupt(format!("{}: group {}", wal_path.display(), entry.group))
        })??;
        last = entry.group;
    }
    if last > kept {
        tables.meta.insert(WAL_GROUP, last)?;
        tracing::info!(groups = last - kept, "replayed commits from pds.wal");
    }
    tables.meta.insert(WAL_CLEAN, 1)?;
    Ok(last)
}

/// Writes a group's logged writes again (recovery from `pds.wal`), each event with the
/// replay's time as its append time; `None` when the payload does not read as writes.
fn replay(t: &mut Tables<'_>, payload: &[u8]) -> Option<Result<(), StoreError>> {
    let replayed_at = crate::pds::accounts::now_secs();
    let mut r = wal::Reader(payload);
    while !r.is_empty() {
        let done = match r.byte()? {
            REDO_BLOCK => t.blocks.insert(r.bytes()?, r.bytes()?).map(drop),
            REDO_HEAD => t.repos.insert(r.str()?, r.bytes()?).map(drop),
            REDO_COMMIT => t.commits.insert((r.str()?, r.str()?), r.bytes()?).map(drop),
            REDO_RECORD_PUT => t
                .records
                .insert((r.str()?, r.str()?, r.str()?), r.str()?)
                .map(drop),
            REDO_RECORD_DELETE => t.records.remove((r.str()?, r.str()?, r.str()?)).map(drop),
            REDO_EVENT => {
                let seq = r.u64()?;
                t.events
                    .insert(seq, r.bytes()?)
                    .and_then(|_| t.event_times.insert(seq, replayed_at))
                    .map(drop)
            }
            _ => return None,
        };
        if let Err(e) = done {
            return Some(Err(e.into()));
        }
    }
    Some(Ok(()))
}
