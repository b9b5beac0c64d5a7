//! Blob uploads through the hold's XRPC (`io.atcr.hold.initiateUpload`, `getPartUploadUrl`,
//! `uploadPart`, `completeUpload`, `abortUpload`), over the node's blob store's upload parts.
//!
//! A session belongs to the DID whose service token started it; to anyone else its id is
//! unknown. Its parts (numbered from 1 by the client, stored from 0) may arrive in any order
//! and be sent again; each answers with its SHA-256 as `ETag`. Completion takes the parts
//! `1..=n` with their `ETags`, hashes them again in order, and moves them under the digest key
//! only if they hash to the digest named at the start. Sessions live in memory: a restart
//! forgets them, and the registry's upload sweeper then removes their parts, as it does for any
//! part no session owns ([`Uploads::owns`] tells it which are the hold's).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;

use crate::atproto::{Cid, Did};
use crate::blobstore::{Algorithm, BlobError, Digest, Digester, UploadId};
use crate::http::body::Body;
use crate::pds::store::{BlobMeta, StoreError};
use crate::pds::xrpc::{Call, XrpcError, ok_json};

use super::xrpc::HoldMethod;
use super::{Hold, Permission};

/// Sessions open at once on the hold, and per caller.
const MAX_SESSIONS: usize = 1024;
const MAX_SESSIONS_PER_CALLER: usize = 64;
/// A session nobody touched for this long is gone (its parts are swept).
const SESSION_IDLE: Duration = Duration::from_hours(24);
/// Part numbers run from 1 to this (as S3 multipart uploads).
pub const MAX_PARTS: u32 = 10_000;
/// Largest part (as S3's).
pub const MAX_PART_BYTES: u64 = 5 << 30;

/// The header naming the session of an `uploadPart`.
const UPLOAD_ID: &str = "x-upload-id";
/// The header naming the part number of an `uploadPart`.
const PART_NUMBER: &str = "x-part-number";

/// The hold's open upload sessions.
#[derive(Default)]
pub struct Uploads {
    sessions: Mutex<HashMap<UploadId, Arc<Session>>>,
}

struct Session {
    owner: Did,
    digest: Digest,
    /// Parts take it shared (several may stream at once); completion and abort exclusively.
    parts: tokio::sync::RwLock<Parts>,
    touched: Mutex<Instant>,
}

#[derive(Default)]
struct Parts {
    /// By part number (from 1): `ETag` and size.
    stored: BTreeMap<u32, (String, u64)>,
    /// Completed or aborted: parts still waiting are refused.
    closed: bool,
}

impl Session {
    fn touch(&self) {
        *self.touched.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    fn idle(&self) -> bool {
        let touched = *self.touched.lock().unwrap_or_else(PoisonError::into_inner);
        // A part being written holds the lock: never idle then.
        touched.elapsed() >= SESSION_IDLE && self.parts.try_write().is_ok()
    }
}

impl Uploads {
    /// Whether `id` is a live session of the hold (the registry's sweeper leaves its parts).
    #[must_use]
    pub fn owns(&self, id: UploadId) -> bool {
        self.lock().get(&id).is_some_and(|s| !s.idle())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UploadId, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens a session for `owner`, after dropping idle ones.
    fn open(&self, owner: &Did, digest: Digest) -> Result<UploadId, XrpcError> {
        let mut sessions = self.lock();
        sessions.retain(|_, s| !s.idle());
        let mine = sessions.values().filter(|s| s.owner == *owner).count();
        if sessions.len() >= MAX_SESSIONS || mine >= MAX_SESSIONS_PER_CALLER {
            return Err(XrpcError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "RateLimitExceeded",
                "too many uploads in progress; complete or abort some",
            ));
        }
        let id = UploadId::random();
        sessions.insert(
            id,
            Arc::new(Session {
                owner: owner.clone(),
                digest,
                parts: tokio::sync::RwLock::default(),
                touched: Mutex::new(Instant::now()),
            }),
        );
        Ok(id)
    }

    /// The session `id` names, if `caller` owns it.
    fn get(&self, id: &str, caller: &Did) -> Result<(UploadId, Arc<Session>), XrpcError> {
        let unknown = || {
            XrpcError::new(
                StatusCode::BAD_REQUEST,
                "InvalidUploadId",
                "no such upload session",
            )
        };
        let id: UploadId = id.parse().map_err(|_| unknown())?;
        let session = self.lock().get(&id).cloned().ok_or_else(unknown)?;
        if session.owner != *caller || session.idle() {
            return Err(unknown());
        }
        session.touch();
        Ok((id, session))
    }

    fn remove(&self, id: UploadId) {
        self.lock().remove(&id);
    }
}

fn invalid_digest(message: impl Into<String>) -> XrpcError {
    XrpcError::new(StatusCode::BAD_REQUEST, "InvalidDigest", message)
}

fn invalid_part(message: impl Into<String>) -> XrpcError {
    XrpcError::new(StatusCode::BAD_REQUEST, "InvalidPartNumber", message)
}

fn missing_parts(message: impl Into<String>) -> XrpcError {
    XrpcError::new(StatusCode::BAD_REQUEST, "MissingParts", message)
}

/// A blob store failure while `error` (the lexicon's name for it) was being done.
fn store_failed(error: &'static str, e: BlobError) -> XrpcError {
    match e {
        BlobError::StorageFull => crate::pds::xrpc::storage_failed(&e),
        BlobError::Body(m) => XrpcError::new(StatusCode::BAD_REQUEST, error, m),
        e => {
            tracing::error!(error = %e, "hold upload storage failed");
            XrpcError::new(StatusCode::INTERNAL_SERVER_ERROR, error, "storage failed")
        }
    }
}

fn string<'a>(input: &'a serde_json::Value, name: &str, max: usize) -> Result<&'a str, XrpcError> {
    input[name]
        .as_str()
        .filter(|s| s.len() <= max)
        .ok_or_else(|| {
            XrpcError::invalid(format!("{name} must be a string of at most {max} bytes"))
        })
}

fn part_number(value: &serde_json::Value) -> Result<u32, XrpcError> {
    value
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| (1..=MAX_PARTS).contains(n))
        .ok_or_else(|| invalid_part(format!("partNumber must be 1 to {MAX_PARTS}")))
}

/// The raw-codec CID of a SHA-256 digest (the hold's uploads are), `None` for others.
pub(super) fn raw_cid(digest: &Digest) -> Option<Cid> {
    let raw = <[u8; 32]>::try_from(hex::decode(digest.hex()).ok()?).ok()?;
    Some(Cid::from_digest(crate::atproto::cid::RAW, raw))
}

fn digest(input: &serde_json::Value) -> Result<Digest, XrpcError> {
    string(input, "digest", 128)?
        .parse()
        .map_err(|e| invalid_digest(format!("digest: {e}")))
}

impl Hold {
    /// Whether `id` is an upload session of the hold's XRPC (the registry's sweeper keeps its
    /// parts).
    #[must_use]
    pub fn owns_upload(&self, id: UploadId) -> bool {
        self.uploads.owns(id)
    }

    /// `initiateUpload {digest}` → `{uploadId}`.
    pub(super) async fn initiate_upload(&self, call: Call) -> Result<Response<Body>, XrpcError> {
        let caller = self
            .authorize(&call, HoldMethod::InitiateUpload, Permission::BlobWrite)
            .await?;
        let digest = digest(&call.json().await?)?;
        let id = self.uploads.open(&caller, digest.clone())?;
        tracing::info!(upload = %id, %digest, caller = %caller, "hold upload started");
        ok_json(&json!({ "uploadId": id.to_string() }))
    }

    /// `getPartUploadUrl {uploadId, partNumber}` → where to send the part: always the hold's
    /// own `uploadPart` (the store's parts are not S3 multipart parts a presigned URL could
    /// name), with the headers that say which part it is.
    pub(super) async fn part_upload_url(&self, call: Call) -> Result<Response<Body>, XrpcError> {
        let caller = self
            .authorize(&call, HoldMethod::GetPartUploadUrl, Permission::BlobWrite)
            .await?;
        let input = call.json().await?;
        let (id, _) = self
            .uploads
            .get(string(&input, "uploadId", 256)?, &caller)?;
        let part = part_number(&input["partNumber"])?;
        ok_json(&json!({
            "url": format!("{}/xrpc/{}", self.pds.endpoint(), HoldMethod::UploadPart.nsid()),
            "method": "PUT",
            "headers": { "X-Upload-Id": id.to_string(), "X-Part-Number": part.to_string() },
        }))
    }

    /// `uploadPart` (`PUT` or `POST`, raw body, `X-Upload-Id`, `X-Part-Number`) → `{etag}`:
    /// the part's SHA-256 in hex. Sending a part number again replaces that part.
    pub(super) async fn upload_part(&self, call: Call) -> Result<Response<Body>, XrpcError> {
        let caller = self
            .authorize(&call, HoldMethod::UploadPart, Permission::BlobWrite)
            .await?;
        let header = |name| {
            call.req
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        let (id, session) = self.uploads.get(header(UPLOAD_ID), &caller)?;
        let part = header(PART_NUMBER)
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_PARTS).contains(n))
            .ok_or_else(|| invalid_part(format!("X-Part-Number must be 1 to {MAX_PARTS}")))?;
        let declared = call.req.headers().get(http::header::CONTENT_LENGTH);
        if declared
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > MAX_PART_BYTES)
        {
            return Err(too_large());
        }
        let parts = session.parts.read().await;
        if parts.closed {
            return Err(XrpcError::new(
                StatusCode::BAD_REQUEST,
                "InvalidUploadId",
                "no such upload session",
            ));
        }
        let mut seen = 0u64;
        let body = call.req.into_body().into_data_stream().map(move |chunk| {
            let chunk = chunk.map_err(|e| e.to_string())?;
            seen += chunk.len() as u64;
            if seen > MAX_PART_BYTES {
                return Err(format!("a part may hold at most {MAX_PART_BYTES} bytes"));
            }
            Ok(chunk)
        });
        let mut hasher = Digester::new(Algorithm::Sha256);
        let size = self
            .pds
            .blobs
            .append(id, part - 1, body, &mut hasher)
            .await
            .map_err(|e| store_failed("UploadFailed", e))?;
        let etag = hasher.finish().hex().to_owned();
        drop(parts);
        session
            .parts
            .write()
            .await
            .stored
            .insert(part, (etag.clone(), size));
        session.touch();
        ok_json(&json!({ "etag": etag }))
    }

    /// `completeUpload {uploadId, digest, parts}` → `{status: "completed", digest}`.
    pub(super) async fn complete_upload(&self, call: Call) -> Result<Response<Body>, XrpcError> {
        let caller = self
            .authorize(&call, HoldMethod::CompleteUpload, Permission::BlobWrite)
            .await?;
        let input = call.json().await?;
        let (id, session) = self
            .uploads
            .get(string(&input, "uploadId", 256)?, &caller)?;
        let digest = digest(&input)?;
        if digest != session.digest {
            return Err(invalid_digest(format!(
                "the upload was started for {}",
                session.digest
            )));
        }
        let listed = listed_parts(&input["parts"])?;
        let mut parts = session.parts.write().await;
        if parts.closed {
            return Err(XrpcError::new(
                StatusCode::BAD_REQUEST,
                "InvalidUploadId",
                "no such upload session",
            ));
        }
        for (number, etag) in listed.iter().enumerate().map(|(i, e)| (i + 1, e)) {
            let stored = u32::try_from(number)
                .ok()
                .and_then(|n| parts.stored.get(&n));
            match stored {
                None => return Err(missing_parts(format!("part {number} was not uploaded"))),
                Some((e, _)) if e != etag => {
                    return Err(missing_parts(format!(
                        "part {number}'s etag does not match"
                    )));
                }
                Some(_) => {}
            }
        }
        let count = u32::try_from(listed.len()).map_err(|_| missing_parts("too many parts"))?;
        let blobs = &self.pds.blobs;
        // Pinned from the object's write until the blob table names it: a sweep of the same
        // bytes (released by the hold's collection, taken up by the blob collector) cannot
        // delete the object in between.
        let _pin = blobs.pins().pin([digest.clone()]).await;
        let rehashed = blobs.rehash(id, count, digest.algorithm()).await;
        parts.closed = true;
        self.uploads.remove(id);
        let (hasher, size) = match rehashed {
            Ok(r) => r,
            Err(BlobError::NotFound) => {
                let _ = blobs.cancel(id).await;
                return Err(missing_parts("the stored parts are gone; upload again"));
            }
            Err(e) => {
                let _ = blobs.cancel(id).await;
                return Err(store_failed("CompletionFailed", e));
            }
        };
        let actual = hasher.finish();
        if actual != digest {
            let _ = blobs.cancel(id).await;
            return Err(invalid_digest(format!(
                "the parts hash to {actual}, not {digest}; the upload is discarded"
            )));
        }
        if let Err(e) = blobs.commit(id, count, &digest).await {
            let _ = blobs.cancel(id).await;
            return Err(store_failed("CompletionFailed", e));
        }
        // Recorded as a blob of the hold's own repository, which keeps it from the blob
        // collector; the hold's collection releases it once no layer record has named it for
        // the grace (see `gc`).
        self.record_blob(&digest, size).await?;
        tracing::info!(upload = %id, %digest, bytes = size, caller = %caller, "hold upload completed");
        ok_json(&json!({ "status": "completed", "digest": digest.as_str() }))
    }

    /// Notes a blob in the hold repository's blob table if it is not there (`notifyManifest`
    /// of a blob the collection released), keeping its upload time if it is.
    pub(super) async fn record_blob_again(
        &self,
        digest: &Digest,
        size: u64,
    ) -> Result<(), StoreError> {
        match raw_cid(digest) {
            Some(cid) if !self.pds.repos.store().has_blob(&self.pds.node_did, &cid)? => {
                self.record_blob(digest, size).await
            }
            _ => Ok(()),
        }
    }

    /// Notes a completed upload in the hold repository's blob table (SHA-256 digests; the
    /// lexicon's uploads are).
    async fn record_blob(&self, digest: &Digest, size: u64) -> Result<(), StoreError> {
        let Some(cid) = raw_cid(digest) else {
            return Ok(());
        };
        self.pds
            .repos
            .store()
            .put_blob_meta(
                &self.pds.node_did,
                cid,
                BlobMeta {
                    mime_type: "application/octet-stream".to_owned(),
                    size,
                    created: crate::pds::accounts::now_secs(),
                },
            )
            .await
    }

    /// `abortUpload {uploadId}` → `{status: "aborted"}`.
    pub(super) async fn abort_upload(&self, call: Call) -> Result<Response<Body>, XrpcError> {
        let caller = self
            .authorize(&call, HoldMethod::AbortUpload, Permission::BlobWrite)
            .await?;
        let input = call.json().await?;
        let (id, session) = self
            .uploads
            .get(string(&input, "uploadId", 256)?, &caller)?;
        let mut parts = session.parts.write().await;
        parts.closed = true;
        self.uploads.remove(id);
        self.pds
            .blobs
            .cancel(id)
            .await
            .map_err(|e| store_failed("AbortFailed", e))?;
        ok_json(&json!({ "status": "aborted" }))
    }
}

fn too_large() -> XrpcError {
    XrpcError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PayloadTooLarge",
        format!("a part may hold at most {MAX_PART_BYTES} bytes"),
    )
}

/// The `ETags` of `parts`, which must list part numbers 1, 2, … in order.
fn listed_parts(parts: &serde_json::Value) -> Result<Vec<String>, XrpcError> {
    let items = parts
        .as_array()
        .ok_or_else(|| XrpcError::invalid("parts must be an array"))?;
    if items.len() > MAX_PARTS as usize {
        return Err(missing_parts(format!("at most {MAX_PARTS} parts")));
    }
    let mut etags = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let number = part_number(&item["partNumber"])?;
        if number as usize != i + 1 {
            return Err(missing_parts(format!(
                "parts must be numbered 1, 2, … in order; entry {} is part {number}",
                i + 1
            )));
        }
        etags.push(string(item, "etag", 256)?.to_owned());
    }
    Ok(etags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_must_run_from_one_in_order() {
        let ok = json!([{"partNumber": 1, "etag": "a"}, {"partNumber": 2, "etag": "b"}]);
        assert_eq!(listed_parts(&ok).unwrap(), ["a", "b"]);
        assert!(listed_parts(&json!([])).unwrap().is_empty());
        let gap = json!([{"partNumber": 1, "etag": "a"}, {"partNumber": 3, "etag": "b"}]);
        assert_eq!(listed_parts(&gap).unwrap_err().error, "MissingParts");
        let zero = json!([{"partNumber": 0, "etag": "a"}]);
        assert_eq!(listed_parts(&zero).unwrap_err().error, "InvalidPartNumber");
        assert!(listed_parts(&json!({})).is_err());
        assert!(listed_parts(&json!([{"partNumber": 1}])).is_err());
    }

    #[test]
    fn sessions_belong_to_their_owner_and_are_bounded() {
        let uploads = Uploads::default();
        let alice: Did = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa".parse().unwrap();
        let bob: Did = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb".parse().unwrap();
        let d = Digest::of(Algorithm::Sha256, b"x");
        let id = uploads.open(&alice, d.clone()).unwrap();
        assert!(uploads.owns(id));
        assert!(uploads.get(&id.to_string(), &alice).is_ok());
        assert_eq!(
            uploads.get(&id.to_string(), &bob).err().unwrap().error,
            "InvalidUploadId"
        );
        assert_eq!(
            uploads.get("nope", &alice).err().unwrap().error,
            "InvalidUploadId"
        );
        for _ in 1..MAX_SESSIONS_PER_CALLER {
            uploads.open(&alice, d.clone()).unwrap();
        }
        assert_eq!(
            uploads.open(&alice, d.clone()).unwrap_err().error,
            "RateLimitExceeded"
        );
        assert!(uploads.open(&bob, d).is_ok());
        uploads.remove(id);
        assert!(!uploads.owns(id));
    }
}
