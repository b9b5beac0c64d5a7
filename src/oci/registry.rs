//! The registry: shared state and the one `match` from endpoint to handler.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::server::body::RequestBody;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use http::{HeaderName, Request, Response, StatusCode};

use super::endpoint::OciEndpoint;
use super::error::OciError;
use super::index::Index;
use super::name::RepoName;
use crate::appview::{AppView, Located};
use crate::auth::{Action, Grant, Resource};
use crate::blobstore::{BlobStore, Digester, UploadId};
use crate::server::body::{self, Body};

pub const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
pub const DOCKER_UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
pub const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
pub const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

/// In-memory state of an upload: the running SHA-256 of its parts. `None` after a restart,
/// until the parts are hashed again.
#[derive(Default)]
pub(super) struct UploadState {
    pub(super) hasher: Option<Digester>,
}

/// A repository as a request names it, resolved to its owner.
pub(super) struct Repo {
    /// The name as the client wrote it: what `Location` headers and answers repeat.
    pub(super) name: RepoName,
    pub(super) loc: Located,
}

impl Repo {
    /// The index key (`<owner did>/<path>`).
    pub(super) fn key(&self) -> &str {
        &self.loc.key
    }
}

impl std::fmt::Display for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.name.fmt(f)
    }
}

/// The distribution API over one blob store and the index derived from the owners' records.
pub struct Registry {
    pub(super) appview: Arc<AppView>,
    pub(super) blobs: BlobStore,
    pub(super) index: Index,
    /// Uploads being written to by a request right now, each behind its own lock so that
    /// concurrent requests to one upload are applied one at a time.
    uploads: Mutex<HashMap<UploadId, Arc<tokio::sync::Mutex<UploadState>>>>,
    /// Blob bytes received and stored, since start.
    pub(super) bytes_received: AtomicU64,
}

impl Registry {
    #[must_use]
    pub fn new(appview: Arc<AppView>) -> Registry {
        Registry {
            blobs: appview.pds().blobs.clone(),
            index: appview.index().clone(),
            appview,
            uploads: Mutex::new(HashMap::new()),
            bytes_received: AtomicU64::new(0),
        }
    }

    /// Blob bytes received and stored since start.
    #[must_use]
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received.load(Ordering::Relaxed)
    }

    #[must_use]
    pub fn index(&self) -> &Index {
        &self.index
    }

    #[must_use]
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    #[must_use]
    pub fn appview(&self) -> &Arc<AppView> {
        &self.appview
    }

    fn repo(&self, name: RepoName) -> Result<Repo, OciError> {
        let loc = self.appview.locate(&name)?;
        Ok(Repo { name, loc })
    }

    /// Answers one distribution API request the caller's `grant` admits (the server checked
    /// the endpoint's own scope; `grant` decides the extras, like the source of a mount).
    pub async fn handle(
        &self,
        endpoint: OciEndpoint,
        req: Request<RequestBody>,
        grant: &Grant,
    ) -> Result<Response<Body>, OciError> {
        match endpoint {
            OciEndpoint::Base => Ok(response(StatusCode::OK)
                .header(CONTENT_TYPE, "application/json")
                .body(body::full("{}"))
                .unwrap_or_default()),
            OciEndpoint::Catalog { page } => self.catalog(&page),
            OciEndpoint::ListTags { name, page } => self.list_tags(&self.repo(name)?, &page),
            OciEndpoint::GetManifest {
                name,
                reference,
                head,
            } => {
                self.get_manifest(&self.repo(name)?, &reference, head, &req)
                    .await
            }
            OciEndpoint::PutManifest { name, reference } => {
                self.put_manifest(&self.repo(name)?, &reference, req).await
            }
            OciEndpoint::DeleteManifest { name, reference } => {
                self.delete_manifest(&self.repo(name)?, &reference).await
            }
            OciEndpoint::GetBlob { name, digest, head } => {
                self.get_blob(&self.repo(name)?, &digest, head, &req).await
            }
            OciEndpoint::DeleteBlob { name, digest } => {
                self.delete_blob(&self.repo(name)?, &digest).await
            }
            OciEndpoint::StartUpload {
                name,
                digest,
                mount,
            } => {
                let repo = self.repo(name)?;
                // A mount needs pull access to its source; otherwise (or with no source named)
                // it is an ordinary upload, as the spec allows.
                let mount = mount.and_then(|m| {
                    let from = m.from?;
                    let readable = grant.allows(
                        &Resource::Repository(from.as_str().to_owned()),
                        Action::Pull,
                    );
                    let loc = self.appview.locate(&from).ok().filter(|_| readable)?;
                    Some((m.digest, loc.key))
                });
                self.start_upload(&repo, digest, mount, req).await
            }
            OciEndpoint::UploadStatus { name, id } => self.upload_status(&self.repo(name)?, id),
            OciEndpoint::PatchUpload { name, id } => {
                self.patch_upload(&self.repo(name)?, id, req).await
            }
            OciEndpoint::FinishUpload { name, id, digest } => {
                self.finish_upload(&self.repo(name)?, id, &digest, req)
                    .await
            }
            OciEndpoint::CancelUpload { name, id } => {
                self.cancel_upload(&self.repo(name)?, id).await
            }
            OciEndpoint::Referrers {
                name,
                digest,
                artifact_type,
            } => self.referrers(&self.repo(name)?, &digest, artifact_type.as_deref()),
        }
    }

    /// The lock for an upload's in-memory state, created on first use.
    pub(super) fn upload_state(&self, id: UploadId) -> Arc<tokio::sync::Mutex<UploadState>> {
        let mut map = self.uploads.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(id).or_default().clone()
    }

    pub(super) fn forget_upload(&self, id: UploadId) {
        self.uploads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    /// Whether a request is writing to this upload right now (the sweeper leaves those alone).
    pub(super) fn upload_is_active(&self, id: UploadId) -> bool {
        let map = self.uploads.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&id).is_some_and(|state| state.try_lock().is_err())
    }
}

/// A response builder with the headers every answer carries.
pub(super) fn response(status: StatusCode) -> http::response::Builder {
    Response::builder().status(status)
}

/// An empty answer with a `Location`.
pub(super) fn located(status: StatusCode, location: &str) -> http::response::Builder {
    response(status)
        .header(LOCATION, location)
        .header(CONTENT_LENGTH, "0")
}

/// Turns a builder error (only possible with a malformed header value we built) into a 500.
pub(super) fn finish(
    builder: http::response::Builder,
    body: Body,
) -> Result<Response<Body>, OciError> {
    builder.body(body).map_err(|e| OciError::internal(&e))
}

/// Seconds since the Unix epoch.
pub(super) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
