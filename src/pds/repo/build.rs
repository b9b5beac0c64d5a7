//! Building one commit: apply prepared writes to the tree, sign the commit, and gather the
//! blocks, index changes and `#commit` event the committer makes durable.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;

use super::writes::{CommitInfo, RepoError, SwapRecord, WriteResult};
use crate::atproto::blockstore::{BlockStore, BlockStoreError};
use crate::atproto::car::CarWriter;
use crate::atproto::mst::{Mst, RecordOp, proof_blocks};
use crate::atproto::{Cid, Datetime, Did, Keypair, Nsid, RecordKey, Tid, UnsignedCommit, Value};
use crate::pds::events::CommitEvent;
use crate::pds::store::{CommitBatch, IndexChange, PdsStore, RepoHead};

/// A write checked by [`super::Repos::prepare`] and ready for the tree.
pub(super) enum Prepared {
    Put(Put),
    Delete {
        collection: Nsid,
        rkey: RecordKey,
        swap: Option<SwapRecord>,
    },
}

/// A record to create or replace.
pub(super) struct Put {
    pub collection: Nsid,
    pub rkey: RecordKey,
    /// The record, its `$type` set.
    pub value: Value,
    /// Whether it was checked against its lexicon.
    pub validated: bool,
    pub existing: Existing,
    pub swap: Option<SwapRecord>,
}

/// Whether a put may, must or must not find a record at its key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Existing {
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
pub(super) struct Built {
    /// The new tree (its blocks in `batch`).
    pub mst: Mst,
    /// The commit (its `seq` is known once durable).
    pub info: CommitInfo,
    pub results: Vec<WriteResult>,
    pub batch: CommitBatch,
}

/// What a commit is built from: the writes, and the repository state they apply to.
pub(super) struct CommitInput {
    /// The durable blocks.
    pub store: PdsStore,
    /// The blocks of the commits queued before this one and not yet durable, oldest first.
    pub pending: Vec<Arc<HashMap<Cid, Bytes>>>,
    /// `head`'s tree with the nodes earlier writes loaded, if cached; else it is read from the
    /// blocks.
    pub tree: Option<Mst>,
    pub did: Did,
    /// The commit this one follows: durable, or the newest pending one.
    pub head: RepoHead,
    pub writes: Vec<Prepared>,
    /// The key that signs `did`'s commits.
    pub key: Arc<Keypair>,
    /// The new commit's revision, later than `head`'s.
    pub rev: Tid,
}

/// Builds and signs the commit applying `input.writes` on top of `input.head`.
pub(super) fn build_commit(input: CommitInput) -> Result<Built, RepoError> {
    let CommitInput {
        store,
        pending,
        tree,
        did,
        head,
        writes,
        key,
        rev,
    } = input;
    let durable = store.snapshot()?;
    let snapshot = Layered {
        durable: &durable,
        pending: &pending,
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
            Prepared::Put(put) => {
                let path = format!("{}/{}", put.collection, put.rkey);
                let current = mst.get(&snapshot, &path)?;
                match (put.existing, current) {
                    (Existing::Forbidden, Some(_)) => {
                        return Err(RepoError::InvalidRequest(format!(
                            "record {path} already exists"
                        )));
                    }
                    (Existing::Required, None) => return Err(RepoError::RecordNotFound(path)),
                    _ => {}
                }
                check_swap(put.swap, current, &path)?;
                let bytes = put.value.to_cbor();
                let cid = Cid::for_cbor(&bytes);
                blobs.extend(put.value.blobs().into_iter().map(|b| b.cid));
                record_blocks.insert(cid, Bytes::from(bytes));
                mst.insert(&snapshot, &path, cid)?;
                let uri = format!("at://{did}/{path}");
                match current {
                    None => {
                        ops.push(RecordOp::Create { key: path, cid });
                        results.push(WriteResult::Create {
                            uri,
                            cid,
                            validated: put.validated,
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
                            validated: put.validated,
                        });
                    }
                }
                index.push(IndexChange::Put {
                    collection: put.collection.to_string(),
                    rkey: put.rkey.to_string(),
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
    let commit = UnsignedCommit::new(did.clone(), data, rev.clone()).sign(&key);
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
