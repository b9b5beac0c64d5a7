//! `atcr tls trust-instructions`: how docker, podman and containerd come to trust this node.

use crate::config::Config;

pub fn trust_instructions(config: &Config) -> anyhow::Result<()> {
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
    let ca = config.data_dir.join("tls").join("ca.crt");
    if config.tls.cert.is_some() {
        let cert = config
            .tls
            .cert
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        return super::print(&format!(
            "This node serves the certificate in {cert}; clients trust it as they trust its issuer."
        ));
    }
    let ca_text = if let Some(fingerprint) = std::fs::read_to_string(&ca)
        .ok()
        .and_then(|pem| crate::server::tls::fingerprint(&pem))
    {
        format!(
            "{} (also served at https://{registry}/ca.crt)\nSHA-256 fingerprint: {fingerprint}",
            ca.display()
        )
    } else {
        format!("https://{registry}/ca.crt (created at first start with tls.enabled = true)")
    };
    super::print(&format!(
        "\
This node's certificate authority: {ca_text}

docker (on each client):
  sudo mkdir -p /etc/docker/certs.d/{registry}
  curl -k https://{registry}/ca.crt | sudo tee /etc/docker/certs.d/{registry}/ca.crt

podman, buildah, skopeo (on each client):
  sudo mkdir -p /etc/containers/certs.d/{registry}
  curl -k https://{registry}/ca.crt | sudo tee /etc/containers/certs.d/{registry}/ca.crt
  (or per command: --cert-dir DIR with DIR/ca.crt; skopeo: --src-cert-dir / --dest-cert-dir)

containerd (on each node):
  sudo mkdir -p /etc/containerd/certs.d/{registry}
  curl -k https://{registry}/ca.crt | sudo tee /etc/containerd/certs.d/{registry}/ca.crt
  printf 'server = \"https://{registry}\"\\n[host.\"https://{registry}\"]\\n  ca = \"/etc/containerd/certs.d/{registry}/ca.crt\"\\n' | sudo tee /etc/containerd/certs.d/{registry}/hosts.toml
  (with config_path = \"/etc/containerd/certs.d\" in the CRI registry section)

Check the fingerprint of what you fetched against the one above before trusting it:
  openssl x509 -noout -fingerprint -sha256 -in ca.crt"
    ))
}
