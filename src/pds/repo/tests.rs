use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::atproto::Algorithm;
use crate::atproto::blockstore::MemoryBlockStore;
use crate::atproto::car::CarReader;
use crate::atproto::commit::verify_repo;
use crate::atproto::mst::invert_ops;
use crate::pds::events::parse_frame;
use crate::pds::store::Recovery;

fn did(s: &str) -> Did {
    s.parse().unwrap()
}

fn nsid(s: &str) -> Nsid {
    s.parse().unwrap()
}

fn rkey(s: &str) -> RecordKey {
    s.parse().unwrap()
}

#[allow(clippy::needless_pass_by_value)]
fn record(j: serde_json::Value) -> Value {
    Value::from_json_object(&j).unwrap()
}

fn open(dir: &std::path::Path) -> Repos {
    let store = PdsStore::open(&dir.join("pds.redb")).unwrap();
    Repos::new(store, Arc::new(crate::pds::lexicons::builtin()))
}

fn create(collection: &str, key: &str, text: &str) -> WriteOp {
    WriteOp::Create {
        collection: nsid(collection),
        rkey: Some(rkey(key)),
        value: record(json!({"text": text})),
    }
}

#[tokio::test]
async fn writes_commit_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let alice = did("did:plc:alice0000000000000000000");
    let key = Arc::new(Keypair::generate(Algorithm::K256));
    let head = {
        let repos = open(dir.path());
        let first = repos.create_repo(&alice, key.clone()).await.unwrap();
        assert_eq!(first.seq, 1);
        let (info, results) = repos
            .apply_writes(
                &alice,
                vec![
                    create("app.test.post", "a", "one"),
                    create("app.test.post", "b", "two"),
                ],
                Some(first.cid),
                Validation::IfKnown,
            )
            .await
            .unwrap();
        assert_eq!(info.seq, 2);
        assert!(info.rev.as_str() > first.rev.as_str());
        assert!(
            matches!(&results[0], WriteResult::Create { uri, validated: false, .. } if uri == "at://did:plc:alice0000000000000000000/app.test.post/a")
        );
        info
    };
    // Reopen: head, index and blocks are all there and the repository verifies.
    let repos = open(dir.path());
    let stored = repos.store().head(&alice).unwrap().unwrap();
    assert_eq!(stored.commit, head.cid);
    let verified = verify_repo(repos.store(), stored.commit, &key.public_key()).unwrap();
    assert_eq!(verified.records, 2);
    let listed = repos
        .store()
        .list_records(&alice, "app.test.post", None, 10, false)
        .unwrap();
    assert_eq!(
        listed.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    let reversed = repos
        .store()
        .list_records(&alice, "app.test.post", Some("b"), 10, true)
        .unwrap();
    assert_eq!(reversed.len(), 1);
    assert_eq!(
        repos.store().collections(&alice).unwrap(),
        ["app.test.post"]
    );
    assert_eq!(repos.store().last_seq().unwrap(), 2);
}

/// Copies of `pds.redb` and `pds.wal` taken while the store is open are what a crash leaves:
/// redb at its last durable commit, the rest in the log.
fn crash_copy(from: &std::path::Path, to: &std::path::Path) {
    for file in ["pds.redb", "pds.wal"] {
        std::fs::copy(from.join(file), to.join(file)).unwrap();
    }
}

#[tokio::test]
async fn logged_commits_are_replayed_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let alice = did("did:plc:alice0000000000000000000");
    let bob = did("did:plc:bob000000000000000000000");
    let key = Arc::new(Keypair::generate(Algorithm::K256));
    let repos = open(dir.path());
    repos.create_repo(&alice, key.clone()).await.unwrap();
    repos.create_repo(&bob, key.clone()).await.unwrap();
    for i in 0..20 {
        let did = if i % 2 == 0 { &alice } else { &bob };
        let mut writes = vec![create("app.test.post", &format!("p{i}"), "text")];
        if i >= 4 {
            // Deletes replay too.
            writes.push(WriteOp::Delete {
                collection: nsid("app.test.post"),
                rkey: rkey(&format!("p{}", i - 4)),
                swap_record: None,
            });
        }
        repos
            .apply_writes(did, writes, None, Validation::IfKnown)
            .await
            .unwrap();
        if i == 11 {
            // Redb takes everything so far; the log starts again from the top, over entries
            // that must not be replayed.
            repos.store().checkpoint().unwrap();
        }
    }
    let crashed = tempfile::tempdir().unwrap();
    crash_copy(dir.path(), crashed.path());
    let wal_len = std::fs::metadata(crashed.path().join("pds.wal"))
        .unwrap()
        .len();
    assert!(wal_len > 0, "the commits were logged");

    let after = open(crashed.path());
    for did in [&alice, &bob] {
        let before = repos.store().head(did).unwrap().unwrap();
        assert_eq!(after.store().head(did).unwrap().unwrap(), before);
        let verified = verify_repo(after.store(), before.commit, &key.public_key()).unwrap();
        assert_eq!(
            verified.records, 2,
            "each repository keeps its last two posts"
        );
        assert_eq!(
            after
                .store()
                .list_records(did, "app.test.post", None, 10, false)
                .unwrap(),
            repos
                .store()
                .list_records(did, "app.test.post", None, 10, false)
                .unwrap()
        );
    }
    assert_eq!(after.store().last_seq().unwrap(), 22);
    assert_eq!(
        after.store().events_after(0, 100).unwrap(),
        repos.store().events_after(0, 100).unwrap()
    );
    // The replay was made durable: a crash right after it needs no log.
    let again = tempfile::tempdir().unwrap();
    crash_copy(crashed.path(), again.path());
    std::fs::write(again.path().join("pds.wal"), b"").unwrap();
    let reopened = open(again.path());
    assert_eq!(reopened.store().last_seq().unwrap(), 22);
    // And writing goes on from there.
    reopened.register_key(alice.clone(), key.clone());
    reopened
        .apply_writes(
            &alice,
            vec![create("app.test.post", "later", "text")],
            None,
            Validation::IfKnown,
        )
        .await
        .unwrap();
    assert_eq!(reopened.store().last_seq().unwrap(), 23);
}

#[tokio::test]
async fn a_log_from_another_moment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let alice = did("did:plc:alice0000000000000000000");
    let key = Arc::new(Keypair::generate(Algorithm::K256));
    let repos = open(dir.path());
    repos.create_repo(&alice, key.clone()).await.unwrap();
    let old = tempfile::tempdir().unwrap();
    crash_copy(dir.path(), old.path());
    for i in 0..3 {
        repos
            .apply_writes(
                &alice,
                vec![create("app.test.post", &format!("p{i}"), "text")],
                None,
                Validation::IfKnown,
            )
            .await
            .unwrap();
    }
    // An old pds.redb (a backup, say) beside a newer log whose groups it cannot continue.
    let mixed = tempfile::tempdir().unwrap();
    crash_copy(old.path(), mixed.path());
    let mut wal = std::fs::read(dir.path().join("pds.wal")).unwrap();
    // Drop the first logged group so the log starts past where redb ends.
    let start = crate::pds::wal::LOG_START as usize;
    let first = 20 + u32::from_le_bytes(wal[start + 12..start + 16].try_into().unwrap()) as usize;
    wal.drain(start..start + first);
    std::fs::write(mixed.path().join("pds.wal"), &wal).unwrap();
    let err = PdsStore::open(&mixed.path().join("pds.redb")).unwrap_err();
    assert!(
        err.to_string().contains("not from the same moment"),
        "{err}"
    );
}

#[tokio::test]
async fn a_lost_log_is_refused_unless_the_loss_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let alice = did("did:plc:alice0000000000000000000");
    let key = Arc::new(Keypair::generate(Algorithm::K256));
    let repos = open(dir.path());
    repos.create_repo(&alice, key.clone()).await.unwrap();
    for i in 0..5 {
        repos
            .apply_writes(
                &alice,
                vec![create("app.test.post", &format!("p{i}"), "text")],
                None,
                Validation::IfKnown,
            )
            .await
            .unwrap();
    }
    let crashed = tempfile::tempdir().unwrap();
    crash_copy(dir.path(), crashed.path());
    let redb = crashed.path().join("pds.redb");
    let wal = crashed.path().join("pds.wal");
    let logged = std::fs::read(&wal).unwrap();

    // Deleted, emptied, written over, or another run's log: refused, naming both files.
    let mut foreign = logged.clone();
    foreign[4] ^= 0xff;
    let sum = crc32fast::hash(&foreign[..12]);
    foreign[12..16].copy_from_slice(&sum.to_le_bytes());
    let cases: [(&str, Option<Vec<u8>>); 4] = [
        ("is missing", None),
        ("is empty", Some(Vec::new())),
        ("no valid header", Some(vec![0x5a; logged.len()])),
        ("is the log of epoch", Some(foreign)),
    ];
    for (what, content) in cases {
        match content {
            None => std::fs::remove_file(&wal).unwrap(),
            Some(bytes) => std::fs::write(&wal, bytes).unwrap(),
        }
        let err = PdsStore::open(&redb).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, StoreError::LogLost(_)), "{message}");
        assert!(
            message.contains(what)
                && message.contains(&wal.display().to_string())
                && message.contains(&redb.display().to_string())
                && message.contains("atcr pds recover --accept-loss"),
            "{what}: {message}"
        );
        // Refusing changed nothing: the right log still recovers everything.
        std::fs::write(&wal, &logged).unwrap();
        let store = PdsStore::open(&redb).unwrap();
        assert_eq!(store.last_seq().unwrap(), 6);
        drop(store);
        crash_copy(dir.path(), crashed.path());
    }

    // Accepting the loss starts with what redb held, and the next start is normal.
    std::fs::remove_file(&wal).unwrap();
    let store = PdsStore::open_with(&redb, Recovery::AcceptLoss).unwrap();
    assert!(store.last_seq().unwrap() < 6, "the logged commits are gone");
    drop(store);
    PdsStore::open(&redb).unwrap();

    // After a clean stop redb needs no log.
    repos.store().checkpoint().unwrap();
    crash_copy(dir.path(), crashed.path());
    std::fs::remove_file(&wal).unwrap();
    assert_eq!(PdsStore::open(&redb).unwrap().last_seq().unwrap(), 6);
}

#[tokio::test]
async fn conflicts_and_missing_records() {
    let dir = tempfile::tempdir().unwrap();
    let repos = open(dir.path());
    let alice = did("did:plc:alice0000000000000000000");
    let key = Arc::new(Keypair::generate(Algorithm::K256));
    let first = repos.create_repo(&alice, key.clone()).await.unwrap();
    assert!(matches!(
        repos.create_repo(&alice, key).await,
        Err(RepoError::RepoExists(_))
    ));
    let (second, _) = repos
        .apply_writes(
            &alice,
            vec![create("app.test.post", "a", "one")],
            None,
            Validation::IfKnown,
        )
        .await
        .unwrap();
    // A stale swapCommit is refused, and nothing is written.
    let stale = repos
        .apply_writes(
            &alice,
            vec![create("app.test.post", "b", "x")],
            Some(first.cid),
            Validation::IfKnown,
        )
        .await;
    assert!(matches!(stale, Err(RepoError::InvalidSwap(_))), "{stale:?}");
    // Creating an existing key.
    let dup = repos
        .apply_writes(
            &alice,
            vec![create("app.test.post", "a", "again")],
            None,
            Validation::IfKnown,
        )
        .await;
    assert!(matches!(dup, Err(RepoError::InvalidRequest(_))));
    // Deleting or replacing (applyWrites' #update) needs the record; putRecord's update
    // creates it.
    let delete = WriteOp::Delete {
        collection: nsid("app.test.post"),
        rkey: rkey("zzz"),
        swap_record: None,
    };
    let replace = |key: &str| WriteOp::Replace {
        collection: nsid("app.test.post"),
        rkey: rkey(key),
        value: record(json!({"text": "replaced"})),
    };
    for writes in [vec![delete], vec![replace("a"), replace("zzz")]] {
        let missing = repos
            .apply_writes(&alice, writes, None, Validation::IfKnown)
            .await;
        assert!(
            matches!(&missing, Err(RepoError::RecordNotFound(p)) if p == "app.test.post/zzz"),
            "{missing:?}"
        );
    }
    // swapRecord: must match the current CID; `null` means "must not exist".
    let wrong = repos
        .apply_writes(
            &alice,
            vec![WriteOp::Update {
                collection: nsid("app.test.post"),
                rkey: rkey("a"),
                value: record(json!({"text": "new"})),
                swap_record: Some(None),
            }],
            None,
            Validation::IfKnown,
        )
        .await;
    assert!(matches!(wrong, Err(RepoError::InvalidSwap(_))));
    assert_eq!(
        repos.store().head(&alice).unwrap().unwrap().commit,
        second.cid
    );
    // A wrong $type, an unknown collection with validation required.
    let bad_type = repos
        .apply_writes(
            &alice,
            vec![WriteOp::Create {
                collection: nsid("app.test.post"),
                rkey: None,
                value: record(json!({"$type": "app.other.thing"})),
            }],
            None,
            Validation::IfKnown,
        )
        .await;
    assert!(matches!(bad_type, Err(RepoError::InvalidRequest(_))));
    let unknown = repos
        .apply_writes(
            &alice,
            vec![create("app.test.post", "c", "x")],
            None,
            Validation::Require,
        )
        .await;
    assert!(matches!(unknown, Err(RepoError::InvalidRequest(_))));
    let ghost = did("did:plc:ghost0000000000000000000");
    repos.register_key(ghost.clone(), Arc::new(Keypair::generate(Algorithm::K256)));
    let none = repos
        .apply_writes(
            &ghost,
            vec![create("app.test.post", "a", "x")],
            None,
            Validation::IfKnown,
        )
        .await;
    assert!(matches!(none, Err(RepoError::RepoNotFound(_))));
}

#[tokio::test]
async fn atcr_records_are_validated_against_their_lexicons() {
    let dir = tempfile::tempdir().unwrap();
    let repos = open(dir.path());
    let alice = did("did:plc:alice0000000000000000000");
    repos
        .create_repo(&alice, Arc::new(Keypair::generate(Algorithm::K256)))
        .await
        .unwrap();
    let bad = repos
        .apply_writes(
            &alice,
            vec![WriteOp::Create {
                collection: nsid("io.atcr.tag"),
                rkey: Some(rkey("app_latest")),
                value: record(json!({"repository": "app"})),
            }],
            None,
            Validation::IfKnown,
        )
        .await;
    assert!(matches!(bad, Err(RepoError::InvalidRequest(m)) if m.contains("tag")));
    let (_, results) = repos
        .apply_writes(
            &alice,
            vec![WriteOp::Create {
                collection: nsid("io.atcr.tag"),
                rkey: Some(rkey("app_latest")),
                value: record(json!({"repository": "app", "tag": "latest", "createdAt": "2025-01-01T00:00:00Z"})),
            }],
            None,
            Validation::IfKnown,
        )
        .await
        .unwrap();
    assert!(matches!(
        results[0],
        WriteResult::Create {
            validated: true,
            ..
        }
    ));
}

/// Every `#commit` event carries the commit, its new records and enough MST blocks for a
/// consumer to undo its ops and reach `prevData` (sync 1.1).
#[tokio::test]
async fn commit_events_carry_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let repos = open(dir.path());
    let alice = did("did:plc:alice0000000000000000000");
    let key = Arc::new(Keypair::generate(Algorithm::K256));
    repos.create_repo(&alice, key.clone()).await.unwrap();
    let writes: Vec<WriteOp> = (0..50)
        .map(|i| create("app.test.post", &format!("k{i:03}"), "x"))
        .collect();
    repos
        .apply_writes(&alice, writes, None, Validation::IfKnown)
        .await
        .unwrap();
    repos
        .apply_writes(
            &alice,
            vec![
                create("app.test.post", "k100", "new"),
                WriteOp::Update {
                    collection: nsid("app.test.post"),
                    rkey: rkey("k010"),
                    value: record(json!({"text": "changed"})),
                    swap_record: None,
                },
                WriteOp::Delete {
                    collection: nsid("app.test.post"),
                    rkey: rkey("k020"),
                    swap_record: None,
                },
            ],
            None,
            Validation::IfKnown,
        )
        .await
        .unwrap();
    let events = repos.store().events_after(0, 100).unwrap();
    assert_eq!(
        events.iter().map(|e| e.0).collect::<Vec<_>>(),
        [1, 2, 3],
        "gap-free sequence"
    );
    for (seq, frame) in &events[1..] {
        let (header, body) = parse_frame(frame).unwrap();
        assert_eq!(header.get("t").and_then(Value::as_str), Some("#commit"));
        assert_eq!(
            body.get("seq"),
            Some(&Value::Integer(i64::try_from(*seq).unwrap()))
        );
        let Some(Value::Bytes(car)) = body.get("blocks") else {
            panic!("no blocks")
        };
        let store = MemoryBlockStore::new();
        let reader = CarReader::new(car.as_slice()).unwrap();
        let root = reader.roots()[0];
        reader.load_into(&store).unwrap();
        let commit =
            crate::atproto::Commit::from_cbor(&store.get(&root).unwrap().unwrap()).unwrap();
        commit.verify(&key.public_key()).unwrap();
        let ops: Vec<RecordOp> = body
            .get("ops")
            .and_then(|o| match o {
                Value::Array(a) => Some(a.clone()),
                _ => None,
            })
            .unwrap()
            .iter()
            .map(|op| {
                let key = op.get("path").and_then(Value::as_str).unwrap().to_owned();
                let link = |f: &str| match op.get(f) {
                    Some(Value::Link(c)) => Some(*c),
                    _ => None,
                };
                match op.get("action").and_then(Value::as_str).unwrap() {
                    "create" => RecordOp::Create {
                        key,
                        cid: link("cid").unwrap(),
                    },
                    "update" => RecordOp::Update {
                        key,
                        cid: link("cid").unwrap(),
                        prev: link("prev").unwrap(),
                    },
                    _ => RecordOp::Delete {
                        key,
                        prev: link("prev").unwrap(),
                    },
                }
            })
            .collect();
        let Some(Value::Link(prev_data)) = body.get("prevData") else {
            panic!("no prevData")
        };
        assert_eq!(
            invert_ops(&store, commit.unsigned.data, &ops).unwrap(),
            *prev_data
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_two_repos() {
    let dir = tempfile::tempdir().unwrap();
    let repos = Arc::new(open(dir.path()));
    let dids = [
        did("did:plc:alice0000000000000000000"),
        did("did:plc:bob00000000000000000000"),
    ];
    let key = Arc::new(Keypair::generate(Algorithm::K256));
    for d in &dids {
        repos.create_repo(d, key.clone()).await.unwrap();
    }
    let mut tasks = Vec::new();
    for w in 0..8 {
        let repos = repos.clone();
        let d = dids[w % 2].clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                repos
                    .apply_writes(
                        &d,
                        vec![create("app.test.post", &format!("w{w}-{i}"), "x")],
                        None,
                        Validation::IfKnown,
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for d in &dids {
        let head = repos.store().head(d).unwrap().unwrap();
        assert_eq!(
            verify_repo(repos.store(), head.commit, &key.public_key())
                .unwrap()
                .records,
            40
        );
    }
    let events = repos.store().events_after(0, 1000).unwrap();
    assert_eq!(events.len(), 82);
    assert!(events.iter().enumerate().all(|(i, e)| e.0 == i as u64 + 1));
}

/// Measures (does not assert) one single-record commit on a 10k-record repository.
#[tokio::test]
async fn single_commit_on_a_large_repo() {
    let dir = tempfile::tempdir().unwrap();
    let repos = open(dir.path());
    let alice = did("did:plc:alice0000000000000000000");
    let key = Arc::new(Keypair::generate(Algorithm::K256));
    repos.create_repo(&alice, key.clone()).await.unwrap();
    for batch in 0..10 {
        let writes = (0..1000)
            .map(|i| create("app.test.post", &format!("r{batch}-{i:04}"), "x"))
            .collect();
        repos
            .apply_writes(&alice, writes, None, Validation::IfKnown)
            .await
            .unwrap();
    }
    let started = std::time::Instant::now();
    repos
        .apply_writes(
            &alice,
            vec![create("app.test.post", "one-more", "x")],
            None,
            Validation::IfKnown,
        )
        .await
        .unwrap();
    eprintln!(
        "single-record commit on a 10k-record repo: {:?}",
        started.elapsed()
    );
    let head = repos.store().head(&alice).unwrap().unwrap();
    assert_eq!(
        verify_repo(repos.store(), head.commit, &key.public_key())
            .unwrap()
            .records,
        10_001
    );
}

/// The `#commit` events of `repo` in sequence order: (rev, since, prevData, data).
fn commit_chain(repos: &Repos, repo: &Did) -> Vec<(String, Option<String>, Cid, Cid)> {
    let mut out = Vec::new();
    for (_, frame) in repos.store().events_after(0, 10_000).unwrap() {
        let (header, body) = parse_frame(&frame).unwrap();
        if header.get("t").and_then(Value::as_str) != Some("#commit")
            || body.get("repo").and_then(Value::as_str) != Some(repo.as_str())
        {
            continue;
        }
        let Some(Value::Bytes(car)) = body.get("blocks") else {
            panic!("no blocks")
        };
        let store = MemoryBlockStore::new();
        let reader = CarReader::new(car.as_slice()).unwrap();
        let root = reader.roots()[0];
        reader.load_into(&store).unwrap();
        let commit =
            crate::atproto::Commit::from_cbor(&store.get(&root).unwrap().unwrap()).unwrap();
        let Some(Value::Link(prev_data)) = body.get("prevData") else {
            continue; // the repository's first commit
        };
        out.push((
            body.get("rev").and_then(Value::as_str).unwrap().to_owned(),
            body.get("since").and_then(Value::as_str).map(str::to_owned),
            *prev_data,
            commit.unsigned.data,
        ));
    }
    out
}

/// Many writers on one repository: commits are built on ones still waiting for their fsync,
/// yet every acknowledged write is in the verified repository and the events form one chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipelined_writers_on_one_repo_form_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let repos = Arc::new(open(dir.path()));
    let alice = did("did:plc:alice0000000000000000000");
    let key = Arc::new(Keypair::generate(Algorithm::K256));
    repos.create_repo(&alice, key.clone()).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..16 {
        let (repos, alice) = (repos.clone(), alice.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..20 {
                let key = format!("w{w:02}-{i:02}");
                let (info, _) = repos
                    .apply_writes(
                        &alice,
                        vec![create("app.test.post", &key, "x")],
                        None,
                        Validation::IfKnown,
                    )
                    .await
                    .unwrap();
                acked.push((key, info.seq));
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    let head = repos.store().head(&alice).unwrap().unwrap();
    assert_eq!(
        verify_repo(repos.store(), head.commit, &key.public_key())
            .unwrap()
            .records,
        320
    );
    for (key, _) in &acked {
        let cid = repos
            .store()
            .record_cid(&alice, "app.test.post", key)
            .unwrap();
        assert!(cid.is_some(), "acknowledged record {key} is missing");
    }
    let mut seqs: Vec<u64> = acked.iter().map(|a| a.1).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 320, "every commit has its own sequence number");
    let chain = commit_chain(&repos, &alice);
    assert_eq!(chain.len(), 320);
    for pair in chain.windows(2) {
        assert_eq!(pair[1].1.as_deref(), Some(pair[0].0.as_str()), "since");
        assert_eq!(
            pair[1].2, pair[0].3,
            "prevData is the previous commit's data"
        );
        assert!(pair[1].0 > pair[0].0, "revisions increase");
    }
    assert_eq!(chain.last().unwrap().3, head.data);
}

/// A commit built on a pending (not yet durable) one, then both made durable in one group;
/// a third built on a head that never lands is refused without disturbing the others.
#[tokio::test]
async fn commits_build_on_pending_ones_and_land_in_one_group() {
    let dir = tempfile::tempdir().unwrap();
    let repos = open(dir.path());
    let alice = did("did:plc:alice0000000000000000000");
    let key = Arc::new(Keypair::generate(Algorithm::K256));
    repos.create_repo(&alice, key.clone()).await.unwrap();
    let store = repos.store().clone();
    let head0 = store.head(&alice).unwrap().unwrap();
    let put = |k: &str| {
        vec![
            repos
                .prepare(&alice, create("app.test.post", k, "x"), Validation::IfKnown)
                .unwrap(),
        ]
    };
    let first = build_commit(
        &store,
        &[],
        None,
        &alice,
        &head0,
        put("a"),
        &key,
        repos.next_rev(Some(&head0.rev)),
    )
    .unwrap();
    let layer = Arc::new(
        first
            .batch
            .blocks
            .iter()
            .cloned()
            .collect::<HashMap<_, _>>(),
    );
    let head1 = first.batch.head.clone();
    let second = build_commit(
        &store,
        std::slice::from_ref(&layer),
        None,
        &alice,
        &head1,
        put("b"),
        &key,
        repos.next_rev(Some(&head1.rev)),
    )
    .unwrap();
    // Built on the first commit's head while that one is not durable: it never lands.
    let stray = build_commit(
        &store,
        std::slice::from_ref(&layer),
        None,
        &alice,
        &head1,
        put("c"),
        &key,
        repos.next_rev(Some(&head1.rev)),
    )
    .unwrap();
    let head2 = second.batch.head.clone();
    let outcomes = store
        .commit_group(vec![first.batch, second.batch, stray.batch])
        .unwrap();
    assert!(outcomes[0].is_ok() && outcomes[1].is_ok());
    assert!(matches!(outcomes[2], Err(CommitFailure::HeadMoved)));
    assert_eq!(store.head(&alice).unwrap().unwrap(), head2);
    let verified = verify_repo(&store, head2.commit, &key.public_key()).unwrap();
    assert_eq!(verified.records, 2);
    assert!(
        store
            .record_cid(&alice, "app.test.post", "c")
            .unwrap()
            .is_none()
    );
    let chain = commit_chain(&repos, &alice);
    assert_eq!(chain.len(), 2, "the refused commit left no event");

    let mut pending = Pending::default();
    for h in [&head0, &head1, &head2] {
        pending.chain.push_back(PendingCommit {
            head: h.clone(),
            blocks: Arc::default(),
        });
    }
    pending.landed(&head1.commit);
    assert_eq!(
        pending.chain.len(),
        1,
        "what landed leaves the chain, with what came before it"
    );
    pending.failed();
    assert!(
        pending.chain.is_empty(),
        "a failure starts the chain again from the store"
    );
}
