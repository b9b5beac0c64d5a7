//! Blobs on holds on other machines (ATCR's "bring your own storage"): which hold an owner's
//! pushes go to, sending a verified upload there, and reading a blob back through it. See
//! `docs/hold.md`, "A hold on another machine".
//!
//! The registry still receives every upload itself (its parts under `uploads/<id>/`, hashed as
//! they arrive); once the digest is verified the parts go to the hold in one upload session,
//! and only when the hold confirmed the blob is it linked in the repository and noted as held
//! there. A hold that fails or refuses leaves the client an error and the upload session as it
//! was, so the client's retry of the final `PUT` sends it again.

use std::sync::Arc;

use futures_util::StreamExt;
use http::header::{CONTENT_TYPE, RANGE};
use http::{Request, Response, StatusCode};
use serde_json::json;

use super::{DOCKER_CONTENT_DIGEST, Registry, Repo, finish, located, response};
use crate::atproto::Did;
use crate::blobstore::{Digest, UploadId};
use crate::hold::remote::{
    BlobAnswer, BlobInfo, PushedManifest, RemoteError, RemoteHold, TRANSFERS,
};
use crate::hold::trusted::Trusted;
use crate::http::body::{self, Body, RequestBody};
use crate::oci::error::{ErrorCode, OciError};
use crate::oci::manifest::{Descriptor, Manifest};
use crate::oci::name::Tag;

/// The holds this registry may use.
pub struct Holds {
    pub trusted: Arc<Trusted>,
    /// `holds.default`: where pushes go unless the owner's profile names another trusted hold
    /// (`None`: this node's own storage).
    pub default: Option<Did>,
    transfers: tokio::sync::Semaphore,
}

impl Holds {
    #[must_use]
    pub fn new(trusted: Arc<Trusted>, default: Option<Did>) -> Holds {
        Holds {
            trusted,
            default,
            transfers: tokio::sync::Semaphore::new(TRANSFERS),
        }
    }
}

/// Where an owner's blobs go.
pub(super) enum Destination {
    /// This node's own storage.
    Local,
    Remote(Arc<RemoteHold>),
}

/// A manifest's blob as `notifyManifest` names it.
fn blob_info(d: &Descriptor) -> BlobInfo<'_> {
    BlobInfo {
        digest: &d.digest,
        size: d.size,
        media_type: &d.media_type,
    }
}

impl From<RemoteError> for OciError {
    fn from(e: RemoteError) -> OciError {
        let message = e.to_string();
        match e {
            RemoteError::Unreachable { .. } | RemoteError::Protocol { .. } => {
                tracing::warn!(error = %message, "hold failed");
                OciError::new(ErrorCode::Unavailable, message)
            }
            RemoteError::Refused { status, .. } => {
                let code = match status {
                    401 | 403 => ErrorCode::Denied,
                    404 => ErrorCode::BlobUnknown,
                    429 => ErrorCode::TooManyRequests,
                    _ => ErrorCode::Unavailable,
                };
                OciError::new(code, message)
            }
            RemoteError::Source(_) => OciError::internal(&message),
        }
    }
}

/// Blobs sent to a hold that this node keeps a copy of: the largest image config the indexer
/// reads (see [`Registry::keep_small_copy`]).
const KEEP_LOCAL_BYTES: u64 = 1 << 20;

impl Registry {
    /// Where the blobs `owner` pushes go: the hold their profile names if this node trusts it
    /// (or it is this node), else `holds.default`, else this node's own storage.
    pub(super) fn destination(&self, owner: &Did) -> Result<Destination, OciError> {
        let Some(holds) = self.holds.get() else {
            return Ok(Destination::Local);
        };
        let node = &self.appview.pds().node_did;
        if let Some(did) = self.appview.profile_hold(owner)? {
            if &did == node {
                return Ok(Destination::Local);
            }
            if let Some(hold) = holds.trusted.get(&did) {
                return Ok(Destination::Remote(hold));
            }
            tracing::debug!(%owner, hold = %did, "profile names a hold this node does not trust");
        }
        match &holds.default {
            None => Ok(Destination::Local),
            Some(d) if d == node => Ok(Destination::Local),
            Some(d) => holds.trusted.get(d).map(Destination::Remote).ok_or_else(|| {
                OciError::new(
                    ErrorCode::Unavailable,
                    format!(
                        "this registry's default hold {d} is not trusted: its operator must run `atcr hold add {d}`"
                    ),
                )
            }),
        }
    }

    /// The hold a manifest's record names (`holdDid`): the hold on another machine that keeps
    /// its blobs if one does, else this node.
    pub(super) fn hold_of(&self, blobs: &[Descriptor]) -> Result<Did, OciError> {
        for blob in blobs {
            if let Some(hold) = self.index.held_at(&blob.digest)? {
                return Ok(hold);
            }
        }
        Ok(self.appview.pds().node_did.clone())
    }

    /// Mints a service token for `user` (an account of this node) to call `lxm` on `hold`.
    fn mint(&self, user: &Did) -> impl Fn(&Did, &str) -> Option<String> + Send + Sync + use<'_> {
        let user = user.clone();
        move |hold: &Did, lxm: &str| self.appview.pds().service_token(&user, hold, lxm)
    }

    /// Sends upload `id`'s first `parts` parts (checked to hash to `digest`) to `hold` for the
    /// repository's owner, then links the blob in the repository as held there.
    pub(super) async fn send_to_hold(
        &self,
        hold: &RemoteHold,
        name: &Repo,
        id: UploadId,
        parts: u32,
        digest: &Digest,
        size: u64,
    ) -> Result<(), OciError> {
        let Some(holds) = self.holds.get() else {
            return Err(OciError::internal(&"no holds configured"));
        };
        // Already there (another repository's push): linked without sending it again.
        if self.index.held_at(digest)?.as_ref() == Some(&hold.did) {
            self.keep_small_copy(id, parts, digest, size).await;
            return self.link_held(name, id, digest, size, &hold.did).await;
        }
        let _slot = holds
            .transfers
            .acquire()
            .await
            .map_err(|e| OciError::internal(&e))?;
        let blobs = self.blobs.clone();
        let stream =
            futures_util::stream::iter(0..parts)
                .then(move |part| {
                    let blobs = blobs.clone();
                    async move { blobs.open_part(id, part).await }
                })
                .map(|opened| match opened {
                    Ok(stream) => stream.boxed(),
                    Err(e) => futures_util::stream::once(async move {
                        Err(std::io::Error::other(e.to_string()))
                    })
                    .boxed(),
                })
                .flatten();
        let mint = self.mint(&name.loc.owner);
        hold.upload(&mint, digest, Box::pin(stream)).await?;
        tracing::info!(repo = %name, %digest, hold = %hold.did, size, "blob sent to its hold");
        self.keep_small_copy(id, parts, digest, size).await;
        self.link_held(name, id, digest, size, &hold.did).await
    }

    /// Keeps a blob sent to a hold in this node's storage too when it is at most
    /// [`KEEP_LOCAL_BYTES`] (image configs: the indexer reads them here for the index's
    /// summaries: platform, labels, entrypoint); drops the upload's parts otherwise. Reads still
    /// go to the hold; the collector deletes the copy with the blob's index rows. A copy that
    /// cannot be kept costs only the summary's config fields.
    async fn keep_small_copy(&self, id: UploadId, parts: u32, digest: &Digest, size: u64) {
        if size <= KEEP_LOCAL_BYTES {
            match self.blobs.commit(id, parts, digest).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(%digest, error = %e, "no local copy of a small held blob");
                }
            }
        }
        let _ = self.blobs.cancel(id).await;
    }

    /// Tells each hold on another machine that keeps some of `blobs` (config first when the
    /// manifest has one) that a manifest using them is being published, naming the blobs it
    /// keeps, so it writes its layer records, which keep them from its collection. Before the
    /// manifest is committed: a hold that does not answer or refuses fails the push, and so does
    /// one that says it does not store a blob the index has it keep (the index is stale; the
    /// client pushes the blob again).
    pub(super) async fn notify_holds(
        &self,
        name: &Repo,
        digest: &Digest,
        tag: Option<&Tag>,
        manifest: &Manifest,
        blobs: &[Descriptor],
    ) -> Result<(), OciError> {
        let Some(holds) = self.holds.get() else {
            return Ok(());
        };
        let mut by_hold: Vec<(Arc<RemoteHold>, Vec<&Descriptor>)> = Vec::new();
        for blob in blobs {
            let Some(did) = self.index.held_at(&blob.digest)? else {
                continue;
            };
            let Some(remote) = holds.trusted.get(&did) else {
                continue;
            };
            match by_hold.iter_mut().find(|(h, _)| h.did == remote.did) {
                Some((_, kept)) => kept.push(blob),
                None => by_hold.push((remote, vec![blob])),
            }
        }
        let config = manifest.config().map(|c| &c.digest);
        for (remote, kept) in by_hold {
            let pushed = PushedManifest {
                repository: &name.loc.path,
                owner: &name.loc.owner,
                digest,
                media_type: &manifest.media_type,
                tag: tag.map(Tag::as_str),
                config: kept
                    .iter()
                    .find(|b| Some(&b.digest) == config)
                    .map(|b| blob_info(b)),
                layers: kept
                    .iter()
                    .filter(|b| Some(&b.digest) != config)
                    .map(|b| blob_info(b))
                    .collect(),
            };
            let mint = self.mint(&name.loc.owner);
            let not_held = match remote.notify_push(&mint, &pushed).await {
                Ok(not_held) => not_held,
                Err(e) => {
                    tracing::warn!(repo = %name, %digest, error = %e, "hold not notified: push refused");
                    return Err(e.into());
                }
            };
            if let Some(missing) = not_held.first() {
                for d in &not_held {
                    let (repo, d, hold) = (name.key().clone(), d.clone(), remote.did.clone());
                    self.index
                        .write(move |ix| ix.forget_held_blob(&repo, &d, &hold))
                        .await?;
                }
                tracing::warn!(repo = %name, %digest, hold = %remote.did, blob = %missing, "the hold does not store a blob the index says it keeps: push refused");
                return Err(OciError::new(
                    ErrorCode::ManifestBlobUnknown,
                    "manifest references a blob its hold no longer stores; push the blob again",
                )
                .with_detail(json!({ "digest": missing.as_str(), "hold": remote.did.as_str() })));
            }
            tracing::debug!(repo = %name, %digest, hold = %remote.did, "hold notified");
        }
        Ok(())
    }

    async fn link_held(
        &self,
        name: &Repo,
        id: UploadId,
        digest: &Digest,
        size: u64,
        hold: &Did,
    ) -> Result<(), OciError> {
        let (repo, d, did) = (name.key().clone(), digest.clone(), hold.clone());
        self.index
            .write(move |ix| ix.link_held_blob(&repo, &d, size, Some(id), &did))
            .await?;
        Ok(())
    }

    /// Answers a blob read from the hold that keeps it: its redirect (a presigned URL) passed
    /// on, or its bytes streamed through. Reads act for `reader` when it is an account here
    /// (a private hold wants crew), anonymously otherwise.
    pub(super) async fn get_held_blob(
        &self,
        hold: &Did,
        digest: &Digest,
        reader: Option<&Did>,
        req: &Request<RequestBody>,
    ) -> Result<Response<Body>, OciError> {
        let remote = self
            .holds
            .get()
            .and_then(|h| h.trusted.get(hold))
            .ok_or_else(|| {
                OciError::new(
                    ErrorCode::Unavailable,
                    format!(
                        "the blob is kept by hold {hold}, which this registry no longer trusts"
                    ),
                )
            })?;
        let mint = reader
            .filter(|r| self.appview.pds().accounts.get(r).ok().flatten().is_some())
            .map(|r| self.mint(r));
        let mint = mint.as_ref().map(|m| m as _);
        match remote
            .get_blob(mint, digest, req.headers().get(RANGE))
            .await?
        {
            BlobAnswer::Redirect(url) => finish(
                located(StatusCode::TEMPORARY_REDIRECT, &url)
                    .header(DOCKER_CONTENT_DIGEST, digest.as_str()),
                body::empty(),
            ),
            BlobAnswer::Bytes {
                status,
                headers,
                body: answer,
            } => {
                let mut builder = response(StatusCode::from_u16(status).unwrap_or(StatusCode::OK))
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(DOCKER_CONTENT_DIGEST, digest.as_str());
                for (name, value) in headers {
                    builder = builder.header(name, value);
                }
                let stream = answer
                    .bytes_stream()
                    .map(|chunk| chunk.map_err(std::io::Error::other));
                finish(builder, body::stream(stream))
            }
        }
    }
}
