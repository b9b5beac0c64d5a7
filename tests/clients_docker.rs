//! Docker Engine and containerd (Debian's `docker.io` and `containerd`, started by hand in a
//! temporary directory as `../shared/TESTING-NOTES.md` describes: vfs storage, no iptables, no
//! bridge) pulling from a node whose blobs are in a real S3 server (s3s-fs) with presigned
//! redirects: both follow the node's `307` and download the layers from the object store.
//! Same rules as `tests/clients.rs`: a missing tool fails the test unless
//! `ATCR_SKIP_CLIENT_TESTS=1`.

mod common;
mod s3;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::clients::{Clients, metric, required};
use common::images::{self, fresh_seed, random_layer};
use common::{Server, run};
use s3::S3Server;

const BLOB_GET_307: &str = "atcr_http_requests_total{endpoint=\"blob_get\",status=\"307\"";

/// containerd and dockerd over one temporary directory; dropping it ends both (by PID).
struct Daemons {
    containerd: Option<Child>,
    dockerd: Option<Child>,
    dir: tempfile::TempDir,
}

impl Daemons {
    fn start() -> Daemons {
        let dir = common::temp_dir("atcr-docker-");
        let d = dir.path().to_owned();
        let config = d.join("containerd.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{0}/containerd-root\"\nstate = \"{0}/containerd-state\"\n\
                 [grpc]\n  address = \"{0}/containerd.sock\"\n\
                 [plugins.\"io.containerd.grpc.v1.cri\"]\n  disable = true\n",
                d.display()
            ),
        )
        .unwrap();
        let log = |name: &str| Stdio::from(std::fs::File::create(d.join(name)).unwrap());
        let d = d.as_path();
        let containerd = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log("containerd.log"))
            .spawn()
            .expect("cannot start containerd");
        let mut daemons = Daemons {
            containerd: Some(containerd),
            dockerd: None,
            dir,
        };
        daemons.wait_for(&mut daemons.ctr_command(&["version"]), "containerd");
        let dockerd = Command::new("dockerd")
            .args([
                "--storage-driver=vfs",
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
            ])
            .arg("--data-root")
            .arg(d.join("docker"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", d.join("docker.sock").display()))
            .arg("--containerd")
            .arg(d.join("containerd.sock"))
            .stdout(Stdio::null())
            .stderr(log("dockerd.log"))
            .spawn()
            .expect("cannot start dockerd");
        daemons.dockerd = Some(dockerd);
        daemons.wait_for(&mut daemons.docker(&["version"]), "dockerd");
        daemons
    }

    fn wait_for(&self, cmd: &mut Command, name: &str) {
        let deadline = Instant::now() + Duration::from_mins(1);
        while !run(cmd).status.success() {
            assert!(
                Instant::now() < deadline,
                "{name} did not come up:\n{}",
                self.log(&format!("{name}.log"))
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    fn docker(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("docker");
        cmd.env(
            "DOCKER_HOST",
            format!("unix://{}", self.dir.path().join("docker.sock").display()),
        )
        .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
        .args(args);
        cmd
    }

    fn ctr_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(self.dir.path().join("containerd.sock"))
            .args(["--namespace", "atcr-test"])
            .args(args);
        cmd
    }
}

/// SIGTERM to a daemon this test started (its PID only), then SIGKILL if it lingers.
fn end(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Daemons {
    fn drop(&mut self) {
        if let Some(mut c) = self.dockerd.take() {
            end(&mut c);
        }
        if let Some(mut c) = self.containerd.take() {
            end(&mut c);
        }
        // vfs layers can be read-only; make them removable.
        let _ = Command::new("chmod")
            .arg("-R")
            .arg("u+rwX")
            .arg(self.dir.path())
            .status();
    }
}

fn must(srv: &Server, daemons: &Daemons, cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{}\n--- dockerd log:\n{}\n--- containerd log:\n{}\n--- server log:\n{}",
        common::describe(cmd, &out),
        tail(&daemons.log("dockerd.log")),
        tail(&daemons.log("containerd.log")),
        srv.log_tail()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn node_on_s3(s3: &S3Server, secrets: &Path) -> Server {
    let env = s3.env(secrets, "docker", true);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Server::start_with(&env)
}

#[test]
fn docker_and_containerd_follow_redirects_to_the_object_store() {
    if !required(&["skopeo", "docker", "dockerd", "containerd", "ctr"]) {
        return;
    }
    let s3 = S3Server::start();
    let secrets = common::temp_dir("atcr-s3-secrets-");
    let srv = node_on_s3(&s3, secrets.path());
    let c = Clients::new();
    let seed = fresh_seed();
    let local = images::single_image(
        &c.path("src"),
        "v1",
        &[random_layer(seed, 1 << 20), random_layer(seed + 1, 1 << 20)],
    );
    let image = format!("{}/admin/docker:v1", srv.host_port());
    srv.must(&mut c.skopeo_copy(&local.reference(), &format!("docker://{image}"), &[]));
    let config = local.config.clone().unwrap();
    let daemons = Daemons::start();

    // Docker: an anonymous pull of the public repository; the blobs come from the bucket.
    let before = metric(&srv, BLOB_GET_307);
    must(&srv, &daemons, &mut daemons.docker(&["pull", "-q", &image]));
    let id = must(
        &srv,
        &daemons,
        &mut daemons.docker(&["image", "inspect", "--format", "{{.Id}}", &image]),
    );
    assert_eq!(
        id.trim(),
        config.digest,
        "the image ID is the config digest"
    );
    let redirected = metric(&srv, BLOB_GET_307) - before;
    assert!(
        redirected >= 3,
        "docker fetched the config and two layers, {redirected} of them through a redirect"
    );

    // containerd's own client: every blob of the image in its content store, by digest.
    let before = metric(&srv, BLOB_GET_307);
    must(
        &srv,
        &daemons,
        &mut daemons.ctr_command(&["images", "pull", "--plain-http", &image]),
    );
    let content = must(
        &srv,
        &daemons,
        &mut daemons.ctr_command(&["content", "ls", "-q"]),
    );
    for digest in local
        .layers
        .iter()
        .map(|l| &l.digest)
        .chain([&config.digest, &local.manifest.digest])
    {
        assert!(
            content.contains(digest.as_str()),
            "{digest} missing:\n{content}"
        );
    }
    assert!(
        metric(&srv, BLOB_GET_307) - before >= 3,
        "ctr did not download through the redirects"
    );
}
