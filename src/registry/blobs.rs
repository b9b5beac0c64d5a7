//! Blob reads and deletes.

use crate::http::body::RequestBody;
use http::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, RANGE};
use http::{HeaderValue, Request, Response, StatusCode};

use super::{DOCKER_CONTENT_DIGEST, Registry, Repo, finish, located, response};
use crate::atproto::Did;
use crate::blobstore::{ByteRange, Digest, RangeError};
use crate::http::body::{self, Body};
use crate::http::sendfile::{FileSends, file_body};
use crate::oci::error::{ErrorCode, OciError};

/// Ranges up to this size are read in one call and sent whole; larger ones are streamed.
const SMALL_READ: u64 = 256 * 1024;

pub(super) fn blob_unknown(digest: &Digest) -> OciError {
    OciError::new(ErrorCode::BlobUnknown, "blob unknown to registry")
        .with_detail(serde_json::json!({ "digest": digest.as_str() }))
}

impl Registry {
    pub(super) async fn get_blob(
        &self,
        name: &Repo,
        digest: &Digest,
        head: bool,
        reader: Option<&Did>,
        req: &Request<RequestBody>,
    ) -> Result<Response<Body>, OciError> {
        let size = self
            .index
            .repo_blob(name.key(), digest)?
            .ok_or_else(|| blob_unknown(digest))?;
        // A blob a hold on another machine keeps is read there (a HEAD is answered here).
        if !head && let Some(hold) = self.index.held_at(digest)? {
            return self.get_held_blob(&hold, digest, reader, req).await;
        }
        // With `storage.redirect` the object store sends the bytes (and answers ranges itself):
        // only after the token and the repository's link to the blob were checked above.
        if !head && let Some(url) = self.blobs.redirect_url(digest).await? {
            tracing::debug!(digest = %digest, "blob read redirected to the object store");
            return finish(
                located(StatusCode::TEMPORARY_REDIRECT, &url)
                    .header(DOCKER_CONTENT_DIGEST, digest.as_str()),
                body::empty(),
            );
        }
        let requested = match req.headers().get(RANGE).and_then(|v| v.to_str().ok()) {
            Some(h) if !head => ByteRange::parse(h, size),
            _ => Err(RangeError::Ignored),
        };
        let builder = response(StatusCode::OK)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(DOCKER_CONTENT_DIGEST, digest.as_str())
            .header(ETAG, format!("\"{digest}\""))
            .header(ACCEPT_RANGES, "bytes");
        let (builder, range) = match requested {
            Ok(range) => (
                builder
                    .status(StatusCode::PARTIAL_CONTENT)
                    .header(CONTENT_RANGE, range.content_range(size)),
                range,
            ),
            Err(RangeError::Ignored) => (
                builder,
                ByteRange {
                    start: 0,
                    end: size,
                },
            ),
            Err(RangeError::Unsatisfiable) => {
                let unsatisfiable = HeaderValue::from_str(&format!("bytes */{size}"))
                    .map_err(|e| OciError::internal(&e))?;
                return Err(OciError::new(
                    ErrorCode::RangeInvalid,
                    "requested range not satisfiable",
                )
                .with_header(CONTENT_RANGE, unsatisfiable));
            }
        };
        let builder = builder.header(CONTENT_LENGTH, range.len());
        if head || range.is_empty() {
            return finish(builder, body::empty());
        }
        if range.len() <= SMALL_READ {
            let bytes = self.blobs.read_range(digest, range.as_range()).await?;
            return finish(builder, body::full(bytes));
        }
        // On a plain HTTP/1 connection, a stored file goes out with `sendfile`.
        if let Some(sends) = req.extensions().get::<FileSends>()
            && let Some((file, len)) = self.blobs.open_file(digest).await?
            && len >= range.end
        {
            return finish(builder, file_body(sends, file, range.as_range()));
        }
        let stream = self.blobs.open(digest, range.as_range()).await?;
        finish(builder, body::stream(stream))
    }

    pub(super) async fn delete_blob(
        &self,
        name: &Repo,
        digest: &Digest,
    ) -> Result<Response<Body>, OciError> {
        // The hold's layer records go first: should the unlink fail, a retry finds the link.
        if self.index.repo_blob(name.key(), digest)?.is_none() {
            return Err(blob_unknown(digest));
        }
        self.appview.forget_blob(&name.loc, digest).await?;
        let (repo, d) = (name.key().to_owned(), digest.clone());
        if !self
            .index
            .write(move |ix| ix.unlink_blob(&repo, &d))
            .await?
        {
            return Err(blob_unknown(digest));
        }
        finish(
            response(StatusCode::ACCEPTED).header(CONTENT_LENGTH, "0"),
            body::empty(),
        )
    }
}
