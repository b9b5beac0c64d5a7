//! The part of the index derived from AT Protocol records: which record put which manifest or tag
//! where, and the event-log position the index has caught up to. Changes of one commit apply in
//! one write transaction together with the new position, so a crash replays whole commits.

use redb::{ReadableTable, TableDefinition};

use super::journal::WriteTransaction;
use serde::{Deserialize, Serialize};

use super::codec::{StoredEntry, collection_key};
use super::{
    Index, IndexError, MANIFESTS, MAX, ManifestRecord, REFERRERS, REFS, REPOS, RepoKey, TAGS,
    digest_key, gc, ids, social, usage,
};
pub(in crate::appview::index) use entries::named;
use entries::{entry, find_record_key, find_repo, set_entry};
use manifests::{delete_manifest_in, put_manifest_in};
pub use vouched::LayerOf;
pub(in crate::appview::index) use vouched::{LAYERS, VOUCHED};

mod entries;
mod manifests;
mod vouched;
use crate::atproto::Did;
use crate::blobstore::Digest;

/// (DID id, collection (`codec::collection_key`), rkey) → what the record put in the index
/// (`codec::StoredEntry`)
pub(super) const RECORDS: TableDefinition<(u32, &[u8], &str), &[u8]> =
    TableDefinition::new("records");
/// name → value: `cursor`, the last event sequence number applied; `format` (`codec::FORMAT`)
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

pub const MANIFEST_COLLECTION: &str = "io.atcr.manifest";
pub const TAG_COLLECTION: &str = "io.atcr.tag";
pub const STAR_COLLECTION: &str = "io.atcr.sailor.star";
pub const PAGE_COLLECTION: &str = "io.atcr.repo.page";
pub const LAYER_COLLECTION: &str = "io.atcr.hold.layer";

/// What one record contributed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordEntry {
    pub repo: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub social: Option<Social>,
    /// For a hold layer record (`digest` is the layer's): whose upload for which manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<LayerOf>,
}

/// A record that is neither a manifest nor a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Social {
    /// A star on the entry's repository.
    Star,
    /// The entry's repository page (its README).
    Page,
}

/// Where a record lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordAddr {
    pub did: String,
    pub collection: String,
    pub rkey: String,
}

/// What a tag record points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagTarget {
    /// A manifest record (the tag's `manifest` AT-URI).
    Record(RecordAddr),
    /// A digest (the deprecated `manifestDigest`).
    Digest(Digest),
}

/// What a manifest record must fit in. A manifest whose blobs new to its owner would take their
/// usage over `limit` is left out, as the registry would have refused it, unless the node's layer
/// records vouch for every blob (the registry pushed it, after checking the quota).
#[derive(Debug, Clone)]
pub struct QuotaCheck {
    /// The owner's limit in bytes.
    pub limit: u64,
    /// The manifest's blobs with their stored sizes, or their declared ones where storage does
    /// not hold them (yet): bytes uploaded later must not make an admitted manifest grow.
    pub blobs: Vec<(Digest, u64)>,
}

/// One change to the index, from one record operation.
#[derive(Debug, Clone)]
pub enum IndexChange {
    PutManifest {
        addr: RecordAddr,
        repo: String,
        digest: Digest,
        record: ManifestRecord,
        references: Vec<Digest>,
        referrer: Option<serde_json::Value>,
        /// Blobs the manifest references, with their stored sizes: each becomes servable from
        /// `repo` if a hold layer record for this manifest record names it with that size.
        links: Vec<(Digest, u64)>,
        /// The owner's quota, if they have one: see [`QuotaCheck`].
        quota: Option<QuotaCheck>,
    },
    /// A hold layer record (only the node's own count): `user` uploaded `digest` of `size`
    /// bytes for their manifest record `manifest_rkey`.
    PutLayer {
        addr: RecordAddr,
        layer: LayerOf,
        digest: Digest,
        size: u64,
        /// The size of the object in storage, if it is there.
        stored: Option<u64>,
    },
    PutTag {
        addr: RecordAddr,
        repo: String,
        tag: String,
        target: TagTarget,
    },
    /// A star record on `repo`.
    PutStar {
        addr: RecordAddr,
        repo: String,
    },
    /// `repo`'s page record, with its README text.
    PutPage {
        addr: RecordAddr,
        repo: String,
        text: String,
    },
    DeleteRecord(RecordAddr),
}

impl Index {
    /// Applies the changes of one commit and records `seq` as applied, in one transaction.
    /// Returns the repositories the changes touched.
    pub fn apply(
        &self,
        changes: &[IndexChange],
        seq: Option<u64>,
    ) -> Result<Vec<String>, IndexError> {
        let tx = self.begin_write()?;
        let mut touched = Vec::new();
        apply_in(&tx, changes, &mut touched)?;
        if let Some(seq) = seq {
            tx.open_table(META)?.insert("cursor", seq)?;
        }
        tx.commit()?;
        if seq.is_some() {
            self.forget_ahead();
        }
        touched.sort();
        touched.dedup();
        Ok(touched)
    }

    /// Applies the changes of several commits in order, each with its event's sequence
    /// number, and records the last as applied, in one transaction that skips the fsync:
    /// after a crash the index is back at a synced cursor and replays the events after it.
    /// The caller syncs when [`Index::sync_due`] says so, after it has answered whoever
    /// waits for these events (see [`Index::sync`]).
    pub fn apply_events(
        &self,
        events: &[(u64, Vec<IndexChange>)],
    ) -> Result<Vec<String>, IndexError> {
        let mut lazy = self
            .lazy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some((last, _)) = events.last() else {
            return Ok(Vec::new());
        };
        if events.iter().all(|(_, changes)| changes.is_empty()) {
            // Nothing to write: only the cursor moves, in memory until the next write or sync.
            lazy.ahead = Some(*last);
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write()?;
        tx.set_durability(redb::Durability::None)
            .map_err(|e| IndexError::Db(redb::Error::from(e)))?;
        let mut touched = Vec::new();
        for (_, changes) in events {
            apply_in(&tx, changes, &mut touched)?;
        }
        tx.open_table(META)?.insert("cursor", *last)?;
        tx.commit()?;
        lazy.pending = true;
        lazy.ahead = None;
        touched.sort();
        touched.dedup();
        Ok(touched)
    }

    /// Whether changes applied without an fsync have waited a second (`DURABLE_EVERY`) for one.
    #[must_use]
    pub fn sync_due(&self) -> bool {
        let lazy = self
            .lazy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (lazy.pending || lazy.ahead.is_some()) && lazy.synced.elapsed() >= super::DURABLE_EVERY
    }

    /// Makes derived changes applied without an fsync durable (an empty synced transaction).
    pub fn sync(&self) -> Result<(), IndexError> {
        let mut lazy = self
            .lazy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if lazy.pending || lazy.ahead.is_some() {
            let tx = self.begin_write()?;
            if let Some(seq) = lazy.ahead {
                tx.open_table(META)?.insert("cursor", seq)?;
            }
            tx.commit()?;
            *lazy = super::Lazy::default();
        }
        Ok(())
    }

    /// A cursor written to the table supersedes one kept in memory.
    fn forget_ahead(&self) {
        self.lazy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .ahead = None;
    }

    /// The last event sequence number applied (0: none).
    pub fn cursor(&self) -> Result<u64, IndexError> {
        let ahead = self
            .lazy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .ahead;
        if let Some(seq) = ahead {
            return Ok(seq);
        }
        let tx = self.db.begin_read()?;
        Ok(tx.open_table(META)?.get("cursor")?.map_or(0, |v| v.value()))
    }

    /// Empties everything derived from records, keeping upload sessions and the blobs uploaded
    /// into each repository, and sets the cursor to `seq`: the start of a rebuild.
    pub fn clear_derived(&self, seq: u64) -> Result<(), IndexError> {
        let tx = self.begin_write()?;
        clear_derived_in(&tx, seq)?;
        tx.commit()?;
        self.forget_ahead();
        Ok(())
    }

    /// The records of `did` in `collection` that put something into `repo`, with what they
    /// put there.
    pub fn records_for(
        &self,
        did: &Did,
        collection: &str,
        repo: &RepoKey,
    ) -> Result<Vec<(String, RecordEntry)>, IndexError> {
        let tx = self.db.begin_read()?;
        let (Some(user), Some(rid)) = (
            ids::find_did(&tx.open_table(ids::DID_IDS)?, did.as_str())?,
            ids::find_repo(&tx.open_table(ids::REPO_IDS)?, repo.as_str())?,
        ) else {
            return Ok(Vec::new());
        };
        let dids = tx.open_table(ids::DID_NAMES)?;
        let c = collection_key(collection);
        let table = tx.open_table(RECORDS)?;
        let mut out = Vec::new();
        for entry in table.range((user, c.as_slice(), "")..(user, c.as_slice(), MAX))? {
            let (key, value) = entry?;
            let stored = StoredEntry::decode(value.value())?;
            if stored.repo == Some(rid) {
                let record = named(
                    stored,
                    |_| Ok(repo.as_str().to_owned()),
                    |id| ids::did_name(&dids, id),
                )?;
                out.push((key.value().2.to_owned(), record));
            }
        }
        Ok(out)
    }
}

/// [`Index::clear_derived`] inside `tx`.
pub(super) fn clear_derived_in(tx: &WriteTransaction, seq: u64) -> Result<(), IndexError> {
    tx.delete_table(REPOS)?;
    tx.delete_table(LAYERS)?;
    tx.delete_table(VOUCHED)?;
    tx.delete_table(MANIFESTS)?;
    tx.delete_table(TAGS)?;
    tx.delete_table(REFS)?;
    tx.delete_table(gc::USERS)?;
    tx.delete_table(REFERRERS)?;
    tx.delete_table(RECORDS)?;
    social::delete_tables(tx)?;
    usage::clear(tx)?;
    tx.open_table(META)?.insert("cursor", seq)?;
    tx.open_table(REPOS)?;
    tx.open_table(MANIFESTS)?;
    tx.open_table(TAGS)?;
    tx.open_table(REFS)?;
    tx.open_table(gc::USERS)?;
    tx.open_table(REFERRERS)?;
    tx.open_table(RECORDS)?;
    tx.open_table(LAYERS)?;
    tx.open_table(VOUCHED)?;
    Ok(())
}

/// Applies `changes`, noting in `touched` every repository they change.
fn apply_in(
    tx: &WriteTransaction,
    changes: &[IndexChange],
    touched: &mut Vec<String>,
) -> Result<(), IndexError> {
    for change in changes {
        let addr = match change {
            IndexChange::PutManifest { addr, repo, .. }
            | IndexChange::PutTag { addr, repo, .. }
            | IndexChange::PutStar { addr, repo }
            | IndexChange::PutPage { addr, repo, .. } => {
                touched.push(repo.clone());
                addr
            }
            IndexChange::PutLayer { addr, .. } | IndexChange::DeleteRecord(addr) => addr,
        };
        // What the record put in before, wherever that was, changes too.
        if let Some(old) = entry(tx, addr)?
            && old.layer.is_none()
        {
            touched.push(old.repo);
        }
        apply_one(tx, change)?;
    }
    Ok(())
}

fn apply_one(tx: &WriteTransaction, change: &IndexChange) -> Result<(), IndexError> {
    match change {
        IndexChange::PutManifest {
            addr,
            repo,
            digest,
            record,
            references,
            referrer,
            links,
            quota,
        } => {
            // A key rewritten with another manifest drops what the old one put in.
            if let Some(old) = entry(tx, addr)?
                && (old.digest.as_ref() != Some(digest) || old.repo != *repo)
            {
                remove_entry(tx, addr, &old)?;
            }
            // Checked here, in the transaction that counts it, so records of one batch or one
            // commit cannot each fit alone and go over together.
            if let Some(q) = quota
                && !vouched::vouches_all(tx, addr, &q.blobs)?
                && !usage::fits(tx, repo, &q.blobs, q.limit)?
            {
                tracing::warn!(did = %addr.did, rkey = %addr.rkey, %digest, "manifest record over its owner's quota; not indexed");
                return Ok(());
            }
            put_manifest_in(tx, repo, digest, record, references, referrer.as_ref())?;
            usage::add(tx, repo, links)?;
            vouched::vouch_links(tx, addr, repo, links)?;
            set_entry(
                tx,
                addr,
                &RecordEntry {
                    repo: repo.clone(),
                    digest: Some(digest.clone()),
                    tag: None,
                    social: None,
                    layer: None,
                },
            )
        }
        IndexChange::PutLayer {
            addr,
            layer,
            digest,
            size,
            stored,
        } => {
            if let Some(old) = entry(tx, addr)? {
                remove_entry(tx, addr, &old)?;
            }
            vouched::put_layer(tx, layer, digest, *size, *stored)?;
            set_entry(
                tx,
                addr,
                &RecordEntry {
                    repo: String::new(),
                    digest: Some(digest.clone()),
                    tag: None,
                    social: None,
                    layer: Some(layer.clone()),
                },
            )
        }
        IndexChange::PutTag {
            addr,
            repo,
            tag,
            target,
        } => {
            let digest = match target {
                TagTarget::Digest(d) => Some(d.clone()),
                TagTarget::Record(m) => entry(tx, m)?
                    .filter(|e| &e.repo == repo)
                    .and_then(|e| e.digest),
            };
            if let Some(old) = entry(tx, addr)?
                && old.tag.as_deref() != Some(tag.as_str())
            {
                remove_entry(tx, addr, &old)?;
            }
            // A tag whose manifest is not (or no longer) here points nowhere: leave it out.
            let Some(digest) = digest else {
                return Ok(());
            };
            let Some(rid) = find_repo(tx, repo)? else {
                return Ok(());
            };
            let d = digest_key(&digest);
            if tx
                .open_table(MANIFESTS)?
                .get((rid, d.as_slice()))?
                .is_none()
            {
                return Ok(());
            }
            tx.open_table(TAGS)?
                .insert((rid, tag.as_str()), d.as_slice())?;
            set_entry(
                tx,
                addr,
                &RecordEntry {
                    repo: repo.clone(),
                    digest: None,
                    tag: Some(tag.clone()),
                    social: None,
                    layer: None,
                },
            )
        }
        IndexChange::PutStar { addr, repo } => {
            if let Some(old) = entry(tx, addr)? {
                remove_entry(tx, addr, &old)?;
            }
            social::put_star(tx, &addr.did, &addr.rkey, repo)?;
            set_entry(tx, addr, &social_entry(repo, Social::Star))
        }
        IndexChange::PutPage { addr, repo, text } => {
            if let Some(old) = entry(tx, addr)? {
                remove_entry(tx, addr, &old)?;
            }
            social::put_page(tx, repo, text)?;
            set_entry(tx, addr, &social_entry(repo, Social::Page))
        }
        IndexChange::DeleteRecord(addr) => match entry(tx, addr)? {
            Some(old) => remove_entry(tx, addr, &old),
            None => Ok(()),
        },
    }
}

fn social_entry(repo: &str, kind: Social) -> RecordEntry {
    RecordEntry {
        repo: repo.to_owned(),
        digest: None,
        tag: None,
        social: Some(kind),
        layer: None,
    }
}

/// Takes out what a record put in: its manifest (with the tags pointing at it) or its tag.
fn remove_entry(
    tx: &WriteTransaction,
    addr: &RecordAddr,
    e: &RecordEntry,
) -> Result<(), IndexError> {
    if let Some((did, c)) = find_record_key(tx, addr)? {
        tx.open_table(RECORDS)?
            .remove((did, c.as_slice(), addr.rkey.as_str()))?;
    }
    if let Some(layer) = &e.layer {
        if let Some(digest) = &e.digest {
            vouched::remove_layer(tx, layer, digest)?;
        }
        return Ok(());
    }
    if e.digest.is_some() {
        // What this record's layer records vouched for in its repository goes with it.
        vouched::unvouch_manifest(tx, addr, &e.repo)?;
    }
    // Two records may index one manifest (a push's and another writer's, keyed by digest):
    // it stays while either does.
    if let Some(digest) = &e.digest
        && !indexed_by_another(tx, &addr.did, &e.repo, digest)?
    {
        delete_manifest_in(tx, &e.repo, digest)?;
    }
    if let Some(tag) = &e.tag
        && let Some(rid) = find_repo(tx, &e.repo)?
    {
        tx.open_table(TAGS)?.remove((rid, tag.as_str()))?;
    }
    match e.social {
        Some(Social::Star) => social::delete_star(tx, &addr.did, &addr.rkey)?,
        Some(Social::Page) => social::delete_page(tx, &e.repo)?,
        None => {}
    }
    Ok(())
}

/// Whether a manifest record of `did` (other than one just removed) indexes `digest` in
/// `repo`. Only `did` writes into its own repositories, so its records are all there are.
fn indexed_by_another(
    tx: &WriteTransaction,
    did: &str,
    repo: &str,
    digest: &Digest,
) -> Result<bool, IndexError> {
    let (Some(user), Some(rid)) = (
        ids::find_did(&tx.open_table(ids::DID_IDS)?, did)?,
        find_repo(tx, repo)?,
    ) else {
        return Ok(false);
    };
    let c = collection_key(MANIFEST_COLLECTION);
    let table = tx.open_table(RECORDS)?;
    for row in table.range((user, c.as_slice(), "")..(user, c.as_slice(), MAX))? {
        let (_, value) = row?;
        let e = StoredEntry::decode(value.value())?;
        if e.repo == Some(rid) && e.digest.as_ref() == Some(digest) {
            return Ok(true);
        }
    }
    Ok(false)
}
