use std::collections::BTreeMap;

use super::super::derived::{LayerOf, RecordEntry, Social};
use super::super::{IndexError, ManifestRecord};
use super::{AFTER_DIGESTS, StoredEntry, collection_key, digest_key, digest_of_key};
use crate::appview::summary::{ConfigSummary, ManifestSummary, Part};
use crate::blobstore::{Algorithm, Digest};

const D1: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const D2: &str = "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

fn full() -> ManifestRecord {
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "org.opencontainers.image.description".to_owned(),
        "the API — «ünïcode»".to_owned(),
    );
    annotations.insert("com.example.custom".to_owned(), String::new());
    let mut labels = BTreeMap::new();
    labels.insert("maintainer".to_owned(), "ops@example.com".to_owned());
    let part = |media_type: &str, digest: &str, size: u64, platform: Option<&str>| Part {
        media_type: media_type.to_owned(),
        digest: digest.to_owned(),
        size,
        platform: platform.map(str::to_owned),
    };
    ManifestRecord {
        media_type: "application/vnd.oci.image.manifest.v1+json".to_owned(),
        size: 1234,
        artifact_type: Some("application/x.custom.artifact".to_owned()),
        subject: Some(D2.parse().unwrap()),
        created: 1_765_000_000,
        summary: Some(Box::new(ManifestSummary {
            annotations,
            platforms: vec!["linux/amd64".to_owned(), "linux/arm/v7".to_owned()],
            parts: vec![
                part("application/vnd.oci.image.config.v1+json", D1, 1500, None),
                part("application/x.unknown.layer", "sha512:abc", u64::MAX, None),
            ],
            children: vec![part(
                "application/vnd.oci.image.manifest.v1+json",
                D2,
                0,
                Some("linux/arm64"),
            )],
            config: Some(ConfigSummary {
                created: Some("2026-01-01T00:00:00Z".to_owned()),
                entrypoint: vec!["/bin/sh".to_owned(), "-c".to_owned()],
                cmd: vec![],
                env: vec!["PATH=/usr/bin".to_owned()],
                exposed_ports: vec!["80/tcp".to_owned()],
                user: None,
                working_dir: Some("/srv".to_owned()),
                labels,
            }),
        })),
    }
}

fn minimal() -> ManifestRecord {
    ManifestRecord {
        media_type: "application/vnd.docker.distribution.manifest.v2+json".to_owned(),
        size: 0,
        artifact_type: None,
        subject: None,
        created: 0,
        summary: None,
    }
}

#[test]
fn manifest_records_come_back_as_they_went_in() {
    for record in [full(), minimal()] {
        assert_eq!(ManifestRecord::decode(&record.encode()).unwrap(), record);
    }
}

#[test]
fn a_typical_manifest_takes_a_fraction_of_its_json() {
    let mut record = full();
    let summary = record.summary.as_mut().unwrap();
    summary.parts.truncate(1);
    summary.children.clear();
    summary.config = None;
    let binary = record.encode().len();
    let json = serde_json::to_vec(&record).unwrap().len();
    assert!(
        binary * 5 < json * 2,
        "{binary} bytes encoded, {json} as JSON"
    );
}

#[test]
fn record_entries_come_back_as_they_went_in() {
    let entries = [
        StoredEntry {
            repo: Some(7 << 32 | 3),
            digest: Some(D1.parse().unwrap()),
            tag: Some("v1.2.3".to_owned()),
            social: None,
            layer: None,
        },
        StoredEntry {
            repo: Some(0),
            digest: None,
            tag: None,
            social: Some(Social::Star),
            layer: None,
        },
        StoredEntry {
            repo: None,
            digest: Some(D2.parse().unwrap()),
            tag: None,
            social: Some(Social::Page),
            layer: Some((u32::MAX, "3k2abc".to_owned())),
        },
    ];
    for entry in entries {
        assert_eq!(StoredEntry::decode(&entry.encode()).unwrap(), entry);
    }
    let stored = StoredEntry {
        repo: Some(1),
        digest: None,
        tag: Some("t".to_owned()),
        social: None,
        layer: Some((2, "rkey".to_owned())),
    };
    let named = super::super::derived::named(
        stored,
        |id| Ok(format!("did:plc:abc/repo{id}")),
        |id| Ok(format!("did:plc:user{id}")),
    )
    .unwrap();
    assert_eq!(
        named,
        RecordEntry {
            repo: "did:plc:abc/repo1".to_owned(),
            digest: None,
            tag: Some("t".to_owned()),
            social: None,
            layer: Some(LayerOf {
                user: "did:plc:user2".to_owned(),
                manifest_rkey: "rkey".to_owned(),
            }),
        }
    );
}

#[test]
fn digest_keys_come_back_and_keep_one_digest_apart_from_another() {
    let sha256 = Digest::of(Algorithm::Sha256, b"a");
    let sha512 = Digest::of(Algorithm::Sha512, b"a");
    let k256 = digest_key(&sha256);
    let k512 = digest_key(&sha512);
    assert_eq!(k256.len(), 32, "a SHA-256 digest is its 32 bytes");
    assert_eq!(
        k512.len(),
        65,
        "another algorithm: a byte naming it, then its bytes"
    );
    assert_eq!(digest_of_key(&k256).unwrap(), sha256);
    assert_eq!(digest_of_key(&k512).unwrap(), sha512);
    // The bytes sort as the hex does, and after every key comes `AFTER_DIGESTS`.
    let mut digests: Vec<Digest> = (0..64u8)
        .map(|i| Digest::of(Algorithm::Sha256, &[i]))
        .collect();
    digests.push(sha512);
    let mut by_key = digests.clone();
    by_key.sort_by_key(digest_key);
    let mut by_hex: Vec<Digest> = digests
        .iter()
        .filter(|d| d.algorithm() == Algorithm::Sha256)
        .cloned()
        .collect();
    by_hex.sort_by(|a, b| a.hex().cmp(b.hex()));
    let sha256_by_key: Vec<Digest> = by_key
        .iter()
        .filter(|d| d.algorithm() == Algorithm::Sha256)
        .cloned()
        .collect();
    assert_eq!(sha256_by_key, by_hex);
    assert!(
        digests
            .iter()
            .all(|d| digest_key(d).as_slice() < AFTER_DIGESTS)
    );
    assert!(digest_key(&Digest::of(Algorithm::Sha256, b"x")).as_slice() < AFTER_DIGESTS);
    let all_ones: Digest = format!("sha256:{}", "f".repeat(64)).parse().unwrap();
    assert!(digest_key(&all_ones).as_slice() < AFTER_DIGESTS);
    let all_ones: Digest = format!("sha512:{}", "f".repeat(128)).parse().unwrap();
    assert!(digest_key(&all_ones).as_slice() < AFTER_DIGESTS);
    for bad in [&[][..], &[1; 31], &[1; 65], &[2; 64]] {
        assert!(digest_of_key(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn collections_the_index_keeps_take_one_byte() {
    assert_eq!(collection_key("io.atcr.tag").len(), 1);
    assert_ne!(
        collection_key("io.atcr.tag"),
        collection_key("io.atcr.manifest")
    );
    assert_eq!(collection_key("com.example.other"), b"com.example.other");
}

#[test]
fn damaged_values_are_errors_not_panics() {
    let bytes = full().encode();
    for cut in 0..bytes.len() {
        assert!(
            matches!(
                ManifestRecord::decode(&bytes[..cut]),
                Err(IndexError::Undecodable(_))
            ),
            "a value cut at {cut} of {} bytes decoded",
            bytes.len()
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(ManifestRecord::decode(&longer).is_err());
    // A length far past the end, an unknown media type code, JSON from an older index.
    assert!(ManifestRecord::decode(&[0, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    assert!(ManifestRecord::decode(&[200, 0, 0, 0, 0, 0]).is_err());
    let json = serde_json::to_vec(&minimal()).unwrap();
    assert!(ManifestRecord::decode(&json).is_err());
    assert!(StoredEntry::decode(&[0xff]).is_err());
    assert!(StoredEntry::decode(&[]).is_err());
}
