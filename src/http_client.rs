//! A small HTTP/1.1 JSON client over TCP or TLS (rustls, system or given CA certificates): for
//! `atcr login`, which talks to a node's XRPC API, for forwarding PLC operations to an
//! upstream directory, and for fetching the DID documents of service-auth issuers; and the
//! reqwest client of the S3 backend and of holds on other machines.
//!
//! Imports only `tls` (the crypto provider).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};

/// How long one exchange (connect, TLS, request, answer) may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting may take (reqwest clients).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The CA certificates of Debian and its derivatives.
const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A server: scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Connect only if every address the host resolves to is public (not loopback, private,
    /// link-local, …), and to those addresses: for servers a stranger names (see
    /// [`Target::public_only`]).
    pub public_only: bool,
}

impl Target {
    /// `https://host[:port]`, `http://host[:port]`, or `host[:port]` (HTTPS unless `insecure`).
    pub fn parse(s: &str, insecure: bool) -> anyhow::Result<Target> {
        let (https, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            (!insecure, s)
        };
        let rest = rest.trim_end_matches('/');
        let default_port = if https { 443 } else { 80 };
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.contains(']') || h.ends_with(']') => (
                h.to_owned(),
                p.parse().with_context(|| format!("bad port in {s:?}"))?,
            ),
            _ => (rest.to_owned(), default_port),
        };
        if host.is_empty() || host.contains('/') {
            bail!("give a host[:port], or a URL without a path: {s:?}");
        }
        Ok(Target {
            https,
            host,
            port,
            public_only: false,
        })
    }

    /// This target, reached only at public addresses: the host's addresses are resolved once,
    /// the connection refused when any is not public, and made to the addresses checked (a
    /// second lookup cannot swap in another). For servers named by a stranger (a DID document,
    /// a handle), so that naming one cannot make the node reach the machine itself or its LAN.
    #[must_use]
    pub fn public_only(mut self) -> Target {
        self.public_only = true;
        self
    }

    /// `host[:port]`, the port left out when it is the scheme's default (how registries are
    /// named in docker's configuration, and the `Host` header).
    #[must_use]
    pub fn authority(&self) -> String {
        if (self.https && self.port == 443) || (!self.https && self.port == 80) {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// `host` without its `:port` (`registry.lan:5000` → `registry.lan`, `[::1]:443` → `::1`).
#[must_use]
pub fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) && !name.contains(':') => {
            name
        }
        _ => host,
    }
}

/// A TLS client configuration trusting the CA certificates in `ca_file` (PEM), or the
/// system's.
pub fn tls_config(ca_file: Option<&Path>) -> anyhow::Result<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let path = ca_file.unwrap_or(Path::new(SYSTEM_CAS));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read CA certificates from {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad PEM in {}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        bail!("no CA certificate in {}", path.display());
    }
    Ok(
        rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A reqwest client over rustls with the ring provider (no aws-lc, no OpenSSL), with `tls` for
/// HTTPS (`None`: plain HTTP only, no CA certificates needed on the machine).
pub fn reqwest_client(
    tls: Option<rustls::ClientConfig>,
    follow_redirects: bool,
) -> anyhow::Result<reqwest::Client> {
    crate::tls::install_crypto_provider();
    let tls = match tls {
        Some(tls) => tls,
        None => rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    };
    let redirects = if follow_redirects {
        reqwest::redirect::Policy::default()
    } else {
        reqwest::redirect::Policy::none()
    };
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(redirects)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()?)
}

/// Sends `body` as JSON with `method` to `path` on `target` (over TLS with `tls` when the
/// target is HTTPS); returns the status and the answer as JSON (`Null` when it is not JSON).
pub async fn send_json(
    target: &Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
    method: http::Method,
    path: &str,
    bearer: Option<&str>,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, target.authority())
        .header(CONTENT_TYPE, "application/json");
    if let Some(t) = bearer {
        req = req.header(AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req.body(Full::new(Bytes::from(body.to_string())))?;
    let (status, _, body) = send(target, tls, req, usize::MAX, TIMEOUT).await?;
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// `GET`s `path` on `target` with the system's CA certificates; returns the status and the
/// answer as JSON (`Null` when it is not JSON). An answer longer than `limit` bytes, or an
/// exchange longer than `timeout`, is an error: for documents a stranger's server sends.
pub async fn get_json(
    target: &Target,
    path: &str,
    limit: usize,
    timeout: Duration,
) -> anyhow::Result<(u16, Value)> {
    let (status, body) = get_bytes(target, path, limit, timeout).await?;
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// [`get_json`] for answers that are not JSON (`/.well-known/atproto-did` is plain text): the
/// status and the raw answer, bounded by `limit` and `timeout` alike.
pub async fn get_bytes(
    target: &Target,
    path: &str,
    limit: usize,
    timeout: Duration,
) -> anyhow::Result<(u16, Bytes)> {
    let req = http::Request::builder()
        .method(http::Method::GET)
        .uri(path)
        .header(HOST, target.authority())
        .header(http::header::ACCEPT, "application/json, text/plain")
        .body(Full::new(Bytes::new()))?;
    let (status, _, body) = send(target, None, req, limit, timeout).await?;
    Ok((status, body))
}

/// [`send_json`] bounded like [`get_json`]: for `POST`s to a stranger's server (a remote
/// user's PDS), whose answer is at most `limit` bytes and which must answer within `timeout`.
/// `body` `None` sends none.
pub async fn post_json_bounded(
    target: &Target,
    path: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
    limit: usize,
    timeout: Duration,
) -> anyhow::Result<(u16, Value)> {
    let body = body.map(|b| ("application/json", Bytes::from(b.to_string())));
    post_bounded(target, path, bearer, body, limit, timeout).await
}

/// [`post_json_bounded`] with a body of any type: `(content type, bytes)`.
pub async fn post_bounded(
    target: &Target,
    path: &str,
    bearer: Option<&str>,
    body: Option<(&str, Bytes)>,
    limit: usize,
    timeout: Duration,
) -> anyhow::Result<(u16, Value)> {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .iter()
        .map(|a| (AUTHORIZATION.as_str(), a.as_str()))
        .collect();
    let post = http::Method::POST;
    let (status, _, body) =
        request_bounded(target, post, path, &headers, body, limit, timeout).await?;
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// A status, the headers and the body of an answer.
pub type Answer = (u16, http::HeaderMap, Bytes);

/// `method path` on `target` (a stranger's server, bounded like [`get_json`]) with extra
/// `headers` and an optional body `(content type, bytes)`: the whole answer, headers included
/// (for the `DPoP-Nonce` and `WWW-Authenticate` of OAuth servers).
pub async fn request_bounded(
    target: &Target,
    method: http::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, Bytes)>,
    limit: usize,
    timeout: Duration,
) -> anyhow::Result<Answer> {
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, target.authority());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = match body {
        Some((content_type, bytes)) => req
            .header(CONTENT_TYPE, content_type)
            .body(Full::new(bytes))?,
        None => req.body(Full::new(Bytes::new()))?,
    };
    send(target, None, req, limit, timeout).await
}

async fn send(
    target: &Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
    req: http::Request<Full<Bytes>>,
    limit: usize,
    timeout: Duration,
) -> anyhow::Result<Answer> {
    let exchange = async {
        let stream = connect(target, tls).await?;
        exchange(stream, req, limit).await
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .with_context(|| format!("{} did not answer in time", target.authority()))?
}

/// A byte stream to a server: TCP, or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Connects to `target` (over TLS with `tls`, else the system's CAs, when it is HTTPS); only
/// to public addresses when the target says so.
pub async fn connect(
    target: &Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> anyhow::Result<Box<dyn Io>> {
    let host = target.host.trim_matches(['[', ']']);
    let tcp = if target.public_only {
        let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host, target.port))
            .await
            .with_context(|| format!("cannot resolve {host}"))?
            .collect();
        if let Some(inner) = addrs.iter().find(|a| !is_public(a.ip())) {
            bail!("{host} resolves to {}, not a public address", inner.ip());
        }
        tokio::net::TcpStream::connect(&addrs[..]).await
    } else {
        tokio::net::TcpStream::connect((host, target.port)).await
    }
    .with_context(|| format!("cannot connect to {}", target.authority()))?;
    if !target.https {
        return Ok(Box::new(tcp));
    }
    let config = match tls {
        Some(config) => config.clone(),
        None => system_tls()?,
    };
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())?;
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .with_context(|| format!("TLS with {} failed", target.authority()))?;
    Ok(Box::new(stream))
}

/// The TLS configuration with the system's CA certificates, read once.
fn system_tls() -> anyhow::Result<Arc<rustls::ClientConfig>> {
    static SYSTEM: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    if let Some(config) = SYSTEM.get() {
        return Ok(config.clone());
    }
    let config = Arc::new(tls_config(None)?);
    Ok(SYSTEM.get_or_init(|| config).clone())
}

/// Whether `ip` is an address of the public Internet: not loopback, unspecified, private
/// (RFC 1918, unique local), shared (CGNAT), link-local (and cloud metadata), multicast,
/// broadcast, documentation, benchmarking or reserved; IPv4 in IPv6 judged as IPv4.
#[must_use]
pub fn is_public(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_unspecified()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (18..20).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            let nat64 = v6.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
            if nat64 {
                let [.., a, b] = v6.segments();
                let v4 = std::net::Ipv4Addr::from((u32::from(a) << 16) | u32::from(b));
                return is_public(IpAddr::V4(v4));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                // Site-local (deprecated, still routed on some LANs).
                || (first & 0xffc0) == 0xfec0
                // Local-use NAT64 (RFC 8215), translated to whatever the site chooses.
                || (first == 0x64 && v6.segments()[1] == 0xff9b && v6.segments()[2] == 1)
                // IPv4-compatible (`::a.b.c.d`, deprecated): taken for the IPv4 address.
                || (v6.segments()[..6] == [0; 6] && v6.to_ipv4().is_some_and(|v4| !is_public(IpAddr::V4(v4))))
                || (first == 0x2001 && v6.segments()[1] == 0x0db8))
        }
    }
}

async fn exchange<S>(
    stream: S,
    req: http::Request<Full<Bytes>>,
    limit: usize,
) -> anyhow::Result<Answer>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn);
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = http_body_util::Limited::new(resp.into_body(), limit)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading the answer failed: {e}"))?
        .to_bytes();
    driver.abort();
    Ok((status, headers, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("registry.lan", false).unwrap();
        assert!(t.https);
        assert_eq!((t.host.as_str(), t.port), ("registry.lan", 443));
        assert_eq!(t.authority(), "registry.lan");
        let t = Target::parse("127.0.0.1:5000", true).unwrap();
        assert!(!t.https);
        assert_eq!(t.authority(), "127.0.0.1:5000");
        let t = Target::parse("http://localhost:8080/", false).unwrap();
        assert!(!t.https);
        assert_eq!(t.port, 8080);
        assert_eq!(
            Target::parse("https://plc.directory", false).unwrap(),
            Target {
                https: true,
                host: "plc.directory".into(),
                port: 443,
                public_only: false,
            }
        );
        assert!(Target::parse("a/b", false).is_err());
        assert!(Target::parse("https://plc.example/sub", false).is_err());
        assert!(Target::parse("host:x", false).is_err());
    }

    #[test]
    fn only_internet_addresses_are_public() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
            "64:ff9b::101:101",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b:1::101:101",
            "fec0::1",
            "::10.0.0.1",
            "::127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    /// A target a stranger named is not reached on this machine, whatever the name.
    #[tokio::test]
    async fn public_only_targets_refuse_loopback() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        for host in ["127.0.0.1", "localhost"] {
            let target = Target::parse(&format!("http://{host}:{port}"), false)
                .unwrap()
                .public_only();
            let err = get_json(&target, "/", 1024, Duration::from_secs(2))
                .await
                .unwrap_err();
            assert!(
                format!("{err:#}").contains("not a public address"),
                "{err:#}"
            );
        }
    }

    #[test]
    fn hosts_without_ports() {
        assert_eq!(host_without_port("registry.lan:5000"), "registry.lan");
        assert_eq!(host_without_port("registry.lan"), "registry.lan");
        assert_eq!(host_without_port("[::1]:443"), "::1");
        assert_eq!(host_without_port("::1"), "::1");
    }
}
