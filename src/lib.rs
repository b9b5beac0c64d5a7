//! atcr: a container registry appliance on the AT Protocol, in one binary.

pub mod admin;
pub mod appview;
pub mod atproto;
pub mod auth;
pub mod blobstore;
pub mod cli;
pub mod config;
pub mod dbslot;
pub mod doctor;
pub mod hold;
pub mod http;
pub mod http_client;
mod macros;
pub mod oci;
pub mod pds;
pub mod registry;
pub mod search;
pub mod server;
pub mod tls;
pub mod web;
pub mod worker;
