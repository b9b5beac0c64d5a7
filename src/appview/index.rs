//! The registry index in redb: repositories, tags, manifests, blob links, references and upload
//! sessions. Every push's changes commit in one write transaction.
//!
//! Methods are synchronous (redb is); write transactions sync to disk, so async callers run them
//! through [`Index::write`], which moves them off the async workers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::atproto::Did;
use crate::blobstore::Digest;

// Keys name a repository by its id (`ids`: a `u64`, its owner's id in the high half, so one
// owner's repositories are one range) and a digest by its bytes (`codec::digest_key`: 32 for
// SHA-256). Both keep the order range scans need: by repository, then by digest or tag.

/// repository → creation time (unix seconds); a repository exists once a manifest was pushed.
/// Keyed by name: the listings (`/v2/_catalog`, an owner's repositories) read it in name order.
const REPOS: TableDefinition<&str, u64> = TableDefinition::new("repos");
/// (repository id, digest) → blob size: blobs uploaded into (or mounted into) a repository
/// through the registry, which it may serve. Not derived from records, like upload sessions: a
/// rebuild keeps them. The other way a repository serves a blob is `derived::VOUCHED`.
const REPO_BLOBS: TableDefinition<(u64, &[u8]), u64> = TableDefinition::new("repo_blobs");
/// digest → size: blobs present in storage, whoever uploaded them
const BLOBS: TableDefinition<&[u8], u64> = TableDefinition::new("blobs");
/// (repository id, digest) → manifest record (`codec`)
const MANIFESTS: TableDefinition<(u64, &[u8]), &[u8]> = TableDefinition::new("manifests");
/// (repository id, tag) → manifest digest (as a key)
const TAGS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("tags");
/// A key of two digests in one repository: (repository id, digest, digest).
type DigestPairKey = (u64, &'static [u8], &'static [u8]);
/// (repository id, manifest digest, referenced digest): blobs and child manifests a manifest
/// needs
const REFS: TableDefinition<DigestPairKey, ()> = TableDefinition::new("manifest_refs");
/// (repository id, subject digest, referrer digest) → referrer descriptor (JSON)
const REFERRERS: TableDefinition<DigestPairKey, &[u8]> = TableDefinition::new("referrers");
/// upload id → session (JSON)
const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");
/// digest → the DID of the hold on another machine that keeps its bytes (see `held`)
const HELD: TableDefinition<&[u8], &str> = TableDefinition::new("held_elsewhere");

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index database: {0}")]
    Db(#[from] redb::Error),
    #[error("index record is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("index value is corrupt: {0}")]
    Undecodable(&'static str),
    #[error("index task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("index has no {0} left")]
    Exhausted(&'static str),
    #[error("index compaction: {0}")]
    Compaction(&'static str),
}

crate::macros::redb_errors_into!(IndexError::Db);

/// The registry's answer to a failed index: 507 when storage failed, else 500.
/// How long a reopen waits for requests still holding the old database.
const REOPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl IndexError {
    /// Whether storage failed (full, I/O error, closed for a reopen) rather than the request.
    #[must_use]
    pub fn is_storage_failure(&self) -> bool {
        matches!(
            self,
            IndexError::Db(
                redb::Error::Io(_) | redb::Error::PreviousIo | redb::Error::DatabaseClosed
            )
        )
    }

    /// Whether the error says the index file is damaged (rather than busy or unreachable).
    fn is_damage(&self) -> bool {
        match self {
            IndexError::Db(
                redb::Error::Corrupted(_)
                | redb::Error::UpgradeRequired(_)
                | redb::Error::TableTypeMismatch { .. },
            )
            | IndexError::Corrupt(_)
            | IndexError::Undecodable(_) => true,
            IndexError::Db(redb::Error::Io(e)) => matches!(
                e.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            ),
            _ => false,
        }
    }
}

/// What the index knows of a stored manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRecord {
    pub media_type: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Digest>,
    pub created: u64,
    /// What pages and search show of it (absent in indexes made before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Box<crate::appview::summary::ManifestSummary>>,
}

/// Sizes of the index, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexStats {
    pub repositories: u64,
    pub manifests: u64,
    pub tags: u64,
    /// Distinct blobs uploaded (manifests not included), and their bytes.
    pub blobs: u64,
    pub blob_bytes: u64,
    pub uploads: u64,
}

/// One tag as the web pages show it: see [`Index::tag_details`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagDetail {
    pub tag: String,
    pub digest: Digest,
    pub record: Option<ManifestRecord>,
    pub contents: Contents,
}

/// What a manifest references: its blobs (and their summed size) and child manifests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Contents {
    pub blobs: u64,
    pub blob_bytes: u64,
    /// Child manifests (the platforms of an index).
    pub children: u64,
    /// Manifests that refer to it (`subject`): signatures, SBOMs, attestations.
    pub referrers: u64,
}

/// See [`Index::audit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexAudit {
    /// `repo:tag -> digest` for each tag whose manifest is not in the index.
    pub dangling_tags: Vec<String>,
    /// Every digest (blob or manifest) the index says storage holds, with its size.
    pub stored: Vec<(String, u64)>,
}

/// redb's page cache for the index. redb's default is 1 GiB per database, which a long-running
/// node would slowly fill with pages it rarely reads again. The interior pages of a large index
/// fit in a few MiB; a page render reads a handful of pages (at 100,000 repositories and
/// 1,000,000 tags a repository page takes well under a millisecond with this cache), and a
/// full read (the search index rebuild) would otherwise leave the cache full for good.
const CACHE_BYTES: usize = 4 << 20;

#[derive(Clone)]
pub struct Index {
    db: Arc<crate::dbslot::DbSlot>,
    /// The file, for [`Index::reopen`] (`None` in memory).
    path: Option<Arc<PathBuf>>,
    /// When derived changes were last made durable, and whether some are not yet: see
    /// [`Index::apply_events`].
    lazy: Arc<std::sync::Mutex<Lazy>>,
    /// Changes recorded while the index is compacted online (see `file/online.rs`).
    journal: Arc<journal::Journal>,
}

/// Derived changes are replayed from the PDS event log after a crash, so their transactions
/// skip the fsync: the indexer syncs them once they are [`DURABLE_EVERY`] old (after answering
/// the requests that waited for them) and once the log has been quiet for a moment.
struct Lazy {
    synced: std::time::Instant,
    pending: bool,
    /// The cursor, when events that change nothing here moved it past the stored one.
    ahead: Option<u64>,
}

impl Default for Lazy {
    fn default() -> Self {
        Lazy {
            synced: std::time::Instant::now(),
            pending: false,
            ahead: None,
        }
    }
}

/// How long derived changes may stay unsynced while events keep coming.
const DURABLE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The smallest string greater than every string starting with a key part; `\u{10FFFF}` sorts
/// after every character a valid name, tag or record key can hold.
const MAX: &str = "\u{10FFFF}";

impl Index {
    /// Opens (or creates) the index at `path`.
    pub fn open(path: &Path) -> Result<Index, IndexError> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)?;
        let index = Index {
            db: Arc::new(crate::dbslot::DbSlot::new(db)),
            path: Some(Arc::new(path.to_owned())),
            lazy: Arc::default(),
            journal: Arc::default(),
        };
        index.ensure_tables()?;
        Ok(index)
    }

    /// Whether the index refuses work until it is reopened (an I/O error, such as a full disk).
    #[must_use]
    pub fn is_poisoned(&self) -> bool {
        self.db.is_poisoned()
    }

    /// Closes the index and opens its file again (after an I/O error). Changes not yet synced
    /// are gone with the old handle: the cursor goes back to the last synced one, and the
    /// indexer applies those events again. Nothing to do unless [`Index::is_poisoned`].
    pub fn reopen(&self) -> Result<(), IndexError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        // A healthy database may have a write transaction running: never reopen under it.
        if !self.is_poisoned() {
            return Ok(());
        }
        self.db
            .reopen(REOPEN_WAIT, || {
                Database::builder()
                    .set_cache_size(CACHE_BYTES)
                    .create(path.as_path())
            })
            .map_err(|e| match e {
                crate::dbslot::ReopenError::Busy => {
                    IndexError::Db(redb::Error::DatabaseAlreadyOpen)
                }
                crate::dbslot::ReopenError::Open(e) => e.into(),
            })?;
        *self
            .lazy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Lazy::default();
        self.ensure_tables()?;
        tracing::warn!(path = %path.display(), "registry index reopened after a storage error");
        Ok(())
    }

    /// An index that lives in memory only (tests).
    pub fn in_memory() -> Result<Index, IndexError> {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?;
        let index = Index {
            db: Arc::new(crate::dbslot::DbSlot::new(db)),
            path: None,
            lazy: Arc::default(),
            journal: Arc::default(),
        };
        index.ensure_tables()?;
        Ok(index)
    }

    fn ensure_tables(&self) -> Result<(), IndexError> {
        let tx = self.begin_write()?;
        // Before any table is opened with this version's types: an older file's differ.
        if upgrade::upgrade_format(&tx)? {
            tracing::warn!(
                "the registry index was written by an older version: rebuilding what records \
                 put in it (upload sessions and blob links are kept)"
            );
        }
        ids::ensure_tables(&tx)?;
        tx.open_table(REPOS)?;
        tx.open_table(REPO_BLOBS)?;
        tx.open_table(BLOBS)?;
        tx.open_table(MANIFESTS)?;
        tx.open_table(TAGS)?;
        tx.open_table(REFS)?;
        tx.open_table(REFERRERS)?;
        tx.open_table(UPLOADS)?;
        tx.open_table(HELD)?;
        tx.open_table(gc::USERS)?;
        tx.open_table(gc::TOUCHED)?;
        tx.open_table(gc::GC_META)?;
        tx.open_table(gc::MANIFEST_OBJECTS)?;
        tx.open_table(derived::RECORDS)?;
        tx.open_table(derived::LAYERS)?;
        tx.open_table(derived::VOUCHED)?;
        tx.open_table(derived::META)?;
        social::ensure_tables(&tx)?;
        usage::ensure(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// Runs a write (which syncs to disk) on the blocking pool.
    pub async fn write<T, F>(&self, f: F) -> Result<T, IndexError>
    where
        T: Send + 'static,
        F: FnOnce(&Index) -> Result<T, IndexError> + Send + 'static,
    {
        let index = self.clone();
        tokio::task::spawn_blocking(move || f(&index)).await?
    }

    pub fn repo_exists(&self, repo: &RepoKey) -> Result<bool, IndexError> {
        let tx = self.db.begin_read()?;
        Ok(tx.open_table(REPOS)?.get(repo.as_str())?.is_some())
    }

    /// Repository names after `last`, at most `n`; the flag says whether more follow.
    pub fn repos(
        &self,
        last: Option<&RepoKey>,
        n: usize,
    ) -> Result<(Vec<RepoKey>, bool), IndexError> {
        let last = last.map(RepoKey::as_str);
        let tx = self.db.begin_read()?;
        let table = tx.open_table(REPOS)?;
        let mut out = Vec::new();
        for entry in table.range(last.unwrap_or("")..)? {
            let (name, _) = entry?;
            if Some(name.value()) == last {
                continue;
            }
            if out.len() == n {
                return Ok((out, true));
            }
            out.push(RepoKey::from_stored(name.value()));
        }
        Ok((out, false))
    }

    /// Calls `f` with every repository's index key, in key (owner DID) order.
    pub fn each_repo(&self, mut f: impl FnMut(RepoKey)) -> Result<(), IndexError> {
        let tx = self.db.begin_read()?;
        for entry in tx.open_table(REPOS)?.iter()? {
            f(RepoKey::from_stored(entry?.0.value()));
        }
        Ok(())
    }

    /// The repositories of one owner (index keys `<did>/…`), at most `n`; the flag says whether
    /// more follow.
    pub fn repos_of(&self, owner: &Did, n: usize) -> Result<(Vec<RepoKey>, bool), IndexError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(REPOS)?;
        let (lo, hi) = (format!("{owner}/"), format!("{owner}/{MAX}"));
        let mut out = Vec::new();
        for entry in table.range(lo.as_str()..hi.as_str())? {
            if out.len() == n {
                return Ok((out, true));
            }
            out.push(RepoKey::from_stored(entry?.0.value()));
        }
        Ok((out, false))
    }

    pub fn manifest(
        &self,
        repo: &RepoKey,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>, IndexError> {
        let tx = self.db.begin_read()?;
        let Some(id) = read_repo_id(&tx, repo)? else {
            return Ok(None);
        };
        let table = tx.open_table(MANIFESTS)?;
        let Some(raw) = table.get((id, digest_key(digest).as_slice()))? else {
            return Ok(None);
        };
        Ok(Some(ManifestRecord::decode(raw.value())?))
    }

    /// What `tag` points at in `repo`. Tags are the strings tag records carry (any the lexicon
    /// allows); the registry looks up only valid OCI tags.
    pub fn tag(&self, repo: &RepoKey, tag: &str) -> Result<Option<Digest>, IndexError> {
        let tx = self.db.begin_read()?;
        let Some(id) = read_repo_id(&tx, repo)? else {
            return Ok(None);
        };
        let table = tx.open_table(TAGS)?;
        let Some(raw) = table.get((id, tag))? else {
            return Ok(None);
        };
        Ok(Some(digest_of_key(raw.value())?))
    }

    /// Tags of `repo` after `last`, at most `n`, in lexical order; the flag says whether more follow.
    pub fn tags(
        &self,
        repo: &RepoKey,
        last: Option<&str>,
        n: usize,
    ) -> Result<(Vec<String>, bool), IndexError> {
        let tx = self.db.begin_read()?;
        let Some(id) = read_repo_id(&tx, repo)? else {
            return Ok((Vec::new(), false));
        };
        let table = tx.open_table(TAGS)?;
        let mut out = Vec::new();
        for entry in table.range((id, last.unwrap_or(""))..(id + 1, ""))? {
            let (key, _) = entry?;
            let tag = key.value().1;
            if Some(tag) == last {
                continue;
            }
            if out.len() == n {
                return Ok((out, true));
            }
            out.push(tag.to_owned());
        }
        Ok((out, false))
    }

    /// The referrer descriptors recorded for `subject` in `repo`.
    pub fn referrers(
        &self,
        repo: &RepoKey,
        subject: &Digest,
    ) -> Result<Vec<serde_json::Value>, IndexError> {
        let tx = self.db.begin_read()?;
        let Some(id) = read_repo_id(&tx, repo)? else {
            return Ok(Vec::new());
        };
        let s = digest_key(subject);
        let table = tx.open_table(REFERRERS)?;
        let mut out = Vec::new();
        for entry in table.range((id, s.as_slice(), &[][..])..(id, s.as_slice(), AFTER_DIGESTS))? {
            let (_, value) = entry?;
            out.push(serde_json::from_slice(value.value())?);
        }
        Ok(out)
    }

    /// Counts for metrics: a consistent snapshot of one read transaction.
    pub fn stats(&self) -> Result<IndexStats, IndexError> {
        let tx = self.db.begin_read()?;
        let blobs = tx.open_table(BLOBS)?;
        let mut blob_bytes = 0u64;
        for entry in blobs.iter()? {
            blob_bytes += entry?.1.value();
        }
        Ok(IndexStats {
            repositories: tx.open_table(REPOS)?.len()?,
            manifests: tx.open_table(MANIFESTS)?.len()?,
            tags: tx.open_table(TAGS)?.len()?,
            blobs: blobs.len()?,
            blob_bytes,
            uploads: tx.open_table(UPLOADS)?.len()?,
        })
    }

    /// The first `n` tags of `repo` with what the web pages show of each (its manifest's
    /// record, and the blobs and child manifests it references), from one read transaction;
    /// the flag says whether more tags follow.
    pub fn tag_details(
        &self,
        repo: &RepoKey,
        n: usize,
    ) -> Result<(Vec<TagDetail>, bool), IndexError> {
        let tx = self.db.begin_read()?;
        let Some(id) = read_repo_id(&tx, repo)? else {
            return Ok((Vec::new(), false));
        };
        let (manifests, refs, blobs, referrers) = (
            tx.open_table(MANIFESTS)?,
            tx.open_table(REFS)?,
            tx.open_table(BLOBS)?,
            tx.open_table(REFERRERS)?,
        );
        let mut out = Vec::new();
        for entry in tx.open_table(TAGS)?.range((id, "")..(id + 1, ""))? {
            if out.len() == n {
                return Ok((out, true));
            }
            let (key, target) = entry?;
            let m = target.value();
            let digest = digest_of_key(m)?;
            let record = manifests
                .get((id, m))?
                .map(|raw| ManifestRecord::decode(raw.value()))
                .transpose()?;
            let mut contents = Contents::default();
            for r in refs.range((id, m, &[][..])..(id, m, AFTER_DIGESTS))? {
                match blobs.get(r?.0.value().2)? {
                    Some(size) => {
                        contents.blobs += 1;
                        contents.blob_bytes += size.value();
                    }
                    None => contents.children += 1,
                }
            }
            contents.referrers = referrers
                .range((id, m, &[][..])..(id, m, AFTER_DIGESTS))?
                .count() as u64;
            out.push(TagDetail {
                tag: key.value().1.to_owned(),
                digest,
                record,
                contents,
            });
        }
        Ok((out, false))
    }

    /// What `atcr doctor` checks, from one read transaction: tags naming a manifest the index
    /// lacks, and every digest storage must hold (uploaded blobs and manifests) with its size.
    pub fn audit(&self) -> Result<IndexAudit, IndexError> {
        let tx = self.db.begin_read()?;
        let manifests = tx.open_table(MANIFESTS)?;
        let names = tx.open_table(ids::REPO_NAMES)?;
        let mut dangling_tags = Vec::new();
        for entry in tx.open_table(TAGS)?.iter()? {
            let (key, target) = entry?;
            let (id, tag) = key.value();
            if manifests.get((id, target.value()))?.is_none() {
                let repo = ids::repo_name(&names, id)?;
                let digest = digest_of_key(target.value())?;
                dangling_tags.push(format!("{repo}:{tag} -> {digest}"));
            }
        }
        let mut stored = std::collections::BTreeMap::new();
        // Blobs a hold on another machine keeps are that hold's to check.
        let held = tx.open_table(HELD)?;
        for entry in tx.open_table(BLOBS)?.iter()? {
            let (digest, size) = entry?;
            if held.get(digest.value())?.is_none() {
                let digest = digest_of_key(digest.value())?;
                stored.insert(digest.as_str().to_owned(), size.value());
            }
        }
        for entry in manifests.iter()? {
            let (key, raw) = entry?;
            let record = ManifestRecord::decode(raw.value())?;
            let digest = digest_of_key(key.value().1)?;
            stored.insert(digest.as_str().to_owned(), record.size);
        }
        Ok(IndexAudit {
            dangling_tags,
            stored: stored.into_iter().collect(),
        })
    }
}

/// The id of `repo` in a read transaction, if it has one (a repository without one has nothing
/// in the index).
fn read_repo_id(tx: &redb::ReadTransaction, repo: &RepoKey) -> Result<Option<u64>, IndexError> {
    ids::find_repo(&tx.open_table(ids::REPO_IDS)?, repo.as_str())
}

fn ensure_repo(tx: &journal::WriteTransaction, repo: &str, now: u64) -> Result<(), IndexError> {
    let mut repos = tx.open_table(REPOS)?;
    if repos.get(repo)?.is_none() {
        repos.insert(repo, now)?;
    }
    Ok(())
}

/// Seconds since the Unix epoch.
fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

mod blobs;
mod codec;
mod derived;
mod file;
mod gc;
mod held;
mod ids;
mod journal;
mod key;
mod retention;
mod social;
mod upgrade;
mod usage;
pub use blobs::UploadSession;
use codec::{AFTER_DIGESTS, digest_key, digest_of_key};
pub use derived::{
    IndexChange, LAYER_COLLECTION, LayerOf, MANIFEST_COLLECTION, PAGE_COLLECTION, QuotaCheck,
    RecordAddr, RecordEntry, STAR_COLLECTION, Social, TAG_COLLECTION, TagTarget,
};
pub use gc::{Candidate, Marked, past_grace};
pub use key::RepoKey;
pub use retention::RepoContents;
pub use social::RepoSummary;

#[cfg(test)]
mod tests;
