//! The hold's `io.atcr.hold.layer` records for manifests pushed through a registry on another
//! machine: `io.atcr.hold.notifyManifest` writes them, `io.atcr.hold.getQuota` sums them.
//!
//! A layer record is the hold's word that a user's manifest record uses one of its blobs. The
//! hold gives it only for a blob it stores, at the size it stores it, and only to the
//! manifest's owner (the service token's issuer) when the crew rules let them write. It names
//! the manifest record by the key atcr derives from repository and digest
//! ([`crate::atproto::atcr`]), the same key the registry gave the record. Records are written
//! under [`layer_rkey`] of (manifest, digest) and matched on those fields, so notifying a push
//! again writes nothing.

use std::collections::{HashMap, HashSet};

use futures_util::future::join_all;
use http::{Response, StatusCode};
use serde_json::{Value as Json, json};

use super::xrpc::HoldMethod;
use super::{Hold, HoldError, PAGE, Permission, WRITE_ATTEMPTS, json_value, nsid};
use crate::atproto::atcr::{layer_rkey, manifest_rkey};
use crate::atproto::{Cid, Datetime, Did};
use crate::blobstore::Digest;
use crate::http::body::Body;
use crate::pds::repo::{RepoError, Validation, WriteOp};
use crate::pds::xrpc::{Call, XrpcError, ok_json};

/// The layer records' collection.
pub const LAYER: &str = "io.atcr.hold.layer";
/// The collection of the manifest records layer records name.
pub(super) const MANIFEST: &str = "io.atcr.manifest";
/// Most blobs (config and layers) one `notifyManifest` may name.
pub const MAX_BLOBS: usize = 1000;
/// Blobs looked up in the store at once.
const STATS_AT_ONCE: usize = 8;

/// What a `notifyManifest` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Push,
    Pull,
}

/// One blob of a notified manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BlobInfo {
    digest: Digest,
    size: u64,
    media_type: String,
}

/// A `notifyManifest` input that passed its checks.
#[derive(Debug)]
struct Notice {
    repository: String,
    user: Did,
    manifest: Digest,
    operation: Operation,
    /// Config first, then layers; each digest once.
    blobs: Vec<BlobInfo>,
}

impl Notice {
    /// The AT-URI of the manifest record the registry wrote for this push.
    fn manifest_uri(&self) -> String {
        let rkey = manifest_rkey(&self.repository, self.manifest.as_str());
        format!("at://{}/{MANIFEST}/{rkey}", self.user)
    }
}

/// Adds one to its counter when dropped.
struct Counted<'a>(&'a std::sync::atomic::AtomicU64);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A layer record as read back (fields only; records lacking one are skipped).
pub(super) struct Layer {
    pub(super) rkey: String,
    pub(super) cid: Cid,
    pub(super) digest: String,
    pub(super) size: u64,
    pub(super) manifest: String,
    /// The manifest's repository and digest, which records written by this hold carry beside
    /// the lexicon's fields (the URI's key alone does not say them; see `gc`).
    pub(super) repository: Option<String>,
    pub(super) manifest_digest: Option<String>,
    pub(super) user: String,
    /// `createdAt` in seconds since the epoch (`None`: unreadable).
    pub(super) created: Option<u64>,
}

impl Layer {
    fn read(rkey: &str, cid: &Cid, record: &Json) -> Option<Layer> {
        let text = |k: &str| record.get(k)?.as_str().map(str::to_owned);
        let created = text("createdAt")
            .and_then(|t| t.parse::<Datetime>().ok())
            .and_then(|t| u64::try_from(t.timestamp_micros() / 1_000_000).ok());
        Some(Layer {
            rkey: rkey.to_owned(),
            cid: *cid,
            digest: text("digest")?,
            size: record.get("size")?.as_u64()?,
            manifest: text("manifest")?,
            repository: text("repository"),
            manifest_digest: text("manifestDigest"),
            user: text("userDid")?,
            created,
        })
    }
}

fn text<'a>(v: &'a Json, name: &str, max: usize) -> Result<&'a str, XrpcError> {
    v[name]
        .as_str()
        .filter(|s| !s.is_empty() && s.len() <= max)
        .ok_or_else(|| XrpcError::invalid(format!("{name} must be a string of 1 to {max} bytes")))
}

/// A `blobInfo`/`layerInfo`; `media_type` when it names none (the lexicon's config has none).
fn blob_info(v: &Json, media_type: Option<&str>) -> Result<BlobInfo, XrpcError> {
    let digest = text(v, "digest", 128)?
        .parse()
        .map_err(|e| XrpcError::invalid(format!("digest: {e}")))?;
    let size = v["size"]
        .as_u64()
        .ok_or_else(|| XrpcError::invalid("size must be a non-negative integer"))?;
    let media_type = match (&v["mediaType"], media_type) {
        (Json::Null, Some(m)) => m,
        _ => text(v, "mediaType", 128)?,
    };
    Ok(BlobInfo {
        digest,
        size,
        media_type: media_type.to_owned(),
    })
}

/// The config's media type when the notice names none, after the manifest's.
fn config_type(manifest_media_type: &Json) -> &'static str {
    match manifest_media_type.as_str() {
        Some(m) if m.contains("docker") => "application/vnd.docker.container.image.v1+json",
        _ => "application/vnd.oci.image.config.v1+json",
    }
}

fn parse_notice(input: &Json) -> Result<Notice, XrpcError> {
    let repository = text(input, "repository", 256)?.to_owned();
    let user = text(input, "userDid", 2048)?
        .parse()
        .map_err(|_| XrpcError::invalid("userDid is not a DID"))?;
    let manifest = text(input, "manifestDigest", 128)?
        .parse()
        .map_err(|e| XrpcError::invalid(format!("manifestDigest: {e}")))?;
    let operation = match input["operation"].as_str() {
        None if input["operation"].is_null() => Operation::Push,
        Some("push") => Operation::Push,
        Some("pull") => Operation::Pull,
        _ => {
            return Err(XrpcError::new(
                StatusCode::BAD_REQUEST,
                "InvalidOperation",
                "operation must be push or pull",
            ));
        }
    };
    let info = &input["manifest"];
    if !info.is_object() {
        return Err(XrpcError::invalid("manifest must be an object"));
    }
    let layers: &[Json] = match &info["layers"] {
        Json::Null => &[],
        Json::Array(items) if items.len() <= MAX_BLOBS => items,
        Json::Array(_) => {
            return Err(XrpcError::invalid(format!(
                "at most {MAX_BLOBS} layers per manifest"
            )));
        }
        _ => return Err(XrpcError::invalid("manifest.layers must be an array")),
    };
    let mut blobs: Vec<BlobInfo> = Vec::with_capacity(layers.len() + 1);
    if !info["config"].is_null() {
        blobs.push(blob_info(
            &info["config"],
            Some(config_type(&info["mediaType"])),
        )?);
    }
    for layer in layers {
        let blob = blob_info(layer, None)?;
        if !blobs.iter().any(|b| b.digest == blob.digest) {
            blobs.push(blob);
        }
    }
    if blobs.len() > MAX_BLOBS {
        return Err(XrpcError::invalid(format!(
            "at most {MAX_BLOBS} blobs per manifest"
        )));
    }
    Ok(Notice {
        repository,
        user,
        manifest,
        operation,
        blobs,
    })
}

impl Hold {
    /// `notifyManifest`: for a push, layer records for the manifest's blobs this hold stores
    /// (`layersCreated` counts the new ones); for a pull, nothing is kept yet.
    pub(super) async fn notify_manifest(&self, call: Call) -> Result<Response<Body>, XrpcError> {
        let token = self.service_token(&call, HoldMethod::NotifyManifest)?;
        let notice = parse_notice(&call.json().await?)?;
        let want = match notice.operation {
            Operation::Push => Permission::BlobWrite,
            Operation::Pull => Permission::BlobRead,
        };
        self.check_permission(&token.issuer, want)?;
        if token.issuer != notice.user {
            return Err(XrpcError::new(
                StatusCode::FORBIDDEN,
                "UserMismatch",
                "userDid is not the token's issuer: users notify of their own manifests only",
            ));
        }
        self.verify_issuer(&token).await?;
        if notice.operation == Operation::Pull {
            return ok_json(&json!({
                "success": true,
                "operation": "pull",
                "statsUpdated": false,
            }));
        }
        let (created, not_held) = self.vouch(&notice).await?;
        // Beside the lexicon's output: the blobs named that this hold does not store at the
        // size named (no layer record vouches for them). A registry must not publish a manifest
        // naming them here (atcr's fails the push with `MANIFEST_BLOB_UNKNOWN`).
        let not_held: Vec<&str> = not_held.iter().map(|b| b.digest.as_str()).collect();
        ok_json(&json!({
            "success": true,
            "operation": "push",
            "statsUpdated": false,
            "layersCreated": created,
            "postCreated": false,
            "blobsNotHeld": not_held,
        }))
    }

    /// Writes, in one commit of the node's repository, the layer records of the notice's stored
    /// blobs; returns how many were new, and the blobs of the notice it does not store. Records that exist are written again (a fresh
    /// `createdAt`, a new CID): a collection that judged them stale before this notice then
    /// fails to delete them (its deletes name the CIDs it judged), and their grace starts anew.
    async fn vouch<'a>(&self, notice: &'a Notice) -> Result<(usize, Vec<&'a BlobInfo>), XrpcError> {
        let uri = notice.manifest_uri();
        // Pinned from the look at storage to the records: the blob collector's sweep cannot
        // delete one of these objects in between (see `crate::blobstore::pins`).
        let _pin = self
            .pds
            .blobs
            .pins()
            .pin(notice.blobs.iter().map(|b| b.digest.clone()))
            .await;
        let _turn = self.vouching.lock().await;
        // Counted when this ends, the lock still held: a release that read the layer records
        // before then reads them again (see `gc`).
        let _count = Counted(&self.vouches);
        let stored = self.stored(&notice.blobs).await?;
        // A blob the collection released (no layer record named it for the grace) is the
        // hold's again: recorded in its blob table, the sweep leaves the object alone.
        for blob in &stored {
            self.record_blob_again(&blob.digest, blob.size).await?;
        }
        let node = &self.pds.node_did;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let head = self
                .pds
                .store()
                .head(node)?
                .ok_or(HoldError::NoRepository)?;
            let mut existing = HashSet::new();
            self.each_layer(|l| {
                if l.manifest == uri {
                    existing.insert(l.digest);
                }
            })?;
            let now = Datetime::now();
            let mut writes = Vec::new();
            for blob in &stored {
                let record = json!({
                    "$type": LAYER,
                    "digest": blob.digest.as_str(),
                    "size": blob.size,
                    "mediaType": blob.media_type,
                    "manifest": uri,
                    "repository": notice.repository,
                    "manifestDigest": notice.manifest.as_str(),
                    "userDid": notice.user.as_str(),
                    "createdAt": now.as_str(),
                });
                writes.push(WriteOp::Update {
                    collection: nsid(LAYER),
                    rkey: layer_rkey(&uri, blob.digest.as_str()),
                    value: json_value(&record)?,
                    swap_record: None,
                });
            }
            let created = stored
                .iter()
                .filter(|b| !existing.contains(b.digest.as_str()))
                .count();
            if !writes.is_empty() {
                // Built on the records as read: a write in between (a collection's deletes, a
                // crew change) makes it read them again, for a true count; the last attempt
                // writes whatever came between, so the push never fails for a count.
                let swap = (attempt < WRITE_ATTEMPTS).then_some(head.commit);
                let applied = self
                    .pds
                    .repos
                    .apply_writes(node, writes, swap, Validation::Require)
                    .await;
                match applied {
                    Err(RepoError::InvalidSwap(_)) if attempt < WRITE_ATTEMPTS => continue,
                    Err(e) => return Err(e.into()),
                    Ok(_) => {}
                }
            }
            let not_held: Vec<&BlobInfo> = notice
                .blobs
                .iter()
                .filter(|b| !stored.iter().any(|s| s.digest == b.digest))
                .collect();
            tracing::info!(
                manifest = %uri,
                created,
                not_held = not_held.len(),
                "hold layer records written"
            );
            return Ok((created, not_held));
        }
    }

    /// The blobs of `blobs` this hold stores at the size named; the others are never vouched.
    async fn stored<'a>(&self, blobs: &'a [BlobInfo]) -> Result<Vec<&'a BlobInfo>, XrpcError> {
        let store = &self.pds.blobs;
        let mut out = Vec::with_capacity(blobs.len());
        for chunk in blobs.chunks(STATS_AT_ONCE) {
            let sizes = join_all(chunk.iter().map(|b| store.stat(&b.digest))).await;
            for (blob, size) in chunk.iter().zip(sizes) {
                match size {
                    Ok(Some(size)) if size == blob.size => out.push(blob),
                    Ok(size) => {
                        tracing::debug!(digest = %blob.digest, ?size, named = blob.size, "not vouched: not stored here at that size");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, digest = %blob.digest, "hold blob lookup failed");
                        return Err(XrpcError::internal());
                    }
                }
            }
        }
        Ok(out)
    }

    /// `getQuota?userDid=…`: the unique blobs of the layer records naming the user, and their
    /// total size. No limit is kept yet (`limit` absent: unlimited). A public hold answers
    /// anyone; a private one wants `blob:read`, as `getBlob`.
    pub(super) async fn get_quota(&self, call: Call) -> Result<Response<Body>, XrpcError> {
        let user: Did = call.required("userDid")?.parse().map_err(|_| {
            XrpcError::new(
                StatusCode::BAD_REQUEST,
                "InvalidUserDid",
                "userDid is not a DID",
            )
        })?;
        if !self.captain()?.public {
            super::blobs::reader(self, &call, HoldMethod::GetQuota.nsid()).await?;
        }
        let mut sizes: HashMap<String, u64> = HashMap::new();
        self.each_layer(|l| {
            if l.user == user.as_str() {
                sizes.entry(l.digest).or_insert(l.size);
            }
        })?;
        let total = sizes.values().fold(0u64, |t, s| t.saturating_add(*s));
        ok_json(&json!({
            "userDid": user.as_str(),
            "uniqueBlobs": sizes.len(),
            "totalSize": total,
        }))
    }

    /// Calls `f` with every layer record of the node's repository, read a page at a time.
    pub(super) fn each_layer(&self, mut f: impl FnMut(Layer)) -> Result<(), HoldError> {
        let did = &self.pds.node_did;
        let store = self.pds.store();
        let mut cursor: Option<String> = None;
        loop {
            let page = store.list_records(did, LAYER, cursor.as_deref(), PAGE, false)?;
            for (rkey, cid) in &page {
                if let Some(layer) = Layer::read(rkey, cid, &self.record_json(cid)?) {
                    f(layer);
                }
            }
            if page.len() < PAGE {
                return Ok(());
            }
            cursor = page.last().map(|(k, _)| k.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const E: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000001";

    fn input(layers: &Json) -> Json {
        json!({
            "repository": "app",
            "userDid": "did:plc:abc",
            "manifestDigest": D,
            "manifest": {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"digest": E, "size": 2},
                "layers": layers,
            },
        })
    }

    #[test]
    fn notices_name_config_and_layers_once() {
        let layer =
            json!({"digest": D, "size": 7, "mediaType": "application/vnd.oci.image.layer.v1.tar"});
        let n = parse_notice(&input(&json!([layer.clone(), layer]))).unwrap();
        assert_eq!(n.operation, Operation::Push);
        assert_eq!(n.blobs.len(), 2);
        assert_eq!(
            n.blobs[0].media_type,
            "application/vnd.oci.image.config.v1+json"
        );
        assert_eq!((n.blobs[1].digest.as_str(), n.blobs[1].size), (D, 7));
        assert_eq!(
            n.manifest_uri(),
            format!(
                "at://did:plc:abc/io.atcr.manifest/{}",
                manifest_rkey("app", D)
            )
        );
    }

    #[test]
    fn bad_notices_are_refused() {
        let err = |v: Json| parse_notice(&v).unwrap_err().error;
        let mut v = input(&json!([]));
        v["operation"] = json!("delete");
        assert_eq!(err(v), "InvalidOperation");
        let mut v = input(&json!([]));
        v["userDid"] = json!("alice");
        assert_eq!(err(v), "InvalidRequest");
        assert_eq!(
            err(input(
                &json!([{"digest": "md5:x", "size": 1, "mediaType": "m"}])
            )),
            "InvalidRequest"
        );
        assert_eq!(
            err(input(&json!([{"digest": D, "mediaType": "m"}]))),
            "InvalidRequest"
        );
        assert_eq!(
            err(input(&json!([{"digest": D, "size": 1}]))),
            "InvalidRequest"
        );
        let many: Vec<Json> = (0..=MAX_BLOBS)
            .map(|i| json!({"digest": format!("sha256:{i:064x}"), "size": 1, "mediaType": "m"}))
            .collect();
        assert_eq!(err(input(&Json::Array(many))), "InvalidRequest");
        let mut v = input(&json!([]));
        v["manifest"] = json!("x");
        assert_eq!(err(v), "InvalidRequest");
    }
}
