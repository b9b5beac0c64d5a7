//! Interned names: every table keys a repository by a `u64` id and a DID by a `u32` id instead of
//! the strings (`did:plc:…/name` is ≈45 bytes, repeated in millions of keys).
//!
//! A repository's id is its owner's DID id in the high 32 bits and a number counted per owner in
//! the low 32, so the ids of one owner are one range: a scan by owner is a range query on any
//! table keyed by repository id, as it was on the `<did>/` prefix of the names. Ids are
//! allocated once and never reused nor forgotten (a rebuild keeps them: the tables that are not
//! derived, such as the blobs uploaded into each repository, use them too). Allocation happens
//! inside the caller's write transaction, which redb serializes, so two writers never take one
//! id for two names.

use std::ops::Range;

use redb::{ReadableTable, TableDefinition};

use super::journal::WriteTransaction;

use super::{IndexError, RepoKey};

/// repository key (`<did>/<path>`) → id
pub(super) const REPO_IDS: TableDefinition<&str, u64> = TableDefinition::new("repo_ids");
/// id → repository key
pub(super) const REPO_NAMES: TableDefinition<u64, &str> = TableDefinition::new("repo_names");
/// DID → id
pub(super) const DID_IDS: TableDefinition<&str, u32> = TableDefinition::new("did_ids");
/// id → DID
pub(super) const DID_NAMES: TableDefinition<u32, &str> = TableDefinition::new("did_names");

pub(super) fn ensure_tables(tx: &WriteTransaction) -> Result<(), IndexError> {
    tx.open_table(REPO_IDS)?;
    tx.open_table(REPO_NAMES)?;
    tx.open_table(DID_IDS)?;
    tx.open_table(DID_NAMES)?;
    Ok(())
}

/// The ids of the repositories of the owner with DID id `owner`.
pub(super) fn owner_repos(owner: u32) -> Range<u64> {
    let lo = u64::from(owner) << 32;
    lo..lo + (1 << 32)
}

/// The id of `did`, allocated if it has none.
pub(super) fn did_id(tx: &WriteTransaction, did: &str) -> Result<u32, IndexError> {
    let mut ids = tx.open_table(DID_IDS)?;
    if let Some(id) = ids.get(did)? {
        return Ok(id.value());
    }
    let mut names = tx.open_table(DID_NAMES)?;
    let next = match names.last()? {
        Some((last, _)) => last
            .value()
            .checked_add(1)
            .ok_or(IndexError::Exhausted("DID ids"))?,
        None => 0,
    };
    ids.insert(did, next)?;
    names.insert(next, did)?;
    Ok(next)
}

/// The id of repository `repo`, allocated (after its owner's) if it has none.
pub(super) fn repo_id(tx: &WriteTransaction, repo: &str) -> Result<u64, IndexError> {
    if let Some(id) = tx.open_table(REPO_IDS)?.get(repo)? {
        return Ok(id.value());
    }
    let owner = did_id(tx, RepoKey::from_stored(repo).owner())?;
    let mut names = tx.open_table(REPO_NAMES)?;
    let range = owner_repos(owner);
    let next = match names.range(range.clone())?.next_back() {
        Some(last) => last?.0.value() + 1,
        None => range.start,
    };
    if next >= range.end {
        return Err(IndexError::Exhausted("repository ids of one owner"));
    }
    tx.open_table(REPO_IDS)?.insert(repo, next)?;
    names.insert(next, repo)?;
    Ok(next)
}

/// The id of `repo`, if it has one.
pub(super) fn find_repo(
    ids: &impl ReadableTable<&'static str, u64>,
    repo: &str,
) -> Result<Option<u64>, IndexError> {
    Ok(ids.get(repo)?.map(|v| v.value()))
}

/// The id of `did`, if it has one.
pub(super) fn find_did(
    ids: &impl ReadableTable<&'static str, u32>,
    did: &str,
) -> Result<Option<u32>, IndexError> {
    Ok(ids.get(did)?.map(|v| v.value()))
}

/// The repository key of id `id`; an id without one is a damaged index.
pub(super) fn repo_name(
    names: &impl ReadableTable<u64, &'static str>,
    id: u64,
) -> Result<String, IndexError> {
    names
        .get(id)?
        .map(|v| v.value().to_owned())
        .ok_or(IndexError::Undecodable("repository id without a name"))
}

/// The DID of id `id`; an id without one is a damaged index.
pub(super) fn did_name(
    names: &impl ReadableTable<u32, &'static str>,
    id: u32,
) -> Result<String, IndexError> {
    names
        .get(id)?
        .map(|v| v.value().to_owned())
        .ok_or(IndexError::Undecodable("DID id without a name"))
}

#[cfg(test)]
mod tests {
    use redb::ReadableTableMetadata as _;

    use super::*;
    use crate::appview::index::Index;

    fn write<T>(ix: &Index, f: impl FnOnce(&WriteTransaction) -> T) -> T {
        let tx = ix.begin_write().unwrap();
        let out = f(&tx);
        tx.commit().unwrap();
        out
    }

    #[test]
    fn a_name_keeps_its_id_and_an_owner_its_range() {
        let ix = Index::in_memory().unwrap();
        let (a, b, c) = write(&ix, |tx| {
            let a = repo_id(tx, "did:plc:alice/app").unwrap();
            let b = repo_id(tx, "did:plc:bob/app").unwrap();
            // Two writers of one transaction asking for one name get one id.
            assert_eq!(repo_id(tx, "did:plc:alice/app").unwrap(), a);
            let c = repo_id(tx, "did:plc:alice/tools").unwrap();
            (a, b, c)
        });
        assert_ne!(a, c);
        assert_ne!(a, b);
        let alice = write(&ix, |tx| did_id(tx, "did:plc:alice").unwrap());
        assert!(owner_repos(alice).contains(&a) && owner_repos(alice).contains(&c));
        assert!(!owner_repos(alice).contains(&b));
        let tx = ix.db.begin_read().unwrap();
        let names = tx.open_table(REPO_NAMES).unwrap();
        assert_eq!(repo_name(&names, c).unwrap(), "did:plc:alice/tools");
        assert!(repo_name(&names, c + 1000).is_err());
        let ids = tx.open_table(REPO_IDS).unwrap();
        assert_eq!(find_repo(&ids, "did:plc:bob/app").unwrap(), Some(b));
        assert_eq!(find_repo(&ids, "did:plc:bob/none").unwrap(), None);
    }

    #[test]
    fn writers_on_several_threads_never_share_an_id() {
        let ix = Index::in_memory().unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let ix = ix.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        let tx = ix.begin_write().unwrap();
                        repo_id(&tx, &format!("did:plc:owner{}/r{t}-{i}", i % 3)).unwrap();
                        tx.commit().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let tx = ix.db.begin_read().unwrap();
        let names = tx.open_table(REPO_NAMES).unwrap();
        let ids = tx.open_table(REPO_IDS).unwrap();
        assert_eq!(names.len().unwrap(), 100);
        assert_eq!(ids.len().unwrap(), 100);
        for row in ids.iter().unwrap() {
            let (name, id) = row.unwrap();
            assert_eq!(repo_name(&names, id.value()).unwrap(), name.value());
        }
    }

    #[test]
    fn ids_survive_a_reopen_and_a_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        let ix = Index::open(&path).unwrap();
        let (a, b) = write(&ix, |tx| {
            (
                repo_id(tx, "did:plc:alice/app").unwrap(),
                repo_id(tx, "did:plc:bob/app").unwrap(),
            )
        });
        ix.clear_derived(0).unwrap();
        drop(ix);
        let ix = Index::open(&path).unwrap();
        write(&ix, |tx| {
            assert_eq!(repo_id(tx, "did:plc:bob/app").unwrap(), b);
            assert_eq!(repo_id(tx, "did:plc:alice/app").unwrap(), a);
            let new = repo_id(tx, "did:plc:alice/new").unwrap();
            assert!(new != a && new != b);
        });
    }
}
