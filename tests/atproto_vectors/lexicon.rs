use std::path::PathBuf;

use atcr::atproto::Value;
use atcr::atproto::lexicon::{Catalog, LexiconDoc};
use atcr::atproto::syntax::{Nsid, RecordKey};

use crate::common::json;

fn catalog() -> Catalog {
    let mut c = Catalog::new();
    for name in [
        "record",
        "query",
        "procedure",
        "subscription",
        "permission-set",
    ] {
        c.add_json(&json(&format!("lexicon/catalog/{name}.json")))
            .unwrap_or_else(|e| panic!("catalog/{name}.json: {e}"));
    }
    c
}

#[test]
fn lexicon_documents() {
    let valid = json("lexicon/lexicon-valid.json");
    assert!(!valid.as_array().unwrap().is_empty());
    for case in valid.as_array().unwrap() {
        LexiconDoc::from_json(&case["lexicon"]).unwrap_or_else(|e| panic!("{}: {e}", case["name"]));
    }
    let invalid = json("lexicon/lexicon-invalid.json");
    assert!(!invalid.as_array().unwrap().is_empty());
    for case in invalid.as_array().unwrap() {
        assert!(
            LexiconDoc::from_json(&case["lexicon"]).is_err(),
            "accepted {}",
            case["name"]
        );
    }
}

fn check_record(c: &Catalog, case: &serde_json::Value) -> Result<(), String> {
    let value = Value::from_json_object(&case["data"]).map_err(|e| e.to_string())?;
    let nsid: Nsid = value
        .type_name()
        .ok_or("no $type")?
        .parse()
        .map_err(|e| format!("{e}"))?;
    c.validate_record(&nsid, &value)
        .map_err(|e| e.to_string())?;
    let rkey: RecordKey = case["rkey"]
        .as_str()
        .unwrap()
        .parse()
        .map_err(|e| format!("{e}"))?;
    c.validate_record_key(&nsid, &rkey)
        .map_err(|e| e.to_string())
}

#[test]
fn record_data() {
    let c = catalog();
    let valid = json("lexicon/record-data-valid.json");
    assert!(!valid.as_array().unwrap().is_empty());
    for case in valid.as_array().unwrap() {
        check_record(&c, case).unwrap_or_else(|e| panic!("{}: {e}", case["name"]));
    }
    let invalid = json("lexicon/record-data-invalid.json");
    assert!(!invalid.as_array().unwrap().is_empty());
    for case in invalid.as_array().unwrap() {
        assert!(check_record(&c, case).is_err(), "accepted {}", case["name"]);
        // The "unknown wrong type" cases also lack the required `integer`; with it added they
        // must still fail, on the `unknown` rule.
        if case["name"]
            .as_str()
            .unwrap()
            .starts_with("unknown wrong type")
        {
            let mut fixed = case.clone();
            fixed["data"]["integer"] = 1.into();
            assert!(
                check_record(&c, &fixed).is_err(),
                "accepted fixed {}",
                case["name"]
            );
        }
    }
    let nsid: Nsid = "example.lexicon.record".parse().unwrap();
    assert!(
        c.validate_record_key(&nsid, &"other".parse().unwrap())
            .is_err()
    );
}

/// Every ATCR lexicon parses, and the records of the generated repos validate against them.
#[test]
fn atcr_lexicons_and_generated_records() {
    let mut c = Catalog::new();
    let mut n = 0;
    for dir in [
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("lexicons"),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("lexicons/legacy"),
    ] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let doc: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                c.add_json(&doc)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                n += 1;
            }
        }
    }
    assert!(n >= 26, "only {n} ATCR lexicons");
    let desc = json("generated/repo-atcr-small-k256.json");
    for r in desc["records"].as_array().unwrap() {
        let nsid: Nsid = r["collection"].as_str().unwrap().parse().unwrap();
        let value = Value::from_json_object(&r["value"]).unwrap();
        c.validate_record(&nsid, &value)
            .unwrap_or_else(|e| panic!("{nsid}: {e}"));
    }
    // A manifest missing required fields, and one with a malformed hold DID, are refused.
    let manifest: Nsid = "io.atcr.manifest".parse().unwrap();
    let mut bad = desc["records"][2]["value"].clone();
    bad.as_object_mut().unwrap().remove("digest");
    assert!(
        c.validate_record(&manifest, &Value::from_json_object(&bad).unwrap())
            .is_err()
    );
    let mut bad = desc["records"][2]["value"].clone();
    bad["holdDid"] = "not a did".into();
    assert!(
        c.validate_record(&manifest, &Value::from_json_object(&bad).unwrap())
            .is_err()
    );
    // The digest-derived manifest key does not satisfy the published `key: tid`, as the
    // vectors' README notes; the captain's literal key does.
    assert!(
        c.validate_record_key(&manifest, &"sha256:aa".parse().unwrap())
            .is_err()
    );
    let captain: Nsid = "io.atcr.hold.captain".parse().unwrap();
    c.validate_record_key(&captain, &"self".parse().unwrap())
        .unwrap();
}
