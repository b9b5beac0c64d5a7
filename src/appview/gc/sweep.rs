//! The sweep: the candidates are claimed and checked again in batches, each batch's index
//! entries removed in one write transaction committed **without an fsync**, and the batch's
//! objects deleted only once a later commit with an fsync has carried that removal to disk.
//!
//! Why: a synced commit holds the index's single writer through the fsync, and every push's
//! own write waits behind it (`docs/performance.md`, "Where the `PUT`s wait during a
//! collection"). Why it stays safe: until the removal is on disk, a crash brings the entries
//! back — so the objects must still be there, and they are; once it is on disk
//! ([`Index::synced`]), the objects may go. Pushes write synced commits all the time, so a
//! batch usually waits a few milliseconds; when none comes (an idle node), the sweep makes one
//! itself, after [`MAX_WAIT`] or [`MAX_WAITING`] batches. A batch's claims are held until its
//! objects are gone, so a push that would use one of them waits for the whole batch.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Gc, GcError, GcReport, now_secs, pds_owned_among};
use crate::appview::index::{Candidate, Index, IndexError, SyncMark, Synced};
use crate::blobstore::{BlobError, Digest, Pins};

/// Candidates claimed and swept per index write transaction: small enough that pushes waiting
/// for the index lock wait little. (1,024 was measured too, with synced commits: fewer pushes
/// waited, but longer — the sweep's own `PUT` p99 doubled.)
const SWEEP_BATCH: usize = 256;
/// Batches whose objects may wait for another writer's synced commit: bounds the digests
/// claimed at once.
const MAX_WAITING: usize = 8;
/// How long the oldest batch waits for another writer's synced commit before the sweep makes
/// one of its own.
const MAX_WAIT: Duration = Duration::from_millis(250);

/// A batch whose index entries are removed and whose objects are not deleted yet.
struct Batch {
    claimed: Vec<Digest>,
    removed: Vec<Candidate>,
    mark: SyncMark,
    since: Instant,
}

/// The batches waiting for their removal to reach the disk, oldest first. Dropped (an error
/// midway), it releases their claims: a failed sweep leaves objects, never pins waiting.
struct Waiting<'p> {
    pins: &'p Pins,
    batches: VecDeque<Batch>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        for batch in self.batches.drain(..) {
            self.pins.release(&batch.claimed);
        }
    }
}

impl Gc {
    /// Sweeps the marked candidates, as the module says.
    pub(super) async fn sweep(
        &self,
        candidates: &[Candidate],
        grace: u64,
        report: &mut GcReport,
    ) -> Result<(), GcError> {
        let mut waiting = Waiting {
            pins: self.blobs.pins(),
            batches: VecDeque::new(),
        };
        for batch in candidates.chunks(SWEEP_BATCH) {
            self.sweep_index(batch, grace, &mut waiting).await?;
            let due = waiting.batches.len() > MAX_WAITING
                || waiting
                    .batches
                    .front()
                    .is_some_and(|b| b.since.elapsed() >= MAX_WAIT);
            self.delete_synced(&mut waiting, due, report).await?;
        }
        self.delete_synced(&mut waiting, true, report).await
    }

    /// Claims a batch of candidates and removes the index entries of those still unused.
    async fn sweep_index(
        &self,
        batch: &[Candidate],
        grace: u64,
        waiting: &mut Waiting<'_>,
    ) -> Result<(), GcError> {
        let claimed = waiting.pins.claim(batch.iter().map(|c| c.digest.clone()));
        let claimed_set: std::collections::HashSet<_> = claimed.iter().collect();
        let take: Vec<Candidate> = batch
            .iter()
            .filter(|c| claimed_set.contains(&c.digest))
            .cloned()
            .collect();
        let now = now_secs();
        match self
            .index
            .write(move |ix| ix.gc_sweep(&take, now, grace))
            .await
        {
            Ok((removed, mark)) => {
                waiting.batches.push_back(Batch {
                    claimed,
                    removed,
                    mark,
                    since: Instant::now(),
                });
                Ok(())
            }
            Err(e) => {
                waiting.pins.release(&claimed);
                Err(e.into())
            }
        }
    }

    /// Deletes the objects of the batches whose removal is on disk, oldest first; with `sync`,
    /// first makes every batch's removal durable with a synced commit of its own.
    async fn delete_synced(
        &self,
        waiting: &mut Waiting<'_>,
        sync: bool,
        report: &mut GcReport,
    ) -> Result<(), GcError> {
        let Some(newest) = waiting.batches.back() else {
            return Ok(());
        };
        if sync && self.index.synced(newest.mark) == Synced::NotYet {
            self.index.write(Index::flush).await?;
        }
        while let Some(oldest) = waiting.batches.front() {
            let synced = self.index.synced(oldest.mark);
            if synced == Synced::NotYet {
                break;
            }
            let Some(batch) = waiting.batches.pop_front() else {
                break;
            };
            let deleted = if synced == Synced::Yes {
                self.delete_objects(batch.removed, report).await
            } else {
                // The index was reopened after an I/O error before the removal reached the
                // disk: its entries may be back. The objects stay; if the removal did stick,
                // a later run takes them up as leftovers.
                tracing::warn!(
                    blobs = batch.removed.len(),
                    "garbage collection: the index was reopened during the sweep; objects kept"
                );
                Ok(())
            };
            waiting.pins.release(&batch.claimed);
            deleted?;
        }
        Ok(())
    }

    /// Deletes the objects of candidates whose index entries are gone for good.
    async fn delete_objects(
        &self,
        removed: Vec<Candidate>,
        report: &mut GcReport,
    ) -> Result<(), GcError> {
        // An object is one per digest, whoever stored it: if a repository of the PDS uploaded
        // the same bytes as a blob of its own (an avatar pushed again as a layer), the object is
        // the PDS's to keep. Its index rows are gone; it stays in storage. A manifest's bytes
        // deleted here were also the owner's blob: its blob-table rows go too (after the
        // object, while the claims keep a push of the same bytes out).
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
        Ok(())
    }
}
