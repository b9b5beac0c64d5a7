//! Where the registry's domain errors become OCI error bodies: the storage, index and `AppView`
//! layers answer in their own errors, and only this edge knows the OCI codes they map to.

use serde_json::json;

use crate::appview::AppViewError;
use crate::appview::index::IndexError;
use crate::blobstore::BlobError;
use crate::oci::{ErrorCode, OciError};

impl From<BlobError> for OciError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::NotFound => {
                OciError::new(ErrorCode::BlobUnknown, "blob unknown to registry")
            }
            BlobError::StorageFull => {
                tracing::error!("blob storage is full");
                OciError::new(ErrorCode::InsufficientStorage, "storage is full")
            }
            BlobError::Body(cause) => OciError::new(
                ErrorCode::BlobUploadInvalid,
                "request body could not be read",
            )
            .with_detail(json!({ "cause": cause })),
            BlobError::Backend(e) => OciError::internal(&e),
        }
    }
}

impl From<IndexError> for OciError {
    fn from(e: IndexError) -> Self {
        if e.is_storage_failure() {
            return OciError::storage_failed(&e);
        }
        OciError::internal(&e)
    }
}

impl From<AppViewError> for OciError {
    fn from(e: AppViewError) -> OciError {
        if let Some(store) = e.store_error() {
            return if store.is_storage_failure() {
                OciError::storage_failed(store)
            } else {
                OciError::internal(store)
            };
        }
        let message = e.to_string();
        match e {
            AppViewError::NameInvalid(name) => OciError::new(ErrorCode::NameInvalid, message)
                .with_detail(json!({ "name": name.as_str() })),
            AppViewError::NameUnknown(name) => OciError::new(ErrorCode::NameUnknown, message)
                .with_detail(json!({ "name": name.as_str() })),
            AppViewError::RecordInvalid { message, reason } => {
                OciError::new(ErrorCode::ManifestInvalid, message)
                    .with_detail(json!({ "reason": reason }))
            }
            AppViewError::Blob(e) => e.into(),
            AppViewError::Index(e) => e.into(),
            AppViewError::RemoteSession(_)
            | AppViewError::RemoteRefused(_)
            | AppViewError::RemoteUnavailable(_) => remote_error(&e),
            e => OciError::internal(&e),
        }
    }
}

impl From<crate::appview::gc::GcError> for OciError {
    fn from(e: crate::appview::gc::GcError) -> OciError {
        match e {
            crate::appview::gc::GcError::Index(e) => e.into(),
            crate::appview::gc::GcError::Blobs(e) => e.into(),
            crate::appview::gc::GcError::Pds(e) => OciError::internal(&e),
        }
    }
}

/// A remote user's PDS that did not take their push's records: a login to redo (no session
/// here), their refusal (passed on), or an outage (try again); nothing was indexed.
fn remote_error(e: &AppViewError) -> OciError {
    tracing::warn!(error = %e, "a remote user's PDS did not take a write");
    match e {
        AppViewError::RemoteSession(_) => OciError::new(
            ErrorCode::Unauthorized,
            format!("{e}: the registry keeps sessions with other PDSes in memory only"),
        )
        .with_status(http::StatusCode::UNAUTHORIZED),
        AppViewError::RemoteRefused(_) => OciError::new(
            ErrorCode::Denied,
            format!("your PDS did not take the records of this push: {e}"),
        ),
        _ => OciError::new(
            ErrorCode::Unavailable,
            format!(
                "your PDS could not be reached to write the records of this push; try again later ({e})"
            ),
        ),
    }
}
