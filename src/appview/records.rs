//! OCI ↔ record mapping: the `io.atcr.manifest` and `io.atcr.tag` records a push writes, their
//! deterministic keys, and how records (ours or another implementation's) are read back.

use serde_json::{Map, Value as Json, json};

use crate::appview::index::RecordAddr;
use crate::atproto::{AtUri, Cid, Datetime, Did, RecordKey};
use crate::blobstore::{Algorithm, Digest};

pub use crate::appview::index::{
    MANIFEST_COLLECTION, PAGE_COLLECTION, STAR_COLLECTION, TAG_COLLECTION,
};

/// The key of the manifest record for `digest` in repository `path`: a TID (the collection
/// declares `tid` keys) made from a hash of both, so re-pushing rewrites the same record and one
/// digest in two repositories gets two records (see [`crate::atproto::atcr`], which the hold
/// shares).
#[must_use]
pub fn manifest_rkey(path: &str, digest: &Digest) -> RecordKey {
    crate::atproto::atcr::manifest_rkey(path, digest.as_str())
}

/// The key of the tag record for `tag` in repository `path`: `path` with `/` as `:`, then `~`
/// and the tag. Neither part can hold `~`, so distinct pairs get distinct keys.
#[must_use]
pub fn tag_rkey(path: &str, tag: &str) -> RecordKey {
    record_key(&format!("{}~{tag}", path.replace('/', ":")))
}

fn record_key(s: &str) -> RecordKey {
    // Both key shapes above only use record-key characters and stay under 512 bytes.
    s.parse()
        .unwrap_or_else(|_| unreachable!("generated record key {s:?} is valid"))
}

/// The AT-URI of a record.
#[must_use]
pub fn at_uri(did: &Did, collection: &str, rkey: &RecordKey) -> String {
    format!("at://{did}/{collection}/{rkey}")
}

/// A descriptor in the lexicon's `blobReference`/`manifestReference` shape: only the fields the
/// schema knows, so another reader's strict validation passes.
fn descriptor(d: &Json, with_platform: bool) -> Json {
    let mut out = Map::new();
    for key in ["mediaType", "size", "digest"] {
        if let Some(v) = d.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(urls) = d.get("urls").filter(|u| u.is_array()) {
        out.insert("urls".into(), urls.clone());
    }
    if let Some(a) = d.get("annotations").filter(|a| a.is_object()) {
        out.insert("annotations".into(), a.clone());
    }
    if with_platform && let Some(p) = d.get("platform").filter(|p| p.is_object()) {
        let mut platform = Map::new();
        for key in ["architecture", "os", "osVersion", "osFeatures", "variant"] {
            if let Some(v) = p.get(key) {
                platform.insert(key.into(), v.clone());
            }
        }
        if platform.contains_key("architecture") && platform.contains_key("os") {
            out.insert("platform".into(), Json::Object(platform));
        }
    }
    Json::Object(out)
}

/// What a manifest record says, beyond the manifest itself.
pub struct ManifestRecordInput<'a> {
    pub path: &'a str,
    pub digest: &'a Digest,
    pub media_type: &'a str,
    /// The manifest exactly as pushed (already checked as JSON of a known shape).
    pub bytes: &'a [u8],
    pub hold: &'a Did,
    pub created_at: &'a Datetime,
}

/// The `io.atcr.manifest` record of a pushed manifest.
#[must_use]
pub fn manifest_record(m: &ManifestRecordInput<'_>) -> Json {
    let raw: Json = serde_json::from_slice(m.bytes).unwrap_or(Json::Null);
    let mut rec = json!({
        "$type": MANIFEST_COLLECTION,
        "repository": m.path,
        "digest": m.digest.as_str(),
        "holdDid": m.hold.as_str(),
        "mediaType": m.media_type,
        "schemaVersion": raw.get("schemaVersion").and_then(Json::as_i64).unwrap_or(2),
        "manifestBlob": {
            "$type": "blob",
            "ref": {"$link": Cid::for_raw(m.bytes).to_string()},
            "mimeType": m.media_type,
            "size": m.bytes.len(),
        },
        "createdAt": m.created_at.as_str(),
    });
    if let Some(config) = raw.get("config") {
        rec["config"] = descriptor(config, false);
    }
    // Artifact manifests list `blobs`; they are the layers of the record.
    if let Some(layers) = raw
        .get("layers")
        .or_else(|| raw.get("blobs"))
        .and_then(Json::as_array)
    {
        rec["layers"] = layers.iter().map(|d| descriptor(d, false)).collect();
    }
    if let Some(manifests) = raw.get("manifests").and_then(Json::as_array) {
        rec["manifests"] = manifests.iter().map(|d| descriptor(d, true)).collect();
    }
    if let Some(subject) = raw.get("subject") {
        rec["subject"] = descriptor(subject, false);
    }
    if let Some(a) = raw.get("annotations").filter(|a| a.is_object()) {
        rec["annotations"] = a.clone();
    }
    rec
}

/// The `io.atcr.tag` record pointing `tag` at a manifest record.
#[must_use]
pub fn tag_record(
    path: &str,
    tag: &str,
    manifest_uri: &str,
    media_type: &str,
    at: &Datetime,
) -> Json {
    json!({
        "$type": TAG_COLLECTION,
        "repository": path,
        "tag": tag,
        "manifest": manifest_uri,
        "mediaType": media_type,
        "updatedAt": at.as_str(),
    })
}

/// A manifest record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRef {
    pub repository: String,
    pub digest: Digest,
    pub media_type: String,
    /// Seconds since the Unix epoch (`createdAt`).
    pub created: u64,
}

/// Reads a manifest record; `None` when it is not one we can serve: no usable digest, or a
/// `manifestBlob` whose content is not that digest.
#[must_use]
pub fn read_manifest(record: &Json) -> Option<ManifestRef> {
    let digest: Digest = record.get("digest")?.as_str()?.parse().ok()?;
    if let Some(link) = record
        .pointer("/manifestBlob/ref/$link")
        .and_then(Json::as_str)
    {
        let cid: Cid = link.parse().ok()?;
        if digest.algorithm() == Algorithm::Sha256 && hex::encode(cid.digest()) != digest.hex() {
            return None;
        }
    }
    Some(ManifestRef {
        repository: record.get("repository")?.as_str()?.to_owned(),
        digest,
        media_type: record.get("mediaType")?.as_str()?.to_owned(),
        created: created_secs(record.get("createdAt")),
    })
}

fn created_secs(value: Option<&Json>) -> u64 {
    value
        .and_then(Json::as_str)
        .and_then(|s| s.parse::<Datetime>().ok())
        .and_then(|d| u64::try_from(d.timestamp_micros() / 1_000_000).ok())
        .unwrap_or(0)
}

/// A tag record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRef {
    pub repository: String,
    pub tag: String,
    /// The manifest record it points at (`manifest`), if it names one by DID.
    pub manifest: Option<RecordAddr>,
    /// The deprecated `manifestDigest`.
    pub digest: Option<Digest>,
}

#[must_use]
pub fn read_tag(record: &Json) -> Option<TagRef> {
    let manifest = record
        .get("manifest")
        .and_then(Json::as_str)
        .and_then(record_addr);
    let digest = record
        .get("manifestDigest")
        .and_then(Json::as_str)
        .and_then(|s| s.parse().ok());
    Some(TagRef {
        repository: record.get("repository")?.as_str()?.to_owned(),
        tag: record.get("tag")?.as_str()?.to_owned(),
        manifest,
        digest,
    })
}

/// The record an AT-URI names, if it names one by DID.
pub(super) fn record_addr(uri: &str) -> Option<RecordAddr> {
    let uri = uri.parse::<AtUri>().ok()?;
    let crate::atproto::AtIdentifier::Did(did) = uri.authority() else {
        return None;
    };
    Some(RecordAddr {
        did: did.as_str().to_owned(),
        collection: uri.collection()?.as_str().to_owned(),
        rkey: uri.rkey()?.as_str().to_owned(),
    })
}

/// The record key of a repository's page record: the repository name, with `:` for the `/`
/// of a nested name (record keys cannot hold `/`, repository names cannot hold `:`).
#[must_use]
pub fn page_rkey(repository: &str) -> String {
    repository.replace('/', ":")
}

/// The repository name a page record key stands for (see [`page_rkey`]).
#[must_use]
pub fn page_repository(rkey: &str) -> String {
    rkey.replace(':', "/")
}

/// The AT-URI of `owner`'s page record for `repository`: what a star record's `subject` names.
#[must_use]
pub fn page_uri(owner: &Did, repository: &str) -> String {
    format!("at://{owner}/{PAGE_COLLECTION}/{}", page_rkey(repository))
}

/// The `io.atcr.sailor.star` record of a star of repository `path` of `owner`.
#[must_use]
pub fn star_record(owner: &Did, path: &str) -> Json {
    json!({
        "$type": STAR_COLLECTION,
        "subject": page_uri(owner, path),
        "createdAt": Datetime::now().to_string(),
    })
}

/// The owner and record key of a page record's AT-URI.
#[must_use]
pub fn page_uri_parts(uri: &str) -> Option<(Did, String)> {
    let rest = uri.strip_prefix("at://")?;
    let mut parts = rest.splitn(3, '/');
    let owner: Did = parts.next()?.parse().ok()?;
    if parts.next()? != PAGE_COLLECTION {
        return None;
    }
    let rkey = parts.next()?;
    (!rkey.is_empty() && !rkey.contains('/')).then(|| (owner, rkey.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn keys_are_deterministic_and_distinct() {
        let d: Digest = D.parse().unwrap();
        assert_eq!(manifest_rkey("app", &d), manifest_rkey("app", &d));
        assert_ne!(manifest_rkey("app", &d), manifest_rkey("other", &d));
        assert!(
            manifest_rkey("app", &d)
                .as_str()
                .parse::<crate::atproto::Tid>()
                .is_ok()
        );
        assert_eq!(tag_rkey("a/b", "v1").as_str(), "a:b~v1");
        assert_ne!(tag_rkey("a_b", "c"), tag_rkey("a", "b_c"));
    }

    #[test]
    fn manifest_records_round_trip() {
        let bytes = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
            "manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":7,
            "digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "platform":{"architecture":"arm64","os":"linux","variant":"v8","extra":1}}],
            "annotations":{"org.opencontainers.image.title":"x"}}"#;
        let digest = Digest::of(Algorithm::Sha256, bytes);
        let hold: Did = "did:web:reg.lan".parse().unwrap();
        let at: Datetime = "2026-11-28T10:00:00.000Z".parse().unwrap();
        let rec = manifest_record(&ManifestRecordInput {
            path: "app",
            digest: &digest,
            media_type: "application/vnd.oci.image.index.v1+json",
            bytes,
            hold: &hold,
            created_at: &at,
        });
        assert_eq!(rec["manifests"][0]["platform"]["variant"], "v8");
        assert!(rec["manifests"][0]["platform"].get("extra").is_none());
        assert_eq!(rec["annotations"]["org.opencontainers.image.title"], "x");
        let back = read_manifest(&rec).unwrap();
        assert_eq!(back.digest, digest);
        assert_eq!(back.repository, "app");
        assert_eq!(back.created, 1_795_860_000);
        // A blob that is not the digest's content is refused.
        let mut forged = rec.clone();
        forged["digest"] = json!(D);
        assert!(read_manifest(&forged).is_none());
    }

    #[test]
    fn tag_records_name_their_manifest() {
        let did: Did = "did:plc:abc".parse().unwrap();
        let d: Digest = D.parse().unwrap();
        let uri = at_uri(&did, MANIFEST_COLLECTION, &manifest_rkey("app", &d));
        let at = Datetime::now();
        let t = read_tag(&tag_record("app", "v1", &uri, "x", &at)).unwrap();
        assert_eq!(t.tag, "v1");
        let m = t.manifest.unwrap();
        assert_eq!(m.did, "did:plc:abc");
        assert_eq!(m.collection, MANIFEST_COLLECTION);
        let old =
            read_tag(&json!({"repository": "app", "tag": "v0", "manifestDigest": D})).unwrap();
        assert_eq!(old.digest, Some(d));
    }
}
