//! The OCI distribution API (spec v1.1).

mod blobs;
pub mod digest;
pub mod endpoint;
pub mod error;
mod lists;
pub mod manifest;
mod manifests;
pub mod name;
pub mod registry;
mod uploads;

// Moved to AppView; re-exported until every handler names `crate::appview` itself.
pub use crate::appview::{index, summary};
pub use endpoint::OciEndpoint;
pub use error::{ErrorCode, OciError};
pub use registry::Registry;
