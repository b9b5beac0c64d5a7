//! The commands the web pages hand out, copied from the pages of a plain-HTTP node and run with
//! the real clients (podman, skopeo, `atcr login` and its credential helper): what a new user
//! pastes from a page must work as shown. Only the placeholders (`<your user>`, `<image>`,
//! `<tag>`) are filled in, and files the commands would write under `/etc` are written into
//! the test's own client configuration instead.

mod common;

use std::process::Command;

use common::clients::{Clients, curl, curl_anonymous, required};
use common::{Server, describe, images, run, run_with_stdin};

const TOOLS: &[&str] = &["podman", "skopeo", "curl"];

/// The commands of the page at `path` (the `data-copy` attributes of its command blocks),
/// fetched anonymously.
fn commands(srv: &Server, path: &str) -> Vec<String> {
    let page = curl_anonymous("GET", &format!("{}{path}", srv.base_url()), &[], None);
    assert_eq!(page.status, 200, "{path}: {}", page.text());
    let html = page.text();
    html.split("data-copy=\"")
        .skip(1)
        .map(|rest| unescape(&rest[..rest.find('"').expect("a closed attribute")]))
        .collect()
}

/// HTML attribute text as plain text (maud escapes `& < > "`).
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The one command (or line of a command block) that starts with `start`.
fn line(commands: &[String], start: &str) -> String {
    let found: Vec<&str> = commands
        .iter()
        .flat_map(|c| c.lines())
        .filter(|l| l.starts_with(start))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one `{start}` line expected in {commands:#?}"
    );
    found[0].to_owned()
}

/// Runs a command line from a page (words separated by spaces, no quoting) through `program`
/// (the client with this test's configuration), with `stdin`.
fn paste(srv: &Server, mut program: Command, line: &str, stdin: Option<&str>) -> String {
    let words: Vec<&str> = line.split_whitespace().skip(1).collect();
    assert!(
        !line.contains('<'),
        "a placeholder is left in the command: {line}"
    );
    program.args(&words);
    let out = match stdin {
        Some(input) => run_with_stdin(&mut program, input),
        None => run(&mut program),
    };
    assert!(
        out.status.success(),
        "the page's command failed: {line}\n{}\n{}",
        describe(&program, &out),
        srv.log_tail()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_pages_commands_work_against_a_plain_http_node() {
    if !required(TOOLS) {
        return;
    }
    let srv = Server::start();
    let c = Clients::new();
    c.without_login();
    let host = srv.host_port();
    let local = images::fresh_image(&c.path("src"), 2048);
    let id = srv.must(c.podman().args(["pull", "-q", &local.reference()]));
    let id = id.trim();

    // Home page: log in and push with podman, as shown.
    let home = commands(&srv, "/");
    let login = line(&home, "podman login");
    assert!(login.contains("--tls-verify=false"), "{login}");
    paste(
        &srv,
        c.podman(),
        &format!("{login} -u admin --password-stdin"),
        Some(&format!("{}\n", srv.password())),
    );
    let push = line(&home, "podman push")
        .replace("/<your user>/<image>:<tag>", "/admin/pages:1")
        .replace("<image>", id);
    paste(&srv, c.podman(), &push, None);

    // The repository page and the manifest page: pull as shown.
    let pull = line(&commands(&srv, "/r/admin/pages"), "podman pull");
    assert_eq!(
        pull,
        format!("podman pull --tls-verify=false {host}/admin/pages:1")
    );
    paste(&srv, c.podman(), &pull, None);
    let digest = curl(
        "HEAD",
        &format!("{}/v2/admin/pages/manifests/1", srv.base_url()),
        &[("Accept", images::OCI_MANIFEST)],
        None,
    );
    let digest = digest
        .header("docker-content-digest")
        .expect("a digest header")
        .to_owned();
    let pull = line(
        &commands(&srv, &format!("/r/admin/pages@{digest}")),
        "podman pull",
    );
    assert_eq!(
        pull,
        format!("podman pull --tls-verify=false {host}/admin/pages@{digest}")
    );
    paste(&srv, c.podman(), &pull, None);

    // The setup page: its podman login works; without a flag a pull fails until the
    // registries.conf entry it shows is in place; skopeo takes the flag it shows.
    let setup = commands(&srv, "/setup");
    let login = line(&setup, "podman login");
    paste(
        &srv,
        c.podman(),
        &format!("{login} -u admin --password-stdin"),
        Some(&format!("{}\n", srv.password())),
    );
    let plain = format!("{host}/admin/pages:1");
    srv.must_fail(c.podman().args(["pull", "-q", &plain]));
    let entry = line(&setup, "printf");
    let printf = &entry[..entry.find(" | sudo tee").expect("printf piped into tee")];
    assert!(
        entry.ends_with("/etc/containers/registries.conf.d/atcr.conf"),
        "{entry}"
    );
    let conf = srv.must(Command::new("sh").args(["-c", printf]));
    let registries = c.dir().join("registries.conf");
    let mut text = std::fs::read_to_string(&registries).unwrap();
    text.push_str(&conf);
    std::fs::write(&registries, text).unwrap();
    srv.must(c.podman().args(["pull", "-q", &plain]));
    let inspect =
        line(&setup, "skopeo inspect").replace("<your user>/<image>:<tag>", "admin/pages:1");
    assert!(paste(&srv, c.skopeo(), &inspect, None).contains(&digest));

    // The credential helper, as the setup page shows it: `atcr login`, then credHelpers.
    srv.must(c.podman().args(["logout", "--all"]));
    let atcr_login = line(&setup, "atcr login").replace("<your user>", "admin");
    let creds = c.path("credentials.json");
    let mut atcr = Command::new(env!("CARGO_BIN_EXE_atcr"));
    atcr.env("ATCR_CREDENTIALS_FILE", &creds);
    paste(
        &srv,
        atcr,
        &atcr_login,
        Some(&format!("{}\n", srv.password())),
    );
    let helper = line(&setup, "{\"credHelpers\"");
    let auth: serde_json::Value = serde_json::from_str(&helper).expect("the page shows JSON");
    assert_eq!(auth["credHelpers"][&host], "atcr");
    std::fs::write(c.path("auth.json"), helper).unwrap();
    let path = c.credential_helper_path();
    srv.must(
        c.podman()
            .args(["push", "-q", id, &format!("{host}/admin/pages:2")])
            .env("PATH", &path)
            .env("ATCR_CREDENTIALS_FILE", &creds),
    );
    let tags = curl(
        "GET",
        &format!("{}/v2/admin/pages/tags/list", srv.base_url()),
        &[],
        None,
    );
    assert!(tags.text().contains("\"2\""), "{}", tags.text());
}
