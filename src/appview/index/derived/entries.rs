//! The rows of `RECORDS`: what each record put in, read and written with its names (the table
//! holds ids).

use redb::ReadableTable;

use super::super::journal::WriteTransaction;

use super::{LayerOf, RECORDS, RecordAddr, RecordEntry};
use crate::appview::index::codec::{StoredEntry, collection_key};
use crate::appview::index::{IndexError, ids};

/// The id of repository `repo` in a write transaction, if it has one.
pub(super) fn find_repo(tx: &WriteTransaction, repo: &str) -> Result<Option<u64>, IndexError> {
    ids::find_repo(&tx.open_table(ids::REPO_IDS)?, repo)
}

/// The key of `addr` in `RECORDS`, if its DID has an id (else no record of it is there).
pub(super) fn find_record_key(
    tx: &WriteTransaction,
    addr: &RecordAddr,
) -> Result<Option<(u32, Vec<u8>)>, IndexError> {
    let did = ids::find_did(&tx.open_table(ids::DID_IDS)?, &addr.did)?;
    Ok(did.map(|did| (did, collection_key(&addr.collection))))
}

pub(super) fn entry(
    tx: &WriteTransaction,
    addr: &RecordAddr,
) -> Result<Option<RecordEntry>, IndexError> {
    let Some((did, c)) = find_record_key(tx, addr)? else {
        return Ok(None);
    };
    let table = tx.open_table(RECORDS)?;
    let Some(raw) = table.get((did, c.as_slice(), addr.rkey.as_str()))? else {
        return Ok(None);
    };
    let stored = StoredEntry::decode(raw.value())?;
    let (repos, dids) = (
        tx.open_table(ids::REPO_NAMES)?,
        tx.open_table(ids::DID_NAMES)?,
    );
    Ok(Some(named(
        stored,
        |id| ids::repo_name(&repos, id),
        |id| ids::did_name(&dids, id),
    )?))
}

/// A stored entry with its ids turned back into names.
pub(in crate::appview::index) fn named(
    stored: StoredEntry,
    repo_name: impl FnOnce(u64) -> Result<String, IndexError>,
    did_name: impl FnOnce(u32) -> Result<String, IndexError>,
) -> Result<RecordEntry, IndexError> {
    Ok(RecordEntry {
        repo: stored.repo.map(repo_name).transpose()?.unwrap_or_default(),
        digest: stored.digest,
        tag: stored.tag,
        social: stored.social,
        layer: match stored.layer {
            Some((user, manifest_rkey)) => Some(LayerOf {
                user: did_name(user)?,
                manifest_rkey,
            }),
            None => None,
        },
    })
}

pub(super) fn set_entry(
    tx: &WriteTransaction,
    addr: &RecordAddr,
    e: &RecordEntry,
) -> Result<(), IndexError> {
    let stored = StoredEntry {
        repo: if e.repo.is_empty() {
            None
        } else {
            Some(ids::repo_id(tx, &e.repo)?)
        },
        digest: e.digest.clone(),
        tag: e.tag.clone(),
        social: e.social,
        layer: match &e.layer {
            Some(l) => Some((ids::did_id(tx, &l.user)?, l.manifest_rkey.clone())),
            None => None,
        },
    };
    let did = ids::did_id(tx, &addr.did)?;
    let c = collection_key(&addr.collection);
    tx.open_table(RECORDS)?.insert(
        (did, c.as_slice(), addr.rkey.as_str()),
        stored.encode().as_slice(),
    )?;
    Ok(())
}
