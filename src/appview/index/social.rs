//! What the web pages list beyond manifests and tags: stars (`io.atcr.sailor.star` records),
//! repository pages (`io.atcr.repo.page`: the README), and when each repository was last pushed
//! to. Counts and orderings are kept as tables so the home page reads a few keys, whatever the
//! number of repositories.

use redb::{ReadableTable, TableDefinition};

use super::journal::WriteTransaction;

use super::{Index, IndexError, MAX, RepoKey, ids};
use crate::atproto::Did;

/// (starrer DID id, rkey) → starred repository id
pub(super) const STARS: TableDefinition<(u32, &str), u64> = TableDefinition::new("stars");
/// (repository id, starrer DID id) → rkey of the star record counted
pub(super) const STARRERS: TableDefinition<(u64, u32), &str> = TableDefinition::new("starrers");
/// repository id → number of users who starred it
pub(super) const STAR_COUNTS: TableDefinition<u64, u64> = TableDefinition::new("star_counts");
/// (stars, repository id): the most starred, read backwards
pub(super) const POPULAR: TableDefinition<(u64, u64), ()> = TableDefinition::new("popular");
/// repository id → README text of its page record
pub(super) const PAGES: TableDefinition<u64, &str> = TableDefinition::new("pages");
/// repository id → last push (unix seconds)
pub(super) const PUSHED: TableDefinition<u64, u64> = TableDefinition::new("pushed");
/// (last push, repository id): the most recent, read backwards
pub(super) const RECENT: TableDefinition<(u64, u64), ()> = TableDefinition::new("recent");

pub(super) fn ensure_tables(tx: &WriteTransaction) -> Result<(), IndexError> {
    tx.open_table(STARS)?;
    tx.open_table(STARRERS)?;
    tx.open_table(STAR_COUNTS)?;
    tx.open_table(POPULAR)?;
    tx.open_table(PAGES)?;
    tx.open_table(PUSHED)?;
    tx.open_table(RECENT)?;
    Ok(())
}

pub(super) fn delete_tables(tx: &WriteTransaction) -> Result<(), IndexError> {
    tx.delete_table(STARS)?;
    tx.delete_table(STARRERS)?;
    tx.delete_table(STAR_COUNTS)?;
    tx.delete_table(POPULAR)?;
    tx.delete_table(PAGES)?;
    tx.delete_table(PUSHED)?;
    tx.delete_table(RECENT)?;
    ensure_tables(tx)
}

/// Notes a push to repository `repo` (its id) at `secs` (kept only when newer than the last).
pub(super) fn touch(tx: &WriteTransaction, repo: u64, secs: u64) -> Result<(), IndexError> {
    let mut pushed = tx.open_table(PUSHED)?;
    let old = pushed.get(repo)?.map(|v| v.value());
    if old.is_some_and(|old| old >= secs) {
        return Ok(());
    }
    pushed.insert(repo, secs)?;
    let mut recent = tx.open_table(RECENT)?;
    if let Some(old) = old {
        recent.remove((old, repo))?;
    }
    recent.insert((secs, repo), ())?;
    Ok(())
}

/// `did`'s star record `rkey` stars `repo`. A user counts once per repository, however many
/// star records they keep.
pub(super) fn put_star(
    tx: &WriteTransaction,
    did: &str,
    rkey: &str,
    repo: &str,
) -> Result<(), IndexError> {
    let (did, repo) = (ids::did_id(tx, did)?, ids::repo_id(tx, repo)?);
    tx.open_table(STARS)?.insert((did, rkey), repo)?;
    let mut starrers = tx.open_table(STARRERS)?;
    if starrers.get((repo, did))?.is_some() {
        return Ok(());
    }
    starrers.insert((repo, did), rkey)?;
    add_stars(tx, repo, 1)
}

/// Removes `did`'s star record `rkey` (and its count, unless another of their star records
/// names the same repository).
pub(super) fn delete_star(tx: &WriteTransaction, did: &str, rkey: &str) -> Result<(), IndexError> {
    let Some(did) = ids::find_did(&tx.open_table(ids::DID_IDS)?, did)? else {
        return Ok(());
    };
    let mut stars = tx.open_table(STARS)?;
    let Some(repo) = stars.remove((did, rkey))?.map(|v| v.value()) else {
        return Ok(());
    };
    let mut starrers = tx.open_table(STARRERS)?;
    let counted = starrers.get((repo, did))?.map(|v| v.value() == rkey);
    if counted != Some(true) {
        return Ok(());
    }
    let other = stars
        .range((did, "")..(did, MAX))?
        .filter_map(Result::ok)
        .find(|(_, r)| r.value() == repo)
        .map(|(k, _)| k.value().1.to_owned());
    if let Some(other) = other {
        starrers.insert((repo, did), other.as_str())?;
        return Ok(());
    }
    starrers.remove((repo, did))?;
    drop((stars, starrers));
    add_stars(tx, repo, -1)
}

fn add_stars(tx: &WriteTransaction, repo: u64, delta: i64) -> Result<(), IndexError> {
    let mut counts = tx.open_table(STAR_COUNTS)?;
    let old = counts.get(repo)?.map_or(0, |v| v.value());
    let new = old.saturating_add_signed(delta);
    let mut popular = tx.open_table(POPULAR)?;
    if old > 0 {
        popular.remove((old, repo))?;
    }
    if new > 0 {
        counts.insert(repo, new)?;
        popular.insert((new, repo), ())?;
    } else {
        counts.remove(repo)?;
    }
    Ok(())
}

pub(super) fn put_page(tx: &WriteTransaction, repo: &str, text: &str) -> Result<(), IndexError> {
    let repo = ids::repo_id(tx, repo)?;
    tx.open_table(PAGES)?.insert(repo, text)?;
    Ok(())
}

pub(super) fn delete_page(tx: &WriteTransaction, repo: &str) -> Result<(), IndexError> {
    if let Some(repo) = ids::find_repo(&tx.open_table(ids::REPO_IDS)?, repo)? {
        tx.open_table(PAGES)?.remove(repo)?;
    }
    Ok(())
}

/// A repository as lists show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSummary {
    pub key: RepoKey,
    pub stars: u64,
    /// Last push (unix seconds; 0 when unknown).
    pub pushed: u64,
}

impl Index {
    /// The `n` most recently pushed repositories, newest first (of one push time, the one whose
    /// owner came to the index last first).
    pub fn recent(&self, n: usize) -> Result<Vec<RepoSummary>, IndexError> {
        let tx = self.db.begin_read()?;
        let counts = tx.open_table(STAR_COUNTS)?;
        let names = tx.open_table(ids::REPO_NAMES)?;
        let mut out = Vec::with_capacity(n);
        for item in tx.open_table(RECENT)?.iter()?.rev().take(n) {
            let (k, _) = item?;
            let (pushed, id) = k.value();
            out.push(RepoSummary {
                key: RepoKey::from_stored(ids::repo_name(&names, id)?),
                stars: counts.get(id)?.map_or(0, |v| v.value()),
                pushed,
            });
        }
        Ok(out)
    }

    /// The `n` most starred repositories, most first (of one count, the one whose owner came to
    /// the index last first).
    pub fn most_starred(&self, n: usize) -> Result<Vec<RepoSummary>, IndexError> {
        let tx = self.db.begin_read()?;
        let pushed = tx.open_table(PUSHED)?;
        let names = tx.open_table(ids::REPO_NAMES)?;
        let mut out = Vec::with_capacity(n);
        for item in tx.open_table(POPULAR)?.iter()?.rev().take(n) {
            let (k, _) = item?;
            let (stars, id) = k.value();
            out.push(RepoSummary {
                key: RepoKey::from_stored(ids::repo_name(&names, id)?),
                stars,
                pushed: pushed.get(id)?.map_or(0, |v| v.value()),
            });
        }
        Ok(out)
    }

    /// A repository's star count, last push and README text.
    pub fn repo_summary(
        &self,
        repo: &RepoKey,
    ) -> Result<(RepoSummary, Option<String>), IndexError> {
        let key = repo.clone();
        let tx = self.db.begin_read()?;
        let Some(id) = ids::find_repo(&tx.open_table(ids::REPO_IDS)?, repo.as_str())? else {
            let none = RepoSummary {
                key,
                stars: 0,
                pushed: 0,
            };
            return Ok((none, None));
        };
        let stars = tx
            .open_table(STAR_COUNTS)?
            .get(id)?
            .map_or(0, |v| v.value());
        let pushed = tx.open_table(PUSHED)?.get(id)?.map_or(0, |v| v.value());
        let page = tx.open_table(PAGES)?.get(id)?.map(|v| v.value().to_owned());
        Ok((RepoSummary { key, stars, pushed }, page))
    }

    /// The rkey of `did`'s star on `repo`, if they starred it.
    pub fn star_of(&self, did: &Did, repo: &RepoKey) -> Result<Option<String>, IndexError> {
        let tx = self.db.begin_read()?;
        let (Some(did), Some(repo)) = (
            ids::find_did(&tx.open_table(ids::DID_IDS)?, did.as_str())?,
            ids::find_repo(&tx.open_table(ids::REPO_IDS)?, repo.as_str())?,
        ) else {
            return Ok(None);
        };
        Ok(tx
            .open_table(STARRERS)?
            .get((repo, did))?
            .map(|v| v.value().to_owned()))
    }

    /// The repositories `did` starred (at most `n`), in key order.
    pub fn starred_by(&self, did: &Did, n: usize) -> Result<Vec<RepoKey>, IndexError> {
        let tx = self.db.begin_read()?;
        let Some(did) = ids::find_did(&tx.open_table(ids::DID_IDS)?, did.as_str())? else {
            return Ok(Vec::new());
        };
        let names = tx.open_table(ids::REPO_NAMES)?;
        let mut seen: Vec<u64> = Vec::new();
        for item in tx.open_table(STARS)?.range((did, "")..(did, MAX))? {
            let (_, repo) = item?;
            let repo = repo.value();
            if !seen.contains(&repo) {
                seen.push(repo);
            }
            if seen.len() >= n {
                break;
            }
        }
        let mut out = seen
            .into_iter()
            .map(|id| ids::repo_name(&names, id).map(RepoKey::from_stored))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort();
        Ok(out)
    }
}
