//! `#commit` events carry the proofs sync 1.1 asks for.

use std::sync::Arc;

use super::*;
use crate::atproto::Algorithm;
use crate::atproto::blockstore::BlockStore;
use crate::atproto::blockstore::MemoryBlockStore;
use crate::atproto::car::CarReader;
use crate::atproto::mst::{RecordOp, invert_ops};
use crate::pds::events::parse_frame;

/// Alice's repository (K-256 key) with `n` posts `k000`… in one commit.
async fn alice_with_posts(dir: &std::path::Path, n: usize) -> (Repos, Did, Arc<Keypair>) {
    let repos = open(dir);
    let alice = did("did:plc:alice0000000000000000000");
    let key = Arc::new(Keypair::generate(Algorithm::K256));
    repos.create_repo(&alice, key.clone()).await.unwrap();
    let writes: Vec<WriteOp> = (0..n)
        .map(|i| create("app.test.post", &format!("k{i:03}"), "x"))
        .collect();
    repos
        .apply_writes(&alice, writes, None, Validation::IfKnown)
        .await
        .unwrap();
    (repos, alice, key)
}

/// Every `#commit` event carries the commit, its new records and enough MST blocks for a
/// consumer to undo its ops and reach `prevData` (sync 1.1).
#[tokio::test]
async fn commit_events_carry_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let (repos, alice, key) = alice_with_posts(dir.path(), 50).await;
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

/// Pruning takes events appended before the cutoff, never past the caller's bound and never the
/// newest one, and the numbering goes on where it was.
#[tokio::test]
async fn the_event_log_is_pruned_to_its_window_and_numbering_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let repos = open(dir.path());
    let alice = did("did:plc:alice0000000000000000000");
    let key = Arc::new(Keypair::generate(Algorithm::K256));
    repos.create_repo(&alice, key).await.unwrap();
    for i in 0..5 {
        repos
            .apply_writes(
                &alice,
                vec![create("app.test.post", &format!("p{i}"), "x")],
                None,
                Validation::IfKnown,
            )
            .await
            .unwrap();
    }
    let store = repos.store();
    let last = store.last_seq().unwrap();
    assert!(last >= 6, "{last}");
    let later = crate::pds::accounts::now_secs() + 10;

    // Nothing is older than a cutoff in the past.
    assert_eq!(store.prune_events(0, u64::MAX).unwrap(), 0);
    assert_eq!(store.first_seq().unwrap(), Some(1));
    // The bound holds: events the caller has not applied stay, whatever their age.
    assert_eq!(store.prune_events(later, last - 2).unwrap(), last - 2);
    assert_eq!(store.first_seq().unwrap(), Some(last - 1));
    // The newest event stays even when everything is old.
    assert_eq!(store.prune_events(later, u64::MAX).unwrap(), 1);
    assert_eq!(store.first_seq().unwrap(), Some(last));
    assert_eq!(store.events_after(0, 100).unwrap().len(), 1);

    // The next commit continues the numbering, and survives a reopen.
    repos
        .apply_writes(
            &alice,
            vec![create("app.test.post", "after", "x")],
            None,
            Validation::IfKnown,
        )
        .await
        .unwrap();
    assert_eq!(repos.store().last_seq().unwrap(), last + 1);
    drop(repos);
    let repos = open(dir.path());
    assert_eq!(repos.store().first_seq().unwrap(), Some(last));
    assert_eq!(repos.store().last_seq().unwrap(), last + 1);
}

/// Only the first commit event of a second carries an append time; the rest of that second's
/// share it. A cutoff between two seconds prunes all of the earlier second's events and none of
/// the later's; an event left behind by the bound takes the pruned one's time over, so it goes
/// once old, not with some later second.
#[tokio::test]
async fn commit_events_of_one_second_share_its_time_when_pruned() {
    use crate::pds::accounts::now_secs;
    let (_dir, repos, alice, _) = alice_alone().await;
    let post = |i: usize| {
        let repos = &repos;
        let alice = &alice;
        async move {
            let writes = vec![create("app.test.post", &format!("p{i}"), "x")];
            repos
                .apply_writes(alice, writes, None, Validation::IfKnown)
                .await
                .unwrap();
        }
    };
    for i in 0..3 {
        post(i).await;
    }
    let earlier = now_secs();
    while now_secs() == earlier {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let store = repos.store();
    let before = store.last_seq().unwrap();
    let second = now_secs();
    for i in 3..6 {
        post(i).await;
    }
    let newest = store.last_seq().unwrap();
    assert_eq!(newest, before + 3);

    assert_eq!(store.prune_events(second, u64::MAX).unwrap(), before);
    assert_eq!(store.first_seq().unwrap(), Some(before + 1));
    // The bound stops it after the later second's timed event; the next event inherits its
    // time: not older than `second`, and gone once everything is old.
    let later = now_secs() + 10;
    assert_eq!(store.prune_events(later, before + 1).unwrap(), 1);
    assert_eq!(store.prune_events(second, u64::MAX).unwrap(), 0);
    assert_eq!(store.prune_events(later, u64::MAX).unwrap(), 1);
    assert_eq!(store.first_seq().unwrap(), Some(newest));
}

/// A consumer's check of these events (`atproto::sync::verify_commit`, what the node applies
/// to the `#commit` frames of other PDSes) takes them with the repository's key, and refuses
/// them signed by another key, about another repository, with an op dropped or changed, or
/// without `prevData`.
#[tokio::test]
async fn consumers_verify_commit_events_and_refuse_tampered_ones() {
    use crate::atproto::sync::verify_commit;
    let dir = tempfile::tempdir().unwrap();
    let (repos, alice, key) = alice_with_posts(dir.path(), 10).await;
    let change = vec![
        create("app.test.post", "k100", "new"),
        WriteOp::Delete {
            collection: nsid("app.test.post"),
            rkey: rkey("k002"),
            swap_record: None,
        },
    ];
    repos
        .apply_writes(&alice, change, None, Validation::IfKnown)
        .await
        .unwrap();
    let events = repos.store().events_after(0, 100).unwrap();
    let (_, body) = parse_frame(&events.last().unwrap().1).unwrap();
    let public = key.public_key();

    let verified = verify_commit(&body, &public).unwrap();
    assert_eq!(verified.repo, alice);
    let ops: Vec<(&str, &str, bool)> = verified
        .ops
        .iter()
        .map(|o| (o.collection.as_str(), o.rkey.as_str(), o.record.is_some()))
        .collect();
    assert_eq!(
        ops,
        [
            ("app.test.post", "k100", true),
            ("app.test.post", "k002", false)
        ]
    );
    let text = verified.ops[0]
        .record
        .as_ref()
        .unwrap()
        .get("text")
        .cloned();
    assert_eq!(text, Some(Value::String("new".into())));

    let refused = |body: &Value, why: &str| {
        let e = verify_commit(body, &public).unwrap_err();
        assert!(e.contains(why), "{e}");
    };
    let other = Keypair::generate(Algorithm::K256).public_key();
    assert!(
        verify_commit(&body, &other)
            .unwrap_err()
            .contains("signature")
    );
    let edited = |f: &dyn Fn(&mut std::collections::BTreeMap<String, Value>)| {
        let Value::Map(mut map) = body.clone() else {
            panic!("a map")
        };
        f(&mut map);
        Value::Map(map)
    };
    let bob = Value::String("did:plc:bob00000000000000000000".into());
    refused(
        &edited(&|m| drop(m.insert("repo".into(), bob.clone()))),
        "not did:plc:bob",
    );
    refused(&edited(&|m| drop(m.remove("prevData"))), "prevData");
    let dropped = edited(&|m| {
        if let Some(Value::Array(ops)) = m.get_mut("ops") {
            ops.pop();
        }
    });
    refused(&dropped, "undo");
    // An op naming another record than the tree has.
    let moved = edited(&|m| {
        if let Some(Value::Array(ops)) = m.get_mut("ops")
            && let Some(Value::Map(op)) = ops.first_mut()
        {
            op.insert("path".into(), Value::String("app.test.post/k999".into()));
        }
    });
    refused(&moved, "undo");
}

/// A whole repository as `getRepo` exports it is read back by a consumer
/// (`atproto::sync::verified_records`) with its owner's key: the records of the asked
/// collections and the commit's `rev`; with another key, or as another DID's, it is refused.
#[tokio::test]
async fn consumers_take_records_only_from_verified_exports() {
    use crate::atproto::sync::verified_records;
    let dir = tempfile::tempdir().unwrap();
    let (repos, alice, key) = alice_with_posts(dir.path(), 10).await;
    let head = repos.store().head(&alice).unwrap().unwrap();
    let car = crate::atproto::car::export_repo(repos.store(), head.commit, Vec::new()).unwrap();
    let public = key.public_key();
    let (rev, records) = verified_records(&car, &alice, &public, &["app.test.post"], 100).unwrap();
    assert_eq!(rev, head.rev.to_string());
    assert_eq!(records.len(), 10);
    assert_eq!(
        (records[0].0.as_str(), records[0].1.as_str()),
        ("app.test.post", "k000")
    );
    assert!(
        verified_records(&car, &alice, &public, &["other.collection"], 100)
            .unwrap()
            .1
            .is_empty()
    );
    assert!(verified_records(&car, &alice, &public, &["app.test.post"], 5).is_err());
    let other = Keypair::generate(Algorithm::K256).public_key();
    assert!(verified_records(&car, &alice, &other, &["app.test.post"], 100).is_err());
    let bob = did("did:plc:bob00000000000000000000");
    assert!(verified_records(&car, &bob, &public, &["app.test.post"], 100).is_err());
    // One byte changed anywhere in a block: refused.
    let mut tampered = car.clone();
    let at = tampered.len() - 10;
    tampered[at] ^= 1;
    assert!(verified_records(&tampered, &alice, &public, &["app.test.post"], 100).is_err());
}
