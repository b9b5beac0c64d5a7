//! `atcr doctor`: checks what keeps a node from starting or serving — file ownership and
//! permissions, ports, certificates, the clock, storage and the index — and says what to fix.
//! Exits 1 when any check fails.
//!
//! With the daemon running, the state checks run inside it through the admin socket; with it
//! stopped, this process opens the state (read for checking; nothing is repaired).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::time::Duration;

use time::OffsetDateTime;

use crate::admin::Op;
use crate::config::{Backend, Config, Layered};
use crate::doctor::{Finding, Level};
use crate::http::human_bytes;

/// How long a probe of a listening port may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

mod holds;
mod s3;
mod tls;

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
    findings.extend(tls::tls(config, now));
    findings.extend(clock(now));
    findings.extend(storage(config));
    findings.extend(holds::holds(config));
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
            let index = crate::appview::index::Index::open(&dir.join("index.redb"))?;
            let blobs = super::serve::blob_store(config)?;
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
    if config.storage.backend == Backend::S3 {
        return s3::storage(config);
    }
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
    match crate::server::storage::free_bytes(&root) {
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
