//! The hold's `io.atcr.hold.layer` records: the node's own word, signed in its repository, that
//! a user uploaded (or mounted) a blob for one of their manifest records.
//!
//! A manifest record proves only that its author wrote it; anyone can write one naming any
//! digest. So the index makes a manifest record's blobs servable from its repository only where
//! a layer record of the node vouches for that (user, manifest record, digest, size). The push
//! path writes them — after checking every blob is linked in the repository — in a commit of
//! the node's repository before the manifest record's commit; a blob `DELETE` and a manifest
//! `DELETE` withdraw them. Being records, they survive `atcr index rebuild`.

use serde_json::{Value as Json, json};

use super::records::{self, MANIFEST_COLLECTION};
use super::{AppView, AppViewError, Located, delete, update};
use crate::appview::index::RecordAddr;
use crate::atproto::{Datetime, Did, RecordKey};
use crate::blobstore::Digest;
use crate::oci::manifest::Descriptor;
use crate::pds::repo::{Validation, WriteOp};

pub use crate::appview::index::LAYER_COLLECTION;

/// The key of the layer record vouching for `digest` in manifest record `manifest_uri`: a
/// TID-shaped hash of both (the collection declares `tid` keys), so a re-push writes nothing.
#[must_use]
pub fn layer_rkey(manifest_uri: &str, digest: &Digest) -> RecordKey {
    crate::atproto::atcr::layer_rkey(manifest_uri, digest.as_str())
}

/// The `io.atcr.hold.layer` record for one blob of a manifest record.
#[must_use]
pub fn layer_record(user: &Did, manifest_uri: &str, blob: &Descriptor, at: &Datetime) -> Json {
    json!({
        "$type": LAYER_COLLECTION,
        "digest": blob.digest.as_str(),
        "size": blob.size,
        "mediaType": blob.media_type,
        "manifest": manifest_uri,
        "userDid": user.as_str(),
        "createdAt": at.as_str(),
    })
}

/// A layer record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRef {
    pub digest: Digest,
    pub size: u64,
    /// The manifest record it vouches for; its DID is the record's `userDid`.
    pub manifest: RecordAddr,
}

/// Reads a layer record; `None` unless it names a blob, a size, and a manifest record of the
/// user it names.
#[must_use]
pub fn read_layer(record: &Json) -> Option<LayerRef> {
    let digest: Digest = record.get("digest")?.as_str()?.parse().ok()?;
    let size = record.get("size")?.as_u64()?;
    let user: Did = record.get("userDid")?.as_str()?.parse().ok()?;
    let manifest = records::record_addr(record.get("manifest")?.as_str()?)?;
    (manifest.did == user.as_str() && manifest.collection == MANIFEST_COLLECTION).then_some(
        LayerRef {
            digest,
            size,
            manifest,
        },
    )
}

impl AppView {
    /// Writes the layer records for `blobs` of manifest record `manifest_rkey` in `loc`'s
    /// repository, in one commit of the node's repository. The caller checked that each is
    /// linked in the repository with its size.
    pub(super) async fn record_layers(
        &self,
        loc: &Located,
        manifest_rkey: &RecordKey,
        blobs: &[Descriptor],
    ) -> Result<(), AppViewError> {
        let node = &self.pds.node_did;
        let store = self.pds.store();
        let uri = records::at_uri(&loc.owner, MANIFEST_COLLECTION, manifest_rkey);
        let now = Datetime::now();
        let mut writes = Vec::new();
        for blob in blobs {
            let rkey = layer_rkey(&uri, &blob.digest);
            if store
                .record_cid(node, LAYER_COLLECTION, rkey.as_str())?
                .is_none()
            {
                let record = layer_record(&loc.owner, &uri, blob, &now);
                writes.push(update(LAYER_COLLECTION, rkey, &record)?);
            }
        }
        self.write_node(writes).await
    }

    /// Withdraws the layer records naming `digest` for the manifest records of `loc`'s
    /// repository (`manifest_rkeys`; all of them when `None`), so that no rebuild links the blob
    /// there again.
    pub(super) async fn withdraw_layers(
        &self,
        loc: &Located,
        digest: Option<&Digest>,
        manifest_rkeys: &[String],
    ) -> Result<(), AppViewError> {
        let node = &self.pds.node_did;
        let store = self.pds.store();
        let mut writes = Vec::new();
        for rkey in manifest_rkeys {
            let Ok(rkey) = rkey.parse::<RecordKey>() else {
                continue;
            };
            let uri = records::at_uri(&loc.owner, MANIFEST_COLLECTION, &rkey);
            let keys: Vec<RecordKey> = match digest {
                Some(d) => vec![layer_rkey(&uri, d)],
                None => self.layer_keys_of(&uri)?,
            };
            for key in keys {
                if store
                    .record_cid(node, LAYER_COLLECTION, key.as_str())?
                    .is_some()
                {
                    writes.push(delete(LAYER_COLLECTION, key.as_str())?);
                }
            }
        }
        self.write_node(writes).await
    }

    /// Withdraws the layer records of blob `digest` in every manifest record of `loc`'s
    /// repository: the blob was deleted from it.
    pub async fn forget_blob(&self, loc: &Located, digest: &Digest) -> Result<(), AppViewError> {
        self.catch_up_now().await?;
        let rkeys: Vec<String> = self
            .index
            .records_for(&loc.owner, MANIFEST_COLLECTION, &loc.key)?
            .into_iter()
            .map(|(rkey, _)| rkey)
            .collect();
        self.withdraw_layers(loc, Some(digest), &rkeys).await
    }

    /// The keys of the layer records a manifest record's blobs have, from the manifest bytes'
    /// references in the index.
    fn layer_keys_of(&self, manifest_uri: &str) -> Result<Vec<RecordKey>, AppViewError> {
        let Some(addr) = records::record_addr(manifest_uri) else {
            return Ok(Vec::new());
        };
        Ok(self
            .index
            .layers_of(&addr.did, &addr.rkey)?
            .iter()
            .map(|d| layer_rkey(manifest_uri, d))
            .collect())
    }

    /// Applies `writes` to the node's repository as one commit, if there are any, and waits
    /// until the index has taken it in.
    async fn write_node(&self, writes: Vec<WriteOp>) -> Result<(), AppViewError> {
        if writes.is_empty() {
            return Ok(());
        }
        let (info, _) = self
            .pds
            .repos
            .apply_writes(&self.pds.node_did, writes, None, Validation::Require)
            .await?;
        self.wait_indexed(info.seq).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn layer_records_round_trip_and_name_their_user() {
        let user: Did = "did:plc:abc".parse().unwrap();
        let d: Digest = D.parse().unwrap();
        let uri = records::at_uri(
            &user,
            MANIFEST_COLLECTION,
            &records::manifest_rkey("app", &d),
        );
        let blob = Descriptor {
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            digest: d.clone(),
            size: 7,
            urls: None,
            platform: None,
        };
        let rec = layer_record(&user, &uri, &blob, &Datetime::now());
        let back = read_layer(&rec).unwrap();
        assert_eq!((back.digest, back.size), (d.clone(), 7));
        assert_eq!(back.manifest.did, "did:plc:abc");
        assert_eq!(layer_rkey(&uri, &d), layer_rkey(&uri, &d));
        assert!(
            layer_rkey(&uri, &d)
                .as_str()
                .parse::<crate::atproto::Tid>()
                .is_ok()
        );
        // A record whose manifest belongs to someone else than its user vouches for nothing.
        let mut other = rec.clone();
        other["userDid"] = json!("did:plc:other");
        assert!(read_layer(&other).is_none());
        let mut tag = rec;
        tag["manifest"] = json!(format!("at://{user}/io.atcr.tag/x"));
        assert!(read_layer(&tag).is_none());
    }
}
