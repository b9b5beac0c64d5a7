//! Catching up with a followed user's records from their verified repository export
//! (`com.atproto.sync.getRepo`), when their host's events cannot be followed one by one: a
//! host met for the first time, an `#info OutdatedCursor`, a `#sync` (see `follow.rs`).

use std::collections::BTreeMap;

use super::super::remote::MIRRORED;
use super::super::{AppView, AppViewError};
use crate::atproto::Did;
use crate::atproto::sync::verified_records;
use crate::pds::store::MirrorWrite;

/// A user's records from a repository export, by (collection, record key).
type Exported = BTreeMap<(String, String), serde_json::Value>;

/// Records of the followed collections taken from one repository export, at most.
const MAX_CAUGHT_UP: usize = 10_000;

impl AppView {
    /// Catches up with every known user of `endpoint` (a host met for the first time, or whose
    /// events we missed).
    pub(super) async fn catch_up_host(&self, endpoint: &str) -> Result<(), AppViewError> {
        let mut users = Vec::new();
        self.each_remote_user(|did, pds| {
            if pds == endpoint {
                users.push(did.clone());
            }
        })?;
        for did in users {
            // One user's catch-up failing (their account gone, say) does not stop the others.
            if let Err(e) = self.catch_up_user(&did, endpoint).await {
                tracing::warn!(%did, %endpoint, error = %e, "could not catch up with a remote user's records");
            }
        }
        Ok(())
    }

    /// Makes the copy of `did`'s ATCR records what their PDS has now, from their verified
    /// repository (`getRepo`, checked like a commit: signed by their key, every block hashing
    /// to its CID, no older than the last commit taken in). Nothing else is taken: a host's
    /// unsigned answers (`listRecords`) would let it rewrite the user's tags.
    pub(super) async fn catch_up_user(
        &self,
        did: &Did,
        endpoint: &str,
    ) -> Result<(), AppViewError> {
        if !self.has_mirrored_records(did)? || !self.hosts_now(did, endpoint).await? {
            return Ok(());
        }
        // One catch-up at a time, node-wide (they hold a repository in memory); and none while
        // a push or delete of the same user is written (its records would be undone).
        let _one = self.catching_up.lock().await;
        let _serial = self.lock_owner(did).await;
        // Their PDS says whether their account is active (an `#account` event may have been
        // missed): a repository it will not export for that is hidden here, one it exports
        // (and that verifies) shown.
        let car = match self.pds.export_remote_repo(endpoint, did).await {
            Ok(car) => car,
            Err(e) => {
                if let Some(status) = e.status {
                    self.set_account_status(did, Some(status.to_owned()))
                        .await?;
                }
                return Err(AppViewError::Data(format!("no repository of {did}: {e}")));
            }
        };
        let (rev, records) = self
            .verified_export(did, car)
            .await
            .map_err(|e| AppViewError::Data(format!("no verified repository of {did}: {e}")))?;
        self.set_account_status(did, None).await?;
        if let Some(last) = self.pds.store().remote_rev(did)?
            && last.as_str() > rev.as_str()
        {
            tracing::warn!(%did, %rev, %last, "refused a remote repository older than the last commit taken in");
            return Ok(());
        }
        let writes = self.reconcile(did, records)?;
        tracing::info!(%did, records = writes.len(), "caught up with a remote user's records (verified repository)");
        self.take_in_remote(did, writes).await?;
        self.pds.store().set_remote_rev(did, &rev).await?;
        Ok(())
    }

    /// Whether `endpoint` is `did`'s PDS now, as their DID document says (resolved, or from
    /// the cache): what a host says without a signature of the user (`#account`, `#sync`) is
    /// taken only from it, not from a host they left.
    pub(super) async fn hosts_now(&self, did: &Did, endpoint: &str) -> Result<bool, AppViewError> {
        let identity = self
            .pds
            .identities
            .resolve(&self.pds, did.as_str())
            .await
            .map_err(|e| AppViewError::Data(format!("cannot resolve {did}: {e}")))?;
        if identity.pds != endpoint {
            tracing::info!(%did, %endpoint, pds = %identity.pds, "ignored an event from a host that is not the user's PDS now");
        }
        Ok(identity.pds == endpoint)
    }

    /// `did`'s ATCR records from their repository export `car`, verified against their key.
    async fn verified_export(
        &self,
        did: &Did,
        car: bytes::Bytes,
    ) -> Result<(String, Exported), String> {
        let key = self
            .keys
            .signing_key(&self.pds, did, "atproto", false)
            .await?;
        let owner = did.clone();
        let (rev, records) = tokio::task::spawn_blocking(move || {
            verified_records(&car, &owner, &key, &MIRRORED, MAX_CAUGHT_UP)
        })
        .await
        .map_err(|e| e.to_string())??;
        let records = records
            .into_iter()
            .map(|(c, rkey, r)| ((c, rkey), r.to_json()))
            .collect();
        Ok((rev, records))
    }

    /// The writes that make the copy of `did`'s records equal `records` (complete).
    fn reconcile(
        &self,
        did: &Did,
        mut records: Exported,
    ) -> Result<Vec<MirrorWrite>, AppViewError> {
        let mut writes = Vec::new();
        for collection in MIRRORED {
            for rkey in self.mirrored_keys(did, collection)? {
                if !records.contains_key(&(collection.to_owned(), rkey.clone())) {
                    writes.push((collection.to_owned(), rkey, None));
                }
            }
        }
        // Manifests before the tags that point at them (MIRRORED's order).
        for collection in MIRRORED {
            let keys: Vec<(String, String)> = records
                .keys()
                .filter(|(c, _)| c == collection)
                .cloned()
                .collect();
            for k in keys {
                if let Some(r) = records.remove(&k) {
                    writes.push((k.0, k.1, Some(r)));
                }
            }
        }
        Ok(writes)
    }

    /// The record keys of one collection of `did` in the copy here.
    fn mirrored_keys(&self, did: &Did, collection: &str) -> Result<Vec<String>, AppViewError> {
        let mut keys = Vec::new();
        loop {
            let page = self.pds.store().remote_records(
                did,
                collection,
                keys.last().map(String::as_str),
                500,
            )?;
            if page.is_empty() {
                return Ok(keys);
            }
            keys.extend(page.into_iter().map(|(rkey, _)| rkey));
        }
    }
}
