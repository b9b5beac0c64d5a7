//! The index as a function of the records: the event-log consumer that keeps it current, and
//! the rebuild that recreates it from the repositories and blob storage alone.
//!
//! Every `#commit` event's `io.atcr.manifest`/`io.atcr.tag` operations become [`IndexChange`]s
//! applied in one index transaction with the event's sequence number, so the index is always
//! at a commit boundary, a crash replays whole commits, and replaying is harmless (every
//! change is an upsert or a removal by record key).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::layers::{self, LAYER_COLLECTION};
use super::records::{self, MANIFEST_COLLECTION, PAGE_COLLECTION, STAR_COLLECTION, TAG_COLLECTION};
use super::{AppView, AppViewError};
use crate::appview::index::{
    Index, IndexChange, LayerOf, ManifestRecord, QuotaCheck, RecordAddr, TagTarget,
};
use crate::appview::summary::ManifestSummary;
use crate::atproto::{BlockStore, Cid, Did, Value};
use crate::oci::manifest::{MAX_MANIFEST_BYTES, Manifest};
use crate::oci::name::RepoName;
use crate::pds::events;

mod rebuild;

/// The collections the index follows, manifests before the tags that point at them. Layer
/// records count only in the node's repository.
const INDEXED: [&str; 5] = [
    LAYER_COLLECTION,
    MANIFEST_COLLECTION,
    TAG_COLLECTION,
    STAR_COLLECTION,
    PAGE_COLLECTION,
];

/// Largest image config read for the manifest summary (configs are a few KiB).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Events read from the log per batch.
const BATCH: usize = 256;
/// How long the event log stays quiet before what the index applied without a sync is synced.
const SYNC_WHEN_IDLE: Duration = Duration::from_millis(500);

/// Why [`AppView::follow_published`] stopped following.
enum Followed {
    /// The published events no longer follow the cursor: read the log.
    Gap,
    /// The node is stopping.
    Stopped,
}

/// What a rebuild found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RebuildStats {
    pub repos: u64,
    pub manifests: u64,
    pub tags: u64,
}

impl RebuildStats {
    /// Counts a rebuild's change and keeps it in `changes` (a removal has nothing to remove).
    pub(super) fn count(&mut self, change: IndexChange, changes: &mut Vec<IndexChange>) {
        match change {
            IndexChange::PutManifest { .. } => self.manifests += 1,
            IndexChange::PutTag { .. } => self.tags += 1,
            IndexChange::DeleteRecord(_) => return,
            IndexChange::PutStar { .. }
            | IndexChange::PutPage { .. }
            | IndexChange::PutLayer { .. } => {}
        }
        changes.push(change);
    }
}

/// One record operation of a commit.
struct RecordOp {
    addr: RecordAddr,
    /// The new record; `None` for a delete.
    cid: Option<Cid>,
}

impl AppView {
    /// Follows the PDS event log until `cancel`: applies every new event to the index, and
    /// syncs it once the log has been quiet for a moment and when stopping.
    pub async fn run_indexer(self: Arc<Self>, cancel: CancellationToken) {
        self.follow_events(&cancel).await;
        self.sync_index().await;
    }

    async fn follow_events(&self, cancel: &CancellationToken) {
        // Subscribed before catching up, so no event published meanwhile goes unnoticed.
        let mut published = self.pds.repos.subscribe();
        loop {
            let followed = match self.catch_up().await {
                Ok(()) => self.follow_published(&mut published, cancel).await,
                Err(e) => Err(e),
            };
            match followed {
                Ok(Followed::Gap) => {}
                Ok(Followed::Stopped) => return,
                Err(e) => {
                    tracing::error!(error = %e, "indexing failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = cancel.cancelled() => return,
                    }
                }
            }
        }
    }

    /// Applies events as the PDS publishes them, from the frames it hands out: no read of the
    /// log and no blocking thread for a commit the index has nothing to take from (most of a
    /// PDS's). Returns at the first event that does not follow the cursor (one missed, or this
    /// receiver lagged behind), for [`AppView::catch_up`] to read from the log, and syncs what
    /// was applied once the PDS has been quiet for a moment.
    async fn follow_published(
        &self,
        published: &mut broadcast::Receiver<(u64, Bytes)>,
        cancel: &CancellationToken,
    ) -> Result<Followed, AppViewError> {
        let mut synced = false;
        loop {
            let received = tokio::select! {
                r = published.recv() => r,
                () = cancel.cancelled() => return Ok(Followed::Stopped),
                () = tokio::time::sleep(SYNC_WHEN_IDLE), if !synced => {
                    self.sync_index().await;
                    synced = true;
                    continue;
                }
            };
            synced = false;
            let first = match received {
                Ok(event) => event,
                Err(broadcast::error::RecvError::Lagged(_)) => return Ok(Followed::Gap),
                Err(broadcast::error::RecvError::Closed) => {
                    cancel.cancelled().await;
                    return Ok(Followed::Stopped);
                }
            };
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match published.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(_) => break,
                }
            }
            let cursor = self.index.cursor()?;
            let Some(batch) = following(cursor, batch) else {
                return Ok(Followed::Gap);
            };
            self.apply_batch(cursor, batch).await?;
        }
    }

    async fn sync_index(&self) {
        if let Err(e) = self.index.write(Index::sync).await {
            tracing::warn!(error = %e, "could not sync the registry index");
        }
    }

    /// Applies every event after the index's cursor. What it applies may not be synced yet
    /// (see [`Index::apply_events`]); [`AppView::catch_up_and_sync`] syncs it too.
    pub async fn catch_up(&self) -> Result<(), AppViewError> {
        let store = self.pds.store().clone();
        loop {
            let cursor = self.index.cursor()?;
            let s = store.clone();
            let batch = tokio::task::spawn_blocking(move || s.events_after(cursor, BATCH))
                .await
                .map_err(|e| AppViewError::Data(e.to_string()))??;
            // A short batch was the end of the log when read; what comes later is published.
            let caught_up = batch.len() < BATCH;
            self.apply_batch(cursor, batch).await?;
            if caught_up {
                return Ok(());
            }
        }
    }

    /// Applies `batch`, the events right after `cursor` in sequence order, and tells whoever
    /// waits for them.
    async fn apply_batch(&self, cursor: u64, batch: Vec<(u64, Bytes)>) -> Result<(), AppViewError> {
        let mut events = Vec::with_capacity(batch.len());
        for (seq, frame) in batch {
            events.push((seq, self.changes_of_event(&frame).await?));
        }
        let Some(&(last, _)) = events.last() else {
            self.indexed.send_if_modified(|s| {
                let changed = *s != cursor;
                *s = cursor;
                changed
            });
            return Ok(());
        };
        let touched = if events.iter().all(|(_, changes)| changes.is_empty()) {
            // Only the cursor moves, in memory: nothing to hand to a blocking thread.
            self.index.apply_events(&events)?
        } else {
            // The whole batch in one transaction, however many events arrived.
            self.index.write(move |ix| ix.apply_events(&events)).await?
        };
        self.mark_for_search(touched);
        self.indexed.send_replace(last);
        // Once a second under load, the changes become durable here, after the requests
        // waiting for them were answered: the sync writes a second of pages and holds the
        // index's writer through an fsync, and no request should wait for that.
        if self.index.sync_due() {
            self.sync_index().await;
        }
        Ok(())
    }

    /// [`AppView::catch_up`], then makes the index durable (at start and after a rebuild).
    pub async fn catch_up_and_sync(&self) -> Result<(), AppViewError> {
        self.rebuild_if_the_log_was_pruned_past().await?;
        self.catch_up().await?;
        self.index.write(Index::sync).await?;
        Ok(())
    }

    /// The index changes one event frame asks for.
    async fn changes_of_event(&self, frame: &[u8]) -> Result<Vec<IndexChange>, AppViewError> {
        let Some((header, body)) = events::parse_frame(frame) else {
            tracing::warn!("unreadable event in the log; skipped");
            return Ok(Vec::new());
        };
        if header.get("t").and_then(Value::as_str) != Some("#commit") {
            return Ok(Vec::new());
        }
        let Some(did) = body
            .get("repo")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Did>().ok())
        else {
            return Ok(Vec::new());
        };
        let mut ops = Vec::new();
        if let Some(Value::Array(list)) = body.get("ops") {
            for op in list {
                let Some((collection, rkey)) = op
                    .get("path")
                    .and_then(Value::as_str)
                    .and_then(|p| p.split_once('/'))
                else {
                    continue;
                };
                if !INDEXED.contains(&collection) {
                    continue;
                }
                let cid = match op.get("cid") {
                    Some(Value::Link(c)) => Some(*c),
                    _ => None,
                };
                ops.push(RecordOp {
                    addr: RecordAddr {
                        did: did.as_str().to_owned(),
                        collection: collection.to_owned(),
                        rkey: rkey.to_owned(),
                    },
                    cid,
                });
            }
        }
        // Manifests before the tags that may point at them; removals last.
        ops.sort_by_key(|op| (op.cid.is_none(), op.addr.collection == TAG_COLLECTION));
        let mut changes = Vec::with_capacity(ops.len());
        for op in ops {
            changes.push(self.change_of(&did, op).await?);
        }
        Ok(changes)
    }

    /// The index change of one record operation. A record we cannot serve (malformed, or its
    /// manifest bytes missing) removes whatever its key put in before.
    async fn change_of(&self, did: &Did, op: RecordOp) -> Result<IndexChange, AppViewError> {
        let Some(cid) = op.cid else {
            return Ok(IndexChange::DeleteRecord(op.addr));
        };
        let Some(bytes) = self.pds.store().get(&cid)? else {
            return Ok(IndexChange::DeleteRecord(op.addr));
        };
        let Ok(record) = Value::from_cbor(&bytes) else {
            return Ok(IndexChange::DeleteRecord(op.addr));
        };
        self.change_of_record(did, op.addr, &record.to_json()).await
    }

    /// The index change of a record put at `addr` (in a repository here, or mirrored from a
    /// remote user's); a record we cannot serve removes whatever its key put in before.
    pub(super) async fn change_of_record(
        &self,
        did: &Did,
        addr: RecordAddr,
        record: &serde_json::Value,
    ) -> Result<IndexChange, AppViewError> {
        let change = match addr.collection.as_str() {
            LAYER_COLLECTION => self.layer_change(did, addr.clone(), record).await?,
            MANIFEST_COLLECTION => self.manifest_change(did, addr.clone(), record).await?,
            TAG_COLLECTION => tag_change(did, addr.clone(), record),
            STAR_COLLECTION => star_change(addr.clone(), record),
            _ => page_change(did, addr.clone(), record),
        };
        Ok(change.unwrap_or(IndexChange::DeleteRecord(addr)))
    }

    async fn manifest_change(
        &self,
        did: &Did,
        addr: RecordAddr,
        record: &serde_json::Value,
    ) -> Result<Option<IndexChange>, AppViewError> {
        let Some(m) = records::read_manifest(record) else {
            tracing::warn!(%did, rkey = %addr.rkey, "manifest record without a usable digest; not indexed");
            return Ok(None);
        };
        let Some(repo) = repo_key(did, &m.repository) else {
            return Ok(None);
        };
        let size = match self.blobs.stat(&m.digest).await? {
            Some(n) if n <= MAX_MANIFEST_BYTES as u64 => n,
            _ => {
                tracing::warn!(%did, digest = %m.digest, "manifest record whose manifest is not in storage; not indexed");
                return Ok(None);
            }
        };
        let bytes = self.blobs.read_range(&m.digest, 0..size).await?;
        // The bytes in storage are not the writer's unless they uploaded them as a blob of their
        // repository (the push path does; so does `uploadBlob`): a record naming someone else's
        // manifest serves nothing.
        if !self
            .pds
            .repos
            .store()
            .has_blob(did, &Cid::for_raw(&bytes))?
        {
            tracing::warn!(%did, digest = %m.digest, "manifest record over bytes its author never uploaded; not indexed");
            return Ok(None);
        }
        let Ok(manifest) = Manifest::parse(&bytes, Some(&m.media_type)) else {
            tracing::warn!(%did, digest = %m.digest, "manifest record over an invalid manifest; not indexed");
            return Ok(None);
        };
        let own = self.pds.accounts.get(did)?.and_then(|a| a.quota);
        let mut quota = self.quota_limit(own).map(|limit| QuotaCheck {
            limit,
            blobs: Vec::new(),
        });
        let mut links = Vec::new();
        for blob in manifest.blobs.iter().filter(|b| !b.is_non_distributable()) {
            let known = match self.index.blob(&blob.digest)? {
                Some(n) => Some(n),
                None => self.blobs.stat(&blob.digest).await?,
            };
            if let Some(q) = &mut quota {
                q.blobs
                    .push((blob.digest.clone(), known.unwrap_or(blob.size)));
            }
            if let Some(n) = known {
                links.push((blob.digest.clone(), n));
            }
        }
        // Only blobs in storage now: one uploaded after the record was indexed is not kept
        // (nor counted) for it, so records written ahead of their blobs keep nothing alive.
        let references = links
            .iter()
            .map(|(d, _)| d.clone())
            .chain(
                manifest
                    .manifests
                    .iter()
                    .filter(|d| !d.is_non_distributable())
                    .map(|d| d.digest.clone()),
            )
            .collect();
        let config = match manifest.config() {
            Some(c) if c.size <= MAX_CONFIG_BYTES => match self.blobs.stat(&c.digest).await? {
                Some(n) if n == c.size => Some(self.blobs.read_range(&c.digest, 0..n).await?),
                _ => None,
            },
            _ => None,
        };
        let summary = ManifestSummary::of(&manifest, config.as_deref());
        let referrer = manifest
            .subject
            .as_ref()
            .map(|_| manifest.referrer_descriptor(&m.digest, size));
        Ok(Some(IndexChange::PutManifest {
            addr,
            repo,
            record: ManifestRecord {
                media_type: manifest.media_type.clone(),
                size,
                artifact_type: manifest.effective_artifact_type().map(str::to_owned),
                subject: manifest.subject.as_ref().map(|s| s.digest.clone()),
                created: m.created,
                summary: Some(Box::new(summary)),
            },
            digest: m.digest,
            references,
            referrer,
            links,
            quota,
        }))
    }

    /// A hold layer record: only the node's own vouch for anything.
    async fn layer_change(
        &self,
        did: &Did,
        addr: RecordAddr,
        record: &serde_json::Value,
    ) -> Result<Option<IndexChange>, AppViewError> {
        if *did != self.pds.node_did {
            return Ok(None);
        }
        let Some(l) = layers::read_layer(record) else {
            return Ok(None);
        };
        let stored = match self.index.blob(&l.digest)? {
            Some(n) => Some(n),
            None => self.blobs.stat(&l.digest).await?,
        };
        Ok(Some(IndexChange::PutLayer {
            addr,
            layer: LayerOf {
                user: l.manifest.did,
                manifest_rkey: l.manifest.rkey,
            },
            digest: l.digest,
            size: l.size,
            stored,
        }))
    }

    /// Prunes the event log to the `keep_secs` before `now` (unix seconds), never past an
    /// event the index has not applied; returns how many events went.
    pub async fn prune_event_log(&self, keep_secs: u64, now: u64) -> Result<u64, AppViewError> {
        let store = self.pds.store().clone();
        let applied = self.index.cursor()?;
        let cutoff = now.saturating_sub(keep_secs);
        let pruned = tokio::task::spawn_blocking(move || store.prune_events(cutoff, applied))
            .await
            .map_err(|e| AppViewError::Data(e.to_string()))??;
        if pruned > 0 {
            tracing::info!(pruned, keep_secs, "pruned the firehose event log");
        }
        Ok(pruned)
    }
}

/// The published events to apply after `cursor`: those not applied yet (events published while
/// the log was read are), if they follow it without a gap; `None` when one is missing, for the
/// log to fill in.
fn following(cursor: u64, mut batch: Vec<(u64, Bytes)>) -> Option<Vec<(u64, Bytes)>> {
    batch.retain(|(seq, _)| *seq > cursor);
    let expected = cursor + 1..=cursor + batch.len() as u64;
    batch.iter().map(|e| e.0).eq(expected).then_some(batch)
}

/// The index key of repository `path` of `did`, if `path` is a valid repository path.
fn repo_key(did: &Did, path: &str) -> Option<String> {
    format!("x/{path}").parse::<RepoName>().ok()?;
    Some(format!("{did}/{path}"))
}

fn tag_change(did: &Did, addr: RecordAddr, record: &serde_json::Value) -> Option<IndexChange> {
    let t = records::read_tag(record)?;
    t.tag.parse::<crate::oci::name::Tag>().ok()?;
    let repo = repo_key(did, &t.repository)?;
    let target = match (t.manifest, t.digest) {
        (Some(m), _) if m.collection == MANIFEST_COLLECTION => TagTarget::Record(m),
        (_, Some(d)) => TagTarget::Digest(d),
        _ => return None,
    };
    Some(IndexChange::PutTag {
        addr,
        repo,
        tag: t.tag,
        target,
    })
}

/// A star record: its subject is the AT-URI of a repository's page record
/// (`at://<owner>/io.atcr.repo.page/<repository>`).
fn star_change(addr: RecordAddr, record: &serde_json::Value) -> Option<IndexChange> {
    let subject = record.get("subject")?.as_str()?;
    let (owner, rkey) = records::page_uri_parts(subject)?;
    let repo = repo_key(&owner, &records::page_repository(&rkey))?;
    Some(IndexChange::PutStar { addr, repo })
}

/// A repository page record: its README text (`description`).
fn page_change(did: &Did, addr: RecordAddr, record: &serde_json::Value) -> Option<IndexChange> {
    let repository = record.get("repository")?.as_str()?;
    if records::page_rkey(repository) != addr.rkey {
        return None;
    }
    let repo = repo_key(did, repository)?;
    let text = record
        .get("description")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Some(IndexChange::PutPage { addr, repo, text })
}

#[cfg(test)]
mod tests;
