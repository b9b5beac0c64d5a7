//! Checking data against field schemas.

use unicode_segmentation::UnicodeSegmentation;

use super::schema::{Def, FieldType, ObjectType, StringFormat, StringType};
use super::{Catalog, LexiconError};
use crate::atproto::cid::is_valid_cid_syntax;
use crate::atproto::data::Value;
use crate::atproto::syntax::{
    AtIdentifier, AtUri, Datetime, Did, Handle, Nsid, RecordKey, Tid, is_valid_language,
    is_valid_uri,
};

fn invalid(path: &str, reason: impl Into<String>) -> LexiconError {
    LexiconError::Invalid {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn within(n: u64, min: Option<u64>, max: Option<u64>) -> bool {
    min.is_none_or(|m| n >= m) && max.is_none_or(|m| n <= m)
}

pub(super) struct Validator<'a> {
    pub(super) catalog: &'a Catalog,
}

impl Validator<'_> {
    pub(super) fn object(
        &self,
        ctx: &str,
        schema: &ObjectType,
        v: &Value,
        path: &str,
    ) -> Result<(), LexiconError> {
        let Some(map) = v.as_map() else {
            return Err(invalid(path, "expected an object"));
        };
        for r in &schema.required {
            if !map.contains_key(r) {
                return Err(invalid(path, format!("missing required field {r}")));
            }
        }
        for (name, field) in &schema.properties {
            let Some(value) = map.get(name) else { continue };
            let p = format!("{path}.{name}");
            if *value == Value::Null {
                if schema.nullable.contains(name) {
                    continue;
                }
                return Err(invalid(&p, "may not be null"));
            }
            self.field(ctx, field, value, &p)?;
        }
        Ok(())
    }

    fn field(
        &self,
        ctx: &str,
        field: &FieldType,
        v: &Value,
        path: &str,
    ) -> Result<(), LexiconError> {
        match field {
            FieldType::Boolean { constant } => match v {
                Value::Bool(b) if constant.is_none_or(|c| c == *b) => Ok(()),
                Value::Bool(_) => Err(invalid(path, "does not equal const")),
                _ => Err(invalid(path, "expected a boolean")),
            },
            FieldType::Integer {
                minimum,
                maximum,
                enumeration,
                constant,
            } => {
                let Value::Integer(i) = v else {
                    return Err(invalid(path, "expected an integer"));
                };
                if constant.is_some_and(|c| c != *i) {
                    return Err(invalid(path, "does not equal const"));
                }
                if enumeration.as_ref().is_some_and(|e| !e.contains(i)) {
                    return Err(invalid(path, "not one of the allowed values"));
                }
                if minimum.is_some_and(|m| *i < m) || maximum.is_some_and(|m| *i > m) {
                    return Err(invalid(path, "out of range"));
                }
                Ok(())
            }
            FieldType::String(s) => match v {
                Value::String(text) => string(s, text, path),
                _ => Err(invalid(path, "expected a string")),
            },
            FieldType::Bytes {
                min_length,
                max_length,
            } => match v {
                Value::Bytes(b) if within(b.len() as u64, *min_length, *max_length) => Ok(()),
                Value::Bytes(_) => Err(invalid(path, "bytes length out of range")),
                _ => Err(invalid(path, "expected bytes")),
            },
            FieldType::CidLink => match v {
                Value::Link(_) => Ok(()),
                _ => Err(invalid(path, "expected a CID link")),
            },
            FieldType::Blob { accept, max_size } => {
                let blob = v
                    .as_blob()
                    .ok_or_else(|| invalid(path, "expected a blob"))?;
                if max_size.is_some_and(|m| blob.size > m) {
                    return Err(invalid(path, "blob too large"));
                }
                if let Some(accept) = accept
                    && !accept.iter().any(|a| mime_matches(a, &blob.mime_type))
                {
                    return Err(invalid(path, "blob MIME type not accepted"));
                }
                Ok(())
            }
            FieldType::Array {
                items,
                min_length,
                max_length,
            } => {
                let Value::Array(a) = v else {
                    return Err(invalid(path, "expected an array"));
                };
                if !within(a.len() as u64, *min_length, *max_length) {
                    return Err(invalid(path, "array length out of range"));
                }
                a.iter()
                    .enumerate()
                    .try_for_each(|(i, item)| self.field(ctx, items, item, &format!("{path}[{i}]")))
            }
            FieldType::Object(o) => self.object(ctx, o, v, path),
            FieldType::Ref(r) => self.reference(ctx, r, v, path),
            FieldType::Union { refs, closed } => self.union(ctx, refs, *closed, v, path),
            FieldType::Unknown => match v {
                Value::Map(_) if v.type_name() != Some("blob") => Ok(()),
                _ => Err(invalid(path, "expected an object")),
            },
        }
    }

    fn reference(&self, ctx: &str, r: &str, v: &Value, path: &str) -> Result<(), LexiconError> {
        let (nsid, def) = self.catalog.resolve(ctx, r)?;
        match def {
            Def::Field(f) => self.field(&nsid, f, v, path),
            Def::Record { record, .. } => self.object(&nsid, record, v, path),
            Def::Token => match v {
                Value::String(s) if *s == full_ref(ctx, r) => Ok(()),
                _ => Err(invalid(path, "expected the token")),
            },
            Def::Primary { .. } => Err(invalid(path, "ref to a query, procedure or subscription")),
        }
    }

    fn union(
        &self,
        ctx: &str,
        refs: &[String],
        closed: bool,
        v: &Value,
        path: &str,
    ) -> Result<(), LexiconError> {
        if v.as_map().is_none() {
            return Err(invalid(path, "expected an object"));
        }
        let Some(t) = v.type_name() else {
            return Err(invalid(path, "union member without $type"));
        };
        let want = normalize(t);
        match refs.iter().find(|r| normalize(&full_ref(ctx, r)) == want) {
            Some(r) => self.reference(ctx, r, v, path),
            None if closed => Err(invalid(
                path,
                format!("$type {t} is not in the closed union"),
            )),
            None => Ok(()),
        }
    }
}

/// `#def` → `ctx#def`.
fn full_ref(ctx: &str, r: &str) -> String {
    if r.starts_with('#') {
        format!("{ctx}{r}")
    } else {
        r.to_owned()
    }
}

/// `nsid#main` and `nsid` name the same definition.
fn normalize(r: &str) -> &str {
    r.strip_suffix("#main").unwrap_or(r)
}

fn mime_matches(pattern: &str, mime: &str) -> bool {
    match pattern.strip_suffix("/*") {
        _ if pattern == "*/*" => true,
        Some(top) => mime
            .split_once('/')
            .is_some_and(|(t, _)| t.eq_ignore_ascii_case(top)),
        None => pattern.eq_ignore_ascii_case(mime),
    }
}

fn string(s: &StringType, text: &str, path: &str) -> Result<(), LexiconError> {
    if s.constant.as_ref().is_some_and(|c| c != text) {
        return Err(invalid(path, "does not equal const"));
    }
    if s.enumeration
        .as_ref()
        .is_some_and(|e| !e.iter().any(|x| x == text))
    {
        return Err(invalid(path, "not one of the allowed values"));
    }
    if !within(text.len() as u64, s.min_length, s.max_length) {
        return Err(invalid(path, "length out of range"));
    }
    if s.min_graphemes.is_some() || s.max_graphemes.is_some() {
        let n = text.graphemes(true).count() as u64;
        if !within(n, s.min_graphemes, s.max_graphemes) {
            return Err(invalid(path, "grapheme count out of range"));
        }
    }
    let ok = match s.format {
        None => true,
        Some(StringFormat::AtIdentifier) => text.parse::<AtIdentifier>().is_ok(),
        Some(StringFormat::AtUri) => text.parse::<AtUri>().is_ok(),
        Some(StringFormat::Cid) => is_valid_cid_syntax(text),
        Some(StringFormat::Datetime) => text.parse::<Datetime>().is_ok(),
        Some(StringFormat::Did) => text.parse::<Did>().is_ok(),
        Some(StringFormat::Handle) => text.parse::<Handle>().is_ok(),
        Some(StringFormat::Nsid) => text.parse::<Nsid>().is_ok(),
        Some(StringFormat::Tid) => text.parse::<Tid>().is_ok(),
        Some(StringFormat::RecordKey) => text.parse::<RecordKey>().is_ok(),
        Some(StringFormat::Uri) => is_valid_uri(text),
        Some(StringFormat::Language) => is_valid_language(text),
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(path, "string does not match its format"))
    }
}
