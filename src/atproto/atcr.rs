//! The record keys atcr derives for its own `io.atcr.*` records: a TID-shaped hash of what the
//! record is about, so writing the same fact again rewrites one record instead of adding one.
//!
//! Here, in the leaf, because two rooms derive them and must agree: the `AppView` (manifest
//! records, and layer records of its own pushes) and the hold (layer records it writes when a
//! registry on another machine notifies it of a push, knowing only repository and digest).
//! Readers never rely on these keys: records other implementations wrote under other keys are
//! matched on their fields.

use sha2::{Digest as _, Sha256};

use super::{RecordKey, Tid};

/// The key of the `io.atcr.manifest` record for manifest `digest` (`sha256:<hex>`) in
/// repository `path` (`app`, `tools/cli`): one digest in two repositories gets two records.
#[must_use]
pub fn manifest_rkey(path: &str, digest: &str) -> RecordKey {
    hashed_tid(&format!("{path}@{digest}"))
}

/// The key of the `io.atcr.hold.layer` record vouching for blob `digest` in the manifest
/// record `manifest_uri` (`at://<did>/io.atcr.manifest/<rkey>`).
#[must_use]
pub fn layer_rkey(manifest_uri: &str, digest: &str) -> RecordKey {
    hashed_tid(&format!("{manifest_uri}#{digest}"))
}

/// A TID-shaped record key made from a hash of `s`: the same `s`, the same key.
fn hashed_tid(s: &str) -> RecordKey {
    let hash = Sha256::digest(s.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    let v = u64::from_be_bytes(first);
    let tid = Tid::from_parts(v >> 11, (v & 0x3ff) as u16);
    // A TID is always a valid record key.
    tid.as_str()
        .parse()
        .unwrap_or_else(|_| unreachable!("TID {tid} is a record key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn keys_are_stable_tids() {
        // Pinned: records already written carry these keys.
        assert_eq!(manifest_rkey("app", D).as_str(), "42zz4iw6lg7jj");
        let uri = format!(
            "at://did:plc:abc/io.atcr.manifest/{}",
            manifest_rkey("app", D)
        );
        assert_eq!(layer_rkey(&uri, D).as_str(), "3n7rcpiotrjfa");
        assert_ne!(manifest_rkey("app", D), manifest_rkey("other", D));
        assert!(manifest_rkey("app", D).as_str().parse::<Tid>().is_ok());
        assert!(layer_rkey(&uri, D).as_str().parse::<Tid>().is_ok());
    }
}
