//! The registry on the AT Protocol: image names resolved to owners, pushes written as signed
//! `io.atcr.manifest`/`io.atcr.tag` records in the owner's repository, and the registry index
//! derived from those records through the PDS event log (see `indexer`).
//!
//! Owns what is derived from records (`index/`: tables, stars, READMEs, summaries) and answers in
//! [`AppViewError`]. Imports `pds`, `blobstore`, `search`, `oci` and `atproto`; never
//! `registry`, `auth`, `web` or `server`.

mod error;
mod follow;
pub mod gc;
pub mod index;
mod indexer;
pub mod layers;
pub mod quota;
pub mod records;
mod remote;
pub mod retention;
pub mod search;
pub mod summary;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use error::AppViewError;
pub use indexer::RebuildStats;

use crate::appview::index::{Index, RepoKey};
use crate::atproto::{BlockStore, Datetime, Did, Nsid, Value};
use crate::blobstore::{BlobStore, Digest};
use crate::oci::name::{RepoName, Tag};
use crate::pds::Pds;
use crate::pds::repo::{RepoError, Validation, WriteOp};
use crate::pds::store::BlobMeta;
use crate::search::Search;
use records::{MANIFEST_COLLECTION, STAR_COLLECTION, TAG_COLLECTION};

/// How long a remote user's push may take to write its records to their PDS (see
/// [`AppView::publish`]).
const REMOTE_PUBLISH_WITHIN: Duration = Duration::from_secs(25);

/// How long a push waits for the index to take in its commit before answering 500.
const INDEX_WAIT: Duration = Duration::from_secs(30);

/// A repository name resolved to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The owner's DID.
    pub owner: Did,
    /// The repository below the owner (`app`, `tools/cli`): the records' `repository`.
    pub path: String,
    /// The index key: `<owner did>/<path>`, stable across handle changes.
    pub key: RepoKey,
}

/// Names, records and the derived index over one PDS.
pub struct AppView {
    pds: Arc<Pds>,
    index: Index,
    blobs: BlobStore,
    /// The last event sequence number the index has applied.
    indexed: tokio::sync::watch::Sender<u64>,
    search: Arc<Search>,
    /// Repositories changed since the search index last took them in (see `search`).
    search_dirty: std::sync::Mutex<std::collections::BTreeSet<RepoKey>>,
    search_wake: tokio::sync::Notify,
    /// One lock per repository owner, held by deletes and stars from reading the index until
    /// the index has their commit: two of them at once would both read the same record and
    /// the slower one find it gone.
    owner_locks: std::sync::Mutex<std::collections::HashMap<Did, Arc<tokio::sync::Mutex<()>>>>,
    /// The blob collector.
    gc: gc::Gc,
    /// `quota.default` in bytes (0: no limit): see `quota`.
    default_quota: std::sync::atomic::AtomicU64,
    /// Remote users' signing keys, for checking their commits (see `follow`).
    keys: crate::pds::did_resolver::DidResolver,
    /// Held by the one catch-up with a remote user's records running (see `follow`).
    catching_up: tokio::sync::Mutex<()>,
    /// Whom the operator vouches for (the hold's crew), set by the role that knows: their
    /// PDS hosts are followed first (see `follow`). Unset: nobody.
    vouched: std::sync::OnceLock<Vouched>,
}

/// Whether the operator vouches for a user (see [`AppView::vouch_for`]).
pub type Vouched = Box<dyn Fn(&Did) -> bool + Send + Sync>;

impl std::fmt::Debug for AppView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppView").finish_non_exhaustive()
    }
}

impl AppView {
    pub fn new(pds: Arc<Pds>, index: Index, search: Arc<Search>) -> Result<AppView, AppViewError> {
        let cursor = index.cursor()?;
        Ok(AppView {
            gc: gc::Gc::new(index.clone(), pds.blobs.clone()).with_pds(pds.store().clone()),
            blobs: pds.blobs.clone(),
            pds,
            index,
            indexed: tokio::sync::watch::channel(cursor).0,
            search,
            search_dirty: std::sync::Mutex::default(),
            search_wake: tokio::sync::Notify::new(),
            owner_locks: std::sync::Mutex::default(),
            default_quota: std::sync::atomic::AtomicU64::new(0),
            keys: crate::pds::did_resolver::DidResolver::default(),
            catching_up: tokio::sync::Mutex::new(()),
            vouched: std::sync::OnceLock::new(),
        })
    }

    /// Sets whom the operator vouches for (the hold's crew); once.
    pub fn vouch_for(&self, vouched: Vouched) {
        let _ = self.vouched.set(vouched);
    }

    /// Whether the operator vouches for `did`.
    fn vouches_for(&self, did: &Did) -> bool {
        self.vouched.get().is_some_and(|v| v(did))
    }

    /// The blob collector.
    #[must_use]
    pub fn gc(&self) -> &gc::Gc {
        &self.gc
    }

    /// The search index.
    #[must_use]
    pub fn search(&self) -> &Search {
        &self.search
    }

    #[must_use]
    pub fn pds(&self) -> &Arc<Pds> {
        &self.pds
    }

    #[must_use]
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The DID of a local account named by DID, handle or short name, or of a user of another
    /// PDS this node has met (named by DID or handle).
    pub fn owner(&self, owner: &str) -> Result<Option<Did>, AppViewError> {
        let accounts = &self.pds.accounts;
        let did = if owner.starts_with("did:") {
            owner.parse::<Did>().ok()
        } else if owner.contains('.') {
            accounts.resolve_handle(owner)?
        } else {
            match self.pds.handle_for(owner) {
                Ok(handle) => accounts.resolve_handle(&handle)?,
                Err(_) => None,
            }
        };
        let store = self.pds.store();
        let did = match did {
            None if owner.contains('.') && !owner.starts_with("did:") => {
                store.remote_did_of_handle(&owner.to_ascii_lowercase())?
            }
            did => did,
        };
        match did {
            Some(did) if accounts.get(&did)?.is_some() => Ok(Some(did)),
            Some(did) if store.remote_user(&did)?.is_some() && !self.hidden(did.as_str())? => {
                Ok(Some(did))
            }
            _ => Ok(None),
        }
    }

    /// Whether `owner`'s repositories are hidden: a user of another PDS whose account there is
    /// not active (taken down, deactivated), as their PDS announced. Their records stay
    /// indexed and their blobs kept, so they come back as they were if the account does.
    pub fn hidden(&self, owner: &str) -> Result<bool, AppViewError> {
        let Ok(did) = owner.parse::<Did>() else {
            return Ok(false);
        };
        Ok(self.pds.store().remote_inactive(&did)?.is_some())
    }

    /// Resolves `<owner>/<repository…>`; an unknown owner is `NAME_UNKNOWN`.
    pub fn locate(&self, name: &RepoName) -> Result<Located, AppViewError> {
        let Some((owner, path)) = name.as_str().split_once('/') else {
            return Err(AppViewError::NameInvalid(name.clone()));
        };
        let owner = self
            .owner(owner)?
            .ok_or_else(|| AppViewError::NameUnknown(name.clone()))?;
        Ok(Located {
            key: RepoKey::new(&owner, path),
            owner,
            path: path.to_owned(),
        })
    }

    /// The name users write for an index key: the owner's short name, else the key itself.
    #[must_use]
    pub fn display_name(&self, key: &RepoKey) -> String {
        format!("{}/{}", self.display_owner(key.owner()), key.path())
    }

    /// How names show an owner DID: the local account's short name, else the DID itself.
    #[must_use]
    pub fn display_owner(&self, did: &str) -> String {
        let Ok(parsed) = did.parse::<Did>() else {
            return did.to_owned();
        };
        if let Some(account) = self.pds.accounts.get(&parsed).ok().flatten() {
            return account.name;
        }
        self.pds
            .store()
            .remote_user(&parsed)
            .ok()
            .flatten()
            .and_then(|u| u.handle)
            .unwrap_or_else(|| did.to_owned())
    }

    /// Publishes a pushed manifest (already stored in blob storage under its digest) and its
    /// tag as records in one commit, and returns once the index serves them. The hold's layer
    /// records for its blobs are committed first (see [`layers`]). Re-pushing a manifest or
    /// re-tagging with the same target writes nothing.
    pub async fn publish(
        &self,
        loc: &Located,
        pushed: Pushed<'_>,
        tag: Option<&Tag>,
    ) -> Result<(), AppViewError> {
        let Pushed {
            digest,
            media_type,
            bytes,
            blobs,
            hold,
        } = pushed;
        let store = self.pds.store();
        store
            .put_blob_meta(
                &loc.owner,
                crate::atproto::Cid::for_raw(bytes),
                BlobMeta {
                    mime_type: media_type.to_owned(),
                    size: bytes.len() as u64,
                    created: crate::pds::accounts::now_secs(),
                },
            )
            .await?;
        let now = Datetime::now();
        let rkey = records::manifest_rkey(&loc.path, digest);
        self.record_layers(loc, &rkey, blobs).await?;
        if self.is_remote(&loc.owner)? {
            // Bounded: the holds' layer records for these blobs are judged 60 s after their
            // notice at the earliest, and the registry publishes within 30 s of it. Cut short,
            // the push fails; records their PDS took meanwhile reach the index through its
            // firehose, and the client's retry finds them there.
            return tokio::time::timeout(
                REMOTE_PUBLISH_WITHIN,
                self.publish_remote(loc, pushed, tag),
            )
            .await
            .unwrap_or_else(|_| {
                Err(AppViewError::RemoteUnavailable(format!(
                    "the PDS of {} took longer than {} s to take the push's records",
                    loc.owner,
                    REMOTE_PUBLISH_WITHIN.as_secs()
                )))
            });
        }
        let mut writes = Vec::new();
        if store
            .record_cid(&loc.owner, MANIFEST_COLLECTION, rkey.as_str())?
            .is_none()
        {
            let record = records::manifest_record(&records::ManifestRecordInput {
                path: &loc.path,
                digest,
                media_type,
                bytes,
                hold,
                created_at: &now,
            });
            writes.push(update(MANIFEST_COLLECTION, rkey.clone(), &record)?);
        }
        if let Some(tag) = tag {
            let uri = records::at_uri(&loc.owner, MANIFEST_COLLECTION, &rkey);
            let tag_key = records::tag_rkey(&loc.path, tag.as_str());
            let current = self.record(&loc.owner, TAG_COLLECTION, tag_key.as_str())?;
            let same = current
                .as_ref()
                .and_then(|r| r.get("manifest"))
                .and_then(serde_json::Value::as_str)
                == Some(uri.as_str());
            if !same {
                let record = records::tag_record(&loc.path, tag.as_str(), &uri, media_type, &now);
                writes.push(update(TAG_COLLECTION, tag_key, &record)?);
            }
        }
        Ok(self.commit(&loc.owner, writes).await?)
    }

    /// Deletes the manifest records for `digest` in a repository and the tag records pointing
    /// at it, in one commit. Returns whether there was any: of two concurrent deletes, the one
    /// that finds the records gone answers `false` (the spec's 404), never an error.
    pub async fn unpublish_manifest(
        &self,
        loc: &Located,
        digest: &Digest,
    ) -> Result<bool, AppViewError> {
        let _serial = self.lock_owner(&loc.owner).await;
        for _ in 0..DELETE_ATTEMPTS {
            self.catch_up_now().await?;
            let manifests = self
                .index
                .records_for(&loc.owner, MANIFEST_COLLECTION, &loc.key)?;
            let rkeys: Vec<String> = manifests
                .into_iter()
                .filter(|(_, e)| e.digest.as_ref() == Some(digest))
                .map(|(rkey, _)| rkey)
                .collect();
            let mut writes: Vec<(&'static str, String)> = rkeys
                .iter()
                .map(|rkey| (MANIFEST_COLLECTION, rkey.clone()))
                .collect();
            if writes.is_empty() {
                return Ok(false);
            }
            for (rkey, entry) in self
                .index
                .records_for(&loc.owner, TAG_COLLECTION, &loc.key)?
            {
                let Some(tag) = entry.tag else { continue };
                if self.index.tag(&loc.key, &tag)?.as_ref() == Some(digest) {
                    writes.push((TAG_COLLECTION, rkey));
                }
            }
            if self.commit_deletes(&loc.owner, writes).await? {
                // The blobs stay linked until deleted or collected; the layer records that would
                // link them to these manifest records again go.
                self.withdraw_layers(loc, None, &rkeys).await?;
                return Ok(true);
            }
        }
        Err(AppViewError::Raced(loc.owner.clone()))
    }

    /// Deletes the tag records for `tag` in a repository. Returns whether there was any (a
    /// concurrent delete that got there first makes it `false`, not an error).
    pub async fn unpublish_tag(&self, loc: &Located, tag: &Tag) -> Result<bool, AppViewError> {
        let _serial = self.lock_owner(&loc.owner).await;
        for _ in 0..DELETE_ATTEMPTS {
            self.catch_up_now().await?;
            let writes: Vec<(&'static str, String)> = self
                .index
                .records_for(&loc.owner, TAG_COLLECTION, &loc.key)?
                .into_iter()
                .filter(|(_, e)| e.tag.as_deref() == Some(tag.as_str()))
                .map(|(rkey, _)| (TAG_COLLECTION, rkey))
                .collect();
            if writes.is_empty() {
                return Ok(false);
            }
            if self.commit_deletes(&loc.owner, writes).await? {
                return Ok(true);
            }
        }
        Err(AppViewError::Raced(loc.owner.clone()))
    }

    /// Stars (`on`) or unstars repository `loc` for `user`: writes or deletes an
    /// `io.atcr.sailor.star` record in the user's repository naming the repository's page
    /// record, and returns once the index counts it. Starring twice changes nothing, and nor
    /// does unstarring twice, even at the same moment.
    pub async fn set_star(&self, user: &Did, loc: &Located, on: bool) -> Result<(), AppViewError> {
        let _serial = self.lock_owner(user).await;
        self.catch_up_now().await?;
        let current = self.index.star_of(user, &loc.key)?;
        if self.is_remote(user)? {
            return self.set_star_remote(user, loc, on, current).await;
        }
        match (on, current) {
            (true, None) => {
                let record = records::star_record(&loc.owner, &loc.path);
                let writes = vec![WriteOp::Create {
                    collection: nsid(STAR_COLLECTION)?,
                    rkey: None,
                    value: Value::from_json_object(&record)
                        .map_err(|e| AppViewError::Data(e.to_string()))?,
                }];
                Ok(self.commit(user, writes).await?)
            }
            (false, Some(rkey)) => {
                // Gone already: another unstar got there first, which is what was asked.
                self.commit_deletes(user, vec![(STAR_COLLECTION, rkey)])
                    .await
                    .map(drop)
            }
            _ => Ok(self.commit(user, Vec::new()).await?),
        }
    }

    /// Holds `owner`'s lock (see `owner_locks`) until the guard is dropped.
    async fn lock_owner(&self, owner: &Did) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .owner_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(owner.clone())
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    /// [`AppView::commit`] of deletes (collection, record key) read from the index; `Ok(false)`
    /// when one of the records was deleted meanwhile (a concurrent request got there first):
    /// nothing was written, and the index has caught up with that other delete. A remote
    /// owner's records are deleted on their PDS.
    async fn commit_deletes(
        &self,
        owner: &Did,
        deletes: Vec<(&'static str, String)>,
    ) -> Result<bool, AppViewError> {
        if self.is_remote(owner)? {
            self.delete_remote(owner, deletes).await?;
            return Ok(true);
        }
        let writes = deletes
            .iter()
            .map(|(collection, rkey)| delete(collection, rkey))
            .collect::<Result<Vec<_>, _>>()?;
        match self.commit(owner, writes).await {
            Ok(()) => Ok(true),
            Err(CommitError::RecordGone) => {
                tracing::debug!(did = %owner, "record deleted concurrently");
                self.catch_up_now().await?;
                Ok(false)
            }
            Err(CommitError::Failed(e)) => Err(e),
        }
    }

    /// Applies `writes` as one commit (if any) and waits until the index has taken it in.
    async fn commit(&self, owner: &Did, writes: Vec<WriteOp>) -> Result<(), CommitError> {
        let seq = if writes.is_empty() {
            self.pds.store().last_seq().map_err(AppViewError::from)?
        } else {
            let (info, _) = self
                .pds
                .repos
                .apply_writes(owner, writes, None, Validation::Require)
                .await
                .map_err(|e| match e {
                    RepoError::RecordNotFound(_) => CommitError::RecordGone,
                    RepoError::InvalidRequest(reason) | RepoError::Data(reason) => {
                        CommitError::Failed(AppViewError::RecordInvalid {
                            message: "manifest record is invalid",
                            reason,
                        })
                    }
                    e => CommitError::Failed(e.into()),
                })?;
            info.seq
        };
        Ok(self.wait_indexed(seq).await?)
    }

    /// Waits until the index has applied every event committed so far: deletes find records
    /// through the index, including ones written through XRPC a moment ago.
    async fn catch_up_now(&self) -> Result<(), AppViewError> {
        let last = self.pds.store().last_seq()?;
        self.wait_indexed(last).await
    }

    /// Waits until the index has applied event `seq`.
    pub async fn wait_indexed(&self, seq: u64) -> Result<(), AppViewError> {
        let mut rx = self.indexed.subscribe();
        match tokio::time::timeout(INDEX_WAIT, rx.wait_for(|s| *s >= seq)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(AppViewError::IndexBehind {
                seq,
                secs: INDEX_WAIT.as_secs(),
            }),
        }
    }

    /// The hold `owner`'s profile (`io.atcr.sailor.profile`, key `self`) names as the one
    /// their blobs should go to, if any.
    pub fn profile_hold(&self, owner: &Did) -> Result<Option<Did>, AppViewError> {
        let profile = self.record(owner, "io.atcr.sailor.profile", "self")?;
        Ok(profile
            .as_ref()
            .and_then(|p| p.get("defaultHold"))
            .and_then(serde_json::Value::as_str)
            .and_then(|d| d.parse().ok()))
    }

    /// A record's value as JSON, if it exists.
    fn record(
        &self,
        did: &Did,
        collection: &str,
        rkey: &str,
    ) -> Result<Option<serde_json::Value>, AppViewError> {
        let store = self.pds.store();
        let Some(cid) = store.record_cid(did, collection, rkey)? else {
            return Ok(None);
        };
        let Some(bytes) = store.get(&cid)? else {
            return Ok(None);
        };
        Ok(Value::from_cbor(&bytes).ok().map(|v| v.to_json()))
    }
}

/// A pushed manifest, as [`AppView::publish`] takes it.
#[derive(Clone, Copy)]
pub struct Pushed<'a> {
    pub digest: &'a Digest,
    pub media_type: &'a str,
    pub bytes: &'a Bytes,
    /// Its blobs, each checked by the caller to be linked in the repository with its size.
    pub blobs: &'a [crate::oci::manifest::Descriptor],
    /// The record's `holdDid`: the hold that keeps the blobs.
    pub hold: &'a Did,
}

/// Why [`AppView::commit`] wrote nothing.
#[derive(Debug)]
enum CommitError {
    /// A record to delete is not there any more.
    RecordGone,
    Failed(AppViewError),
}

impl From<AppViewError> for CommitError {
    fn from(e: AppViewError) -> Self {
        CommitError::Failed(e)
    }
}

impl From<CommitError> for AppViewError {
    fn from(e: CommitError) -> Self {
        match e {
            CommitError::RecordGone => {
                AppViewError::Data("a record to delete was not found".into())
            }
            CommitError::Failed(e) => e,
        }
    }
}

/// How often a delete is tried again when records it read from the index vanish before its
/// commit: deletes through the registry take turns (`owner_locks`), but a record may still be
/// deleted through XRPC meanwhile.
const DELETE_ATTEMPTS: usize = 4;

fn nsid(collection: &str) -> Result<Nsid, AppViewError> {
    Ok(collection.parse()?)
}

fn update(
    collection: &str,
    rkey: crate::atproto::RecordKey,
    record: &serde_json::Value,
) -> Result<WriteOp, AppViewError> {
    let value = Value::from_json_object(record).map_err(|e| AppViewError::RecordInvalid {
        message: "manifest cannot be recorded",
        reason: e.to_string(),
    })?;
    Ok(WriteOp::Update {
        collection: nsid(collection)?,
        rkey,
        value,
        swap_record: None,
    })
}

fn delete(collection: &str, rkey: &str) -> Result<WriteOp, AppViewError> {
    Ok(WriteOp::Delete {
        collection: nsid(collection)?,
        rkey: rkey.parse()?,
        swap_record: None,
    })
}
