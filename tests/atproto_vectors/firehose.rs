use atcr::atproto::Cid;
use atcr::atproto::blockstore::{BlockStore, MemoryBlockStore};
use atcr::atproto::mst::{Mst, RecordOp, invert_ops, proof_blocks};

use crate::common::json;

fn strs(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

fn persist(store: &MemoryBlockStore, mst: &mut Mst) {
    for (cid, bytes) in mst.take_new_blocks() {
        store.put(cid, bytes).unwrap();
    }
}

#[test]
fn commit_proofs() {
    let cases = json("firehose/commit-proof-fixtures.json");
    let cases = cases.as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let comment = case["comment"].as_str().unwrap();
        let leaf: Cid = case["leafValue"].as_str().unwrap().parse().unwrap();
        let store = MemoryBlockStore::new();
        let mut mst =
            Mst::from_entries(strs(&case["keys"]).into_iter().map(|k| (k, leaf))).unwrap();
        assert_eq!(
            mst.root_cid().to_string(),
            case["rootBeforeCommit"].as_str().unwrap(),
            "{comment}"
        );
        persist(&store, &mut mst);
        // Apply the commit one op at a time on the stored tree (a fresh handle, as a PDS would).
        let mut after = Mst::load(&store, mst.root_cid()).unwrap();
        let mut ops = Vec::new();
        for k in strs(&case["adds"]) {
            assert_eq!(after.insert(&store, &k, leaf).unwrap(), None);
            ops.push(RecordOp::Create { key: k, cid: leaf });
        }
        for k in strs(&case["dels"]) {
            assert_eq!(
                after.delete(&store, &k).unwrap(),
                Some(leaf),
                "{comment}: {k}"
            );
            ops.push(RecordOp::Delete { key: k, prev: leaf });
        }
        assert_eq!(
            after.root_cid().to_string(),
            case["rootAfterCommit"].as_str().unwrap(),
            "{comment}"
        );
        persist(&store, &mut after);

        // The proof is exactly the expected set of blocks...
        let proof = proof_blocks(&store, after.root_cid(), &ops).unwrap();
        let mut got: Vec<String> = proof.iter().map(|(c, _)| c.to_string()).collect();
        let mut want = strs(&case["blocksInProof"]);
        got.sort();
        want.sort();
        assert_eq!(got, want, "{comment}");

        // ...and it is enough: a consumer holding only those blocks recovers the old root.
        let slice = MemoryBlockStore::new();
        for (cid, bytes) in proof {
            slice.put(cid, bytes).unwrap();
        }
        let before = invert_ops(&slice, after.root_cid(), &ops).unwrap();
        assert_eq!(
            before.to_string(),
            case["rootBeforeCommit"].as_str().unwrap(),
            "{comment}"
        );
    }
}
