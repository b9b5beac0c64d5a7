//! The repository write path: validate, update the MST, sign one commit, and persist blocks,
//! head, record index and the `#commit` event in one redb transaction.
//!
//! Writes to one repository are built one after another under a per-DID async mutex; writes to
//! different repositories are built concurrently. Built commits are made durable by the
//! `committer` in groups: a commit is built on the previous one while that one still waits
//! for its fsync (its head and new blocks are kept in the repository's pending chain), and
//! every writer is answered only once its commit is durable. If a group fails, the commits
//! built on it fail too (their expected head never lands), and the repository's next write
//! starts again from the store.

mod build;
mod committer;
#[cfg(test)]
mod tests;
mod writes;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use tokio::sync::broadcast;
use tokio::sync::oneshot::error::TryRecvError;

use super::events::CommitEvent;
use super::store::{CommitBatch, PdsStore, RepoHead, StoreError};
use crate::atproto::car::CarWriter;
use crate::atproto::lexicon::Catalog;
use crate::atproto::mst::Mst;
use crate::atproto::syntax::TidClock;
use crate::atproto::{Cid, Datetime, Did, Keypair, Nsid, Tid, UnsignedCommit, Value};
use build::{CommitInput, Existing, Prepared, Put, build_commit};
use committer::Committer;
pub use writes::{CommitInfo, RepoError, SwapRecord, Validation, WriteOp, WriteResult};

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
        let _writing = self.committer.writing();
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
        let tree = pending.tree(head.data);
        let cached = tree.is_some();
        let input = CommitInput {
            store: self.store.clone(),
            pending: pending.chain.iter().map(|p| p.blocks.clone()).collect(),
            tree,
            did: did.clone(),
            head,
            writes: prepared,
            key,
            rev,
        };
        let make = move || build_commit(input);
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
        let mut answer = self.committer.submit(built.batch);
        // Committed on this thread (see `committer`), or refused at once: tidy the chain while
        // it is still locked. (`try_recv` consumes an answer or a closed channel either way, so
        // only a pending answer may be awaited below.)
        match answer.try_recv() {
            Ok(outcome) => {
                match &outcome {
                    Ok(_) => pending.landed(&info.cid),
                    Err(_) => pending.failed(),
                }
                let seq = outcome?;
                return Ok((CommitInfo { seq, ..info }, results));
            }
            Err(TryRecvError::Closed) => {
                pending.failed();
                return Err(StoreError::Commit("the commit thread stopped".into()).into());
            }
            Err(TryRecvError::Empty) => {}
        }
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
        Ok(Prepared::Put(Put {
            collection,
            rkey,
            value,
            validated,
            existing,
            swap,
        }))
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
