//! atcr: a container registry appliance on the AT Protocol, in one binary.

pub mod atproto;
