//! Lexicon validation: parse lexicon documents into a [`Catalog`] and validate record data
//! against it (types, required and nullable fields, string formats and lengths, graphemes,
//! enums and consts, refs, open and closed unions, blobs, bytes, arrays).

mod schema;
mod validate;

use std::collections::HashMap;

use thiserror::Error;

pub use schema::{Def, FieldType, LexiconDoc, ObjectType, StringFormat, StringType};

use crate::atproto::data::Value;
use crate::atproto::syntax::{Nsid, RecordKey, Tid};

/// Why a lexicon or a record was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LexiconError {
    /// The lexicon document itself is malformed.
    #[error("invalid lexicon: {0}")]
    Schema(&'static str),
    /// No lexicon with that NSID (or definition) is in the catalog.
    #[error("unknown lexicon or definition: {0}")]
    Unresolved(String),
    /// The data does not match the schema; `path` says where (`record.layers[0].size`).
    #[error("{path}: {reason}")]
    Invalid {
        /// Where in the data.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// A set of lexicon documents, keyed by NSID.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    docs: HashMap<String, LexiconDoc>,
}

impl Catalog {
    /// An empty catalog.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a lexicon JSON document and adds it (replacing one with the same NSID).
    pub fn add_json(&mut self, doc: &serde_json::Value) -> Result<&LexiconDoc, LexiconError> {
        let doc = LexiconDoc::from_json(doc)?;
        let id = doc.id.to_string();
        self.docs.insert(id.clone(), doc);
        Ok(&self.docs[&id])
    }

    /// A document by NSID.
    #[must_use]
    pub fn get(&self, nsid: &str) -> Option<&LexiconDoc> {
        self.docs.get(nsid)
    }

    /// Resolves a reference (`#def` relative to `context`, `nsid`, `nsid#def`).
    pub(crate) fn resolve(
        &self,
        context: &str,
        reference: &str,
    ) -> Result<(String, &Def), LexiconError> {
        let (nsid, name) = match reference.split_once('#') {
            Some(("", name)) => (context, name),
            Some((nsid, name)) => (nsid, name),
            None => (reference, "main"),
        };
        let def = self
            .docs
            .get(nsid)
            .and_then(|d| d.defs.get(name))
            .ok_or_else(|| LexiconError::Unresolved(reference.to_owned()))?;
        Ok((nsid.to_owned(), def))
    }

    /// Validates record data against the record lexicon of `collection`: the data must be an
    /// object whose `$type` is the collection, and match the record schema.
    pub fn validate_record(&self, collection: &Nsid, record: &Value) -> Result<(), LexiconError> {
        let (nsid, def) = self.resolve(collection.as_str(), collection.as_str())?;
        let Def::Record { record: schema, .. } = def else {
            return Err(LexiconError::Unresolved(format!(
                "{collection} is not a record type"
            )));
        };
        if record.type_name() != Some(collection.as_str()) {
            return Err(LexiconError::Invalid {
                path: "record".into(),
                reason: format!("$type must be {collection}"),
            });
        }
        validate::Validator { catalog: self }.object(&nsid, schema, record, "record")
    }

    /// Checks a record key against the collection's declared `key` type (`tid`, `nsid`,
    /// `any`, `record-key`, `literal:<value>`).
    pub fn validate_record_key(
        &self,
        collection: &Nsid,
        rkey: &RecordKey,
    ) -> Result<(), LexiconError> {
        let (_, def) = self.resolve(collection.as_str(), collection.as_str())?;
        let Def::Record { key, .. } = def else {
            return Err(LexiconError::Unresolved(format!(
                "{collection} is not a record type"
            )));
        };
        let ok = match key.as_str() {
            "tid" => rkey.as_str().parse::<Tid>().is_ok(),
            "nsid" => rkey.as_str().parse::<Nsid>().is_ok(),
            "any" | "record-key" => true,
            other => other
                .strip_prefix("literal:")
                .is_some_and(|l| l == rkey.as_str()),
        };
        if ok {
            Ok(())
        } else {
            Err(LexiconError::Invalid {
                path: "rkey".into(),
                reason: format!("record key must be {key}"),
            })
        }
    }
}
