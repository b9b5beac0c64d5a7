//! HTTPS: certificates from PEM files (reloadable), or a node-managed CA that issues and renews
//! the server certificate itself.
//!
//! The managed CA lives in `<data_dir>/tls/` (`ca.key` mode 0600, `ca.crt`). Its distinguished
//! name is derived from its key, so the CA can sign again after a restart without parsing its own
//! certificate. The server certificate is issued at every start and again when it nears expiry;
//! it is never written to disk.
//!
//! Imports only `oci` (digests for fingerprints); `server` terminates TLS with what it builds.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use time::{Duration, OffsetDateTime};

/// How long an issued server certificate is valid.
pub const SERVER_CERT_LIFETIME: Duration = Duration::days(90);
/// A server certificate is replaced when less than this remains.
pub const RENEW_BEFORE: Duration = Duration::days(30);
const CA_LIFETIME: Duration = Duration::days(3650);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where the certificate comes from.
#[derive(Debug, Clone)]
pub enum CertSource {
    /// PEM files given by the operator; re-read on [`CertStore::reload`] (SIGHUP).
    Files { cert: PathBuf, key: PathBuf },
    /// The node's own CA in `dir`, issuing for these names and addresses.
    Managed {
        dir: PathBuf,
        names: Vec<String>,
        ips: Vec<IpAddr>,
    },
}

struct ManagedCa {
    key: KeyPair,
    params: CertificateParams,
    pem: String,
}

/// The certificate the HTTPS listener presents, replaceable while serving.
pub struct CertStore {
    source: CertSource,
    ca: Option<ManagedCa>,
    current: RwLock<(Arc<CertifiedKey>, Option<OffsetDateTime>)>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// The SHA-256 fingerprint of the (first) certificate in `pem`, as `openssl x509 -fingerprint
/// -sha256` prints it (`AB:CD:…`).
#[must_use]
pub fn fingerprint(pem: &str) -> Option<String> {
    use sha2::{Digest, Sha256};
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    let hash = Sha256::digest(der.as_ref());
    Some(
        hash.iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// The crypto provider atcr uses everywhere (ring: no C toolchain beyond what is there).
#[must_use]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process's default rustls provider, once (later calls do nothing). The S3
/// backend's HTTP client (reqwest built without a provider of its own, so that aws-lc is not)
/// needs a default, as does every reqwest client in the same process.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Fails only when a provider is installed already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl CertStore {
    /// Loads PEM files, or opens (creating on first use) the managed CA and issues a server
    /// certificate valid from `now`.
    pub fn load(source: CertSource, now: OffsetDateTime) -> Result<Arc<CertStore>, TlsError> {
        let (ca, current) = match &source {
            CertSource::Files { cert, key } => (None, (Arc::new(load_pem(cert, key)?), None)),
            CertSource::Managed { dir, names, ips } => {
                let ca = ManagedCa::open(dir, now)?;
                let (key, not_after) = ca.issue(names, ips, now)?;
                (Some(ca), (Arc::new(key), Some(not_after)))
            }
        };
        Ok(Arc::new(CertStore {
            source,
            ca,
            current: RwLock::new(current),
        }))
    }

    /// The managed CA's certificate (PEM), for clients to trust. `None` with operator files.
    #[must_use]
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca.as_ref().map(|ca| ca.pem.as_str())
    }

    /// When the managed server certificate expires.
    #[must_use]
    pub fn not_after(&self) -> Option<OffsetDateTime> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .1
    }

    /// Issues a new managed server certificate if the current one expires within
    /// [`RENEW_BEFORE`] of `now`. Returns whether it did.
    pub fn renew_if_due(&self, now: OffsetDateTime) -> Result<bool, TlsError> {
        let (Some(ca), CertSource::Managed { names, ips, .. }) = (&self.ca, &self.source) else {
            return Ok(false);
        };
        if self.not_after().is_some_and(|end| end - now > RENEW_BEFORE) {
            return Ok(false);
        }
        let (key, not_after) = ca.issue(names, ips, now)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) =
            (Arc::new(key), Some(not_after));
        tracing::info!(%not_after, "server certificate renewed");
        Ok(true)
    }

    /// Re-reads operator-supplied PEM files; the old certificate stays if they are unusable.
    pub fn reload(&self) -> Result<(), TlsError> {
        if let CertSource::Files { cert, key } = &self.source {
            let loaded = load_pem(cert, key)?;
            *self.current.write().unwrap_or_else(PoisonError::into_inner) =
                (Arc::new(loaded), None);
            tracing::info!(cert = %cert.display(), "certificate reloaded");
        }
        Ok(())
    }

    /// A rustls server configuration presenting this store's certificate (HTTP/2 and 1.1).
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .0
                .clone(),
        )
    }
}

fn load_pem(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let pem_err = |path: &Path, reason: String| TlsError::Pem {
        path: path.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_err(cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_err(cert, "no certificate in file".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, e.to_string()))?;
    Ok(CertifiedKey::from_der(chain, key_der, &provider())?)
}

impl ManagedCa {
    fn params(key: &KeyPair, now: OffsetDateTime) -> CertificateParams {
        let fingerprint = crate::oci::digest::Digest::of(
            crate::oci::digest::Algorithm::Sha256,
            key.public_key_raw(),
        );
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "atcr");
        dn.push(
            DnType::CommonName,
            format!("atcr local CA {}", &fingerprint.hex()[..16]),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - Duration::hours(1);
        params.not_after = now + CA_LIFETIME;
        params
    }

    fn open(dir: &Path, now: OffsetDateTime) -> Result<ManagedCa, TlsError> {
        let key_path = dir.join("ca.key");
        let cert_path = dir.join("ca.crt");
        if key_path.exists() && cert_path.exists() {
            let key_pem = std::fs::read_to_string(&key_path).map_err(io_err(&key_path))?;
            let key = KeyPair::from_pem(&key_pem)?;
            let pem = std::fs::read_to_string(&cert_path).map_err(io_err(&cert_path))?;
            let params = Self::params(&key, now);
            return Ok(ManagedCa { key, params, pem });
        }
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let key = KeyPair::generate()?;
        let params = Self::params(&key, now);
        let pem = params.self_signed(&key)?.pem();
        write_private(&key_path, key.serialize_pem().as_bytes())?;
        std::fs::write(&cert_path, &pem).map_err(io_err(&cert_path))?;
        tracing::info!(ca = %cert_path.display(), "created the node's certificate authority");
        Ok(ManagedCa { key, params, pem })
    }

    fn issue(
        &self,
        names: &[String],
        ips: &[IpAddr],
        now: OffsetDateTime,
    ) -> Result<(CertifiedKey, OffsetDateTime), TlsError> {
        let mut params = CertificateParams::new(names.to_vec())?;
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().map_or("atcr", String::as_str),
        );
        params.not_before = now - Duration::hours(1);
        params.not_after = now + SERVER_CERT_LIFETIME;
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        let ca_der =
            CertificateDer::from_pem_slice(self.pem.as_bytes()).map_err(|e| TlsError::Pem {
                path: "ca.crt".into(),
                reason: e.to_string(),
            })?;
        let key_der = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| TlsError::Pem {
            path: "server key".into(),
            reason: e.to_string(),
        })?;
        let certified =
            CertifiedKey::from_der(vec![cert.der().clone(), ca_der], key_der, &provider())?;
        Ok((certified, params.not_after))
    }
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn managed(dir: &Path) -> CertSource {
        CertSource::Managed {
            dir: dir.to_owned(),
            names: vec!["localhost".into()],
            ips: vec!["127.0.0.1".parse().unwrap()],
        }
    }

    #[test]
    fn managed_ca_persists_and_renews_near_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let store = CertStore::load(managed(dir.path()), t0).unwrap();
        let ca = store.ca_pem().unwrap().to_owned();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("ca.key"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(store.not_after(), Some(t0 + SERVER_CERT_LIFETIME));

        // Not due yet, then due.
        assert!(!store.renew_if_due(t0 + Duration::days(59)).unwrap());
        let later = t0 + Duration::days(61);
        assert!(store.renew_if_due(later).unwrap());
        assert_eq!(store.not_after(), Some(later + SERVER_CERT_LIFETIME));

        // The same CA after a restart.
        let again = CertStore::load(managed(dir.path()), later).unwrap();
        assert_eq!(again.ca_pem().unwrap(), ca);
    }

    #[test]
    fn operator_files_load_and_bad_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["example.test".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let store = CertStore::load(
            CertSource::Files {
                cert: cert_path.clone(),
                key: key_path.clone(),
            },
            OffsetDateTime::now_utc(),
        )
        .unwrap();
        assert!(store.ca_pem().is_none());
        store.server_config().unwrap();
        store.reload().unwrap();

        std::fs::write(&cert_path, "garbage").unwrap();
        assert!(
            store.reload().is_err(),
            "a broken file keeps the old certificate"
        );
        let other = KeyPair::generate().unwrap();
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, other.serialize_pem()).unwrap();
        assert!(
            CertStore::load(
                CertSource::Files {
                    cert: cert_path,
                    key: key_path
                },
                OffsetDateTime::now_utc()
            )
            .is_err()
        );
    }
}
