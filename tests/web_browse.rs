//! The pages as a signed-in user browses them: manifest pages, READMEs, search and stars,
//! through the built binary and curl (see `tests/web.rs` for the shared rules).

mod common;

use common::clients::{Clients, curl, curl_anonymous, required};
use common::web::{csrf, post_form};
use common::{Server, images};
use serde_json::{Value, json};

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
