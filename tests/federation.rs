//! Users of another PDS: the reference PDS (`@atproto/pds`, with its own `@did-plc/server`
//! directory, `tests/interop/reference-pds.mjs`) on 127.0.0.1, and the built binary configured
//! with that directory as `pds.plc_upstream`, that PDS as `identity.handle_resolver` (loopback
//! has no DNS for its handles) and loopback as `identity.lan_hosts`. skopeo logs in with a
//! remote handle and an app password of the reference PDS, pulls, and pushes into the user's
//! namespace, whose records land on the reference PDS (see `docs/federation.md`).
//!
//! Needs Node.js 22 and the pinned packages in `tests/interop/` (`tests/interop/setup.sh`) and
//! skopeo and curl; without them the test fails, unless `ATCR_SKIP_CLIENT_TESTS=1`.

mod common;

use std::path::Path;
use std::process::Command;

use base64::Engine;
use common::clients::{Clients, HttpResponse, curl_anonymous, required};
use common::interop::{interop_dir, node};
use common::reference_pds::ReferencePds;
use common::{Server, images};
use serde_json::Value;

/// `/auth/token` for `scopes` with Basic credentials (none for the user `""`).
fn token(srv: &Server, user: &str, password: &str, scopes: &[&str]) -> HttpResponse {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut url = format!(
        "{}/auth/token?service=localhost:{}",
        srv.base_url(),
        srv.host_port().rsplit(':').next().unwrap_or_default()
    );
    for s in scopes {
        url.push_str("&scope=");
        url.push_str(s);
    }
    let basic = format!("Basic {basic}");
    let auth = [("Authorization", basic.as_str())];
    curl_anonymous("GET", &url, if user.is_empty() { &[] } else { &auth }, None)
}

fn error_code(r: &HttpResponse) -> String {
    let v: Value = serde_json::from_slice(&r.body).unwrap_or_default();
    v["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn users_of_another_pds_log_in_push_into_their_repository_and_pull() {
    if !required(&["skopeo", "curl", "chromium"]) {
        return;
    }
    let Some(node) = node("@atproto/pds") else {
        return;
    };
    let mut remote = ReferencePds::start(&node);
    let plc = remote.info["plc"].as_str().expect("plc URL").to_owned();
    let resolver = format!("http://127.0.0.1:{}", remote.info["port"]);
    let mut srv = Server::start_with(&[
        ("ATCR_PDS_PLC_UPSTREAM", &plc),
        ("ATCR_IDENTITY_HANDLE_RESOLVER", &resolver),
        // The reference PDS is on this machine (its documents name http://localhost:PORT):
        // named here, or the node would refuse it, as it refuses anyone's DID document naming
        // a loopback or private address.
        ("ATCR_IDENTITY_LAN_HOSTS", "localhost,127.0.0.1"),
    ]);
    let (carol, carol_did, carol_pw) = remote.user(0);
    let (carol, carol_did, carol_pw) =
        (carol.to_owned(), carol_did.to_owned(), carol_pw.to_owned());
    let (_, _, dave_pw) = remote.user(1);
    let dave_pw = dave_pw.to_owned();

    // A local user's image on a private hold.
    let c = Clients::new();
    let local = images::fresh_image(&c.path("src"), 4096);
    let image = format!("docker://{}/admin/app:1", srv.host_port());
    srv.must(&mut c.skopeo_copy(&local.reference(), &image, &[]));
    admin(&srv, &["hold", "set", "--public", "false"]);

    // The remote user logs in with the app password of their PDS...
    c.without_login();
    let host_port = srv.host_port();
    let login = |user: &str, password: &str| {
        let mut cmd = c.skopeo();
        cmd.args([
            "login",
            "--tls-verify=false",
            "-u",
            user,
            "--password-stdin",
        ])
        .arg(&host_port);
        common::run_with_stdin(&mut cmd, &format!("{password}\n"))
    };
    let out = login(&carol, &carol_pw);
    assert!(out.status.success(), "{out:?}\n{}", srv.log_tail());
    // ... but pulls only what the hold lets them: nothing until they are crew.
    let back = c.path("back");
    let pull = c
        .skopeo_copy(&image, &format!("oci:{}:pulled", back.display()), &[])
        .output()
        .unwrap();
    assert!(!pull.status.success(), "a private hold let a stranger pull");
    admin(&srv, &["crew", "add", &carol_did, "--role", "read"]);
    srv.must(&mut c.skopeo_copy(&image, &format!("oci:{}:pulled", back.display()), &[]));
    let (desc, _) = images::read_tag(&back, "pulled");
    assert_eq!(desc.digest, local.manifest.digest);

    // A wrong app password is refused by the real client too.
    let out = login(&carol, "wrong-password");
    assert!(!out.status.success(), "{out:?}");

    // Their pushes need blob:write on the hold, as a local user's do: read crew may not.
    let scope = format!("repository:{carol}/app:pull,push");
    let upload = with_token(
        &srv,
        (&carol_did, &carol_pw, &scope),
        "POST",
        &format!("/v2/{carol}/app/blobs/uploads/"),
    );
    assert_eq!(error_code(&upload), "DENIED", "{}", upload.text());
    assert!(upload.text().contains("blob:write"), "{}", upload.text());

    // Write crew pushes into their own namespace: the blobs go to the hold, the records to
    // *their* PDS, where @atproto/api reads them back and @atproto/lexicon validates them.
    admin(&srv, &["crew", "add", &carol_did, "--role", "write"]);
    let theirs = format!("docker://{}/{carol}/app:1", srv.host_port());
    srv.must(&mut c.skopeo_copy(&local.reference(), &theirs, &[]));
    let pds_url = remote.info["url"].as_str().expect("url").to_owned();
    let records = remote.records(&node, &carol_did);
    let manifests = records["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{records}");
    let m = &manifests[0];
    assert_eq!(m["value"]["digest"], local.manifest.digest.as_str());
    assert_eq!(m["value"]["repository"], "app");
    assert_eq!(
        format!("sha256:{}", m["blobSha256"].as_str().unwrap()),
        local.manifest.digest,
        "the manifest blob on their PDS is the manifest"
    );
    let tags = records["tags"].as_array().unwrap();
    assert_eq!(tags.len(), 1, "{records}");
    assert_eq!(tags[0]["value"]["tag"], "1");
    assert_eq!(
        tags[0]["value"]["manifest"],
        format!(
            "at://{carol_did}/io.atcr.manifest/{}",
            m["rkey"].as_str().unwrap()
        )
    );
    // The image pulls from the node.
    srv.must(&mut c.skopeo_copy(&theirs, &format!("oci:{}:theirs", back.display()), &[]));
    let (desc, _) = images::read_tag(&back, "theirs");
    assert_eq!(desc.digest, local.manifest.digest);
    assert_eq!(tag_list(&srv, &carol, &carol_pw), ["1"]);
    // Carol now has records here: the node follows her PDS, and first catches up from her
    // whole repository, verified against her key (getRepo), not from unsigned listings.
    let verified = "caught up with a remote user's records (verified repository)";
    srv.wait_until(10, "no verified catch-up", || {
        srv.log_tail().contains(verified)
    });

    // The web pages: carol signs in through OAuth at the reference PDS's own authorization
    // page (real chromium), comes back signed in, and stars admin/app: the star record is in
    // *her* repository on the reference PDS. The callback replayed is refused (single use), as
    // is one with a state nobody issued.
    let (_, _, carol_account_pw) = remote.user_with_password(0);
    let carol_account_pw = &carol_account_pw.to_owned();
    let who = (carol.as_str(), carol_account_pw.as_str());
    let page = (srv.base_url(), "admin/app");
    let web = common::reference_pds::oauth_web(&node, &srv, (&page.0, page.1), who, None, &[]);
    assert_eq!(web["signedInAs"], carol.as_str(), "{web}");
    assert_eq!(web["starred"], true, "{web}");
    assert_eq!(web["replayStatus"], 400, "{web}");
    let records = remote.records(&node, &carol_did);
    let stars = records["stars"].as_array().unwrap();
    assert_eq!(stars.len(), 1, "{records}");
    let admin_did = srv.cli(&["user", "list"], "");
    let admin_did = String::from_utf8_lossy(&admin_did.stdout);
    assert!(
        admin_did.contains(
            stars[0]["value"]["subject"]
                .as_str()
                .unwrap()
                .trim_start_matches("at://")
                .split('/')
                .next()
                .unwrap()
        ),
        "the star names admin's repository: {records}\n{admin_did}"
    );
    let forged = curl_anonymous(
        "GET",
        &format!(
            "{}/oauth/callback?state=nobody&code=x&iss=y",
            srv.base_url()
        ),
        &[],
        None,
    );
    assert_eq!(forged.status, 400, "{}", forged.text());

    // Users of other PDSes join an open hold the way ATCR's AppView asks for its users: with a
    // service token their own PDS signs (getServiceAuth) for io.atcr.hold.requestCrew.
    let (dave, dave_did, dave_account_pw) = remote.user_with_password(1);
    let did_doc = curl_anonymous(
        "GET",
        &format!("{}/.well-known/did.json", srv.base_url()),
        &[],
        None,
    );
    let hold_did: Value = serde_json::from_slice(&did_doc.body).expect("the node's DID document");
    let hold_did = hold_did["id"].as_str().expect("id").to_owned();
    let ask = || request_crew(&node, &pds_url, (dave, dave_account_pw), &srv, &hold_did);
    let closed = ask();
    assert_eq!(closed["status"], 403, "{closed}");
    assert_eq!(closed["body"]["error"], "RegistrationDisabled", "{closed}");
    admin(&srv, &["hold", "set", "--allow-all-crew", "true"]);
    let joined = ask();
    assert_eq!(joined["status"], 200, "{joined}");
    assert_eq!(joined["body"]["status"], "created", "{joined}");
    let crew = srv.cli(&["crew", "list"], "");
    assert!(
        String::from_utf8_lossy(&crew.stdout).contains(dave_did),
        "{crew:?}"
    );
    assert_eq!(ask()["body"]["status"], "already_member");
    admin(&srv, &["hold", "set", "--allow-all-crew", "false"]);

    // Not in anyone else's namespace.
    let out = c
        .skopeo_copy(
            &local.reference(),
            &format!("docker://{}/admin/app:carol", srv.host_port()),
            &[],
        )
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a remote user pushed into another namespace"
    );

    // A delete through the registry deletes the records on their PDS.
    let other = images::fresh_image(&c.path("other"), 2048);
    let old = format!("docker://{}/{carol}/app:old", srv.host_port());
    srv.must(&mut c.skopeo_copy(&other.reference(), &old, &[]));
    assert_eq!(tag_list(&srv, &carol, &carol_pw), ["1", "old"]);
    let by_digest = format!(
        "docker://{}/{carol}/app@{}",
        srv.host_port(),
        other.manifest.digest
    );
    srv.must(
        c.skopeo()
            .args(["delete", "--tls-verify=false", &by_digest]),
    );
    let records = remote.records(&node, &carol_did);
    assert_eq!(
        records["manifests"].as_array().unwrap().len(),
        1,
        "{records}"
    );
    assert_eq!(records["tags"].as_array().unwrap().len(), 1, "{records}");
    assert_eq!(tag_list(&srv, &carol, &carol_pw), ["1"]);

    // The index is derived state: rebuilt offline, it still has the remote user's image (from
    // the node's copy of the records it wrote); after the restart the node fetches her
    // repository again (a verified export), and (sessions are in memory only) the next login
    // opens a session again, so pushes work.
    assert!(srv.stop(), "the node did not stop cleanly");
    let out = srv.cli(&["index", "rebuild"], "");
    assert!(out.status.success(), "index rebuild: {out:?}");
    srv.restart_same_port();
    assert_eq!(tag_list(&srv, &carol, &carol_pw), ["1"]);
    srv.wait_until(15, "carol's repository not fetched again", || {
        srv.log_since_restart().contains(verified)
    });
    let again = format!("docker://{}/{carol}/app:2", srv.host_port());
    srv.must(&mut c.skopeo_copy(&local.reference(), &again, &[]));
    assert_eq!(tag_list(&srv, &carol, &carol_pw), ["1", "2"]);

    // A tag record deleted on their PDS directly (any ATProto client) leaves the node within
    // seconds: the node follows the reference PDS's firehose and checks each commit.
    let second_tag = ReferencePds::tag_rkey(&remote.records(&node, &carol_did), "2");
    remote.delete_record(
        &node,
        (&carol, carol_account_pw),
        "io.atcr.tag",
        &second_tag,
    );
    srv.wait_until(
        5,
        "the tag deleted on the user's PDS is still listed",
        || tag_list(&srv, &carol, &carol_pw) == ["1"],
    );

    // A wrong app password is refused, and counts as a local one does (pds::limiter: five free
    // failures, then a wait from the next attempt on): past them even the right one waits.
    for i in 0..6 {
        let r = token(&srv, dave, "wrong-password", &[]);
        assert_eq!(r.status, 401, "attempt {i}: {}", r.text());
    }
    let limited = token(&srv, dave, "wrong-password", &[]);
    assert_eq!(limited.status, 429, "{}", limited.text());
    assert!(limited.header("retry-after").is_some());
    assert_eq!(token(&srv, dave, &dave_pw, &[]).status, 429);

    // A handle changed on their PDS (which emits #identity) is taken up within seconds: the
    // repository goes by the new handle, and the old one names nobody here.
    let renamed = "carol-renamed.test".to_owned();
    let out = common::run(
        Command::new(&node)
            .args([
                "remote-handle.mjs",
                &pds_url,
                &carol,
                carol_account_pw,
                &renamed,
            ])
            .current_dir(interop_dir())
            .env_remove("NODE_OPTIONS"),
    );
    assert!(out.status.success(), "remote-handle.mjs: {out:?}");
    let tags_by = |user: &str| {
        let scope = format!("repository:{user}/app:pull");
        let granted = token(&srv, user, &carol_pw, &[&scope]);
        let bearer: Value = serde_json::from_slice(&granted.body).unwrap_or_default();
        let auth = format!("Bearer {}", bearer["token"].as_str().unwrap_or_default());
        let url = format!("{}/v2/{user}/app/tags/list", srv.base_url());
        curl_anonymous("GET", &url, &[("Authorization", &auth)], None).status
    };
    srv.wait_until(
        10,
        "the new handle does not name carol's repository",
        || tags_by(&renamed) == 200,
    );
    assert_eq!(
        tags_by(&carol),
        404,
        "the old handle still names carol's repository"
    );
    let carol = renamed;
    // skopeo logs in by the new handle (its stored login names the old one, which no longer
    // resolves).
    let out = login(&carol, &carol_pw);
    assert!(out.status.success(), "{out:?}");

    // The remote PDS down: a password checked a moment ago still works (it is remembered); one
    // not checked yet cannot be, which is said (503), not taken for a wrong one.
    remote.pause();
    let cached = token(&srv, &carol, &carol_pw, &[]);
    assert_eq!(cached.status, 200, "{}", cached.text());
    let unchecked = token(&srv, &carol, "another-password", &[]);
    assert_eq!(unchecked.status, 503, "{}", unchecked.text());
    assert_eq!(
        error_code(&unchecked),
        "UNAVAILABLE",
        "{}",
        unchecked.text()
    );
    let out = login(&carol, "another-password");
    assert!(!out.status.success());
    // Their pushes fail with the reason, and nothing is indexed; their images still pull (the
    // index and the blobs are here).
    let out = c
        .skopeo_copy(
            &local.reference(),
            &format!("docker://{}/{carol}/app:3", srv.host_port()),
            &[],
        )
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a push went through with the user's PDS down"
    );
    assert!(
        srv.log_tail().contains("did not take a write"),
        "{}",
        srv.log_tail()
    );
    assert_eq!(tag_list(&srv, &carol, &carol_pw), ["1"]);
    let pulled = format!("oci:{}:outage", back.display());
    let renamed_image = format!("docker://{}/{carol}/app:1", srv.host_port());
    srv.must(&mut c.skopeo_copy(&renamed_image, &pulled, &[]));

    // Their PDS back: pushes go through again, and the node takes up the PDS's events from its
    // cursor, including those that came while the node itself was stopped.
    remote.resume();
    let third = format!("docker://{}/{carol}/app:3", srv.host_port());
    srv.must(&mut c.skopeo_copy(&local.reference(), &third, &[]));
    assert_eq!(tag_list(&srv, &carol, &carol_pw), ["1", "3"]);
    let third_tag = ReferencePds::tag_rkey(&remote.records(&node, &carol_did), "3");
    assert!(srv.stop());
    remote.delete_record(&node, (&carol, carol_account_pw), "io.atcr.tag", &third_tag);
    srv.restart_same_port();
    srv.wait_until(
        10,
        "a tag deleted while the node was stopped is listed",
        || tag_list(&srv, &carol, &carol_pw) == ["1"],
    );
    let resumed = srv.log_since_restart();
    assert!(
        resumed.contains("following a remote PDS") && resumed.contains("cursor=Some("),
        "the node did not follow the PDS from its cursor after the restart\n{resumed}"
    );

    // Their repository is on the pages and in search, under their handle (a public hold shows
    // its repositories to anyone).
    admin(&srv, &["hold", "set", "--public", "true"]);
    let page = curl_anonymous(
        "GET",
        &format!("{}/r/{carol}/app", srv.base_url()),
        &[],
        None,
    );
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(
        page.text().contains(&format!("{carol}/app")),
        "{}",
        page.text()
    );
    let shown = |srv: &Server| {
        let url = |path: &str| format!("{}{path}", srv.base_url());
        let page = curl_anonymous("GET", &url(&format!("/r/{carol}/app")), &[], None);
        let hits = curl_anonymous("GET", &url("/search?q=app"), &[], None);
        let catalog = with_token(srv, ("", "", "registry:catalog:*"), "GET", "/v2/_catalog");
        let listed = catalog.text().contains(&format!("\"{carol}/app\""));
        // Found by search, on her own page, and her star of admin/app counts on the front page.
        let user = curl_anonymous("GET", &url(&format!("/u/{carol}")), &[], None);
        let home = curl_anonymous("GET", &url("/"), &[], None).text();
        let found = [hits, user]
            .iter()
            .all(|r| r.text().contains(&format!("/r/{carol}/app")))
            && home.contains("★ 1");
        let (pull, manifest) = (
            format!("repository:{carol}/app:pull"),
            format!("/v2/{carol}/app/manifests/1"),
        );
        let manifest = with_token(srv, ("", "", &pull), "GET", &manifest);
        (page.status, manifest.status, found, listed)
    };
    let until = |srv: &Server, want: (u16, u16, bool, bool), what: &str| {
        srv.wait_until(10, what, || shown(srv) == want);
    };
    until(
        &srv,
        (200, 200, true, true),
        "the remote user's repository is hidden",
    );

    // Their account taken down on their PDS (which announces it with #account): their
    // repositories are hidden here (no page, no pulls, not in the catalog or search) until it is
    // reinstated, and then come back as they were.
    remote.take_down(&carol_did, true);
    until(
        &srv,
        (404, 404, false, false),
        "a taken-down user's repository shows",
    );
    assert!(srv.log_tail().contains("their repositories are hidden"));
    let home = curl_anonymous("GET", &format!("{}/", srv.base_url()), &[], None);
    assert!(!home.text().contains("★ 1"), "a hidden user's star counts");
    remote.take_down(&carol_did, false);
    until(
        &srv,
        (200, 200, true, true),
        "a reinstated user's repository is hidden",
    );
    let pull = format!("docker://{}/{carol}/app:1", srv.host_port());
    srv.must(&mut c.skopeo_copy(&pull, &pulled, &[]));

    // A forged commit (the reference PDS's firehose re-signing it with another key) deleting
    // carol's last tag is refused and logged; the index keeps the tag.
    remote.tamper(true);
    let last_tag = ReferencePds::tag_rkey(&remote.records(&node, &carol_did), "1");
    remote.delete_record(&node, (&carol, carol_account_pw), "io.atcr.tag", &last_tag);
    srv.wait_until(10, "the forged commit was not refused", || {
        srv.log_tail().contains("refused a remote commit event")
    });
    assert_eq!(tag_list(&srv, &carol, &carol_pw), ["1"]);
}

/// `METHOD path` on the node with a token for (user, password, scope).
fn with_token(srv: &Server, who: (&str, &str, &str), method: &str, path: &str) -> HttpResponse {
    let (user, password, scope) = who;
    let granted = token(srv, user, password, &[scope]);
    assert_eq!(granted.status, 200, "{}", granted.text());
    let bearer: Value = serde_json::from_slice(&granted.body).unwrap();
    let token = format!("Bearer {}", bearer["token"].as_str().unwrap());
    let url = format!("{}{path}", srv.base_url());
    curl_anonymous(method, &url, &[("Authorization", &token)], None)
}

/// The tags of `user`'s `app` on the node, listed with `user`'s token.
fn tag_list(srv: &Server, user: &str, password: &str) -> Vec<String> {
    let scope = format!("repository:{user}/app:pull");
    let list = with_token(
        srv,
        (user, password, &scope),
        "GET",
        &format!("/v2/{user}/app/tags/list"),
    );
    assert_eq!(list.status, 200, "{}", list.text());
    let v: Value = serde_json::from_slice(&list.body).unwrap();
    let mut tags: Vec<String> = v["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect();
    tags.sort();
    tags
}

/// `tests/interop/request-crew.mjs`: `who` (handle, account password on the reference PDS)
/// asks the node's hold to join its crew with a service token from their PDS.
fn request_crew(node: &Path, pds_url: &str, who: (&str, &str), srv: &Server, hold: &str) -> Value {
    let out = common::run(
        Command::new(node)
            .args([
                "request-crew.mjs",
                pds_url,
                who.0,
                who.1,
                &srv.base_url(),
                hold,
            ])
            .current_dir(interop_dir())
            .env_remove("NODE_OPTIONS"),
    );
    assert!(out.status.success(), "request-crew.mjs: {out:?}");
    serde_json::from_slice(&out.stdout).expect("one JSON line")
}

/// `atcr ARGS` against the running server (its admin socket); panics if it fails.
fn admin(srv: &Server, args: &[&str]) {
    let out = srv.cli(args, "");
    assert!(out.status.success(), "atcr {args:?}: {out:?}");
}
