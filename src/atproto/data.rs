//! The atproto data model: values, their JSON form, and the rules both forms share.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD_NO_PAD};
use thiserror::Error;

use super::cid::Cid;

/// Data items one value from the network may hold, at most (a firehose frame's body, a record
/// of another PDS): far above what the ATProto records and events hold, far below what a
/// few MiB of one-byte items would cost decoded (≈50 bytes each).
pub const UNTRUSTED_ITEMS: usize = 1 << 16;

/// Why some CBOR or JSON is not atproto data.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DataError {
    /// The bytes are not canonical DAG-CBOR of the data model.
    #[error("invalid DAG-CBOR: {0}")]
    Cbor(&'static str),
    /// The JSON breaks a data model rule.
    #[error("invalid atproto JSON: {0}")]
    Json(&'static str),
    /// A rule shared by both forms (`$type`, blobs).
    #[error("invalid atproto data: {0}")]
    Model(&'static str),
}

/// A value of the atproto data model. Maps are keyed by strings; CIDs are links; there are no
/// floats. `BTreeMap` keeps maps deterministic; the canonical CBOR key order (length first) is
/// applied when encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer.
    Integer(i64),
    /// A UTF-8 string.
    String(String),
    /// Bytes (`{"$bytes": base64}` in JSON).
    Bytes(Vec<u8>),
    /// A CID link (`{"$link": cid}` in JSON, tag 42 in CBOR).
    Link(Cid),
    /// An array.
    Array(Vec<Value>),
    /// A map with string keys.
    Map(BTreeMap<String, Value>),
}

/// Base64 as atproto JSON writes it (standard alphabet, no padding), read leniently: padding
/// optional, stray trailing bits ignored.
const LENIENT_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Decodes atproto JSON `$bytes` text.
#[must_use]
pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    LENIENT_B64.decode(s).ok()
}

/// A blob reference as records carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    /// The CID of the blob bytes (normally raw codec).
    pub cid: Cid,
    /// The declared MIME type.
    pub mime_type: String,
    /// The declared size in bytes.
    pub size: u64,
}

impl BlobRef {
    /// The data model object: `{$type: "blob", ref, mimeType, size}`.
    #[must_use]
    pub fn to_value(&self) -> Value {
        let mut m = BTreeMap::new();
        m.insert("$type".to_owned(), Value::String("blob".to_owned()));
        m.insert("ref".to_owned(), Value::Link(self.cid));
        m.insert("mimeType".to_owned(), Value::String(self.mime_type.clone()));
        m.insert(
            "size".to_owned(),
            Value::Integer(i64::try_from(self.size).unwrap_or(i64::MAX)),
        );
        Value::Map(m)
    }
}

impl Value {
    /// Converts JSON in atproto's conventions (`$link`, `$bytes`) to a value, enforcing the
    /// data model: no floats (an integral number such as `1.0` is read as an integer), integers
    /// within 64 bits, `$type` a non-empty string, well-formed blobs, links and bytes.
    pub fn from_json(json: &serde_json::Value) -> Result<Value, DataError> {
        let v = from_json(json, 0)?;
        v.check_data_model()?;
        Ok(v)
    }

    /// Like [`Value::from_json`], and the top level must be an object (a record).
    pub fn from_json_object(json: &serde_json::Value) -> Result<Value, DataError> {
        if !json.is_object() {
            return Err(DataError::Json("top level is not an object"));
        }
        Self::from_json(json)
    }

    /// The JSON form (`$link`, `$bytes` objects).
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Integer(i) => J::from(*i),
            Value::String(s) => J::String(s.clone()),
            Value::Bytes(b) => serde_json::json!({ "$bytes": STANDARD_NO_PAD.encode(b) }),
            Value::Link(c) => serde_json::json!({ "$link": c.to_string() }),
            Value::Array(a) => J::Array(a.iter().map(Value::to_json).collect()),
            Value::Map(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
        }
    }

    /// Canonical DAG-CBOR bytes.
    #[must_use]
    pub fn to_cbor(&self) -> Vec<u8> {
        super::cbor::encode(self)
    }

    /// Decodes canonical DAG-CBOR (see [`super::cbor::decode`]).
    pub fn from_cbor(bytes: &[u8]) -> Result<Value, DataError> {
        super::cbor::decode(bytes)
    }

    /// [`Value::from_cbor`] for bytes from the network: at most [`UNTRUSTED_ITEMS`] data items
    /// (a few MiB of memory), whatever their encoding.
    pub fn from_untrusted_cbor(bytes: &[u8]) -> Result<Value, DataError> {
        super::cbor::decode_at_most(bytes, UNTRUSTED_ITEMS)
    }

    /// The CID of this value's canonical encoding (dag-cbor, sha2-256).
    #[must_use]
    pub fn cid(&self) -> Cid {
        Cid::for_cbor(&self.to_cbor())
    }

    /// The map, if this is one.
    #[must_use]
    pub fn as_map(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The string, if this is one.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// A field of a map.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_map().and_then(|m| m.get(key))
    }

    /// The `$type` of an object, if it has a string one.
    #[must_use]
    pub fn type_name(&self) -> Option<&str> {
        self.get("$type").and_then(Value::as_str)
    }

    /// The blob this value is, if it is a well-formed blob object.
    #[must_use]
    pub fn as_blob(&self) -> Option<BlobRef> {
        let m = self.as_map()?;
        if m.get("$type")?.as_str()? != "blob" {
            return None;
        }
        let (Value::Link(cid), Value::String(mime), Value::Integer(size)) =
            (m.get("ref")?, m.get("mimeType")?, m.get("size")?)
        else {
            return None;
        };
        Some(BlobRef {
            cid: *cid,
            mime_type: mime.clone(),
            size: u64::try_from(*size).ok()?,
        })
    }

    /// Every blob referenced anywhere in this value.
    #[must_use]
    pub fn blobs(&self) -> Vec<BlobRef> {
        let mut out = Vec::new();
        self.collect_blobs(&mut out);
        out
    }

    fn collect_blobs(&self, out: &mut Vec<BlobRef>) {
        match self {
            Value::Array(a) => a.iter().for_each(|v| v.collect_blobs(out)),
            Value::Map(m) => {
                if let Some(b) = self.as_blob() {
                    out.push(b);
                } else {
                    for v in m.values() {
                        v.collect_blobs(out);
                    }
                }
            }
            _ => {}
        }
    }

    /// Checks the rules shared by both encodings: a `$type` field is a non-empty string, and an
    /// object with `$type: "blob"` is exactly `{$type, ref: link, mimeType: string, size: int}`.
    pub fn check_data_model(&self) -> Result<(), DataError> {
        match self {
            Value::Array(a) => a.iter().try_for_each(Value::check_data_model),
            Value::Map(m) => {
                if let Some(t) = m.get("$type") {
                    match t {
                        Value::String(s) if s.is_empty() => {
                            return Err(DataError::Model("$type is empty"));
                        }
                        Value::String(s) if s == "blob" => {
                            if self.as_blob().is_none() || m.len() != 4 {
                                return Err(DataError::Model("malformed blob object"));
                            }
                        }
                        Value::String(_) => {}
                        _ => return Err(DataError::Model("$type is not a string")),
                    }
                }
                m.values().try_for_each(Value::check_data_model)
            }
            _ => Ok(()),
        }
    }
}

fn from_json(json: &serde_json::Value, depth: usize) -> Result<Value, DataError> {
    use serde_json::Value as J;
    if depth > super::cbor::MAX_DEPTH {
        return Err(DataError::Json("nested too deeply"));
    }
    Ok(match json {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Integer(i)
            } else if n.is_u64() {
                return Err(DataError::Json("integer out of 64-bit signed range"));
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                // Integral numbers written with a fraction (`1.0`) are integers; JavaScript
                // cannot tell them apart. Anything else is a float, which atproto forbids.
                if f.is_finite() && f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_991.0 {
                    #[allow(clippy::cast_possible_truncation)]
                    Value::Integer(f as i64)
                } else {
                    return Err(DataError::Json("floats are not allowed"));
                }
            }
        }
        J::String(s) => Value::String(s.clone()),
        J::Array(a) => Value::Array(
            a.iter()
                .map(|v| from_json(v, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        J::Object(o) => {
            if let Some(link) = o.get("$link") {
                if o.len() != 1 {
                    return Err(DataError::Json("$link object has other fields"));
                }
                let s = link
                    .as_str()
                    .ok_or(DataError::Json("$link is not a string"))?;
                return s
                    .parse()
                    .map(Value::Link)
                    .map_err(|_| DataError::Json("$link is not a CID"));
            }
            if let Some(bytes) = o.get("$bytes") {
                if o.len() != 1 {
                    return Err(DataError::Json("$bytes object has other fields"));
                }
                let s = bytes
                    .as_str()
                    .ok_or(DataError::Json("$bytes is not a string"))?;
                return decode_base64(s)
                    .map(Value::Bytes)
                    .ok_or(DataError::Json("$bytes is not base64"));
            }
            let mut m = BTreeMap::new();
            for (k, v) in o {
                m.insert(k.clone(), from_json(v, depth + 1)?);
            }
            Value::Map(m)
        }
    })
}
