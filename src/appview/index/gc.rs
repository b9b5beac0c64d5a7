//! What garbage collection needs from the index: who uses each blob, when each was last linked,
//! which manifests' own objects are stored, and the two phases (mark in a read transaction,
//! sweep in write transactions that check again). The orchestration, pins and object deletion
//! are in `crate::appview::gc`.

use std::collections::HashMap;

use redb::{ReadableTable, TableDefinition};

use super::journal::WriteTransaction;

use super::{
    AFTER_DIGESTS, BLOBS, Index, IndexError, REPO_BLOBS, RepoKey, digest_key, digest_of_key, ids,
};
use crate::blobstore::Digest;

/// (used digest, repository id, manifest digest): every digest a manifest in the index makes
/// reachable — its blobs and child manifests (the rows of `REFS`, turned around), its subject,
/// and the manifest itself. Derived: emptied and refilled with the manifests by a rebuild.
pub(super) const USERS: TableDefinition<(&[u8], u64, &[u8]), ()> =
    TableDefinition::new("blob_users");
/// digest → unix seconds: when a blob was last written or linked into a repository. Not derived
/// (like `BLOBS`). A blob without a time counts as linked when the collector first sees it.
pub(super) const TOUCHED: TableDefinition<&[u8], u64> = TableDefinition::new("blob_touched");
/// digest → size: manifests' own objects in storage (a manifest's bytes are stored under its
/// digest, beside the blobs). Not derived, like `BLOBS`: every manifest the index takes up adds
/// its row, and a rebuild or deleted records never remove one. The collector takes these
/// objects as it takes blobs, once no manifest is, or names, that digest.
pub(super) const MANIFEST_OBJECTS: TableDefinition<&[u8], u64> =
    TableDefinition::new("manifest_objects");
/// name → value: `last_run`, when the last collection finished (unix seconds). Not derived.
pub(super) const GC_META: TableDefinition<&str, u64> = TableDefinition::new("gc_meta");
const LAST_RUN: &str = "last_run";

/// A blob the mark phase found collectable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub digest: Digest,
    pub size: u64,
    /// Its last-linked time when marked: the sweep takes it only if that has not changed.
    pub touched: u64,
    /// The repositories it was linked into when marked.
    pub repos: Vec<RepoKey>,
}

/// What the mark phase found.
#[derive(Debug, Default)]
pub struct Marked {
    pub candidates: Vec<Candidate>,
    /// Blobs without a last-linked time (from before times were kept): they get `now`.
    pub untimed: Vec<Digest>,
    /// Blobs looked at.
    pub blobs: u64,
}

/// Whether a blob last linked at `touched` is past the grace at `now`.
#[must_use]
pub fn past_grace(touched: u64, now: u64, grace_secs: u64) -> bool {
    now.saturating_sub(touched) >= grace_secs && touched <= now
}

/// Notes the use of `used` (a digest key) by manifest `manifest` of repository `repo` (called
/// with the manifest's own `REFS` rows, its subject and itself).
pub(super) fn add_user(
    tx: &WriteTransaction,
    used: &[u8],
    repo: u64,
    manifest: &[u8],
) -> Result<(), IndexError> {
    tx.open_table(USERS)?.insert((used, repo, manifest), ())?;
    Ok(())
}

/// Notes manifest `manifest` of `repo` (`size` bytes): it uses its own object, and that object
/// is stored, and collectable once no manifest uses it. Its last-linked time moves on.
pub(super) fn add_manifest(
    tx: &WriteTransaction,
    repo: u64,
    manifest: &[u8],
    size: u64,
) -> Result<(), IndexError> {
    add_user(tx, manifest, repo, manifest)?;
    tx.open_table(MANIFEST_OBJECTS)?.insert(manifest, size)?;
    touch(tx, manifest)
}

pub(super) fn remove_user(
    tx: &WriteTransaction,
    used: &[u8],
    repo: u64,
    manifest: &[u8],
) -> Result<(), IndexError> {
    tx.open_table(USERS)?.remove((used, repo, manifest))?;
    Ok(())
}

/// Sets a blob's (digest key's) last-linked time to now (never back). Links by requests are
/// also pinned, and links by indexing come with a manifest that uses the blob, so the sweep's
/// check that the time is unchanged is a second line, not the one safety rests on.
pub(super) fn touch(tx: &WriteTransaction, digest: &[u8]) -> Result<(), IndexError> {
    let mut table = tx.open_table(TOUCHED)?;
    let before = table.get(digest)?.map(|v| v.value());
    let now = super::now_secs();
    table.insert(digest, before.map_or(now, |b| b.max(now)))?;
    Ok(())
}

/// Whether a manifest uses `digest` (a digest key), in any repository.
fn is_used(
    users: &impl ReadableTable<(&'static [u8], u64, &'static [u8]), ()>,
    digest: &[u8],
) -> Result<bool, IndexError> {
    Ok(users
        .range((digest, 0, &[][..])..=(digest, u64::MAX, AFTER_DIGESTS))?
        .next()
        .is_some())
}

impl Index {
    /// The mark phase, in one read transaction: every stored blob or manifest object no
    /// manifest uses and last linked at least `grace_secs` before `now`, with where it is linked.
    pub fn gc_mark(&self, now: u64, grace_secs: u64) -> Result<Marked, IndexError> {
        let tx = self.db.begin_read()?;
        let users = tx.open_table(USERS)?;
        let touched = tx.open_table(TOUCHED)?;
        let blobs = tx.open_table(BLOBS)?;
        let mut marked = Marked::default();
        let mut look = |d: &[u8], size: u64| -> Result<(), IndexError> {
            marked.blobs += 1;
            let Ok(digest) = digest_of_key(d) else {
                return Ok(());
            };
            let Some(t) = touched.get(d)?.map(|v| v.value()) else {
                marked.untimed.push(digest);
                return Ok(());
            };
            if past_grace(t, now, grace_secs) && !is_used(&users, d)? {
                marked.candidates.push(Candidate {
                    digest,
                    size,
                    touched: t,
                    repos: Vec::new(),
                });
            }
            Ok(())
        };
        for entry in blobs.iter()? {
            let (key, size) = entry?;
            look(key.value(), size.value())?;
        }
        // A manifest's bytes uploaded as a blob too are one object: the blob's row stands for it.
        for entry in tx.open_table(MANIFEST_OBJECTS)?.iter()? {
            let (key, size) = entry?;
            if blobs.get(key.value())?.is_none() {
                look(key.value(), size.value())?;
            }
        }
        let at: HashMap<Vec<u8>, usize> = marked
            .candidates
            .iter()
            .enumerate()
            .map(|(i, c)| (digest_key(&c.digest), i))
            .collect();
        if !at.is_empty() {
            let names = tx.open_table(ids::REPO_NAMES)?;
            for entry in tx.open_table(REPO_BLOBS)?.iter()? {
                let (key, _) = entry?;
                let (repo, d) = key.value();
                if let Some(&i) = at.get(d) {
                    let repo = RepoKey::from_stored(ids::repo_name(&names, repo)?);
                    marked.candidates[i].repos.push(repo);
                }
            }
        }
        Ok(marked)
    }

    /// Gives blobs and manifest objects without a last-linked time the time `now` (the collector's first sight).
    pub fn gc_set_untimed(&self, digests: &[Digest], now: u64) -> Result<(), IndexError> {
        let tx = self.begin_write()?;
        {
            let mut touched = tx.open_table(TOUCHED)?;
            for d in digests {
                let d = digest_key(d);
                if touched.get(d.as_slice())?.is_none() {
                    touched.insert(d.as_slice(), now)?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Of `digests` (objects found in storage), those the index does not account for: neither
    /// an uploaded blob nor a manifest's object.
    pub fn unknown_objects(&self, digests: &[Digest]) -> Result<Vec<Digest>, IndexError> {
        let tx = self.db.begin_read()?;
        let blobs = tx.open_table(BLOBS)?;
        let manifests = tx.open_table(MANIFEST_OBJECTS)?;
        let mut out = Vec::new();
        for d in digests {
            let key = digest_key(d);
            if blobs.get(key.as_slice())?.is_none() && manifests.get(key.as_slice())?.is_none() {
                out.push(d.clone());
            }
        }
        Ok(out)
    }

    /// Takes up objects storage holds but the index does not know (left by a crash between
    /// writing an object and recording it, or between a sweep's commit and its deletes): each
    /// becomes a stored blob last linked at `now`, so the collector takes it a grace later if
    /// nothing uses it by then. Ones recorded meanwhile are left as they are. Returns how many
    /// were taken up.
    pub fn adopt_objects(&self, objects: &[(Digest, u64)], now: u64) -> Result<u64, IndexError> {
        let tx = self.begin_write()?;
        let mut adopted = 0;
        {
            let mut blobs = tx.open_table(BLOBS)?;
            let manifests = tx.open_table(MANIFEST_OBJECTS)?;
            let mut touched = tx.open_table(TOUCHED)?;
            for (digest, size) in objects {
                let d = digest_key(digest);
                let d = d.as_slice();
                if blobs.get(d)?.is_none() && manifests.get(d)?.is_none() {
                    blobs.insert(d, *size)?;
                    touched.insert(d, now)?;
                    adopted += 1;
                }
            }
        }
        tx.commit()?;
        Ok(adopted)
    }

    /// Reads, in a read transaction, the rows [`Index::gc_sweep`] will read for `candidates`,
    /// so that its write transaction — which every push waits for — finds their pages in the
    /// cache instead of reading them while it holds the writer.
    pub fn gc_sweep_prefetch(&self, candidates: &[Candidate]) -> Result<(), IndexError> {
        let tx = self.db.begin_read()?;
        let users = tx.open_table(USERS)?;
        let touched = tx.open_table(TOUCHED)?;
        let blobs = tx.open_table(BLOBS)?;
        let manifests = tx.open_table(MANIFEST_OBJECTS)?;
        let repo_blobs = tx.open_table(REPO_BLOBS)?;
        let held = tx.open_table(super::HELD)?;
        let repo_ids = tx.open_table(ids::REPO_IDS)?;
        for c in candidates {
            let d = digest_key(&c.digest);
            let d = d.as_slice();
            touched.get(d)?;
            is_used(&users, d)?;
            blobs.get(d)?;
            manifests.get(d)?;
            held.get(d)?;
            for repo in &c.repos {
                if let Some(rid) = ids::find_repo(&repo_ids, repo.as_str())? {
                    repo_blobs.get((rid, d))?;
                }
            }
        }
        Ok(())
    }

    /// The sweep's index half, in one write transaction: of `candidates` (claimed by the
    /// caller), removes the index entries of each blob or manifest object still unused by any
    /// manifest, still stored, and not linked since it was marked (its time unchanged and past
    /// the grace at `now`). Returns the removed ones: from the commit on, no request finds them,
    /// and their objects may go.
    pub fn gc_sweep(
        &self,
        candidates: &[Candidate],
        now: u64,
        grace_secs: u64,
    ) -> Result<Vec<Candidate>, IndexError> {
        let tx = self.begin_write()?;
        let mut removed = Vec::new();
        {
            let users = tx.open_table(USERS)?;
            let mut touched = tx.open_table(TOUCHED)?;
            let mut blobs = tx.open_table(BLOBS)?;
            let mut manifests = tx.open_table(MANIFEST_OBJECTS)?;
            let mut repo_blobs = tx.open_table(REPO_BLOBS)?;
            let mut held = tx.open_table(super::HELD)?;
            let repo_ids = tx.open_table(ids::REPO_IDS)?;
            for c in candidates {
                let d = digest_key(&c.digest);
                let d = d.as_slice();
                let t = touched.get(d)?.map(|v| v.value());
                if t != Some(c.touched)
                    || !past_grace(c.touched, now, grace_secs)
                    || is_used(&users, d)?
                    || (blobs.get(d)?.is_none() && manifests.get(d)?.is_none())
                {
                    continue;
                }
                blobs.remove(d)?;
                manifests.remove(d)?;
                touched.remove(d)?;
                held.remove(d)?;
                for repo in &c.repos {
                    if let Some(rid) = ids::find_repo(&repo_ids, repo.as_str())? {
                        repo_blobs.remove((rid, d))?;
                    }
                }
                removed.push(c.clone());
            }
        }
        tx.commit()?;
        Ok(removed)
    }

    /// When the last collection finished (unix seconds), if one ever did.
    pub fn gc_last_run(&self) -> Result<Option<u64>, IndexError> {
        let tx = self.db.begin_read()?;
        Ok(tx.open_table(GC_META)?.get(LAST_RUN)?.map(|v| v.value()))
    }

    pub fn set_gc_last_run(&self, at: u64) -> Result<(), IndexError> {
        let tx = self.begin_write()?;
        tx.open_table(GC_META)?.insert(LAST_RUN, at)?;
        tx.commit()?;
        Ok(())
    }

    /// The size of a manifest's own object the collector knows is stored (tests and checks).
    pub fn manifest_object(&self, digest: &Digest) -> Result<Option<u64>, IndexError> {
        let tx = self.db.begin_read()?;
        Ok(tx
            .open_table(MANIFEST_OBJECTS)?
            .get(digest_key(digest).as_slice())?
            .map(|v| v.value()))
    }

    /// Whether a manifest in the index uses `digest` (tests and checks).
    pub fn blob_is_used(&self, digest: &Digest) -> Result<bool, IndexError> {
        let tx = self.db.begin_read()?;
        is_used(&tx.open_table(USERS)?, &digest_key(digest))
    }
}
