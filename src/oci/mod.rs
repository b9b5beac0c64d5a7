//! The OCI distribution API (spec v1.1).

pub mod digest;
pub mod endpoint;
pub mod error;
pub mod manifest;
pub mod name;

pub use endpoint::OciEndpoint;
pub use error::{ErrorCode, OciError};
