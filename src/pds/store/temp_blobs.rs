//! Temporary blobs: those `com.atproto.repo.uploadBlob` stored and no record has referenced
//! yet. As the reference PDS does, they do not stay unless a record takes them up: each account
//! may hold at most `pds.max_temp_blob_bytes` of them (counted per account, so a check reads one
//! row), and the collector removes those idle past the GC grace.
//!
//! A blob stops being temporary in the write transaction of the first commit whose records
//! reference it ([`untether`]), never to become temporary again. `pds.wal` does not carry that
//! step: after a crash a referenced blob may still be listed here, so before removing anything
//! the collector walks the records of its repository, and takes out of the list (removing
//! nothing) what a record references.

use std::collections::{HashMap, HashSet};

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};

use super::{BlobMeta, PdsStore, REPO_BLOBS, REPOS, RepoHead, Snapshot, StoreError};
use crate::atproto::mst::{Mst, WalkItem};
use crate::atproto::{BlockStore, Cid, Did, Value};

/// (DID, blob CID) → size: the account's temporary blobs.
pub(super) const TEMP_BLOBS: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("temp_blobs");
/// DID → bytes: the sum of the account's rows in `TEMP_BLOBS`.
pub(super) const TEMP_BYTES: TableDefinition<&str, u64> = TableDefinition::new("temp_blob_bytes");

/// What one expiry removed (dry: would remove).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TempExpiry {
    pub blobs: u64,
    pub bytes: u64,
}

/// Whether an upload may be taken in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TempAdmit {
    /// It is taken in (or the account holds it already).
    Yes,
    /// The account's temporary blobs would come to `held + size` bytes, over the cap.
    OverCap { held: u64 },
}

/// Whether `did` may upload blob `cid` of `size` bytes under `cap`: one it already holds goes
/// through; a new one must fit beside its temporary blobs.
fn admits(
    repo_blobs: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    bytes: &impl ReadableTable<&'static str, u64>,
    did: &str,
    cid: &str,
    size: u64,
    cap: u64,
) -> Result<TempAdmit, StoreError> {
    if repo_blobs.get((did, cid))?.is_some() {
        return Ok(TempAdmit::Yes);
    }
    let held = bytes.get(did)?.map_or(0, |v| v.value());
    if held.saturating_add(size) > cap {
        return Ok(TempAdmit::OverCap { held });
    }
    Ok(TempAdmit::Yes)
}

/// Adds `delta` (negative: takes it) to `did`'s total.
fn add_bytes(
    bytes: &mut Table<'_, &'static str, u64>,
    did: &str,
    delta: i128,
) -> Result<(), StoreError> {
    let before = i128::from(bytes.get(did)?.map_or(0, |v| v.value()));
    let after = u64::try_from((before + delta).max(0)).unwrap_or(u64::MAX);
    if after == 0 {
        bytes.remove(did)?;
    } else {
        bytes.insert(did, after)?;
    }
    Ok(())
}

/// The two tables, open in one write transaction.
pub(super) struct TempTables<'tx> {
    rows: Table<'tx, (&'static str, &'static str), u64>,
    bytes: Table<'tx, &'static str, u64>,
}

impl<'tx> TempTables<'tx> {
    pub(super) fn open(tx: &'tx WriteTransaction) -> Result<TempTables<'tx>, StoreError> {
        Ok(TempTables {
            rows: tx.open_table(TEMP_BLOBS)?,
            bytes: tx.open_table(TEMP_BYTES)?,
        })
    }

    /// Takes `cid` out of `did`'s temporary blobs, if it is one.
    fn forget(&mut self, did: &str, cid: &str) -> Result<(), StoreError> {
        if let Some(size) = self.rows.remove((did, cid))?.map(|v| v.value()) {
            add_bytes(&mut self.bytes, did, -i128::from(size))?;
        }
        Ok(())
    }

    /// In a commit's write transaction: the blobs its records reference are temporary no more.
    pub(super) fn untether(&mut self, did: &str, blobs: &[Cid]) -> Result<(), StoreError> {
        for cid in blobs {
            self.forget(did, &cid.to_string())?;
        }
        Ok(())
    }
}

impl PdsStore {
    /// Whether `did` may upload blob `cid` of `size` bytes under `cap` (a read, to refuse
    /// before storing the bytes; [`PdsStore::put_temp_blob`] checks again).
    pub fn temp_blob_admits(
        &self,
        did: &Did,
        cid: &Cid,
        size: u64,
        cap: u64,
    ) -> Result<TempAdmit, StoreError> {
        let tx = self.db.begin_read()?;
        admits(
            &tx.open_table(REPO_BLOBS)?,
            &tx.open_table(TEMP_BYTES)?,
            did.as_str(),
            &cid.to_string(),
            size,
            cap,
        )
    }

    /// Records blob `cid` as uploaded to `did`'s repository by `uploadBlob`: a temporary blob
    /// until a record references it, if the account's temporary blobs stay within `cap`.
    pub async fn put_temp_blob(
        &self,
        did: &Did,
        cid: Cid,
        meta: BlobMeta,
        cap: u64,
    ) -> Result<TempAdmit, StoreError> {
        let did = did.clone();
        self.write(move |tx| {
            let (d, c) = (did.as_str(), cid.to_string());
            let held_already = tx.open_table(REPO_BLOBS)?.get((d, c.as_str()))?.is_some();
            let admit = admits(
                &tx.open_table(REPO_BLOBS)?,
                &tx.open_table(TEMP_BYTES)?,
                d,
                &c,
                meta.size,
                cap,
            )?;
            if admit != TempAdmit::Yes {
                return Ok(admit);
            }
            if !held_already {
                let mut temp = TempTables::open(tx)?;
                temp.rows.insert((d, c.as_str()), meta.size)?;
                add_bytes(&mut temp.bytes, d, i128::from(meta.size))?;
            }
            // Uploading it again starts its time afresh.
            let json = serde_json::to_vec(&meta)?;
            tx.open_table(REPO_BLOBS)?
                .insert((d, c.as_str()), json.as_slice())?;
            Ok::<_, StoreError>(TempAdmit::Yes)
        })
        .await
    }

    /// Bytes of `did`'s temporary blobs.
    pub fn temp_blob_bytes(&self, did: &Did) -> Result<u64, StoreError> {
        let tx = self.db.begin_read()?;
        Ok(tx
            .open_table(TEMP_BYTES)?
            .get(did.as_str())?
            .map_or(0, |v| v.value()))
    }

    /// Forgets the temporary blobs uploaded `expiry_secs` or more before `now` that no record
    /// references (dry: counts them): their blob-table rows go, so `getBlob` no longer serves
    /// them and their objects become leftovers for the blob collector. Blocking.
    pub fn expire_temp_blobs(
        &self,
        now: u64,
        expiry_secs: u64,
        dry_run: bool,
    ) -> Result<TempExpiry, StoreError> {
        let snapshot = self.db.begin_read()?;
        // (DID, CID) → (size, upload time) of the expired ones.
        let mut expired: HashMap<(String, String), (u64, u64)> = HashMap::new();
        {
            let metas = snapshot.open_table(REPO_BLOBS)?;
            for row in snapshot.open_table(TEMP_BLOBS)?.iter()? {
                let (key, size) = row?;
                let (did, cid) = key.value();
                let Some(meta) = metas.get((did, cid))? else {
                    continue;
                };
                let meta: BlobMeta = serde_json::from_slice(meta.value())?;
                if now.saturating_sub(meta.created) >= expiry_secs {
                    expired.insert(
                        (did.to_owned(), cid.to_owned()),
                        (size.value(), meta.created),
                    );
                }
            }
        }
        let dids: HashSet<&str> = expired.keys().map(|(d, _)| d.as_str()).collect();
        let mut referenced = HashSet::new();
        for did in dids {
            referenced.extend(
                referenced_blobs(&snapshot, did)?
                    .into_iter()
                    .map(|c| (did.to_owned(), c)),
            );
        }
        let mut report = TempExpiry::default();
        let tx = self.db.begin_write()?;
        {
            let mut temp = TempTables::open(&tx)?;
            let mut metas = tx.open_table(REPO_BLOBS)?;
            for ((did, cid), (size, created)) in &expired {
                let key = (did.as_str(), cid.as_str());
                // Referenced by a commit since the snapshot: no longer listed.
                if temp.rows.get(key)?.is_none() {
                    continue;
                }
                if referenced.contains(&(did.clone(), cid.clone())) {
                    temp.forget(did, cid)?;
                    continue;
                }
                // Uploaded again since the snapshot: its time started afresh.
                let again = match metas.get(key)? {
                    Some(m) => serde_json::from_slice::<BlobMeta>(m.value())?.created != *created,
                    None => false,
                };
                if again {
                    continue;
                }
                report.blobs += 1;
                report.bytes += size;
                if !dry_run {
                    temp.forget(did, cid)?;
                    metas.remove(key)?;
                }
            }
        }
        if dry_run {
            tx.abort()?;
        } else {
            tx.commit()?;
        }
        Ok(report)
    }
}

impl PdsStore {
    /// Forgets rows of `did`'s blob table, given as (CID, upload time as read), unless a current
    /// record of the repository references the blob or it was uploaded again since (its time
    /// moved); returns the CIDs forgotten (dry: that would be). Their objects become leftovers
    /// for the blob collector, which takes them up after the grace. Blocking.
    pub fn release_blobs(
        &self,
        did: &Did,
        rows: &[(Cid, u64)],
        dry_run: bool,
    ) -> Result<Vec<Cid>, StoreError> {
        let referenced = referenced_blobs(&self.db.begin_read()?, did.as_str())?;
        let tx = self.db.begin_write()?;
        let mut released = Vec::new();
        {
            let mut metas = tx.open_table(REPO_BLOBS)?;
            for (cid, created) in rows {
                let text = cid.to_string();
                if referenced.contains(&text) {
                    continue;
                }
                let key = (did.as_str(), text.as_str());
                let unchanged = match metas.get(key)? {
                    Some(m) => serde_json::from_slice::<BlobMeta>(m.value())?.created == *created,
                    None => false,
                };
                if !unchanged {
                    continue;
                }
                if !dry_run {
                    metas.remove(key)?;
                }
                released.push(*cid);
            }
        }
        if dry_run {
            tx.abort()?;
        } else {
            tx.commit()?;
        }
        Ok(released)
    }
}

/// The blob CIDs the current records of `did`'s repository reference.
fn referenced_blobs(
    snapshot: &redb::ReadTransaction,
    did: &str,
) -> Result<HashSet<String>, StoreError> {
    let mut out = HashSet::new();
    let Some(head) = snapshot.open_table(REPOS)?.get(did)? else {
        return Ok(out);
    };
    let head: RepoHead = serde_json::from_slice(head.value())?;
    let blocks = Snapshot::open(snapshot)?;
    let unwalkable = |e: crate::atproto::mst::MstError| {
        StoreError::Corrupt(format!(
            "repository {did} cannot be walked, no temporary blob expired: {e}"
        ))
    };
    let mut records = Vec::new();
    Mst::load(&blocks, head.data)
        .map_err(unwalkable)?
        .walk(&blocks, &mut |item| {
            if let WalkItem::Leaf { value, .. } = item {
                records.push(value);
            }
            Ok(())
        })
        .map_err(unwalkable)?;
    for cid in records {
        let bytes = blocks
            .get(&cid)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?
            .ok_or_else(|| StoreError::Corrupt(format!("record block {cid} of {did} missing")))?;
        if let Ok(value) = Value::from_cbor(&bytes) {
            out.extend(value.blobs().into_iter().map(|b| b.cid.to_string()));
        }
    }
    Ok(out)
}
