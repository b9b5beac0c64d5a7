//! Storage lifecycle: `[gc]`, when unused blobs are collected, `[retention]`, rules that
//! delete old tags and untagged manifests on a schedule (see `appview::retention` for what a
//! rule keeps), and `[quota]`, how much each user may store.

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::appview::retention::Rule;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcConfig {
    /// How often, in seconds, the node collects blobs no manifest uses (and stale uploads, as
    /// `uploads.expire_after_secs` says); 0 turns scheduled collection off (`atcr gc` still
    /// works). Default 21600 (6 h).
    pub interval_secs: u64,
    /// A blob written or linked into a repository this many seconds ago or less is kept, used
    /// or not: clients upload layers before the manifest that uses them. Default 3600.
    pub grace_secs: u64,
}

/// Default of `gc.interval_secs`.
pub const DEFAULT_GC_INTERVAL_SECS: u64 = 6 * 3600;
/// Default of `gc.grace_secs`.
pub const DEFAULT_GC_GRACE_SECS: u64 = 3600;

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            interval_secs: DEFAULT_GC_INTERVAL_SECS,
            grace_secs: DEFAULT_GC_GRACE_SECS,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaConfig {
    /// How many bytes of unique blobs each user's manifests may use, in all their repositories
    /// (`50GiB`, `500MB`); `atcr user quota NAME SIZE` sets a user's own. Unset or 0: no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

impl QuotaConfig {
    /// `default` in bytes (0: no limit).
    pub fn default_bytes(&self) -> Result<u64, ConfigError> {
        self.default.as_deref().map_or(Ok(0), |text| {
            super::parse_size(text).map_err(|e| ConfigError::Invalid(format!("quota.default: {e}")))
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// How often the rules run, in seconds. Default 3600.
    pub interval_secs: u64,
    /// Log what the rules would remove, and remove nothing. Default false.
    pub dry_run: bool,
    /// The rules; for each repository the first whose `repositories` matches applies. Default
    /// none: nothing is removed.
    pub rules: Vec<RetentionRule>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            interval_secs: 3600,
            dry_run: false,
            rules: Vec::new(),
        }
    }
}

/// One `[[retention.rules]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// Repositories as users write them (`alice/app`); `*` matches any run of characters,
    /// `/` included (`alice/*`, `*/ci-*`, `*`).
    pub repositories: String,
    /// Keep this many tags, the newest by the push of the manifest each names; older tags go.
    /// Unset: every tag stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_newest: Option<usize>,
    /// Tags matching this regular expression always stay (`^v\d+\.\d+\.\d+$`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_tags: Option<String>,
    /// Untagged manifests pushed more than this many seconds ago go, except the platform
    /// manifests of an index and referrers. Unset: untagged manifests stay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub untagged_older_than_secs: Option<u64>,
}

impl RetentionConfig {
    /// The rules as the registry applies them.
    pub fn rules(&self) -> Result<Vec<Rule>, ConfigError> {
        self.rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let invalid = |why: String| {
                    ConfigError::Invalid(format!(
                        "retention.rules[{i}] ({:?}): {why}",
                        r.repositories
                    ))
                };
                if r.repositories.is_empty() {
                    return Err(invalid("repositories must name some".into()));
                }
                if r.keep_newest.is_none() && r.untagged_older_than_secs.is_none() {
                    return Err(invalid(
                        "set keep_newest or untagged_older_than_secs, or the rule does nothing"
                            .into(),
                    ));
                }
                let keep_tags = match &r.keep_tags {
                    Some(p) => Some(
                        regex::Regex::new(p)
                            .map_err(|e| invalid(format!("keep_tags is not a pattern: {e}")))?,
                    ),
                    None => None,
                };
                Ok(Rule {
                    repositories: r.repositories.clone(),
                    keep_newest: r.keep_newest,
                    keep_tags,
                    untagged_older_than: r.untagged_older_than_secs,
                })
            })
            .collect()
    }

    pub fn check(&self) -> Result<(), ConfigError> {
        if self.interval_secs == 0 {
            return Err(ConfigError::Invalid(
                "retention.interval_secs must be greater than 0".into(),
            ));
        }
        self.rules().map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(repositories: &str, keep: Option<usize>, tags: Option<&str>) -> RetentionRule {
        RetentionRule {
            repositories: repositories.into(),
            keep_newest: keep,
            keep_tags: tags.map(str::to_owned),
            untagged_older_than_secs: None,
        }
    }

    #[test]
    fn rules_that_cannot_work_are_refused_with_their_place() {
        let mut c = RetentionConfig::default();
        assert!(c.check().is_ok());
        c.rules = vec![rule("*", Some(3), Some(r"^v\d+$"))];
        let rules = c.rules().unwrap();
        assert!(rules[0].keep_tags.as_ref().unwrap().is_match("v12"));
        for (bad, why) in [
            (rule("", Some(3), None), "repositories"),
            (rule("a/*", None, None), "does nothing"),
            (rule("a/*", Some(1), Some("((")), "not a pattern"),
        ] {
            c.rules = vec![rule("*", Some(1), None), bad];
            let e = c.check().unwrap_err().to_string();
            assert!(e.contains("retention.rules[1]") && e.contains(why), "{e}");
        }
        c.rules.clear();
        c.interval_secs = 0;
        assert!(c.check().is_err());
    }
}
