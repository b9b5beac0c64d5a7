//! The hold: who may read and write the node's blob storage. See `docs/hold.md`.
//!
//! The rules are AT Protocol records in the node's own repository: `io.atcr.hold.captain` (key
//! `self`: owner, public, allowAllCrew, …) and one `io.atcr.hold.crew` record per member. Readers
//! match crew records on their `member` field, never on the record key, so records written by
//! other ATCR implementations (under TID keys, say) count too.
//!
//! [`Hold::allows`] runs on every registry token request: it answers from an in-memory snapshot
//! of the records, tagged with the node repository's revision and reloaded only when that
//! revision moved.
//!
//! Imports `pds` (and what lies below it) and `http`; never `appview`, `registry`, `web` or
//! `server`.

pub mod blobs;
mod gc;
mod layers;
mod permission;
pub mod remote;
pub mod service_auth;
pub mod trusted;
mod uploads;
pub mod xrpc;

pub use gc::HoldCollection;
pub use permission::{Permission, role_permissions};

use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::atproto::{BlockStore, Cid, Datetime, Did, Nsid, RecordKey, Value};
use crate::pds::did_resolver::DidResolver;
use crate::pds::repo::{RepoError, Validation, WriteOp, WriteResult};
use crate::pds::store::{RepoHead, StoreError};
use crate::pds::{Pds, PdsError};

/// The captain record's collection.
pub const CAPTAIN: &str = "io.atcr.hold.captain";
/// The crew records' collection.
pub const CREW: &str = "io.atcr.hold.crew";
/// The captain record's key.
const CAPTAIN_KEY: &str = "self";
/// Records per page when the snapshot is loaded.
const PAGE: usize = 500;
/// How often a write built on a snapshot is retried when another write moved the repository.
const WRITE_ATTEMPTS: usize = 3;

/// The captain record (`io.atcr.hold.captain`, key `self`): who owns the hold and its policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Captain {
    /// The owner may do everything.
    pub owner: Did,
    /// Anyone, anonymous callers included, may pull.
    pub public: bool,
    /// Any authenticated user may join the crew through `io.atcr.hold.requestCrew`.
    pub allow_all_crew: bool,
    /// Required by the lexicon; atcr never posts.
    #[serde(default)]
    pub enable_bluesky_posts: bool,
    pub deployed_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successor: Option<Did>,
}

/// One crew record (`io.atcr.hold.crew`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrewMember {
    pub member: Did,
    pub role: String,
    /// As written; strings other than the three [`Permission`]s grant nothing.
    pub permissions: Vec<String>,
    /// The record's key: the member DID for records atcr writes, anything for others.
    pub rkey: RecordKey,
    /// The record's CID.
    pub cid: Cid,
    pub added_at: String,
}

impl CrewMember {
    /// Whether the record grants `p`.
    #[must_use]
    pub fn has(&self, p: Permission) -> bool {
        self.permissions.iter().any(|s| s == p.as_str())
    }
}

/// The fields of a crew record atcr reads and writes.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CrewRecord {
    member: Did,
    role: String,
    permissions: Vec<String>,
    added_at: String,
}

/// Whether `caller` (`None`: anonymous) may do `want`, given the captain record and the
/// caller's crew record (ignored unless its member is the caller).
///
/// Reads of a public hold are open to everyone; otherwise the owner may do everything, and crew
/// members what their permissions say (`blob:write` implies `blob:read`).
#[must_use]
pub fn permitted(
    captain: &Captain,
    crew: Option<&CrewMember>,
    caller: Option<&Did>,
    want: Permission,
) -> bool {
    if want == Permission::BlobRead && captain.public {
        return true;
    }
    let Some(caller) = caller else {
        return false;
    };
    if *caller == captain.owner {
        return true;
    }
    let Some(crew) = crew.filter(|c| c.member == *caller) else {
        return false;
    };
    match want {
        Permission::BlobRead => crew.has(Permission::BlobRead) || crew.has(Permission::BlobWrite),
        Permission::BlobWrite => crew.has(Permission::BlobWrite),
        Permission::CrewAdmin => crew.has(Permission::CrewAdmin),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    #[error("the node's repository does not exist")]
    NoRepository,
    #[error("the hold has no captain record")]
    NoCaptain,
    #[error("{uri} cannot be read: {reason}")]
    BadRecord { uri: String, reason: String },
    #[error(transparent)]
    Pds(#[from] PdsError),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The hold's records as of one revision of the node repository.
#[derive(Debug)]
struct Snapshot {
    head: RepoHead,
    /// The captain record's JSON (kept whole so rewrites keep fields atcr does not know).
    captain_json: Option<serde_json::Value>,
    captain: Option<Captain>,
    crew: Vec<CrewMember>,
}

/// The hold role of a node, over its PDS.
pub struct Hold {
    pds: Arc<Pds>,
    snapshot: RwLock<Option<Arc<Snapshot>>>,
    /// Signing keys of service-auth issuers.
    resolver: DidResolver,
    /// Upload sessions opened through the hold's XRPC.
    uploads: uploads::Uploads,
    /// Taken by `notifyManifest` while it vouches for blobs and by the collection while it
    /// releases them, so each sees all of the other's layer records or none.
    vouching: tokio::sync::Mutex<()>,
    /// Vouches ended (counted under `vouching`): a release reads the layer records outside
    /// the lock, and again under it only when this moved meanwhile.
    vouches: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hold({})", self.pds.node_did)
    }
}

impl Hold {
    #[must_use]
    pub fn new(pds: Arc<Pds>) -> Hold {
        Hold {
            pds,
            snapshot: RwLock::new(None),
            resolver: DidResolver::default(),
            uploads: uploads::Uploads::default(),
            vouching: tokio::sync::Mutex::new(()),
            vouches: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The PDS the records live in.
    #[must_use]
    pub fn pds(&self) -> &Arc<Pds> {
        &self.pds
    }

    /// Writes the captain record on first start (owner: the node, public, no open
    /// registration), and notes when the collection's releases begin; returns the record as
    /// it is.
    pub async fn ensure_captain(&self) -> Result<Captain, HoldError> {
        self.note_release_start()?;
        if let Some(c) = self.snapshot()?.captain.clone() {
            return Ok(c);
        }
        let captain = Captain {
            owner: self.pds.node_did.clone(),
            public: true,
            allow_all_crew: false,
            enable_bluesky_posts: false,
            deployed_at: Datetime::now().as_str().to_owned(),
            region: None,
            successor: None,
        };
        let write = WriteOp::Create {
            collection: nsid(CAPTAIN),
            rkey: Some(rkey(CAPTAIN_KEY)),
            value: to_value(&captain)?,
        };
        if let Err(e) = self.write(vec![write], None).await {
            // Another process or task may have written it first: theirs stands.
            return self.captain().map_err(|_| e);
        }
        tracing::info!(owner = %captain.owner, "hold captain record written");
        self.captain()
    }

    /// The captain record.
    pub fn captain(&self) -> Result<Captain, HoldError> {
        self.snapshot()?.captain.clone().ok_or(HoldError::NoCaptain)
    }

    /// Every crew record, in record key order.
    pub fn crew(&self) -> Result<Vec<CrewMember>, HoldError> {
        Ok(self.snapshot()?.crew.clone())
    }

    /// The crew record of `did` (the first by key, should there be several).
    pub fn member(&self, did: &Did) -> Result<Option<CrewMember>, HoldError> {
        Ok(self
            .snapshot()?
            .crew
            .iter()
            .find(|c| c.member == *did)
            .cloned())
    }

    /// Whether `caller` (`None`: anonymous) may do `want`. Any of the caller's crew records may
    /// grant it.
    pub fn allows(&self, caller: Option<&Did>, want: Permission) -> Result<bool, HoldError> {
        let snap = self.snapshot()?;
        let captain = snap.captain.as_ref().ok_or(HoldError::NoCaptain)?;
        if permitted(captain, None, caller, want) {
            return Ok(true);
        }
        let Some(caller) = caller else {
            return Ok(false);
        };
        Ok(snap
            .crew
            .iter()
            .filter(|c| c.member == *caller)
            .any(|c| permitted(captain, Some(c), Some(caller), want)))
    }

    /// Changes the captain record's given fields; others, unknown ones included, are kept.
    pub async fn set_captain(
        &self,
        owner: Option<Did>,
        public: Option<bool>,
        allow_all_crew: Option<bool>,
    ) -> Result<Captain, HoldError> {
        self.ensure_captain().await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let snap = self.snapshot()?;
            let mut json = snap.captain_json.clone().ok_or(HoldError::NoCaptain)?;
            if let Some(map) = json.as_object_mut() {
                if let Some(o) = &owner {
                    map.insert("owner".into(), o.as_str().into());
                }
                if let Some(p) = public {
                    map.insert("public".into(), p.into());
                }
                if let Some(a) = allow_all_crew {
                    map.insert("allowAllCrew".into(), a.into());
                }
            }
            let write = WriteOp::Update {
                collection: nsid(CAPTAIN),
                rkey: rkey(CAPTAIN_KEY),
                value: json_value(&json)?,
                swap_record: None,
            };
            match self.write(vec![write], Some(&snap)).await {
                Err(e) if retry(&e, attempt) => {}
                Err(e) => return Err(e),
                Ok(_) => return self.captain(),
            }
        }
    }

    /// Makes `member` a crew member with `permissions`, replacing any membership it has (every
    /// record whose `member` is it), in one commit. Returns the new record.
    pub async fn add_crew(
        &self,
        member: &Did,
        role: &str,
        permissions: &[Permission],
    ) -> Result<CrewMember, HoldError> {
        let record = CrewRecord {
            member: member.clone(),
            role: role.to_owned(),
            permissions: permissions.iter().map(|p| p.as_str().to_owned()).collect(),
            added_at: Datetime::now().as_str().to_owned(),
        };
        let value = to_value(&record)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let snap = self.snapshot()?;
            let mine: Vec<&CrewMember> = snap.crew.iter().filter(|c| c.member == *member).collect();
            // The member's DID as key, unless it is no valid key (`did:web` with a port) or a
            // foreign record of someone else holds it; then a fresh TID.
            let key = member.as_str().parse::<RecordKey>().ok().filter(|k| {
                !snap
                    .crew
                    .iter()
                    .any(|c| c.rkey == *k && c.member != *member)
            });
            let mut writes: Vec<WriteOp> = mine
                .iter()
                .filter(|c| Some(&c.rkey) != key.as_ref())
                .map(|c| WriteOp::Delete {
                    collection: nsid(CREW),
                    rkey: c.rkey.clone(),
                    swap_record: None,
                })
                .collect();
            writes.push(match key {
                Some(rkey) => WriteOp::Update {
                    collection: nsid(CREW),
                    rkey,
                    value: value.clone(),
                    swap_record: None,
                },
                None => WriteOp::Create {
                    collection: nsid(CREW),
                    rkey: None,
                    value: value.clone(),
                },
            });
            match self.write(writes, Some(&snap)).await {
                Err(e) if retry(&e, attempt) => {}
                Err(e) => return Err(e),
                Ok(results) => {
                    let (uri, cid) = match results.last() {
                        Some(
                            WriteResult::Create { uri, cid, .. }
                            | WriteResult::Update { uri, cid, .. },
                        ) => (uri.clone(), *cid),
                        _ => {
                            return Err(HoldError::Repo(RepoError::Data("no write result".into())));
                        }
                    };
                    tracing::info!(member = %member, role, "crew member added");
                    return Ok(CrewMember {
                        member: record.member,
                        role: record.role,
                        permissions: record.permissions,
                        rkey: uri_rkey(&uri)?,
                        cid,
                        added_at: record.added_at,
                    });
                }
            }
        }
    }

    /// Removes every crew record whose `member` is `member`, in one commit. Returns whether
    /// there was any.
    pub async fn remove_crew(&self, member: &Did) -> Result<bool, HoldError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let snap = self.snapshot()?;
            let writes: Vec<WriteOp> = snap
                .crew
                .iter()
                .filter(|c| c.member == *member)
                .map(|c| WriteOp::Delete {
                    collection: nsid(CREW),
                    rkey: c.rkey.clone(),
                    swap_record: None,
                })
                .collect();
            if writes.is_empty() {
                return Ok(false);
            }
            match self.write(writes, Some(&snap)).await {
                Err(e) if retry(&e, attempt) => {}
                Err(e) => return Err(e),
                Ok(_) => {
                    tracing::info!(member = %member, "crew member removed");
                    return Ok(true);
                }
            }
        }
    }

    /// Applies `writes` to the node repository as one commit; with `base`, only if the
    /// repository is still at the snapshot's commit (so no write is built on stale records).
    async fn write(
        &self,
        writes: Vec<WriteOp>,
        base: Option<&Snapshot>,
    ) -> Result<Vec<WriteResult>, HoldError> {
        let (_, results) = self
            .pds
            .repos
            .apply_writes(
                &self.pds.node_did,
                writes,
                base.map(|s| s.head.commit),
                Validation::Require,
            )
            .await?;
        Ok(results)
    }

    /// The records as of the repository's current revision: the cached snapshot, or a fresh
    /// one when the revision moved.
    fn snapshot(&self) -> Result<Arc<Snapshot>, HoldError> {
        let store = self.pds.store();
        let head = store
            .head(&self.pds.node_did)?
            .ok_or(HoldError::NoRepository)?;
        if let Some(s) = self.cached()
            && s.head.rev == head.rev
        {
            return Ok(s);
        }
        // Records are read after the head: should a write land in between, the snapshot is
        // tagged older than its records, and the next call reloads it.
        let fresh = Arc::new(self.load(head)?);
        if let Ok(mut slot) = self.snapshot.write() {
            *slot = Some(fresh.clone());
        }
        Ok(fresh)
    }

    fn cached(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.read().ok().and_then(|s| s.clone())
    }

    fn load(&self, head: RepoHead) -> Result<Snapshot, HoldError> {
        let did = &self.pds.node_did;
        let store = self.pds.store();
        let (captain_json, captain) = match store.record_cid(did, CAPTAIN, CAPTAIN_KEY)? {
            None => (None, None),
            Some(cid) => {
                let json = self.record_json(&cid)?;
                let captain =
                    serde_json::from_value(json.clone()).map_err(|e| HoldError::BadRecord {
                        uri: format!("at://{did}/{CAPTAIN}/{CAPTAIN_KEY}"),
                        reason: e.to_string(),
                    })?;
                (Some(json), Some(captain))
            }
        };
        let mut crew = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = store.list_records(did, CREW, cursor.as_deref(), PAGE, false)?;
            for (key, cid) in &page {
                let json = self.record_json(cid)?;
                match (serde_json::from_value::<CrewRecord>(json), key.parse()) {
                    (Ok(r), Ok(rkey)) => crew.push(CrewMember {
                        member: r.member,
                        role: r.role,
                        permissions: r.permissions,
                        rkey,
                        cid: *cid,
                        added_at: r.added_at,
                    }),
                    // A record that grants nothing to anyone must not lock everyone out.
                    (Err(e), _) => tracing::warn!(rkey = %key, error = %e, "crew record ignored"),
                    (_, Err(e)) => tracing::warn!(rkey = %key, error = %e, "crew record ignored"),
                }
            }
            if page.len() < PAGE {
                break;
            }
            cursor = page.last().map(|(k, _)| k.clone());
        }
        Ok(Snapshot {
            head,
            captain_json,
            captain,
            crew,
        })
    }

    fn record_json(&self, cid: &Cid) -> Result<serde_json::Value, HoldError> {
        let bad = |reason: String| HoldError::BadRecord {
            uri: cid.to_string(),
            reason,
        };
        let bytes = self
            .pds
            .repos
            .store()
            .get(cid)
            .map_err(|e| bad(e.to_string()))?
            .ok_or_else(|| bad("block missing".into()))?;
        Ok(Value::from_cbor(&bytes)
            .map_err(|e| bad(e.to_string()))?
            .to_json())
    }
}

/// Whether a failed write should be rebuilt on a fresh snapshot.
fn retry(e: &HoldError, attempt: usize) -> bool {
    matches!(e, HoldError::Repo(RepoError::InvalidSwap(_))) && attempt < WRITE_ATTEMPTS
}

fn nsid(s: &'static str) -> Nsid {
    s.parse().expect("constant NSID")
}

fn rkey(s: &'static str) -> RecordKey {
    s.parse().expect("constant record key")
}

fn to_value(record: &impl Serialize) -> Result<Value, HoldError> {
    let json = serde_json::to_value(record)
        .map_err(|e| HoldError::Pds(PdsError::Invalid(e.to_string())))?;
    json_value(&json)
}

fn json_value(json: &serde_json::Value) -> Result<Value, HoldError> {
    Value::from_json_object(json).map_err(|e| HoldError::Pds(PdsError::Invalid(e.to_string())))
}

fn uri_rkey(uri: &str) -> Result<RecordKey, HoldError> {
    uri.rsplit('/')
        .next()
        .and_then(|k| k.parse().ok())
        .ok_or_else(|| HoldError::BadRecord {
            uri: uri.to_owned(),
            reason: "no record key".into(),
        })
}

#[cfg(test)]
mod tests;
