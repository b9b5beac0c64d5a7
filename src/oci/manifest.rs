//! Manifest media types and the checks a pushed manifest must pass.

use serde::Deserialize;
use serde_json::{Value, json};

use super::digest::Digest;
use super::error::{ErrorCode, OciError};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_ARTIFACT: &str = "application/vnd.oci.artifact.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Largest manifest accepted, as the spec recommends.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// What a manifest is: an image (config + layers), a list of manifests, or an OCI artifact
/// manifest (blobs only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Image,
    Index,
    Artifact,
}

/// Whether `media_type` is one of the manifest media types the registry stores.
#[must_use]
pub fn is_manifest_media_type(media_type: &str) -> bool {
    kind_of(media_type).is_some()
}

fn kind_of(media_type: &str) -> Option<Kind> {
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => Some(Kind::Image),
        OCI_INDEX | DOCKER_LIST => Some(Kind::Index),
        OCI_ARTIFACT => Some(Kind::Artifact),
        _ => None,
    }
}

/// A content descriptor.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default)]
    pub urls: Option<Vec<String>>,
    /// The platform of an index entry (`os`, `architecture`, `variant`), as pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

impl Descriptor {
    /// Non-distributable ("foreign") layers live elsewhere and need not be pushed.
    #[must_use]
    pub fn is_non_distributable(&self) -> bool {
        self.media_type.contains(".nondistributable.") || self.media_type.contains(".foreign.")
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    blobs: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<std::collections::BTreeMap<String, String>>,
}

/// A manifest that passed its checks.
#[derive(Debug)]
pub struct Manifest {
    pub media_type: String,
    pub artifact_type: Option<String>,
    /// Blobs it needs: config, layers, artifact blobs.
    pub blobs: Vec<Descriptor>,
    /// Manifests it lists (indexes).
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    annotations: Option<std::collections::BTreeMap<String, String>>,
    config_media_type: Option<String>,
}

fn invalid(message: impl Into<String>) -> OciError {
    OciError::new(ErrorCode::ManifestInvalid, message)
}

/// `Content-Type` without parameters, or `None` when it says nothing useful.
fn essence(content_type: Option<&str>) -> Option<&str> {
    let ct = content_type?.split(';').next()?.trim();
    (!ct.is_empty() && ct != "application/json" && ct != "application/octet-stream").then_some(ct)
}

impl Manifest {
    /// Parses and checks manifest bytes pushed with `content_type`.
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, OciError> {
        let raw: Raw = serde_json::from_slice(bytes).map_err(|e| {
            invalid("manifest is not valid JSON of a known shape")
                .with_detail(json!({ "reason": e.to_string() }))
        })?;
        let header = essence(content_type);
        let media_type = match (&raw.media_type, header) {
            (Some(body), Some(header)) if body != header => {
                return Err(
                    invalid("mediaType in the manifest does not match Content-Type")
                        .with_detail(json!({ "mediaType": body, "contentType": header })),
                );
            }
            (Some(body), _) => body.clone(),
            (None, Some(header)) => header.to_owned(),
            (None, None) if raw.manifests.is_some() => OCI_INDEX.to_owned(),
            (None, None) => OCI_MANIFEST.to_owned(),
        };
        let kind = kind_of(&media_type).ok_or_else(|| {
            invalid("unsupported manifest media type")
                .with_detail(json!({ "mediaType": media_type }))
        })?;
        if kind != Kind::Artifact && raw.schema_version != Some(2) {
            return Err(invalid("schemaVersion must be 2"));
        }
        let mut blobs = Vec::new();
        let mut config_media_type = None;
        let mut manifests = Vec::new();
        match kind {
            Kind::Image => {
                let config = raw
                    .config
                    .ok_or_else(|| invalid("image manifest has no config"))?;
                config_media_type = Some(config.media_type.clone());
                blobs.push(config);
                blobs.extend(
                    raw.layers
                        .ok_or_else(|| invalid("image manifest has no layers"))?,
                );
            }
            Kind::Index => {
                manifests = raw
                    .manifests
                    .ok_or_else(|| invalid("index has no manifests"))?;
            }
            Kind::Artifact => {
                if raw.artifact_type.is_none() {
                    return Err(invalid("artifact manifest has no artifactType"));
                }
                blobs = raw.blobs.unwrap_or_default();
            }
        }
        Ok(Manifest {
            media_type,
            artifact_type: raw.artifact_type,
            blobs,
            manifests,
            subject: raw.subject,
            annotations: raw.annotations,
            config_media_type,
        })
    }

    /// An image manifest's config descriptor.
    #[must_use]
    pub fn config(&self) -> Option<&Descriptor> {
        self.config_media_type.as_ref().and(self.blobs.first())
    }

    /// The manifest's annotations.
    #[must_use]
    pub fn annotations(&self) -> Option<&std::collections::BTreeMap<String, String>> {
        self.annotations.as_ref()
    }

    /// The type the referrers API reports: `artifactType`, else the config's media type.
    #[must_use]
    pub fn effective_artifact_type(&self) -> Option<&str> {
        self.artifact_type
            .as_deref()
            .or(self.config_media_type.as_deref())
    }

    /// The descriptor the referrers API lists for this manifest.
    #[must_use]
    pub fn referrer_descriptor(&self, digest: &Digest, size: u64) -> Value {
        let mut d =
            json!({ "mediaType": self.media_type, "digest": digest.as_str(), "size": size });
        if let Some(t) = self.effective_artifact_type() {
            d["artifactType"] = json!(t);
        }
        if let Some(a) = &self.annotations {
            d["annotations"] = json!(a);
        }
        d
    }
}

/// Whether an `Accept` header admits `media_type`. No header admits everything.
#[must_use]
pub fn accepts(accept: &[&str], media_type: &str) -> bool {
    if accept.is_empty() {
        return true;
    }
    accept.iter().flat_map(|h| h.split(',')).any(|item| {
        let t = item.split(';').next().unwrap_or("").trim();
        t == media_type || t == "*/*" || t == "application/*"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D}","size":0}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D}","size":0}}]{extra}}}"#
        )
    }

    #[test]
    fn image_manifest_with_subject() {
        let m = Manifest::parse(image(&format!(r#","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":1}},"annotations":{{"a":"b"}}"#)).as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(m.blobs.len(), 2);
        assert_eq!(m.subject.as_ref().unwrap().digest.as_str(), D);
        let desc = m.referrer_descriptor(&D.parse().unwrap(), 5);
        assert_eq!(
            desc["artifactType"],
            "application/vnd.oci.image.config.v1+json"
        );
        assert_eq!(desc["annotations"]["a"], "b");
    }

    #[test]
    fn media_type_rules() {
        // Content-Type alone decides when the body has no mediaType.
        let body = image("").replace(&format!(r#""mediaType":"{OCI_MANIFEST}","#), "");
        assert_eq!(
            Manifest::parse(body.as_bytes(), Some(DOCKER_MANIFEST))
                .unwrap()
                .media_type,
            DOCKER_MANIFEST
        );
        assert_eq!(
            Manifest::parse(body.as_bytes(), None).unwrap().media_type,
            OCI_MANIFEST
        );
        // A disagreement is refused.
        assert_eq!(
            Manifest::parse(image("").as_bytes(), Some(DOCKER_MANIFEST))
                .unwrap_err()
                .code,
            ErrorCode::ManifestInvalid
        );
        // Parameters on Content-Type are ignored.
        assert!(
            Manifest::parse(
                image("").as_bytes(),
                Some(&format!("{OCI_MANIFEST}; charset=utf-8"))
            )
            .is_ok()
        );
        // Unknown types and schema 1 are refused.
        assert!(
            Manifest::parse(
                image("").as_bytes(),
                Some("application/vnd.docker.distribution.manifest.v1+prettyjws")
            )
            .is_err()
        );
    }

    #[test]
    fn malformed_manifests() {
        for bad in [
            "",
            "[]",
            "{",
            r#"{"schemaVersion":1}"#,
            &image("").replace(D, "sha256:abc"),
            &format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}"}}"#),
            &format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}"}}"#),
            &format!(r#"{{"mediaType":"{OCI_ARTIFACT}"}}"#),
        ] {
            assert_eq!(
                Manifest::parse(bad.as_bytes(), None).unwrap_err().code,
                ErrorCode::ManifestInvalid,
                "{bad}"
            );
        }
    }

    #[test]
    fn index_and_artifact() {
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":3,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#
        );
        let m = Manifest::parse(index.as_bytes(), None).unwrap();
        assert_eq!((m.media_type.as_str(), m.manifests.len()), (OCI_INDEX, 1));
        let artifact = format!(
            r#"{{"mediaType":"{OCI_ARTIFACT}","artifactType":"application/x","blobs":[{{"mediaType":"a/b","digest":"{D}","size":0}}]}}"#
        );
        let m = Manifest::parse(artifact.as_bytes(), None).unwrap();
        assert_eq!(m.effective_artifact_type(), Some("application/x"));
    }

    #[test]
    fn accept_header() {
        assert!(accepts(&[], OCI_INDEX));
        assert!(accepts(
            &[&format!("{DOCKER_MANIFEST}, {OCI_INDEX};q=0.5")],
            OCI_INDEX
        ));
        assert!(accepts(&[DOCKER_MANIFEST, "*/*"], OCI_INDEX));
        assert!(!accepts(&[DOCKER_MANIFEST], OCI_INDEX));
    }
}
