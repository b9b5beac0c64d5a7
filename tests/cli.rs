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

fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn check_config_reads_the_shipped_file_and_flags_override_it() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/atcr.toml");
    let text = stdout(
        &atcr()
            .args([
                "check-config",
                "--config",
                shipped,
                "--listen",
                "127.0.0.1:0",
            ])
            .output()
            .unwrap(),
    );
    assert!(text.contains("configuration is valid"), "{text}");
    assert!(text.contains("listen 127.0.0.1:0"), "{text}");

    // config show: every value with its origin; environment over file, flag over environment.
    let text = stdout(
        &atcr()
            .args([
                "config",
                "show",
                "--config",
                shipped,
                "--listen",
                "127.0.0.1:0",
            ])
            .env("ATCR_DATA_DIR", "/srv/x")
            .env("ATCR_LISTEN", "127.0.0.1:7000")
            .env("ATCR_TLS_NAMES", "registry.lan,localhost")
            .output()
            .unwrap(),
    );
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in\n{text}"))
            .to_owned()
    };
    assert!(
        line("data_dir").contains("\"/srv/x\"")
            && line("data_dir").ends_with("# environment ATCR_DATA_DIR")
    );
    assert!(
        line("listen").contains("\"127.0.0.1:0\"") && line("listen").ends_with("# flag --listen")
    );
    assert!(
        line("names").contains("registry.lan")
            && line("names").ends_with("# environment ATCR_TLS_NAMES")
    );
    assert!(
        line("http").ends_with(&format!("# file {shipped}")),
        "{text}"
    );
    assert!(text.contains("# admin_password_file (unset)"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "listen = \"127.0.0.1:0\"\nunknown_key = 1\n").unwrap();
    let out = atcr()
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown_key") && err.contains("bad.toml"),
        "{err}"
    );
    let out = atcr()
        .args(["check-config", "--config", "/nonexistent/atcr.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = atcr()
        .args(["check-config", "--config", shipped])
        .env("ATCR_UPLOADS_EXPIRE_AFTER_SECS", "soon")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ATCR_UPLOADS_EXPIRE_AFTER_SECS"));
}

#[test]
fn the_admin_password_file_must_be_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("admin-password");
    std::fs::write(&secret, "correct horse\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).unwrap();
    let check = || {
        atcr()
            .args(["check-config", "--config", "/dev/null"])
            .env("ATCR_ACCOUNTS_ADMIN_PASSWORD_FILE", &secret)
            .output()
            .unwrap()
    };
    let out = check();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("accounts.admin_password_file") && err.contains("chmod 600"),
        "{err}"
    );
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    stdout(&check());
    // A password shorter than any account's may be is refused before the first start.
    std::fs::write(&secret, "7-chars\n").unwrap();
    let out = check();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("at least 8 characters"),
        "{err}"
    );
    std::fs::write(&secret, "correct horse\n").unwrap();

    // The first start creates admin with that password and logs no password.
    let data = tempfile::tempdir().unwrap();
    let mut cmd = atcr();
    cmd.env("ATCR_ACCOUNTS_ADMIN_PASSWORD_FILE", &secret);
    let (mut child, lines, addr) = serve(cmd, data.path(), "127.0.0.1:0");
    let rt = tokio::runtime::Runtime::new().unwrap();
    atcr::tls::install_crypto_provider();
    let token = |password: &'static str| {
        let url = format!("http://{addr}/auth/token");
        rt.block_on(async move {
            reqwest::Client::new()
                .get(url)
                .basic_auth("admin", Some(password))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    let answers = (token("correct horse"), token("wrong"));
    if answers != (200, 401) {
        child.kill().unwrap();
        child.wait().unwrap();
        panic!("token answers {answers:?}, expected (200, 401)");
    }
    let rest = stop(&mut child, lines);
    assert!(!rest.iter().any(|l| l.contains("password=")), "{rest:?}");
}

type Lines = std::io::Lines<BufReader<std::process::ChildStderr>>;

/// Starts `cmd serve` on `data` at `listen`; returns the child, its log and the bound address.
fn serve(
    mut cmd: Command,
    data: &std::path::Path,
    listen: &str,
) -> (std::process::Child, Lines, String) {
    let mut child = cmd
        .args(["serve", "--listen", listen, "--data-dir"])
        .arg(data)
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
    (child, lines, addr)
}

/// SIGTERM; the server must exit cleanly. Returns the rest of its log.
fn stop(child: &mut std::process::Child, lines: Lines) -> Vec<String> {
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "exit {exit:?}: {rest:?}");
    rest
}

#[test]
fn serves_on_a_free_port_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, lines, addr) = serve(atcr(), dir.path(), "127.0.0.1:0");
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    atcr::tls::install_crypto_provider();
    let status = rt.block_on(async {
        reqwest::get(format!("http://{addr}/v2/"))
            .await
            .unwrap()
            .status()
    });
    // The registry wants a token: the probe answers 401 with a Bearer challenge.
    assert_eq!(status, 401);
    assert!(dir.path().join("index.redb").exists());

    let rest = stop(&mut child, lines);
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");

    // The port is free again and the same state opens.
    std::thread::sleep(Duration::from_millis(50));
    let (mut again, lines, _) = serve(atcr(), dir.path(), &addr);
    stop(&mut again, lines);
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

#[test]
fn errors_are_one_plain_line_each_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("atcr.toml");
    std::fs::write(&config, "bogus = 1\n").unwrap();
    let out = atcr()
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        !err.contains("ERROR") && !err.contains("atcr::cli"),
        "{err}"
    );
    assert_eq!(err.matches("unknown field `bogus`").count(), 1, "{err}");
}

/// `atcr <args> --help`.
fn help(args: &[&str]) -> String {
    stdout(&atcr().args(args).arg("--help").output().unwrap())
}

#[test]
fn help_describes_every_argument_for_its_command() {
    // `--listen` is the address `serve` listens on; elsewhere it names the daemon's.
    assert!(help(&["serve"]).contains("Address to listen on"));
    for args in [
        &["user", "add"][..],
        &["user", "list"],
        &["hold", "set"],
        &["crew", "add"],
        &["index", "rebuild"],
    ] {
        let text = help(args);
        assert!(
            !text.contains("Address to listen on") && text.contains("The daemon's listen address"),
            "{args:?}: {text}"
        );
    }
    // Positional arguments say what they take.
    assert!(help(&["user", "add"]).contains("<NAME>  The account's short name"));
    assert!(help(&["user", "add"]).contains("at least 8 characters"));
    assert!(help(&["user", "passwd"]).contains("<NAME>  The account: name, handle or DID"));
    assert!(help(&["user", "remove"]).contains("<NAME>  The account: name, handle or DID"));
    assert!(help(&["crew", "add"]).contains("<WHO>  The user: a local user's name"));
    assert!(help(&["crew", "remove"]).contains("<WHO>  The user: a local user's name"));
    assert!(help(&["login"]).contains("Loopback (127.0.0.0/8, ::1, localhost)"));
}

#[test]
fn completions_and_the_manual_page_are_the_packaged_ones() {
    let packaged = |path: &str| {
        std::fs::read_to_string(format!("{}/packaging/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    };
    for (shell, path, marker) in [
        ("bash", "completions/atcr.bash", "complete -F _atcr"),
        ("zsh", "completions/_atcr", "#compdef atcr"),
        ("fish", "completions/atcr.fish", "complete -c atcr"),
    ] {
        let script = stdout(&atcr().args(["completions", shell]).output().unwrap());
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("trust-instructions"), "{shell}");
        assert!(
            script == packaged(path),
            "packaging/{path} is out of date: atcr completions {shell} > packaging/{path}"
        );
    }
    let page = stdout(&atcr().arg("man").output().unwrap());
    assert!(
        page.starts_with(".ie") && page.contains(".TH atcr 1"),
        "{page}"
    );
    // Every command is in the one page, with its options.
    for command in [
        "atcr user add",
        "atcr crew remove",
        "atcr tls trust\\-instructions",
    ] {
        assert!(
            page.contains(&format!(".SS \"{command}\"")),
            "{command}: {page}"
        );
    }
    assert!(page.contains("\\fB\\-\\-password\\-stdin\\fR"), "{page}");
    assert!(
        page == packaged("atcr.1"),
        "packaging/atcr.1 is out of date: atcr man > packaging/atcr.1"
    );
}
