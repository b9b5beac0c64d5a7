//! The OCI distribution API (spec v1.1).

pub mod endpoint;
pub mod error;
pub mod index;
pub mod name;
