//! `did:plc`: operations, the DID derivation, and the built-in directory's log.
//!
//! An operation is JSON (`type`, `rotationKeys`, `verificationMethods`, `alsoKnownAs`,
//! `services`, `prev`, `sig`); it is signed over the DAG-CBOR of the operation without `sig`
//! (`sig` is base64url, no padding, of the 64-byte low-S signature). The DID is `did:plc:` +
//! the first 24 characters of base32-lower(SHA-256(DAG-CBOR of the signed genesis operation)).
//! An operation's CID is the `dag-cbor` `CIDv1` of the signed operation; `prev` holds the previous
//! operation's CID as a string.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use crate::atproto::{Cid, Did, Keypair, PublicKey, Value};

/// Why an operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid PLC operation: {0}")]
pub struct PlcError(pub String);

fn err(s: impl Into<String>) -> PlcError {
    PlcError(s.into())
}

fn cbor(op: &Json) -> Result<Vec<u8>, PlcError> {
    Value::from_json(op)
        .map(|v| v.to_cbor())
        .map_err(|e| err(e.to_string()))
}

/// The bytes an operation's signature covers (the operation without `sig`).
fn unsigned_bytes(op: &Json) -> Result<Vec<u8>, PlcError> {
    let mut unsigned = op.clone();
    unsigned
        .as_object_mut()
        .ok_or_else(|| err("operation is not an object"))?
        .remove("sig");
    cbor(&unsigned)
}

/// Signs an unsigned operation (adds `sig`).
pub fn sign(mut op: Json, key: &Keypair) -> Result<Json, PlcError> {
    let sig = key.sign(&unsigned_bytes(&op)?);
    op.as_object_mut()
        .ok_or_else(|| err("operation is not an object"))?
        .insert("sig".into(), Json::String(URL_SAFE_NO_PAD.encode(sig)));
    Ok(op)
}

/// The CID of a signed operation.
pub fn op_cid(op: &Json) -> Result<Cid, PlcError> {
    Ok(Cid::for_cbor(&cbor(op)?))
}

/// The DID a signed genesis operation creates.
pub fn did_for_genesis(op: &Json) -> Result<Did, PlcError> {
    let hash = Sha256::digest(cbor(op)?);
    let b32 = multibase::encode(multibase::Base::Base32Lower, hash);
    let id = b32.get(1..25).ok_or_else(|| err("hash too short"))?;
    format!("did:plc:{id}")
        .parse()
        .map_err(|_| err("derived DID is invalid"))
}

/// A signed genesis operation for a new account; returns the DID and the operation.
pub fn genesis(
    rotation: &Keypair,
    signing: &PublicKey,
    handle: &str,
    endpoint: &str,
) -> Result<(Did, Json), PlcError> {
    let op = json!({
        "type": "plc_operation",
        "rotationKeys": [rotation.public_key().to_did_key()],
        "verificationMethods": {"atproto": signing.to_did_key()},
        "alsoKnownAs": [format!("at://{handle}")],
        "services": {"atproto_pds": {"type": "AtprotoPersonalDataServer", "endpoint": endpoint}},
        "prev": null,
    });
    let op = sign(op, rotation)?;
    Ok((did_for_genesis(&op)?, op))
}

fn str_list<'a>(op: &'a Json, field: &str) -> Result<Vec<&'a str>, PlcError> {
    op.get(field)
        .and_then(Json::as_array)
        .ok_or_else(|| err(format!("{field} must be an array")))?
        .iter()
        .map(|v| {
            v.as_str()
                .ok_or_else(|| err(format!("{field} must hold strings")))
        })
        .collect()
}

/// Checks an operation's shape and that one of `rotation_keys` signed it.
pub fn verify(op: &Json, rotation_keys: &[&str]) -> Result<(), PlcError> {
    match op.get("type").and_then(Json::as_str) {
        Some("plc_operation") => {
            let keys = str_list(op, "rotationKeys")?;
            if keys.is_empty() || keys.len() > 5 {
                return Err(err("rotationKeys must hold 1 to 5 keys"));
            }
            for k in keys {
                PublicKey::from_did_key(k).map_err(|e| err(format!("rotation key: {e}")))?;
            }
            let methods = op
                .get("verificationMethods")
                .and_then(Json::as_object)
                .ok_or_else(|| err("verificationMethods must be an object"))?;
            for k in methods.values() {
                let k = k
                    .as_str()
                    .ok_or_else(|| err("verification method must be a did:key"))?;
                PublicKey::from_did_key(k).map_err(|e| err(format!("verification method: {e}")))?;
            }
            str_list(op, "alsoKnownAs")?;
            if !op.get("services").is_some_and(Json::is_object) {
                return Err(err("services must be an object"));
            }
        }
        Some("plc_tombstone") => {}
        _ => return Err(err("unsupported operation type")),
    }
    let sig = op
        .get("sig")
        .and_then(Json::as_str)
        .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
        .ok_or_else(|| err("sig must be base64url"))?;
    let msg = unsigned_bytes(op)?;
    let signed = rotation_keys
        .iter()
        .any(|k| PublicKey::from_did_key(k).is_ok_and(|key| key.verify(&msg, &sig).is_ok()));
    if signed {
        Ok(())
    } else {
        Err(err("signature does not verify with any rotation key"))
    }
}

/// The reference directory's limits on an incoming operation (`@did-plc/server`,
/// `constraints.ts`): what a directory stores per operation stays small whoever sends it.
pub mod limits {
    /// Largest operation, in bytes of its DAG-CBOR encoding.
    pub const MAX_OP_BYTES: usize = 4000;
    pub const MAX_AKA_ENTRIES: usize = 10;
    /// The longest handle (253) plus `at://`.
    pub const MAX_AKA_LENGTH: usize = 258;
    pub const MAX_SERVICE_ENTRIES: usize = 10;
    pub const MAX_SERVICE_TYPE_LENGTH: usize = 256;
    pub const MAX_SERVICE_ENDPOINT_LENGTH: usize = 512;
    pub const MAX_VERIFICATION_METHOD_ENTRIES: usize = 10;
    /// Keys of `services` and `verificationMethods`.
    pub const MAX_ID_LENGTH: usize = 32;
    pub const MAX_DID_KEY_LENGTH: usize = 256;
}

/// Checks an incoming operation against [`limits`] (sizes, counts, duplicates) before anything
/// else is done with it. Stored logs are not checked again.
pub fn check_limits(op: &Json) -> Result<(), PlcError> {
    use limits::{
        MAX_AKA_ENTRIES, MAX_AKA_LENGTH, MAX_DID_KEY_LENGTH, MAX_ID_LENGTH, MAX_OP_BYTES,
        MAX_SERVICE_ENDPOINT_LENGTH, MAX_SERVICE_ENTRIES, MAX_SERVICE_TYPE_LENGTH,
        MAX_VERIFICATION_METHOD_ENTRIES,
    };
    let size = cbor(op)?.len();
    if size > MAX_OP_BYTES {
        return Err(err(format!(
            "operation too large ({size} bytes; {MAX_OP_BYTES} maximum in DAG-CBOR)"
        )));
    }
    if op.get("type").and_then(Json::as_str) != Some("plc_operation") {
        return Ok(());
    }
    let aka = str_list(op, "alsoKnownAs")?;
    if aka.len() > MAX_AKA_ENTRIES {
        return Err(err(format!(
            "alsoKnownAs holds more than {MAX_AKA_ENTRIES} entries"
        )));
    }
    if aka.iter().any(|a| a.len() > MAX_AKA_LENGTH) {
        return Err(err(format!(
            "an alsoKnownAs entry is longer than {MAX_AKA_LENGTH}"
        )));
    }
    if (1..aka.len()).any(|i| aka[..i].contains(&aka[i])) {
        return Err(err("alsoKnownAs holds duplicates"));
    }
    for key in str_list(op, "rotationKeys")? {
        if key.len() > MAX_DID_KEY_LENGTH {
            return Err(err("a rotation key is too long"));
        }
    }
    let methods = op
        .get("verificationMethods")
        .and_then(Json::as_object)
        .ok_or_else(|| err("verificationMethods must be an object"))?;
    if methods.len() > MAX_VERIFICATION_METHOD_ENTRIES {
        return Err(err(format!(
            "verificationMethods holds more than {MAX_VERIFICATION_METHOD_ENTRIES} entries"
        )));
    }
    for (id, key) in methods {
        if id.len() > MAX_ID_LENGTH || key.as_str().is_some_and(|k| k.len() > MAX_DID_KEY_LENGTH) {
            return Err(err("a verification method id or key is too long"));
        }
    }
    let services = op
        .get("services")
        .and_then(Json::as_object)
        .ok_or_else(|| err("services must be an object"))?;
    if services.len() > MAX_SERVICE_ENTRIES {
        return Err(err(format!(
            "services holds more than {MAX_SERVICE_ENTRIES} entries"
        )));
    }
    for (id, service) in services {
        let field = |name: &str| service.get(name).and_then(Json::as_str);
        let (Some(kind), Some(endpoint)) = (field("type"), field("endpoint")) else {
            return Err(err("a service needs a type and an endpoint"));
        };
        if id.len() > MAX_ID_LENGTH
            || kind.len() > MAX_SERVICE_TYPE_LENGTH
            || endpoint.len() > MAX_SERVICE_ENDPOINT_LENGTH
        {
            return Err(err("a service id, type or endpoint is too long"));
        }
    }
    Ok(())
}

/// Checks `op` as the next operation of a log whose last operation is `last` (`None`: a
/// genesis operation for `did`), within [`limits`].
pub fn check_next(did: &Did, last: Option<&Json>, op: &Json) -> Result<(), PlcError> {
    check_limits(op)?;
    match last {
        None => {
            if !op.get("prev").is_some_and(Json::is_null) {
                return Err(err("genesis operation must have prev: null"));
            }
            let keys = str_list(op, "rotationKeys")?;
            verify(op, &keys)?;
            if &did_for_genesis(op)? != did {
                return Err(err("genesis operation does not hash to the DID"));
            }
        }
        Some(last) => {
            if last.get("type").and_then(Json::as_str) == Some("plc_tombstone") {
                return Err(err("the DID is tombstoned"));
            }
            let expected = op_cid(last)?.to_string();
            if op.get("prev").and_then(Json::as_str) != Some(expected.as_str()) {
                return Err(err("prev is not the last operation"));
            }
            verify(op, &str_list(last, "rotationKeys")?)?;
        }
    }
    Ok(())
}

/// The DID document an operation describes.
pub fn document(did: &Did, op: &Json) -> Result<Json, PlcError> {
    if op.get("type").and_then(Json::as_str) != Some("plc_operation") {
        return Err(err("the DID is tombstoned"));
    }
    let mut methods = Vec::new();
    if let Some(m) = op.get("verificationMethods").and_then(Json::as_object) {
        for (name, key) in m {
            let key = PublicKey::from_did_key(key.as_str().unwrap_or_default())
                .map_err(|e| err(e.to_string()))?;
            methods.push(json!({
                "id": format!("{did}#{name}"),
                "type": "Multikey",
                "controller": did.as_str(),
                "publicKeyMultibase": key.to_multikey(),
            }));
        }
    }
    let mut services = Vec::new();
    if let Some(s) = op.get("services").and_then(Json::as_object) {
        for (name, svc) in s {
            services.push(json!({
                "id": format!("#{name}"),
                "type": svc.get("type").cloned().unwrap_or(Json::Null),
                "serviceEndpoint": svc.get("endpoint").cloned().unwrap_or(Json::Null),
            }));
        }
    }
    Ok(json!({
        "@context": [
            "https://www.w3.org/ns/did/v1",
            "https://w3id.org/security/multikey/v1",
            "https://w3id.org/security/suites/secp256k1-2019/v1"
        ],
        "id": did.as_str(),
        "alsoKnownAs": op.get("alsoKnownAs").cloned().unwrap_or_else(|| json!([])),
        "verificationMethod": methods,
        "service": services,
    }))
}

/// The handle an operation claims: its first `at://` entry of `alsoKnownAs`.
#[must_use]
pub fn handle_of(op: &Json) -> Option<String> {
    op.get("alsoKnownAs")?
        .as_array()?
        .iter()
        .filter_map(Json::as_str)
        .find_map(|aka| aka.strip_prefix("at://"))
        .map(str::to_owned)
}

/// The `/data` view of an operation.
#[must_use]
pub fn data(did: &Did, op: &Json) -> Json {
    json!({
        "did": did.as_str(),
        "verificationMethods": op.get("verificationMethods").cloned().unwrap_or_else(|| json!({})),
        "rotationKeys": op.get("rotationKeys").cloned().unwrap_or_else(|| json!([])),
        "alsoKnownAs": op.get("alsoKnownAs").cloned().unwrap_or_else(|| json!([])),
        "services": op.get("services").cloned().unwrap_or_else(|| json!({})),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atproto::Algorithm;

    #[test]
    fn genesis_derives_the_did_and_verifies() {
        let rotation = Keypair::generate(Algorithm::K256);
        let signing = Keypair::generate(Algorithm::K256).public_key();
        let (did, op) =
            genesis(&rotation, &signing, "alice.atcr.test", "http://localhost:1").unwrap();
        assert!(did.as_str().starts_with("did:plc:"));
        assert_eq!(did.method_specific_id().len(), 24);
        check_next(&did, None, &op).unwrap();
        // Any change breaks the signature or the DID.
        let mut forged = op.clone();
        forged["alsoKnownAs"] = json!(["at://mallory.atcr.test"]);
        assert!(check_next(&did, None, &forged).is_err());
        // An update signed by the rotation key chains onto the genesis.
        let mut update = op.clone();
        update["prev"] = json!(op_cid(&op).unwrap().to_string());
        update["alsoKnownAs"] = json!(["at://alice2.atcr.test"]);
        let update = sign(update, &rotation).unwrap();
        check_next(&did, Some(&op), &update).unwrap();
        let other = sign(update.clone(), &Keypair::generate(Algorithm::K256)).unwrap();
        assert!(check_next(&did, Some(&op), &other).is_err());
        let doc = document(&did, &update).unwrap();
        assert_eq!(doc["alsoKnownAs"][0], "at://alice2.atcr.test");
        assert_eq!(doc["verificationMethod"][0]["id"], format!("{did}#atproto"));
    }

    #[test]
    fn operations_are_held_to_the_reference_limits() {
        let rotation = Keypair::generate(Algorithm::K256);
        let signing = Keypair::generate(Algorithm::K256).public_key();
        let (_, op) =
            genesis(&rotation, &signing, "alice.atcr.test", "http://localhost:1").unwrap();
        check_limits(&op).unwrap();
        let with = |field: &str, value: Json| {
            let mut op = op.clone();
            op[field] = value;
            op
        };
        let big = with(
            "alsoKnownAs",
            json!(["at://".to_owned() + &"a".repeat(5000)]),
        );
        assert!(check_limits(&big).unwrap_err().0.contains("too large"));
        let akas: Vec<String> = (0..11).map(|i| format!("at://h{i}.test")).collect();
        assert!(check_limits(&with("alsoKnownAs", json!(akas))).is_err());
        assert!(check_limits(&with("alsoKnownAs", json!(["at://a.test", "at://a.test"]))).is_err());
        let long = format!("at://{}", "a".repeat(300));
        assert!(check_limits(&with("alsoKnownAs", json!([long]))).is_err());
        let services: serde_json::Map<String, Json> = (0..11)
            .map(|i| {
                (
                    format!("s{i}"),
                    json!({"type": "T", "endpoint": "http://x"}),
                )
            })
            .collect();
        assert!(check_limits(&with("services", Json::Object(services))).is_err());
        let key = signing.to_did_key();
        let methods: serde_json::Map<String, Json> =
            (0..11).map(|i| (format!("k{i}"), json!(key))).collect();
        assert!(check_limits(&with("verificationMethods", Json::Object(methods))).is_err());
        let id = "x".repeat(33);
        assert!(check_limits(&with("verificationMethods", json!({ id: key }))).is_err());
        // check_next applies them too.
        let did = did_for_genesis(&op).unwrap();
        let signed = sign(with("alsoKnownAs", json!(akas_of(11))), &rotation).unwrap();
        assert!(check_next(&did, None, &signed).is_err());
    }

    fn akas_of(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("at://h{i}.test")).collect()
    }
}
