//! Method + path + query → the distribution API operation it names.
//!
//! Repository names contain `/`, so paths are matched from their end: the last one or two
//! segments say what is addressed, everything before them is the name.

use http::Method;

use super::digest::Digest;
use super::error::{ErrorCode, OciError};
use super::name::UploadId;
use super::name::{NameError, Reference, RepoName, Tag};

/// `n` and `last` of a paginated list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    pub n: Option<usize>,
    pub last: Option<String>,
}

/// Every operation of the distribution API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OciEndpoint {
    Base,
    Catalog {
        page: Page,
    },
    ListTags {
        name: RepoName,
        page: Page,
    },
    GetManifest {
        name: RepoName,
        reference: Reference,
        head: bool,
    },
    PutManifest {
        name: RepoName,
        reference: Reference,
    },
    DeleteManifest {
        name: RepoName,
        reference: Reference,
    },
    GetBlob {
        name: RepoName,
        digest: Digest,
        head: bool,
    },
    DeleteBlob {
        name: RepoName,
        digest: Digest,
    },
    /// `POST /blobs/uploads/`: a session, a monolithic upload (`digest`) or a mount (`mount`).
    StartUpload {
        name: RepoName,
        digest: Option<Digest>,
        mount: Option<Mount>,
    },
    UploadStatus {
        name: RepoName,
        id: UploadId,
    },
    PatchUpload {
        name: RepoName,
        id: UploadId,
    },
    FinishUpload {
        name: RepoName,
        id: UploadId,
        digest: Digest,
    },
    CancelUpload {
        name: RepoName,
        id: UploadId,
    },
    Referrers {
        name: RepoName,
        digest: Digest,
        artifact_type: Option<String>,
    },
}

/// `?mount=<digest>&from=<repository>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub digest: Digest,
    pub from: Option<RepoName>,
}

impl OciEndpoint {
    /// A short, fixed label for the operation (metrics and logs).
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            OciEndpoint::Base => "base",
            OciEndpoint::Catalog { .. } => "catalog",
            OciEndpoint::ListTags { .. } => "tags_list",
            OciEndpoint::GetManifest { head: false, .. } => "manifest_get",
            OciEndpoint::GetManifest { head: true, .. } => "manifest_head",
            OciEndpoint::PutManifest { .. } => "manifest_put",
            OciEndpoint::DeleteManifest { .. } => "manifest_delete",
            OciEndpoint::GetBlob { head: false, .. } => "blob_get",
            OciEndpoint::GetBlob { head: true, .. } => "blob_head",
            OciEndpoint::DeleteBlob { .. } => "blob_delete",
            OciEndpoint::StartUpload { .. } => "upload_start",
            OciEndpoint::UploadStatus { .. } => "upload_status",
            OciEndpoint::PatchUpload { .. } => "upload_patch",
            OciEndpoint::FinishUpload { .. } => "upload_finish",
            OciEndpoint::CancelUpload { .. } => "upload_cancel",
            OciEndpoint::Referrers { .. } => "referrers",
        }
    }

    /// The repository the operation addresses, if any.
    #[must_use]
    pub fn name(&self) -> Option<&RepoName> {
        match self {
            OciEndpoint::Base | OciEndpoint::Catalog { .. } => None,
            OciEndpoint::ListTags { name, .. }
            | OciEndpoint::GetManifest { name, .. }
            | OciEndpoint::PutManifest { name, .. }
            | OciEndpoint::DeleteManifest { name, .. }
            | OciEndpoint::GetBlob { name, .. }
            | OciEndpoint::DeleteBlob { name, .. }
            | OciEndpoint::StartUpload { name, .. }
            | OciEndpoint::UploadStatus { name, .. }
            | OciEndpoint::PatchUpload { name, .. }
            | OciEndpoint::FinishUpload { name, .. }
            | OciEndpoint::CancelUpload { name, .. }
            | OciEndpoint::Referrers { name, .. } => Some(name),
        }
    }

    /// Parses a request line. `Ok(None)` means the path is not under `/v2`.
    pub fn parse(
        method: &Method,
        path: &str,
        query: Option<&str>,
    ) -> Result<Option<OciEndpoint>, OciError> {
        let Some(rest) = path.strip_prefix("/v2") else {
            return Ok(None);
        };
        if !rest.is_empty() && !rest.starts_with('/') {
            return Ok(None);
        }
        let query = Query::parse(query.unwrap_or(""));
        let rest = rest.strip_prefix('/').unwrap_or(rest);
        if rest.is_empty() {
            return only(method, &[Method::GET, Method::HEAD], OciEndpoint::Base).map(Some);
        }
        if rest == "_catalog" {
            let page = query.page()?;
            return only(method, &[Method::GET], OciEndpoint::Catalog { page }).map(Some);
        }
        let segments: Vec<&str> = rest.split('/').collect();
        let n = segments.len();
        let name_of = |len: usize| -> Result<RepoName, OciError> {
            if len == 0 {
                return Err(not_found());
            }
            segments[..len]
                .join("/")
                .parse::<RepoName>()
                .map_err(name_error)
        };
        let tail = |k: usize| segments.get(n.wrapping_sub(k)).copied();
        let endpoint = match (tail(3), tail(2), tail(1)) {
            (_, Some("tags"), Some("list")) => {
                let name = name_of(n - 2)?;
                only(
                    method,
                    &[Method::GET],
                    OciEndpoint::ListTags {
                        name,
                        page: query.page()?,
                    },
                )?
            }
            (Some("blobs"), Some("uploads"), Some(id)) => {
                let name = name_of(n - 3)?;
                if id.is_empty() {
                    if *method != Method::POST {
                        return Err(unsupported(method));
                    }
                    start_upload(name, &query)?
                } else {
                    let id: UploadId = id.parse().map_err(|_| {
                        OciError::new(
                            ErrorCode::BlobUploadUnknown,
                            "blob upload unknown to registry",
                        )
                    })?;
                    upload(method, name, id, &query)?
                }
            }
            (_, Some("blobs"), Some("uploads")) if *method == Method::POST => {
                start_upload(name_of(n - 2)?, &query)?
            }
            (_, Some("blobs"), Some(digest)) => {
                let name = name_of(n - 2)?;
                let digest = parse_digest(digest)?;
                match *method {
                    Method::GET => OciEndpoint::GetBlob {
                        name,
                        digest,
                        head: false,
                    },
                    Method::HEAD => OciEndpoint::GetBlob {
                        name,
                        digest,
                        head: true,
                    },
                    Method::DELETE => OciEndpoint::DeleteBlob { name, digest },
                    _ => return Err(unsupported(method)),
                }
            }
            (_, Some("manifests"), Some(reference)) => {
                let name = name_of(n - 2)?;
                let reference = parse_reference(reference).map_err(|e| {
                    // No manifest is stored under a reference that cannot be written, so a
                    // read of one is a miss (as conformance expects); a write is a bad request.
                    if matches!(*method, Method::GET | Method::HEAD) {
                        OciError::new(ErrorCode::ManifestUnknown, "manifest unknown to registry")
                            .with_detail(serde_json::json!({ "reference": reference }))
                    } else {
                        e
                    }
                })?;
                match *method {
                    Method::GET => OciEndpoint::GetManifest {
                        name,
                        reference,
                        head: false,
                    },
                    Method::HEAD => OciEndpoint::GetManifest {
                        name,
                        reference,
                        head: true,
                    },
                    Method::PUT => OciEndpoint::PutManifest { name, reference },
                    Method::DELETE => OciEndpoint::DeleteManifest { name, reference },
                    _ => return Err(unsupported(method)),
                }
            }
            (_, Some("referrers"), Some(digest)) => {
                let name = name_of(n - 2)?;
                let digest = parse_digest(digest)?;
                let artifact_type = query.get("artifactType").map(str::to_owned);
                only(
                    method,
                    &[Method::GET],
                    OciEndpoint::Referrers {
                        name,
                        digest,
                        artifact_type,
                    },
                )?
            }
            _ => return Err(not_found()),
        };
        Ok(Some(endpoint))
    }
}

fn start_upload(name: RepoName, query: &Query) -> Result<OciEndpoint, OciError> {
    if let Some(mount) = query.get("mount") {
        let from = match query.get("from") {
            Some(from) => Some(from.parse::<RepoName>().map_err(name_error)?),
            None => None,
        };
        let mount = Mount {
            digest: parse_digest(mount)?,
            from,
        };
        return Ok(OciEndpoint::StartUpload {
            name,
            digest: None,
            mount: Some(mount),
        });
    }
    let digest = query.get("digest").map(parse_digest).transpose()?;
    Ok(OciEndpoint::StartUpload {
        name,
        digest,
        mount: None,
    })
}

fn upload(
    method: &Method,
    name: RepoName,
    id: UploadId,
    query: &Query,
) -> Result<OciEndpoint, OciError> {
    Ok(match *method {
        Method::GET => OciEndpoint::UploadStatus { name, id },
        Method::PATCH => OciEndpoint::PatchUpload { name, id },
        Method::PUT => {
            let digest = query.get("digest").ok_or_else(|| {
                OciError::new(
                    ErrorCode::DigestInvalid,
                    "the digest query parameter is required",
                )
            })?;
            OciEndpoint::FinishUpload {
                name,
                id,
                digest: parse_digest(digest)?,
            }
        }
        Method::DELETE => OciEndpoint::CancelUpload { name, id },
        _ => return Err(unsupported(method)),
    })
}

fn only(
    method: &Method,
    allowed: &[Method],
    endpoint: OciEndpoint,
) -> Result<OciEndpoint, OciError> {
    if allowed.contains(method) {
        Ok(endpoint)
    } else {
        Err(unsupported(method))
    }
}

fn parse_digest(s: &str) -> Result<Digest, OciError> {
    s.parse::<Digest>().map_err(|e| {
        OciError::new(ErrorCode::DigestInvalid, "invalid digest")
            .with_detail(serde_json::json!({ "digest": s, "reason": e.to_string() }))
    })
}

fn parse_reference(s: &str) -> Result<Reference, OciError> {
    if s.contains(':') {
        return parse_digest(s).map(Reference::Digest);
    }
    s.parse::<Tag>().map(Reference::Tag).map_err(|e| {
        OciError::new(ErrorCode::TagInvalid, e.to_string())
            .with_detail(serde_json::json!({ "tag": s }))
    })
}

fn name_error(e: NameError) -> OciError {
    OciError::new(ErrorCode::NameInvalid, e.to_string())
}

fn not_found() -> OciError {
    OciError::new(ErrorCode::Unsupported, "no such endpoint")
        .with_status(http::StatusCode::NOT_FOUND)
}

fn unsupported(method: &Method) -> OciError {
    OciError::new(
        ErrorCode::Unsupported,
        format!("method {method} is not supported here"),
    )
}

/// Decoded query parameters; the first occurrence of a key wins.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: &str) -> Query {
        Query(
            form_urlencoded::parse(raw.as_bytes())
                .into_owned()
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn page(&self) -> Result<Page, OciError> {
        let n = match self.get("n") {
            None => None,
            Some(n) => Some(n.parse::<usize>().map_err(|_| {
                OciError::new(ErrorCode::Unsupported, "n must be a non-negative integer")
                    .with_status(http::StatusCode::BAD_REQUEST)
            })?),
        };
        Ok(Page {
            n,
            last: self.get("last").map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests;
