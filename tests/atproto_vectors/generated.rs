//! The repos in `generated/`, reproduced byte for byte from their JSON descriptions.

use std::collections::BTreeMap;

use atcr::atproto::blockstore::{BlockStore, MemoryBlockStore};
use atcr::atproto::car::{CarReader, CarWriter, export_repo};
use atcr::atproto::commit::{Commit, UnsignedCommit, verify_repo};
use atcr::atproto::crypto::{Algorithm, Keypair};
use atcr::atproto::mst::{Mst, WalkItem, key_height};
use atcr::atproto::{Cid, Value};
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::common::{json, vectors};

struct Record {
    key: String,
    value: Value,
}

fn keypair(desc: &serde_json::Value) -> Keypair {
    let alg = match desc["signingKey"]["type"].as_str().unwrap() {
        "k256" => Algorithm::K256,
        "p256" => Algorithm::P256,
        other => panic!("unknown key type {other}"),
    };
    let secret = hex::decode(desc["signingKey"]["privateKeyHex"].as_str().unwrap()).unwrap();
    let key = Keypair::from_bytes(alg, &secret).unwrap();
    assert_eq!(
        key.public_key().to_did_key(),
        desc["signingKey"]["didKey"].as_str().unwrap()
    );
    key
}

/// Checks every record given in full: CBOR bytes, CID, key height.
fn described_records(desc: &serde_json::Value) -> Vec<Record> {
    desc["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let key = format!(
                "{}/{}",
                r["collection"].as_str().unwrap(),
                r["rkey"].as_str().unwrap()
            );
            let value = Value::from_json_object(&r["value"]).unwrap();
            assert_eq!(
                hex::encode(value.to_cbor()),
                r["cborHex"].as_str().unwrap(),
                "{key}"
            );
            assert_eq!(value.cid().to_string(), r["cid"].as_str().unwrap(), "{key}");
            assert_eq!(
                u64::from(key_height(&key)),
                r["heightOfKey"].as_u64().unwrap(),
                "{key}"
            );
            Record { key, value }
        })
        .collect()
}

/// The 500-record repo's records, from the generator's recipe (record `i`: every fifth a tag,
/// the others manifests keyed by a digest made of `i` in hex).
fn recipe_records(desc: &serde_json::Value) -> Vec<Record> {
    let records: Vec<Record> = (0..500u32)
        .map(|i| {
            let digest = format!("sha256:{i:064x}");
            let (key, json) = if i % 5 == 0 {
                (
                    format!("io.atcr.tag/repo{i}_v{i}"),
                    serde_json::json!({
                        "$type": "io.atcr.tag",
                        "repository": format!("repo{i}"),
                        "tag": format!("v{i}"),
                        "manifestDigest": digest,
                        "updatedAt": "2026-01-01T00:00:00.000Z",
                    }),
                )
            } else {
                (
                    format!("io.atcr.manifest/{digest}"),
                    serde_json::json!({
                        "$type": "io.atcr.manifest",
                        "repository": format!("repo{i}"),
                        "digest": digest,
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "schemaVersion": 2,
                        "createdAt": "2026-01-01T00:00:00.000Z",
                    }),
                )
            };
            Record {
                key,
                value: Value::from_json_object(&json).unwrap(),
            }
        })
        .collect();
    let listed = desc["mstKeysAndCids"].as_array().unwrap();
    assert_eq!(listed.len(), records.len());
    for (r, l) in records.iter().zip(listed) {
        assert_eq!(r.key, l[0].as_str().unwrap());
        assert_eq!(
            r.value.cid().to_string(),
            l[1].as_str().unwrap(),
            "{}",
            r.key
        );
    }
    for first in desc["recordsSummary"]["first"].as_array().unwrap() {
        let key = format!(
            "{}/{}",
            first["collection"].as_str().unwrap(),
            first["rkey"].as_str().unwrap()
        );
        let r = records.iter().find(|r| r.key == key).unwrap();
        assert_eq!(
            hex::encode(r.value.to_cbor()),
            first["cborHex"].as_str().unwrap()
        );
    }
    records
}

fn reproduce(name: &str, records: &[Record], desc: &serde_json::Value) {
    let key = keypair(desc);
    let store = MemoryBlockStore::new();

    // The tree, built one insert at a time on a block store, and in one batch.
    let mut mst = Mst::new();
    for r in records {
        let bytes = r.value.to_cbor();
        let cid = Cid::for_cbor(&bytes);
        store.put(cid, Bytes::from(bytes)).unwrap();
        assert_eq!(mst.insert(&store, &r.key, cid).unwrap(), None);
    }
    let batch = Mst::from_entries(records.iter().map(|r| (r.key.clone(), r.value.cid()))).unwrap();
    assert_eq!(batch.root_cid(), mst.root_cid());
    assert_eq!(
        mst.root_cid().to_string(),
        desc["mstRoot"].as_str().unwrap(),
        "{name}"
    );
    assert_eq!(
        u64::from(mst.layer()),
        desc["mstLayers"].as_u64().unwrap(),
        "{name}"
    );
    let nodes = mst.take_new_blocks();
    store.put_many(nodes.clone()).unwrap();

    // The commit: unsigned bytes, deterministic signature, signed bytes, CID.
    let unsigned = UnsignedCommit::new(
        desc["did"].as_str().unwrap().parse().unwrap(),
        mst.root_cid(),
        desc["rev"].as_str().unwrap().parse().unwrap(),
    );
    assert_eq!(
        hex::encode(unsigned.to_cbor()),
        desc["unsignedCommitCborHex"].as_str().unwrap()
    );
    let commit = unsigned.sign(&key);
    assert_eq!(
        hex::encode(&commit.sig),
        desc["commitSigHex"].as_str().unwrap(),
        "{name}"
    );
    let commit_bytes = commit.to_cbor();
    assert_eq!(
        hex::encode(&commit_bytes),
        desc["commitCborHex"].as_str().unwrap()
    );
    assert_eq!(
        commit.cid().to_string(),
        desc["commitCid"].as_str().unwrap()
    );
    assert_eq!(Commit::from_cbor(&commit_bytes).unwrap(), commit);
    commit.verify(&key.public_key()).unwrap();
    store
        .put(commit.cid(), Bytes::from(commit_bytes.clone()))
        .unwrap();

    // The CAR as the generator wrote it: records in creation order, the MST nodes depth-first
    // (preorder), then the commit.
    let mut preorder: Vec<(Cid, Bytes)> = Vec::new();
    mst.walk(&store, &mut |item| {
        if let WalkItem::Node { cid, bytes } = item {
            preorder.push((cid, bytes.clone()));
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(
        preorder.len() as u64,
        desc["mstNodeCount"].as_u64().unwrap(),
        "{name}"
    );
    assert_eq!(preorder.len(), nodes.len());
    let mut car = CarWriter::new(Vec::new(), &[commit.cid()]).unwrap();
    for r in records {
        car.write_block(&r.value.cid(), &r.value.to_cbor()).unwrap();
    }
    for (cid, bytes) in &preorder {
        car.write_block(cid, bytes).unwrap();
    }
    car.write_block(&commit.cid(), &commit_bytes).unwrap();
    let car = car.finish().unwrap();
    let expected = std::fs::read(vectors(&format!(
        "generated/{}",
        desc["car"].as_str().unwrap()
    )))
    .unwrap();
    assert_eq!(car.len() as u64, desc["carBytes"].as_u64().unwrap());
    assert_eq!(
        hex::encode(Sha256::digest(&car)),
        desc["carSha256"].as_str().unwrap()
    );
    assert!(car == expected, "{name}: CAR bytes differ");

    check_reference_car(
        name,
        &expected,
        &commit,
        &key,
        records.len(),
        preorder.len(),
    );
}

/// Reads the reference CAR, verifies the whole repo, and round-trips it through our export.
fn check_reference_car(
    name: &str,
    expected: &[u8],
    commit: &Commit,
    key: &Keypair,
    records: usize,
    nodes: usize,
) {
    // Reading the reference CAR back and verifying the whole repo.
    let reader = CarReader::new(expected).unwrap();
    assert_eq!(reader.roots(), &[commit.cid()]);
    let imported = MemoryBlockStore::new();
    let n = reader.load_into(&imported).unwrap();
    assert_eq!(n, records + nodes + 1, "{name}");
    let verified = verify_repo(&imported, commit.cid(), &key.public_key()).unwrap();
    assert_eq!(verified.records, records);
    assert_eq!(verified.nodes, nodes);
    assert_eq!(&verified.commit, commit);

    // Our streaming export holds the same blocks, and verifies after a round trip.
    let exported = export_repo(&imported, commit.cid(), Vec::new()).unwrap();
    assert_eq!(exported.len(), expected.len());
    let mut a: BTreeMap<Cid, Bytes> = BTreeMap::new();
    for block in CarReader::new(exported.as_slice()).unwrap() {
        let (cid, bytes) = block.unwrap();
        a.insert(cid, bytes);
    }
    let b: BTreeMap<Cid, Bytes> = CarReader::new(expected)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(a, b);

    // A wrong key does not verify.
    let other = Keypair::generate(key.algorithm());
    assert!(verify_repo(&imported, commit.cid(), &other.public_key()).is_err());
    // And a repo whose record block was tampered with does not verify either.
    let (victim, _) = b.iter().find(|(c, _)| c != &&commit.cid()).unwrap();
    let tampered = MemoryBlockStore::new();
    for (cid, bytes) in &b {
        let bytes = if cid == victim {
            Bytes::from_static(b"\xa0")
        } else {
            bytes.clone()
        };
        tampered.put(*cid, bytes).unwrap();
    }
    assert!(
        verify_repo(&tampered, commit.cid(), &key.public_key()).is_err(),
        "{name}"
    );
}

#[test]
fn small_k256() {
    let desc = json("generated/repo-atcr-small-k256.json");
    let records = described_records(&desc);
    assert_eq!(records.len(), 5);
    reproduce("small", &records, &desc);
}

#[test]
fn empty_p256() {
    let desc = json("generated/repo-empty-p256.json");
    let records = described_records(&desc);
    assert!(records.is_empty());
    reproduce("empty", &records, &desc);
}

#[test]
fn atcr_500_k256() {
    let desc = json("generated/repo-atcr-500-k256.json");
    let records = recipe_records(&desc);
    reproduce("500", &records, &desc);
}
