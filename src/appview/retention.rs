//! Retention rules: which tags and untagged manifests of a repository go, and their removal
//! through the same path as a user's `DELETE` (the records go with signed commits; garbage
//! collection frees the bytes later).
//!
//! A rule keeps the newest `keep_newest` tags (newest by the push of the manifest a tag names,
//! then by name), and every tag matching `keep_tags`; other tags go. Untagged manifests pushed
//! more than `untagged_older_than` seconds ago go too, except those another manifest of the
//! repository references (the platform manifests of an index) and referrers (signatures, SBOMs:
//! they go with their subject's own deletion rules, not by age).

use regex::Regex;

use super::index::{RepoContents, RepoKey};
use super::{AppView, AppViewError, Located};
use crate::blobstore::Digest;
use crate::oci::name::Tag;

/// One retention rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Repositories as users write them (`alice/app`); `*` matches any run of characters, `/`
    /// included.
    pub repositories: String,
    pub keep_newest: Option<usize>,
    pub keep_tags: Option<Regex>,
    pub untagged_older_than: Option<u64>,
}

impl Rule {
    /// Whether the rule applies to repository `name`.
    #[must_use]
    pub fn applies_to(&self, name: &str) -> bool {
        glob_matches(&self.repositories, name)
    }
}

/// What retention removes from one repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub repo: RepoKey,
    /// The repository as users write it.
    pub name: String,
    pub tags: Vec<String>,
    pub manifests: Vec<Digest>,
}

/// Whether `pattern` (with `*` for any run of characters) matches all of `text`.
#[must_use]
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// What `rule` removes of a repository's `contents` at `now` (unix seconds).
#[must_use]
pub fn select(rule: &Rule, contents: &RepoContents, now: u64) -> (Vec<String>, Vec<Digest>) {
    let created = |digest: &Digest| {
        contents
            .manifests
            .iter()
            .find(|(d, _)| d == digest)
            .map_or(0, |(_, m)| m.created)
    };
    let mut tags: Vec<(u64, &str, &Digest)> = contents
        .tags
        .iter()
        .map(|(t, d)| (created(d), t.as_str(), d))
        .collect();
    tags.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let mut kept_targets: Vec<&Digest> = Vec::new();
    let mut gone_tags = Vec::new();
    for (i, (_, tag, digest)) in tags.iter().enumerate() {
        let pinned = rule.keep_tags.as_ref().is_some_and(|re| re.is_match(tag));
        let newest = rule.keep_newest.is_none_or(|n| i < n);
        if pinned || newest {
            kept_targets.push(digest);
        } else {
            gone_tags.push((*tag).to_owned());
        }
    }
    let mut gone_manifests = Vec::new();
    if let Some(age) = rule.untagged_older_than {
        for (digest, record) in &contents.manifests {
            let untagged = !kept_targets.contains(&digest);
            let old = record.created.saturating_add(age) < now;
            let needed = contents.referenced.contains(digest) || record.subject.is_some();
            if untagged && old && !needed {
                gone_manifests.push(digest.clone());
            }
        }
    }
    (gone_tags, gone_manifests)
}

impl AppView {
    /// What `rules` remove at `now`: for each repository, the first rule that applies to it.
    pub fn retention_plan(&self, rules: &[Rule], now: u64) -> Result<Vec<Removal>, AppViewError> {
        let mut keys = Vec::new();
        self.index.each_repo(|key| keys.push(key))?;
        let mut out = Vec::new();
        for repo in keys {
            let name = self.display_name(&repo);
            let Some(rule) = rules.iter().find(|r| r.applies_to(&name)) else {
                continue;
            };
            let contents = self.index.repo_contents(&repo)?;
            let (tags, manifests) = select(rule, &contents, now);
            if !tags.is_empty() || !manifests.is_empty() {
                out.push(Removal {
                    repo,
                    name,
                    tags,
                    manifests,
                });
            }
        }
        Ok(out)
    }

    /// Applies `rules` at `now`: deletes what [`AppView::retention_plan`] names, tags first,
    /// through the owners' signed commits. Returns what went.
    pub async fn apply_retention(
        &self,
        rules: &[Rule],
        now: u64,
    ) -> Result<Vec<Removal>, AppViewError> {
        let plan = self.retention_plan(rules, now)?;
        for removal in &plan {
            let Ok(owner) = removal.repo.owner().parse() else {
                continue;
            };
            let loc = Located {
                owner,
                path: removal.repo.path().to_owned(),
                key: removal.repo.clone(),
            };
            for tag in &removal.tags {
                if let Ok(tag) = tag.parse::<Tag>() {
                    self.unpublish_tag(&loc, &tag).await?;
                }
            }
            for digest in &removal.manifests {
                self.unpublish_manifest(&loc, digest).await?;
            }
            tracing::info!(
                repository = %removal.name,
                tags = removal.tags.len(),
                manifests = removal.manifests.len(),
                "retention removed tags and manifests"
            );
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appview::index::ManifestRecord;

    #[test]
    fn globs_match_whole_names() {
        for (p, t, ok) in [
            ("alice/app", "alice/app", true),
            ("alice/app", "alice/app2", false),
            ("alice/*", "alice/tools/cli", true),
            ("*", "bob/x", true),
            ("*/ci-*", "bob/ci-cache", true),
            ("*/ci-*", "bob/app", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "acb", false),
            ("a*a", "a", false),
        ] {
            assert_eq!(glob_matches(p, t), ok, "{p} vs {t}");
        }
    }

    fn digest(n: u8) -> Digest {
        Digest::of(crate::blobstore::Algorithm::Sha256, &[n])
    }

    fn manifest(created: u64, subject: Option<Digest>) -> ManifestRecord {
        ManifestRecord {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 1,
            artifact_type: None,
            subject,
            created,
            summary: None,
        }
    }

    #[test]
    fn the_newest_and_the_pinned_stay_and_old_untagged_go_unless_needed() {
        // Tags t0..t5 on manifests pushed at 100..105; v1.0.0 on the oldest.
        let mut contents = RepoContents::default();
        for i in 0..6u8 {
            contents
                .manifests
                .push((digest(i), manifest(100 + u64::from(i), None)));
            contents.tags.push((format!("t{i}"), digest(i)));
        }
        contents.tags.push(("v1.0.0".into(), digest(0)));
        // Untagged: 10 (old), 11 (old, a child of an index), 12 (old, a referrer), 13 (new).
        contents.manifests.push((digest(10), manifest(50, None)));
        contents.manifests.push((digest(11), manifest(50, None)));
        contents.referenced.insert(digest(11));
        contents
            .manifests
            .push((digest(12), manifest(50, Some(digest(5)))));
        contents.manifests.push((digest(13), manifest(995, None)));
        let rule = Rule {
            repositories: "*".into(),
            keep_newest: Some(2),
            keep_tags: Some(Regex::new(r"^v\d+\.\d+\.\d+$").unwrap()),
            untagged_older_than: Some(100),
        };
        let (tags, manifests) = select(&rule, &contents, 1000);
        assert_eq!(tags, ["t3", "t2", "t1", "t0"]);
        // t1..t3's manifests are untagged now but were pushed at 101..103: old enough.
        let mut expected = vec![digest(1), digest(2), digest(3), digest(10)];
        expected.sort();
        let mut got = manifests;
        got.sort();
        assert_eq!(got, expected);
    }
}
