//! Typed identifiers of the AT Protocol, parsed once at the edge.
//!
//! Every type here validates on construction (`FromStr`, `TryFrom<String>`, serde) and is then
//! carried as-is: holding a `Did` means the string was checked against the DID grammar.

/// Serialize/deserialize a `FromStr + Display` identifier as a JSON string.
macro_rules! string_newtype_serde {
    ($name:ident) => {
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use string_newtype_serde;

/// The shared boilerplate of a validated string newtype: `FromStr`, `Display`, `AsRef<str>`,
/// `TryFrom<String>`, `as_str`, serde.
macro_rules! string_newtype {
    ($name:ident, $check:path) => {
        impl std::str::FromStr for $name {
            type Err = $crate::atproto::syntax::SyntaxError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $check(s)?;
                Ok(Self(s.to_owned()))
            }
        }
        impl TryFrom<String> for $name {
            type Error = $crate::atproto::syntax::SyntaxError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                $check(&s)?;
                Ok(Self(s))
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl $name {
            /// The identifier as written.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        $crate::atproto::syntax::string_newtype_serde!($name);
    };
}

mod aturi;
mod datetime;
mod did;
mod handle;
mod language;
mod nsid;
mod rkey;
mod tid;

pub use aturi::AtUri;
pub use datetime::Datetime;
pub use did::Did;
pub use handle::Handle;
pub use language::{is_valid_language, is_valid_language_syntax};
pub use nsid::Nsid;
pub use rkey::RecordKey;
pub use tid::{Tid, TidClock};

use thiserror::Error;

/// Why a string is not a valid identifier of some kind. The offending value is left out on
/// purpose: it may be long, or come from a client.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid {kind}: {reason}")]
pub struct SyntaxError {
    /// Which identifier kind was being parsed (`"did"`, `"handle"`, …).
    pub kind: &'static str,
    /// A short, fixed description of the rule that failed.
    pub reason: &'static str,
}

impl SyntaxError {
    pub(crate) const fn new(kind: &'static str, reason: &'static str) -> Self {
        Self { kind, reason }
    }
}

/// An AT identifier: a handle or a DID (the authority of an AT-URI, `repo` parameters, …).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AtIdentifier {
    /// A DID.
    Did(Did),
    /// A handle.
    Handle(Handle),
}

impl std::str::FromStr for AtIdentifier {
    type Err = SyntaxError;
    fn from_str(s: &str) -> Result<Self, SyntaxError> {
        if s.starts_with("did:") {
            s.parse().map(Self::Did)
        } else {
            s.parse()
                .map(Self::Handle)
                .map_err(|_| SyntaxError::new("at-identifier", "neither a DID nor a handle"))
        }
    }
}

impl std::fmt::Display for AtIdentifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Did(d) => d.fmt(f),
            Self::Handle(h) => h.fmt(f),
        }
    }
}

impl AtIdentifier {
    /// The identifier as written.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::Did(d) => d.as_str(),
            Self::Handle(h) => h.as_str(),
        }
    }
}

string_newtype_serde!(AtIdentifier);

/// Generic URI syntax as lexicon's `uri` string format accepts it: a scheme, a colon, and at
/// least one more non-whitespace character; at most 8 KiB.
#[must_use]
pub fn is_valid_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    s.len() <= 8192
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !rest.chars().any(char::is_whitespace)
}
