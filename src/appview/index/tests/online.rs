//! Online compaction: every commit made before, during and around it is in the new file.

use super::*;
use crate::appview::index::file::Step;

/// A push of one manifest tagged `v1` into `repo`.
fn push_v1(ix: &Index, repo: &str) {
    put(ix, repo, &d(repo), record(None), Some("v1"), &[], None);
}

fn tags(ix: &Index, repo: &str) -> Vec<String> {
    ix.tags(&k(repo), None, 1000).unwrap().0
}

/// An index whose pages are as a running node leaves them: 200 repositories pushed one commit
/// at a time, half their tags deleted again.
fn filled(path: &std::path::Path) -> Index {
    let ix = Index::open(path).unwrap();
    for i in 0..200 {
        let repo = format!("did:plc:o{}/app{i}", i % 7);
        for t in 0..4 {
            let m = d(&format!("{i}-{t}"));
            let tag = format!("t{t}");
            put(&ix, &repo, &m, record(None), Some(&tag), &[], None);
        }
        for t in 0..2 {
            delete(&ix, tag_addr(&repo, &format!("t{t}")));
        }
    }
    ix
}

#[test]
fn commits_before_during_and_while_it_holds_the_writer_all_land_in_the_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.redb");
    let ix = filled(&path);
    assert!(ix.compaction_due().unwrap(), "never compacted: due");
    let inode =
        |p: &std::path::Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let old_inode = inode(&path);
    let mut waiting = None;
    let (before, after) = ix
        .compact_online_with(|step| match step {
            Step::Snapshot => {
                push_v1(&ix, "did:plc:w/snap");
            }
            Step::Copied => {
                push_v1(&ix, "did:plc:w/copied");
                delete(&ix, tag_addr("did:plc:o0/app0", "t3"));
            }
            Step::Holding => {
                let writer = ix.clone();
                waiting = Some(std::thread::spawn(move || {
                    push_v1(&writer, "did:plc:w/held");
                }));
                // Give it the time to start waiting for the writer the compaction holds.
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        })
        .unwrap()
        .expect("a file");
    waiting
        .expect("the compaction held the writer")
        .join()
        .unwrap();
    assert!(after < before, "{before} → {after}");
    assert_ne!(inode(&path), old_inode, "a new file at the path");
    assert!(!dir.path().join("index.redb.compacting").exists());
    assert!(!ix.compaction_due().unwrap(), "just compacted");

    let check = |ix: &Index, repositories: u64| {
        assert_eq!(tags(ix, "did:plc:w/snap"), ["v1"]);
        assert_eq!(tags(ix, "did:plc:w/copied"), ["v1"]);
        assert_eq!(tags(ix, "did:plc:w/held"), ["v1"]);
        assert_eq!(
            tags(ix, "did:plc:o0/app0"),
            ["t2"],
            "the delete made meanwhile"
        );
        assert_eq!(tags(ix, "did:plc:o3/app199"), ["t2", "t3"]);
        assert_eq!(ix.stats().unwrap().repositories, repositories);
    };
    check(&ix, 203);
    // The index writes on, to the new file, and a reopened file has it all.
    push_v1(&ix, "did:plc:w/after");
    drop(ix);
    let ix = Index::open(&path).unwrap();
    check(&ix, 204);
    assert_eq!(tags(&ix, "did:plc:w/after"), ["v1"]);
}

#[test]
fn a_writer_that_never_pauses_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.redb");
    let ix = filled(&path);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (ix, stop) = (ix.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || n < 20 {
                let repo = format!("did:plc:busy/r{n}");
                put(&ix, &repo, &d(&repo), record(None), Some("v1"), &[], None);
                n += 1;
            }
            n
        })
    };
    ix.compact_online().unwrap().expect("a file");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().unwrap();
    drop(ix);
    let ix = Index::open(&path).unwrap();
    for n in 0..written {
        assert_eq!(
            tags(&ix, &format!("did:plc:busy/r{n}")),
            ["v1"],
            "push {n} of {written}"
        );
    }
    assert_eq!(ix.stats().unwrap().repositories, 200 + written);
}

#[test]
fn an_abandoned_compaction_leaves_the_index_in_use_and_a_second_one_waits_its_turn() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.redb");
    let ix = filled(&path);
    let inode =
        |p: &std::path::Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let old_inode = inode(&path);
    let copy = dir.path().join("index.redb.compacting");
    let failed = ix.compact_online_with(|step| {
        if step == Step::Copied {
            assert!(copy.exists());
            // A second compaction meanwhile is refused, and leaves this one's copy alone.
            assert!(ix.compact_online().is_err());
            assert!(copy.exists());
            push_v1(&ix, "did:plc:w/meanwhile");
            // What a failed commit or too many changes do to the journal.
            ix.journal.lose();
        }
    });
    assert!(failed.is_err(), "abandoned");
    assert!(!copy.exists(), "the copy is removed");
    assert_eq!(inode(&path), old_inode, "the old file stays in use");
    assert_eq!(tags(&ix, "did:plc:w/meanwhile"), ["v1"]);
    assert!(
        !ix.compaction_due().unwrap(),
        "the next collection does not copy it all again at once"
    );
    ix.compact_online().unwrap().expect("a file");
    assert_ne!(inode(&path), old_inode);
    assert_eq!(tags(&ix, "did:plc:w/meanwhile"), ["v1"]);
}

#[test]
fn tables_deleted_and_made_again_meanwhile_exist_in_the_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.redb");
    let ix = filled(&path);
    ix.compact_online_with(|step| {
        if step == Step::Copied {
            // A rebuild's start: every derived table deleted, then opened (made) again empty.
            ix.clear_derived(0).unwrap();
        }
    })
    .unwrap()
    .expect("a file");
    assert_eq!(ix.stats().unwrap().repositories, 0);
    assert!(ix.most_starred(10).unwrap().is_empty());
    assert!(tags(&ix, "did:plc:o0/app0").is_empty());
    push_v1(&ix, "did:plc:w/again");
    drop(ix);
    let ix = Index::open(&path).unwrap();
    assert_eq!(tags(&ix, "did:plc:w/again"), ["v1"]);
    assert_eq!(ix.stats().unwrap().repositories, 1);
}
