//! Block collection: what no head reaches goes, everything a head reaches stays — blocks that
//! come back, blocks two repositories share, commits racing the collection, a crash after it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::durability::crash_copy;
use super::*;
use crate::atproto::Algorithm;
use crate::atproto::commit::verify_repo;
use crate::atproto::mst::WalkItem;

const POST: &str = "app.test.post";

fn put(key: &str, text: &str) -> WriteOp {
    WriteOp::Update {
        collection: nsid(POST),
        rkey: rkey(key),
        value: record(serde_json::json!({"text": text})),
        swap_record: None,
    }
}

fn delete(key: &str) -> WriteOp {
    WriteOp::Delete {
        collection: nsid(POST),
        rkey: rkey(key),
        swap_record: None,
    }
}

/// The CID a post with `text` gets (its `$type` set as the write path sets it).
fn post_cid(text: &str) -> Cid {
    let value = record(serde_json::json!({"$type": POST, "text": text}));
    Cid::for_cbor(&value.to_cbor())
}

/// Every block a head reaches: commits, nodes, records.
fn reachable(store: &PdsStore) -> HashSet<Cid> {
    let snapshot = store.snapshot().unwrap();
    let mut out = HashSet::new();
    for (_, head) in store.list_repos(None, 1000).unwrap() {
        out.insert(head.commit);
        Mst::load(&snapshot, head.data)
            .unwrap()
            .walk(&snapshot, &mut |item| {
                out.insert(match item {
                    WalkItem::Node { cid, .. } => cid,
                    WalkItem::Leaf { value, .. } => value,
                });
                Ok(())
            })
            .unwrap();
    }
    out
}

/// Every head verifies: signed commit, whole tree, every record present.
fn verify_all(store: &PdsStore, key: &Keypair) -> usize {
    let mut records = 0;
    for (did, head) in store.list_repos(None, 1000).unwrap() {
        let verified = verify_repo(store, head.commit, &key.public_key())
            .unwrap_or_else(|e| panic!("{did} does not verify: {e}"));
        records += verified.records;
    }
    records
}

async fn repo(repos: &Repos, name: &str, key: &Arc<Keypair>) -> Did {
    let d = did(&format!("did:plc:{name:0<24}"));
    repos.create_repo(&d, key.clone()).await.unwrap();
    d
}

async fn write(repos: &Repos, did: &Did, writes: Vec<WriteOp>) {
    repos
        .apply_writes(did, writes, None, Validation::IfKnown)
        .await
        .unwrap();
}

/// Alice's repository after 20 updates of four records, the i-th writing `text(i)`.
async fn alice_rewritten(repos: &Repos, key: &Arc<Keypair>, text: impl Fn(usize) -> String) -> Did {
    let alice = repo(repos, "alice", key).await;
    for i in 0..20 {
        write(repos, &alice, vec![put(&format!("k{}", i % 4), &text(i))]).await;
    }
    alice
}

/// The store holds exactly the blocks its heads reach.
fn assert_holds_only_reachable(store: &PdsStore) {
    assert_eq!(store.size().unwrap().blocks, reachable(store).len() as u64);
}

#[tokio::test]
async fn collection_leaves_exactly_what_the_heads_reach() {
    let dir = tempfile::tempdir().unwrap();
    let repos = open(dir.path());
    let key = Arc::new(Keypair::generate(Algorithm::K256));
    let alice = repo(&repos, "alice", &key).await;
    let mut keys = HashSet::new();
    for i in 0..60 {
        let k = format!("k{}", i % 12);
        write(&repos, &alice, vec![put(&k, &format!("v{i}"))]).await;
        keys.insert(k);
        let gone = format!("k{}", (i + 3) % 12);
        if i % 5 == 4 && keys.remove(&gone) {
            write(&repos, &alice, vec![delete(&gone)]).await;
        }
    }
    let store = repos.store();
    let old = store.head(&alice).unwrap().unwrap();
    write(&repos, &alice, vec![put("k0", "last")]).await;
    let before = store.size().unwrap();
    let live = reachable(store);
    assert!(
        before.blocks > live.len() as u64 * 3,
        "old commits left blocks"
    );

    let dry = store.collect_blocks(true).unwrap();
    assert_eq!(dry.blocks_seen, before.blocks);
    assert_eq!(dry.blocks_deleted, before.blocks - live.len() as u64);
    assert_eq!(
        store.size().unwrap().blocks,
        before.blocks,
        "a dry run deletes nothing"
    );

    let done = store.collect_blocks(false).unwrap();
    assert_eq!(done.blocks_deleted, dry.blocks_deleted);
    assert_eq!(done.bytes_freed, dry.bytes_freed);
    let after = store.size().unwrap();
    assert_eq!(after.blocks, live.len() as u64);
    assert!(
        after.block_bytes < before.block_bytes / 2,
        "{before:?} → {after:?}"
    );
    assert!(
        after.live_bytes < before.live_bytes,
        "{before:?} → {after:?}"
    );
    assert_eq!(reachable(store), live);
    assert_eq!(verify_all(store, &key), 11);
    assert_eq!(store.collect_blocks(false).unwrap().blocks_deleted, 0);

    // `getRepo?since=` a revision whose blocks are gone answers a superset, not an error.
    assert!(store.get(&old.commit).unwrap().is_none());
    let head = store.head(&alice).unwrap().unwrap();
    let snapshot = store.snapshot().unwrap();
    let since =
        crate::atproto::car::export_repo_since(&snapshot, head.commit, old.data, Vec::new());
    let whole = crate::atproto::car::export_repo(&snapshot, head.commit, Vec::new());
    assert_eq!(since.unwrap(), whole.unwrap());

    // The repository goes on from the collected store.
    write(&repos, &alice, vec![put("k0", "after")]).await;
    assert_eq!(verify_all(repos.store(), &key), 11);
}

#[tokio::test]
async fn a_block_that_comes_back_or_is_shared_stays() {
    let dir = tempfile::tempdir().unwrap();
    let repos = open(dir.path());
    let key = Arc::new(Keypair::generate(Algorithm::K256));
    let alice = repo(&repos, "alice", &key).await;
    let bob = repo(&repos, "bob", &key).await;
    let store = repos.store();

    // The same record in two repositories is one block; one deleting it leaves the other's.
    write(&repos, &alice, vec![put("a", "same"), put("b", "gone")]).await;
    write(&repos, &bob, vec![put("x", "same")]).await;
    write(&repos, &alice, vec![delete("a"), put("b", "other")]).await;
    store.collect_blocks(false).unwrap();
    assert!(
        store.get(&post_cid("same")).unwrap().is_some(),
        "bob's record went"
    );
    assert!(
        store.get(&post_cid("gone")).unwrap().is_none(),
        "unreachable record stayed"
    );

    // A record identical to a collected one comes back with the commit that writes it.
    write(&repos, &alice, vec![put("c", "gone")]).await;
    store.collect_blocks(false).unwrap();
    assert!(store.get(&post_cid("gone")).unwrap().is_some());
    // And the tree shape (so its nodes) of an earlier commit, reached again.
    write(&repos, &alice, vec![delete("c")]).await;
    store.collect_blocks(false).unwrap();
    assert!(store.get(&post_cid("gone")).unwrap().is_none());
    assert_eq!(verify_all(store, &key), 2);
    assert_holds_only_reachable(store);
}

#[tokio::test]
async fn a_commit_between_mark_and_sweep_keeps_what_it_brings_back() {
    let dir = tempfile::tempdir().unwrap();
    let repos = open(dir.path());
    let key = Arc::new(Keypair::generate(Algorithm::K256));
    let alice = repo(&repos, "alice", &key).await;
    let store = repos.store();
    write(&repos, &alice, vec![put("a", "back"), put("z", "z")]).await;
    let shape = store.head(&alice).unwrap().unwrap().data;
    write(&repos, &alice, vec![put("a", "other"), put("b", "b")]).await;

    // Marked without the record and the tree's old nodes; then a commit brings both back
    // before the sweep reaches them.
    let collection = store.begin_collection().unwrap();
    write(&repos, &alice, vec![put("a", "back"), delete("b")]).await;
    assert_eq!(store.head(&alice).unwrap().unwrap().data, shape);
    assert!(collection.sweep(false).unwrap().blocks_deleted > 0);
    assert!(store.get(&post_cid("back")).unwrap().is_some());
    assert_eq!(verify_all(store, &key), 2);
}

/// The regression test for deleting a reachable block under load: writers on three
/// repositories (two per repository, so commits build on commits still waiting for their sync)
/// keep re-creating records (one block at several keys) and tree shapes that just became
/// unreachable, while collections run back to back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn collections_racing_commits_never_take_a_reachable_block() {
    let dir = tempfile::tempdir().unwrap();
    let repos = Arc::new(open(dir.path()));
    let key = Arc::new(Keypair::generate(Algorithm::K256));
    let mut dids = Vec::new();
    for name in ["alice", "bob", "carol"] {
        dids.push(repo(&repos, name, &key).await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let collector = {
        let (store, stop) = (repos.store().clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut runs, mut deleted) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                deleted += store.collect_blocks(false).unwrap().blocks_deleted;
                runs += 1;
            }
            (runs, deleted)
        })
    };
    let mut writers = Vec::new();
    for (n, did) in dids.iter().enumerate() {
        for half in 0..2 {
            let (repos, did) = (repos.clone(), did.clone());
            writers.push(tokio::spawn(async move {
                let mut model: HashMap<String, String> = HashMap::new();
                for i in 0..80usize {
                    let k = format!("h{half}k{}", (i * 7 + n) % 5);
                    let op = if (i + n) % 4 == 3 {
                        model.remove(&k).map(|_| delete(&k))
                    } else {
                        let text = format!("{n}v{}", (i + half) % 3);
                        model.insert(k.clone(), text.clone());
                        Some(put(&k, &text))
                    };
                    if let Some(op) = op {
                        write(&repos, &did, vec![op]).await;
                    }
                }
                (did, model)
            }));
        }
    }
    let mut models = Vec::new();
    for w in writers {
        models.push(w.await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    let (runs, deleted) = collector.join().unwrap();
    assert!(
        runs > 1 && deleted > 0,
        "collections ran: {runs}, deleted {deleted}"
    );

    let store = repos.store();
    let snapshot = store.snapshot().unwrap();
    for (did, model) in &models {
        let head = store.head(did).unwrap().unwrap();
        let tree = Mst::load(&snapshot, head.data).unwrap();
        for (k, text) in model {
            let cid = tree.get(&snapshot, &format!("{POST}/{k}")).unwrap();
            assert_eq!(cid, Some(post_cid(text)), "{did} {k}");
        }
    }
    let total: usize = models.iter().map(|(_, m)| m.len()).sum();
    assert_eq!(verify_all(store, &key), total);
    store.collect_blocks(false).unwrap();
    assert_holds_only_reachable(store);
}

#[tokio::test]
async fn what_a_collection_deleted_stays_deleted_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let repos = open(dir.path());
    let key = Arc::new(Keypair::generate(Algorithm::K256));
    alice_rewritten(&repos, &key, |i| format!("v{i}")).await;
    // Every sweep batch is durable by itself: no commit after the collection is needed.
    assert!(repos.store().collect_blocks(false).unwrap().blocks_deleted > 0);
    let crashed = tempfile::tempdir().unwrap();
    crash_copy(dir.path(), crashed.path());
    let after = open(crashed.path());
    assert_holds_only_reachable(after.store());
    assert_eq!(
        after.store().collect_blocks(false).unwrap().blocks_deleted,
        0
    );
    assert_eq!(verify_all(after.store(), &key), 4);
}

#[tokio::test]
async fn a_crash_after_a_collection_replays_onto_the_collected_store() {
    let dir = tempfile::tempdir().unwrap();
    let repos = open(dir.path());
    let key = Arc::new(Keypair::generate(Algorithm::K256));
    let alice = alice_rewritten(&repos, &key, |i| format!("v{}", i % 3)).await;
    // Collected durably while commits ride on `pds.wal`; then more commits on the log, some
    // bringing back what was just collected.
    assert!(repos.store().collect_blocks(false).unwrap().blocks_deleted > 0);
    for i in 0..6 {
        write(
            &repos,
            &alice,
            vec![put(&format!("k{}", i % 4), &format!("v{}", i % 2))],
        )
        .await;
    }
    let crashed = tempfile::tempdir().unwrap();
    crash_copy(dir.path(), crashed.path());
    let after = open(crashed.path());
    assert_eq!(
        after.store().head(&alice).unwrap(),
        repos.store().head(&alice).unwrap()
    );
    assert_eq!(verify_all(after.store(), &key), 4);
    after.store().collect_blocks(false).unwrap();
    assert_eq!(verify_all(after.store(), &key), 4);
    assert_holds_only_reachable(after.store());
}
