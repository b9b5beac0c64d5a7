//! Concurrent and pipelined writers, large commits, and commits built on pending ones.

use std::sync::Arc;

use super::*;
use crate::atproto::Algorithm;
use crate::atproto::commit::verify_repo;
use crate::pds::store::CommitFailure;

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
    let (_dir, repos, alice, key) = alice_alone().await;
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

/// A writer alone commits on its own thread, without the hand-offs to the committer thread and
/// back; what it acknowledged is in the store and in the event log, in order.
#[tokio::test]
async fn a_lone_writer_commits_on_its_own_thread() {
    let (_dir, repos, alice, key) = alice_alone().await;
    let mut seqs = Vec::new();
    // The first commit of a run syncs redb, on the thread; later ones ride on the log. A
    // stalling disk turns the direct path off for a second: write until it was taken.
    let started = std::time::Instant::now();
    let mut i = 0;
    while repos.committer.direct_commits() < 10 && started.elapsed().as_secs() < 20 {
        let (info, _) = repos
            .apply_writes(
                &alice,
                vec![create("app.test.post", &format!("p{i:05}"), "x")],
                None,
                Validation::IfKnown,
            )
            .await
            .unwrap();
        seqs.push(info.seq);
        i += 1;
    }
    assert!(
        repos.committer.direct_commits() >= 10,
        "no commit was made directly"
    );
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "sequence numbers in order"
    );
    let head = repos.store().head(&alice).unwrap().unwrap();
    let verified = verify_repo(repos.store(), head.commit, &key.public_key()).unwrap();
    assert_eq!(verified.records, i);
    assert_eq!(
        commit_chain(&repos, &alice).len(),
        i,
        "one event per commit"
    );
}

/// A commit that panics halfway (here: while its event is built, inside the transaction) stops
/// all committing until a restart — on a writer's own thread as on the committer thread — and
/// leaves nothing of itself in the store.
#[tokio::test]
async fn a_commit_that_panics_stops_committing() {
    let (_dir, repos, alice, key) = alice_alone().await;
    let head = repos.store().head(&alice).unwrap().unwrap();
    let mut built = build_commit(CommitInput {
        store: repos.store().clone(),
        pending: Vec::new(),
        tree: None,
        did: alice.clone(),
        head: head.clone(),
        writes: vec![
            repos
                .prepare(
                    &alice,
                    create("app.test.post", "boom", "x"),
                    Validation::IfKnown,
                )
                .unwrap(),
        ],
        key: key.clone(),
        rev: repos.next_rev(Some(&head.rev)),
    })
    .unwrap();
    built.batch.event = Box::new(|_| panic!("injected: the event cannot be built"));
    let submitted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        repos.committer.submit(built.batch)
    }));
    if let Ok(answer) = submitted {
        // It went to the thread, which died of it.
        assert!(answer.await.is_err(), "a panicked commit has no answer");
    }
    let later = repos
        .apply_writes(
            &alice,
            vec![create("app.test.post", "after", "x")],
            None,
            Validation::IfKnown,
        )
        .await;
    assert!(later.is_err(), "a commit after a panicked one was accepted");
    assert_eq!(repos.store().head(&alice).unwrap().unwrap(), head);
    assert!(
        repos
            .store()
            .record_cid(&alice, "app.test.post", "boom")
            .unwrap()
            .is_none()
    );
}

/// A commit built on a pending (not yet durable) one, then both made durable in one group;
/// a third built on a head that never lands is refused without disturbing the others.
#[tokio::test]
async fn commits_build_on_pending_ones_and_land_in_one_group() {
    let (_dir, repos, alice, key) = alice_alone().await;
    let store = repos.store().clone();
    let head0 = store.head(&alice).unwrap().unwrap();
    let put = |k: &str| {
        vec![
            repos
                .prepare(&alice, create("app.test.post", k, "x"), Validation::IfKnown)
                .unwrap(),
        ]
    };
    let first = build_commit(CommitInput {
        store: store.clone(),
        pending: Vec::new(),
        tree: None,
        did: alice.clone(),
        head: head0.clone(),
        writes: put("a"),
        key: key.clone(),
        rev: repos.next_rev(Some(&head0.rev)),
    })
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
    let second = build_commit(CommitInput {
        store: store.clone(),
        pending: vec![layer.clone()],
        tree: None,
        did: alice.clone(),
        head: head1.clone(),
        writes: put("b"),
        key: key.clone(),
        rev: repos.next_rev(Some(&head1.rev)),
    })
    .unwrap();
    // Built on the first commit's head while that one is not durable: it never lands.
    let stray = build_commit(CommitInput {
        store: store.clone(),
        pending: vec![layer.clone()],
        tree: None,
        did: alice.clone(),
        head: head1.clone(),
        writes: put("c"),
        key: key.clone(),
        rev: repos.next_rev(Some(&head1.rev)),
    })
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
