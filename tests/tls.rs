//! HTTPS with the node-managed CA and with operator certificates, checked by curl and skopeo.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use atcr::blobstore::{Algorithm, Digest};

fn client_tests_enabled() -> bool {
    if std::env::var_os("ATCR_SKIP_CLIENT_TESTS").is_some() {
        return false;
    }
    for tool in ["curl", "skopeo", "tar", "gzip"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "{tool} is required (scripts/test installs it; ATCR_SKIP_CLIENT_TESTS=1 skips)"
        );
    }
    true
}

/// `atcr serve` with a config file; lines of its log arrive on a channel.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    addr: String,
    /// The first start's password of `admin`.
    password: String,
}

impl Server {
    fn start(config: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_atcr"))
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut server = Server {
            child,
            lines,
            addr: String::new(),
            password: String::new(),
        };
        let line = server.wait_for("scheme=https");
        let addr = line
            .split("addr=")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        addr.clone_into(&mut server.addr);
        let line = server.wait_for("password=");
        line.split("password=")
            .nth(1)
            .and_then(|p| p.split_whitespace().next())
            .unwrap()
            .clone_into(&mut server.password);
        server
    }

    fn wait_for(&self, needle: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(std::time::Duration::from_mins(1))
                .expect("server log ended");
            if line.contains(needle) {
                return line;
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn write(path: &Path, bytes: &[u8]) -> Digest {
    std::fs::write(path, bytes).unwrap();
    Digest::of(Algorithm::Sha256, bytes)
}

/// A one-layer OCI image layout at `dir`, tagged `t`.
fn oci_layout(dir: &Path) -> PathBuf {
    let layout = dir.join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(rootfs.join("etc/greeting"), b"hello over https\n").unwrap();
    let tar = dir.join("layer.tar");
    assert!(
        Command::new("tar")
            .args(["--mtime=@0", "--owner=0", "--group=0", "-C"])
            .arg(&rootfs)
            .args(["-cf"])
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap()
            .success()
    );
    let uncompressed = std::fs::read(&tar).unwrap();
    let gz = Command::new("gzip")
        .args(["-n", "-c"])
        .arg(&tar)
        .output()
        .unwrap()
        .stdout;
    let diff_id = Digest::of(Algorithm::Sha256, &uncompressed);
    let layer = Digest::of(Algorithm::Sha256, &gz);
    std::fs::write(blobs.join(layer.hex()), &gz).unwrap();
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}},"config":{{}}}}"#
    );
    let config_digest = write(&blobs.join("tmp"), config.as_bytes());
    std::fs::rename(blobs.join("tmp"), blobs.join(config_digest.hex())).unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer}","size":{}}}]}}"#,
        config.len(),
        gz.len()
    );
    let manifest_digest = write(&blobs.join("tmp"), manifest.as_bytes());
    std::fs::rename(blobs.join("tmp"), blobs.join(manifest_digest.hex())).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"t"}}}}]}}"#,
        manifest.len()
    );
    std::fs::write(layout.join("index.json"), index).unwrap();
    layout
}

fn skopeo(args: &[&str]) -> (bool, String) {
    let out = Command::new("skopeo").args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// A node under `dir` with the managed CA: its server, config file and CA certificate. Plain
/// HTTP on loopback next to HTTPS, as the packages configure it: clients that come over HTTPS
/// must be sent to HTTPS for their tokens.
fn managed_https_node(dir: &Path) -> (Server, PathBuf, PathBuf) {
    let data = dir.join("data");
    let config = dir.join("atcr.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n[tls]\nenabled = true\nlisten = \"127.0.0.1:0\"\n",
            data.display()
        ),
    )
    .unwrap();
    (Server::start(&config), config, data.join("tls/ca.crt"))
}

#[test]
fn managed_ca_serves_https_to_curl_and_skopeo() {
    if !client_tests_enabled() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, config, ca) = managed_https_node(dir.path());
    let ca_str = ca.to_str().unwrap();
    let base = format!("https://{}", server.addr);

    // Verified against the node's CA, by IP and by name; refused without it.
    let (ok, out) = curl(&["--cacert", ca_str, &format!("{base}/v2/")]);
    assert!(ok, "{out}");
    let port = server.addr.rsplit(':').next().unwrap();
    let (ok, out) = curl(&[
        "--cacert",
        ca_str,
        &format!("https://localhost:{port}/healthz"),
    ]);
    assert!(ok && out.starts_with("ok"), "{out}");
    let (ok, _) = curl(&[&format!("{base}/v2/")]);
    assert!(!ok, "an unknown CA must be refused");
    // The certificate also names this machine (clients reaching it by its host name need no
    // configuration).
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim().to_ascii_lowercase();
    if !host.is_empty() && host != "localhost" {
        let (ok, out) = curl(&[
            "--cacert",
            ca_str,
            "--resolve",
            &format!("{host}:{port}:127.0.0.1"),
            &format!("https://{host}:{port}/healthz"),
        ]);
        assert!(ok && out.starts_with("ok"), "by host name {host}: {out}");
    }
    // doctor: the node's CA is fine; a node without a public name gets a warning, not a failure.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_atcr"))
        .args(["doctor", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("WARN  tls      pds.public_host is unset"),
        "{text}"
    );
    assert!(text.contains("tls/ca.crt valid until"), "{text}");
    // trust-instructions prints the CA's fingerprint as openssl computes it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_atcr"))
        .args(["tls", "trust-instructions", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("certs.d"), "{text}");
    if let Ok(openssl) = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in", ca_str])
        .output()
    {
        let line = String::from_utf8_lossy(&openssl.stdout);
        let fingerprint = line.trim().rsplit('=').next().unwrap();
        assert!(
            text.contains(&format!("SHA-256 fingerprint: {fingerprint}")),
            "{text}\nopenssl: {line}"
        );
        // The web setup page shows the same fingerprint.
        let (ok, setup) = curl(&["--cacert", ca_str, &format!("{base}/setup")]);
        assert!(ok && setup.contains(fingerprint), "{setup}");
    }
    let (ok, ca_served) = curl(&["--cacert", ca_str, &format!("{base}/ca.crt")]);
    assert!(ok);
    assert_eq!(ca_served, std::fs::read_to_string(&ca).unwrap());

    // skopeo pushes and pulls over HTTPS with the CA in a cert dir.
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(&ca, certs.join("ca.crt")).unwrap();
    let certs = certs.to_str().unwrap();
    let layout = oci_layout(dir.path());
    let src = format!("oci:{}:t", layout.display());
    let dest = format!("docker://{}/admin/test:1", server.addr);
    let creds = format!("admin:{}", server.password);
    let (ok, out) = skopeo(&[
        "copy",
        "--dest-cert-dir",
        certs,
        "--dest-creds",
        &creds,
        &src,
        &dest,
    ]);
    assert!(ok, "{out}");
    let (ok, out) = skopeo(&[
        "copy",
        "--dest-creds",
        &creds,
        &src,
        &format!("docker://{}/admin/other:1", server.addr),
    ]);
    assert!(!ok, "without the CA skopeo must refuse: {out}");
    let back = dir.path().join("back");
    let (ok, out) = skopeo(&[
        "copy",
        "--src-cert-dir",
        certs,
        &dest,
        &format!("oci:{}:t", back.display()),
    ]);
    assert!(ok, "{out}");
    let (_, pushed) = skopeo(&["inspect", "--raw", &src]);
    let (_, pulled) = skopeo(&["inspect", "--raw", "--cert-dir", certs, &dest]);
    assert_eq!(pushed, pulled, "the manifest round-trips byte for byte");
}

#[test]
fn operator_certificate_is_reloaded_on_sighup() {
    if !client_tests_enabled() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let issue = |name: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        let path = dir.path().join(format!("{name}.crt"));
        std::fs::write(&path, cert.pem()).unwrap();
        (path, cert.pem(), key.serialize_pem())
    };
    let (first, first_pem, first_key) = issue("first");
    let (second, second_pem, second_key) = issue("second");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &first_pem).unwrap();
    std::fs::write(&key, &first_key).unwrap();
    let config = dir.path().join("atcr.toml");
    std::fs::write(&config, format!("http = false\ndata_dir = {:?}\n[tls]\nenabled = true\nlisten = \"127.0.0.1:0\"\ncert = {cert:?}\nkey = {key:?}\n", dir.path().join("data"))).unwrap();
    let server = Server::start(&config);
    let url = format!("https://{}/v2/", server.addr);
    assert!(curl(&["--cacert", first.to_str().unwrap(), &url]).0);
    assert!(!curl(&["--cacert", second.to_str().unwrap(), &url]).0);

    std::fs::write(&cert, &second_pem).unwrap();
    std::fs::write(&key, &second_key).unwrap();
    assert!(
        Command::new("kill")
            .args(["-HUP", &server.child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    server.wait_for("certificate reloaded");
    assert!(curl(&["--cacert", second.to_str().unwrap(), &url]).0);
    assert!(!curl(&["--cacert", first.to_str().unwrap(), &url]).0);
    assert!(
        !dir.path().join("data/tls/ca.key").exists(),
        "no managed CA with operator certificates"
    );
}

#[test]
fn http2_clients_are_sent_to_the_authority_they_used() {
    if !client_tests_enabled() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, _, ca) = managed_https_node(dir.path());
    let ca = ca.to_str().unwrap();
    let port = server.addr.rsplit(':').next().unwrap();
    // HTTP/2 carries no Host header: the realm must come from `:authority`.
    let base = format!("https://localhost:{port}");
    let (ok, out) = curl(&[
        "--http2",
        "--cacert",
        ca,
        "-D",
        "-",
        "-o",
        "/dev/null",
        &format!("{base}/v2/admin/app/tags/list"),
    ]);
    assert!(ok, "{out}");
    assert!(out.starts_with("HTTP/2 401"), "{out}");
    let challenge = out
        .lines()
        .find_map(|l| l.strip_prefix("www-authenticate: "))
        .unwrap_or_else(|| panic!("no challenge: {out}"));
    assert!(
        challenge.starts_with(&format!("Bearer realm=\"{base}/auth/token\",")),
        "{challenge}"
    );
    // The realm works over HTTP/2 too: a login there gets a token that opens the repository.
    let service = challenge
        .split("service=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap();
    let creds = format!("admin:{}", server.password);
    let (ok, out) = curl(&[
        "--http2",
        "--cacert",
        ca,
        "-u",
        &creds,
        &format!("{base}/auth/token?service={service}&scope=repository:admin/app:pull"),
    ]);
    assert!(ok, "{out}");
    let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
    let token = answer["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"));
    let (ok, out) = curl(&[
        "--http2",
        "--cacert",
        ca,
        "-w",
        "%{http_code}",
        "-o",
        "/dev/null",
        "-H",
        &format!("Authorization: Bearer {token}"),
        &format!("{base}/v2/"),
    ]);
    assert!(ok && out == "200", "{out}");
}

/// `atcr tls trust-instructions --config <config>`: whether it succeeded, stdout, stderr.
fn trust_instructions(config: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_atcr"))
        .args(["tls", "trust-instructions", "--config"])
        .arg(config)
        .env_remove("ATCR_TLS_ENABLED")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn trust_instructions_before_https_and_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("atcr.toml");

    // TLS off: nothing to trust, and how to turn it on.
    std::fs::write(&config, format!("data_dir = {data:?}\n")).unwrap();
    let (ok, out, err) = trust_instructions(&config);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(
        err.starts_with("error: TLS is off") && err.contains("enabled = true"),
        "{err}"
    );

    // TLS on, before the first start has made the CA: no fingerprint yet, and when there is one.
    std::fs::write(
        &config,
        format!("data_dir = {data:?}\n[tls]\nenabled = true\nlisten = \"127.0.0.1:5443\"\n"),
    )
    .unwrap();
    let (ok, out, err) = trust_instructions(&config);
    assert!(ok, "{err}");
    assert!(!out.contains("SHA-256 fingerprint:"), "{out}");
    assert!(out.contains("printed here after that start"), "{out}");
    // The check reads the file where the steps saved it; curl fails on an error page rather
    // than saving it as the certificate.
    let registry = out
        .split("/etc/docker/certs.d/")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap();
    assert!(
        out.contains(&format!("-o /etc/docker/certs.d/{registry}/ca.crt\n"))
            && out.contains(&format!(
                "openssl x509 -noout -fingerprint -sha256 -in /etc/docker/certs.d/{registry}/ca.crt"
            )),
        "{out}"
    );
    assert_eq!(
        out.matches("curl -fsSk ").count(),
        out.matches("curl ").count(),
        "{out}"
    );
    // What a test on the node itself proves, and what ctr needs for hosts.toml.
    assert!(out.contains("127.0.0.0/8"), "{out}");
    assert!(out.contains("--hosts-dir /etc/containerd/certs.d"), "{out}");
}
