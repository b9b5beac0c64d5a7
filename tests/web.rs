//! The web pages over HTTP from the built binary, after real pushes with skopeo: structure,
//! escaping, 404s, and that a private hold shows nothing to anonymous visitors.

mod common;

use common::clients::{Clients, curl, curl_anonymous, required};
use common::{Server, images};
use serde_json::{Value, json};

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

/// `name="csrf" value="…"` of a page.
fn csrf(page: &str) -> String {
    let start = page.find(r#"name="csrf" value=""#).expect("no csrf field") + 19;
    page[start..].split('"').next().unwrap().to_owned()
}

fn post_form(
    srv: &Server,
    path: &str,
    cookie: Option<&str>,
    form: &str,
) -> common::clients::HttpResponse {
    let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
    if let Some(c) = cookie {
        headers.push(("Cookie", c));
    }
    curl_anonymous(
        "POST",
        &format!("{}{path}", srv.base_url()),
        &headers,
        Some(form.as_bytes()),
    )
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

/// A page fetched with a session cookie (or none).
fn get_as(srv: &Server, path: &str, cookie: Option<&str>) -> (u16, String) {
    let headers: Vec<(&str, &str)> = cookie.map(|c| ("Cookie", c)).into_iter().collect();
    let r = curl_anonymous("GET", &format!("{}{path}", srv.base_url()), &headers, None);
    (r.status, r.text())
}

/// Polls the search page until `q` lists `name` (the search index follows pushes within a
/// moment); returns the page.
fn search_until(srv: &Server, q: &str, name: &str) -> String {
    let path = format!("/search?q={}", q.replace(' ', "+").replace(':', "%3A"));
    for _ in 0..100 {
        let (status, page) = get_as(srv, &path, None);
        assert_eq!(status, 200, "{page}");
        if page.contains(&format!(r#"href="/r/{name}""#)) {
            return page;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{q:?} never found {name}: {}", get_as(srv, &path, None).1);
}

fn sign_in(srv: &Server, user: &str, password: &str) -> String {
    let r = post_form(
        srv,
        "/signin",
        None,
        &format!("identifier={user}&password={password}"),
    );
    assert_eq!(r.status, 303, "{}", r.text());
    r.header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// An annotated image (config with entrypoint, ports and labels), a signature referring to
/// it, and a README record: the manifest page, referrers, README rendering, search with its
/// filters, and starring through the pages.
#[test]
fn manifests_readmes_search_and_stars() {
    if !required(&["skopeo", "curl"]) {
        return;
    }
    let srv = Server::start();
    let out = srv.cli(&["user", "add", "alice", "--password-stdin"], "alice-pw\n");
    assert!(out.status.success(), "{out:?}");
    let c = Clients::new();
    let host = srv.host_port();

    // The image: annotations on the manifest, a config with what the page summarises.
    let dir = c.path("annotated");
    let mut layout = images::Layout::create(&dir);
    let layer = images::random_layer(images::fresh_seed(), 2000);
    let layer_d = layout.blob("application/vnd.oci.image.layer.v1.tar+gzip", &layer.gzip);
    let config = json!({
        "architecture": "arm64", "os": "linux",
        "config": {
            "Entrypoint": ["/usr/bin/shop"], "Cmd": ["--port", "8080"],
            "Env": ["PATH=/usr/bin"], "ExposedPorts": {"8080/tcp": {}},
            "User": "1000", "Labels": {"org.opencontainers.image.source": "https://git.example/shop"}
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
    });
    let config_d = layout.blob(
        "application/vnd.oci.image.config.v1+json",
        &serde_json::to_vec(&config).unwrap(),
    );
    let d = |x: &images::Descriptor| json!({"mediaType": x.media_type, "digest": x.digest, "size": x.size});
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": d(&config_d),
        "layers": [d(&layer_d)],
        "annotations": {
            "org.opencontainers.image.title": "Shop",
            "org.opencontainers.image.description": "Checkout service for the <b>kiosk</b> fleet",
            "org.opencontainers.image.vendor": "Acme Retail",
            "org.opencontainers.image.licenses": "MPL-2.0",
            "org.opencontainers.image.documentation": "https://docs.example/shop"
        }
    });
    let manifest_d = layout.blob(
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    layout.tag("v3", &manifest_d);
    srv.must(&mut c.skopeo_copy(
        &format!("oci:{}:v3", dir.display()),
        &format!("docker://{host}/admin/shop:v3"),
        &[],
    ));
    srv.must(&mut c.skopeo_copy(
        &images::busybox_image(&c.path("other")).reference(),
        &format!("docker://{host}/alice/tools:latest"),
        &["--dest-creds", "alice:alice-pw"],
    ));

    // A signature referring to the image (pushed over the API: the empty config, then it).
    let base = srv.base_url();
    let empty = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
    let r = curl(
        "POST",
        &format!("{base}/v2/admin/shop/blobs/uploads/?digest={empty}"),
        &[("Content-Type", "application/octet-stream")],
        Some(b"{}"),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let signature = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [],
        "subject": d(&manifest_d),
    });
    let signature = serde_json::to_vec(&signature).unwrap();
    let sig_digest = common::sha256(&signature);
    let r = curl(
        "PUT",
        &format!("{base}/v2/admin/shop/manifests/{sig_digest}"),
        &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
        Some(&signature),
    );
    assert_eq!(r.status, 201, "{}", r.text());

    // The README: admin's io.atcr.repo.page record, written over XRPC.
    let login = json!({"identifier": "admin", "password": srv.password()}).to_string();
    let r = curl_anonymous(
        "POST",
        &format!("{base}/xrpc/com.atproto.server.createSession"),
        &[("Content-Type", "application/json")],
        Some(login.as_bytes()),
    );
    let session: Value = serde_json::from_slice(&r.body).unwrap();
    let bearer = format!("Bearer {}", session["accessJwt"].as_str().unwrap());
    let page_record = json!({
        "repo": session["did"], "collection": "io.atcr.repo.page", "rkey": "shop",
        "record": {
            "$type": "io.atcr.repo.page", "repository": "shop",
            "description": "# Shop\n\nRuns the **storefront** tills.\n\n<script>alert(1)</script>\n\n[docs](javascript:alert(2))",
            "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z"
        }
    })
    .to_string();
    let r = curl_anonymous(
        "POST",
        &format!("{base}/xrpc/com.atproto.repo.putRecord"),
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &bearer),
        ],
        Some(page_record.as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    // Search: the README, annotations, name prefixes with a typo, filters.
    let found = search_until(&srv, "storefront", "admin/shop");
    assert!(found.contains("<b>storefront</b>"), "highlighted: {found}");
    assert!(
        found.contains("Checkout service for the &lt;b&gt;kiosk&lt;/b&gt; fleet"),
        "the description, escaped: {found}"
    );
    assert!(
        found.contains("1 repository<"),
        "one, not \"1 repositories\": {found}"
    );
    assert_eq!(
        found.matches("Checkout service for the").count(),
        1,
        "the description is shown once: {found}"
    );
    search_until(&srv, "acme", "admin/shop");
    search_until(&srv, "shpo", "admin/shop");
    search_until(&srv, "platform:arm64", "admin/shop");
    search_until(&srv, "owner:alice", "alice/tools");
    let (_, none) = get_as(&srv, "/search?q=owner%3Aalice+shop", None);
    assert!(none.contains("Nothing found"), "{none}");
    let (_, echoed) = get_as(&srv, "/search?q=%3Cscript%3Ex", None);
    assert!(
        echoed.contains("&lt;script&gt;x") && !echoed.contains("<script>x"),
        "{echoed}"
    );

    // The repository page: description, README (rendered, its HTML and script link
    // defused), the signature marked on the tag.
    let (status, repo) = get_as(&srv, "/r/admin/shop", None);
    assert_eq!(status, 200, "{repo}");
    assert!(
        repo.contains("Checkout service for the &lt;b&gt;kiosk&lt;/b&gt; fleet"),
        "{repo}"
    );
    assert!(repo.contains("<strong>storefront</strong>"), "{repo}");
    assert!(
        repo.contains(r#"href="https://docs.example/shop""#),
        "{repo}"
    );
    assert!(
        repo.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{repo}"
    );
    assert!(
        !repo.contains("<script>alert") && !repo.contains("javascript:"),
        "{repo}"
    );
    assert!(
        repo.contains(r#"<span class="badge""#),
        "a referrer marked: {repo}"
    );
    let manifest_link = format!(r#"href="/r/admin/shop@{}""#, manifest_d.digest);
    assert!(repo.contains(&manifest_link), "{repo}");

    // The manifest page: config summary, layers, annotations, the signature as a referrer.
    let (status, m) = get_as(&srv, &format!("/r/admin/shop@{}", manifest_d.digest), None);
    assert_eq!(status, 200, "{m}");
    for want in [
        "/usr/bin/shop",
        "--port 8080",
        "8080/tcp",
        "linux/arm64",
        "https://git.example/shop",
        "MPL-2.0",
        "application/vnd.example.signature",
        &format!("docker pull {host}/admin/shop@{}", manifest_d.digest),
        &layer_d.digest[..19],
    ] {
        assert!(m.contains(want), "{want} not in {m}");
    }
    assert!(
        !m.contains("Artifact type"),
        "a plain image is not an artifact: {m}"
    );
    let (status, sig) = get_as(&srv, &format!("/r/admin/shop@{sig_digest}"), None);
    assert_eq!(status, 200);
    assert!(sig.contains("Refers to"), "{sig}");
    assert!(
        sig.contains("<dt>Artifact type</dt><dd>application/vnd.example.signature</dd>"),
        "{sig}"
    );
    for bad in [
        "/r/admin/shop@sha256:nothex",
        "/r/admin/shop@sha256:0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        assert_eq!(get_as(&srv, bad, None).0, 404, "{bad}");
    }

    // Stars: anonymous visitors see the count and a sign-in link; alice stars, the count,
    // her page, the home page and search follow; a form without the token is refused;
    // unstarring takes it back.
    assert!(
        repo.contains(r#"href="/signin?next=/r/admin/shop""#),
        "{repo}"
    );
    let cookie = sign_in(&srv, "alice", "alice-pw");
    let (_, page) = get_as(&srv, "/r/admin/shop", Some(&cookie));
    assert!(page.contains("☆ Star"), "{page}");
    let token = csrf(&page);
    let r = post_form(&srv, "/r/admin/shop/star", Some(&cookie), "on=1");
    assert_eq!(r.status, 403);
    let r = post_form(
        &srv,
        "/r/admin/shop/star",
        Some(&cookie),
        &format!("on=1&csrf={token}"),
    );
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/r/admin/shop"))
    );
    let (_, page) = get_as(&srv, "/r/admin/shop", Some(&cookie));
    assert!(
        page.contains("★ Starred") && page.contains(r#"<span class="count">1</span>"#),
        "{page}"
    );
    // Starring again changes nothing.
    post_form(
        &srv,
        "/r/admin/shop/star",
        Some(&cookie),
        &format!("on=1&csrf={token}"),
    );
    let (_, home) = get_as(&srv, "/", None);
    let starred = home.split("Most starred").nth(1).unwrap_or_default();
    assert!(
        starred.contains("admin/shop") && starred.contains("★ 1"),
        "{home}"
    );
    let (_, alice) = get_as(&srv, "/u/alice", None);
    assert!(
        alice
            .split("Stars")
            .nth(1)
            .unwrap_or_default()
            .contains("/r/admin/shop"),
        "{alice}"
    );
    let r = post_form(
        &srv,
        "/r/admin/shop/star",
        Some(&cookie),
        &format!("on=0&csrf={token}"),
    );
    assert_eq!(r.status, 303);
    let (_, page) = get_as(&srv, "/r/admin/shop", Some(&cookie));
    assert!(
        page.contains("☆ Star") && page.contains(r#"<span class="count">0</span>"#),
        "{page}"
    );
    let r = post_form(
        &srv,
        "/r/admin/none/star",
        Some(&cookie),
        &format!("on=1&csrf={token}"),
    );
    assert_eq!(r.status, 404);
}
