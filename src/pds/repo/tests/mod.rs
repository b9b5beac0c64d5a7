//! Tests of the write path, by topic; the helpers they share.

mod collect;
mod durability;
mod events;
mod pipeline;
mod writes;

use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::atproto::blockstore::{BlockStore, MemoryBlockStore};
use crate::atproto::car::CarReader;
use crate::atproto::{Algorithm, RecordKey};
use crate::pds::events::parse_frame;

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

/// A fresh store (in a directory kept while the handle lives) holding one repository,
/// alice's, and her key.
async fn alice_alone() -> (tempfile::TempDir, Repos, Did, Arc<Keypair>) {
    let dir = tempfile::tempdir().unwrap();
    let repos = open(dir.path());
    let alice = did("did:plc:alice0000000000000000000");
    let key = Arc::new(Keypair::generate(Algorithm::K256));
    repos.create_repo(&alice, key.clone()).await.unwrap();
    (dir, repos, alice, key)
}

fn create(collection: &str, key: &str, text: &str) -> WriteOp {
    WriteOp::Create {
        collection: nsid(collection),
        rkey: Some(rkey(key)),
        value: record(json!({"text": text})),
    }
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
