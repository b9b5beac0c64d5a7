//! The storage-usage families of `/metrics`: per user (usage and quota, one series per local
//! account and per other owner with blobs counted) and per repository, bounded to the
//! [`TOP_REPOSITORIES`] largest so that a node with many repositories keeps a small exposition.

use std::fmt::Write as _;

use super::App;

/// How many repositories `atcr_repository_storage_bytes` reports: the largest.
pub const TOP_REPOSITORIES: usize = 20;

/// A label value with `\` and `"` escaped, as the text format wants.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Appends the families to `out`.
pub fn write_metrics(app: &App, out: &mut String) -> Result<(), crate::appview::AppViewError> {
    let appview = app.registry.appview();
    let index = appview.index();
    let mut family = |name: &str, help: &str, series: &[(String, u64)], key: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (value, n) in series {
            let _ = writeln!(out, "{name}{{{key}=\"{}\"}} {n}", label(value));
        }
    };
    let used: Vec<(String, u64)> = index
        .usages()?
        .into_iter()
        .map(|(did, n)| (appview.display_owner(&did), n))
        .collect();
    family(
        "atcr_user_storage_bytes",
        "Bytes of the unique blobs a user's manifests use, in all their repositories.",
        &used,
        "user",
    );
    let mut limits = Vec::new();
    for account in app.pds.accounts.list()? {
        if let Some(limit) = appview.quota_limit(account.quota) {
            limits.push((account.name, limit));
        }
    }
    limits.sort();
    family(
        "atcr_user_quota_bytes",
        "A user's storage quota (users without a limit are left out).",
        &limits,
        "user",
    );
    let repos: Vec<(String, u64)> = index
        .largest_repos(TOP_REPOSITORIES)?
        .into_iter()
        .map(|(key, n)| (appview.display_name(&key), n))
        .collect();
    family(
        "atcr_repository_storage_bytes",
        "Bytes of the unique blobs a repository's manifests use (the 20 largest repositories).",
        &repos,
        "repository",
    );
    Ok(())
}
