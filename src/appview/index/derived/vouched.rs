//! What hold layer records vouch for: the blobs a manifest record's repository may serve on the
//! node's word (see `crate::appview::layers`). A link goes with either record.

use redb::{ReadableTable, TableDefinition};

use super::super::journal::WriteTransaction;
use serde::{Deserialize, Serialize};

use super::{MANIFEST_COLLECTION, RecordAddr, entry, find_repo};
use crate::appview::index::{
    AFTER_DIGESTS, BLOBS, Index, IndexError, REFS, digest_key, digest_of_key, ids,
};
use crate::blobstore::Digest;

/// (user DID id, manifest record key, blob digest) → size: what the hold's `io.atcr.hold.layer`
/// records say — the node vouching that the user uploaded (or mounted) that blob, with that size,
/// into the repository of that manifest. A manifest record's blobs become servable from its
/// repository only through these; a record by itself grants nothing.
pub(in crate::appview::index) const LAYERS: TableDefinition<(u32, &str, &[u8]), u64> =
    TableDefinition::new("hold_layers");
/// (repository id, digest, user DID id, manifest record key) → size: a blob a repository may
/// serve because a manifest record indexed there references it and a layer record vouches for
/// it. Goes with either record.
pub(in crate::appview::index) const VOUCHED: TableDefinition<(u64, &[u8], u32, &str), u64> =
    TableDefinition::new("vouched_blobs");
/// The manifest record a hold layer record vouches for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerOf {
    pub user: String,
    pub manifest_rkey: String,
}

impl Index {
    /// The blobs hold layer records vouch for in manifest record `rkey` of `user`.
    pub fn layers_of(&self, user: &str, rkey: &str) -> Result<Vec<Digest>, IndexError> {
        let tx = self.db.begin_read()?;
        let Some(user) = ids::find_did(&tx.open_table(ids::DID_IDS)?, user)? else {
            return Ok(Vec::new());
        };
        let table = tx.open_table(LAYERS)?;
        let mut out = Vec::new();
        for entry in table.range((user, rkey, &[][..])..(user, rkey, AFTER_DIGESTS))? {
            let (key, _) = entry?;
            out.push(digest_of_key(key.value().2)?);
        }
        Ok(out)
    }
}

fn find_did(tx: &WriteTransaction, did: &str) -> Result<Option<u32>, IndexError> {
    ids::find_did(&tx.open_table(ids::DID_IDS)?, did)
}

/// Takes in a layer record of `user`'s manifest record: what it vouches for, and the link if
/// that manifest is indexed already (a rebuild meets records in key order) and references it.
pub(super) fn put_layer(
    tx: &WriteTransaction,
    layer: &LayerOf,
    digest: &Digest,
    size: u64,
    stored: Option<u64>,
) -> Result<(), IndexError> {
    let (user, rkey) = (ids::did_id(tx, &layer.user)?, layer.manifest_rkey.as_str());
    let d = digest_key(digest);
    tx.open_table(LAYERS)?
        .insert((user, rkey, d.as_slice()), size)?;
    if stored == Some(size)
        && let Some(m) = entry(tx, &manifest_addr(layer))?
        && let Some(md) = &m.digest
        && let Some(rid) = find_repo(tx, &m.repo)?
        && tx
            .open_table(REFS)?
            .get((rid, digest_key(md).as_slice(), d.as_slice()))?
            .is_some()
    {
        vouch(tx, rid, &d, (user, rkey), size)?;
    }
    Ok(())
}

/// The size the layer records of manifest record `addr` vouch for, for each of `links`.
fn layer_sizes(
    tx: &WriteTransaction,
    addr: &RecordAddr,
    links: &[(Digest, u64)],
) -> Result<Vec<Option<u64>>, IndexError> {
    let Some(did) = find_did(tx, &addr.did)? else {
        return Ok(vec![None; links.len()]);
    };
    let rkey = addr.rkey.as_str();
    let layers = tx.open_table(LAYERS)?;
    let mut sizes = Vec::with_capacity(links.len());
    for (d, _) in links {
        sizes.push(
            layers
                .get((did, rkey, digest_key(d).as_slice()))?
                .map(|v| v.value()),
        );
    }
    Ok(sizes)
}

/// Whether layer records vouch for every one of manifest record `addr`'s blobs (with its stored
/// size): the registry pushed it, after checking its blobs and its owner's quota.
pub(super) fn vouches_all(
    tx: &WriteTransaction,
    addr: &RecordAddr,
    links: &[(Digest, u64)],
) -> Result<bool, IndexError> {
    Ok(layer_sizes(tx, addr, links)?
        .into_iter()
        .zip(links)
        .all(|(vouched, (_, size))| vouched == Some(*size)))
}

/// Links each of a manifest record's blobs (with its stored size) into `repo` where a layer
/// record vouches for it with that size.
pub(super) fn vouch_links(
    tx: &WriteTransaction,
    addr: &RecordAddr,
    repo: &str,
    links: &[(Digest, u64)],
) -> Result<(), IndexError> {
    let sizes = layer_sizes(tx, addr, links)?;
    if sizes.iter().all(Option::is_none) {
        return Ok(());
    }
    let (did, rkey) = (ids::did_id(tx, &addr.did)?, addr.rkey.as_str());
    let rid = ids::repo_id(tx, repo)?;
    for ((d, size), vouched) in links.iter().zip(sizes) {
        if vouched == Some(*size) {
            vouch(tx, rid, &digest_key(d), (did, rkey), *size)?;
        }
    }
    Ok(())
}

/// A layer record withdrawn: it vouches for nothing any more.
pub(super) fn remove_layer(
    tx: &WriteTransaction,
    layer: &LayerOf,
    digest: &Digest,
) -> Result<(), IndexError> {
    let Some(user) = find_did(tx, &layer.user)? else {
        return Ok(());
    };
    let rkey = layer.manifest_rkey.as_str();
    let d = digest_key(digest);
    tx.open_table(LAYERS)?.remove((user, rkey, d.as_slice()))?;
    if let Some(m) = entry(tx, &manifest_addr(layer))?
        && let Some(rid) = find_repo(tx, &m.repo)?
    {
        tx.open_table(VOUCHED)?
            .remove((rid, d.as_slice(), user, rkey))?;
    }
    Ok(())
}

/// A manifest record at `addr` removed from `repo`: the links its layer records made go.
pub(super) fn unvouch_manifest(
    tx: &WriteTransaction,
    addr: &RecordAddr,
    repo: &str,
) -> Result<(), IndexError> {
    let (Some(did), Some(rid)) = (find_did(tx, &addr.did)?, find_repo(tx, repo)?) else {
        return Ok(());
    };
    let rkey = addr.rkey.as_str();
    let vouched: Vec<Vec<u8>> = tx
        .open_table(LAYERS)?
        .range((did, rkey, &[][..])..(did, rkey, AFTER_DIGESTS))?
        .map(|r| r.map(|(k, _)| k.value().2.to_vec()))
        .collect::<Result<_, _>>()?;
    let mut table = tx.open_table(VOUCHED)?;
    for d in &vouched {
        table.remove((rid, d.as_slice(), did, rkey))?;
    }
    Ok(())
}

fn manifest_addr(layer: &LayerOf) -> RecordAddr {
    RecordAddr {
        did: layer.user.clone(),
        collection: MANIFEST_COLLECTION.to_owned(),
        rkey: layer.manifest_rkey.clone(),
    }
}

/// Makes blob `d` (its key) of `size` bytes servable from repository `rid` on the word of the
/// layer record for `manifest` (user DID id, record key).
fn vouch(
    tx: &WriteTransaction,
    rid: u64,
    d: &[u8],
    manifest: (u32, &str),
    size: u64,
) -> Result<(), IndexError> {
    tx.open_table(BLOBS)?.insert(d, size)?;
    crate::appview::index::gc::touch(tx, d)?;
    tx.open_table(VOUCHED)?
        .insert((rid, d, manifest.0, manifest.1), size)?;
    Ok(())
}
