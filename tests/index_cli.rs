//! `atcr index rebuild` through the binary: after a push with skopeo, the daemon stopped, the
//! index rebuilt from the records, the registry serves the same tags and manifests. A damaged
//! `index.redb` is moved aside, by `serve` and by `index rebuild`, and rebuilt.

mod common;

use common::clients::{Clients, curl, push_with_curl, required};
use common::{Server, images};

#[test]
fn index_rebuild_keeps_what_the_registry_serves() {
    if !required(&["skopeo", "curl"]) {
        return;
    }
    let mut srv = Server::start();
    let c = Clients::new();
    let local = images::fresh_image(&c.path("src"), 2048);
    for tag in ["1", "2"] {
        srv.must(&mut c.skopeo_copy(
            &local.reference(),
            &format!("docker://{}/admin/app:{tag}", srv.host_port()),
            &[],
        ));
    }
    let answers = |srv: &Server| {
        [
            "/v2/_catalog",
            "/v2/admin/app/tags/list",
            "/v2/admin/app/manifests/2",
        ]
        .iter()
        .map(|p| {
            let r = curl(
                "GET",
                &format!("{}{p}", srv.base_url()),
                &[("Accept", images::OCI_MANIFEST)],
                None,
            );
            (r.status, r.text())
        })
        .collect::<Vec<_>>()
    };
    let before = answers(&srv);
    assert!(before.iter().all(|(s, _)| *s == 200), "{before:?}");

    assert!(srv.stop(), "atcr serve did not stop cleanly");
    let out = srv.cli(&["index", "rebuild"], "");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("account repositor")
            && stdout.contains(": 1 image repository, 1 manifest, 2 tags,"),
        "atcr index rebuild printed {stdout:?}"
    );
    srv.restart_same_port();
    assert_eq!(answers(&srv), before);
}

/// `GET /v2/admin/app/manifests/v1` (an OCI manifest accepted).
fn manifest_v1(srv: &Server) -> common::clients::HttpResponse {
    curl(
        "GET",
        &format!("{}/v2/admin/app/manifests/v1", srv.base_url()),
        &[("Accept", images::OCI_MANIFEST)],
        None,
    )
}

/// Cuts `index.redb` in half, as a failing disk might leave it.
fn damage_index(srv: &Server) -> u64 {
    let path = srv.data_dir().join("index.redb");
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len / 2).unwrap();
    len / 2
}

/// The files `index.redb.damaged-*` in the data directory, with their sizes.
fn damaged(srv: &Server) -> Vec<u64> {
    std::fs::read_dir(srv.data_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("index.redb.damaged-")
        })
        .map(|e| e.metadata().unwrap().len())
        .collect()
}

#[test]
fn a_damaged_index_is_moved_aside_and_rebuilt() {
    let mut srv = Server::start();
    let layer = b"a layer that must still pull".repeat(100);
    let pushed = push_with_curl(&srv.base_url(), "admin/app", "v1", &layer);
    let pull = |srv: &Server| {
        let m = manifest_v1(srv);
        let l = curl(
            "GET",
            &format!("{}/v2/admin/app/blobs/{}", srv.base_url(), pushed.layer),
            &[],
            None,
        );
        (m.status, m.body, l.status, l.body)
    };
    assert_eq!(
        pull(&srv),
        (200, pushed.manifest_bytes.clone(), 200, layer.clone())
    );

    // `serve` on a cut index: it starts, says so, and serves what the PDS holds.
    assert!(srv.stop(), "atcr serve did not stop cleanly");
    let cut = damage_index(&srv);
    srv.restart_same_port();
    assert_eq!(
        pull(&srv),
        (200, pushed.manifest_bytes.clone(), 200, layer.clone())
    );
    assert_eq!(damaged(&srv), [cut]);
    let log = srv.log_tail();
    assert!(
        log.contains("WARN") && log.contains("index.redb.damaged-"),
        "{log}"
    );

    // `atcr index rebuild` on a cut index.
    assert!(srv.stop(), "atcr serve did not stop cleanly");
    damage_index(&srv);
    let out = srv.cli(&["index", "rebuild"], "");
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 image repository, 1 manifest, 1 tag,"),
        "{out:?}"
    );
    assert_eq!(
        damaged(&srv).len(),
        2,
        "the second damaged file is kept too"
    );
    srv.restart_same_port();
    assert_eq!(pull(&srv), (200, pushed.manifest_bytes, 200, layer));
}

/// The first frame a firehose subscriber from `cursor` gets: its `t` and body.
fn first_firehose_frame(srv: &Server, cursor: u64) -> (String, atcr::atproto::Value) {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let addr = srv.host_port();
        let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let (mut ws, _) = tokio_tungstenite::client_async(
            format!("ws://{addr}/xrpc/com.atproto.sync.subscribeRepos?cursor={cursor}"),
            stream,
        )
        .await
        .unwrap();
        let Some(Ok(Message::Binary(frame))) = ws.next().await else {
            panic!("no firehose frame")
        };
        let (header, body) = atcr::pds::events::parse_frame(&frame).unwrap();
        let t = header
            .get("t")
            .and_then(atcr::atproto::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        (t, body)
    })
}

/// With the event log pruned to its window, an old cursor is told so (`#info OutdatedCursor`),
/// and a lost `index.redb` is rebuilt from the repositories, not from what is left of the log.
#[test]
fn a_lost_index_is_rebuilt_from_the_repositories_once_the_log_was_pruned() {
    let mut srv = Server::start_with(&[("ATCR_PDS_EVENTS_KEEP_SECS", "1")]);
    let layer = b"pushed before the log was pruned".repeat(50);
    let pushed = push_with_curl(&srv.base_url(), "admin/app", "v1", &layer);
    let pull = |srv: &Server| {
        let m = manifest_v1(srv);
        (m.status, m.body)
    };
    assert_eq!(pull(&srv), (200, pushed.manifest_bytes.clone()));

    // The pruner runs every second with a one-second window: soon the first event is gone.
    let mut outdated = None;
    for _ in 0..120 {
        let (t, body) = first_firehose_frame(&srv, 0);
        if t == "#info" {
            outdated = Some(body);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let info = outdated.expect("the event log was never pruned");
    assert_eq!(
        info.get("name").and_then(atcr::atproto::Value::as_str),
        Some("OutdatedCursor")
    );

    assert!(srv.stop(), "atcr serve did not stop cleanly");
    std::fs::remove_file(srv.data_dir().join("index.redb")).unwrap();
    srv.restart_same_port();
    assert_eq!(pull(&srv), (200, pushed.manifest_bytes));
    let log = srv.log_tail();
    assert!(log.contains("rebuilding it from the repositories"), "{log}");
}

/// An `index.redb` of format 2 (repository names and digests as strings in the keys), with a
/// tag no record says and the pushed layer's blob rows, as an older version left it.
fn write_format_2_index(srv: &Server, layer: &str, size: u64) {
    use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition};
    const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
    const REPOS: TableDefinition<&str, u64> = TableDefinition::new("repos");
    const TAGS: TableDefinition<(&str, &str), &str> = TableDefinition::new("tags");
    const BLOBS: TableDefinition<&str, u64> = TableDefinition::new("blobs");
    const REPO_BLOBS: TableDefinition<(&str, &str), u64> = TableDefinition::new("repo_blobs");
    let path = srv.data_dir().join("index.redb");
    let repo = {
        let db = redb::Database::open(&path).unwrap();
        let tx = db.begin_read().unwrap();
        let repos = tx.open_table(REPOS).unwrap();
        let (name, _) = repos.first().unwrap().expect("the pushed repository");
        name.value().to_owned()
    };
    std::fs::remove_file(&path).unwrap();
    let db = redb::Database::create(&path).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let mut meta = tx.open_table(META).unwrap();
        meta.insert("format", 2).unwrap();
        meta.insert("cursor", 1_000).unwrap();
        tx.open_table(REPOS)
            .unwrap()
            .insert(repo.as_str(), 1)
            .unwrap();
        tx.open_table(TAGS)
            .unwrap()
            .insert((repo.as_str(), "stale"), layer)
            .unwrap();
        tx.open_table(BLOBS).unwrap().insert(layer, size).unwrap();
        tx.open_table(REPO_BLOBS)
            .unwrap()
            .insert((repo.as_str(), layer), size)
            .unwrap();
    }
    tx.commit().unwrap();
}

#[test]
fn an_index_of_an_older_format_is_rebuilt_from_the_pds_at_start() {
    let mut srv = Server::start();
    let layer = b"a layer from before the upgrade".repeat(100);
    let pushed = push_with_curl(&srv.base_url(), "admin/app", "v1", &layer);
    assert!(srv.stop(), "atcr serve did not stop cleanly");
    write_format_2_index(&srv, &pushed.layer, layer.len() as u64);

    srv.restart_same_port();
    let m = manifest_v1(&srv);
    assert_eq!((m.status, m.body), (200, pushed.manifest_bytes));
    let l = curl(
        "GET",
        &format!("{}/v2/admin/app/blobs/{}", srv.base_url(), pushed.layer),
        &[],
        None,
    );
    assert_eq!((l.status, l.body), (200, layer));
    let tags = curl(
        "GET",
        &format!("{}/v2/admin/app/tags/list", srv.base_url()),
        &[],
        None,
    );
    assert_eq!(tags.status, 200);
    assert!(
        tags.text().contains("\"v1\"") && !tags.text().contains("stale"),
        "the tags the records say, and only them: {}",
        tags.text()
    );
    let log = srv.log_tail();
    assert!(log.contains("written by an older version"), "{log}");
    assert!(
        damaged(&srv).is_empty(),
        "an older index is not a damaged one"
    );
}
