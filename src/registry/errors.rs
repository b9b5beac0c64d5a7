//! Where the registry's domain errors become OCI error bodies: the storage, index and `AppView`
//! layers answer in their own errors, and only this edge knows the OCI codes they map to.

use serde_json::json;

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
