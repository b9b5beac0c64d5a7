//! The OCI spec model (distribution spec v1.1): endpoint parsing, repository names, tags and
//! references, digests and upload ids, manifest parsing and validation, media types, error codes
//! and the error body. No I/O. Imports only `atproto` (DID syntax in names); never the index,
//! `appview`, `registry`, `pds` or `blobstore` — the distribution service is `registry`.

pub mod digest;
pub mod endpoint;
pub mod error;
pub mod manifest;
pub mod name;

pub use endpoint::OciEndpoint;
pub use error::{ErrorCode, OciError};
