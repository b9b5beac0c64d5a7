//! `atcr login <host>`: asks for the account password once, creates an app password through
//! the node's XRPC API (`createSession`, then `createAppPassword`), and keeps it in the
//! credential helper's store, so docker, podman and skopeo log in with it through
//! `docker-credential-atcr` and the account password is never stored.

use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};

use super::credential::{Credential, CredentialStore};

/// Where the node is.
struct Target {
    https: bool,
    host: String,
    port: u16,
}

impl Target {
    fn parse(s: &str, insecure: bool) -> anyhow::Result<Target> {
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
            bail!("give the registry as host[:port]: {s:?}");
        }
        Ok(Target { https, host, port })
    }

    /// `host:port` as registries are named in docker's configuration.
    fn registry(&self) -> String {
        if (self.https && self.port == 443) || (!self.https && self.port == 80) {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn tls_config(ca_file: Option<&std::path::Path>) -> anyhow::Result<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let path = ca_file.map_or_else(
        || std::path::PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
        std::path::Path::to_owned,
    );
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
        .with_context(|| format!("cannot read CA certificates from {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad PEM in {}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        bail!("no CA certificate in {}", path.display());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

async fn exchange<S>(stream: S, req: http::Request<Full<Bytes>>) -> anyhow::Result<(u16, Value)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn);
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    driver.abort();
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok((status, value))
}

async fn post(
    target: &Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
    nsid: &str,
    bearer: Option<&str>,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    let mut req = http::Request::post(format!("/xrpc/{nsid}"))
        .header(HOST, target.registry())
        .header(CONTENT_TYPE, "application/json");
    if let Some(t) = bearer {
        req = req.header(AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req.body(Full::new(Bytes::from(body.to_string())))?;
    let tcp = tokio::net::TcpStream::connect((target.host.trim_matches(['[', ']']), target.port))
        .await
        .with_context(|| format!("cannot connect to {}", target.registry()))?;
    match tls {
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from(
                target.host.trim_matches(['[', ']']).to_owned(),
            )?;
            let stream = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .with_context(|| {
                    format!(
                        "TLS with {} failed (a node with its own CA: pass --ca-file with its /ca.crt)",
                        target.registry()
                    )
                })?;
            exchange(stream, req).await
        }
        None => exchange(tcp, req).await,
    }
}

fn xrpc_error(what: &str, status: u16, body: &Value) -> anyhow::Error {
    anyhow::anyhow!(
        "{what} failed ({status}): {} {}",
        body["error"].as_str().unwrap_or(""),
        body["message"].as_str().unwrap_or("")
    )
}

/// What `atcr login` was asked.
pub struct LoginArgs<'a> {
    pub registry: &'a str,
    pub username: &'a str,
    pub password_stdin: bool,
    pub insecure: bool,
    pub ca_file: Option<&'a std::path::Path>,
}

pub fn run(args: &LoginArgs<'_>) -> anyhow::Result<()> {
    let target = Target::parse(args.registry, args.insecure)?;
    let password = super::admin::read_password(args.password_stdin)?;
    let tls = if target.https {
        Some(Arc::new(tls_config(args.ca_file)?))
    } else {
        None
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (handle, app_password, name) = runtime.block_on(async {
        let (status, session) = post(
            &target,
            tls.as_ref(),
            "com.atproto.server.createSession",
            None,
            &json!({"identifier": args.username, "password": password}),
        )
        .await?;
        if status != 200 {
            return Err(xrpc_error("login", status, &session));
        }
        let jwt = session["accessJwt"].as_str().unwrap_or_default().to_owned();
        let handle = session["handle"]
            .as_str()
            .unwrap_or(args.username)
            .to_owned();
        let host = hostname();
        let name = format!(
            "atcr login {host} {}",
            crate::atproto::Datetime::now().as_str()
        );
        let (status, created) = post(
            &target,
            tls.as_ref(),
            "com.atproto.server.createAppPassword",
            Some(&jwt),
            &json!({"name": name}),
        )
        .await?;
        if status != 200 {
            return Err(xrpc_error("creating an app password", status, &created));
        }
        let app_password = created["password"]
            .as_str()
            .context("the node answered no app password")?
            .to_owned();
        // The session was only needed for this; end it.
        let _ = post(
            &target,
            tls.as_ref(),
            "com.atproto.server.deleteSession",
            session["refreshJwt"].as_str(),
            &json!({}),
        )
        .await;
        Ok::<_, anyhow::Error>((handle, app_password, name))
    })?;
    let store = CredentialStore::from_env()?;
    store.store(
        &target.registry(),
        Credential {
            username: handle.clone(),
            secret: app_password,
        },
    )?;
    super::print(&format!(
        "Login Succeeded: {handle} on {registry} with app password {name:?}, kept in {path}.\n\
         Have docker, podman and skopeo use it: add \"credHelpers\": {{\"{registry}\": \"atcr\"}} to \
         ~/.docker/config.json (or containers' auth.json), with docker-credential-atcr on PATH.",
        registry = target.registry(),
        path = store.path().display()
    ))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "this machine".into(), |s| s.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("registry.lan", false).unwrap();
        assert!(t.https);
        assert_eq!((t.host.as_str(), t.port), ("registry.lan", 443));
        assert_eq!(t.registry(), "registry.lan");
        let t = Target::parse("127.0.0.1:5000", true).unwrap();
        assert!(!t.https);
        assert_eq!(t.registry(), "127.0.0.1:5000");
        let t = Target::parse("http://localhost:8080/", false).unwrap();
        assert!(!t.https);
        assert_eq!(t.port, 8080);
        assert!(Target::parse("a/b", false).is_err());
        assert!(Target::parse("host:x", false).is_err());
    }
}
