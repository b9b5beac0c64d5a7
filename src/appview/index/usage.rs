//! Storage usage, per owner and per repository: the bytes of the unique blobs their manifests
//! use, each digest counted once however many manifests and repositories use it. Kept current as
//! manifests come and go (in the transaction that indexes or removes them), so a quota check
//! reads one row and a page or `/metrics` a handful.
//!
//! A blob counts from the first manifest of its owner (or repository) that uses it until the
//! last such manifest goes; the size counted is the one storage holds, noted when it was first
//! counted. Derived: a rebuild empties these tables and refills them with the manifests.

use redb::{ReadableTable, TableDefinition};

use super::journal::WriteTransaction;

use super::{AFTER_DIGESTS, Index, IndexError, RepoKey, digest_key, gc, ids};
use crate::atproto::Did;
use crate::blobstore::Digest;

/// (owner DID id, blob digest) → size: the blobs counted in each owner's usage.
pub(super) const OWNER_COUNTED: TableDefinition<(u64, &[u8]), u64> =
    TableDefinition::new("usage_owner_blobs");
/// owner DID id → bytes: the sum of the owner's rows in `OWNER_COUNTED`.
pub(super) const OWNER_BYTES: TableDefinition<u64, u64> = TableDefinition::new("usage_owners");
/// (repository id, blob digest) → size: the blobs counted in each repository's size.
pub(super) const REPO_COUNTED: TableDefinition<(u64, &[u8]), u64> =
    TableDefinition::new("usage_repo_blobs");
/// repository id → bytes: the sum of the repository's rows in `REPO_COUNTED`.
pub(super) const REPO_BYTES: TableDefinition<u64, u64> = TableDefinition::new("usage_repos");

/// One side of the bookkeeping: who is counted (an owner, or a repository, by id) in which
/// tables.
#[derive(Clone, Copy)]
struct Ledger {
    rows: TableDefinition<'static, (u64, &'static [u8]), u64>,
    totals: TableDefinition<'static, u64, u64>,
}

const OWNERS: Ledger = Ledger {
    rows: OWNER_COUNTED,
    totals: OWNER_BYTES,
};
const REPOS: Ledger = Ledger {
    rows: REPO_COUNTED,
    totals: REPO_BYTES,
};

impl Ledger {
    /// Counts `digest` (its key) of `size` bytes for `who`, unless it already is.
    fn count(
        self,
        tx: &WriteTransaction,
        who: u64,
        digest: &[u8],
        size: u64,
    ) -> Result<(), IndexError> {
        let mut rows = tx.open_table(self.rows)?;
        if rows.get((who, digest))?.is_some() {
            return Ok(());
        }
        rows.insert((who, digest), size)?;
        let mut totals = tx.open_table(self.totals)?;
        let before = totals.get(who)?.map_or(0, |v| v.value());
        totals.insert(who, before.saturating_add(size))?;
        Ok(())
    }

    /// Stops counting `digest` for `who`, if it was.
    fn uncount(self, tx: &WriteTransaction, who: u64, digest: &[u8]) -> Result<(), IndexError> {
        let Some(size) = tx
            .open_table(self.rows)?
            .remove((who, digest))?
            .map(|v| v.value())
        else {
            return Ok(());
        };
        let mut totals = tx.open_table(self.totals)?;
        let left = totals
            .get(who)?
            .map_or(0, |v| v.value())
            .saturating_sub(size);
        if left == 0 {
            totals.remove(who)?;
        } else {
            totals.insert(who, left)?;
        }
        Ok(())
    }
}

/// The owner (DID id) of repository id `repo`: its high half (see `ids`).
fn owner_of(repo: u64) -> u64 {
    repo >> 32
}

/// Counts the blobs a manifest of `repo` uses (with their stored sizes) for the repository and
/// its owner. Applying the same manifest again changes nothing.
pub(super) fn add(
    tx: &WriteTransaction,
    repo: &str,
    blobs: &[(Digest, u64)],
) -> Result<(), IndexError> {
    if blobs.is_empty() {
        return Ok(());
    }
    let repo = ids::repo_id(tx, repo)?;
    for (digest, size) in blobs {
        let d = digest_key(digest);
        OWNERS.count(tx, owner_of(repo), &d, *size)?;
        REPOS.count(tx, repo, &d, *size)?;
    }
    Ok(())
}

/// After a manifest of repository `repo` (its id) was removed (its uses taken out of
/// `gc::USERS`): stops counting each digest (key) it used that no other manifest of the
/// repository, or of its owner, still uses.
pub(super) fn release(
    tx: &WriteTransaction,
    repo: u64,
    used: &[Vec<u8>],
) -> Result<(), IndexError> {
    let owner = owner_of(repo);
    let owner_repos = ids::owner_repos(u32::try_from(owner).unwrap_or(u32::MAX));
    for d in used {
        let d = d.as_slice();
        let (in_repo, in_owner) = {
            let users = tx.open_table(gc::USERS)?;
            let in_repo = users
                .range((d, repo, &[][..])..=(d, repo, AFTER_DIGESTS))?
                .next()
                .is_some();
            let in_owner = in_repo
                || users
                    .range((d, owner_repos.start, &[][..])..(d, owner_repos.end, &[][..]))?
                    .next()
                    .is_some();
            (in_repo, in_owner)
        };
        if !in_repo {
            REPOS.uncount(tx, repo, d)?;
        }
        if !in_owner {
            OWNERS.uncount(tx, owner, d)?;
        }
    }
    Ok(())
}

/// [`Index::usage_growth`] over the `OWNER_COUNTED` rows of a read or write transaction, for
/// the owner with DID id `owner` (`None`: one with nothing counted).
fn growth(
    rows: &impl ReadableTable<(u64, &'static [u8]), u64>,
    owner: Option<u32>,
    blobs: &[(Digest, u64)],
) -> Result<u64, IndexError> {
    let mut seen = std::collections::HashSet::new();
    let mut growth = 0u64;
    for (digest, size) in blobs {
        if !seen.insert(digest.as_str()) {
            continue;
        }
        let counted = match owner {
            Some(owner) => rows
                .get((u64::from(owner), digest_key(digest).as_slice()))?
                .is_some(),
            None => false,
        };
        if !counted {
            growth = growth.saturating_add(*size);
        }
    }
    Ok(growth)
}

/// Whether a manifest of `repo` using `blobs` (digest, size) keeps its owner within `limit`: it
/// adds nothing new to them, or what it adds fits. The registry's check at a manifest `PUT` does
/// the same arithmetic on the index before the push.
pub(super) fn fits(
    tx: &WriteTransaction,
    repo: &str,
    blobs: &[(Digest, u64)],
    limit: u64,
) -> Result<bool, IndexError> {
    let owner = RepoKey::from_stored(repo);
    let owner = ids::find_did(&tx.open_table(ids::DID_IDS)?, owner.owner())?;
    let more = growth(&tx.open_table(OWNER_COUNTED)?, owner, blobs)?;
    let used = match owner {
        Some(owner) => tx
            .open_table(OWNER_BYTES)?
            .get(u64::from(owner))?
            .map_or(0, |v| v.value()),
        None => 0,
    };
    Ok(more == 0 || used.saturating_add(more) <= limit)
}

/// Creates the tables.
pub(super) fn ensure(tx: &WriteTransaction) -> Result<(), IndexError> {
    for ledger in [OWNERS, REPOS] {
        tx.open_table(ledger.rows)?;
        tx.open_table(ledger.totals)?;
    }
    Ok(())
}

/// Empties the tables (the start of a rebuild, which fills them again).
pub(super) fn clear(tx: &WriteTransaction) -> Result<(), IndexError> {
    for ledger in [OWNERS, REPOS] {
        tx.delete_table(ledger.rows)?;
        tx.delete_table(ledger.totals)?;
    }
    ensure(tx)
}

impl Index {
    /// The bytes of the unique blobs `owner`'s manifests use, in all their repositories.
    pub fn usage(&self, owner: &Did) -> Result<u64, IndexError> {
        let tx = self.db.begin_read()?;
        let Some(owner) = ids::find_did(&tx.open_table(ids::DID_IDS)?, owner.as_str())? else {
            return Ok(0);
        };
        Ok(tx
            .open_table(OWNER_BYTES)?
            .get(u64::from(owner))?
            .map_or(0, |v| v.value()))
    }

    /// The bytes of the unique blobs the manifests of `repo` use.
    pub fn repo_usage(&self, repo: &RepoKey) -> Result<u64, IndexError> {
        let tx = self.db.begin_read()?;
        let Some(repo) = ids::find_repo(&tx.open_table(ids::REPO_IDS)?, repo.as_str())? else {
            return Ok(0);
        };
        Ok(tx
            .open_table(REPO_BYTES)?
            .get(repo)?
            .map_or(0, |v| v.value()))
    }

    /// How much `owner`'s usage would grow if a manifest used `blobs` (digest and size): the
    /// sizes of those not yet counted for them, each digest once.
    pub fn usage_growth(&self, owner: &Did, blobs: &[(Digest, u64)]) -> Result<u64, IndexError> {
        let tx = self.db.begin_read()?;
        let owner = ids::find_did(&tx.open_table(ids::DID_IDS)?, owner.as_str())?;
        growth(&tx.open_table(OWNER_COUNTED)?, owner, blobs)
    }

    /// Whether `digest` is counted in `owner`'s usage already.
    pub fn owner_has_blob(&self, owner: &Did, digest: &Digest) -> Result<bool, IndexError> {
        let tx = self.db.begin_read()?;
        let Some(owner) = ids::find_did(&tx.open_table(ids::DID_IDS)?, owner.as_str())? else {
            return Ok(false);
        };
        Ok(tx
            .open_table(OWNER_COUNTED)?
            .get((u64::from(owner), digest_key(digest).as_slice()))?
            .is_some())
    }

    /// Every owner with a usage above zero, and it, in DID order.
    pub fn usages(&self) -> Result<Vec<(String, u64)>, IndexError> {
        let tx = self.db.begin_read()?;
        let names = tx.open_table(ids::DID_NAMES)?;
        let mut out = Vec::new();
        for entry in tx.open_table(OWNER_BYTES)?.iter()? {
            let (owner, bytes) = entry?;
            let owner = u32::try_from(owner.value())
                .map_err(|_| IndexError::Undecodable("owner id too large"))?;
            out.push((ids::did_name(&names, owner)?, bytes.value()));
        }
        out.sort();
        Ok(out)
    }

    /// The `n` largest repositories by [`Index::repo_usage`], largest first (ties by name).
    pub fn largest_repos(&self, n: usize) -> Result<Vec<(RepoKey, u64)>, IndexError> {
        let tx = self.db.begin_read()?;
        let names = tx.open_table(ids::REPO_NAMES)?;
        let mut top: std::collections::BTreeSet<(std::cmp::Reverse<u64>, String)> =
            std::collections::BTreeSet::new();
        for entry in tx.open_table(REPO_BYTES)?.iter()? {
            let (repo, bytes) = entry?;
            let bytes = std::cmp::Reverse(bytes.value());
            // Names are looked up only for rows that may make the list.
            if top.len() == n && top.last().is_some_and(|(b, _)| bytes > *b) {
                continue;
            }
            top.insert((bytes, ids::repo_name(&names, repo.value())?));
            if top.len() > n {
                top.pop_last();
            }
        }
        Ok(top
            .into_iter()
            .map(|(bytes, repo)| (RepoKey::from_stored(repo), bytes.0))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{IndexChange, MANIFEST_COLLECTION, ManifestRecord, RecordAddr};
    use super::*;
    use crate::blobstore::Algorithm;

    const ALICE: &str = "did:plc:alice";

    fn d(s: &str) -> Digest {
        Digest::of(Algorithm::Sha256, s.as_bytes())
    }

    fn addr(repo: &str, m: &Digest) -> RecordAddr {
        RecordAddr {
            did: repo.split('/').next().unwrap_or_default().into(),
            collection: MANIFEST_COLLECTION.into(),
            rkey: format!("{}@{}", repo.replace('/', "~"), m.hex()),
        }
    }

    /// Indexes manifest `m` of `repo` using `blobs` (digest, size).
    fn put(ix: &Index, repo: &str, m: &Digest, blobs: &[(&Digest, u64)]) {
        let change = IndexChange::PutManifest {
            addr: addr(repo, m),
            repo: repo.into(),
            digest: m.clone(),
            record: ManifestRecord {
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                size: 10,
                artifact_type: None,
                subject: None,
                created: 1,
                summary: None,
            },
            references: blobs.iter().map(|(b, _)| (*b).clone()).collect(),
            referrer: None,
            links: blobs.iter().map(|(b, n)| ((*b).clone(), *n)).collect(),
            quota: None,
        };
        ix.apply(&[change], None).unwrap();
    }

    fn delete(ix: &Index, repo: &str, m: &Digest) {
        ix.apply(&[IndexChange::DeleteRecord(addr(repo, m))], None)
            .unwrap();
    }

    fn alice() -> Did {
        ALICE.parse().unwrap()
    }

    fn repo_usage(ix: &Index, repo: &str) -> u64 {
        ix.repo_usage(&RepoKey::from_stored(repo)).unwrap()
    }

    #[test]
    fn shared_blobs_count_once_per_owner_and_go_with_their_last_manifest() {
        let ix = Index::in_memory().unwrap();
        let (app, tools) = ("did:plc:alice/app", "did:plc:alice/tools");
        let (base, top, other) = (d("base"), d("top"), d("other"));
        put(&ix, app, &d("m1"), &[(&base, 100), (&top, 10)]);
        // Applying the same manifest again counts nothing twice.
        put(&ix, app, &d("m1"), &[(&base, 100), (&top, 10)]);
        put(&ix, app, &d("m2"), &[(&base, 100)]);
        put(&ix, tools, &d("m3"), &[(&base, 100), (&other, 1)]);
        put(&ix, "did:plc:bob/app", &d("m4"), &[(&base, 100)]);
        assert_eq!(ix.usage(&alice()).unwrap(), 111);
        assert_eq!(repo_usage(&ix, app), 110);
        assert_eq!(repo_usage(&ix, tools), 101);
        assert_eq!(ix.usage(&"did:plc:bob".parse().unwrap()).unwrap(), 100);
        assert_eq!(
            ix.usage_growth(
                &alice(),
                &[(base.clone(), 100), (d("new"), 7), (d("new"), 7)]
            )
            .unwrap(),
            7
        );
        assert!(ix.owner_has_blob(&alice(), &top).unwrap());

        // `top` goes with the only manifest using it; `base` stays while another does.
        delete(&ix, app, &d("m1"));
        assert_eq!(ix.usage(&alice()).unwrap(), 101);
        assert_eq!(repo_usage(&ix, app), 100);
        assert!(!ix.owner_has_blob(&alice(), &top).unwrap());
        delete(&ix, app, &d("m2"));
        assert_eq!(repo_usage(&ix, app), 0);
        assert_eq!(ix.usage(&alice()).unwrap(), 101, "tools still uses base");
        delete(&ix, tools, &d("m3"));
        assert_eq!(ix.usage(&alice()).unwrap(), 0);
        assert_eq!(ix.usages().unwrap(), vec![("did:plc:bob".into(), 100)]);
    }

    #[test]
    fn a_rebuild_starts_usage_afresh_and_the_largest_repositories_come_first() {
        let ix = Index::in_memory().unwrap();
        put(&ix, "did:plc:alice/a", &d("m1"), &[(&d("x"), 5)]);
        put(&ix, "did:plc:alice/b", &d("m2"), &[(&d("y"), 50)]);
        put(&ix, "did:plc:alice/c", &d("m3"), &[(&d("z"), 20)]);
        let top: Vec<(String, u64)> = ix
            .largest_repos(2)
            .unwrap()
            .into_iter()
            .map(|(k, n)| (k.as_str().to_owned(), n))
            .collect();
        assert_eq!(
            top,
            vec![
                ("did:plc:alice/b".to_owned(), 50),
                ("did:plc:alice/c".to_owned(), 20)
            ]
        );
        ix.clear_derived(0).unwrap();
        assert_eq!(ix.usage(&alice()).unwrap(), 0);
        assert!(ix.largest_repos(10).unwrap().is_empty());
        put(&ix, "did:plc:alice/a", &d("m1"), &[(&d("x"), 5)]);
        assert_eq!(ix.usage(&alice()).unwrap(), 5);
    }
}
