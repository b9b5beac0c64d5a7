//! The built binary: configuration handling, the listening line, graceful shutdown.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

fn atcr() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_atcr"));
    c.env_remove("ATCR_CONFIG")
        .env_remove("ATCR_LISTEN")
        .env_remove("ATCR_DATA_DIR")
        .env("RUST_LOG", "info");
    c
}

#[test]
fn check_config_reads_the_shipped_file_and_flags_override_it() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/atcr.toml");
    let out = atcr()
        .args([
            "check-config",
            "--config",
            shipped,
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("127.0.0.1:0"), "{text}");
    assert!(text.contains("configuration is valid"));

    let out = atcr()
        .args(["check-config", "--config", shipped])
        .env("ATCR_DATA_DIR", "/srv/x")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("/srv/x"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "listen = \"127.0.0.1:0\"\nunknown_key = 1\n").unwrap();
    let out = atcr()
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown_key"));
    let out = atcr()
        .args(["check-config", "--config", "/nonexistent/atcr.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn serves_on_a_free_port_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = atcr()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .unwrap();
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        reqwest::get(format!("http://{addr}/v2/"))
            .await
            .unwrap()
            .status()
    });
    // The registry wants a token: the probe answers 401 with a Bearer challenge.
    assert_eq!(status, 401);
    assert!(dir.path().join("index.redb").exists());

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "exit {exit:?}: {rest:?}");
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");

    // The port is free again and the same state opens.
    std::thread::sleep(Duration::from_millis(50));
    let mut again = atcr()
        .args(["serve", "--listen", &addr, "--data-dir"])
        .arg(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(again.stderr.take().unwrap()).lines();
    assert!(lines.any(|l| l.is_ok_and(|l| l.contains("listening"))));
    Command::new("kill")
        .args(["-TERM", &again.id().to_string()])
        .status()
        .unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let exit = again.wait().unwrap();
    assert!(exit.success(), "exit {exit:?}: {rest:?}");
}

#[test]
fn refuses_a_busy_port_with_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = atcr()
        .args(["serve", "--listen", &addr, "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot listen"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
