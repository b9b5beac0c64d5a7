//! `atcr user list` and `atcr user quota`: accounts with their storage usage and quota. Usage
//! comes from the registry index (`-` when it is not open: the daemon is stopped and the index
//! missing); the limit is the account's own, kept with the account, or the node's default.

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{Node, find_user};
use crate::http::human_bytes;
use crate::pds::accounts::Account;

/// What `atcr user quota NAME LIMIT` sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaSetting {
    /// `none`: the node's `quota.default` applies.
    Default,
    /// `unlimited` (or `0`): no limit, whatever the default.
    Unlimited,
    /// A limit in bytes.
    Bytes(u64),
}

impl QuotaSetting {
    /// `none`, `unlimited`, or a size (`50GiB`, `500MB`; 0 is `unlimited`).
    pub fn parse(text: &str) -> anyhow::Result<QuotaSetting> {
        Ok(match text.trim().to_ascii_lowercase().as_str() {
            "none" | "default" => QuotaSetting::Default,
            "unlimited" => QuotaSetting::Unlimited,
            other => match crate::config::parse_size(other)? {
                0 => QuotaSetting::Unlimited,
                n => QuotaSetting::Bytes(n),
            },
        })
    }

    /// As [`Account::quota`] stores it.
    fn stored(self) -> Option<u64> {
        match self {
            QuotaSetting::Default => None,
            QuotaSetting::Unlimited => Some(0),
            QuotaSetting::Bytes(n) => Some(n),
        }
    }
}

/// An account's usage (`-` when the index is not open) and its effective limit, for people.
fn standing(node: &Node<'_>, account: &Account) -> anyhow::Result<(String, String)> {
    let used = match node.index {
        Some(index) => human_bytes(index.usage(&account.did)?),
        None => "-".to_owned(),
    };
    let limit = match account.quota.unwrap_or(node.default_quota) {
        0 => "unlimited".to_owned(),
        n => human_bytes(n),
    };
    let from = if account.quota.is_some() {
        ""
    } else {
        " (default)"
    };
    Ok((used, format!("{limit}{from}")))
}

/// `atcr user list`: name, handle, DID, usage, quota, and `admin` for administrators.
pub(super) fn list(node: &Node<'_>) -> anyhow::Result<String> {
    let mut accounts = node.hold.pds().accounts.list()?;
    accounts.sort_by(|a, b| a.name.cmp(&b.name));
    let mut lines = Vec::new();
    for a in &accounts {
        let (used, limit) = standing(node, a)?;
        let admin = if a.admin { "\tadmin" } else { "" };
        lines.push(format!(
            "{}\t{}\t{}\t{used}\t{limit}{admin}",
            a.name, a.handle, a.did
        ));
    }
    Ok(lines.join("\n"))
}

/// `atcr user quota NAME [LIMIT]`: sets the limit when given, and says where the user stands.
pub(super) fn quota(
    node: &Node<'_>,
    name: &str,
    setting: Option<QuotaSetting>,
) -> anyhow::Result<String> {
    let mut account = find_user(node.hold, name)?;
    if let Some(setting) = setting {
        account = node
            .hold
            .pds()
            .accounts
            .set_quota(&account.did, setting.stored())
            .with_context(|| format!("cannot set the quota of {}", account.name))?;
    }
    let (used, limit) = standing(node, &account)?;
    Ok(format!("{}\tquota {limit}\tused {used}", account.name))
}

#[cfg(test)]
mod tests {
    use super::QuotaSetting;

    #[test]
    fn a_quota_setting_is_a_size_none_or_unlimited() {
        assert_eq!(
            QuotaSetting::parse("50GiB").unwrap(),
            QuotaSetting::Bytes(50 << 30)
        );
        assert_eq!(QuotaSetting::parse("None").unwrap(), QuotaSetting::Default);
        assert_eq!(
            QuotaSetting::parse("unlimited").unwrap(),
            QuotaSetting::Unlimited
        );
        assert_eq!(QuotaSetting::parse("0").unwrap(), QuotaSetting::Unlimited);
        assert!(QuotaSetting::parse("lots").is_err());
    }
}
