//! Keeps the search index current with the registry index: the indexer marks each repository a
//! commit touched; a worker turns the marked ones into documents (from the registry index only)
//! a moment later and commits them. A search index that is missing, of another version, or
//! behind the registry index at start (a crash between the two) is rebuilt whole.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{AppView, AppViewError};
use crate::appview::index::RepoKey;
use crate::appview::summary::ManifestSummary;
use crate::atproto::Did;
use crate::search::{RepoDoc, SearchError};

/// How long the worker gathers marks before it commits: a push touches a repository a few
/// times in quick succession, and each tantivy commit costs a segment, its fsyncs and ≈13 MiB
/// of indexing tables allocated and freed (mapped and unmapped under the packaged unit's
/// malloc settings). A second keeps search a moment behind a push and took the bursts of slow
/// `PUT`s out of collections under push load (docs/performance.md, 2026-12-08; 150 ms before).
const GATHER: Duration = Duration::from_secs(1);
/// How long the search writer stays open after the last change (see `Search::close_writer`).
const WRITER_IDLE: Duration = Duration::from_secs(10);
/// Repositories read per registry-index page during a rebuild.
const REBUILD_PAGE: usize = 500;
/// Tags read per repository for its document (their platforms and annotations).
const DOC_TAGS: usize = 100;

impl From<SearchError> for AppViewError {
    fn from(e: SearchError) -> Self {
        AppViewError::Data(e.to_string())
    }
}

/// The annotations of a manifest worth finding a repository by.
const FOUND_BY: [&str; 6] = [
    "title",
    "description",
    "vendor",
    "licenses",
    "source",
    "authors",
];

/// The manifest summaries of `details`' tags, most recently pushed first.
#[must_use]
pub fn newest_first(details: &[crate::appview::index::TagDetail]) -> Vec<&ManifestSummary> {
    let mut found: Vec<(u64, &ManifestSummary)> = details
        .iter()
        .filter_map(|d| {
            let record = d.record.as_ref()?;
            Some((record.created, record.summary.as_deref()?))
        })
        .collect();
    found.sort_by_key(|(created, _)| std::cmp::Reverse(*created));
    found.into_iter().map(|(_, s)| s).collect()
}

/// A one-line description of a repository: its newest tag's `description` annotation (or
/// `title`), else the first paragraph of its README.
#[must_use]
pub fn describe(details: &[crate::appview::index::TagDetail], readme: Option<&str>) -> String {
    let annotated = newest_first(details)
        .into_iter()
        .find_map(|s| s.oci("description").or_else(|| s.oci("title")));
    if let Some(text) = annotated {
        return text.lines().next().unwrap_or_default().to_owned();
    }
    readme
        .unwrap_or_default()
        .split("\n\n")
        .map(|p| p.trim().trim_start_matches('#').trim())
        .find(|p| !p.is_empty())
        .map(|p| p.chars().take(280).collect())
        .unwrap_or_default()
}

impl AppView {
    /// Notes that `repos` changed; the search worker re-reads them soon.
    pub(super) fn mark_for_search(&self, repos: Vec<String>) {
        if repos.is_empty() {
            return;
        }
        self.search_dirty
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(repos.into_iter().map(RepoKey::from_stored));
        self.search_wake.notify_one();
    }

    /// The search document of repository `key`, or `None` when it no longer exists or is
    /// hidden.
    pub fn search_doc(&self, key: &RepoKey) -> Result<Option<RepoDoc>, AppViewError> {
        let index = &self.index;
        if !index.repo_exists(key)? || self.hidden(key.owner())? {
            return Ok(None);
        }
        let account = key
            .owner()
            .parse::<Did>()
            .ok()
            .and_then(|d| self.pds.accounts.get(&d).ok().flatten());
        let name = self.display_name(key);
        let (summary, readme) = index.repo_summary(key)?;
        let (details, _) = index.tag_details(key, DOC_TAGS)?;
        let mut annotations = BTreeSet::new();
        let mut platforms = BTreeSet::new();
        for s in newest_first(&details) {
            platforms.extend(s.platforms.iter().cloned());
            for short in FOUND_BY {
                if let Some(v) = s.oci(short) {
                    annotations.insert(v.to_owned());
                }
            }
        }
        Ok(Some(RepoDoc {
            key: key.to_string(),
            description: describe(&details, readme.as_deref()),
            name,
            owner: account
                .as_ref()
                .map_or_else(|| key.owner().to_owned(), |a| a.name.clone()),
            handle: account.map(|a| a.handle),
            readme: readme.unwrap_or_default(),
            annotations: annotations.into_iter().collect(),
            tags: details.iter().map(|d| d.tag.clone()).collect(),
            platforms: platforms.into_iter().collect(),
            stars: summary.stars,
            pushed: summary.pushed,
        }))
    }

    /// Re-reads the marked repositories into the search index.
    async fn refresh_search(&self) -> Result<(), AppViewError> {
        let marked: Vec<RepoKey> = std::mem::take(
            &mut *self
                .search_dirty
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
        .into_iter()
        .collect();
        if marked.is_empty() {
            return Ok(());
        }
        let cursor = self.index.cursor()?;
        let mut docs = Vec::with_capacity(marked.len());
        let mut removed = Vec::new();
        for key in marked {
            match self.search_doc(&key)? {
                Some(doc) => docs.push(doc),
                None => removed.push(key.to_string()),
            }
        }
        let search = self.search.clone();
        tokio::task::spawn_blocking(move || search.update(&docs, &removed, cursor, false))
            .await
            .map_err(|e| AppViewError::Data(e.to_string()))??;
        Ok(())
    }

    /// Rebuilds the search index from every repository of the registry index; returns how
    /// many it holds.
    pub async fn rebuild_search(self: &Arc<Self>) -> Result<u64, AppViewError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.rebuild_search_now())
            .await
            .map_err(|e| AppViewError::Data(e.to_string()))?
    }

    fn rebuild_search_now(&self) -> Result<u64, AppViewError> {
        let cursor = self.index.cursor()?;
        let mut bulk = self.search.bulk()?;
        let mut n = 0;
        let mut last: Option<RepoKey> = None;
        loop {
            let (keys, _) = self.index.repos(last.as_ref(), REBUILD_PAGE)?;
            let Some(end) = keys.last() else { break };
            last = Some(end.clone());
            for key in keys {
                if let Some(doc) = self.search_doc(&key)? {
                    bulk.add(&doc)?;
                    n += 1;
                }
            }
        }
        bulk.finish(cursor)?;
        Ok(n)
    }

    /// At shutdown: takes in what is marked and records where the registry index is, so the
    /// next start finds the search index current and need not rebuild it.
    async fn settle_search(&self) -> Result<(), AppViewError> {
        self.refresh_search().await?;
        let cursor = self.index.cursor()?;
        if self.search.cursor() == Some(cursor) {
            return Ok(());
        }
        let search = self.search.clone();
        tokio::task::spawn_blocking(move || search.update(&[], &[], cursor, false))
            .await
            .map_err(|e| AppViewError::Data(e.to_string()))??;
        Ok(())
    }

    /// Closes the search writer (its merges finish first), so an idle node holds no threads or
    /// arenas for it.
    async fn close_search_writer(&self) {
        let search = self.search.clone();
        let closed = tokio::task::spawn_blocking(move || search.close_writer())
            .await
            .map_err(|e| AppViewError::Data(e.to_string()))
            .and_then(|closed| closed.map_err(AppViewError::from));
        if let Err(e) = closed {
            tracing::warn!(error = %e, "search writer not closed cleanly");
        }
    }

    /// Keeps the search index current until `cancel` (see the module documentation).
    pub async fn run_search(self: Arc<Self>, cancel: CancellationToken) {
        if self.search.cursor() != self.index.cursor().ok() {
            let started = std::time::Instant::now();
            match self.rebuild_search().await {
                Ok(n) => tracing::info!(
                    repositories = n,
                    ms = started.elapsed().as_millis(),
                    "search index rebuilt"
                ),
                Err(e) => tracing::error!(error = %e, "search index rebuild failed"),
            }
        }
        // Whether the writer may be open: it is closed after `WRITER_IDLE` without changes.
        let mut writing = true;
        loop {
            tokio::select! {
                () = self.search_wake.notified() => {}
                () = tokio::time::sleep(WRITER_IDLE), if writing => {
                    writing = false;
                    self.close_search_writer().await;
                    continue;
                }
                () = cancel.cancelled() => {
                    if let Err(e) = self.settle_search().await {
                        tracing::warn!(error = %e, "search index not settled at shutdown; the next start rebuilds it");
                    }
                    self.close_search_writer().await;
                    return;
                }
            }
            writing = true;
            tokio::time::sleep(GATHER).await;
            if let Err(e) = self.refresh_search().await {
                tracing::error!(error = %e, "search index update failed; rebuilding");
                if let Err(e) = self.rebuild_search().await {
                    tracing::error!(error = %e, "search index rebuild failed");
                }
            }
        }
    }
}
