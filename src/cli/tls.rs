//! `atcr tls trust-instructions`: how docker, podman and containerd come to trust this node.

use anyhow::bail;

use crate::config::Config;

pub fn trust_instructions(config: &Config) -> anyhow::Result<()> {
    if !config.tls.enabled {
        bail!(
            "TLS is off on this node (tls.enabled = false), so there is no certificate to \
             trust: clients reach it over plain HTTP. To serve HTTPS, set `enabled = true` in \
             the [tls] section of the configuration (or ATCR_TLS_ENABLED=true) and restart \
             atcr; then run this command again"
        );
    }
    let port = config.tls.listen.port();
    // The name clients use: the public host, else this machine's name (the node's certificate
    // covers it), else the first configured name or address.
    let host = config
        .pds
        .public_host
        .as_deref()
        .map(|h| crate::http_client::host_without_port(h).to_owned())
        .or_else(crate::config::host_name)
        .or_else(|| config.tls.names.first().cloned())
        .or_else(|| config.tls.ips.first().map(ToString::to_string))
        .unwrap_or_else(|| "localhost".into());
    // Clients name a registry on 443 without the port (and so do their certs.d directories).
    let registry = if port == 443 {
        host
    } else {
        format!("{host}:{port}")
    };
    if let Some(cert) = &config.tls.cert {
        return super::print(&format!(
            "This node serves the certificate in {}; clients trust it as they trust its issuer.",
            cert.display()
        ));
    }
    let ca = config.data_dir.join("tls").join("ca.crt");
    let fingerprint = std::fs::read_to_string(&ca)
        .ok()
        .and_then(|pem| crate::tls::fingerprint(&pem));
    let (ca_text, check) = if let Some(fingerprint) = fingerprint {
        (
            format!(
                "{} (also served at https://{registry}/ca.crt)\nSHA-256 fingerprint: {fingerprint}",
                ca.display()
            ),
            "Check the fingerprint of what you fetched against the one above before using it",
        )
    } else {
        (
            format!(
                "https://{registry}/ca.crt, once it exists: the first start with TLS on creates \
                 it in {}.\nIts SHA-256 fingerprint is printed here after that start: run this \
                 command again then.",
                ca.display()
            ),
            "Check the fingerprint of what you fetched against the one this command prints \
             once the CA exists",
        )
    };
    let fetch = |dir: &str| {
        format!(
            "  sudo mkdir -p {dir}/{registry}\n  \
             sudo curl -fsSk https://{registry}/ca.crt -o {dir}/{registry}/ca.crt"
        )
    };
    super::print(&format!(
        "\
This node's certificate authority: {ca_text}

docker (on each client):
{docker}

podman, buildah, skopeo (on each client):
{podman}
  (or per command: --cert-dir DIR with DIR/ca.crt; skopeo: --src-cert-dir / --dest-cert-dir)

containerd (on each node):
{containerd}
  printf 'server = \"https://{registry}\"\\n[host.\"https://{registry}\"]\\n  ca = \"/etc/containerd/certs.d/{registry}/ca.crt\"\\n' | sudo tee /etc/containerd/certs.d/{registry}/hosts.toml
  (the CRI plugin, for kubelet and crictl, reads it with config_path = \"/etc/containerd/certs.d\" in its registry section;
  ctr reads it only when told: ctr image pull --hosts-dir /etc/containerd/certs.d {registry}/<image>)

{check} (the same command for the podman and containerd copies):
  openssl x509 -noout -fingerprint -sha256 -in /etc/docker/certs.d/{registry}/ca.crt

Test from another machine, by the name above: docker skips certificate checks for 127.0.0.0/8
(an insecure registry by default), so a pull on the node itself proves nothing.",
        docker = fetch("/etc/docker/certs.d"),
        podman = fetch("/etc/containers/certs.d"),
        containerd = fetch("/etc/containerd/certs.d"),
    ))
}
