//! Manifest pushes, pulls and deletes.

use crate::http::body::RequestBody;
use bytes::{Bytes, BytesMut};
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, ETAG};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;

use super::{DOCKER_CONTENT_DIGEST, OCI_SUBJECT, Registry, Repo, finish, located, response};
use crate::appview::Pushed;
use crate::blobstore::{Algorithm, Digest};
use crate::hold::remote::PUBLISH_WITHIN;
use crate::http::body::{self, Body};
use crate::oci::error::{ErrorCode, OciError};
use crate::oci::manifest::{MAX_MANIFEST_BYTES, Manifest, accepts};
use crate::oci::name::Reference;

fn manifest_unknown(reference: &Reference) -> OciError {
    OciError::new(ErrorCode::ManifestUnknown, "manifest unknown to registry")
        .with_detail(json!({ "reference": reference.to_string() }))
}

fn too_large() -> OciError {
    OciError::new(
        ErrorCode::SizeInvalid,
        format!("manifest is larger than {MAX_MANIFEST_BYTES} bytes"),
    )
    .with_status(StatusCode::PAYLOAD_TOO_LARGE)
}

/// Refuses, before anything is stored, a manifest its `io.atcr.manifest` record could not hold:
/// the lexicon caps digests at 128 characters, so only sha256 digests (71) fit, for the
/// manifest itself (pushed by digest) and for every descriptor in it; a sha512 digest is 135.
fn recordable(reference: &Reference, manifest: &Manifest) -> Result<(), OciError> {
    let mut digests: Vec<&Digest> = manifest
        .blobs
        .iter()
        .chain(&manifest.manifests)
        .chain(&manifest.subject)
        .map(|d| &d.digest)
        .collect();
    if let Reference::Digest(d) = reference {
        digests.insert(0, d);
    }
    match digests.into_iter().find(|d| d.algorithm() != Algorithm::Sha256) {
        None => Ok(()),
        Some(d) => Err(OciError::new(
            ErrorCode::Unsupported,
            format!(
                "{} is a {} digest: manifests, and the blobs and manifests they reference, must be sha256 here, because the io.atcr.manifest record holds digests of at most 128 characters",
                d.as_str(),
                d.algorithm().name()
            ),
        )
        .with_status(StatusCode::BAD_REQUEST)
        .with_detail(json!({ "digest": d.as_str() }))),
    }
}

/// Reads a request body of at most `limit` bytes.
async fn read_limited(req: Request<RequestBody>, limit: usize) -> Result<Bytes, OciError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = req.into_body();
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            OciError::new(ErrorCode::ManifestInvalid, "request body could not be read")
                .with_detail(json!({ "cause": e.to_string() }))
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(too_large());
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

impl Registry {
    fn resolve(&self, name: &Repo, reference: &Reference) -> Result<Digest, OciError> {
        let digest = match reference {
            Reference::Digest(d) => Some(d.clone()),
            Reference::Tag(t) => self.index.tag(name.key(), t.as_str())?,
        };
        match digest {
            Some(d) => Ok(d),
            None if !self.index.repo_exists(name.key())? => Err(OciError::new(
                ErrorCode::NameUnknown,
                "repository name not known to registry",
            )
            .with_detail(json!({ "name": name.to_string() }))),
            None => Err(manifest_unknown(reference)),
        }
    }

    pub(super) async fn get_manifest(
        &self,
        name: &Repo,
        reference: &Reference,
        head: bool,
        req: &Request<RequestBody>,
    ) -> Result<Response<Body>, OciError> {
        let digest = self.resolve(name, reference)?;
        let record = self
            .index
            .manifest(name.key(), &digest)?
            .ok_or_else(|| manifest_unknown(reference))?;
        let accept: Vec<&str> = req
            .headers()
            .get_all(ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if !accepts(&accept, &record.media_type) {
            return Err(manifest_unknown(reference).with_detail(json!({
                "reason": "the manifest is not in a media type the request accepts",
                "mediaType": record.media_type,
            })));
        }
        let builder = response(StatusCode::OK)
            .header(CONTENT_TYPE, &record.media_type)
            .header(CONTENT_LENGTH, record.size)
            .header(DOCKER_CONTENT_DIGEST, digest.as_str())
            .header(ETAG, format!("\"{digest}\""));
        if head {
            return finish(builder, body::empty());
        }
        let bytes = self.blobs.read_range(&digest, 0..record.size).await?;
        finish(builder, body::full(bytes))
    }

    pub(super) async fn put_manifest(
        &self,
        name: &Repo,
        reference: &Reference,
        req: Request<RequestBody>,
    ) -> Result<Response<Body>, OciError> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = read_limited(req, MAX_MANIFEST_BYTES).await?;
        let manifest = Manifest::parse(&bytes, content_type.as_deref())?;
        recordable(reference, &manifest)?;
        let digest = match reference {
            Reference::Digest(expected) => {
                let actual = Digest::of(expected.algorithm(), &bytes);
                if &actual != expected {
                    return Err(OciError::new(
                        ErrorCode::DigestInvalid,
                        "manifest digest does not match its content",
                    )
                    .with_detail(
                        json!({ "expected": expected.as_str(), "actual": actual.as_str() }),
                    ));
                }
                actual
            }
            Reference::Tag(_) => Digest::of(Algorithm::Sha256, &bytes),
        };
        // Pinned from the reference check until the index holds the manifest (which then keeps
        // them): the collector cannot delete a blob between the check and the 201.
        let _pin = self
            .blobs
            .pins()
            .pin(
                manifest
                    .blobs
                    .iter()
                    .chain(&manifest.manifests)
                    .chain(&manifest.subject)
                    .map(|d| d.digest.clone())
                    .chain([digest.clone()]),
            )
            .await;
        self.check_references(name, &manifest)?;
        self.check_manifest_quota(name, &manifest)?;
        self.blobs.put(&digest, bytes.clone()).await?;
        let tag = match reference {
            Reference::Tag(t) => Some(t),
            Reference::Digest(_) => None,
        };
        let blobs: Vec<_> = manifest
            .blobs
            .iter()
            .filter(|b| !b.is_non_distributable())
            .cloned()
            .collect();
        let hold = self.hold_of(&blobs)?;
        let pushed = Pushed {
            digest: &digest,
            media_type: &manifest.media_type,
            bytes: &bytes,
            blobs: &blobs,
            hold: &hold,
        };
        // The hold vouches for the blobs (layer records) before the manifest is committed: a
        // hold that cannot vouch fails the push, never leaving a manifest whose blobs its hold
        // would collect (see `crate::hold::gc`).
        let notified = std::time::Instant::now();
        self.notify_holds(name, &digest, tag, &manifest, &blobs)
            .await?;
        if notified.elapsed() > PUBLISH_WITHIN {
            // The holds' layer records may be judged before the manifest exists: not committed.
            return Err(OciError::new(
                ErrorCode::Unavailable,
                "the manifest's holds answered too slowly; push the manifest again",
            ));
        }
        self.appview.publish(&name.loc, pushed, tag).await?;
        tracing::info!(repo = %name, digest = %digest, reference = %reference, "manifest pushed");

        let mut builder = located(
            StatusCode::CREATED,
            &format!("/v2/{name}/manifests/{digest}"),
        )
        .header(DOCKER_CONTENT_DIGEST, digest.as_str());
        if let Some(subject) = &manifest.subject {
            builder = builder.header(OCI_SUBJECT, subject.digest.as_str());
        }
        finish(builder, body::empty())
    }

    /// Checks that every blob and child manifest exists in the repository.
    fn check_references(&self, name: &Repo, manifest: &Manifest) -> Result<(), OciError> {
        let unknown = |digest: &Digest| {
            OciError::new(
                ErrorCode::ManifestBlobUnknown,
                "manifest references a blob unknown to registry",
            )
            .with_detail(json!({ "digest": digest.as_str() }))
        };
        for blob in &manifest.blobs {
            if blob.is_non_distributable() {
                continue;
            }
            let size = self
                .index
                .repo_blob(name.key(), &blob.digest)?
                .ok_or_else(|| unknown(&blob.digest))?;
            if size != blob.size {
                return Err(OciError::new(
                    ErrorCode::ManifestInvalid,
                    "descriptor size does not match the blob",
                )
                .with_detail(
                    json!({ "digest": blob.digest.as_str(), "size": blob.size, "stored": size }),
                ));
            }
        }
        for child in &manifest.manifests {
            self.index
                .manifest(name.key(), &child.digest)?
                .ok_or_else(|| unknown(&child.digest))?;
        }
        Ok(())
    }

    pub(super) async fn delete_manifest(
        &self,
        name: &Repo,
        reference: &Reference,
    ) -> Result<Response<Body>, OciError> {
        let deleted = match reference {
            Reference::Digest(d) => self.appview.unpublish_manifest(&name.loc, d).await?,
            Reference::Tag(t) => self.appview.unpublish_tag(&name.loc, t).await?,
        };
        if !deleted {
            return Err(manifest_unknown(reference));
        }
        tracing::info!(repo = %name, reference = %reference, "manifest deleted");
        finish(
            response(StatusCode::ACCEPTED).header(CONTENT_LENGTH, "0"),
            body::empty(),
        )
    }
}
