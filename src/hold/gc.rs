//! The hold's share of a garbage collection: layer records whose manifests are gone, and the
//! uploaded blobs no layer record vouches for any more.
//!
//! A blob uploaded through the hold's XRPC is recorded in the blob table of the hold's own
//! repository, which keeps it from the blob collector (an object the PDS accounts for is never
//! deleted). `notifyManifest` then writes a layer record per blob naming the manifest record
//! (`at://<user>/io.atcr.manifest/<rkey>`) that uses it. A collection of the hold:
//!
//! 1. reads the layer records and, for each manifest whose records are all older than the grace
//!    (and [`NOTICE_FLOOR_SECS`] at least), asks the manifest owner's PDS (from their DID
//!    document) whether the manifest record still exists, first under the key atcr derives,
//!    then, when that is missing, among all the owner's manifest records by repository and
//!    digest (another registry may key them otherwise). Only a definite `RecordNotFound` and a
//!    complete listing without it count as gone; a PDS that is down, slow or says
//!    anything else keeps the records (counted as unverified). The records of a gone manifest
//!    are deleted, each delete naming the CID judged, so a `notifyManifest` that rewrote one in
//!    the meantime (a push of the same manifest again) makes the delete fail and keeps it;
//! 2. under the lock `notifyManifest` holds while it vouches, reads the layer records again and
//!    releases (removes from the hold's blob table) the uploaded blobs older than the grace that
//!    no layer record names and no record of the hold's repository references. Only uploads
//!    recorded since the hold first started with this collection are released: older ones may
//!    be of pushes whose registry never notified (kept, not collected). The release
//!    re-checks each row in its write transaction: a blob uploaded again since keeps its row;
//! 3. leaves the objects to the blob collector: unknown to the PDS now, they are leftovers it
//!    takes up after the grace and deletes in a later run through its claims and pins, which
//!    uploads to the hold (`completeUpload`) and `notifyManifest` (which records a released blob
//!    again) take too.
//!
//! The only facts the decision rests on are the user's own PDS saying their manifest record is
//! gone, and the hold's own records: no caller can make the hold drop a blob another user's
//! manifest still uses.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use futures_util::StreamExt;
use serde::Serialize;

use super::layers::{LAYER, Layer, MANIFEST};
use super::{Hold, HoldError, nsid, uploads::raw_cid};
use crate::atproto::{Did, RecordKey};
use crate::blobstore::Digest;
use crate::http_client::get_json;
use crate::pds::repo::{RepoError, Validation, WriteOp};

/// Manifest records looked up at once.
const LOOKUPS_AT_ONCE: usize = 4;
/// Layer records deleted per commit.
const DELETE_BATCH: usize = 100;
/// Blob-table rows listed per page.
const BLOB_PAGE: usize = 1000;
/// How long one lookup of a manifest record may take.
const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Largest `getRecord` answer read (the answer is only looked at for its error name).
const MAX_ANSWER_BYTES: usize = 1 << 20;
/// Manifest records asked for per `listRecords` page, most pages read for one owner, and the
/// largest page read: an owner with more manifests than that is not judged (kept).
const LIST_PAGE: usize = 50;
const MAX_LIST_PAGES: usize = 100;
const MAX_LIST_BYTES: usize = 2 << 20;
/// Layer records younger than this are never judged, whatever the grace: the registry that
/// asked for them commits its manifest record only after their answer (and gives up when
/// [`super::remote::PUBLISH_WITHIN`] has passed), so a record judged before then could
/// be of a manifest about to exist.
pub const NOTICE_FLOOR_SECS: u64 = 60;
/// The store's meta entry: the time the hold first started with this collection. Uploads
/// recorded before it, by a version whose registries did not notify, are never released (see
/// step 2).
const RELEASE_SINCE: &str = "hold_release_since";

/// What a collection of the hold did (dry: would do).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct HoldCollection {
    /// Manifests of layer records older than the grace whose owner's PDS was asked.
    pub manifests_checked: u64,
    /// Of those, manifests their owner's PDS says are gone.
    pub manifests_gone: u64,
    /// Of those, manifests whose owner's PDS could not say (down, unknown DID): kept.
    pub manifests_unverified: u64,
    /// Layer records deleted.
    pub layers_removed: u64,
    /// Uploaded blobs released to the blob collector.
    pub blobs_released: u64,
    pub bytes_released: u64,
}

/// Whether a manifest record exists, as its owner's PDS says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Presence {
    Kept,
    Gone,
    Unknown(String),
}

/// The layer records of one manifest.
#[derive(Default)]
struct Group {
    owner: String,
    newest: u64,
    records: Vec<(String, crate::atproto::Cid)>,
    /// The manifest's repository and digest, when the records say them.
    manifest: Option<(String, String)>,
}

/// The manifests (repository, digest) of an owner's repository, or why they could not be read.
type Manifests = Result<HashSet<(String, String)>, String>;

impl Hold {
    /// Runs the hold's share of a collection at `now` (seconds) with `grace` (see the module).
    pub async fn collect(
        &self,
        now: u64,
        grace: u64,
        dry_run: bool,
    ) -> Result<HoldCollection, HoldError> {
        let mut report = HoldCollection::default();
        let mut groups: HashMap<String, Group> = HashMap::new();
        self.each_layer(|l: Layer| {
            let g = groups.entry(l.manifest).or_default();
            g.owner = l.user;
            // A record whose time cannot be read counts as written now: kept.
            g.newest = g.newest.max(l.created.unwrap_or(now));
            g.records.push((l.rkey, l.cid));
            if let (Some(r), Some(d)) = (l.repository, l.manifest_digest) {
                g.manifest = Some((r, d));
            }
        })?;
        let judged_after = grace.max(NOTICE_FLOOR_SECS);
        let stale: Vec<(String, Group)> = groups
            .into_iter()
            .filter(|(_, g)| now.saturating_sub(g.newest) >= judged_after)
            .collect();
        report.manifests_checked = stale.len() as u64;
        let answers: Vec<(Presence, Group)> = futures_util::stream::iter(stale)
            .map(|(uri, g)| async move { (self.presence(&uri, &g.owner).await, g) })
            .buffer_unordered(LOOKUPS_AT_ONCE)
            .collect()
            .await;
        let answers = self.confirm_gone(answers).await;
        let mut doomed = Vec::new();
        for (presence, group) in answers {
            match presence {
                Presence::Kept => {}
                Presence::Gone => {
                    report.manifests_gone += 1;
                    doomed.extend(group.records);
                }
                Presence::Unknown(why) => {
                    tracing::info!(owner = %group.owner, reason = %why, "hold collection: a manifest's owner could not say whether it exists; its layer records stay");
                    report.manifests_unverified += 1;
                }
            }
        }
        report.layers_removed = if dry_run {
            doomed.len() as u64
        } else {
            self.delete_layers(doomed).await?
        };
        self.release_unvouched(now, grace, dry_run, &mut report)
            .await?;
        if report != HoldCollection::default() {
            tracing::info!(?report, dry_run, "hold collection finished");
        }
        Ok(report)
    }

    /// Whether the manifest record `uri` of `owner` exists: read here when the repository is
    /// one of this node's, else asked of the PDS the owner's DID document names.
    async fn presence(&self, uri: &str, owner: &str) -> Presence {
        let Some((did, collection, rkey)) = split_uri(uri) else {
            return Presence::Unknown(format!("{uri} is not a record's AT-URI"));
        };
        let Ok(did) = did.parse::<Did>() else {
            return Presence::Unknown(format!("{uri} names no DID"));
        };
        if did.as_str() != owner {
            return Presence::Unknown(format!("{uri} is not {owner}'s"));
        }
        let store = self.pds.store();
        match store.head(&did) {
            Ok(Some(_)) => {
                return match store
                    .snapshot()
                    .and_then(|snap| snap.record(&did, collection, rkey))
                {
                    Ok(Some(_)) => Presence::Kept,
                    Ok(None) => Presence::Gone,
                    Err(e) => Presence::Unknown(e.to_string()),
                };
            }
            Ok(None) => {}
            Err(e) => return Presence::Unknown(e.to_string()),
        }
        let endpoint = match self.resolver.pds_endpoint(&self.pds, &did).await {
            Ok(e) => e,
            Err(e) => return Presence::Unknown(e),
        };
        // The owner's document names it: reached as a stranger's server.
        let target = match self.pds.settings.identity.reachable(&endpoint) {
            Ok(t) => t,
            Err(e) => return Presence::Unknown(e),
        };
        let path = crate::pds::remote_repo::get_record_path(&did, collection, rkey);
        match get_json(&target, &path, MAX_ANSWER_BYTES, LOOKUP_TIMEOUT).await {
            Ok((200, _)) => Presence::Kept,
            // The reference PDS answers 400, this one 404, both with the name.
            Ok((400 | 404, answer)) if answer["error"] == "RecordNotFound" => Presence::Gone,
            Ok((status, answer)) => Presence::Unknown(format!(
                "{endpoint} answered {status} {}",
                answer["error"].as_str().unwrap_or("")
            )),
            Err(e) => Presence::Unknown(format!("{endpoint}: {e:#}")),
        }
    }

    /// Notes, once, the time from which uploads may be released: those of an earlier version,
    /// whose registries may never have notified, are kept for good (see step 2).
    pub(super) fn note_release_start(&self) -> Result<(), HoldError> {
        let now = crate::pds::accounts::now_secs();
        self.pds.store().meta_or_insert(RELEASE_SINCE, now, false)?;
        Ok(())
    }

    /// Confirms each `Gone` answer with the owner's whole manifest collection: the record may
    /// live under another key than the one atcr derives (a registry of another make, e.g.
    /// `ATCR`'s Go `AppView`, keys its records its own way). Gone only when no manifest record of
    /// the owner has the repository and digest; unknown when the records do not say them or
    /// the collection cannot be read in full. Each owner's collection is read once.
    async fn confirm_gone(&self, answers: Vec<(Presence, Group)>) -> Vec<(Presence, Group)> {
        let owners: HashSet<String> = answers
            .iter()
            .filter(|(p, g)| *p == Presence::Gone && g.manifest.is_some())
            .map(|(_, g)| g.owner.clone())
            .collect();
        let listed: HashMap<String, Manifests> = futures_util::stream::iter(owners)
            .map(|owner| async move {
                let manifests = self.manifests_of(&owner).await;
                (owner, manifests)
            })
            .buffer_unordered(LOOKUPS_AT_ONCE)
            .collect()
            .await;
        answers
            .into_iter()
            .map(|(presence, group)| {
                if presence != Presence::Gone {
                    return (presence, group);
                }
                let presence = match (&group.manifest, listed.get(&group.owner)) {
                    (Some(m), Some(Ok(all))) if all.contains(m) => Presence::Kept,
                    (Some(_), Some(Ok(_))) => Presence::Gone,
                    (Some(_), Some(Err(e))) => Presence::Unknown(e.clone()),
                    _ => Presence::Unknown(
                        "its layer records, from an earlier version, name no manifest digest"
                            .to_owned(),
                    ),
                };
                (presence, group)
            })
            .collect()
    }

    /// The manifests of `owner`'s repository: read here when it is one of this node's, else
    /// listed from the PDS their DID document names, at most [`MAX_LIST_PAGES`] pages.
    async fn manifests_of(&self, owner: &str) -> Manifests {
        let did: Did = owner.parse().map_err(|_| format!("{owner} is not a DID"))?;
        let mut out = HashSet::new();
        let mut add = |value: &serde_json::Value| {
            if let (Some(r), Some(d)) = (value["repository"].as_str(), value["digest"].as_str()) {
                out.insert((r.to_owned(), d.to_owned()));
            }
        };
        let store = self.pds.store();
        if store.head(&did).map_err(|e| e.to_string())?.is_some() {
            let mut cursor: Option<String> = None;
            loop {
                let page = store
                    .list_records(&did, MANIFEST, cursor.as_deref(), BLOB_PAGE, false)
                    .map_err(|e| e.to_string())?;
                for (_, cid) in &page {
                    add(&self.record_json(cid).map_err(|e| e.to_string())?);
                }
                if page.len() < BLOB_PAGE {
                    return Ok(out);
                }
                cursor = page.last().map(|(k, _)| k.clone());
            }
        }
        let endpoint = self.resolver.pds_endpoint(&self.pds, &did).await?;
        let target = self.pds.settings.identity.reachable(&endpoint)?;
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let query = {
                let mut query = form_urlencoded::Serializer::new(String::new());
                query
                    .append_pair("repo", did.as_str())
                    .append_pair("collection", MANIFEST)
                    .append_pair("limit", &LIST_PAGE.to_string());
                if let Some(c) = &cursor {
                    query.append_pair("cursor", c);
                }
                query.finish()
            };
            let path = format!("/xrpc/com.atproto.repo.listRecords?{query}");
            let answer = match get_json(&target, &path, MAX_LIST_BYTES, LOOKUP_TIMEOUT).await {
                Ok((200, answer)) => answer,
                Ok((status, answer)) => {
                    return Err(format!(
                        "{endpoint} answered {status} {} to listRecords",
                        answer["error"].as_str().unwrap_or("")
                    ));
                }
                Err(e) => return Err(format!("{endpoint}: {e:#}")),
            };
            let records = answer["records"].as_array().map_or(&[][..], Vec::as_slice);
            for record in records {
                add(&record["value"]);
            }
            match answer["cursor"].as_str() {
                Some(c) if !records.is_empty() && cursor.as_deref() != Some(c) => {
                    cursor = Some(c.to_owned());
                }
                _ => return Ok(out),
            }
        }
        Err(format!(
            "{owner} has more than {} manifests",
            LIST_PAGE * MAX_LIST_PAGES
        ))
    }

    /// Deletes layer records, each only if it is still the record judged; returns how many
    /// went. A batch that fails because one changed is done one record at a time.
    async fn delete_layers(
        &self,
        doomed: Vec<(String, crate::atproto::Cid)>,
    ) -> Result<u64, HoldError> {
        let node = &self.pds.node_did;
        let delete = |(rkey, cid): &(String, crate::atproto::Cid)| {
            Some(WriteOp::Delete {
                collection: nsid(LAYER),
                rkey: rkey.parse::<RecordKey>().ok()?,
                swap_record: Some(Some(*cid)),
            })
        };
        let mut removed = 0;
        for batch in doomed.chunks(DELETE_BATCH) {
            let writes: Vec<WriteOp> = batch.iter().filter_map(delete).collect();
            let n = writes.len() as u64;
            let repos = &self.pds.repos;
            match repos
                .apply_writes(node, writes, None, Validation::Require)
                .await
            {
                Ok(_) => removed += n,
                Err(RepoError::InvalidSwap(_)) => {
                    for write in batch.iter().filter_map(delete) {
                        match repos
                            .apply_writes(node, vec![write], None, Validation::Require)
                            .await
                        {
                            Ok(_) => removed += 1,
                            // Written again by a notice since it was judged: it stays.
                            Err(RepoError::InvalidSwap(_)) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(removed)
    }

    /// The blobs layer records name.
    fn vouched_blobs(&self) -> Result<HashSet<crate::atproto::Cid>, HoldError> {
        let mut vouched = HashSet::new();
        self.each_layer(|l| {
            if let Ok(d) = l.digest.parse::<Digest>()
                && let Some(cid) = raw_cid(&d)
            {
                vouched.insert(cid);
            }
        })?;
        Ok(vouched)
    }

    /// Releases the uploaded blobs older than the grace that no layer record names (step 2 of
    /// the module).
    async fn release_unvouched(
        &self,
        now: u64,
        grace: u64,
        dry_run: bool,
        report: &mut HoldCollection,
    ) -> Result<(), HoldError> {
        let node = self.pds.node_did.clone();
        let store = self.pds.store().clone();
        // Noted when the hold first starts (`Hold::note_release_start`); if not, nothing is.
        let since = store.meta_or_insert(RELEASE_SINCE, now.saturating_add(1), true)?;
        let mut old = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = store.list_blobs(&node, cursor.as_deref(), BLOB_PAGE)?;
            for text in &page {
                let Ok(cid) = text.parse::<crate::atproto::Cid>() else {
                    continue;
                };
                if let Some(meta) = store.blob_meta(&node, &cid)?
                    && now.saturating_sub(meta.created) >= grace
                    && meta.created >= since
                {
                    old.push((cid, meta.created, meta.size));
                }
            }
            if page.len() < BLOB_PAGE {
                break;
            }
            cursor = page.last().cloned();
        }
        if old.is_empty() {
            return Ok(());
        }
        // Read outside the lock, so pushes are not held up by the read; read again under it
        // only when a vouch ended meanwhile (one that ended before `seen` was read is in the
        // first read, and none runs while the lock is held).
        let seen = self.vouches.load(Ordering::SeqCst);
        let mut vouched = self.vouched_blobs()?;
        let _turn = self.vouching.lock().await;
        if self.vouches.load(Ordering::SeqCst) != seen {
            vouched = self.vouched_blobs()?;
        }
        let sizes: HashMap<_, u64> = old.iter().map(|(c, _, s)| (*c, *s)).collect();
        let rows: Vec<_> = old
            .into_iter()
            .filter(|(c, _, _)| !vouched.contains(c))
            .map(|(c, t, _)| (c, t))
            .collect();
        let released =
            tokio::task::spawn_blocking(move || store.release_blobs(&node, &rows, dry_run))
                .await
                .map_err(|e| HoldError::Store(e.into()))??;
        report.blobs_released = released.len() as u64;
        report.bytes_released = released.iter().filter_map(|c| sizes.get(c)).sum();
        for cid in &released {
            tracing::debug!(%cid, dry_run, "hold blob released: no layer record names it");
        }
        Ok(())
    }
}

/// `at://<did>/<collection>/<rkey>` → its three parts.
fn split_uri(uri: &str) -> Option<(&str, &str, &str)> {
    let mut parts = uri.strip_prefix("at://")?.split('/');
    let out = (parts.next()?, parts.next()?, parts.next()?);
    parts.next().is_none().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_split_into_did_collection_and_key() {
        assert_eq!(
            split_uri("at://did:plc:abc/io.atcr.manifest/k1"),
            Some(("did:plc:abc", "io.atcr.manifest", "k1"))
        );
        assert_eq!(split_uri("at://did:plc:abc/io.atcr.manifest"), None);
        assert_eq!(split_uri("at://did:plc:abc/a/b/c"), None);
        assert_eq!(split_uri("https://x/y/z"), None);
    }
}
