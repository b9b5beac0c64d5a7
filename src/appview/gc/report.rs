//! What a collection reports: to `atcr gc`, through the admin socket, and to the log.

use serde::{Deserialize, Serialize};

/// What a collection freed (or, dry, would free).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    pub dry_run: bool,
    /// Stored blobs looked at.
    pub blobs_seen: u64,
    pub blobs_deleted: u64,
    pub bytes_freed: u64,
    /// Upload sessions (and stored parts no session owned) removed.
    pub uploads_removed: u64,
    /// Blob objects whose index entries went but whose deletion from storage failed (they
    /// are no longer reachable; the next collections take them up again, see below).
    pub delete_failures: u64,
    /// Objects in storage older than the grace that neither the index nor the PDS knew (left
    /// by a crash between writing and recording them): taken up as unused blobs, collected a
    /// grace later if still unused (dry: found).
    #[serde(default)]
    pub orphans_adopted: u64,
    /// With a dry run through the daemon: what the retention rules would delete now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retention: Vec<RetentionPlanned>,
    /// Blobs uploaded to the PDS that no record referenced within the grace: forgotten (their
    /// objects then go as leftovers), see `pds/store/temp_blobs.rs`.
    #[serde(default)]
    pub pds_temp_blobs_expired: u64,
    /// Their bytes.
    #[serde(default)]
    pub pds_temp_bytes_expired: u64,
    /// PDS blocks (MST nodes, records, commits) no repository head reaches.
    #[serde(default)]
    pub pds_blocks_deleted: u64,
    /// Their bytes.
    #[serde(default)]
    pub pds_bytes_freed: u64,
    /// `pds.redb`'s live size after the collection: the pages of its tables (redb reuses freed
    /// pages but does not shrink its file).
    #[serde(default)]
    pub pds_live_bytes: u64,
    /// `pds.redb`'s file size.
    #[serde(default)]
    pub pds_file_bytes: u64,
    /// The hold's share (`src/hold/gc.rs`): manifests of its layer records their owners' PDSes
    /// say are gone, and those none could say of (kept).
    #[serde(default)]
    pub hold_manifests_gone: u64,
    #[serde(default)]
    pub hold_manifests_unverified: u64,
    /// Layer records deleted.
    #[serde(default)]
    pub hold_layers_removed: u64,
    /// Blobs uploaded to the hold that no layer record names any more: released to this
    /// collector, which deletes them a grace later (as leftovers).
    #[serde(default)]
    pub hold_blobs_released: u64,
    #[serde(default)]
    pub hold_bytes_released: u64,
    /// The bytes `index.redb` took on disk before and after the collection compacted it
    /// online (see `Index::compact_online`); both 0 when it was not due.
    #[serde(default)]
    pub index_bytes_before: u64,
    #[serde(default)]
    pub index_bytes_after: u64,
    pub millis: u64,
}

impl std::fmt::Display for GcReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        write!(
            f,
            "{verb} {} of {} blobs ({} bytes) and {} stale uploads in {} ms",
            self.blobs_deleted,
            self.blobs_seen,
            self.bytes_freed,
            self.uploads_removed,
            self.millis
        )?;
        if self.orphans_adopted > 0 {
            let verb = if self.dry_run { "found" } else { "took up" };
            write!(
                f,
                "; {verb} {} stored objects the index did not know (collected a grace later if unused)",
                self.orphans_adopted
            )?;
        }
        if self.pds_live_bytes > 0 {
            write!(
                f,
                "; {verb} {} PDS blocks ({} bytes), pds.redb live size {} bytes (file {} bytes)",
                self.pds_blocks_deleted,
                self.pds_bytes_freed,
                self.pds_live_bytes,
                self.pds_file_bytes
            )?;
        }
        if self.hold_manifests_gone + self.hold_manifests_unverified + self.hold_blobs_released > 0
        {
            let released = if self.dry_run {
                "would release"
            } else {
                "released"
            };
            write!(
                f,
                "; hold: {} manifests gone ({} unverified, kept), {verb} {} layer records, {released} {} blobs ({} bytes) for collection",
                self.hold_manifests_gone,
                self.hold_manifests_unverified,
                self.hold_layers_removed,
                self.hold_blobs_released,
                self.hold_bytes_released
            )?;
        }
        if self.index_bytes_before > 0 {
            write!(
                f,
                "; index.redb compacted from {} to {} bytes on disk",
                self.index_bytes_before, self.index_bytes_after
            )?;
        }
        if self.delete_failures > 0 {
            write!(
                f,
                "; {} objects could not be deleted from storage",
                self.delete_failures
            )?;
        }
        Ok(())
    }
}

/// What retention would remove from one repository, as `atcr gc --dry-run` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPlanned {
    pub repository: String,
    pub tags: Vec<String>,
    pub manifests: Vec<String>,
}

impl From<&crate::appview::retention::Removal> for RetentionPlanned {
    fn from(r: &crate::appview::retention::Removal) -> RetentionPlanned {
        RetentionPlanned {
            repository: r.name.clone(),
            tags: r.tags.clone(),
            manifests: r.manifests.iter().map(|d| d.as_str().to_owned()).collect(),
        }
    }
}
