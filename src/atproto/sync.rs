//! A consumer's check of a firehose `#commit` event (sync 1.1): the commit block in the
//! event's CAR is signed by the repository's key, names the repository the event is about, and
//! undoing the event's operations on the tree it carries gives the event's `prevData` — so
//! the operations are exactly the change from the previous commit, and each record the event
//! carries is the one its operation names.

use super::blockstore::{BlockStore, MemoryBlockStore};
use super::car::CarReader;
use super::cid::Cid;
use super::commit::Commit;
use super::crypto::PublicKey;
use super::data::Value;
use super::mst::{RecordOp, invert_ops};
use super::syntax::Did;

/// Largest block read from an event's CAR (records and MST nodes are far smaller).
const MAX_BLOCK: usize = 1 << 20;

/// One operation of a verified commit.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedOp {
    pub collection: String,
    pub rkey: String,
    /// The record put (create, update), `None` for a delete.
    pub record: Option<Value>,
}

/// A `#commit` event whose signature and operations checked out.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedCommit {
    pub repo: Did,
    pub rev: String,
    pub ops: Vec<VerifiedOp>,
}

/// The repository a `#commit` event body is about (unverified).
#[must_use]
pub fn event_repo(body: &Value) -> Option<Did> {
    body.get("repo")?.as_str()?.parse().ok()
}

/// Checks a `#commit` event body against `key`, the repository's signing key.
///
/// # Errors
/// Why the event is refused: malformed, signed by another key, about another repository, not
/// sync 1.1 (no `prevData` or op `prev`), or operations that do not undo to `prevData`.
pub fn verify_commit(body: &Value, key: &PublicKey) -> Result<VerifiedCommit, String> {
    let repo = event_repo(body).ok_or("no repo")?;
    let Some(Value::Bytes(car)) = body.get("blocks") else {
        return Err("no blocks".into());
    };
    let Some(Value::Link(commit_cid)) = body.get("commit") else {
        return Err("no commit".into());
    };
    let Some(Value::Link(prev_data)) = body.get("prevData") else {
        return Err("no prevData: not a sync 1.1 commit".into());
    };
    let store = MemoryBlockStore::new();
    CarReader::with_max_block(&car[..], MAX_BLOCK)
        .and_then(|r| r.load_into(&store))
        .map_err(|e| format!("blocks: {e}"))?;
    let block = store
        .get(commit_cid)
        .map_err(|e| e.to_string())?
        .ok_or("the commit block is not in the event")?;
    let commit = Commit::from_cbor(&block).map_err(|e| format!("commit: {e}"))?;
    commit.verify(key).map_err(|e| format!("signature: {e}"))?;
    if commit.unsigned.did != repo {
        return Err(format!(
            "the commit is {}'s, not {repo}'s",
            commit.unsigned.did
        ));
    }
    let Some(Value::Array(list)) = body.get("ops") else {
        return Err("no ops".into());
    };
    let mut ops = Vec::with_capacity(list.len());
    let mut verified = Vec::with_capacity(list.len());
    for op in list {
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or("op without path")?;
        let (collection, rkey) = path.split_once('/').ok_or("op path without /")?;
        let link = |f: &str| match op.get(f) {
            Some(Value::Link(c)) => Some(*c),
            _ => None,
        };
        let key = path.to_owned();
        let (record_op, cid) = match op.get("action").and_then(Value::as_str) {
            Some("create") => {
                let cid = link("cid").ok_or("create without cid")?;
                (RecordOp::Create { key, cid }, Some(cid))
            }
            Some("update") => {
                let cid = link("cid").ok_or("update without cid")?;
                let prev = link("prev").ok_or("update without prev")?;
                (RecordOp::Update { key, cid, prev }, Some(cid))
            }
            Some("delete") => {
                let prev = link("prev").ok_or("delete without prev")?;
                (RecordOp::Delete { key, prev }, None)
            }
            _ => return Err(format!("op {path} with an unknown action")),
        };
        ops.push(record_op);
        verified.push(VerifiedOp {
            collection: collection.to_owned(),
            rkey: rkey.to_owned(),
            record: cid.map(|c| record(&store, &c)).transpose()?,
        });
    }
    let before = invert_ops(&store, commit.unsigned.data, &ops)
        .map_err(|e| format!("the ops do not undo to prevData: {e}"))?;
    if before != *prev_data {
        return Err("the ops do not undo to prevData".into());
    }
    Ok(VerifiedCommit {
        repo,
        rev: commit.unsigned.rev.to_string(),
        ops: verified,
    })
}

/// A record block of the event, decoded.
fn record(store: &MemoryBlockStore, cid: &Cid) -> Result<Value, String> {
    let bytes = store
        .get(cid)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("record {cid} is not in the event"))?;
    Value::from_untrusted_cbor(&bytes).map_err(|e| format!("record {cid}: {e}"))
}

/// A verified export's commit `rev` and its records: (collection, record key, record).
pub type VerifiedRecords = (String, Vec<(String, String, Value)>);

/// Records of a whole repository as `com.atproto.sync.getRepo` exports it (a CAR), once the
/// export checks out (see [`super::commit::verify_repo`]: the commit signed by `key` and of
/// `did`, every node and record block present and hashing to its CID): the commit's `rev`, and
/// the records of `collections` (at most `limit`) as (collection, record key, record).
///
/// # Errors
/// Why the export is refused, or that it holds more than `limit` such records.
pub fn verified_records(
    car: &[u8],
    did: &Did,
    key: &PublicKey,
    collections: &[&str],
    limit: usize,
) -> Result<VerifiedRecords, String> {
    let store = MemoryBlockStore::new();
    let reader = CarReader::with_max_block(car, MAX_BLOCK).map_err(|e| format!("export: {e}"))?;
    let root = *reader.roots().first().ok_or("the export names no commit")?;
    reader
        .load_into(&store)
        .map_err(|e| format!("export: {e}"))?;
    let verified =
        super::commit::verify_repo(&store, root, key).map_err(|e| format!("export: {e}"))?;
    if verified.commit.unsigned.did != *did {
        return Err(format!("the export is {}'s", verified.commit.unsigned.did));
    }
    let mut records = Vec::new();
    let mut failure = None;
    let tree = super::mst::Mst::load(&store, verified.commit.unsigned.data)
        .map_err(|e| format!("export: {e}"))?;
    tree.walk(&store, &mut |item| {
        let super::mst::WalkItem::Leaf { key, value } = item else {
            return Ok(());
        };
        let Some((collection, rkey)) = key.split_once('/') else {
            return Ok(());
        };
        if !collections.contains(&collection) {
            return Ok(());
        }
        if records.len() >= limit {
            failure = Some(format!("more than {limit} records"));
            return Err(super::mst::MstError::Conflict("too many records"));
        }
        match record(&store, &value) {
            Ok(r) => records.push((collection.to_owned(), rkey.to_owned(), r)),
            Err(e) => {
                failure = Some(e);
                return Err(super::mst::MstError::Conflict("record unreadable"));
            }
        }
        Ok(())
    })
    .map_err(|e| failure.take().unwrap_or_else(|| format!("export: {e}")))?;
    Ok((verified.commit.unsigned.rev.to_string(), records))
}
