//! Distribution API errors: status, spec error code, extra headers and the spec's JSON body.

use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::json;

/// The error codes of the OCI distribution spec (and `RANGE_INVALID`, which Distribution and
/// clients use for 416 answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    RangeInvalid,
    TagInvalid,
    /// Not a spec code: the server failed (the detail is logged, never sent).
    Internal,
    /// Not a spec code: the backend is out of space (507).
    InsufficientStorage,
    /// Not a spec code (Distribution's): a service the answer needs (a hold on another
    /// machine) failed or is down (503).
    Unavailable,
}

impl ErrorCode {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::RangeInvalid => "RANGE_INVALID",
            ErrorCode::TagInvalid => "TAG_INVALID",
            ErrorCode::Internal => "INTERNAL_ERROR",
            ErrorCode::InsufficientStorage => "INSUFFICIENT_STORAGE",
            ErrorCode::Unavailable => "UNAVAILABLE",
        }
    }

    /// The status the spec pairs with this code.
    #[must_use]
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BlobUnknown
            | ErrorCode::BlobUploadUnknown
            | ErrorCode::ManifestUnknown
            | ErrorCode::NameUnknown => StatusCode::NOT_FOUND,
            ErrorCode::BlobUploadInvalid
            | ErrorCode::DigestInvalid
            | ErrorCode::ManifestBlobUnknown
            | ErrorCode::ManifestInvalid
            | ErrorCode::NameInvalid
            | ErrorCode::SizeInvalid
            | ErrorCode::TagInvalid => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Denied => StatusCode::FORBIDDEN,
            ErrorCode::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RangeInvalid => StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// An error answered to a client.
#[derive(Debug)]
pub struct OciError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub detail: Option<serde_json::Value>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl OciError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> OciError {
        OciError {
            status: code.status(),
            code,
            message: message.into(),
            detail: None,
            headers: Vec::new(),
        }
    }

    #[must_use]
    pub fn with_status(mut self, status: StatusCode) -> OciError {
        self.status = status;
        self
    }

    #[must_use]
    pub fn with_detail(mut self, detail: serde_json::Value) -> OciError {
        self.detail = Some(detail);
        self
    }

    #[must_use]
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> OciError {
        self.headers.push((name, value));
        self
    }

    /// A server-side failure: the client sees a generic 500, the cause goes to the log.
    pub fn internal(cause: &dyn std::fmt::Display) -> OciError {
        tracing::error!(error = %cause, "internal error");
        OciError::new(ErrorCode::Internal, "internal server error")
    }

    /// The JSON body: `{"errors":[{"code","message","detail"}]}`.
    #[must_use]
    pub fn body(&self) -> serde_json::Value {
        json!({"errors": [{
            "code": self.code.as_str(),
            "message": self.message,
            "detail": self.detail.clone().unwrap_or(serde_json::Value::Null),
        }]})
    }
}

impl OciError {
    /// 507 for a store that failed (full disk, I/O error, closed while it is reopened): the
    /// client may retry once space is freed; the detail is logged only.
    #[must_use]
    pub fn storage_failed(e: &dyn std::fmt::Display) -> OciError {
        tracing::error!(error = %e, "storage failed");
        OciError::new(
            ErrorCode::InsufficientStorage,
            "storage is full or failing; try again later",
        )
    }
}
