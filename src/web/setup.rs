//! The setup page: logging in, the credential helper, trusting the node's CA, and, when the
//! node is reached over plain HTTP, listing it as an insecure registry.

use http::{Response, StatusCode};
use maud::{Markup, html};

use super::{Cx, command};
use crate::http::body::Body;

pub(super) fn page(cx: &Cx<'_>) -> Response<Body> {
    let host = cx.host.as_str();
    let fingerprint = cx.site.ca_fingerprint;
    super::page(
        StatusCode::OK,
        "Setting up a client",
        cx,
        html! {
            h1 { "Setting up a client" }
            h2 { "Log in" }
            p { "With your account, or an app password:" }
            (command(&format!("docker login {host}")))
            @if cx.https {
                p.muted { "podman login, buildah login and skopeo login take the same arguments." }
            } @else {
                (plain_http_note())
                (command(&format!("podman login --tls-verify=false {host}")))
            }
            h2 { "The credential helper" }
            p {
                "So that no account password is kept on the client, "
                code { "atcr login" }
                " asks for it once, creates an app password, and stores that for "
                code { "docker-credential-atcr" }
                " (installed with the atcr package):"
            }
            @if cx.https {
                (command(&format!("atcr login {host} -u <your user> --password-stdin")))
            } @else {
                (command(&format!("atcr login --insecure {host} -u <your user> --password-stdin")))
            }
            p { "Then have docker (" code { "~/.docker/config.json" } ") or podman (" code { "auth.json" } ") use it:" }
            (command(&format!("{{\"credHelpers\": {{\"{host}\": \"atcr\"}}}}")))
            h2 { "Trusting this node's certificate" }
            @if let Some(fingerprint) = &fingerprint {
                p {
                    "This node signs its HTTPS certificate with its own certificate authority, "
                    a href="/ca.crt" { "ca.crt" } ". Its SHA-256 fingerprint:"
                }
                pre { code { (fingerprint) } }
                p { "Install it for podman, buildah and skopeo (docker: /etc/docker/certs.d; containerd: /etc/containerd/certs.d):" }
                (command(&format!("sudo mkdir -p /etc/containers/certs.d/{host}\ncurl -fsSk https://{host}/ca.crt | sudo tee /etc/containers/certs.d/{host}/ca.crt")))
                p.muted { "Compare the fingerprint of what you fetched with the one above before trusting it:" }
                (command(&format!("openssl x509 -noout -fingerprint -sha256 -in /etc/containers/certs.d/{host}/ca.crt")))
            } @else {
                p { "This node does not run its own certificate authority: it is reached over plain HTTP, or with a certificate your clients already trust." }
            }
            @if !cx.https {
                h2 { "Plain HTTP: listing this node as an insecure registry" }
                p {
                    "This page came over plain HTTP, so clients must be told not to expect HTTPS from "
                    code { (host) } ". For podman and buildah, once for every command:"
                }
                (command(&format!("sudo mkdir -p /etc/containers/registries.conf.d\nprintf '[[registry]]\\nlocation = \"{host}\"\\ninsecure = true\\n' | sudo tee /etc/containers/registries.conf.d/atcr.conf")))
                p {
                    "skopeo ignores that entry: it takes the flags on each command ("
                    code { "--src-tls-verify=false" } ", " code { "--dest-tls-verify=false" } " for copies):"
                }
                (command(&format!("skopeo inspect --tls-verify=false docker://{host}/<your user>/<image>:<tag>")))
                p {
                    "For docker (not needed for 127.0.0.0/8, which it already allows), add the host to "
                    code { "/etc/docker/daemon.json" } " and restart the daemon:"
                }
                (command(&format!("{{\"insecure-registries\": [\"{host}\"]}}")))
                p.muted {
                    "containerd's " code { "ctr" } " takes " code { "--plain-http" } ". "
                    "Anyone between a client and this node can read and change what passes over plain HTTP: turn on "
                    code { "[tls]" } " in the node's configuration for anything beyond a trusted network."
                }
            }
        },
    )
}

/// What a page reached over plain HTTP says before podman's commands.
pub(super) fn plain_http_note() -> Markup {
    html! {
        p.muted {
            "This node is reached over plain HTTP. docker allows that for 127.0.0.0/8 only (any other host must be in its "
            code { "insecure-registries" }
            "); podman, buildah and skopeo need "
            code { "--tls-verify=false" }
            " (or the insecure entry shown on "
            a href="/setup" { "Setup" }
            "):"
        }
    }
}
