//! Online garbage collection of blobs and stale uploads, while the node serves.
//!
//! Two phases (see `docs/registry.md`, "Garbage collection"):
//! 1. **Mark** ([`Index::gc_mark`], one read transaction): every stored blob that no manifest in
//!    the index uses (as config, layer, child manifest or subject, or by being the manifest) and
//!    that was last written or linked at least the grace before now becomes a candidate, with
//!    that time and the repositories it is linked into.
//! 2. **Sweep**, in batches: the candidates nobody pins are claimed ([`Pins::claim`]); one
//!    write transaction ([`Index::gc_sweep`]) checks each again — still unused, time unchanged,
//!    still past the grace — and removes its index entries; then the objects go from storage
//!    (unless a PDS blob shares the object: see `pds_owned_among`); then the claims are
//!    released.
//! 3. **Leftovers**: storage is listed for objects neither the index nor the PDS accounts for
//!    (a crash between writing one and recording it); those past the grace are taken up as
//!    unused blobs, for a later run to collect.
//!
//! Blob storage is reached only through [`BlobStore`], so every backend collects alike.
//!
//! The same run collects the PDS's blocks that no repository head reaches
//! ([`PdsStore::collect_blocks`], a mark and sweep of its own; see `pds/store/collect.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::index::{Candidate, Index, IndexError, past_grace};
use crate::atproto::Cid;
use crate::blobstore::{BlobError, BlobStore, Digest, Pins, UploadId};
use crate::pds::store::{PdsStore, StoreError};

/// Candidates claimed and swept per index write transaction. A candidate's re-check and
/// removals touch pages in six tables; they are read first in a read transaction
/// ([`Index::gc_sweep_prefetch`]), so the write transaction, which every push waits for, finds
/// them in redb's cache (4 MiB: a batch's pages must fit) instead of reading each while it holds
/// the writer — what made one push per batch wait ≈20 ms (`docs/performance.md`).
const SWEEP_BATCH: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("blob storage: {0}")]
    Blobs(#[from] BlobError),
    #[error(transparent)]
    Pds(#[from] StoreError),
}

/// How one collection runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcOptions {
    /// Report what would go; change nothing.
    pub dry_run: bool,
    /// Blobs written or linked this recently stay (`gc.grace_secs`).
    pub grace_secs: u64,
    /// Upload sessions idle this long go, with their parts (`uploads.expire_after_secs`).
    pub upload_expiry_secs: u64,
}

mod report;

pub use report::{GcReport, RetentionPlanned};

/// Logs how long each phase of a collection took (`bench/gc.sh` lines them up with the
/// latencies of the pushes that ran meanwhile).
struct Phases(std::time::Instant);

impl Phases {
    fn done(&mut self, phase: &'static str) {
        let millis = u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(phase, millis, "garbage collection phase done");
        self.0 = std::time::Instant::now();
    }
}

/// Totals since the process started, for `/metrics`.
#[derive(Debug, Default)]
pub struct GcStats {
    pub runs: AtomicU64,
    pub blobs_deleted: AtomicU64,
    pub bytes_freed: AtomicU64,
    pub pds_blocks_deleted: AtomicU64,
    pub pds_bytes_freed: AtomicU64,
    /// `pds.redb`'s live size as the last run measured it (0: none yet).
    pub pds_live_bytes: AtomicU64,
    /// Unix seconds of the last finished run (0: none yet).
    pub last_run: AtomicU64,
    /// Online compactions of the index the runs made.
    pub index_compactions: AtomicU64,
}

/// Objects listed from storage per index lookup when looking for ones the index does not know.
const LIST_BATCH: usize = 1024;
/// Objects the index does not know looked up in the PDS's blob table per pass over it.
const UNKNOWN_BATCH: usize = 4096;

/// The node's collector.
pub struct Gc {
    index: Index,
    blobs: BlobStore,
    /// The PDS: its unreachable blocks are collected in every run too, and its uploaded blobs,
    /// which share the blob store, are never taken for leftovers when storage is looked through.
    pds: Option<PdsStore>,
    stats: GcStats,
    /// One collection at a time (the scheduled one and `atcr gc` may meet).
    turn: tokio::sync::Mutex<()>,
}

impl Gc {
    #[must_use]
    pub fn new(index: Index, blobs: BlobStore) -> Gc {
        Gc {
            index,
            blobs,
            pds: None,
            stats: GcStats::default(),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// Collects `pds`'s unreachable blocks in every run too, and looks through storage for
    /// objects nobody recorded, leaving the PDS's blobs alone.
    #[must_use]
    pub fn with_pds(mut self, pds: PdsStore) -> Gc {
        self.pds = Some(pds);
        self
    }

    #[must_use]
    pub fn stats(&self) -> &GcStats {
        &self.stats
    }

    /// Runs one collection. `active` says whether a request is writing to an upload right
    /// now: those uploads are never removed, however old their session.
    pub async fn run(
        &self,
        opts: GcOptions,
        active: &(dyn Fn(UploadId) -> bool + Sync),
    ) -> Result<GcReport, GcError> {
        let _turn = self.turn.lock().await;
        let started = std::time::Instant::now();
        let mut report = GcReport {
            dry_run: opts.dry_run,
            ..GcReport::default()
        };
        let mut phases = Phases(started);
        report.uploads_removed = self.expire_uploads(&opts, active).await?.len() as u64;
        phases.done("uploads");
        let now = now_secs();
        let grace = opts.grace_secs;
        let marked = {
            let index = self.index.clone();
            tokio::task::spawn_blocking(move || index.gc_mark(now, grace))
                .await
                .map_err(IndexError::from)??
        };
        report.blobs_seen = marked.blobs;
        phases.done("mark");
        self.collect_pds(opts.dry_run, now, grace, &mut report)
            .await?;
        phases.done("pds");
        if opts.dry_run {
            report.blobs_deleted = marked.candidates.len() as u64;
            report.bytes_freed = marked.candidates.iter().map(|c| c.size).sum();
        } else {
            if !marked.untimed.is_empty() {
                let untimed = marked.untimed;
                self.index
                    .write(move |ix| ix.gc_set_untimed(&untimed, now))
                    .await?;
            }
            for batch in marked.candidates.chunks(SWEEP_BATCH) {
                self.sweep(batch, grace, &mut report).await?;
            }
            phases.done("sweep");
        }
        report.orphans_adopted = self.adopt_orphans(now, grace, opts.dry_run).await?;
        phases.done("leftovers");
        if !opts.dry_run {
            self.stats.runs.fetch_add(1, Ordering::Relaxed);
            self.stats
                .blobs_deleted
                .fetch_add(report.blobs_deleted, Ordering::Relaxed);
            self.stats
                .bytes_freed
                .fetch_add(report.bytes_freed, Ordering::Relaxed);
            self.stats
                .pds_blocks_deleted
                .fetch_add(report.pds_blocks_deleted, Ordering::Relaxed);
            self.stats
                .pds_bytes_freed
                .fetch_add(report.pds_bytes_freed, Ordering::Relaxed);
            let finished = now_secs();
            self.stats.last_run.store(finished, Ordering::Relaxed);
            self.index
                .write(move |ix| ix.set_gc_last_run(finished))
                .await?;
            self.compact_index(&mut report).await;
            phases.done("index compaction");
        }
        report.millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(
            dry_run = report.dry_run,
            blobs_seen = report.blobs_seen,
            blobs_deleted = report.blobs_deleted,
            bytes_freed = report.bytes_freed,
            uploads_removed = report.uploads_removed,
            orphans_adopted = report.orphans_adopted,
            pds_temp_blobs_expired = report.pds_temp_blobs_expired,
            pds_blocks_deleted = report.pds_blocks_deleted,
            pds_bytes_freed = report.pds_bytes_freed,
            pds_live_bytes = report.pds_live_bytes,
            index_bytes_before = report.index_bytes_before,
            index_bytes_after = report.index_bytes_after,
            millis = report.millis,
            "garbage collection finished"
        );
        Ok(report)
    }

    /// Compacts the index online when its file has grown enough since the last time (see
    /// [`Index::compaction_due`]). A failure is logged and leaves the index as it was: the
    /// collection itself succeeded.
    async fn compact_index(&self, report: &mut GcReport) {
        let index = self.index.clone();
        let compacted = tokio::task::spawn_blocking(move || {
            if index.compaction_due()? {
                index.compact_online()
            } else {
                Ok(None)
            }
        })
        .await
        .map_err(IndexError::from);
        match compacted.and_then(|r| r) {
            Ok(Some((before, after))) => {
                report.index_bytes_before = before;
                report.index_bytes_after = after;
                self.stats.index_compactions.fetch_add(1, Ordering::Relaxed);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "the registry index could not be compacted"),
        }
    }

    /// Forgets the PDS's blobs no record referenced within the grace, collects its unreachable
    /// blocks (dry: counts both) and measures `pds.redb`. Before the leftovers are looked for,
    /// so the objects of forgotten blobs are taken up in the same run.
    async fn collect_pds(
        &self,
        dry_run: bool,
        now: u64,
        grace: u64,
        report: &mut GcReport,
    ) -> Result<(), GcError> {
        let Some(store) = self.pds.clone() else {
            return Ok(());
        };
        let (expired, collected, size) = tokio::task::spawn_blocking(move || {
            let expired = store.expire_temp_blobs(now, grace, dry_run)?;
            let collected = store.collect_blocks(dry_run)?;
            Ok::<_, StoreError>((expired, collected, store.size()?))
        })
        .await
        .map_err(StoreError::from)??;
        report.pds_temp_blobs_expired = expired.blobs;
        report.pds_temp_bytes_expired = expired.bytes;
        report.pds_blocks_deleted = collected.blocks_deleted;
        report.pds_bytes_freed = collected.bytes_freed;
        report.pds_live_bytes = size.live_bytes;
        report.pds_file_bytes = size.file_bytes;
        self.stats
            .pds_live_bytes
            .store(size.live_bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Claims, re-checks and removes one batch of candidates.
    async fn sweep(
        &self,
        batch: &[Candidate],
        grace: u64,
        report: &mut GcReport,
    ) -> Result<(), GcError> {
        let pins: &Arc<Pins> = self.blobs.pins();
        let claimed = pins.claim(batch.iter().map(|c| c.digest.clone()));
        let claimed_set: std::collections::HashSet<_> = claimed.iter().collect();
        let take: Vec<Candidate> = batch
            .iter()
            .filter(|c| claimed_set.contains(&c.digest))
            .cloned()
            .collect();
        // The claims end whatever happens below: a failed sweep leaves blobs, never pins waiting.
        let result = async {
            let (index, prefetch) = (self.index.clone(), take.clone());
            tokio::task::spawn_blocking(move || index.gc_sweep_prefetch(&prefetch))
                .await
                .map_err(IndexError::from)??;
            let now = now_secs();
            let removed = self
                .index
                .write(move |ix| ix.gc_sweep(&take, now, grace))
                .await?;
            // An object is one per digest, whoever stored it: if a repository of the PDS
            // uploaded the same bytes as a blob of its own (an avatar pushed again as a layer),
            // the object is the PDS's to keep. Its index rows are gone; it stays in storage.
            // A manifest's bytes deleted here were also the owner's blob: its blob-table rows
            // go too (after the object, while the claims keep a push of the same bytes out).
            let (removed, rows) = match self.pds.clone() {
                None => (removed, Vec::new()),
                Some(pds) => {
                    let digests: Vec<Digest> = removed.iter().map(|c| c.digest.clone()).collect();
                    let (theirs, rows) =
                        tokio::task::spawn_blocking(move || pds_owned_among(&pds, &digests))
                            .await
                            .map_err(IndexError::from)??;
                    let removed = removed
                        .into_iter()
                        .filter(|c| !theirs.contains(&c.digest))
                        .collect();
                    (removed, rows)
                }
            };
            for c in removed {
                match self.blobs.delete(&c.digest).await {
                    Ok(()) | Err(BlobError::NotFound) => {}
                    Err(e) => {
                        tracing::warn!(digest = %c.digest, error = %e, "garbage collection: object not deleted");
                        report.delete_failures += 1;
                    }
                }
                tracing::debug!(digest = %c.digest, bytes = c.size, "blob collected");
                report.blobs_deleted += 1;
                report.bytes_freed += c.size;
            }
            if let (Some(pds), false) = (&self.pds, rows.is_empty()) {
                pds.forget_blobs(rows).await?;
            }
            Ok::<(), GcError>(())
        }
        .await;
        pins.release(&claimed);
        result
    }

    /// Lists storage for objects written at least the grace before `now` that neither the
    /// index nor the PDS knows, and takes them up as unused blobs last linked `now` (dry: counts
    /// them). An object that young may be an upload or manifest in flight and is left alone;
    /// one taken up waits a further grace before the mark phase may pick it, so a request that
    /// starts to use it meanwhile links it first.
    async fn adopt_orphans(&self, now: u64, grace: u64, dry_run: bool) -> Result<u64, GcError> {
        if self.pds.is_none() {
            return Ok(0);
        }
        let mut adopted = 0;
        let mut unknown = Vec::new();
        let mut lister = self.blobs.list_objects().await?;
        loop {
            let batch = lister.next_batch(LIST_BATCH).await?;
            let done = batch.is_empty();
            if !done {
                let index = self.index.clone();
                unknown.extend(
                    tokio::task::spawn_blocking(move || index.unknown_objects(&batch))
                        .await
                        .map_err(IndexError::from)??,
                );
            }
            // The PDS is asked about the unknown ones in bunches: one pass over its blob table
            // each, so the PDS's own blobs (which stay unknown to the index for good) cost one
            // pass per bunch, not one per listing batch.
            if unknown.len() >= UNKNOWN_BATCH || (done && !unknown.is_empty()) {
                let bunch = std::mem::take(&mut unknown);
                adopted += self.adopt_unknown(bunch, now, grace, dry_run).await?;
            }
            if done {
                return Ok(adopted);
            }
        }
    }

    /// [`Gc::adopt_orphans`] for objects the index does not know: leaves the PDS's blobs and
    /// objects younger than the grace, takes up the rest (dry: counts them).
    async fn adopt_unknown(
        &self,
        unknown: Vec<Digest>,
        now: u64,
        grace: u64,
        dry_run: bool,
    ) -> Result<u64, GcError> {
        let Some(pds) = self.pds.clone() else {
            return Ok(0);
        };
        let (unknown, theirs) = tokio::task::spawn_blocking(move || {
            pds_owned_among(&pds, &unknown).map(|(t, _)| (unknown, t))
        })
        .await
        .map_err(IndexError::from)??;
        let mut old = Vec::new();
        for digest in unknown.into_iter().filter(|d| !theirs.contains(d)) {
            if let Some((size, Some(modified))) = self.blobs.stat_modified(&digest).await?
                && past_grace(modified, now, grace)
            {
                tracing::warn!(%digest, bytes = size, "garbage collection: a stored object the index did not know; taken up");
                old.push((digest, size));
            }
        }
        if dry_run || old.is_empty() {
            return Ok(old.len() as u64);
        }
        Ok(self
            .index
            .write(move |ix| ix.adopt_objects(&old, now))
            .await?)
    }

    /// Removes upload sessions idle for `upload_expiry_secs` or more, and stored parts no session
    /// owns, except those `active` names. Returns how many went (dry: would go).
    async fn expire_uploads(
        &self,
        opts: &GcOptions,
        active: &(dyn Fn(UploadId) -> bool + Sync),
    ) -> Result<Vec<UploadId>, GcError> {
        expire_uploads(
            &self.index,
            &self.blobs,
            opts.upload_expiry_secs,
            opts.dry_run,
            active,
        )
        .await
    }
}

/// Which of `digests` the PDS keeps: objects some repository uploaded as a blob with a MIME type
/// that is not a manifest's. The registry stores a manifest's bytes as the owner's blob (with
/// the manifest's media type) before the commit that names them; those are the collector's
/// once no manifest uses them. An object anyone uploaded with another type is the PDS's.
/// Also returns, for the rest, the blob-table rows (DID, CID) that name them: they go with the
/// object.
#[allow(clippy::type_complexity)]
fn pds_owned_among(
    pds: &PdsStore,
    digests: &[Digest],
) -> Result<(std::collections::HashSet<Digest>, Vec<(String, Cid)>), StoreError> {
    let mut owned = std::collections::HashSet::new();
    let mut rows = Vec::new();
    for (digest, uploads) in pds.uploaded_blobs_among(digests)? {
        if uploads
            .iter()
            .any(|(_, t)| !crate::oci::manifest::is_manifest_media_type(t))
        {
            owned.insert(digest);
        } else if let Some(cid) = raw_cid(&digest) {
            rows.extend(uploads.into_iter().map(|(did, _)| (did, cid)));
        }
    }
    Ok((owned, rows))
}

/// The CID of a raw blob with this SHA-256 digest.
fn raw_cid(digest: &Digest) -> Option<Cid> {
    let raw = <[u8; 32]>::try_from(hex::decode(digest.hex()).ok()?).ok()?;
    Some(Cid::from_digest(crate::atproto::cid::RAW, raw))
}

/// See [`Gc::run`]: the upload half, also run on its own by the registry's upload sweeper.
/// Returns the uploads removed (dry: that would be).
pub async fn expire_uploads(
    index: &Index,
    blobs: &BlobStore,
    max_idle: u64,
    dry_run: bool,
    active: &(dyn Fn(UploadId) -> bool + Sync),
) -> Result<Vec<UploadId>, GcError> {
    let now = now_secs();
    let sessions = index.uploads()?;
    let mut removed = Vec::new();
    for (id, session) in &sessions {
        if now.saturating_sub(session.updated) >= max_idle && !active(*id) {
            if !dry_run {
                let id = *id;
                blobs.cancel(id).await?;
                index.write(move |ix| ix.delete_upload(id)).await?;
            }
            removed.push(*id);
        }
    }
    for id in blobs.stored_uploads().await? {
        if !sessions.iter().any(|(s, _)| *s == id) && !active(id) {
            if !dry_run {
                blobs.cancel(id).await?;
            }
            removed.push(id);
        }
    }
    Ok(removed)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
