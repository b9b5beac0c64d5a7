use atcr::atproto::Value;
use atcr::atproto::data::decode_base64;

use crate::common::json;

#[test]
fn fixtures_exact_bytes_and_cids() {
    let cases = json("data-model/data-model-fixtures.json");
    assert_eq!(cases.as_array().unwrap().len(), 3);
    for case in cases.as_array().unwrap() {
        let value = Value::from_json(&case["json"]).unwrap();
        let expected = decode_base64(case["cbor_base64"].as_str().unwrap()).unwrap();
        let bytes = value.to_cbor();
        assert_eq!(hex::encode(&bytes), hex::encode(&expected));
        assert_eq!(value.cid().to_string(), case["cid"].as_str().unwrap());
        // Decoding gives the same value back, and the JSON form round-trips.
        let decoded = Value::from_cbor(&expected).unwrap();
        assert_eq!(decoded, value);
        assert_eq!(Value::from_json(&decoded.to_json()).unwrap(), value);
    }
}

#[test]
fn valid_documents() {
    let cases = json("data-model/data-model-valid.json");
    assert!(!cases.as_array().unwrap().is_empty());
    for case in cases.as_array().unwrap() {
        let v = Value::from_json_object(&case["json"])
            .unwrap_or_else(|e| panic!("{}: {e}", case["note"]));
        assert_eq!(Value::from_cbor(&v.to_cbor()).unwrap(), v);
    }
}

#[test]
fn invalid_documents() {
    let cases = json("data-model/data-model-invalid.json");
    assert!(!cases.as_array().unwrap().is_empty());
    for case in cases.as_array().unwrap() {
        assert!(
            Value::from_json_object(&case["json"]).is_err(),
            "accepted: {}",
            case["note"]
        );
    }
}

#[test]
fn cbor_of_invalid_models_is_rejected_too() {
    // The same rules hold for DAG-CBOR input: build the CBOR by hand and decode it.
    use std::collections::BTreeMap;
    let blob_without_ref = Value::Map(BTreeMap::from([(
        "blb".to_owned(),
        Value::Map(BTreeMap::from([
            ("$type".to_owned(), Value::String("blob".to_owned())),
            (
                "mimeType".to_owned(),
                Value::String("image/jpeg".to_owned()),
            ),
            ("size".to_owned(), Value::Integer(1)),
        ])),
    )]));
    assert!(Value::from_cbor(&blob_without_ref.to_cbor()).is_err());
    let empty_type = Value::Map(BTreeMap::from([(
        "$type".to_owned(),
        Value::String(String::new()),
    )]));
    assert!(Value::from_cbor(&empty_type.to_cbor()).is_err());
}
