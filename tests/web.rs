//! The web pages over HTTP from the built binary, after real pushes with skopeo: structure,
//! escaping, 404s, and that a private hold shows nothing to anonymous visitors.

mod common;

use common::clients::{Clients, curl_anonymous, required};
use common::web::{csrf, post_form};
use common::{Server, images};

fn get(srv: &Server, path: &str) -> (u16, String, String) {
    let r = curl_anonymous("GET", &format!("{}{path}", srv.base_url()), &[], None);
    let kind = r.header("content-type").unwrap_or_default().to_owned();
    (r.status, kind, r.text())
}

/// Headless Chromium with a fresh profile: its stdout.
fn chromium(args: &[&str]) -> String {
    let profile = common::temp_dir("atcr-chromium-");
    let out = common::run(
        std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(args),
    );
    assert!(out.status.success(), "chromium {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn pages_show_what_was_pushed_and_nothing_private() {
    if !required(&["skopeo", "curl", "chromium"]) {
        return;
    }
    let srv = Server::start();
    let c = Clients::new();
    let host = srv.host_port();
    let single = images::fresh_image(&c.path("single"), 3000);
    srv.must(&mut c.skopeo_copy(
        &single.reference(),
        &format!("docker://{host}/admin/web-app:v1"),
        &[],
    ));
    let multi = images::multi_arch_image(&c.path("multi"), images::fresh_seed());
    srv.must(&mut c.skopeo_copy(
        &multi.reference(),
        &format!("docker://{host}/admin/web-app:latest"),
        &["--all"],
    ));

    let (status, kind, home) = get(&srv, "/");
    assert_eq!((status, kind.as_str()), (200, "text/html; charset=utf-8"));
    assert!(home.starts_with("<!DOCTYPE html>"), "{home}");
    assert!(
        home.contains(r#"<a href="/r/admin/web-app">admin/web-app</a>"#),
        "{home}"
    );
    assert!(home.contains("Recently pushed"), "{home}");
    assert!(home.contains(r#"action="/search""#), "a search box: {home}");
    assert!(
        home.contains(&format!(
            "docker push {host}/&lt;your user&gt;/&lt;image&gt;:&lt;tag&gt;"
        )),
        "{home}"
    );
    assert!(
        home.contains(r#"<script src="/static/copy.js" defer></script>"#),
        "{home}"
    );

    let (status, _, repo) = get(&srv, "/r/admin/web-app");
    assert_eq!(status, 200, "{repo}");
    // The pull line names the latest tag; the table has both tags with their digests.
    assert!(
        repo.contains(&format!("docker pull {host}/admin/web-app:latest")),
        "{repo}"
    );
    let v1 = &single.manifest.digest;
    assert!(repo.contains(&format!(r#"title="{v1}""#)), "{repo}");
    assert!(
        repo.contains(&format!(r#"title="{}""#, multi.manifest.digest)),
        "{repo}"
    );
    assert!(repo.contains("2 platforms"), "{repo}");
    assert!(repo.contains("<td>v1</td>"), "{repo}");
    // The single image's size: its layer and config.
    let size: u64 = single.layers.iter().map(|l| l.size).sum::<u64>()
        + single.config.as_ref().map_or(0, |c| c.size);
    assert!((1024..1 << 20).contains(&size));
    let shown = format!("<td>{}.{} KiB</td>", size / 1024, size % 1024 * 10 / 1024);
    assert!(repo.contains(&shown), "{shown} not in {repo}");

    // Headless Chromium renders the page (with the stylesheet, under the page's CSP); its DOM
    // has the table, and a screenshot is kept in target/test-artifacts/.
    let url = format!("{}/r/admin/web-app", srv.base_url());
    let dom = chromium(&["--dump-dom", &url]);
    assert!(
        dom.contains("<td>v1</td>") && dom.contains("2 platforms"),
        "{dom}"
    );
    // The script ran (allowed by the CSP) and put a copy button after the pull line.
    assert!(
        dom.contains(r#"<button type="button" class="copy">Copy</button>"#),
        "{dom}"
    );
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("web-repository.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1280,800",
        &url,
    ]);
    let png = std::fs::read(&shot).expect("chromium wrote no screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");

    // The owner's page lists the repository; the setup page says how to log in.
    let (status, _, user) = get(&srv, "/u/admin");
    assert_eq!(status, 200, "{user}");
    assert!(
        user.contains("admin.atcr.test") && user.contains(r#"<a href="/r/admin/web-app">"#),
        "{user}"
    );
    assert!(repo.contains(r#"<a href="/u/admin">admin</a>"#), "{repo}");
    let (status, _, setup) = get(&srv, "/setup");
    assert_eq!(status, 200);
    assert!(
        setup.contains(&format!(
            "atcr login --insecure {host} -u &lt;your user&gt; --password-stdin"
        )),
        "{setup}"
    );
    assert!(setup.contains("plain HTTP"), "no CA here: {setup}");
    let (status, kind, _) = get(&srv, "/static/copy.js");
    assert_eq!(
        (status, kind.as_str()),
        (200, "text/javascript; charset=utf-8")
    );

    // The stylesheet, and 404s that escape what they echo.
    let (status, kind, css) = get(&srv, "/static/style.css");
    assert_eq!((status, kind.as_str()), (200, "text/css; charset=utf-8"));
    assert!(css.contains("prefers-color-scheme: dark"));
    for path in [
        "/r/admin/nothing",
        "/r/nobody/web-app",
        "/static/none.css",
        "/u/nobody",
    ] {
        let (status, kind, _) = get(&srv, path);
        assert_eq!(
            (status, kind.as_str()),
            (404, "text/html; charset=utf-8"),
            "{path}"
        );
    }
    let (status, _, page) = get(&srv, "/r/%3Cscript%3Ealert(1)%3C/script%3E");
    assert_eq!(status, 404);
    assert!(
        page.contains("/r/&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(!page.contains("<script>alert"), "{page}");
    // The registry API is untouched by the pages.
    let r = curl_anonymous("GET", &format!("{}/v2/", srv.base_url()), &[], None);
    assert_eq!(r.status, 401);

    // A private hold: anonymous visitors see no repository at all.
    let out = srv.cli(&["hold", "set", "--public", "false"], "");
    assert!(out.status.success(), "{out:?}");
    let (_, _, home) = get(&srv, "/");
    assert!(!home.contains("web-app"), "{home}");
    let (status, _, _) = get(&srv, "/r/admin/web-app");
    assert_eq!(status, 404);
    // Signed in as crew that may pull, it is there again.
    let form = format!("identifier=admin&password={}", srv.password());
    let r = post_form(&srv, "/signin", None, &form);
    let cookie = r
        .header("set-cookie")
        .expect("signed in")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let r = curl_anonymous(
        "GET",
        &format!("{}/r/admin/web-app", srv.base_url()),
        &[("Cookie", &cookie)],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn sign_in_app_passwords_and_csrf() {
    if !required(&["skopeo", "curl"]) {
        return;
    }
    let srv = Server::start();
    let out = srv.cli(&["user", "add", "alice", "--password-stdin"], "alice-pw\n");
    assert!(out.status.success(), "{out:?}");
    let host = srv.host_port();

    // Wrong password, and a sign-in posted from another site, are refused.
    let r = post_form(&srv, "/signin", None, "identifier=alice&password=nope");
    assert_eq!(r.status, 401);
    assert!(r.text().contains("Wrong user name or password"));
    let r = curl_anonymous(
        "POST",
        &format!("{}/signin", srv.base_url()),
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", "http://evil.example"),
        ],
        Some(b"identifier=alice&password=alice-pw"),
    );
    assert_eq!(r.status, 403);

    // Signed in: a session cookie (HttpOnly, SameSite) and a redirect to a local page only.
    let r = post_form(
        &srv,
        "/signin",
        None,
        "identifier=alice&password=alice-pw&next=//evil.example/",
    );
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/"));
    // Browsers drop tabs and newlines from a URL: `/<tab>/evil.example` is `//evil.example`.
    for next in ["/%09/evil.example", "/%0a/evil.example", "/%5Cevil.example"] {
        let r = post_form(
            &srv,
            "/signin",
            None,
            &format!("identifier=alice&password=alice-pw&next={next}"),
        );
        assert_eq!((r.status, r.header("location")), (303, Some("/")), "{next}");
    }
    let r = post_form(
        &srv,
        "/signin",
        None,
        "identifier=alice&password=alice-pw&next=//evil.example/",
    );
    let set = r.header("set-cookie").expect("a session cookie").to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Path=/"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "plain HTTP here: {set}");
    let cookie = set.split(';').next().unwrap().to_owned();

    let settings = |cookie: Option<&str>| {
        let mut headers = Vec::new();
        if let Some(c) = cookie {
            headers.push(("Cookie", c));
        }
        curl_anonymous(
            "GET",
            &format!("{}/settings", srv.base_url()),
            &headers,
            None,
        )
    };
    let r = settings(None);
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/signin?next=/settings"))
    );
    let form = curl_anonymous(
        "GET",
        &format!("{}/signin?next=/settings", srv.base_url()),
        &[],
        None,
    );
    assert!(
        form.text()
            .contains(r#"<input type="hidden" name="next" value="/settings">"#),
        "{}",
        form.text()
    );
    let page = settings(Some(&cookie)).text();
    assert!(
        page.contains("Sign out") && page.contains("None yet."),
        "{page}"
    );
    let token = csrf(&page);

    // Forms without the session's token are refused.
    for form in ["name=laptop", "name=laptop&csrf=0000"] {
        let r = post_form(&srv, "/settings/app-passwords", Some(&cookie), form);
        assert_eq!(r.status, 403, "{form}");
    }
    assert!(settings(Some(&cookie)).text().contains("None yet."));

    // An app password made on the page logs skopeo in; revoked, it no longer does.
    let r = post_form(
        &srv,
        "/settings/app-passwords",
        Some(&cookie),
        &format!("name=laptop&csrf={token}"),
    );
    assert_eq!(r.status, 200);
    let page = r.text();
    let start = page.find(r#"<pre data-copy=""#).expect("the new password") + 16;
    let password = page[start..].split('"').next().unwrap().to_owned();
    assert_eq!(password.len(), 19, "{password}");
    let c = Clients::new();
    c.without_login();
    let login = |pw: &str| {
        common::run(c.skopeo().args([
            "login",
            "--tls-verify=false",
            "-u",
            "alice",
            "-p",
            pw,
            &host,
        ]))
    };
    let out = login(&password);
    assert!(out.status.success(), "{out:?}");
    let r = post_form(
        &srv,
        "/settings/app-passwords/revoke",
        Some(&cookie),
        &format!("name=laptop&csrf={token}"),
    );
    assert_eq!((r.status, r.header("location")), (303, Some("/settings")));
    assert!(
        !login(&password).status.success(),
        "a revoked app password still logs in"
    );

    // Signing out clears the cookie and ends the session.
    let r = post_form(&srv, "/signout", Some(&cookie), &format!("csrf={token}"));
    assert_eq!(r.status, 303);
    assert!(
        r.header("set-cookie")
            .unwrap_or_default()
            .contains("Max-Age=0")
    );
    assert_eq!(settings(Some(&cookie)).status, 303);
}
