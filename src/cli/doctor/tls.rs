//! `atcr doctor`'s certificate checks: valid now, far from expiry, naming the host clients use.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use time::OffsetDateTime;

use crate::config::Config;
use crate::doctor::Finding;
use crate::tls::{CertSource, RENEW_BEFORE};

/// Certificates: valid now, far from expiry, naming the host clients use.
pub(super) fn tls(config: &Config, now: OffsetDateTime) -> Vec<Finding> {
    if !config.tls.enabled {
        let loopback_only = !config.http || config.listen.ip().is_loopback();
        return vec![if loopback_only {
            Finding::ok("tls", "off")
        } else {
            Finding::warn(
                "tls",
                format!("off, while serving plain HTTP on {}", config.listen),
                "turn on [tls] (`enabled = true`; the node makes its own CA), or every client must list this node as an insecure registry",
            )
        }];
    }
    let host = config
        .pds
        .public_host
        .as_deref()
        .map(|h| crate::http_client::host_without_port(h).to_owned());
    let mut identity = Vec::new();
    if host.is_none() {
        identity.push(Finding::warn(
            "tls",
            "pds.public_host is unset: the node's identity is did:web:localhost, which only this machine resolves",
            "set pds.public_host to the name clients use (before users are added: their DID documents name it)",
        ));
    }
    let mut found = match config.cert_source() {
        CertSource::Files { cert, key } => {
            let mut out = certificate(
                &cert,
                now,
                host.as_deref(),
                "replace the certificate file and send SIGHUP (systemctl reload atcr)",
            );
            if std::fs::metadata(&key).is_ok_and(|m| m.permissions().mode() & 0o004 != 0) {
                out.push(Finding::fail(
                    "tls",
                    format!(
                        "the private key {} is readable by every user",
                        key.display()
                    ),
                    format!("chmod o-r {}", key.display()),
                ));
            }
            out
        }
        CertSource::Managed { dir, names, ips } => {
            let ca = dir.join("ca.crt");
            let mut out = if ca.exists() {
                certificate(
                    &ca,
                    now,
                    None,
                    "move tls/ away and restart: a new CA is made (clients must trust it again)",
                )
            } else {
                vec![Finding::ok(
                    "tls",
                    "the node's CA is created at first start",
                )]
            };
            let covered = host.as_deref().is_none_or(|h| {
                names.iter().any(|n| n.eq_ignore_ascii_case(h))
                    || h.parse::<IpAddr>().is_ok_and(|ip| ips.contains(&ip))
            });
            if covered {
                out.push(Finding::ok(
                    "tls",
                    format!(
                        "server certificate for {}: issued by the node's CA at start, renewed {} days before expiry",
                        names
                            .iter()
                            .cloned()
                            .chain(ips.iter().map(ToString::to_string))
                            .collect::<Vec<_>>()
                            .join(", "),
                        RENEW_BEFORE.whole_days()
                    ),
                ));
            } else if let Some(h) = host {
                out.push(Finding::warn(
                    "tls",
                    format!("clients reach the node as {h}, which tls.names / tls.ips do not list: they will refuse its certificate"),
                    format!("add {h:?} to tls.names (or tls.ips) and restart"),
                ));
            }
            out
        }
    };
    found.extend(identity);
    found
}

/// One PEM certificate file: readable, valid at `now`, not about to expire, naming `host`.
fn certificate(path: &Path, now: OffsetDateTime, host: Option<&str>, renew: &str) -> Vec<Finding> {
    use x509_parser::extensions::GeneralName;
    let shown = path.display();
    let pem = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) => {
            return vec![Finding::fail(
                "tls",
                format!("cannot read {shown}: {e}"),
                "check tls.cert and the file's permissions",
            )];
        }
    };
    let parsed = x509_parser::pem::parse_x509_pem(&pem)
        .map_err(|e| e.to_string())
        .and_then(|(_, pem)| {
            let contents = pem.contents;
            x509_parser::parse_x509_certificate(&contents)
                .map(|(_, cert)| {
                    let validity = cert.validity();
                    let mut names = Vec::new();
                    if let Ok(Some(san)) = cert.subject_alternative_name() {
                        for name in &san.value.general_names {
                            match name {
                                GeneralName::DNSName(n) => names.push((*n).to_owned()),
                                GeneralName::IPAddress(b) => {
                                    if let Ok(v4) = <[u8; 4]>::try_from(*b) {
                                        names.push(IpAddr::from(v4).to_string());
                                    } else if let Ok(v6) = <[u8; 16]>::try_from(*b) {
                                        names.push(IpAddr::from(v6).to_string());
                                    }
                                }
                                _ => {}
                            }
                        }
                    }
                    (
                        validity.not_before.timestamp(),
                        validity.not_after.timestamp(),
                        names,
                    )
                })
                .map_err(|e| e.to_string())
        });
    let (not_before, not_after, names) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            return vec![Finding::fail(
                "tls",
                format!("{shown} is not a PEM certificate: {e}"),
                "point tls.cert at the certificate (PEM, leaf first)",
            )];
        }
    };
    let at = |t: i64| {
        OffsetDateTime::from_unix_timestamp(t)
            .map_or_else(|_| t.to_string(), |d| d.date().to_string())
    };
    let now_ts = now.unix_timestamp();
    let mut out = Vec::new();
    if now_ts < not_before {
        out.push(Finding::fail(
            "tls",
            format!("{shown} is not valid until {}", at(not_before)),
            "check the clock; or the certificate was issued for the future",
        ));
    } else if now_ts > not_after {
        out.push(Finding::fail(
            "tls",
            format!("{shown} expired on {}", at(not_after)),
            renew,
        ));
    } else if not_after - now_ts < RENEW_BEFORE.whole_seconds() {
        out.push(Finding::warn(
            "tls",
            format!(
                "{shown} expires in {} days ({})",
                (not_after - now_ts) / 86_400,
                at(not_after)
            ),
            renew,
        ));
    } else {
        out.push(Finding::ok(
            "tls",
            format!("{shown} valid until {}", at(not_after)),
        ));
    }
    if let Some(host) = host
        && !names.iter().any(|n| name_matches(n, host))
    {
        out.push(Finding::warn(
            "tls",
            format!(
                "{shown} names {} but clients reach the node as {host}",
                names.join(", ")
            ),
            "issue the certificate for that name too",
        ));
    }
    out
}

/// Whether a certificate name (possibly `*.domain`) covers `host`.
fn name_matches(name: &str, host: &str) -> bool {
    if name.eq_ignore_ascii_case(host) {
        return true;
    }
    match (name.strip_prefix("*."), host.split_once('.')) {
        (Some(domain), Some((_, rest))) => domain.eq_ignore_ascii_case(rest),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::doctor::Level;

    #[test]
    fn host_names_and_ports() {
        assert!(name_matches("*.lan", "registry.lan"));
        assert!(name_matches("Registry.LAN", "registry.lan"));
        assert!(!name_matches("*.lan", "a.b.lan"));
        assert!(!name_matches("other.lan", "registry.lan"));
    }

    /// A self-signed PEM certificate for `names`, valid from `from` for `days`.
    fn cert(dir: &Path, names: &[&str], from: OffsetDateTime, days: i64) -> PathBuf {
        let names: Vec<String> = names.iter().map(|&n| n.to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params.not_before = from;
        params.not_after = from + time::Duration::days(days);
        let key = rcgen::KeyPair::generate().unwrap();
        let path = dir.join(format!("{}.crt", rand::random::<u32>()));
        std::fs::write(&path, params.self_signed(&key).unwrap().pem()).unwrap();
        path
    }

    #[test]
    fn certificates_valid_expiring_expired_future_and_misnamed() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let day = time::Duration::days(1);
        let check = |names: &[&str], from, days, host| {
            certificate(&cert(dir.path(), names, from, days), now, host, "renew it")
        };
        let levels = |found: &[Finding]| found.iter().map(|f| f.level).collect::<Vec<_>>();

        let fine = check(&["registry.lan"], now - day, 90, Some("registry.lan"));
        assert_eq!(levels(&fine), [Level::Ok], "{fine:?}");
        let soon = check(&["*.lan"], now - 80 * day, 90, Some("registry.lan"));
        assert_eq!(levels(&soon), [Level::Warn], "{soon:?}");
        assert!(soon[0].message.contains("expires in 10 days"), "{soon:?}");
        let expired = check(&["registry.lan"], now - 100 * day, 90, None);
        assert_eq!(levels(&expired), [Level::Fail]);
        assert!(expired[0].message.contains("expired on"));
        let future = check(&["registry.lan"], now + day, 90, None);
        assert!(future[0].message.contains("not valid until"), "{future:?}");
        let misnamed = check(
            &["other.lan", "10.0.0.5"],
            now - day,
            90,
            Some("registry.lan"),
        );
        assert_eq!(levels(&misnamed), [Level::Ok, Level::Warn]);
        assert!(
            misnamed[1]
                .message
                .contains("names other.lan, 10.0.0.5 but clients reach the node as registry.lan"),
            "{misnamed:?}"
        );
        let garbage = dir.path().join("garbage.crt");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let found = certificate(&garbage, now, None, "");
        assert_eq!(levels(&found), [Level::Fail]);
        assert!(found[0].message.contains("is not a PEM certificate"));
    }
}
