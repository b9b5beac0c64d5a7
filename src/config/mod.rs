//! `atcr.toml`: one struct, every key documented, defaults named.
//!
//! Precedence: built-in defaults < the configuration file < `ATCR_*` environment variables <
//! command-line flags (`layers`).
//!
//! Imports the settings types of `pds` and `tls`; never `server`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod holds;
mod identity;
mod layers;
mod lifecycle;
mod node;
mod pds;
mod secret;
mod size;
mod storage;

pub use holds::HoldsConfig;
pub use identity::{DEFAULT_IDENTITY_CACHE_SECS, IdentityConfig};
pub use layers::{Flag, Layered, Origin};
pub use lifecycle::{
    DEFAULT_GC_GRACE_SECS, DEFAULT_GC_INTERVAL_SECS, GcConfig, QuotaConfig, RetentionConfig,
    RetentionRule,
};
pub use node::{NodeConfig, Role};
pub use pds::{AccountsConfig, DEFAULT_EVENTS_KEEP_SECS, PdsConfig};
pub use secret::{SecretError, check_owner_only, read_secret};
pub use size::{SizeError, parse_size};
pub use storage::{Backend, DEFAULT_REDIRECT_TTL_SECS, StorageConfig};

/// The file read when no `--config` is given, if it exists.
pub const SYSTEM_CONFIG: &str = "/etc/atcr/atcr.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address and port of the plain-HTTP listener. Port 0 picks a free port; the log says which.
    pub listen: SocketAddr,
    /// Serve plain HTTP on `listen`. Turn off to serve HTTPS only (`tls.enabled`).
    pub http: bool,
    /// Directory holding all state: the index (`index.redb`) and, with the filesystem backend,
    /// the blobs (`blobs/`).
    pub data_dir: PathBuf,
    /// Where blob bytes are kept.
    pub storage: StorageConfig,
    /// Upload sessions.
    pub uploads: UploadsConfig,
    /// Garbage collection of blobs no manifest uses.
    pub gc: GcConfig,
    /// Connection handling.
    pub server: ServerConfig,
    /// HTTPS.
    pub tls: TlsConfig,
    /// The embedded AT Protocol PDS.
    pub pds: PdsConfig,
    /// Accounts created by the node itself.
    pub accounts: AccountsConfig,
    /// Resolving users of other PDSes.
    pub identity: IdentityConfig,
    /// Rules that remove old tags and untagged manifests.
    pub retention: RetentionConfig,
    /// How much each user may store.
    pub quota: QuotaConfig,
    /// Holds on other machines that blobs go to.
    pub holds: HoldsConfig,
    /// Which roles this process runs.
    pub node: NodeConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            http: true,
            data_dir: PathBuf::from("./atcr-data"),
            storage: StorageConfig::default(),
            uploads: UploadsConfig::default(),
            gc: GcConfig::default(),
            server: ServerConfig::default(),
            tls: TlsConfig::default(),
            pds: PdsConfig::default(),
            accounts: AccountsConfig::default(),
            identity: IdentityConfig::default(),
            retention: RetentionConfig::default(),
            quota: QuotaConfig::default(),
            holds: HoldsConfig::default(),
            node: NodeConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadsConfig {
    /// An upload nobody wrote to for this many seconds is removed with its data. Default 86400.
    pub expire_after_secs: u64,
    /// How often, in seconds, expired uploads are looked for. Default 600.
    pub sweep_interval_secs: u64,
}

impl Default for UploadsConfig {
    fn default() -> Self {
        UploadsConfig {
            expire_after_secs: 86_400,
            sweep_interval_secs: 600,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// On SIGTERM/SIGINT, open requests may finish for this many seconds. Default 30.
    pub shutdown_drain_secs: u64,
    /// A client must send its request headers (and finish a TLS handshake) within this many
    /// seconds. Default 30.
    pub header_read_timeout_secs: u64,
    /// A connection with no request in flight for this many seconds is closed: HTTP/1
    /// keep-alive, HTTP/2, and one that never sent a byte; so is one whose writes make no
    /// progress for as long (a client that stopped reading a response). Default 60.
    pub idle_timeout_secs: u64,
    /// A request whose body sends no data for this many seconds fails (a stalled upload).
    /// Default 60.
    pub body_read_timeout_secs: u64,
    /// Client connections open at once; further clients wait in the listen backlog until one
    /// closes. Lowered at start to fit the open-file limit (`ulimit -n`), which the node then
    /// never reaches. WebSocket subscribers are limited apart (`pds.firehose_*`). Default 1024.
    pub max_connections: usize,
    /// A file holding a token (one line; owner-only permissions, or it is refused) that
    /// `/metrics` then requires as `Authorization: Bearer <token>`. Unset: `/metrics` is open
    /// to anyone who reaches the listener. Read at start.
    pub metrics_token_file: Option<PathBuf>,
}

/// Default of `server.idle_timeout_secs`.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;
/// Default of `server.body_read_timeout_secs`.
pub const DEFAULT_BODY_READ_TIMEOUT_SECS: u64 = 60;
/// Default of `server.max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            shutdown_drain_secs: 30,
            header_read_timeout_secs: 30,
            idle_timeout_secs: DEFAULT_IDLE_TIMEOUT_SECS,
            body_read_timeout_secs: DEFAULT_BODY_READ_TIMEOUT_SECS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            metrics_token_file: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Serve HTTPS on `tls.listen`. Default false.
    pub enabled: bool,
    /// Address and port of the HTTPS listener. Default 127.0.0.1:5443.
    pub listen: SocketAddr,
    /// PEM certificate chain (leaf first). Unset: the node runs its own CA in `<data_dir>/tls`
    /// and issues (and renews) a certificate for `names` and `ips`. Reloaded on SIGHUP.
    pub cert: Option<PathBuf>,
    /// PEM private key for `cert`.
    pub key: Option<PathBuf>,
    /// DNS names the node-issued certificate covers. Default `["localhost"]`.
    pub names: Vec<String>,
    /// IP addresses the node-issued certificate covers. Default `["127.0.0.1", "::1"]`.
    pub ips: Vec<std::net::IpAddr>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 5443)),
            cert: None,
            key: None,
            names: vec!["localhost".to_owned()],
            ips: vec![
                std::net::IpAddr::from([127, 0, 0, 1]),
                std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ],
        }
    }
}

impl Config {
    /// Parses configuration text.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(e),
        })
    }

    /// Checks what the types cannot. Used by `serve` and `check-config` alike.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.storage.check()?;
        self.retention.check()?;
        self.quota.default_bytes()?;
        self.identity.check()?;
        if self.uploads.expire_after_secs == 0 {
            return Err(ConfigError::Invalid(
                "uploads.expire_after_secs must be greater than 0".into(),
            ));
        }
        if self.uploads.sweep_interval_secs == 0 {
            return Err(ConfigError::Invalid(
                "uploads.sweep_interval_secs must be greater than 0".into(),
            ));
        }
        for (key, value) in [
            (
                "server.header_read_timeout_secs",
                self.server.header_read_timeout_secs,
            ),
            ("server.idle_timeout_secs", self.server.idle_timeout_secs),
            (
                "server.body_read_timeout_secs",
                self.server.body_read_timeout_secs,
            ),
            ("server.max_connections", self.server.max_connections as u64),
            (
                "pds.firehose_max_subscribers",
                self.pds.firehose_max_subscribers as u64,
            ),
            (
                "pds.firehose_max_per_address",
                self.pds.firehose_max_per_address as u64,
            ),
            (
                "pds.firehose_send_timeout_secs",
                self.pds.firehose_send_timeout_secs,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid(format!(
                    "{key} must be greater than 0"
                )));
            }
        }
        if !self.pds.enabled {
            return Err(ConfigError::Invalid(
                "pds.enabled = false is not supported yet: the registry stores its manifests and tags in the embedded PDS".into(),
            ));
        }
        if !self.http && !self.tls.enabled {
            return Err(ConfigError::Invalid(
                "with http = false, tls.enabled must be true".into(),
            ));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(ConfigError::Invalid(
                "tls.cert and tls.key go together".into(),
            ));
        }
        if self.tls.enabled
            && self.tls.cert.is_none()
            && self.tls.names.is_empty()
            && self.tls.ips.is_empty()
        {
            return Err(ConfigError::Invalid(
                "tls.names or tls.ips must name this node".into(),
            ));
        }
        if let Some(url) = &self.pds.plc_upstream
            && let Err(e) = crate::http_client::Target::parse(url, false)
        {
            return Err(ConfigError::Invalid(format!("pds.plc_upstream: {e}")));
        }
        if let Some(s) = &self.pds.scheme
            && s != "http"
            && s != "https"
        {
            return Err(ConfigError::Invalid(
                "pds.scheme must be http or https".into(),
            ));
        }
        if format!("x.{}", self.pds.handle_domain)
            .parse::<crate::atproto::Handle>()
            .is_err()
        {
            return Err(ConfigError::Invalid(
                "pds.handle_domain must be a domain name".into(),
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::Invalid("data_dir must not be empty".into()));
        }
        if let Some(path) = &self.accounts.admin_password_file {
            let password = read_secret(path)
                .map_err(|e| ConfigError::Invalid(format!("accounts.admin_password_file: {e}")))?;
            crate::pds::accounts::check_new_password(&password)
                .map_err(|e| ConfigError::Invalid(format!("accounts.admin_password_file: {e}")))?;
        }
        if let Some(path) = &self.server.metrics_token_file {
            read_secret(path)
                .map_err(|e| ConfigError::Invalid(format!("server.metrics_token_file: {e}")))?;
        }
        Ok(())
    }

    /// Where the HTTPS certificate comes from.
    #[must_use]
    pub fn cert_source(&self) -> crate::tls::CertSource {
        match (&self.tls.cert, &self.tls.key) {
            (Some(cert), Some(key)) => crate::tls::CertSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => crate::tls::CertSource::Managed {
                dir: self.data_dir.join("tls"),
                names: self.certificate_names(host_name()),
                ips: self.tls.ips.clone(),
            },
        }
    }

    /// The names the node-issued certificate covers: `tls.names` and this machine's host name,
    /// so that clients reaching the node by that name need no configuration.
    fn certificate_names(&self, host: Option<String>) -> Vec<String> {
        let mut names = self.tls.names.clone();
        if let Some(host) = host
            && !names.iter().any(|n| n.eq_ignore_ascii_case(&host))
        {
            names.push(host);
        }
        names
    }

    /// The PDS settings for a node listening on `port`.
    #[must_use]
    pub fn pds_settings(&self, port: u16) -> crate::pds::PdsSettings {
        let scheme = self.pds.scheme.clone().unwrap_or_else(|| {
            if self.tls.enabled && !self.http {
                "https"
            } else {
                "http"
            }
            .to_owned()
        });
        crate::pds::PdsSettings {
            public_host: self
                .pds
                .public_host
                .clone()
                .unwrap_or_else(|| format!("localhost:{port}")),
            scheme,
            handle_domain: self.pds.handle_domain.clone(),
            max_blob_bytes: self.pds.max_blob_bytes,
            max_temp_blob_bytes: self.pds.max_temp_blob_bytes,
            plc_upstream: self.pds.plc_upstream.clone(),
            firehose: crate::pds::subscribers::FirehoseLimits {
                max_subscribers: self.pds.firehose_max_subscribers,
                max_per_address: self.pds.firehose_max_per_address,
                send_timeout: std::time::Duration::from_secs(self.pds.firehose_send_timeout_secs),
            },
            plc_open_creation: self.pds.plc_open_creation,
            identity: self.identity.settings(),
        }
    }

    /// The directory of the filesystem blob backend.
    #[must_use]
    pub fn blob_root(&self) -> PathBuf {
        self.storage
            .root
            .clone()
            .unwrap_or_else(|| self.data_dir.join("blobs"))
    }
}

/// This machine's host name (Linux), when it is a usable DNS name.
#[must_use]
pub fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim().to_ascii_lowercase();
    let usable = !name.is_empty()
        && name.len() <= 253
        && name != "localhost"
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    usable.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the packages set differently from the built-in defaults: (section, key, value).
    const PACKAGE_SETTINGS: [(&str, &str, &str); 3] = [
        ("", "data_dir", "\"/var/lib/atcr\""),
        ("tls", "enabled", "true"),
        ("tls", "listen", "\"0.0.0.0:443\""),
    ];

    /// `packaging/atcr.toml`, the packages' /etc/atcr/atcr.toml, is `atcr.toml` with the
    /// package settings, each after a comment naming the default; nothing else differs.
    #[test]
    fn the_packaged_file_is_the_shipped_one_with_the_package_settings() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let shipped = std::fs::read_to_string(root.join("atcr.toml")).unwrap();
        let mut expected = Vec::new();
        let mut section = "";
        for line in shipped.split('\n') {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name;
            }
            let setting = line.split_once(" = ").and_then(|(key, default)| {
                PACKAGE_SETTINGS
                    .iter()
                    .find(|(s, k, _)| *s == section && *k == key)
                    .map(|(_, _, value)| (key, default, value))
            });
            match setting {
                Some((key, default, value)) => {
                    expected.push(format!("# Package setting (default: {default})."));
                    expected.push(format!("{key} = {value}"));
                }
                None => expected.push(line.to_owned()),
            }
        }
        let path = root.join("packaging/atcr.toml");
        let packaged = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            packaged,
            expected.join("\n"),
            "regenerate packaging/atcr.toml"
        );
        let config = Config::from_toml(&packaged, &path).unwrap();
        config.check().unwrap();
        assert_eq!(config.data_dir, Path::new("/var/lib/atcr"));
        assert!(config.tls.enabled);
    }

    #[test]
    fn the_certificate_names_this_host_too() {
        let c = Config::default();
        assert_eq!(c.certificate_names(None), ["localhost"]);
        assert_eq!(
            c.certificate_names(Some("registry.lan".into())),
            ["localhost", "registry.lan"]
        );
        assert_eq!(c.certificate_names(Some("localhost".into())), ["localhost"]);
    }

    #[test]
    fn shipped_file_parses_to_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("atcr.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let config = Config::from_toml(&text, &path).unwrap();
        assert_eq!(config, Config::default());
        config.check().unwrap();
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let p = Path::new("t.toml");
        assert!(matches!(
            Config::from_toml("listn = \"x\"", p),
            Err(ConfigError::Parse { .. })
        ));
        assert!(matches!(
            Config::from_toml("[storage]\nbackend = \"tape\"", p),
            Err(ConfigError::Parse { .. })
        ));
        let c = Config::from_toml("[uploads]\nexpire_after_secs = 0", p).unwrap();
        assert!(matches!(c.check(), Err(ConfigError::Invalid(_))));
        let c = Config::from_toml(
            "listen = \"127.0.0.1:0\"\n[storage]\nbackend = \"memory\"",
            p,
        )
        .unwrap();
        assert_eq!((c.listen.port(), c.storage.backend), (0, Backend::Memory));
    }

    #[test]
    fn storage_keys_fit_their_backend() {
        let p = Path::new("t.toml");
        let invalid = |text: &str| match Config::from_toml(text, p).unwrap().check() {
            Err(ConfigError::Invalid(m)) => m,
            other => panic!("{text}: {other:?}"),
        };
        assert!(invalid("[storage]\nbackend = \"s3\"").contains("storage.bucket"));
        assert!(invalid("[storage]\nbucket = \"b\"").contains("only to storage.backend"));
        assert!(invalid("[storage]\nredirect = true").contains("storage.redirect applies only"));
        assert!(
            invalid("[storage]\nbackend = \"s3\"\nbucket = \"b\"\naccess_key_id_file = \"k\"")
                .contains("go together")
        );
        assert!(
            invalid("[storage]\nbackend = \"s3\"\nbucket = \"b\"\nendpoint = \"nas:9000\"")
                .contains("http:// or https://")
        );
        assert!(
            invalid("[storage]\nbackend = \"s3\"\nbucket = \"b\"\nredirect_ttl_secs = 0")
                .contains("redirect_ttl_secs")
        );
        let c = Config::from_toml(
            "[storage]\nbackend = \"s3\"\nbucket = \"b\"\nendpoint = \"http://nas:9000\"\nroot = \"atcr\"\nregion = \"eu\"\nredirect = true",
            p,
        )
        .unwrap();
        c.check().unwrap();
        let s3 = c.storage.s3_settings().unwrap().unwrap();
        assert_eq!((s3.prefix.as_str(), s3.region.as_str()), ("atcr", "eu"));
        assert!(s3.path_style);
        assert_eq!(
            s3.redirect_ttl,
            Some(std::time::Duration::from_secs(DEFAULT_REDIRECT_TTL_SECS))
        );
        assert_eq!(Config::default().storage.s3_settings().unwrap(), None);
    }
}
