//! Commits survive a reopen and a crash; a log that does not belong to the database is refused.

use std::sync::Arc;

use super::*;
use crate::atproto::Algorithm;
use crate::atproto::commit::verify_repo;
use crate::pds::store::Recovery;

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
pub(super) fn crash_copy(from: &std::path::Path, to: &std::path::Path) {
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
