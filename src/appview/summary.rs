//! What the web pages and search show of a manifest, taken once when it is indexed: its
//! annotations, platforms, layers or child manifests, and a summary of the image config
//! (entrypoint, environment, exposed ports, labels). Kept in the index so pages render from it
//! alone, without reading blobs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::oci::manifest::{Descriptor, Manifest};

/// Longest annotation or label value kept (longer ones are cut at a character boundary).
const MAX_VALUE: usize = 4096;
/// Most annotations, labels, environment variables or ports kept of one manifest.
const MAX_ENTRIES: usize = 64;
/// Most layers or child manifests listed.
const MAX_PARTS: usize = 256;

/// See the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestSummary {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// `os/arch[/variant]` of the image, or of each image an index lists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    /// Blobs of an image or artifact (config first for images).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Part>,
    /// Manifests of an index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Part>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigSummary>,
}

/// One descriptor as pages list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

/// The parts of an image config people look for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSummary {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exposed_ports: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl ManifestSummary {
    /// The summary of `manifest`; `config` is its image config's bytes when it has one and
    /// they could be read (anything unreadable in them is left out).
    #[must_use]
    pub fn of(manifest: &Manifest, config: Option<&[u8]>) -> ManifestSummary {
        let annotations = manifest
            .annotations()
            .map(|a| {
                a.iter()
                    .take(MAX_ENTRIES)
                    .map(|(k, v)| (cut(k), cut(v)))
                    .collect()
            })
            .unwrap_or_default();
        let children: Vec<Part> = manifest
            .manifests
            .iter()
            .take(MAX_PARTS)
            .map(part)
            .collect();
        let config_json: Option<Json> = config.and_then(|b| serde_json::from_slice(b).ok());
        let mut platforms: Vec<String> =
            children.iter().filter_map(|c| c.platform.clone()).collect();
        if let Some(p) = config_json.as_ref().and_then(platform_of) {
            platforms.push(p);
        }
        platforms.dedup();
        ManifestSummary {
            annotations,
            platforms,
            parts: manifest.blobs.iter().take(MAX_PARTS).map(part).collect(),
            children,
            config: config_json.as_ref().map(config_summary),
        }
    }

    /// An annotation by its short name (`title` for `org.opencontainers.image.title`), else
    /// the config label of that name.
    #[must_use]
    pub fn oci(&self, short: &str) -> Option<&str> {
        let key = format!("org.opencontainers.image.{short}");
        self.annotations
            .get(&key)
            .or_else(|| self.config.as_ref().and_then(|c| c.labels.get(&key)))
            .map(String::as_str)
            .filter(|s| !s.trim().is_empty())
    }
}

fn part(d: &Descriptor) -> Part {
    Part {
        media_type: cut(&d.media_type),
        digest: d.digest.as_str().to_owned(),
        size: d.size,
        platform: d.platform.as_ref().and_then(platform_of),
    }
}

/// `os/architecture[/variant]` from a config or a descriptor's `platform`.
fn platform_of(v: &Json) -> Option<String> {
    let os = v.get("os")?.as_str()?;
    let arch = v.get("architecture")?.as_str()?;
    if os.is_empty() || arch.is_empty() || os == "unknown" {
        return None;
    }
    let mut p = format!("{os}/{arch}");
    if let Some(variant) = v
        .get("variant")
        .and_then(Json::as_str)
        .filter(|s| !s.is_empty())
    {
        p.push('/');
        p.push_str(variant);
    }
    Some(cut(&p))
}

fn config_summary(v: &Json) -> ConfigSummary {
    let c = v.get("config").unwrap_or(&Json::Null);
    let strings = |x: Option<&Json>| -> Vec<String> {
        x.and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Json::as_str)
                    .take(MAX_ENTRIES)
                    .map(cut)
                    .collect()
            })
            .unwrap_or_default()
    };
    let text = |x: Option<&Json>| x.and_then(Json::as_str).filter(|s| !s.is_empty()).map(cut);
    ConfigSummary {
        created: text(v.get("created")),
        entrypoint: strings(c.get("Entrypoint")),
        cmd: strings(c.get("Cmd")),
        env: strings(c.get("Env")),
        exposed_ports: c
            .get("ExposedPorts")
            .and_then(Json::as_object)
            .map(|m| m.keys().take(MAX_ENTRIES).map(|k| cut(k)).collect())
            .unwrap_or_default(),
        user: text(c.get("User")),
        working_dir: text(c.get("WorkingDir")),
        labels: c
            .get("Labels")
            .and_then(Json::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((cut(k), cut(v.as_str()?))))
                    .take(MAX_ENTRIES)
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn cut(s: &str) -> String {
    if s.len() <= MAX_VALUE {
        return s.to_owned();
    }
    let mut end = MAX_VALUE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_and_indexes_are_summarised() {
        let d = "sha256:".to_owned() + &"a".repeat(64);
        let image = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{d}","size":2}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{d}","size":7}}],
            "annotations":{{"org.opencontainers.image.title":"Web app","x":"{long}"}}}}"#,
            long = "é".repeat(3000)
        );
        let m = Manifest::parse(image.as_bytes(), None).unwrap();
        let config = br#"{"architecture":"arm64","os":"linux","variant":"v8","created":"2026-01-01T00:00:00Z",
            "config":{"Entrypoint":["/app"],"Env":["PATH=/bin"],"ExposedPorts":{"8080/tcp":{}},
            "Labels":{"org.opencontainers.image.source":"https://example.com/src"},"User":"1000"}}"#;
        let s = ManifestSummary::of(&m, Some(config));
        assert_eq!(s.platforms, ["linux/arm64/v8"]);
        assert_eq!(s.oci("title"), Some("Web app"));
        assert_eq!(s.oci("source"), Some("https://example.com/src"));
        assert!(s.annotations["x"].len() <= MAX_VALUE);
        assert_eq!(s.parts.len(), 2);
        let c = s.config.unwrap();
        assert_eq!(c.entrypoint, ["/app"]);
        assert_eq!(c.exposed_ports, ["8080/tcp"]);
        assert_eq!(c.user.as_deref(), Some("1000"));

        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d}","size":9,"platform":{{"os":"linux","architecture":"amd64"}}}},
            {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d}","size":9,"platform":{{"os":"unknown","architecture":"unknown"}}}}]}}"#
        );
        let m = Manifest::parse(index.as_bytes(), None).unwrap();
        let s = ManifestSummary::of(&m, Some(b"not json"));
        assert_eq!(
            s.platforms,
            ["linux/amd64"],
            "attestation entries are no platform"
        );
        assert_eq!(s.children.len(), 2);
        assert!(s.config.is_none());
    }
}
