//! The distribution service: the registry's shared state, the one `match` from a parsed OCI
//! endpoint to its handler, and the blob, upload, manifest and list handlers. It speaks OCI at its
//! edge: domain errors (storage, index, `AppView`) become [`OciError`]s here, never below.
//! Imports the OCI model, `AppView`, auth and the blob store; nothing imports it but `server`.

mod blobs;
mod errors;
pub mod holds;
mod lists;
mod manifests;
mod quota;
mod uploads;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::http::body::RequestBody;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use http::{HeaderName, Request, Response, StatusCode};

use crate::appview::index::{Index, RepoKey};
use crate::appview::{AppView, Located};
use crate::auth::{Action, Grant, Resource};
use crate::blobstore::{BlobStore, Digester, UploadId};
use crate::http::body::{self, Body};
use crate::oci::endpoint::OciEndpoint;
use crate::oci::error::OciError;
use crate::oci::name::RepoName;

pub const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
pub const DOCKER_UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
pub const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
pub const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

/// In-memory state of an upload: the running SHA-256 of its parts. `None` after a restart,
/// until the parts are hashed again.
#[derive(Default)]
struct UploadState {
    hasher: Option<Digester>,
}

/// A repository as a request names it, resolved to its owner.
struct Repo {
    /// The name as the client wrote it: what `Location` headers and answers repeat.
    name: RepoName,
    loc: Located,
}

impl Repo {
    /// The index key (`<owner did>/<path>`).
    fn key(&self) -> &RepoKey {
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
    appview: Arc<AppView>,
    blobs: BlobStore,
    index: Index,
    /// Uploads being written to by a request right now, each behind its own lock so that
    /// concurrent requests to one upload are applied one at a time.
    uploads: Mutex<HashMap<UploadId, Arc<tokio::sync::Mutex<UploadState>>>>,
    /// Blob bytes received and stored, since start.
    bytes_received: AtomicU64,
    /// Uploads another role writes to the same store (the hold's XRPC): the sweeper keeps
    /// those it claims.
    foreign_uploads: std::sync::OnceLock<ForeignUploads>,
    /// Holds on other machines, when this node uses any (set once, at assembly).
    holds: std::sync::OnceLock<holds::Holds>,
}

/// Whether an upload id belongs to another role's live session (see
/// [`Registry::share_uploads`]).
pub type ForeignUploads = Box<dyn Fn(UploadId) -> bool + Send + Sync>;

impl Registry {
    #[must_use]
    pub fn new(appview: Arc<AppView>) -> Registry {
        Registry {
            blobs: appview.pds().blobs.clone(),
            index: appview.index().clone(),
            appview,
            uploads: Mutex::new(HashMap::new()),
            bytes_received: AtomicU64::new(0),
            foreign_uploads: std::sync::OnceLock::new(),
            holds: std::sync::OnceLock::new(),
        }
    }

    /// Tells the upload sweeper which uploads in the store belong to another role's sessions
    /// (set once, when the node is put together).
    pub fn share_uploads(&self, owns: ForeignUploads) {
        let _ = self.foreign_uploads.set(owns);
    }

    /// Lets pushes and pulls use holds on other machines (set once, when the node is put
    /// together).
    pub fn use_holds(&self, holds: holds::Holds) {
        let _ = self.holds.set(holds);
    }

    /// The holds on other machines this node trusts, if it was given any.
    #[must_use]
    pub fn trusted_holds(&self) -> Option<&std::sync::Arc<crate::hold::trusted::Trusted>> {
        self.holds.get().map(|h| &h.trusted)
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
                let reader = grant.subject.as_ref();
                self.get_blob(&self.repo(name)?, &digest, head, reader, &req)
                    .await
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
    fn upload_state(&self, id: UploadId) -> Arc<tokio::sync::Mutex<UploadState>> {
        let mut map = self.uploads.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(id).or_default().clone()
    }

    fn forget_upload(&self, id: UploadId) {
        self.uploads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    /// Whether a request is writing to this upload right now, or another role's session owns
    /// it (the sweeper leaves those alone).
    fn upload_is_active(&self, id: UploadId) -> bool {
        if self.foreign_uploads.get().is_some_and(|owns| owns(id)) {
            return true;
        }
        let map = self.uploads.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&id).is_some_and(|state| state.try_lock().is_err())
    }
}

/// A response builder with the headers every answer carries.
fn response(status: StatusCode) -> http::response::Builder {
    Response::builder().status(status)
}

/// An empty answer with a `Location`.
fn located(status: StatusCode, location: &str) -> http::response::Builder {
    response(status)
        .header(LOCATION, location)
        .header(CONTENT_LENGTH, "0")
}

/// Turns a builder error (only possible with a malformed header value we built) into a 500.
fn finish(builder: http::response::Builder, body: Body) -> Result<Response<Body>, OciError> {
    builder.body(body).map_err(|e| OciError::internal(&e))
}

/// Seconds since the Unix epoch.
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
