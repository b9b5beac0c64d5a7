//! Blob uploads: monolithic, chunked, resumable, cross-repository mounts.

use std::sync::atomic::Ordering;

use crate::http::body::RequestBody;
use http::header::{CONTENT_LENGTH, RANGE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;

use super::Repo;
use super::holds::Destination;
use super::{
    DOCKER_CONTENT_DIGEST, DOCKER_UPLOAD_UUID, Registry, UploadState, finish, located, now,
};
use crate::appview::index::{RepoKey, UploadSession};
use crate::blobstore::{Algorithm, BlobError, Digest, Digester, UploadId};
use crate::http::body::{self, Body};
use crate::oci::error::{ErrorCode, OciError};

fn upload_unknown() -> OciError {
    OciError::new(
        ErrorCode::BlobUploadUnknown,
        "blob upload unknown to registry",
    )
}

fn upload_location(name: &Repo, id: UploadId) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

/// The `Range` header of an upload: the bytes received so far, inclusive (`0-0` when none).
fn range_value(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

/// `Content-Range: <start>-<end>` of a chunk (a `bytes ` or `bytes=` prefix is tolerated).
/// Returns the start and the length the inclusive range declares; a range whose length does
/// not fit in 64 bits (`0-18446744073709551615`) is refused, never wrapped.
fn content_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>, OciError> {
    let Some(value) = headers.get(http::header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || {
        OciError::new(
            ErrorCode::RangeInvalid,
            "Content-Range must be <start>-<end>",
        )
    };
    let text = value.to_str().map_err(|_| bad())?.trim();
    let text = text
        .strip_prefix("bytes")
        .map_or(text, |t| t.trim_start_matches([' ', '=']));
    let text = text.split('/').next().unwrap_or(text);
    let (start, end) = text.split_once('-').ok_or_else(bad)?;
    let start: u64 = start.trim().parse().map_err(|_| bad())?;
    let end: u64 = end.trim().parse().map_err(|_| bad())?;
    if end < start {
        return Err(bad());
    }
    let len = (end - start).checked_add(1).ok_or_else(|| {
        OciError::new(
            ErrorCode::RangeInvalid,
            "Content-Range is longer than any chunk",
        )
    })?;
    Ok(Some((start, len)))
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

impl Registry {
    fn session(&self, name: &Repo, id: UploadId) -> Result<UploadSession, OciError> {
        match self.index.upload(id)? {
            Some(s) if &s.repo == name.key() => Ok(s),
            _ => Err(upload_unknown()),
        }
    }

    fn accepted(
        name: &Repo,
        id: UploadId,
        size: u64,
        status: StatusCode,
    ) -> Result<Response<Body>, OciError> {
        finish(
            located(status, &upload_location(name, id))
                .header(RANGE, range_value(size))
                .header(DOCKER_UPLOAD_UUID, id.to_string()),
            body::empty(),
        )
    }

    fn created(name: &Repo, digest: &Digest) -> Result<Response<Body>, OciError> {
        finish(
            located(StatusCode::CREATED, &format!("/v2/{name}/blobs/{digest}"))
                .header(DOCKER_CONTENT_DIGEST, digest.as_str()),
            body::empty(),
        )
    }

    pub(super) async fn start_upload(
        &self,
        name: &Repo,
        digest: Option<Digest>,
        mount: Option<(Digest, RepoKey)>,
        req: Request<RequestBody>,
    ) -> Result<Response<Body>, OciError> {
        if let Some((digest, from)) = mount {
            // Pinned from the check to the link: the collector cannot take the blob between.
            let _pin = self.blobs.pins().pin([digest.clone()]).await;
            if let Some(size) = self.index.repo_blob(&from, &digest)? {
                let (repo, d) = (name.key().clone(), digest.clone());
                self.index
                    .write(move |ix| ix.link_blob(&repo, &d, size, None))
                    .await?;
                return Self::created(name, &digest);
            }
        } else if let Some(digest) = digest {
            return self.monolithic_upload(name, &digest, req).await;
        }
        let id = UploadId::random();
        let t = now();
        let session = UploadSession {
            repo: name.key().clone(),
            parts: 0,
            size: 0,
            started: t,
            updated: t,
        };
        self.index
            .write(move |ix| ix.put_upload(id, &session))
            .await?;
        Self::accepted(name, id, 0, StatusCode::ACCEPTED)
    }

    /// `POST ?digest=`: the whole blob in one request.
    async fn monolithic_upload(
        &self,
        name: &Repo,
        digest: &Digest,
        req: Request<RequestBody>,
    ) -> Result<Response<Body>, OciError> {
        let id = UploadId::random();
        let state = self.upload_state(id);
        let _guard = state.lock().await;
        let result = self
            .store_verified(name, id, 0, digest, Digester::new(digest.algorithm()), req)
            .await;
        self.forget_upload(id);
        result?;
        Self::created(name, digest)
    }

    /// Stores a request body as part `parts` of upload `id`, checks that all parts hash to
    /// `digest` and moves the blob into place.
    async fn store_verified(
        &self,
        name: &Repo,
        id: UploadId,
        parts: u32,
        digest: &Digest,
        mut hasher: Digester,
        req: Request<RequestBody>,
    ) -> Result<(), OciError> {
        let size_before = if parts == 0 {
            0
        } else {
            self.session(name, id)?.size
        };
        let declared = declared_length(req.headers());
        self.check_blob_quota(
            name,
            Some(digest),
            size_before.saturating_add(declared.unwrap_or(0)),
        )?;
        let written = if declared == Some(0) {
            0
        } else {
            let stream = req.into_body().into_data_stream();
            match self.blobs.append(id, parts, stream, &mut hasher).await {
                Ok(n) => n,
                Err(e) => {
                    // The failed part left nothing behind. A monolithic upload has no session to
                    // resume, so its directory goes; a session keeps its earlier parts.
                    if parts == 0 {
                        let _ = self.blobs.cancel(id).await;
                    }
                    return Err(e.into());
                }
            }
        };
        self.bytes_received.fetch_add(written, Ordering::Relaxed);
        let parts = if written > 0 { parts + 1 } else { parts };
        let actual = hasher.finish();
        if &actual != digest {
            let _ = self.blobs.cancel(id).await;
            let _ = self.index.write(move |ix| ix.delete_upload(id)).await;
            return Err(OciError::new(
                ErrorCode::DigestInvalid,
                "provided digest did not match uploaded content",
            )
            .with_detail(json!({ "expected": digest.as_str(), "actual": actual.as_str() })));
        }
        // Pinned from the existence check in `commit` to the link: the collector cannot delete
        // an object this upload then links without bytes of its own.
        let _pin = self.blobs.pins().pin([digest.clone()]).await;
        let size = size_before + written;
        if let Destination::Remote(hold) = self.destination(&name.loc.owner)? {
            return self
                .send_to_hold(&hold, name, id, parts, digest, size)
                .await;
        }
        self.blobs.commit(id, parts, digest).await?;
        let (repo, d) = (name.key().to_owned(), digest.clone());
        self.index
            .write(move |ix| ix.link_blob(&repo, &d, size, Some(id)))
            .await?;
        Ok(())
    }

    pub(super) fn upload_status(
        &self,
        name: &Repo,
        id: UploadId,
    ) -> Result<Response<Body>, OciError> {
        let session = self.session(name, id)?;
        Self::accepted(name, id, session.size, StatusCode::NO_CONTENT)
    }

    /// The running hash of an upload's stored parts, recomputed if a restart lost it.
    async fn running_hash(
        &self,
        id: UploadId,
        session: &UploadSession,
        state: &mut UploadState,
    ) -> Result<Digester, OciError> {
        if let Some(h) = &state.hasher {
            return Ok(h.clone());
        }
        match self
            .blobs
            .rehash(id, session.parts, Algorithm::Sha256)
            .await
        {
            Ok((h, size)) if size == session.size => {
                state.hasher = Some(h.clone());
                Ok(h)
            }
            Ok((_, _)) | Err(BlobError::NotFound) => {
                tracing::warn!(upload = %id, "upload parts are missing; dropping the session");
                let _ = self.blobs.cancel(id).await;
                let _ = self.index.write(move |ix| ix.delete_upload(id)).await;
                Err(upload_unknown())
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn patch_upload(
        &self,
        name: &Repo,
        id: UploadId,
        req: Request<RequestBody>,
    ) -> Result<Response<Body>, OciError> {
        self.session(name, id)?;
        let state = self.upload_state(id);
        let mut state = state.lock().await;
        // Read again under the lock: a concurrent request may have moved it on.
        let mut session = self.session(name, id)?;
        let out_of_order = |session: &UploadSession| -> Result<OciError, OciError> {
            Ok(OciError::new(
                ErrorCode::RangeInvalid,
                "chunk does not start where the upload ends",
            )
            .with_detail(json!({ "offset": session.size }))
            .with_header(
                RANGE,
                HeaderValue::from_str(&range_value(session.size))
                    .map_err(|e| OciError::internal(&e))?,
            )
            .with_header(
                DOCKER_UPLOAD_UUID,
                HeaderValue::from_str(&id.to_string()).map_err(|e| OciError::internal(&e))?,
            )
            .with_header(
                http::header::LOCATION,
                HeaderValue::from_str(&upload_location(name, id))
                    .map_err(|e| OciError::internal(&e))?,
            ))
        };
        let declared = content_range(req.headers())?;
        if let Some((start, len)) = declared {
            if start != session.size {
                return Err(out_of_order(&session)?);
            }
            if declared_length(req.headers()).is_some_and(|declared| declared != len) {
                return Err(OciError::new(
                    ErrorCode::RangeInvalid,
                    "Content-Range and Content-Length disagree",
                ));
            }
        }
        let incoming = declared
            .map(|(_, len)| len)
            .or(declared_length(req.headers()));
        if let Some(len) = incoming {
            self.check_blob_quota(name, None, session.size.saturating_add(len))?;
        }
        let mut hasher = self.running_hash(id, &session, &mut state).await?;
        let stream = req.into_body().into_data_stream();
        let written = self
            .blobs
            .append(id, session.parts, stream, &mut hasher)
            .await?;
        if let Some((_, len)) = declared
            && written != len
        {
            return Err(OciError::new(
                ErrorCode::BlobUploadInvalid,
                "chunk length does not match Content-Range",
            )
            .with_detail(json!({ "declared": len, "received": written })));
        }
        self.bytes_received.fetch_add(written, Ordering::Relaxed);
        if written > 0 {
            session.parts += 1;
            session.size += written;
            session.updated = now();
            let s = session.clone();
            self.index.write(move |ix| ix.put_upload(id, &s)).await?;
            state.hasher = Some(hasher);
        }
        Self::accepted(name, id, session.size, StatusCode::ACCEPTED)
    }

    pub(super) async fn finish_upload(
        &self,
        name: &Repo,
        id: UploadId,
        digest: &Digest,
        req: Request<RequestBody>,
    ) -> Result<Response<Body>, OciError> {
        self.session(name, id)?;
        let state = self.upload_state(id);
        let result = async {
            let mut state = state.lock().await;
            let session = self.session(name, id)?;
            let hasher = match digest.algorithm() {
                Algorithm::Sha256 => self.running_hash(id, &session, &mut state).await?,
                Algorithm::Sha512 => {
                    self.blobs
                        .rehash(id, session.parts, Algorithm::Sha512)
                        .await?
                        .0
                }
            };
            self.store_verified(name, id, session.parts, digest, hasher, req)
                .await
        }
        .await;
        self.forget_upload(id);
        result?;
        Self::created(name, digest)
    }

    pub(super) async fn cancel_upload(
        &self,
        name: &Repo,
        id: UploadId,
    ) -> Result<Response<Body>, OciError> {
        self.session(name, id)?;
        let state = self.upload_state(id);
        let guard = state.lock().await;
        self.blobs.cancel(id).await?;
        self.index.write(move |ix| ix.delete_upload(id)).await?;
        drop(guard);
        self.forget_upload(id);
        finish(
            http::Response::builder().status(StatusCode::NO_CONTENT),
            body::empty(),
        )
    }

    /// Removes upload sessions idle for `max_idle` seconds or more, and stored parts that no
    /// session owns, leaving alone uploads a request is writing to. Returns how many went (dry:
    /// would go).
    pub async fn expire_uploads(&self, max_idle: u64, dry_run: bool) -> Result<usize, OciError> {
        let active = |id| self.upload_is_active(id);
        let removed = crate::appview::gc::expire_uploads(
            &self.index,
            &self.blobs,
            max_idle,
            dry_run,
            &active,
        )
        .await?;
        if !dry_run {
            for id in &removed {
                self.forget_upload(*id);
            }
        }
        Ok(removed.len())
    }

    /// One garbage collection (see [`crate::appview::gc`]), stale uploads included.
    pub async fn collect_garbage(
        &self,
        opts: crate::appview::gc::GcOptions,
    ) -> Result<crate::appview::gc::GcReport, crate::appview::gc::GcError> {
        let active = |id| self.upload_is_active(id);
        self.appview.gc().run(opts, &active).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &str) -> Result<Option<(u64, u64)>, OciError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_RANGE,
            HeaderValue::from_str(value).unwrap(),
        );
        content_range(&headers)
    }

    #[test]
    fn content_range_gives_start_and_length() {
        assert_eq!(range("0-9").unwrap(), Some((0, 10)));
        assert_eq!(range("bytes 10-10/*").unwrap(), Some((10, 1)));
        assert_eq!(content_range(&HeaderMap::new()).unwrap(), None);
        assert!(range("9-0").is_err());
    }

    /// `end - start + 1` of the widest range does not fit in 64 bits: refused, not wrapped to 0
    /// (which matched an empty body).
    #[test]
    fn a_range_longer_than_u64_is_refused() {
        let e = range("0-18446744073709551615").unwrap_err();
        assert_eq!(e.status, StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(
            range("1-18446744073709551615").unwrap(),
            Some((1, u64::MAX))
        );
    }
}
