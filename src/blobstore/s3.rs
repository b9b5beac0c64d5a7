//! The S3 backend: any S3-compatible object store (AWS S3, `MinIO`, Ceph RGW, Garage, `SeaweedFS`,
//! a NAS's S3 service), over rustls with the ring provider like the rest of the node.
//!
//! Uploads are stored as they are on `fs`: numbered parts under `uploads/<id>/`, written as S3
//! multipart uploads of [`MULTIPART_CHUNK`] pieces (memory per upload stays bounded by that), and
//! only a verified upload reaches `blobs/…`: a single part by a server-side copy, several parts
//! by one streamed multipart write of their concatenation.

use std::path::PathBuf;
use std::time::Duration;

use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::{HttpTransporter, OperationContext, Operator};

use super::{BlobError, BlobStore, Digest};

/// The size of one S3 multipart part. S3 wants at least 5 MiB per part and at most 10,000
/// parts, so this allows objects up to 80 GiB; it is also the memory one upload holds.
pub const MULTIPART_CHUNK: usize = 8 << 20;
/// The largest object S3 copies in one `CopyObject` call; larger parts are copied by streaming.
pub const MAX_COPY_BYTES: u64 = 5 << 30;
/// A control request (stat, delete, copy, …) that takes longer than this fails.
const REQUEST_TIMEOUT: Duration = Duration::from_mins(1);
/// A read or write of one chunk that makes no progress for this long fails.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the `s3` backend keeps blobs and how it signs in. Built from `[storage]` by
/// `StorageConfig::s3_settings` (in `config`, which sits above this module), secrets already
/// read from their files.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub bucket: String,
    /// The server's URL; `None` for AWS S3 of `region`.
    pub endpoint: Option<String>,
    pub region: String,
    /// A key prefix inside the bucket (empty: its top).
    pub prefix: String,
    /// `<endpoint>/<bucket>/<key>` rather than `<bucket>.<endpoint>/<key>`.
    pub path_style: bool,
    /// Static credentials; `None`: the `AWS_*` environment, profile files or instance role.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// PEM CA certificates to trust for an HTTPS endpoint instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Answer blob reads with presigned URLs valid this long.
    pub redirect_ttl: Option<Duration>,
}

impl std::fmt::Debug for S3Settings {
    // The secret key is never printed, not even in a debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("path_style", &self.path_style)
            .field("access_key_id", &self.access_key_id)
            .field("ca_file", &self.ca_file)
            .field("redirect_ttl", &self.redirect_ttl)
            .finish_non_exhaustive()
    }
}

impl S3Settings {
    /// `s3://bucket/prefix at endpoint`, for messages.
    #[must_use]
    pub fn describe(&self) -> String {
        let at = self.endpoint.as_deref().unwrap_or("AWS");
        format!(
            "s3://{}/{} at {at}",
            self.bucket,
            self.prefix.trim_start_matches('/')
        )
    }
}

impl BlobStore {
    /// A store in an S3 bucket.
    pub fn s3(settings: &S3Settings) -> Result<BlobStore, BlobError> {
        let root = format!("/{}", settings.prefix.trim_matches('/'));
        let mut builder = opendal::services::S3::default()
            .bucket(&settings.bucket)
            .region(&settings.region)
            .root(&root);
        if let Some(endpoint) = &settings.endpoint {
            // A self-hosted server has no instance metadata service: asking for it only delays
            // the error when credentials are missing.
            builder = builder.endpoint(endpoint).disable_ec2_metadata();
        }
        if !settings.path_style {
            builder = builder.enable_virtual_host_style();
        }
        if let (Some(id), Some(secret)) = (&settings.access_key_id, &settings.secret_access_key) {
            builder = builder.access_key_id(id).secret_access_key(secret);
        }
        let https = settings
            .endpoint
            .as_deref()
            .is_none_or(|e| e.starts_with("https://"));
        let transport =
            HttpTransporter::new(opendal_http_transport_reqwest::ReqwestTransport::new(
                http_client(https, settings.ca_file.as_deref())?,
            ));
        let op = Operator::new(builder)?
            .with_context(OperationContext::new().with_http_transport(transport))
            .layer(
                TimeoutLayer::new()
                    .with_timeout(REQUEST_TIMEOUT)
                    .with_io_timeout(IO_TIMEOUT),
            )
            .layer(RetryLayer::new().with_max_times(3).with_jitter());
        let mut store = BlobStore::new(op);
        store.multipart_chunk = Some(MULTIPART_CHUNK);
        store.redirect_ttl = settings.redirect_ttl;
        Ok(store)
    }

    /// A presigned URL that reads `digest` for the configured time, when the store redirects
    /// blob reads (`storage.redirect`); `None` otherwise.
    pub async fn redirect_url(&self, digest: &Digest) -> Result<Option<String>, BlobError> {
        let Some(ttl) = self.redirect_ttl else {
            return Ok(None);
        };
        let signed = self.op.presign_read(&Self::blob_key(digest), ttl).await?;
        Ok(Some(signed.uri().to_string()))
    }
}

impl S3Settings {
    /// The URL requests go to: the endpoint, or AWS's for the region.
    #[must_use]
    pub fn endpoint_url(&self) -> String {
        self.endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", self.region))
    }

    /// The server's clock (its `Date` header) at a plain request; `SigV4` refuses requests
    /// signed more than 15 minutes off it, presigned URLs included.
    pub async fn server_date(&self) -> Result<std::time::SystemTime, BlobError> {
        let url = self.endpoint_url();
        let client = http_client(url.starts_with("https://"), self.ca_file.as_deref())?;
        let failed =
            |e: String| BlobError::Backend(opendal::Error::new(opendal::ErrorKind::Unexpected, e));
        let response = client
            .head(&url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| failed(format!("{url}: {e}")))?;
        let date = response
            .headers()
            .get(http::header::DATE)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| failed(format!("{url} sent no Date header")))?;
        httpdate::parse_http_date(date).map_err(|e| failed(format!("{url}: Date {date:?}: {e}")))
    }
}

/// The HTTP client of the S3 backend: reqwest over rustls with the ring provider (no aws-lc,
/// no OpenSSL), trusting `ca_file` or the system's CA certificates (none for a plain-HTTP
/// endpoint, which needs no CA file on the machine).
fn http_client(
    https: bool,
    ca_file: Option<&std::path::Path>,
) -> Result<reqwest::Client, BlobError> {
    let setup = |e: String| {
        BlobError::Backend(opendal::Error::new(
            opendal::ErrorKind::ConfigInvalid,
            format!("S3 HTTP client: {e}"),
        ))
    };
    let tls = if https {
        Some(crate::http_client::tls_config(ca_file).map_err(|e| setup(format!("{e:#}")))?)
    } else {
        None
    };
    crate::http_client::reqwest_client(tls, true).map_err(|e| setup(format!("{e:#}")))
}
