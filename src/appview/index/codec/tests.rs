use std::collections::BTreeMap;

use super::super::derived::{LayerOf, RecordEntry, Social};
use super::super::{IndexError, ManifestRecord};
use crate::appview::summary::{ConfigSummary, ManifestSummary, Part};

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
        RecordEntry {
            repo: "did:plc:abc/app".to_owned(),
            digest: Some(D1.parse().unwrap()),
            tag: Some("v1.2.3".to_owned()),
            social: None,
            layer: None,
        },
        RecordEntry {
            repo: "did:plc:abc/app".to_owned(),
            digest: None,
            tag: None,
            social: Some(Social::Star),
            layer: None,
        },
        RecordEntry {
            repo: String::new(),
            digest: Some(D2.parse().unwrap()),
            tag: None,
            social: Some(Social::Page),
            layer: Some(LayerOf {
                user: "did:plc:xyz".to_owned(),
                manifest_rkey: "3k2abc".to_owned(),
            }),
        },
    ];
    for entry in entries {
        assert_eq!(RecordEntry::decode(&entry.encode()).unwrap(), entry);
    }
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
    assert!(RecordEntry::decode(&[0xff]).is_err());
    assert!(RecordEntry::decode(&[]).is_err());
}
