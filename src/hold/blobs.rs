//! `com.atproto.sync.getBlob?did=<hold did>&cid=…`: reads of the hold's blobs.
//!
//! `cid` is a CID (its SHA-256 names the blob) or an OCI digest (`sha256:<hex>`), the form
//! ATCR's `AppView` sends. A public hold answers anyone; a private one wants a caller with
//! `blob:read`: a service token (`lxm` = `com.atproto.sync.getBlob`, `aud` = the hold) or a
//! session of a local account. The answer is the bytes, or `307` to a presigned URL when the
//! store redirects (`storage.redirect`).

use http::header::{CONTENT_LENGTH, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION};
use http::{HeaderValue, Method, Request, Response, StatusCode};

use super::service_auth::{ServiceAuthError, ServiceToken};
use super::{Hold, Permission};
use crate::atproto::{Cid, Did};
use crate::blobstore::{BlobError, Digest};
use crate::http::body::{self, Body, RequestBody};
use crate::http::sendfile::{FileSends, file_body};
use crate::pds::accounts::now_secs;
use crate::pds::xrpc::{Call, XrpcError, XrpcKind, authenticate};

/// The method's NSID, which is also its metrics label.
pub const GET_BLOB: &str = "com.atproto.sync.getBlob";

/// Whether a call of `nsid` with `query` is a read of this hold's blobs (its `did` is the
/// hold's), which [`get_blob`] answers rather than the PDS.
#[must_use]
pub fn serves(hold: &Hold, nsid: &str, query: Option<&str>) -> bool {
    nsid == GET_BLOB
        && form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .any(|(k, v)| k == "did" && v == hold.pds.node_did.as_str())
}

/// Answers a read [`serves`] accepted.
pub async fn get_blob(hold: &Hold, req: Request<RequestBody>) -> Response<Body> {
    let sends = req.extensions().get::<FileSends>().cloned();
    read(hold, Call::new(req), sends)
        .await
        .unwrap_or_else(|e| e.response())
}

/// `sends`: on a plain HTTP/1 connection, how a stored file goes out with `sendfile`.
async fn read(
    hold: &Hold,
    call: Call,
    sends: Option<FileSends>,
) -> Result<Response<Body>, XrpcError> {
    call.check_kind(XrpcKind::Query)?;
    let digest = blob_digest(call.required("cid")?)?;
    if !hold.captain()?.public {
        reader(hold, &call, GET_BLOB).await?;
    }
    let not_found = || XrpcError::new(StatusCode::NOT_FOUND, "BlobNotFound", "blob not found");
    let blobs = &hold.pds.blobs;
    let failed = |e: BlobError| match e {
        BlobError::NotFound => not_found(),
        e => {
            tracing::error!(error = %e, "hold blob read failed");
            XrpcError::internal()
        }
    };
    let size = blobs
        .stat(&digest)
        .await
        .map_err(failed)?
        .ok_or_else(not_found)?;
    let head = call.method == Method::HEAD;
    if !head && let Some(url) = blobs.redirect_url(&digest).await.map_err(failed)? {
        let mut r = Response::new(body::empty());
        *r.status_mut() = StatusCode::TEMPORARY_REDIRECT;
        let location = HeaderValue::from_str(&url).map_err(|_| XrpcError::internal())?;
        r.headers_mut().insert(LOCATION, location);
        return Ok(r);
    }
    let body = if head || size == 0 {
        body::empty()
    } else if let Some(sends) = &sends
        && let Some((file, len)) = blobs.open_file(&digest).await.map_err(failed)?
        && len >= size
    {
        file_body(sends, file, 0..size)
    } else {
        body::stream(blobs.open(&digest, 0..size).await.map_err(failed)?)
    };
    let mut r = Response::new(body);
    let headers = r.headers_mut();
    headers.insert(CONTENT_LENGTH, HeaderValue::from(size));
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    Ok(r)
}

/// The blob a `cid` parameter names: a CID or an OCI digest.
fn blob_digest(cid: &str) -> Result<Digest, XrpcError> {
    if cid.contains(':') {
        return cid
            .parse()
            .map_err(|e| XrpcError::invalid(format!("cid is neither a CID nor a digest: {e}")));
    }
    let cid: Cid = cid
        .parse()
        .map_err(|_| XrpcError::invalid("cid is neither a CID nor a digest"))?;
    format!("sha256:{}", hex::encode(cid.digest()))
        .parse()
        .map_err(|_| XrpcError::invalid("cid is neither a CID nor a digest"))
}

/// Who reads, with `blob:read`: the issuer of a service token for `lxm`, or a local account's
/// session. Refused with `401 AuthRequired` without a token, `403 Forbidden` for others.
pub(super) async fn reader(hold: &Hold, call: &Call, lxm: &'static str) -> Result<Did, XrpcError> {
    let token = call.bearer().ok_or_else(|| {
        XrpcError::auth_required("this hold's blobs are readable by its crew only")
    })?;
    let caller = match ServiceToken::parse(token, &hold.pds.node_did, lxm, now_secs()) {
        Ok(parsed) => {
            // Only a caller the rules admit is worth resolving (see `Hold::authorize`).
            hold.check_permission(&parsed.issuer, Permission::BlobRead)?;
            hold.verify_issuer(&parsed).await?;
            parsed.issuer
        }
        Err(ServiceAuthError::BadJwtType(_)) => authenticate(&hold.pds, call)?.did,
        Err(e) => return Err(e.into()),
    };
    hold.check_permission(&caller, Permission::BlobRead)?;
    Ok(caller)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_named_by_cid_or_digest() {
        let bytes = b"layer";
        let digest = Digest::of(crate::blobstore::Algorithm::Sha256, bytes);
        let cid = Cid::for_raw(bytes);
        assert_eq!(blob_digest(&cid.to_string()).unwrap(), digest);
        assert_eq!(blob_digest(digest.as_str()).unwrap(), digest);
        assert!(blob_digest("sha256:nothex").is_err());
        assert!(blob_digest("bafy-not-a-cid").is_err());
    }
}
