//! The upstream atproto interop vectors (`tests/vectors/atproto-interop-tests/`, carried in the repository), every file.
//! These tests fail, never skip, when the vectors are missing.

#[path = "atproto_vectors/common.rs"]
mod common;
#[path = "atproto_vectors/crypto.rs"]
mod crypto;
#[path = "atproto_vectors/data_model.rs"]
mod data_model;
#[path = "atproto_vectors/firehose.rs"]
mod firehose;
#[path = "atproto_vectors/generated.rs"]
mod generated;
#[path = "atproto_vectors/lexicon.rs"]
mod lexicon;
#[path = "atproto_vectors/mst.rs"]
mod mst;
#[path = "atproto_vectors/syntax.rs"]
mod syntax;
