//! The AT Protocol data layer: identifiers, the data model and its DAG-CBOR encoding, CIDs,
//! signing keys, the Merkle Search Tree, CAR files, signed repository commits and lexicon
//! validation. No I/O beyond `std::io` readers and writers, no HTTP.
//!
//! Everything here is checked against the upstream interop vectors (see `docs/atproto.md`).
//!
//! A leaf: imports nothing of the rest of the crate.

pub mod atcr;
pub mod blockstore;
pub mod car;
pub mod cbor;
pub mod cid;
pub mod commit;
pub mod crypto;
pub mod data;
pub mod lexicon;
pub mod mst;
pub mod sync;
pub mod syntax;

pub use blockstore::{BlockStore, BlockStoreError, MemoryBlockStore};
pub use cid::Cid;
pub use commit::{Commit, UnsignedCommit};
pub use crypto::{Algorithm, Keypair, PublicKey};
pub use data::Value;
pub use mst::Mst;
pub use syntax::{AtIdentifier, AtUri, Datetime, Did, Handle, Nsid, RecordKey, Tid};
