//! `atcr doctor`: checks what keeps a node from starting or serving — file ownership and
//! permissions, ports, certificates, the clock, storage and the index — and says what to fix.
//! Exits 1 when any check fails.
//!
//! With the daemon running, the state checks run inside it through the admin socket; with it
//! stopped, this process opens the state (read for checking; nothing is repaired).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use time::OffsetDateTime;

use crate::admin::Op;
use crate::blobstore::BlobStore;
use crate::config::{Backend, Config, Layered};
use crate::doctor::{Finding, Level};
use crate::http::human_bytes;
use crate::server::tls::{CertSource, RENEW_BEFORE};

/// How long a probe of a listening port may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

pub fn run(layered: &Layered) -> anyhow::Result<()> {
    let config = &layered.config;
    let now = OffsetDateTime::now_utc();
    let mut findings = vec![Finding::ok(
        "config",
        "valid (`atcr config show` prints every value and where it came from)",
    )];
    findings.extend(files(config));
    let (running, state) = state(config);
    findings.extend(state);
    findings.extend(ports(config, running));
    findings.extend(tls(config, now));
    findings.extend(clock(now));
    findings.extend(storage(config));
    findings.sort_by_key(|f| std::cmp::Reverse(f.level));

    let mut lines = Vec::new();
    for f in &findings {
        let level = match f.level {
            Level::Ok => "ok",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        lines.push(format!("{level:<5} {:<8} {}", f.area, f.message));
        if let Some(fix) = &f.fix {
            lines.push(format!("{:15}fix: {fix}", ""));
        }
    }
    let count = |level| findings.iter().filter(|f| f.level == level).count();
    let failed = count(Level::Fail);
    lines.push(format!(
        "{} ok, {} warnings, {failed} failures",
        count(Level::Ok),
        count(Level::Warn)
    ));
    super::print(&lines.join("\n"))?;
    if failed > 0 {
        anyhow::bail!("{failed} checks failed");
    }
    Ok(())
}

/// The name of user `uid` from /etc/passwd, else the number.
fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                (fields.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
            })
        })
        .unwrap_or_else(|| uid.to_string())
}

/// Ownership and modes in the data directory: everything the service writes must belong to
/// the directory's owner (a command once run as root may have left root-owned files the service
/// cannot open), and private keys must be owner-only.
fn files(config: &Config) -> Vec<Finding> {
    let dir = &config.data_dir;
    let meta = match std::fs::metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return vec![Finding::warn(
                "files",
                format!("{} does not exist yet", dir.display()),
                "the first start creates it (so does the package's tmpfiles.d entry)",
            )];
        }
        Err(e) => {
            return vec![Finding::fail(
                "files",
                format!("cannot read {}: {e}", dir.display()),
                "run `atcr doctor` as root or as the service's user",
            )];
        }
    };
    let owner = meta.uid();
    let name = user_name(owner);
    let mut out = Vec::new();
    if meta.mode() & 0o002 != 0 {
        out.push(Finding::fail(
            "files",
            format!("{} is writable by every user", dir.display()),
            format!("chmod o-w {}", dir.display()),
        ));
    }
    let me = rustix::process::geteuid().as_raw();
    if me != owner && me != 0 {
        out.push(Finding::warn(
            "files",
            format!(
                "running as {}, but {} belongs to {name}",
                user_name(me),
                dir.display()
            ),
            format!(
                "run `atcr doctor` as root or as {name}: some checks need what only it may read"
            ),
        ));
    }
    let mut entries = Vec::new();
    for sub in [dir.clone(), dir.join("keys"), dir.join("tls")] {
        if let Ok(read) = std::fs::read_dir(&sub) {
            entries.extend(read.filter_map(Result::ok).map(|e| e.path()));
        }
    }
    let foreign: Vec<String> = entries
        .iter()
        .filter_map(|path| {
            let uid = std::fs::symlink_metadata(path).ok()?.uid();
            (uid != owner).then(|| format!("{} ({})", path.display(), user_name(uid)))
        })
        .collect();
    if !foreign.is_empty() {
        out.push(Finding::fail(
            "files",
            format!(
                "not owned by {name}, the data directory's owner: {}",
                foreign.join(", ")
            ),
            format!("chown -R {name}: {}", dir.display()),
        ));
    }
    let exposed: Vec<&PathBuf> = entries
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "key"))
        .filter(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o077 != 0)
        })
        .collect();
    for path in &exposed {
        out.push(Finding::fail(
            "files",
            format!("private key {} is readable by other users", path.display()),
            format!("chmod 600 {}", path.display()),
        ));
    }
    let mut open = super::private::exposed(dir);
    let blobs = config.blob_root();
    if config.storage.backend == Backend::Fs && !blobs.starts_with(dir) {
        open.extend(super::private::exposed(&blobs));
    }
    if !open.is_empty() {
        let names: Vec<String> = open.iter().map(|p| p.display().to_string()).collect();
        out.push(Finding::fail(
            "files",
            format!(
                "{} state entries are open to other users (group or world permissions): {}",
                open.len(),
                crate::doctor::examples(&names)
            ),
            format!(
                "chmod -R go-rwx {} (`atcr serve` does it at start)",
                dir.display()
            ),
        ));
    }
    if out.is_empty() {
        out.push(Finding::ok(
            "files",
            format!(
                "{}: everything owned by {name}, state and private keys owner-only",
                dir.display()
            ),
        ));
    }
    out
}

/// The state checks, through the daemon when it runs. Returns whether it runs.
fn state(config: &Config) -> (bool, Vec<Finding>) {
    let mut out = Vec::new();
    match crate::admin::call(&config.data_dir, &Op::Doctor) {
        Some(Ok(json)) => {
            out.push(Finding::ok("daemon", "running; its admin socket answers"));
            match serde_json::from_str::<Vec<Finding>>(&json) {
                Ok(found) => out.extend(found),
                Err(e) => out.push(Finding::fail(
                    "daemon",
                    format!("unreadable answer to the state checks: {e}"),
                    "run the same atcr version as the daemon",
                )),
            }
            (true, out)
        }
        Some(Err(e)) => {
            out.push(Finding::fail(
                "daemon",
                format!("{e:#}"),
                "run `atcr doctor` as root or as the service's user",
            ));
            (true, out)
        }
        None => {
            out.push(Finding::ok("daemon", "not running"));
            out.extend(offline_state(config));
            (false, out)
        }
    }
}

fn offline_state(config: &Config) -> Vec<Finding> {
    let dir = &config.data_dir;
    if !dir.join("index.redb").exists() || !dir.join("pds.redb").exists() {
        return vec![Finding::ok(
            "index",
            "no state yet: the first start creates it",
        )];
    }
    let checked = super::admin::runtime().and_then(|rt| {
        rt.block_on(async {
            let index = crate::oci::index::Index::open(&dir.join("index.redb"))?;
            let blobs = match config.storage.backend {
                Backend::Fs => BlobStore::filesystem(&config.blob_root())?,
                Backend::Memory => BlobStore::memory()?,
            };
            let pds = crate::pds::Pds::open(dir, config.pds_settings(config.listen.port()), blobs)
                .await?;
            anyhow::Ok(crate::doctor::check_state(&pds, &index, false).await)
        })
    });
    checked.unwrap_or_else(|e| {
        vec![Finding::fail(
            "index",
            format!("cannot open the state in {}: {e:#}", dir.display()),
            "if another process holds it, stop it; run `atcr doctor` as root or as the service's user",
        )]
    })
}

/// Where to reach a listener bound to `addr`: its loopback when it listens on every address.
fn reachable(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// With the daemon running: its listeners answer (and `/readyz` over HTTP says ready).
/// Stopped: the ports are free to bind.
fn ports(config: &Config, running: bool) -> Vec<Finding> {
    let mut listeners = Vec::new();
    if config.http {
        listeners.push(("http", config.listen));
    }
    if config.tls.enabled {
        listeners.push(("https", config.tls.listen));
    }
    listeners
        .into_iter()
        .map(|(scheme, addr)| {
            if addr.port() == 0 {
                Finding::ok(
                    "ports",
                    format!("{scheme} {addr}: a free port is chosen at start"),
                )
            } else if running {
                probe(scheme, addr)
            } else {
                bindable(scheme, addr)
            }
        })
        .collect()
}

fn bindable(scheme: &str, addr: SocketAddr) -> Finding {
    match TcpListener::bind(addr) {
        Ok(_) => Finding::ok("ports", format!("{scheme} {addr} is free")),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Finding::fail(
            "ports",
            format!("{scheme} {addr} is in use by another process"),
            format!(
                "stop it (`ss -ltnp 'sport = :{}'` names it) or listen elsewhere",
                addr.port()
            ),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Finding::fail(
            "ports",
            format!("{scheme} {addr}: binding a port below 1024 is not permitted"),
            "the systemd unit grants CAP_NET_BIND_SERVICE; elsewhere use a port of 1024 or more",
        ),
        Err(e) => Finding::fail(
            "ports",
            format!("{scheme} {addr} cannot be bound: {e}"),
            "listen on an address this host has",
        ),
    }
}

fn probe(scheme: &str, addr: SocketAddr) -> Finding {
    let target = reachable(addr);
    let mut stream = match TcpStream::connect_timeout(&target, PROBE_TIMEOUT) {
        Ok(stream) => stream,
        Err(e) => {
            return Finding::fail(
                "ports",
                format!("the daemon runs, but {scheme} {target} does not accept connections: {e}"),
                "check that the running daemon uses this configuration (its log names its listeners)",
            );
        }
    };
    if scheme != "http" {
        return Finding::ok("ports", format!("{scheme} {addr} accepts connections"));
    }
    let answer = (|| {
        stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
        stream.write_all(
            format!("GET /readyz HTTP/1.0\r\nHost: {target}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        std::io::Result::Ok(text)
    })();
    match answer {
        Ok(text) if text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200") => {
            Finding::ok("ports", format!("{scheme} {addr}: /readyz says ready"))
        }
        Ok(text) => {
            let body = text.split("\r\n\r\n").nth(1).unwrap_or("").trim();
            Finding::fail(
                "ports",
                format!("{scheme} {addr}: /readyz says not ready: {body}"),
                "see the storage findings and the daemon's log",
            )
        }
        Err(e) => Finding::fail(
            "ports",
            format!("{scheme} {addr}: no answer to /readyz: {e}"),
            "see the daemon's log",
        ),
    }
}

/// Certificates: valid now, far from expiry, naming the host clients use.
fn tls(config: &Config, now: OffsetDateTime) -> Vec<Finding> {
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

/// The clock: a plausible date, and synchronised when systemd says so.
fn clock(now: OffsetDateTime) -> Vec<Finding> {
    let mut out = Vec::new();
    if now.year() < 2025 {
        out.push(Finding::fail(
            "clock",
            format!("the clock says {now}, before this program was built"),
            "set the clock (timedatectl set-time, or NTP)",
        ));
    }
    let synced = std::process::Command::new("timedatectl")
        .args(["show", "-p", "NTPSynchronized", "--value"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match synced.as_deref() {
        Some("yes") => out.push(Finding::ok("clock", "synchronised (NTP)")),
        Some("no") => out.push(Finding::warn(
            "clock",
            "not synchronised with a time server",
            "timedatectl set-ntp true (or chrony against a LAN time server on an air-gapped network)",
        )),
        _ => {}
    }
    out
}

/// Blob storage: writable, with room above the configured floor.
fn storage(config: &Config) -> Vec<Finding> {
    if config.storage.backend == Backend::Memory {
        return vec![Finding::warn(
            "storage",
            "the memory backend keeps blobs only while the daemon runs",
            "set storage.backend = \"fs\" for a registry that keeps what is pushed",
        )];
    }
    let root = config.blob_root();
    if !root.exists() {
        return vec![Finding::ok(
            "storage",
            format!("{} is created at first start", root.display()),
        )];
    }
    let mut out = Vec::new();
    let probe = root.join(format!(".doctor-{}", std::process::id()));
    match std::fs::write(&probe, b"probe").and_then(|()| std::fs::remove_file(&probe)) {
        Ok(()) => out.push(Finding::ok(
            "storage",
            format!("{} is writable", root.display()),
        )),
        Err(e) => out.push(Finding::fail(
            "storage",
            format!("cannot write to {}: {e}", root.display()),
            format!(
                "give the service's user the directory (chown -R SERVICE_USER: {}), or free the filesystem",
                root.display()
            ),
        )),
    }
    let floor = config.storage.min_free_bytes;
    match crate::server::ops::free_bytes(&root) {
        Ok(free) if free < floor => out.push(Finding::fail(
            "storage",
            format!(
                "{} free, below storage.min_free_bytes ({}): pushes are refused with 507 and /readyz is red",
                human_bytes(free),
                human_bytes(floor)
            ),
            "free space on that filesystem or grow it",
        )),
        Ok(free) if free < floor.saturating_mul(2) => out.push(Finding::warn(
            "storage",
            format!("{} free, close to storage.min_free_bytes ({})", human_bytes(free), human_bytes(floor)),
            "free space on that filesystem or grow it",
        )),
        Ok(free) => out.push(Finding::ok(
            "storage",
            format!("{} free (floor {})", human_bytes(free), human_bytes(floor)),
        )),
        Err(e) => out.push(Finding::warn(
            "storage",
            format!("cannot tell the free space of {}: {e}", root.display()),
            "check the filesystem",
        )),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
