#![allow(clippy::needless_pass_by_value)] // Tests read better with `Method::GET` than `&Method::GET`.

use super::*;

const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn parse(
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Result<Option<OciEndpoint>, OciError> {
    OciEndpoint::parse(method, path, query)
}

fn ok(method: Method, path: &str, query: Option<&str>) -> OciEndpoint {
    parse(&method, path, query).unwrap().unwrap()
}

fn code(method: Method, path: &str, query: Option<&str>) -> ErrorCode {
    parse(&method, path, query).unwrap_err().code
}

fn name(s: &str) -> RepoName {
    s.parse().unwrap()
}

#[test]
fn base_and_catalog() {
    assert_eq!(ok(Method::GET, "/v2/", None), OciEndpoint::Base);
    assert_eq!(ok(Method::GET, "/v2", None), OciEndpoint::Base);
    assert_eq!(ok(Method::HEAD, "/v2/", None), OciEndpoint::Base);
    assert_eq!(
        ok(Method::GET, "/v2/_catalog", Some("n=10&last=a%2Fb")),
        OciEndpoint::Catalog {
            page: Page {
                n: Some(10),
                last: Some("a/b".into())
            }
        }
    );
    assert!(parse(&Method::GET, "/", None).unwrap().is_none());
    assert!(parse(&Method::GET, "/v2x", None).unwrap().is_none());
    assert_eq!(code(Method::POST, "/v2/", None), ErrorCode::Unsupported);
}

#[test]
fn names_with_slashes_and_keywords() {
    assert_eq!(
        ok(Method::GET, "/v2/a/b/c/manifests/latest", None),
        OciEndpoint::GetManifest {
            name: name("a/b/c"),
            reference: Reference::Tag("latest".parse().unwrap()),
            head: false
        }
    );
    // A repository may itself be called "blobs" or "manifests".
    assert_eq!(
        ok(Method::HEAD, &format!("/v2/x/blobs/blobs/{D}"), None),
        OciEndpoint::GetBlob {
            name: name("x/blobs"),
            digest: D.parse().unwrap(),
            head: true
        }
    );
    assert_eq!(
        ok(Method::GET, "/v2/manifests/tags/list", Some("n=2")),
        OciEndpoint::ListTags {
            name: name("manifests"),
            page: Page {
                n: Some(2),
                last: None
            }
        }
    );
}

#[test]
fn manifests_by_digest_and_tag() {
    assert_eq!(
        ok(Method::PUT, &format!("/v2/r/manifests/{D}"), None),
        OciEndpoint::PutManifest {
            name: name("r"),
            reference: Reference::Digest(D.parse().unwrap())
        }
    );
    assert!(matches!(
        ok(Method::DELETE, "/v2/r/manifests/v1", None),
        OciEndpoint::DeleteManifest { .. }
    ));
    // Reads of a reference that cannot exist are misses; writes of one are bad requests.
    for method in [Method::GET, Method::HEAD] {
        for reference in ["sha256:abc", "-bad", ".INVALID_MANIFEST_NAME"] {
            assert_eq!(
                code(
                    method.clone(),
                    &format!("/v2/r/manifests/{reference}"),
                    None
                ),
                ErrorCode::ManifestUnknown
            );
        }
    }
    assert_eq!(
        code(Method::PUT, "/v2/r/manifests/sha256:abc", None),
        ErrorCode::DigestInvalid
    );
    assert_eq!(
        code(Method::PUT, "/v2/r/manifests/-bad", None),
        ErrorCode::TagInvalid
    );
    assert_eq!(
        code(Method::POST, "/v2/r/manifests/v1", None),
        ErrorCode::Unsupported
    );
    assert_eq!(
        code(Method::GET, "/v2/Bad/manifests/v1", None),
        ErrorCode::NameInvalid
    );
}

#[test]
fn uploads() {
    assert_eq!(
        ok(Method::POST, "/v2/r/blobs/uploads/", None),
        OciEndpoint::StartUpload {
            name: name("r"),
            digest: None,
            mount: None
        }
    );
    assert_eq!(
        ok(
            Method::POST,
            "/v2/r/blobs/uploads",
            Some(&format!("digest={D}"))
        ),
        OciEndpoint::StartUpload {
            name: name("r"),
            digest: Some(D.parse().unwrap()),
            mount: None
        }
    );
    assert_eq!(
        ok(
            Method::POST,
            "/v2/r/blobs/uploads/",
            Some(&format!("mount={D}&from=other%2Frepo"))
        ),
        OciEndpoint::StartUpload {
            name: name("r"),
            digest: None,
            mount: Some(Mount {
                digest: D.parse().unwrap(),
                from: Some(name("other/repo"))
            })
        }
    );
    let id = "5f0b6c9e-7a51-4b6f-9d7e-1f2a3b4c5d6e";
    let uid: UploadId = id.parse().unwrap();
    assert_eq!(
        ok(Method::GET, &format!("/v2/r/blobs/uploads/{id}"), None),
        OciEndpoint::UploadStatus {
            name: name("r"),
            id: uid
        }
    );
    assert_eq!(
        ok(Method::PATCH, &format!("/v2/r/blobs/uploads/{id}"), None),
        OciEndpoint::PatchUpload {
            name: name("r"),
            id: uid
        }
    );
    assert_eq!(
        ok(Method::DELETE, &format!("/v2/r/blobs/uploads/{id}"), None),
        OciEndpoint::CancelUpload {
            name: name("r"),
            id: uid
        }
    );
    assert_eq!(
        ok(
            Method::PUT,
            &format!("/v2/r/blobs/uploads/{id}"),
            Some(&format!("digest={D}"))
        ),
        OciEndpoint::FinishUpload {
            name: name("r"),
            id: uid,
            digest: D.parse().unwrap()
        }
    );
    assert_eq!(
        code(Method::PUT, &format!("/v2/r/blobs/uploads/{id}"), None),
        ErrorCode::DigestInvalid
    );
    assert_eq!(
        code(Method::PATCH, "/v2/r/blobs/uploads/not-a-uuid", None),
        ErrorCode::BlobUploadUnknown
    );
    assert_eq!(
        code(Method::GET, "/v2/r/blobs/uploads/", None),
        ErrorCode::Unsupported
    );
    assert_eq!(
        code(
            Method::POST,
            "/v2/r/blobs/uploads/",
            Some("mount=sha256:zz")
        ),
        ErrorCode::DigestInvalid
    );
}

#[test]
fn referrers_and_unknown_paths() {
    assert_eq!(
        ok(
            Method::GET,
            &format!("/v2/r/referrers/{D}"),
            Some("artifactType=application%2Fvnd.example")
        ),
        OciEndpoint::Referrers {
            name: name("r"),
            digest: D.parse().unwrap(),
            artifact_type: Some("application/vnd.example".into())
        }
    );
    let e = parse(&Method::GET, "/v2/r/nothing", None).unwrap_err();
    assert_eq!(e.status, http::StatusCode::NOT_FOUND);
    assert_eq!(
        code(Method::GET, "/v2/tags/list", None),
        ErrorCode::Unsupported
    );
    assert_eq!(
        code(Method::GET, "/v2/_catalog", Some("n=-1")),
        ErrorCode::Unsupported
    );
}
