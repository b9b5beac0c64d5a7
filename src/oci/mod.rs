//! The OCI distribution API (spec v1.1).

mod blobs;
pub mod digest;
pub mod endpoint;
pub mod error;
pub mod index;
mod lists;
pub mod manifest;
mod manifests;
pub mod name;
pub mod registry;
pub mod summary;
mod uploads;

pub use endpoint::OciEndpoint;
pub use error::{ErrorCode, OciError};
pub use registry::Registry;
