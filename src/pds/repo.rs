//! The repository write path: validate, update the MST, sign one commit, and persist blocks,
//! head, record index and the `#commit` event in one redb transaction.
//!
//! Writes to one repository are built one after another under a per-DID async mutex; writes to
//! different repositories are built concurrently. Built commits are made durable by the
//! [`committer`] in groups: a commit is built on the previous one while that one still waits
//! for its fsync (its head and new blocks are kept in the repository's pending chain), and
//! every writer is answered only once its commit is durable. If a group fails, the commits
//! built on it fail too (their expected head never lands), and the repository's next write
//! starts again from the store.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use tokio::sync::broadcast;

use super::events::CommitEvent;
use super::store::{CommitBatch, CommitFailure, IndexChange, PdsStore, RepoHead, StoreError};
use crate::atproto::blockstore::{BlockStore, BlockStoreError};
use crate::atproto::car::CarWriter;
use crate::atproto::lexicon::Catalog;
use crate::atproto::mst::{Mst, RecordOp, proof_blocks};
use crate::atproto::syntax::TidClock;
use crate::atproto::{Cid, Datetime, Did, Keypair, Nsid, RecordKey, Tid, UnsignedCommit, Value};
use committer::Committer;

/// Why a write was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("repository not found: {0}")]
    RepoNotFound(Did),
    #[error("repository already exists: {0}")]
    RepoExists(Did),
    #[error("{0}")]
    InvalidSwap(String),
    #[error("{0}")]
    InvalidRequest(String),
    /// An update or delete of a record that does not exist (`collection/rkey`).
    #[error("Could not find a record with key: {0}")]
    RecordNotFound(String),
    #[error("no signing key for {0}")]
    NoKey(Did),
    #[error("repository data: {0}")]
    Data(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<CommitFailure> for RepoError {
    fn from(e: CommitFailure) -> Self {
        match e {
            CommitFailure::HeadMoved => RepoError::InvalidSwap("the repository changed".into()),
            CommitFailure::Store(e) => RepoError::Store(e),
        }
    }
}

impl From<crate::atproto::mst::MstError> for RepoError {
    fn from(e: crate::atproto::mst::MstError) -> Self {
        RepoError::Data(e.to_string())
    }
}

impl From<crate::atproto::car::CarError> for RepoError {
    fn from(e: crate::atproto::car::CarError) -> Self {
        RepoError::Data(e.to_string())
    }
}

/// An expectation on a record's current CID: `None` means "must not exist".
pub type SwapRecord = Option<Cid>;

/// One write of `applyWrites` (or the single write of `createRecord`/`putRecord`/`deleteRecord`).
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// A new record; fails if the key exists. A missing rkey gets a fresh TID.
    Create {
        collection: Nsid,
        rkey: Option<RecordKey>,
        value: Value,
    },
    /// Creates or replaces a record (`putRecord`).
    Update {
        collection: Nsid,
        rkey: RecordKey,
        value: Value,
        swap_record: Option<SwapRecord>,
    },
    /// Replaces a record; fails if it does not exist (`applyWrites`' `#update`).
    Replace {
        collection: Nsid,
        rkey: RecordKey,
        value: Value,
    },
    /// Removes a record; fails if it does not exist.
    Delete {
        collection: Nsid,
        rkey: RecordKey,
        swap_record: Option<SwapRecord>,
    },
}

/// Whether records are checked against their lexicon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Validation {
    /// Validate records of known lexicons; accept others as plain data.
    #[default]
    IfKnown,
    /// The lexicon must be known and the record valid.
    Require,
    /// Only the data model is checked.
    Skip,
}

/// What one write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteResult {
    Create {
        uri: String,
        cid: Cid,
        validated: bool,
    },
    Update {
        uri: String,
        cid: Cid,
        validated: bool,
    },
    Delete,
}

/// A commit that was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    pub cid: Cid,
    pub rev: Tid,
    pub seq: u64,
}

/// Commits of one repository that are built and queued but not yet known durable, oldest
/// first. The next commit builds on the newest of them.
#[derive(Default)]
struct Pending {
    chain: VecDeque<PendingCommit>,
    /// The tree of the newest commit with the nodes earlier writes loaded, so the next write
    /// does not read and decode them again; dropped after [`MST_CACHE_USES`] commits (which
    /// bounds the nodes it holds) and when a commit fails.
    mst: Option<(Mst, u32)>,
}

/// Commits one cached tree serves before it is read afresh from the store.
const MST_CACHE_USES: u32 = 256;

struct PendingCommit {
    head: RepoHead,
    /// The blocks the commit adds (MST nodes, records, the commit block).
    blocks: Arc<HashMap<Cid, Bytes>>,
}

impl Pending {
    fn position(&self, commit: &Cid) -> Option<usize> {
        self.chain.iter().position(|p| &p.head.commit == commit)
    }

    /// `commit` is durable, and so is everything queued before it.
    fn landed(&mut self, commit: &Cid) {
        if let Some(i) = self.position(commit) {
            self.chain.drain(..=i);
        }
    }

    /// A commit failed: so will everything built on it. The chain starts again from the
    /// store (a commit still in flight that lands meanwhile makes the next write retry-worthy
    /// `InvalidSwap`, never a lost or forked commit).
    fn failed(&mut self) {
        self.chain.clear();
        self.mst = None;
    }

    /// The cached tree, if it is the one whose root is `data`.
    fn tree(&mut self, data: Cid) -> Option<Mst> {
        match self.mst.take() {
            Some((mst, uses)) if uses < MST_CACHE_USES && mst.root_cid() == data => {
                self.mst = Some((mst.clone(), uses + 1));
                Some(mst)
            }
            _ => None,
        }
    }
}

/// The repositories of this PDS.
pub struct Repos {
    store: PdsStore,
    catalog: Arc<Catalog>,
    locks: Mutex<HashMap<Did, Arc<tokio::sync::Mutex<Pending>>>>,
    keys: RwLock<HashMap<Did, Arc<Keypair>>>,
    clock: TidClock,
    events: broadcast::Sender<(u64, Bytes)>,
    committer: Committer,
}

impl Repos {
    /// The repository layer over `store`; records of collections in `catalog` are validated.
    #[must_use]
    pub fn new(store: PdsStore, catalog: Arc<Catalog>) -> Repos {
        let (events, _) = broadcast::channel(1024);
        Repos {
            committer: Committer::start(store.clone(), events.clone()),
            store,
            catalog,
            locks: Mutex::new(HashMap::new()),
            keys: RwLock::new(HashMap::new()),
            clock: TidClock::random(),
            events,
        }
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &PdsStore {
        &self.store
    }

    /// The lexicons records are validated against.
    #[must_use]
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// New events as they are committed: `(seq, frame)`. A receiver that lags sees
    /// `RecvError::Lagged` and must catch up from the log.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<(u64, Bytes)> {
        self.events.subscribe()
    }

    /// Sets the key that signs `did`'s commits.
    pub fn register_key(&self, did: Did, key: Arc<Keypair>) {
        if let Ok(mut keys) = self.keys.write() {
            keys.insert(did, key);
        }
    }

    /// The key that signs `did`'s commits.
    #[must_use]
    pub fn key(&self, did: &Did) -> Option<Arc<Keypair>> {
        self.keys.read().ok().and_then(|k| k.get(did).cloned())
    }

    fn lock_for(&self, did: &Did) -> Arc<tokio::sync::Mutex<Pending>> {
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(did.clone()).or_default().clone()
    }

    fn next_rev(&self, after: Option<&Tid>) -> Tid {
        let rev = self.clock.next();
        match after {
            Some(prev) if rev.as_str() <= prev.as_str() => {
                Tid::from_parts(prev.timestamp_micros() + 1, rev.clock_id())
            }
            _ => rev,
        }
    }

    /// Publishes an event that was just committed to the log.
    pub fn publish(&self, seq: u64, frame: Vec<u8>) {
        // No receivers is fine: subscribers catch up from the log.
        let _ = self.events.send((seq, Bytes::from(frame)));
    }

    /// Creates an empty repository for `did`, signed with `key` (which is registered).
    pub async fn create_repo(&self, did: &Did, key: Arc<Keypair>) -> Result<CommitInfo, RepoError> {
        let lock = self.lock_for(did);
        let pending = lock.lock().await;
        if !pending.chain.is_empty() || self.store.head(did)?.is_some() {
            return Err(RepoError::RepoExists(did.clone()));
        }
        self.register_key(did.clone(), key.clone());
        let mut mst = Mst::new();
        let data = mst.root_cid();
        let mut blocks = mst.take_new_blocks();
        let rev = self.next_rev(None);
        let commit = UnsignedCommit::new(did.clone(), data, rev.clone()).sign(&key);
        let (commit_cid, commit_bytes) = (commit.cid(), Bytes::from(commit.to_cbor()));
        let mut car = CarWriter::new(Vec::new(), &[commit_cid])?;
        car.write_block(&commit_cid, &commit_bytes)?;
        for (cid, bytes) in &blocks {
            car.write_block(cid, bytes)?;
        }
        blocks.push((commit_cid, commit_bytes));
        let event = CommitEvent {
            repo: did.clone(),
            commit: commit_cid,
            rev: rev.clone(),
            since: None,
            blocks: car.finish()?,
            ops: Vec::new(),
            blobs: Vec::new(),
            prev_data: None,
            time: Datetime::now(),
        };
        let batch = CommitBatch {
            did: did.clone(),
            expected: None,
            head: RepoHead {
                commit: commit_cid,
                rev: rev.clone(),
                data,
                active: true,
            },
            blocks,
            index: Vec::new(),
            blobs: Vec::new(),
            event: Box::new(move |seq| event.frame(seq)),
        };
        let seq = self.durable(self.committer.submit(batch)).await?;
        Ok(CommitInfo {
            cid: commit_cid,
            rev,
            seq,
        })
    }

    /// Waits for the committer's answer.
    async fn durable(
        &self,
        answer: tokio::sync::oneshot::Receiver<committer::Outcome>,
    ) -> Result<u64, RepoError> {
        match answer.await {
            Ok(outcome) => Ok(outcome?),
            Err(_) => Err(StoreError::Commit("the commit thread stopped".into()).into()),
        }
    }

    /// Applies `writes` to `did`'s repository as one signed commit. With `swap_commit`, the
    /// repository's current commit must be that CID (else `InvalidSwap`).
    pub async fn apply_writes(
        &self,
        did: &Did,
        writes: Vec<WriteOp>,
        swap_commit: Option<Cid>,
        validation: Validation,
    ) -> Result<(CommitInfo, Vec<WriteResult>), RepoError> {
        let key = self.key(did).ok_or_else(|| RepoError::NoKey(did.clone()))?;
        // Validation needs no lock and no I/O beyond blob lookups: do it first.
        let mut prepared = Vec::with_capacity(writes.len());
        for w in writes {
            prepared.push(self.prepare(did, w, validation)?);
        }
        let lock = self.lock_for(did);
        let mut pending = lock.lock().await;
        let head = match pending.chain.back() {
            Some(p) => p.head.clone(),
            None => self
                .store
                .head(did)?
                .ok_or_else(|| RepoError::RepoNotFound(did.clone()))?,
        };
        if !head.active {
            return Err(RepoError::InvalidRequest(
                "repository is deactivated".into(),
            ));
        }
        if let Some(expected) = swap_commit
            && expected != head.commit
        {
            return Err(RepoError::InvalidSwap(format!(
                "commit was at {}",
                head.commit
            )));
        }
        let rev = self.next_rev(Some(&head.rev));
        let store = self.store.clone();
        let did2 = did.clone();
        let layers: Vec<_> = pending.chain.iter().map(|p| p.blocks.clone()).collect();
        let tree = pending.tree(head.data);
        let cached = tree.is_some();
        let make = move || build_commit(&store, &layers, tree, &did2, &head, prepared, &key, rev);
        let built = if cached {
            // On the cached tree a commit is a fraction of a millisecond of CPU: cheaper here
            // than handed to a blocking thread and back. Reading the tree afresh is not.
            make()?
        } else {
            tokio::task::spawn_blocking(make)
                .await
                .map_err(StoreError::from)??
        };
        let uses = pending.mst.as_ref().map_or(0, |m| m.1);
        pending.mst = Some((built.mst.clone(), uses));
        let (info, results) = (built.info, built.results);
        pending.chain.push_back(PendingCommit {
            head: built.batch.head.clone(),
            blocks: Arc::new(built.batch.blocks.iter().cloned().collect()),
        });
        let answer = self.committer.submit(built.batch);
        drop(pending);
        // The chain is tidied by a task of its own, so a writer that goes away (its client
        // hung up) cannot leave a commit in it that never landed.
        let commit = info.cid;
        let settled = tokio::spawn(async move {
            let outcome = answer.await;
            let mut pending = lock.lock().await;
            match &outcome {
                Ok(Ok(_)) => pending.landed(&commit),
                _ => pending.failed(),
            }
            outcome
        });
        match settled.await {
            Ok(Ok(Ok(seq))) => Ok((CommitInfo { seq, ..info }, results)),
            Ok(Ok(Err(e))) => Err(e.into()),
            _ => Err(StoreError::Commit("the commit thread stopped".into()).into()),
        }
    }

    fn prepare(
        &self,
        did: &Did,
        w: WriteOp,
        validation: Validation,
    ) -> Result<Prepared, RepoError> {
        let (collection, rkey, value, existing, swap) = match w {
            WriteOp::Create {
                collection,
                rkey,
                value,
            } => {
                let rkey = match rkey {
                    Some(k) => k,
                    None => self
                        .clock
                        .next()
                        .as_str()
                        .parse()
                        .map_err(|_| RepoError::Data("TID is not a record key".into()))?,
                };
                (collection, rkey, value, Existing::Forbidden, None)
            }
            WriteOp::Update {
                collection,
                rkey,
                value,
                swap_record,
            } => (collection, rkey, value, Existing::Either, swap_record),
            WriteOp::Replace {
                collection,
                rkey,
                value,
            } => (collection, rkey, value, Existing::Required, None),
            WriteOp::Delete {
                collection,
                rkey,
                swap_record,
            } => {
                return Ok(Prepared::Delete {
                    collection,
                    rkey,
                    swap: swap_record,
                });
            }
        };
        let (value, validated) = self.check_record(did, &collection, value, validation)?;
        Ok(Prepared::Put {
            collection,
            rkey,
            value,
            validated,
            existing,
            swap,
        })
    }

    /// Checks a record: `$type` (set to the collection if absent), the lexicon if known, and
    /// that its blobs were uploaded to this repository. The key is any valid record key
    /// (checked when parsed), whatever type the lexicon declares: the reference PDS checks
    /// only the syntax too, and ATCR writers key `io.atcr.manifest` records by digest
    /// (`sha256:<hex>`) although the lexicon says `tid`.
    fn check_record(
        &self,
        did: &Did,
        collection: &Nsid,
        value: Value,
        validation: Validation,
    ) -> Result<(Value, bool), RepoError> {
        let Value::Map(mut map) = value else {
            return Err(RepoError::InvalidRequest("record must be an object".into()));
        };
        match map.get("$type") {
            None => {
                map.insert("$type".into(), Value::String(collection.to_string()));
            }
            Some(Value::String(t)) if t == collection.as_str() => {}
            Some(_) => {
                return Err(RepoError::InvalidRequest(format!(
                    "record $type must be {collection}"
                )));
            }
        }
        let value = Value::Map(map);
        let known = self.catalog.get(collection.as_str()).is_some();
        let validated = match (validation, known) {
            (Validation::Skip, _) | (Validation::IfKnown, false) => false,
            (Validation::Require, false) => {
                return Err(RepoError::InvalidRequest(format!(
                    "lexicon not found: {collection}"
                )));
            }
            (_, true) => {
                self.catalog
                    .validate_record(collection, &value)
                    .map_err(|e| RepoError::InvalidRequest(format!("invalid record: {e}")))?;
                true
            }
        };
        for blob in value.blobs() {
            if !self.store.has_blob(did, &blob.cid)? {
                return Err(RepoError::InvalidRequest(format!(
                    "blob {} was not uploaded to this repository",
                    blob.cid
                )));
            }
        }
        Ok((value, validated))
    }
}

enum Prepared {
    Put {
        collection: Nsid,
        rkey: RecordKey,
        value: Value,
        validated: bool,
        existing: Existing,
        swap: Option<SwapRecord>,
    },
    Delete {
        collection: Nsid,
        rkey: RecordKey,
        swap: Option<SwapRecord>,
    },
}

/// Whether a put may, must or must not find a record at its key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Existing {
    Forbidden,
    Required,
    Either,
}

fn check_swap(swap: Option<SwapRecord>, current: Option<Cid>, key: &str) -> Result<(), RepoError> {
    match swap {
        Some(expected) if expected != current => Err(RepoError::InvalidSwap(format!(
            "record {key} is at {}",
            current.map_or_else(|| "nothing".to_owned(), |c| c.to_string())
        ))),
        _ => Ok(()),
    }
}

/// Blocks of the repository plus the ones this commit created.
struct Overlay<'a> {
    base: &'a dyn BlockStore,
    fresh: HashMap<Cid, Bytes>,
}

impl BlockStore for Overlay<'_> {
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, BlockStoreError> {
        match self.fresh.get(cid) {
            Some(b) => Ok(Some(b.clone())),
            None => self.base.get(cid),
        }
    }
    fn put(&self, _cid: Cid, _bytes: Bytes) -> Result<(), BlockStoreError> {
        Err(BlockStoreError("overlay is read-only".into()))
    }
}

/// The durable blocks plus those of the pending commits the new one builds on.
struct Layered<'a> {
    durable: &'a dyn BlockStore,
    pending: &'a [Arc<HashMap<Cid, Bytes>>],
}

impl BlockStore for Layered<'_> {
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, BlockStoreError> {
        match self.pending.iter().rev().find_map(|layer| layer.get(cid)) {
            Some(b) => Ok(Some(b.clone())),
            None => self.durable.get(cid),
        }
    }
    fn put(&self, _cid: Cid, _bytes: Bytes) -> Result<(), BlockStoreError> {
        Err(BlockStoreError("pending blocks are read-only".into()))
    }
}

/// A commit built and signed, ready for the committer.
struct Built {
    /// The new tree (its blocks in `batch`).
    mst: Mst,
    /// The commit (its `seq` is known once durable).
    info: CommitInfo,
    results: Vec<WriteResult>,
    batch: CommitBatch,
}

/// Builds the commit applying `writes` on top of `head`, whose blocks are durable in `store`
/// or in the `pending` layers.
#[allow(clippy::too_many_arguments)]
fn build_commit(
    store: &PdsStore,
    pending: &[Arc<HashMap<Cid, Bytes>>],
    tree: Option<Mst>,
    did: &Did,
    head: &RepoHead,
    writes: Vec<Prepared>,
    key: &Keypair,
    rev: Tid,
) -> Result<Built, RepoError> {
    let durable = store.snapshot()?;
    let snapshot = Layered {
        durable: &durable,
        pending,
    };
    let mut mst = match tree {
        Some(mst) => mst,
        None => Mst::load(&snapshot, head.data)?,
    };
    let mut ops = Vec::new();
    let mut results = Vec::new();
    let mut index = Vec::new();
    let mut record_blocks: BTreeMap<Cid, Bytes> = BTreeMap::new();
    let mut blobs = Vec::new();
    for w in writes {
        match w {
            Prepared::Put {
                collection,
                rkey,
                value,
                validated,
                existing,
                swap,
            } => {
                let path = format!("{collection}/{rkey}");
                let current = mst.get(&snapshot, &path)?;
                match (existing, current) {
                    (Existing::Forbidden, Some(_)) => {
                        return Err(RepoError::InvalidRequest(format!(
                            "record {path} already exists"
                        )));
                    }
                    (Existing::Required, None) => return Err(RepoError::RecordNotFound(path)),
                    _ => {}
                }
                check_swap(swap, current, &path)?;
                let bytes = value.to_cbor();
                let cid = Cid::for_cbor(&bytes);
                blobs.extend(value.blobs().into_iter().map(|b| b.cid));
                record_blocks.insert(cid, Bytes::from(bytes));
                mst.insert(&snapshot, &path, cid)?;
                let uri = format!("at://{did}/{path}");
                match current {
                    None => {
                        ops.push(RecordOp::Create { key: path, cid });
                        results.push(WriteResult::Create {
                            uri,
                            cid,
                            validated,
                        });
                    }
                    Some(prev) => {
                        if prev != cid {
                            ops.push(RecordOp::Update {
                                key: path,
                                cid,
                                prev,
                            });
                        }
                        results.push(WriteResult::Update {
                            uri,
                            cid,
                            validated,
                        });
                    }
                }
                index.push(IndexChange::Put {
                    collection: collection.to_string(),
                    rkey: rkey.to_string(),
                    cid,
                });
            }
            Prepared::Delete {
                collection,
                rkey,
                swap,
            } => {
                let path = format!("{collection}/{rkey}");
                let current = mst.get(&snapshot, &path)?;
                check_swap(swap, current, &path)?;
                let Some(prev) = mst.delete(&snapshot, &path)? else {
                    return Err(RepoError::RecordNotFound(path));
                };
                ops.push(RecordOp::Delete { key: path, prev });
                results.push(WriteResult::Delete);
                index.push(IndexChange::Delete {
                    collection: collection.to_string(),
                    rkey: rkey.to_string(),
                });
            }
        }
    }
    let data = mst.root_cid();
    let mst_blocks = mst.take_new_blocks();
    let commit = UnsignedCommit::new(did.clone(), data, rev.clone()).sign(key);
    let (commit_cid, commit_bytes) = (commit.cid(), Bytes::from(commit.to_cbor()));

    let overlay = Overlay {
        base: &snapshot,
        fresh: mst_blocks.iter().cloned().collect(),
    };
    let proof = proof_blocks(&overlay, data, &ops)?;
    let mut car = CarWriter::new(Vec::new(), &[commit_cid])?;
    car.write_block(&commit_cid, &commit_bytes)?;
    for op in &ops {
        if let RecordOp::Create { cid, .. } | RecordOp::Update { cid, .. } = op
            && let Some(bytes) = record_blocks.get(cid)
        {
            car.write_block(cid, bytes)?;
        }
    }
    for (cid, bytes) in &proof {
        car.write_block(cid, bytes)?;
    }
    blobs.sort();
    blobs.dedup();
    let commit_blobs = blobs.clone();
    let event = CommitEvent {
        repo: did.clone(),
        commit: commit_cid,
        rev: rev.clone(),
        since: Some(head.rev.clone()),
        blocks: car.finish()?,
        ops,
        blobs,
        prev_data: Some(head.data),
        time: Datetime::now(),
    };
    let mut blocks: Vec<(Cid, Bytes)> = mst_blocks;
    blocks.extend(record_blocks);
    blocks.push((commit_cid, commit_bytes));
    let batch = CommitBatch {
        did: did.clone(),
        expected: Some(head.commit),
        head: RepoHead {
            commit: commit_cid,
            rev: rev.clone(),
            data,
            active: head.active,
        },
        blocks,
        index,
        blobs: commit_blobs,
        event: Box::new(move |seq| event.frame(seq)),
    };
    Ok(Built {
        mst,
        info: CommitInfo {
            cid: commit_cid,
            rev,
            seq: 0,
        },
        results,
        batch,
    })
}

mod committer;
#[cfg(test)]
mod tests;
