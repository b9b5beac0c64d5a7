//! `[identity]`: how the node resolves the identities of users of other PDSes (handle → DID →
//! DID document → PDS), for logins of remote users (`docs/federation.md`).

use serde::{Deserialize, Serialize};

/// `identity.cache_secs` by default: five minutes.
pub const DEFAULT_IDENTITY_CACHE_SECS: u64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// A PDS (`https://pds.lan`, `http://127.0.0.1:2583`) asked for the DID of every handle
    /// (`com.atproto.identity.resolveHandle`) instead of the handle's own host
    /// (`https://<handle>/.well-known/atproto-did`): for a LAN whose handles have no DNS, and for
    /// tests. The DID document must still name the handle (`alsoKnownAs`). Unset: DNS (the
    /// `_atproto.<handle>` TXT record) and then the handle's host are asked.
    pub handle_resolver: Option<String>,
    /// Hosts on the LAN or this machine (names or addresses, no port) that handle and did:web
    /// lookups and remote logins may reach: over plain HTTP too, and although they resolve to
    /// loopback or private addresses. Every other host a login names must be HTTPS and resolve
    /// to public addresses only. Default none.
    pub lan_hosts: Vec<String>,
    /// How long a resolved identity is used before it is resolved again, in seconds. Default
    /// 300.
    pub cache_secs: u64,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            handle_resolver: None,
            lan_hosts: Vec::new(),
            cache_secs: DEFAULT_IDENTITY_CACHE_SECS,
        }
    }
}

impl IdentityConfig {
    /// Checks what the types cannot.
    pub fn check(&self) -> Result<(), super::ConfigError> {
        if let Some(url) = &self.handle_resolver
            && let Err(e) = crate::http_client::Target::parse(url, false)
        {
            return Err(super::ConfigError::Invalid(format!(
                "identity.handle_resolver: {e}"
            )));
        }
        if self.cache_secs == 0 {
            return Err(super::ConfigError::Invalid(
                "identity.cache_secs must be greater than 0".into(),
            ));
        }
        Ok(())
    }

    /// The settings the PDS resolves identities with.
    #[must_use]
    pub fn settings(&self) -> crate::pds::identities::IdentitySettings {
        crate::pds::identities::IdentitySettings {
            handle_resolver: self.handle_resolver.clone(),
            lan_hosts: self
                .lan_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            cache: std::time::Duration::from_secs(self.cache_secs),
        }
    }
}
