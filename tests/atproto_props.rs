//! Property tests of the atproto data layer: the MST is canonical whatever the order of
//! operations, diffs and commit proofs agree with a model, and DAG-CBOR round-trips.

use std::collections::BTreeMap;

use atcr::atproto::blockstore::{BlockStore, MemoryBlockStore};
use atcr::atproto::mst::{Mst, RecordOp, diff, invert_ops, proof_blocks};
use atcr::atproto::{Cid, Value};
use proptest::prelude::*;

fn key_strategy() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![
            "io.atcr.tag",
            "io.atcr.manifest",
            "app.bsky.feed.post",
        ]),
        "[a-z0-9]{1,8}",
    )
        .prop_map(|(c, r)| format!("{c}/{r}"))
}

fn cid_of(n: u8) -> Cid {
    Cid::for_cbor(&[n])
}

#[derive(Debug, Clone)]
enum Op {
    Put(String, u8),
    Del(usize),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (key_strategy(), 0u8..4).prop_map(|(k, v)| Op::Put(k, v)),
        1 => any::<usize>().prop_map(Op::Del),
    ]
}

fn persist(store: &MemoryBlockStore, mst: &mut Mst) {
    store.put_many(mst.take_new_blocks()).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn any_order_gives_the_fresh_build_root(ops in prop::collection::vec(op_strategy(), 0..160)) {
        let store = MemoryBlockStore::new();
        let mut mst = Mst::new();
        let mut model: BTreeMap<String, Cid> = BTreeMap::new();
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::Put(k, v) => {
                    let prev = mst.insert(&store, k, cid_of(*v)).unwrap();
                    prop_assert_eq!(prev, model.insert(k.clone(), cid_of(*v)));
                }
                Op::Del(n) => {
                    let key = model.keys().nth(n % model.len().max(1)).cloned();
                    if let Some(k) = key {
                        prop_assert_eq!(mst.delete(&store, &k).unwrap(), model.remove(&k));
                        prop_assert_eq!(mst.delete(&store, &k).unwrap(), None);
                    }
                }
            }
            // Now and then persist and reopen from the store, as a PDS does between commits.
            if i % 17 == 16 {
                persist(&store, &mut mst);
                mst = Mst::load(&store, mst.root_cid()).unwrap();
            }
        }
        let fresh = Mst::from_entries(model.clone()).unwrap();
        prop_assert_eq!(mst.root_cid(), fresh.root_cid());
        persist(&store, &mut mst);
        let reopened = Mst::load(&store, mst.root_cid()).unwrap();
        let entries: Vec<(String, Cid)> = model.clone().into_iter().collect();
        prop_assert_eq!(reopened.entries(&store).unwrap(), entries);
        for (k, v) in &model {
            prop_assert_eq!(reopened.get(&store, k).unwrap(), Some(*v));
        }
        prop_assert_eq!(reopened.get(&store, "io.atcr.tag/absent-key-x").unwrap(), None);
        // Listing by prefix with a cursor pages through exactly the model's keys.
        let prefix = "io.atcr.tag/";
        let want: Vec<(String, Cid)> =
            model.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(k, v)| (k.clone(), *v)).collect();
        let mut got = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = reopened.list(&store, prefix, cursor.as_deref(), 3).unwrap();
            if page.is_empty() { break; }
            cursor = page.last().map(|(k, _)| k.clone());
            got.extend(page);
        }
        prop_assert_eq!(got, want);
    }

    #[test]
    fn diff_and_proofs_agree_with_the_model(
        base in prop::collection::btree_map(key_strategy(), 0u8..4, 0..120),
        changes in prop::collection::vec((key_strategy(), prop::option::of(0u8..4)), 1..12),
    ) {
        let store = MemoryBlockStore::new();
        let mut old = Mst::from_entries(base.iter().map(|(k, v)| (k.clone(), cid_of(*v)))).unwrap();
        persist(&store, &mut old);
        let mut new = Mst::load(&store, old.root_cid()).unwrap();
        let mut model: BTreeMap<String, Cid> = base.iter().map(|(k, v)| (k.clone(), cid_of(*v))).collect();
        let mut ops: BTreeMap<String, RecordOp> = BTreeMap::new();
        for (k, v) in changes {
            let before = base.get(&k).map(|v| cid_of(*v));
            if let Some(v) = v {
                new.insert(&store, &k, cid_of(v)).unwrap();
                model.insert(k.clone(), cid_of(v));
            } else {
                new.delete(&store, &k).unwrap();
                model.remove(&k);
            }
            let after = model.get(&k).copied();
            let op = match (before, after) {
                (None, Some(cid)) => Some(RecordOp::Create { key: k.clone(), cid }),
                (Some(prev), Some(cid)) if prev != cid => Some(RecordOp::Update { key: k.clone(), cid, prev }),
                (Some(prev), None) => Some(RecordOp::Delete { key: k.clone(), prev }),
                _ => None,
            };
            match op {
                Some(op) => { ops.insert(k, op); }
                None => { ops.remove(&k); }
            }
        }
        persist(&store, &mut new);
        let d = diff(&store, &old, &new).unwrap();
        let ops: Vec<RecordOp> = ops.into_values().collect();
        let creates: Vec<(String, Cid)> = ops.iter().filter_map(|o| match o {
            RecordOp::Create { key, cid } => Some((key.clone(), *cid)), _ => None }).collect();
        let deletes: Vec<(String, Cid)> = ops.iter().filter_map(|o| match o {
            RecordOp::Delete { key, prev } => Some((key.clone(), *prev)), _ => None }).collect();
        let updates: Vec<(String, Cid, Cid)> = ops.iter().filter_map(|o| match o {
            RecordOp::Update { key, cid, prev } => Some((key.clone(), *prev, *cid)), _ => None }).collect();
        prop_assert_eq!(d.creates, creates);
        prop_assert_eq!(d.deletes, deletes);
        prop_assert_eq!(d.updates, updates);
        // The proof blocks alone let a consumer undo the commit.
        let slice = MemoryBlockStore::new();
        slice.put_many(proof_blocks(&store, new.root_cid(), &ops).unwrap()).unwrap();
        prop_assert_eq!(invert_ops(&slice, new.root_cid(), &ops).unwrap(), old.root_cid());
    }

    #[test]
    fn cbor_encode_decode_is_identity(v in value_strategy()) {
        let bytes = v.to_cbor();
        let back = Value::from_cbor(&bytes).unwrap();
        prop_assert_eq!(&back, &v);
        prop_assert_eq!(back.to_cbor(), bytes);
        prop_assert_eq!(Value::from_json(&v.to_json()).unwrap(), v);
    }
}

fn value_strategy() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| Value::Integer(i % (1 << 53))),
        ".{0,12}".prop_map(Value::String),
        prop::collection::vec(any::<u8>(), 0..24).prop_map(Value::Bytes),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(|b| Value::Link(Cid::for_raw(&b))),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z_]{0,10}", inner, 0..6).prop_map(Value::Map),
        ]
    })
}

#[test]
fn delete_everything_returns_to_the_empty_root() {
    let store = MemoryBlockStore::new();
    let mut mst = Mst::new();
    let empty = mst.root_cid();
    let keys: Vec<String> = (0..300).map(|i| format!("io.atcr.tag/k{i}")).collect();
    for k in &keys {
        mst.insert(&store, k, cid_of(1)).unwrap();
    }
    assert!(mst.layer() >= 2);
    persist(&store, &mut mst);
    let mut mst = Mst::load(&store, mst.root_cid()).unwrap();
    for k in keys.iter().rev() {
        assert_eq!(mst.delete(&store, k).unwrap(), Some(cid_of(1)));
    }
    assert_eq!(mst.root_cid(), empty);
    assert_eq!(mst.layer(), 0);
}

#[test]
fn new_blocks_are_only_the_changed_path() {
    let store = MemoryBlockStore::new();
    let mut mst =
        Mst::from_entries((0..5000).map(|i| (format!("io.atcr.tag/k{i:05}"), cid_of(1)))).unwrap();
    let all = mst.take_new_blocks();
    store.put_many(all.clone()).unwrap();
    let mut mst = Mst::load(&store, mst.root_cid()).unwrap();
    mst.insert(&store, "io.atcr.tag/k02500x", cid_of(2))
        .unwrap();
    let new = mst.take_new_blocks();
    assert!(
        !new.is_empty() && new.len() <= usize::from(mst.layer()) + 2,
        "{}",
        new.len()
    );
    assert!(mst.take_new_blocks().is_empty());
    let old = Mst::load(&store, all[0].0).unwrap();
    store.put_many(new).unwrap();
    let d = diff(&store, &old, &mst).unwrap();
    assert_eq!(
        d.creates,
        vec![("io.atcr.tag/k02500x".to_owned(), cid_of(2))]
    );
    assert!(d.new_nodes.len() <= usize::from(mst.layer()) + 2);
}

#[test]
fn invalid_keys_and_missing_blocks_are_errors() {
    let store = MemoryBlockStore::new();
    let mut mst = Mst::new();
    for bad in [
        "",
        "nocollection",
        "a/b/c",
        "io.atcr.tag/",
        "/rkey",
        "io.atcr.tag/sp ace",
    ] {
        assert!(mst.insert(&store, bad, cid_of(1)).is_err(), "{bad:?}");
    }
    assert!(Mst::load(&store, cid_of(9)).is_err());
}
