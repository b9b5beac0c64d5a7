//! `[holds]`: holds on other machines (ATCR's "bring your own storage").

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::atproto::Did;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HoldsConfig {
    /// The hold pushes send blobs to, unless the pushing user's profile
    /// (`io.atcr.sailor.profile.defaultHold`) names another hold this node trusts: the DID of
    /// a hold named with `atcr hold add`. Unset: this node's own storage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

impl HoldsConfig {
    /// `default` as a DID.
    pub fn default_did(&self) -> Result<Option<Did>, ConfigError> {
        self.default
            .as_deref()
            .map(|d| {
                d.parse()
                    .map_err(|_| ConfigError::Invalid(format!("holds.default: {d:?} is not a DID")))
            })
            .transpose()
    }
}
