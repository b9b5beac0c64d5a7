//! Repositories of users of other PDSes: their pushes write the `io.atcr.manifest` and
//! `io.atcr.tag` records into *their* repository (`uploadBlob` of the manifest, then one
//! `applyWrites`, with the session their login opened), and the index takes in what was
//! written once their PDS acknowledged it. What this node wrote is mirrored in `pds.redb`, and
//! a rebuild of the index reads that mirror (see `docs/federation.md`).

use bytes::Bytes;
use serde_json::{Value as Json, json};

use super::indexer::RebuildStats;
use super::records::{self, MANIFEST_COLLECTION, PAGE_COLLECTION, STAR_COLLECTION, TAG_COLLECTION};
use super::{AppView, AppViewError, Located, Pushed};
use crate::appview::index::{IndexChange, RecordAddr};
use crate::atproto::{Cid, Datetime, Did, Value};
use crate::oci::name::Tag;
use crate::pds::store::MirrorWrite;

/// The collections of remote users' repositories mirrored here and followed: those written
/// for them (manifests before the tags that point at them, stars), and their repository pages
/// (`io.atcr.repo.page`: the README they write on their PDS with any client).
pub(super) const MIRRORED: [&str; 4] = [
    MANIFEST_COLLECTION,
    TAG_COLLECTION,
    STAR_COLLECTION,
    PAGE_COLLECTION,
];

impl AppView {
    /// Whether `owner` is a user of another PDS this node has met (not one of its accounts).
    pub fn is_remote(&self, owner: &Did) -> Result<bool, AppViewError> {
        Ok(self.pds.accounts.get(owner)?.is_none()
            && self.pds.store().remote_user(owner)?.is_some())
    }

    /// [`AppView::publish`] for a remote owner: the manifest uploaded as a blob of their
    /// repository, its record and the tag's in one `applyWrites` on their PDS; then mirrored
    /// and indexed. Records already there (the same manifest pushed again, the tag already
    /// pointing at it) are not written again.
    pub(super) async fn publish_remote(
        &self,
        loc: &Located,
        pushed: Pushed<'_>,
        tag: Option<&Tag>,
    ) -> Result<(), AppViewError> {
        let did = &loc.owner;
        // One push of an owner at a time: two would both find a tag record missing and both
        // create it, and their PDS would refuse the second.
        let _serial = self.lock_owner(did).await;
        let now = Datetime::now();
        let rkey = records::manifest_rkey(&loc.path, pushed.digest);
        let mut writes = Vec::new();
        let mut records = Vec::new();
        let existing = self
            .remote_record(did, MANIFEST_COLLECTION, rkey.as_str())
            .await?;
        let manifest = if let Some(existing) = existing {
            existing
        } else {
            let record = records::manifest_record(&records::ManifestRecordInput {
                path: &loc.path,
                digest: pushed.digest,
                media_type: pushed.media_type,
                bytes: pushed.bytes,
                hold: pushed.hold,
                created_at: &now,
            });
            self.validate(MANIFEST_COLLECTION, &record)?;
            self.upload_manifest(did, pushed.bytes, pushed.media_type)
                .await?;
            let op = write_op("create", MANIFEST_COLLECTION, rkey.as_str(), &record);
            writes.push(op);
            record
        };
        records.push((MANIFEST_COLLECTION, rkey.to_string(), manifest));
        if let Some(tag) = tag {
            let uri = records::at_uri(did, MANIFEST_COLLECTION, &rkey);
            let tag_key = records::tag_rkey(&loc.path, tag.as_str());
            let current = self
                .remote_record(did, TAG_COLLECTION, tag_key.as_str())
                .await?;
            let record = match current {
                Some(r) if r["manifest"].as_str() == Some(uri.as_str()) => r,
                current => {
                    let record =
                        records::tag_record(&loc.path, tag.as_str(), &uri, pushed.media_type, &now);
                    self.validate(TAG_COLLECTION, &record)?;
                    let op = if current.is_some() {
                        "update"
                    } else {
                        "create"
                    };
                    writes.push(write_op(op, TAG_COLLECTION, tag_key.as_str(), &record));
                    record
                }
            };
            records.push((TAG_COLLECTION, tag_key.to_string(), record));
        }
        self.apply_remote_writes(did, writes).await?;
        let mirrored = records
            .into_iter()
            .map(|(c, rkey, record)| (c.to_owned(), rkey, Some(record)))
            .collect();
        self.take_in_remote(did, mirrored).await
    }

    /// [`AppView::set_star`] for a remote user: the star record created in (or deleted from)
    /// their repository on their PDS, then mirrored and indexed. `current` is their star's
    /// record key, if the index has one.
    pub(super) async fn set_star_remote(
        &self,
        user: &Did,
        loc: &Located,
        on: bool,
        current: Option<String>,
    ) -> Result<(), AppViewError> {
        match (on, current) {
            (true, None) => {
                let record = records::star_record(&loc.owner, &loc.path);
                self.validate(STAR_COLLECTION, &record)?;
                let body = json!({
                    "repo": user.as_str(),
                    "collection": STAR_COLLECTION,
                    "record": record,
                });
                let answer = self
                    .pds
                    .remote_call(
                        user,
                        "com.atproto.repo.createRecord",
                        Some(json_body(&body)),
                    )
                    .await?;
                let rkey = answer["uri"]
                    .as_str()
                    .and_then(|u| u.rsplit('/').next())
                    .ok_or_else(|| AppViewError::Data("the PDS answered no record URI".into()))?
                    .to_owned();
                let star = vec![(STAR_COLLECTION.to_owned(), rkey, Some(record))];
                self.take_in_remote(user, star).await
            }
            (false, Some(rkey)) => {
                self.delete_remote(user, vec![(STAR_COLLECTION, rkey)])
                    .await
            }
            _ => Ok(()),
        }
    }

    /// Deletes records of a remote owner's repository on their PDS (one `applyWrites`), then
    /// from the mirror and the index. Records their PDS no longer has are only forgotten here.
    pub(super) async fn delete_remote(
        &self,
        did: &Did,
        deletes: Vec<(&'static str, String)>,
    ) -> Result<(), AppViewError> {
        let mut writes = Vec::new();
        for (collection, rkey) in &deletes {
            if self.remote_record(did, collection, rkey).await?.is_some() {
                writes.push(json!({
                    "$type": "com.atproto.repo.applyWrites#delete",
                    "collection": collection,
                    "rkey": rkey,
                }));
            }
        }
        self.apply_remote_writes(did, writes).await?;
        let gone = deletes
            .into_iter()
            .map(|(c, rkey)| (c.to_owned(), rkey, None))
            .collect();
        self.take_in_remote(did, gone).await
    }

    /// `writes` (`applyWrites` operations) as one commit in `did`'s repository on their PDS.
    async fn apply_remote_writes(&self, did: &Did, writes: Vec<Json>) -> Result<(), AppViewError> {
        if writes.is_empty() {
            return Ok(());
        }
        let count = writes.len();
        let body = json!({ "repo": did.as_str(), "writes": writes });
        self.pds
            .remote_call(did, "com.atproto.repo.applyWrites", Some(json_body(&body)))
            .await?;
        tracing::info!(%did, writes = count, "records written to the user's PDS");
        Ok(())
    }

    /// Applies record changes of `did`'s repository to the mirror, then to the index.
    pub(super) async fn take_in_remote(
        &self,
        did: &Did,
        writes: Vec<MirrorWrite>,
    ) -> Result<(), AppViewError> {
        self.pds.store().mirror_remote(did, writes.clone()).await?;
        let mut changes = Vec::with_capacity(writes.len());
        let hidden = self.hidden(did.as_str())?;
        for (collection, rkey, record) in writes {
            let addr = RecordAddr {
                did: did.as_str().to_owned(),
                collection,
                rkey,
            };
            changes.push(
                self.remote_change(did, addr, record.as_ref(), hidden)
                    .await?,
            );
        }
        let touched = self.index.write(move |ix| ix.apply(&changes, None)).await?;
        self.mark_for_search(touched);
        Ok(())
    }

    /// What a remote user's record (`None`: deleted) makes of the index. The stars of a user
    /// hidden here count for nothing: kept in the copy, out of the index until they are shown.
    async fn remote_change(
        &self,
        did: &Did,
        addr: RecordAddr,
        record: Option<&Json>,
        hidden: bool,
    ) -> Result<IndexChange, AppViewError> {
        match record {
            Some(_) if hidden && addr.collection == STAR_COLLECTION => {
                Ok(IndexChange::DeleteRecord(addr))
            }
            Some(record) => self.change_of_record(did, addr, record).await,
            None => Ok(IndexChange::DeleteRecord(addr)),
        }
    }

    /// Takes `did`'s copy of `collection` into the index, a page at a time (their stars left
    /// out while they are hidden). With `stats` (a rebuild, into an empty index) the records are
    /// counted and deletes skipped; else the repositories touched are marked for search.
    pub(super) async fn index_mirrored(
        &self,
        did: &Did,
        collection: &str,
        mut stats: Option<&mut RebuildStats>,
    ) -> Result<(), AppViewError> {
        let hidden = self.hidden(did.as_str())?;
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .pds
                .store()
                .remote_records(did, collection, cursor.as_deref(), 500)?;
            let Some((last, _)) = page.last() else {
                return Ok(());
            };
            cursor = Some(last.clone());
            let mut changes = Vec::with_capacity(page.len());
            for (rkey, record) in page {
                let addr = RecordAddr {
                    did: did.as_str().to_owned(),
                    collection: collection.to_owned(),
                    rkey,
                };
                let change = self.remote_change(did, addr, Some(&record), hidden).await?;
                match stats.as_deref_mut() {
                    Some(stats) => stats.count(change, &mut changes),
                    None => changes.push(change),
                }
            }
            let touched = self.index.write(move |ix| ix.apply(&changes, None)).await?;
            if stats.is_none() {
                self.mark_for_search(touched);
            }
        }
    }

    /// Puts the mirrored records of every remote user into the index (a rebuild), at once and
    /// without their PDSes; and forgets where their hosts' firehoses were, so that the node,
    /// when it next follows them, fetches their repositories again (verified exports, see
    /// `follow/catch_up.rs`) and the copy becomes what their PDSes hold.
    pub(super) async fn rebuild_remote(
        &self,
        stats: &mut RebuildStats,
    ) -> Result<(), AppViewError> {
        self.pds.store().clear_remote_cursors().await?;
        let mut users = Vec::new();
        self.each_remote_user(|did, _| users.push(did.clone()))?;
        for did in users {
            stats.repos += 1;
            for collection in MIRRORED {
                self.index_mirrored(&did, collection, Some(stats)).await?;
            }
        }
        Ok(())
    }

    /// A record of a remote user's repository, as their PDS has it now.
    async fn remote_record(
        &self,
        did: &Did,
        collection: &str,
        rkey: &str,
    ) -> Result<Option<Json>, AppViewError> {
        Ok(self
            .pds
            .remote_record(did, collection, rkey)
            .await?
            .map(|answer| answer["value"].clone())
            .filter(Json::is_object))
    }

    /// Uploads a manifest as a blob of `did`'s repository, and checks that their PDS filed it
    /// under the CID its record names.
    async fn upload_manifest(
        &self,
        did: &Did,
        bytes: &Bytes,
        media_type: &str,
    ) -> Result<(), AppViewError> {
        let answer = self
            .pds
            .remote_call(
                did,
                "com.atproto.repo.uploadBlob",
                Some((media_type, bytes.clone())),
            )
            .await?;
        let expected = Cid::for_raw(bytes).to_string();
        if answer["blob"]["ref"]["$link"].as_str() != Some(expected.as_str()) {
            return Err(AppViewError::Data(format!(
                "the PDS of {did} filed the manifest under another CID than {expected}"
            )));
        }
        Ok(())
    }

    /// Checks a record against its lexicon, as the embedded PDS does for local users (a
    /// remote PDS does not know ATCR's lexicons).
    fn validate(&self, collection: &str, record: &Json) -> Result<(), AppViewError> {
        let invalid = |reason: String| AppViewError::RecordInvalid {
            message: "manifest record is invalid",
            reason,
        };
        let value = Value::from_json_object(record).map_err(|e| invalid(e.to_string()))?;
        self.pds
            .repos
            .catalog()
            .validate_record(&collection.parse()?, &value)
            .map_err(|e| invalid(e.to_string()))
    }
}

/// One `applyWrites` operation (`create`, `update`).
fn write_op(op: &str, collection: &str, rkey: &str, record: &Json) -> Json {
    json!({
        "$type": format!("com.atproto.repo.applyWrites#{op}"),
        "collection": collection,
        "rkey": rkey,
        "value": record,
    })
}

fn json_body(body: &Json) -> (&'static str, Bytes) {
    ("application/json", Bytes::from(body.to_string()))
}
