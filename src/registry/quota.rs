//! Quota enforcement at the registry's edge: a push that would take its repository owner's usage
//! (see `appview::quota`) over the limit is refused with `DENIED`. Where the size is known before
//! the bytes come (a monolithic upload or a chunk with a length, the last `PUT` of an upload) the
//! refusal comes first; otherwise (chunks without a length, cross-repository mounts) the manifest
//! `PUT` is refused, counting only the blobs new to the owner. Concurrent pushes of one owner
//! are checked each against the usage before either: they may go over by what they add together.

use serde_json::json;

use super::{Registry, Repo};
use crate::appview::quota::Quota;
use crate::blobstore::Digest;
use crate::http::human_bytes;
use crate::oci::error::{ErrorCode, OciError};
use crate::oci::manifest::Manifest;

/// The refusal: names the quota, the usage, the limit and what the push needs (`what` says
/// what needs it: `this blob needs`).
fn exceeded(quota: &Quota, limit: u64, needs: u64, what: &str) -> OciError {
    OciError::new(
        ErrorCode::Denied,
        format!(
            "quota exceeded for {}: {} used of {}, {what} {}",
            quota.user,
            human_bytes(quota.used),
            human_bytes(limit),
            human_bytes(needs)
        ),
    )
    .with_detail(json!({ "used": quota.used, "limit": limit, "needs": needs }))
}

impl Registry {
    /// Refuses a blob of `size` bytes for `name`'s owner if it would take them over their
    /// quota, unless `digest` names a blob they already have (it counts once).
    pub(super) fn check_blob_quota(
        &self,
        name: &Repo,
        digest: Option<&Digest>,
        size: u64,
    ) -> Result<(), OciError> {
        if size == 0 {
            return Ok(());
        }
        let quota = self.appview.quota(&name.loc.owner)?;
        let Some(limit) = quota.limit else {
            return Ok(());
        };
        if !quota.exceeded_by(size) {
            return Ok(());
        }
        if let Some(d) = digest
            && self.index.owner_has_blob(&name.loc.owner, d)?
        {
            return Ok(());
        }
        tracing::info!(repo = %name, owner = %name.loc.owner, used = quota.used, limit, needs = size, "blob refused: over quota");
        Err(exceeded(&quota, limit, size, "this blob needs"))
    }

    /// Refuses a manifest whose blobs new to `name`'s owner would take them over their quota.
    pub(super) fn check_manifest_quota(
        &self,
        name: &Repo,
        manifest: &Manifest,
    ) -> Result<(), OciError> {
        let quota = self.appview.quota(&name.loc.owner)?;
        let Some(limit) = quota.limit else {
            return Ok(());
        };
        let blobs: Vec<(Digest, u64)> = manifest
            .blobs
            .iter()
            .filter(|b| !b.is_non_distributable())
            .map(|b| (b.digest.clone(), b.size))
            .collect();
        let needs = self.index.usage_growth(&name.loc.owner, &blobs)?;
        if needs == 0 || !quota.exceeded_by(needs) {
            return Ok(());
        }
        tracing::info!(repo = %name, owner = %name.loc.owner, used = quota.used, limit, needs, "manifest refused: over quota");
        Err(exceeded(
            &quota,
            limit,
            needs,
            "this manifest's new blobs need",
        ))
    }
}
