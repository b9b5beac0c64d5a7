//! Quotas and storage usage against the built binary: usage counts each blob once per user
//! across repositories, `atcr user quota` acts through the admin socket, pushes over the quota
//! are refused with `DENIED` (before the bytes where the size is known, at the manifest `PUT`
//! otherwise, and as skopeo reports it), deletes and GC lower the figures, and usage and limits
//! survive `atcr index rebuild` and a lost `index.redb`. The pages and `/metrics` show them.

mod common;

use common::clients::{Clients, HttpResponse, curl, curl_anonymous, push_with_curl};
use common::images::{OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, fresh_image};
use common::web::post_form;
use common::{Server, sha256};

/// The config `push_with_curl` pushes with every image.
const CONFIG: &[u8] = br#"{"architecture":"amd64","os":"linux"}"#;

fn random(seed: u8, len: usize) -> Vec<u8> {
    common::images::Bytes::new(u64::from(seed)).take(len)
}

fn ok(srv: &Server, args: &[&str]) -> String {
    let out = srv.cli(args, "");
    assert!(
        out.status.success(),
        "atcr {args:?}: {}\n--- server log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        srv.log_tail()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn get(srv: &Server, path: &str) -> String {
    let r = curl_anonymous("GET", &format!("{}{path}", srv.base_url()), &[], None);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.text()
}

/// The value of one series of `/metrics` (`name{labels}`), if present.
fn metric(srv: &Server, series: &str) -> Option<u64> {
    get(srv, "/metrics").lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    })
}

fn usage(srv: &Server) -> Option<u64> {
    metric(srv, r#"atcr_user_storage_bytes{user="admin"}"#)
}

fn upload(srv: &Server, repo: &str, blob: &[u8]) -> HttpResponse {
    let url = format!(
        "{}/v2/{repo}/blobs/uploads/?digest={}",
        srv.base_url(),
        sha256(blob)
    );
    curl("POST", &url, &[], Some(blob))
}

/// PUTs an image manifest over `config` and `layers` (already uploaded) as `tag`.
fn put_manifest(srv: &Server, repo: &str, tag: &str, layers: &[&[u8]]) -> HttpResponse {
    let desc = |media: &str, b: &[u8]| serde_json::json!({"mediaType": media, "digest": sha256(b), "size": b.len()});
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc(OCI_CONFIG, CONFIG),
        "layers": layers.iter().map(|l| desc(OCI_LAYER_GZIP, l)).collect::<Vec<_>>(),
    });
    curl(
        "PUT",
        &format!("{}/v2/{repo}/manifests/{tag}", srv.base_url()),
        &[("Content-Type", OCI_MANIFEST)],
        Some(&serde_json::to_vec(&manifest).unwrap()),
    )
}

fn assert_denied(r: &HttpResponse, needs: &str) {
    assert_eq!(r.status, 403, "{}", r.text());
    let text = r.text();
    assert!(
        text.contains("DENIED")
            && text.contains("quota exceeded for admin: ")
            && text.contains(needs),
        "{text}"
    );
}

#[test]
fn quotas_count_unique_blobs_refuse_pushes_and_survive_rebuilds() {
    let mut srv = Server::start_with(&[("ATCR_GC_GRACE_SECS", "0")]);
    let base = srv.base_url();
    let (shared, own_b) = (random(1, 40_000), random(2, 25_000));
    let _ = push_with_curl(&base, "admin/a", "v1", &shared);
    let _ = push_with_curl(&base, "admin/b", "v1", &shared);
    let b2 = push_with_curl(&base, "admin/b", "v2", &own_b);
    // Each blob once, however many manifests and repositories use it.
    let unique = (CONFIG.len() + shared.len() + own_b.len()) as u64;
    assert_eq!(usage(&srv), Some(unique));
    let a_size = (CONFIG.len() + shared.len()) as u64;
    assert_eq!(
        metric(
            &srv,
            r#"atcr_repository_storage_bytes{repository="admin/a"}"#
        ),
        Some(a_size)
    );
    assert_eq!(
        metric(
            &srv,
            r#"atcr_repository_storage_bytes{repository="admin/b"}"#
        ),
        Some(unique)
    );
    assert!(metric(&srv, "atcr_storage_bytes").is_some_and(|n| n >= unique));
    assert_eq!(metric(&srv, r#"atcr_user_quota_bytes{user="admin"}"#), None);

    // A limit 10,000 bytes above the usage, set through the daemon's admin socket.
    let limit = unique + 10_000;
    let set = ok(&srv, &["user", "quota", "admin", &limit.to_string()]);
    assert!(set.starts_with("admin\tquota "), "{set}");
    assert_eq!(
        metric(&srv, r#"atcr_user_quota_bytes{user="admin"}"#),
        Some(limit)
    );
    let list = ok(&srv, &["user", "list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("admin\t") && l.ends_with("\t63.5 KiB\t73.2 KiB\tadmin")),
        "{list}"
    );

    // A monolithic upload with its length is refused before its bytes are stored.
    let big = random(3, 20_000);
    assert_denied(&upload(&srv, "admin/c", &big), "this blob needs 19.5 KiB");
    let head = curl(
        "HEAD",
        &format!("{base}/v2/admin/c/blobs/{}", sha256(&big)),
        &[],
        None,
    );
    assert_eq!(head.status, 404);
    // A blob the user already has never counts twice.
    assert_eq!(upload(&srv, "admin/c", &shared).status, 201);

    // Uploaded while there was room, then the limit went down: the manifest PUT is refused
    // and nothing is indexed; one over blobs the user has goes through.
    ok(&srv, &["user", "quota", "admin", "unlimited"]);
    assert_eq!(upload(&srv, "admin/c", &big).status, 201);
    assert_eq!(upload(&srv, "admin/c", CONFIG).status, 201);
    ok(&srv, &["user", "quota", "admin", &limit.to_string()]);
    assert_denied(
        &put_manifest(&srv, "admin/c", "big", &[&big]),
        "this manifest's new blobs need",
    );
    let tags = curl("GET", &format!("{base}/v2/admin/c/tags/list"), &[], None);
    assert_ne!(tags.status, 200, "{}", tags.text());
    assert_eq!(
        put_manifest(&srv, "admin/c", "reuse", &[&shared]).status,
        201
    );
    assert_eq!(usage(&srv), Some(unique));

    // skopeo says why.
    if common::clients::required(&["skopeo"]) {
        let clients = Clients::new();
        let image = fresh_image(&clients.path("layout"), 30_000);
        let err = srv.must_fail(&mut clients.skopeo_copy(
            &image.reference(),
            &format!("docker://{}/admin/d:t", srv.host_port()),
            &[],
        ));
        assert!(err.contains("quota exceeded for admin: "), "{err}");
    }

    // The pages show usage and quota, the repository its size, the settings page its owner's.
    let user_page = get(&srv, "/u/admin");
    assert!(
        user_page.contains("Storage") && user_page.contains(" of "),
        "{user_page}"
    );
    let repo_page = get(&srv, "/r/admin/a");
    assert!(
        repo_page.contains(&format!("Size {}", atcr::http::human_bytes(a_size))),
        "{repo_page}"
    );
    let form = format!("identifier=admin&password={}", srv.password());
    let cookie = post_form(&srv, "/signin", None, &form)
        .header("set-cookie")
        .expect("signed in")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let settings = curl_anonymous(
        "GET",
        &format!("{base}/settings"),
        &[("Cookie", &cookie)],
        None,
    );
    assert!(
        settings.text().contains("Your repositories use "),
        "{}",
        settings.text()
    );

    // Deleting a manifest lowers the usage at once; GC then frees the bytes.
    let stored = metric(&srv, "atcr_storage_bytes").unwrap();
    let r = curl(
        "DELETE",
        &format!("{base}/v2/admin/b/manifests/{}", b2.manifest),
        &[],
        None,
    );
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(usage(&srv), Some(unique - own_b.len() as u64));
    ok(&srv, &["gc"]);
    assert!(metric(&srv, "atcr_storage_bytes").unwrap() < stored);
    let after_gc = usage(&srv);
    assert_eq!(after_gc, Some(unique - own_b.len() as u64));

    // `atcr index rebuild` (daemon stopped) counts the same; the limit is the account's.
    assert!(srv.stop());
    let rebuilt = srv.cli(&["index", "rebuild"], "");
    assert!(rebuilt.status.success(), "{rebuilt:?}");
    let offline = ok(&srv, &["user", "quota", "admin"]);
    assert_eq!(offline.trim(), "admin\tquota 73.2 KiB\tused 39.0 KiB");
    srv.restart();
    assert_eq!(usage(&srv), after_gc);
    // A lost index.redb is rebuilt at start; the limit, kept with the account, stays.
    srv.kill9();
    std::fs::remove_file(srv.data_dir().join("index.redb")).unwrap();
    srv.restart();
    assert_eq!(usage(&srv), after_gc);
    assert_eq!(
        metric(&srv, r#"atcr_user_quota_bytes{user="admin"}"#),
        Some(limit)
    );
    ok(&srv, &["user", "quota", "admin", "none"]);
    assert_eq!(metric(&srv, r#"atcr_user_quota_bytes{user="admin"}"#), None);
}
