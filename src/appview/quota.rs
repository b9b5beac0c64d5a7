//! Storage quotas: how many bytes of unique blobs the manifests of one owner may use, in all
//! their repositories (see `index::usage` for how usage is counted). The limit is the account's
//! own (`atcr user quota`, kept with the account: operator state, not derived) or else the
//! node's `quota.default`. The registry enforces it at its edge; pages and `/metrics` show it.

use std::sync::atomic::Ordering;

use super::{AppView, AppViewError};
use crate::atproto::Did;

/// One owner's standing: who, how much they use, and how much they may.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    /// The account's short name (the DID when it is no local account).
    pub user: String,
    /// Bytes of unique blobs their manifests use.
    pub used: u64,
    /// `None`: no limit.
    pub limit: Option<u64>,
}

impl Quota {
    /// Whether `more` bytes on top of what is used would go over the limit.
    #[must_use]
    pub fn exceeded_by(&self, more: u64) -> bool {
        self.limit
            .is_some_and(|limit| self.used.saturating_add(more) > limit)
    }
}

impl AppView {
    /// Sets the limit of owners without one of their own (`quota.default`; 0: no limit).
    pub fn set_default_quota(&self, bytes: u64) {
        self.default_quota.store(bytes, Ordering::Relaxed);
    }

    /// The limit of an account whose own setting is `own` (see
    /// [`crate::pds::accounts::Account::quota`]); `None`: no limit.
    #[must_use]
    pub fn quota_limit(&self, own: Option<u64>) -> Option<u64> {
        match own.unwrap_or_else(|| self.default_quota.load(Ordering::Relaxed)) {
            0 => None,
            n => Some(n),
        }
    }

    /// `owner`'s usage and limit.
    pub fn quota(&self, owner: &Did) -> Result<Quota, AppViewError> {
        let account = self.pds.accounts.get(owner)?;
        Ok(Quota {
            user: account
                .as_ref()
                .map_or_else(|| owner.to_string(), |a| a.name.clone()),
            used: self.index.usage(owner)?,
            limit: self.quota_limit(account.and_then(|a| a.quota)),
        })
    }
}
