//! Swaps, conflicts, missing records and lexicon validation.

use std::sync::Arc;

use super::*;
use crate::atproto::Algorithm;

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
