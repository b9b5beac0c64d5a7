//! Rebuilding the index from the repositories and blob storage alone.

use super::{INDEXED, RebuildStats, RecordOp};
use crate::appview::index::RecordAddr;
use crate::appview::layers::LAYER_COLLECTION;
use crate::appview::{AppView, AppViewError};
use crate::atproto::Did;

impl AppView {
    /// Recreates the index from the repositories and blob storage: empties what records put
    /// in, applies every manifest and tag record of every repository, then the events that
    /// came after.
    pub async fn rebuild(&self) -> Result<RebuildStats, AppViewError> {
        let stats = self.rebuild_records().await?;
        self.catch_up_and_sync().await?;
        Ok(stats)
    }

    /// Rebuilds the index from the repositories when the event log no longer holds the events
    /// after its cursor (a lost or restored `index.redb`, the log pruned since). While the node
    /// runs this cannot happen (the log is never pruned past the index), so it is checked only
    /// where an index is taken up: at start and after a rebuild.
    pub(super) async fn rebuild_if_the_log_was_pruned_past(&self) -> Result<(), AppViewError> {
        let cursor = self.index.cursor()?;
        let store = self.pds.store().clone();
        let oldest = tokio::task::spawn_blocking(move || store.first_seq())
            .await
            .map_err(|e| AppViewError::Data(e.to_string()))??;
        if let Some(oldest) = oldest.filter(|o| *o > cursor.saturating_add(1)) {
            tracing::warn!(
                cursor,
                oldest,
                "the event log no longer holds what the index needs; rebuilding it from the \
                 repositories"
            );
            self.rebuild_records().await?;
        }
        Ok(())
    }

    /// The part of [`AppView::rebuild`] that reads the repositories: the index is then at the
    /// event the log had when it started, and catching up applies what came after.
    ///
    /// The node's layer records come first: the manifests they vouch for count whatever their
    /// owner's quota (see [`IndexChange::PutManifest`]), as they did when pushed.
    async fn rebuild_records(&self) -> Result<RebuildStats, AppViewError> {
        let store = self.pds.store().clone();
        let seq = store.last_seq()?;
        self.index.clear_derived(seq)?;
        let mut stats = RebuildStats::default();
        let node = self.pds.node_did.clone();
        self.rebuild_collection(&node, LAYER_COLLECTION, &mut stats)
            .await?;
        let mut after: Option<String> = None;
        loop {
            let repos = store.list_repos(after.as_deref(), 100)?;
            let Some((last, _)) = repos.last() else { break };
            after = Some(last.as_str().to_owned());
            for (did, _) in repos {
                stats.repos += 1;
                for collection in INDEXED.into_iter().filter(|c| *c != LAYER_COLLECTION) {
                    self.rebuild_collection(&did, collection, &mut stats)
                        .await?;
                }
            }
        }
        self.rebuild_remote(&mut stats).await?;
        Ok(stats)
    }

    /// Applies every record of one collection of `did`'s repository (a rebuild).
    async fn rebuild_collection(
        &self,
        did: &Did,
        collection: &str,
        stats: &mut RebuildStats,
    ) -> Result<(), AppViewError> {
        let store = self.pds.store();
        let mut cursor: Option<String> = None;
        loop {
            let page = store.list_records(did, collection, cursor.as_deref(), 500, false)?;
            let Some((last, _)) = page.last() else {
                return Ok(());
            };
            cursor = Some(last.clone());
            let mut changes = Vec::with_capacity(page.len());
            for (rkey, cid) in page {
                let addr = RecordAddr {
                    did: did.as_str().to_owned(),
                    collection: collection.to_owned(),
                    rkey,
                };
                let change = self.change_of(
                    did,
                    RecordOp {
                        addr,
                        cid: Some(cid),
                    },
                );
                stats.count(change.await?, &mut changes);
            }
            self.index.write(move |ix| ix.apply(&changes, None)).await?;
        }
    }
}
