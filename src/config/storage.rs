//! `[storage]`: where blob bytes are kept (the filesystem, memory, or an S3-compatible object
//! store), and its checks.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, read_secret};

/// Blob storage backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A local directory (`storage.root`).
    #[default]
    Fs,
    /// Process memory: everything is lost on exit. For tests and demonstrations.
    Memory,
    /// An S3-compatible object store (AWS S3, `MinIO`, Ceph RGW, Garage, `SeaweedFS`, a NAS's S3
    /// service): `storage.bucket`, `storage.endpoint`, …
    S3,
}

/// Default of `storage.redirect_ttl_secs`.
pub const DEFAULT_REDIRECT_TTL_SECS: u64 = 900;
/// The longest a `SigV4` presigned URL may live (7 days).
const MAX_REDIRECT_TTL_SECS: u64 = 7 * 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `fs` (default), `s3` or `memory`.
    pub backend: Backend,
    /// `fs`: the directory of the blobs. Default: `<data_dir>/blobs`. `s3`: a key prefix inside
    /// the bucket (e.g. `atcr/`), so one bucket can hold several nodes. Default: the bucket's top.
    pub root: Option<PathBuf>,
    /// Below this many free bytes on the `fs` backend's filesystem, registry writes (uploads,
    /// manifest PUTs) and PDS writes (records, blob uploads) are refused with 507, and `/readyz`
    /// reports not ready. Default 1 GiB. Not used by `s3` (the object store keeps its own quota).
    pub min_free_bytes: u64,
    /// `s3`: the bucket (it must exist). Required with `s3`.
    pub bucket: Option<String>,
    /// `s3`: the server's URL, e.g. `http://nas.lan:9000`. Unset: AWS S3 of `region`.
    pub endpoint: Option<String>,
    /// `s3`: the region that requests are signed for. Unset: `AWS_REGION`, else `us-east-1`
    /// (what `MinIO`, Garage and most NAS servers accept).
    pub region: Option<String>,
    /// `s3`: path-style URLs (`<endpoint>/<bucket>/<key>`), which NAS and self-hosted servers
    /// need. `false`: virtual-host style (`<bucket>.<endpoint>/<key>`). Default true.
    pub path_style: bool,
    /// `s3`: a file holding the access key id (one line; owner-only permissions, or it is
    /// refused). Unset with `secret_access_key_file`: the usual `AWS_ACCESS_KEY_ID` /
    /// `AWS_SECRET_ACCESS_KEY` environment, `AWS_PROFILE` files, or the instance's role.
    pub access_key_id_file: Option<PathBuf>,
    /// `s3`: a file holding the secret access key (owner-only). Goes with `access_key_id_file`.
    pub secret_access_key_file: Option<PathBuf>,
    /// `s3` over HTTPS: trust the CA certificates in this PEM file (a NAS's own CA) instead of
    /// the system's.
    pub ca_file: Option<PathBuf>,
    /// `s3` only: a blob `GET` answers `307 Temporary Redirect` to a presigned URL of the
    /// object, so clients download from the object store and not through the node. The
    /// registry still checks the token and that the repository holds the blob first; `HEAD`
    /// stays local. The endpoint must be reachable by the clients. Default false.
    pub redirect: bool,
    /// How long a presigned redirect URL is valid, in seconds. Default 900; at most 7 days.
    pub redirect_ttl_secs: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: Backend::Fs,
            root: None,
            min_free_bytes: 1 << 30,
            bucket: None,
            endpoint: None,
            region: None,
            path_style: true,
            access_key_id_file: None,
            secret_access_key_file: None,
            ca_file: None,
            redirect: false,
            redirect_ttl_secs: DEFAULT_REDIRECT_TTL_SECS,
        }
    }
}

impl StorageConfig {
    /// What the types cannot check: the keys each backend needs, and keys that only another
    /// backend reads.
    pub fn check(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.backend != Backend::S3 {
            let only_s3 = [
                ("bucket", self.bucket.is_some()),
                ("endpoint", self.endpoint.is_some()),
                ("region", self.region.is_some()),
                ("access_key_id_file", self.access_key_id_file.is_some()),
                (
                    "secret_access_key_file",
                    self.secret_access_key_file.is_some(),
                ),
                ("ca_file", self.ca_file.is_some()),
                ("redirect", self.redirect),
            ];
            if let Some((key, _)) = only_s3.iter().find(|(_, set)| *set) {
                return invalid(format!(
                    "storage.{key} applies only to storage.backend = \"s3\""
                ));
            }
            return Ok(());
        }
        if self.bucket.as_deref().is_none_or(str::is_empty) {
            return invalid("storage.backend = \"s3\" needs storage.bucket".into());
        }
        if let Some(endpoint) = &self.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return invalid(format!(
                "storage.endpoint must be an http:// or https:// URL, not {endpoint:?}"
            ));
        }
        if self.access_key_id_file.is_some() != self.secret_access_key_file.is_some() {
            return invalid(
                "storage.access_key_id_file and storage.secret_access_key_file go together".into(),
            );
        }
        for (key, path) in [
            ("access_key_id_file", &self.access_key_id_file),
            ("secret_access_key_file", &self.secret_access_key_file),
        ] {
            if let Some(path) = path {
                read_secret(path)
                    .map_err(|e| ConfigError::Invalid(format!("storage.{key}: {e}")))?;
            }
        }
        if self.redirect_ttl_secs == 0 || self.redirect_ttl_secs > MAX_REDIRECT_TTL_SECS {
            return invalid(format!(
                "storage.redirect_ttl_secs must be between 1 and {MAX_REDIRECT_TTL_SECS} (7 days)"
            ));
        }
        Ok(())
    }

    /// The settings of the `s3` backend, secrets read from their files. `None` for the other
    /// backends.
    pub fn s3_settings(&self) -> Result<Option<crate::blobstore::S3Settings>, ConfigError> {
        if self.backend != Backend::S3 {
            return Ok(None);
        }
        self.check()?;
        let secret = |key: &str, path: &Option<PathBuf>| {
            path.as_deref()
                .map(read_secret)
                .transpose()
                .map_err(|e| ConfigError::Invalid(format!("storage.{key}: {e}")))
        };
        let region = self.region.clone().unwrap_or_else(|| {
            ["AWS_REGION", "AWS_DEFAULT_REGION"]
                .iter()
                .find_map(|v| std::env::var(v).ok().filter(|r| !r.is_empty()))
                .unwrap_or_else(|| "us-east-1".to_owned())
        });
        Ok(Some(crate::blobstore::S3Settings {
            bucket: self.bucket.clone().unwrap_or_default(),
            endpoint: self.endpoint.clone(),
            region,
            prefix: self
                .root
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path_style: self.path_style,
            access_key_id: secret("access_key_id_file", &self.access_key_id_file)?,
            secret_access_key: secret("secret_access_key_file", &self.secret_access_key_file)?,
            ca_file: self.ca_file.clone(),
            redirect_ttl: self
                .redirect
                .then(|| std::time::Duration::from_secs(self.redirect_ttl_secs)),
        }))
    }
}
