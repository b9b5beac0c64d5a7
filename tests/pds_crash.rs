//! The PDS crash test: `createRecord` in a loop through XRPC (three writers, two repositories)
//! while `atcr serve` is killed with SIGKILL at random points, then restarted on the same data
//! directory. Afterwards every write acknowledged with 200 is there (`getRecord`, same CID),
//! each `sync.getRepo` verifies against the key of its DID document, and the firehose log read
//! from `cursor=0` is gap-free with every repository's commits chained (`since` = the rev
//! before).
//!
//! The node collects garbage every second meanwhile (`gc.interval_secs = 1`, and once at each
//! start, as the writers begin), so kills also land in the middle of a block collection.
//!
//! The kill points come from a seeded RNG; the seed is printed, and `ATCR_CRASH_SEED=<seed>`
//! replays the same schedule (timing on a busy machine still varies).
//!
//! The concurrency test: eight writers on two repositories against the binary, every write
//! acknowledged, then the same checks — and the same again after a clean restart.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use atcr::atproto::blockstore::MemoryBlockStore;
use atcr::atproto::car::CarReader;
use atcr::atproto::commit::verify_repo;
use atcr::atproto::{PublicKey, Value as Data};
use common::Server;
use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const ROUNDS: usize = 8;
/// The longest wait before a kill; a debug-build write takes a few milliseconds.
const MAX_KILL_DELAY_MS: u64 = 400;
/// Writers per round: (user index, writer id). Two share a repository (its write lock).
const WRITERS: [(usize, usize); 3] = [(0, 0), (0, 1), (1, 2)];

/// One write the server acknowledged with 200.
struct Acked {
    did: String,
    rkey: String,
    cid: String,
}

async fn call(
    client: &reqwest::Client,
    base: &str,
    nsid: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> reqwest::Result<(u16, Value)> {
    let method = if body.is_some() {
        reqwest::Method::POST
    } else {
        reqwest::Method::GET
    };
    let (status, value) = common::xrpc::Xrpc { client, base }
        .try_call(method, nsid, token, body)
        .await?;
    Ok((status.as_u16(), value))
}

async fn login(client: &reqwest::Client, base: &str, name: &str) -> String {
    let (s, v) = call(
        client,
        base,
        "com.atproto.server.createSession",
        None,
        Some(json!({"identifier": name, "password": format!("{name}-crash-pw")})),
    )
    .await
    .expect("createSession");
    assert_eq!(s, 200, "{v}");
    v["accessJwt"].as_str().expect("accessJwt").to_owned()
}

/// Writes `limit` records, or until the server goes away; returns what it acknowledged.
async fn writer(
    client: reqwest::Client,
    base: String,
    token: String,
    did: String,
    (round, id): (usize, usize),
    limit: usize,
) -> Vec<Acked> {
    let mut acked = Vec::new();
    for i in 0..limit {
        let rkey = format!("r{round}-w{id}-{i}");
        let body = json!({
            "repo": did,
            "collection": "com.example.crash",
            "rkey": rkey,
            "record": {"round": round, "writer": id, "i": i},
        });
        match call(
            &client,
            &base,
            "com.atproto.repo.createRecord",
            Some(&token),
            Some(body),
        )
        .await
        {
            Ok((200, v)) => acked.push(Acked {
                did: did.clone(),
                rkey,
                cid: v["cid"].as_str().expect("cid").to_owned(),
            }),
            Ok((status, v)) => panic!("createRecord {rkey}: {status} {v}"),
            // The kill: the connection is refused or cut.
            Err(_) => break,
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_writes_loses_no_acknowledged_write() {
    let seed = std::env::var("ATCR_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(common::images::fresh_seed);
    eprintln!("pds crash test seed: {seed} (replay with ATCR_CRASH_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);

    let (mut server, users, client) = start_with_users(&[("ATCR_GC_INTERVAL_SECS", "1")]);
    let mut acked: Vec<Acked> = Vec::new();
    for round in 0..ROUNDS {
        let base = server.base_url();
        let mut tasks = Vec::new();
        for (user, id) in WRITERS {
            let (name, did) = &users[user];
            let token = login(&client, &base, name).await;
            tasks.push(tokio::spawn(writer(
                client.clone(),
                base.clone(),
                token,
                did.clone(),
                (round, id),
                usize::MAX,
            )));
        }
        let delay = rng.gen_range(10..=MAX_KILL_DELAY_MS);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        server.kill9();
        for task in tasks {
            acked.extend(task.await.expect("writer task"));
        }
        server.restart();
    }
    eprintln!("{} writes acknowledged over {ROUNDS} kills", acked.len());
    assert!(!acked.is_empty(), "no write was acknowledged before a kill");

    let base = server.base_url();
    let context = format!("seed {seed}\n{}", server.log_tail());
    check_acked(&client, &base, &acked, &context).await;
    final_checks(&client, &base, &users, &acked, seed).await;

    // One more collection, through the daemon: everything still reads and verifies.
    let out = server.cli(&["gc"], "");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("PDS blocks"),
        "{out:?}"
    );
    check_acked(&client, &base, &acked, &context).await;
    for (_, did) in &users {
        verify_download(&client, &base, did, &acked).await;
    }
}

/// Every acknowledged write is there with its CID (`getRecord`).
async fn check_acked(client: &reqwest::Client, base: &str, acked: &[Acked], context: &str) {
    for a in acked {
        let query = format!(
            "com.atproto.repo.getRecord?repo={}&collection=com.example.crash&rkey={}",
            a.did, a.rkey
        );
        let (s, v) = call(client, base, &query, None, None).await.unwrap();
        assert_eq!(
            (s, v["cid"].as_str()),
            (200, Some(a.cid.as_str())),
            "acknowledged write {}/{} lost ({context}): {v}",
            a.did,
            a.rkey,
        );
    }
}

/// A node with alice and bob (`env`: `ATCR_*` settings), and an HTTP client for it.
fn start_with_users(
    env: &[(&str, &str)],
) -> (Server, Vec<(&'static str, String)>, reqwest::Client) {
    let mut server = Server::start_with(env);
    let users = add_users(&mut server);
    atcr::tls::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_mins(1))
        .build()
        .unwrap();
    (server, users, client)
}

/// Adds alice and bob with the CLI while the node is stopped, then starts it again; their DIDs.
fn add_users(server: &mut Server) -> Vec<(&'static str, String)> {
    assert!(server.stop(), "atcr serve did not stop cleanly");
    let mut users = Vec::new();
    for name in ["alice", "bob"] {
        let out = server.cli(
            &["user", "add", name, "--password-stdin"],
            &format!("{name}-crash-pw\n"),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let (_, did) = line.split_once('\t').expect("handle\\tdid");
        users.push((name, did.to_owned()));
    }
    server.restart();

    users
}

/// One more write per repository, whose commit ends the firehose read; then every repository
/// downloads and verifies, and the event log is gap-free and chained.
async fn final_checks(
    client: &reqwest::Client,
    base: &str,
    users: &[(&str, String)],
    acked: &[Acked],
    seed: u64,
) {
    let mut last_rev = HashMap::new();
    for (name, did) in users {
        let token = login(client, base, name).await;
        let (s, v) = call(
            client,
            base,
            "com.atproto.repo.createRecord",
            Some(&token),
            Some(json!({"repo": did, "collection": "com.example.crash", "record": {"last": true}})),
        )
        .await
        .unwrap();
        assert_eq!(s, 200, "{v}");
        last_rev.insert(did.clone(), v["commit"]["rev"].as_str().unwrap().to_owned());
    }
    for (_, did) in users {
        verify_download(client, base, did, acked).await;
    }
    check_event_log(base, &last_rev, seed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_writers_on_two_repositories() {
    const EACH: usize = 40;
    let (mut server, users, client) = start_with_users(&[]);
    let base = server.base_url();
    let mut tasks = Vec::new();
    for id in 0..8 {
        let (name, did) = &users[id % 2];
        let token = login(&client, &base, name).await;
        tasks.push(tokio::spawn(writer(
            client.clone(),
            base.clone(),
            token,
            did.clone(),
            (0, id),
            EACH,
        )));
    }
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.expect("writer task"));
    }
    assert_eq!(acked.len(), 8 * EACH, "every write is acknowledged");
    for (_, did) in &users {
        let mut listed = 0;
        let mut cursor = String::new();
        loop {
            let mut query = format!(
                "com.atproto.repo.listRecords?repo={did}&collection=com.example.crash&limit=100"
            );
            if !cursor.is_empty() {
                query = format!("{query}&cursor={cursor}");
            }
            let (s, v) = call(&client, &base, &query, None, None).await.unwrap();
            assert_eq!(s, 200, "{v}");
            listed += v["records"].as_array().unwrap().len();
            match v["cursor"].as_str() {
                Some(c) => c.clone_into(&mut cursor),
                None => break,
            }
        }
        assert_eq!(listed, 4 * EACH, "{did}: every record is listed");
    }
    final_checks(&client, &base, &users, &acked, 0).await;
    // A clean stop and start: the same state, from pds.redb alone.
    assert!(server.stop(), "atcr serve did not stop cleanly");
    server.restart();
    let base = server.base_url();
    check_acked(&client, &base, &acked, "after a clean restart").await;
    final_checks(&client, &base, &users, &acked, 0).await;
}

/// `sync.getRepo` of `did` verified with the `#atproto` key of its DID document from the node's
/// PLC directory; the tree holds at least every acknowledged record.
async fn verify_download(client: &reqwest::Client, base: &str, did: &str, acked: &[Acked]) {
    let doc = client
        .get(format!("{base}/{did}"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let doc: Value = serde_json::from_slice(&doc).expect("a DID document");
    let key = PublicKey::from_multikey(
        doc["verificationMethod"][0]["publicKeyMultibase"]
            .as_str()
            .expect("publicKeyMultibase"),
    )
    .unwrap();
    let car = client
        .get(format!("{base}/xrpc/com.atproto.sync.getRepo?did={did}"))
        .send()
        .await
        .unwrap();
    assert_eq!(car.status(), 200);
    let car = car.bytes().await.unwrap();
    let store = MemoryBlockStore::new();
    let reader = CarReader::new(car.as_ref()).unwrap();
    let root = reader.roots()[0];
    reader.load_into(&store).unwrap();
    let verified = verify_repo(&store, root, &key)
        .unwrap_or_else(|e| panic!("getRepo of {did} does not verify: {e}"));
    let mine = acked.iter().filter(|a| a.did == did).count();
    assert!(
        verified.records > mine,
        "{did}: {} records in the tree, {mine} acknowledged + 1",
        verified.records
    );
}

/// Reads `subscribeRepos?cursor=0` until each repository's `last_rev` commit: sequence numbers
/// run 1, 2, 3… and each repository's commits chain (`since` = its previous `rev`).
async fn check_event_log(base: &str, last_rev: &HashMap<String, String>, seed: u64) {
    use tokio_tungstenite::tungstenite::Message;
    let addr = base.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(
        format!("ws://{addr}/xrpc/com.atproto.sync.subscribeRepos?cursor=0"),
        stream,
    )
    .await
    .unwrap();
    let text = |v: Option<&Data>| match v {
        Some(Data::String(s)) => Some(s.clone()),
        _ => None,
    };
    let mut expected_seq = 1;
    let mut revs: HashMap<String, String> = HashMap::new();
    let mut done = 0;
    while done < last_rev.len() {
        let Some(Ok(Message::Binary(frame))) = ws.next().await else {
            panic!("the firehose ended before the last commits (seed {seed})")
        };
        let (header, body) = atcr::pds::events::parse_frame(&frame).expect("a firehose frame");
        assert_eq!(header.get("op"), Some(&Data::Integer(1)), "{body:?}");
        assert_eq!(
            body.get("seq"),
            Some(&Data::Integer(expected_seq)),
            "gap in the event log (seed {seed})"
        );
        expected_seq += 1;
        if text(header.get("t")).as_deref() != Some("#commit") {
            continue;
        }
        let repo = text(body.get("repo")).expect("repo");
        let rev = text(body.get("rev")).expect("rev");
        assert_eq!(
            text(body.get("since")),
            revs.get(&repo).cloned(),
            "{repo}: commit {rev} does not follow the one before (seed {seed})"
        );
        if last_rev.get(&repo) == Some(&rev) {
            done += 1;
        }
        revs.insert(repo, rev);
    }
}

/// Runs `atcr serve` on `data` and expects it to refuse to start; returns its stderr.
fn refused_start(data: &std::path::Path) -> String {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_atcr"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env_remove("ATCR_LISTEN")
        .env_remove("ATCR_DATA_DIR")
        .env("ATCR_CONFIG", "/dev/null")
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cannot start the atcr binary");
    let deadline = std::time::Instant::now() + Duration::from_mins(1);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("atcr serve started with a lost pds.wal");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "atcr serve exited 0");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `n` createRecord writes by `user` that the server acknowledged.
async fn acked_writes(
    client: &reqwest::Client,
    server: &Server,
    (name, did): &(&str, String),
    round: usize,
    n: usize,
) -> Vec<Acked> {
    let base = server.base_url();
    let token = login(client, &base, name).await;
    let acked = writer(client.clone(), base, token, did.clone(), (round, 0), n).await;
    assert_eq!(acked.len(), n, "every write acknowledged");
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_pds_wal_stops_the_start_until_the_loss_is_accepted() {
    let (mut server, users, client) = start_with_users(&[]);
    let acked = acked_writes(&client, &server, &users[0], 100, 30).await;
    server.kill9();
    let wal = server.data_dir().join("pds.wal");
    let logged = std::fs::read(&wal).unwrap();

    // Deleted, emptied, written over: the start refuses and says what to do.
    let damages: [(&str, Option<Vec<u8>>); 3] = [
        ("is missing", None),
        ("is empty", Some(Vec::new())),
        ("no valid header", Some(vec![0xa5; logged.len()])),
    ];
    for (what, content) in damages {
        match content {
            None => std::fs::remove_file(&wal).unwrap(),
            Some(bytes) => std::fs::write(&wal, bytes).unwrap(),
        }
        let stderr = refused_start(server.data_dir());
        assert!(
            stderr.contains(what)
                && stderr.contains("pds.wal")
                && stderr.contains("pds.redb")
                && stderr.contains("atcr pds recover --accept-loss"),
            "{what}: {stderr}"
        );
        std::fs::write(&wal, &logged).unwrap();
    }
    // With its log back, the node has every acknowledged write.
    server.restart();
    let context = server.log_tail();
    check_acked(&client, &server.base_url(), &acked, &context).await;

    // Lost again after more writes: recovery needs the operator's word, then the node runs.
    let more = acked_writes(&client, &server, &users[1], 101, 30).await;
    server.kill9();
    std::fs::remove_file(&wal).unwrap();
    let out = server.cli(&["pds", "recover"], "");
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--accept-loss"),
        "{out:?}"
    );
    let out = server.cli(&["pds", "recover", "--accept-loss"], "");
    assert!(out.status.success(), "{out:?}");
    let out = server.cli(&["pds", "recover"], "");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("nothing to recover"),
        "{out:?}"
    );
    server.restart();
    let base = server.base_url();
    check_acked(&client, &base, &acked, "before the second kill").await;
    let again = acked_writes(&client, &server, &users[1], 102, 3).await;
    check_acked(&client, &base, &again, "after recovery").await;
    drop(more);

    // A clean stop leaves nothing in the log: deleting it then loses nothing.
    assert!(server.stop(), "atcr serve did not stop cleanly");
    std::fs::remove_file(&wal).unwrap();
    server.restart();
    check_acked(&client, &server.base_url(), &again, "after a clean stop").await;
}
