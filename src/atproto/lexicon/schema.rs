//! Lexicon documents: parsing and checking the schema language itself.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::LexiconError;
use crate::atproto::syntax::Nsid;

/// The string formats lexicon knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringFormat {
    /// `at-identifier`: a DID or a handle.
    AtIdentifier,
    /// `at-uri`.
    AtUri,
    /// `cid` (string form; syntax only).
    Cid,
    /// `datetime`.
    Datetime,
    /// `did`.
    Did,
    /// `handle`.
    Handle,
    /// `nsid`.
    Nsid,
    /// `tid`.
    Tid,
    /// `record-key`.
    RecordKey,
    /// `uri`.
    Uri,
    /// `language` (BCP 47).
    Language,
}

impl StringFormat {
    fn parse(s: &str) -> Option<StringFormat> {
        Some(match s {
            "at-identifier" => Self::AtIdentifier,
            "at-uri" => Self::AtUri,
            "cid" => Self::Cid,
            "datetime" => Self::Datetime,
            "did" => Self::Did,
            "handle" => Self::Handle,
            "nsid" => Self::Nsid,
            "tid" => Self::Tid,
            "record-key" => Self::RecordKey,
            "uri" => Self::Uri,
            "language" => Self::Language,
            _ => return None,
        })
    }
}

/// The constraints of a `string` field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StringType {
    /// `format`.
    pub format: Option<StringFormat>,
    /// `minLength` / `maxLength`, in UTF-8 bytes.
    pub min_length: Option<u64>,
    /// See `min_length`.
    pub max_length: Option<u64>,
    /// `minGraphemes` / `maxGraphemes`.
    pub min_graphemes: Option<u64>,
    /// See `min_graphemes`.
    pub max_graphemes: Option<u64>,
    /// `enum`: a closed set.
    pub enumeration: Option<Vec<String>>,
    /// `const`.
    pub constant: Option<String>,
    /// `knownValues`: an open set, documented but not enforced.
    pub known_values: Vec<String>,
}

/// An object schema.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectType {
    /// Fields that must be present.
    pub required: Vec<String>,
    /// Fields that may be `null`.
    pub nullable: Vec<String>,
    /// The known fields (others are allowed and ignored).
    pub properties: BTreeMap<String, FieldType>,
}

/// A field schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldType {
    /// `boolean`.
    Boolean {
        /// `const`.
        constant: Option<bool>,
    },
    /// `integer`.
    Integer {
        /// `minimum`.
        minimum: Option<i64>,
        /// `maximum`.
        maximum: Option<i64>,
        /// `enum`.
        enumeration: Option<Vec<i64>>,
        /// `const`.
        constant: Option<i64>,
    },
    /// `string`.
    String(StringType),
    /// `bytes`.
    Bytes {
        /// `minLength`.
        min_length: Option<u64>,
        /// `maxLength`.
        max_length: Option<u64>,
    },
    /// `cid-link`.
    CidLink,
    /// `blob`.
    Blob {
        /// `accept`: MIME patterns such as `image/*`.
        accept: Option<Vec<String>>,
        /// `maxSize` in bytes.
        max_size: Option<u64>,
    },
    /// `array`.
    Array {
        /// `items`.
        items: Box<FieldType>,
        /// `minLength`.
        min_length: Option<u64>,
        /// `maxLength`.
        max_length: Option<u64>,
    },
    /// `object`.
    Object(ObjectType),
    /// `ref`: a reference (`#def`, `nsid`, `nsid#def`), resolved at validation time.
    Ref(String),
    /// `union` of refs; `closed` forbids other `$type`s.
    Union {
        /// The refs.
        refs: Vec<String>,
        /// `closed`.
        closed: bool,
    },
    /// `unknown`: any object.
    Unknown,
}

/// A named definition of a lexicon document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Def {
    /// A record type (only as `main`).
    Record {
        /// `key`: `tid`, `nsid`, `any`, `record-key` or `literal:<value>`.
        key: String,
        /// The record's schema.
        record: ObjectType,
    },
    /// `query`, `procedure`, `subscription` or `permission-set` (only as `main`); their
    /// bodies are kept as JSON.
    Primary {
        /// The `type`.
        kind: String,
        /// The definition as written.
        body: Json,
    },
    /// A `token`: a named constant.
    Token,
    /// Any field type usable in a definition (object, string, integer, array, …).
    Field(FieldType),
}

/// A parsed lexicon document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexiconDoc {
    /// The NSID.
    pub id: Nsid,
    /// The definitions by name (`main`, …).
    pub defs: BTreeMap<String, Def>,
}

fn err(msg: &'static str) -> LexiconError {
    LexiconError::Schema(msg)
}

fn u64_field(o: &serde_json::Map<String, Json>, k: &str) -> Result<Option<u64>, LexiconError> {
    o.get(k)
        .map(|v| {
            v.as_u64()
                .ok_or(err("length limit is not a non-negative integer"))
        })
        .transpose()
}

fn i64_field(o: &serde_json::Map<String, Json>, k: &str) -> Result<Option<i64>, LexiconError> {
    o.get(k)
        .map(|v| v.as_i64().ok_or(err("integer limit is not an integer")))
        .transpose()
}

fn strings(
    o: &serde_json::Map<String, Json>,
    k: &str,
) -> Result<Option<Vec<String>>, LexiconError> {
    o.get(k)
        .map(|v| {
            v.as_array()
                .ok_or(err("expected an array of strings"))?
                .iter()
                .map(|s| {
                    s.as_str()
                        .map(str::to_owned)
                        .ok_or(err("expected a string"))
                })
                .collect()
        })
        .transpose()
}

fn object(v: &Json) -> Result<&serde_json::Map<String, Json>, LexiconError> {
    v.as_object().ok_or(err("definition is not an object"))
}

pub(crate) fn parse_object(v: &Json) -> Result<ObjectType, LexiconError> {
    let o = object(v)?;
    if o.get("type").and_then(Json::as_str) != Some("object") {
        return Err(err("expected type object"));
    }
    let mut properties = BTreeMap::new();
    if let Some(props) = o.get("properties") {
        for (k, p) in props
            .as_object()
            .ok_or(err("properties is not an object"))?
        {
            properties.insert(k.clone(), parse_field(p)?);
        }
    }
    let required = strings(o, "required")?.unwrap_or_default();
    let nullable = strings(o, "nullable")?.unwrap_or_default();
    Ok(ObjectType {
        required,
        nullable,
        properties,
    })
}

/// Parses a field type (in a property, an array's items, or a non-primary definition).
pub(crate) fn parse_field(v: &Json) -> Result<FieldType, LexiconError> {
    let o = object(v)?;
    let kind = o
        .get("type")
        .and_then(Json::as_str)
        .ok_or(err("missing type"))?;
    Ok(match kind {
        "boolean" => FieldType::Boolean {
            constant: o
                .get("const")
                .map(|c| c.as_bool().ok_or(err("const is not a boolean")))
                .transpose()?,
        },
        "integer" => FieldType::Integer {
            minimum: i64_field(o, "minimum")?,
            maximum: i64_field(o, "maximum")?,
            enumeration: o
                .get("enum")
                .map(|e| {
                    e.as_array()
                        .ok_or(err("enum is not an array"))?
                        .iter()
                        .map(|i| i.as_i64().ok_or(err("enum value is not an integer")))
                        .collect()
                })
                .transpose()?,
            constant: i64_field(o, "const")?,
        },
        "string" => FieldType::String(StringType {
            format: o
                .get("format")
                .map(|f| {
                    f.as_str()
                        .and_then(StringFormat::parse)
                        .ok_or(err("unknown string format"))
                })
                .transpose()?,
            min_length: u64_field(o, "minLength")?,
            max_length: u64_field(o, "maxLength")?,
            min_graphemes: u64_field(o, "minGraphemes")?,
            max_graphemes: u64_field(o, "maxGraphemes")?,
            enumeration: strings(o, "enum")?,
            constant: o
                .get("const")
                .map(|c| {
                    c.as_str()
                        .map(str::to_owned)
                        .ok_or(err("const is not a string"))
                })
                .transpose()?,
            known_values: strings(o, "knownValues")?.unwrap_or_default(),
        }),
        "bytes" => FieldType::Bytes {
            min_length: u64_field(o, "minLength")?,
            max_length: u64_field(o, "maxLength")?,
        },
        "cid-link" => FieldType::CidLink,
        "blob" => FieldType::Blob {
            accept: strings(o, "accept")?,
            max_size: u64_field(o, "maxSize")?,
        },
        "array" => FieldType::Array {
            items: Box::new(parse_field(
                o.get("items").ok_or(err("array without items"))?,
            )?),
            min_length: u64_field(o, "minLength")?,
            max_length: u64_field(o, "maxLength")?,
        },
        "object" => FieldType::Object(parse_object(v)?),
        "ref" => FieldType::Ref(
            o.get("ref")
                .and_then(Json::as_str)
                .ok_or(err("ref without target"))?
                .to_owned(),
        ),
        "union" => FieldType::Union {
            refs: strings(o, "refs")?.ok_or(err("union without refs"))?,
            closed: o.get("closed").and_then(Json::as_bool).unwrap_or(false),
        },
        "unknown" => FieldType::Unknown,
        _ => return Err(err("unknown field type")),
    })
}

fn parse_def(name: &str, v: &Json) -> Result<Def, LexiconError> {
    let o = object(v)?;
    let kind = o
        .get("type")
        .and_then(Json::as_str)
        .ok_or(err("definition without type"))?;
    let primary = matches!(
        kind,
        "record" | "query" | "procedure" | "subscription" | "permission-set"
    );
    if primary && name != "main" {
        return Err(err("primary definitions must be named main"));
    }
    Ok(match kind {
        "record" => Def::Record {
            key: o
                .get("key")
                .and_then(Json::as_str)
                .unwrap_or("any")
                .to_owned(),
            record: parse_object(
                o.get("record")
                    .ok_or(err("record without a record schema"))?,
            )?,
        },
        "query" | "procedure" | "subscription" | "permission-set" => {
            if let Some(p) = o.get("parameters") {
                check_params(p)?;
            }
            Def::Primary {
                kind: kind.to_owned(),
                body: v.clone(),
            }
        }
        "token" => Def::Token,
        // Only concrete types may be named definitions.
        "ref" | "union" | "unknown" => {
            return Err(err("ref, union and unknown cannot be definitions"));
        }
        _ => Def::Field(parse_field(v)?),
    })
}

fn check_params(p: &Json) -> Result<(), LexiconError> {
    let o = object(p)?;
    if o.get("type").and_then(Json::as_str) != Some("params") {
        return Err(err("parameters must have type params"));
    }
    if let Some(props) = o.get("properties") {
        for v in props
            .as_object()
            .ok_or(err("properties is not an object"))?
            .values()
        {
            parse_field(v)?;
        }
    }
    Ok(())
}

impl LexiconDoc {
    /// Parses and checks a lexicon document (`lexicon: 1`, an NSID `id`, well-formed `defs`).
    pub fn from_json(v: &Json) -> Result<LexiconDoc, LexiconError> {
        let o = object(v)?;
        if o.get("lexicon").and_then(Json::as_i64) != Some(1) {
            return Err(err("lexicon version is not 1"));
        }
        let id: Nsid = o
            .get("id")
            .and_then(Json::as_str)
            .ok_or(err("id is not a string"))?
            .parse()
            .map_err(|_| err("id is not an NSID"))?;
        let mut defs = BTreeMap::new();
        for (name, d) in o
            .get("defs")
            .and_then(Json::as_object)
            .ok_or(err("defs is not an object"))?
        {
            defs.insert(name.clone(), parse_def(name, d)?);
        }
        Ok(LexiconDoc { id, defs })
    }
}
