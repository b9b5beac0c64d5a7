//! AT-URIs: `at://<authority>[/<collection>[/<rkey>]]`.

use super::{AtIdentifier, Nsid, RecordKey, SyntaxError};

/// An AT-URI in the strict form lexicons accept: an authority (DID or handle), optionally a
/// collection NSID, optionally a record key; no trailing slash, query or fragment; at most
/// 8 KiB.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AtUri {
    authority: AtIdentifier,
    collection: Option<Nsid>,
    rkey: Option<RecordKey>,
}

impl AtUri {
    /// The URI of a record.
    #[must_use]
    pub fn new(authority: AtIdentifier, collection: Option<Nsid>, rkey: Option<RecordKey>) -> Self {
        let rkey = if collection.is_some() { rkey } else { None };
        Self {
            authority,
            collection,
            rkey,
        }
    }

    /// The repository (DID or handle).
    #[must_use]
    pub fn authority(&self) -> &AtIdentifier {
        &self.authority
    }

    /// The collection, if the URI names one.
    #[must_use]
    pub fn collection(&self) -> Option<&Nsid> {
        self.collection.as_ref()
    }

    /// The record key, if the URI names a record.
    #[must_use]
    pub fn rkey(&self) -> Option<&RecordKey> {
        self.rkey.as_ref()
    }
}

impl std::str::FromStr for AtUri {
    type Err = SyntaxError;
    fn from_str(s: &str) -> Result<Self, SyntaxError> {
        let err = |reason| SyntaxError::new("at-uri", reason);
        if s.len() > 8 * 1024 {
            return Err(err("longer than 8 KiB"));
        }
        let rest = s
            .strip_prefix("at://")
            .ok_or(err("does not start with \"at://\""))?;
        let mut parts = rest.split('/');
        let authority = parts
            .next()
            .unwrap_or("")
            .parse()
            .map_err(|_| err("authority is neither a DID nor a handle"))?;
        let collection = parts
            .next()
            .map(|c| {
                c.parse::<Nsid>()
                    .map_err(|_| err("collection is not an NSID"))
            })
            .transpose()?;
        let rkey = parts
            .next()
            .map(|k| {
                k.parse::<RecordKey>()
                    .map_err(|_| err("invalid record key"))
            })
            .transpose()?;
        if parts.next().is_some() {
            return Err(err("too many path segments"));
        }
        Ok(Self {
            authority,
            collection,
            rkey,
        })
    }
}

impl std::fmt::Display for AtUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at://{}", self.authority)?;
        if let Some(c) = &self.collection {
            write!(f, "/{c}")?;
            if let Some(k) = &self.rkey {
                write!(f, "/{k}")?;
            }
        }
        Ok(())
    }
}

string_newtype_serde!(AtUri);
