//! The embedded Personal Data Server: repositories in redb, the write path, identities, accounts
//! and sessions, XRPC and the firehose. See `docs/pds.md`.

pub mod events;
pub mod lexicons;
pub mod repo;
pub mod store;
