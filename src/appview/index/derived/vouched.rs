//! What hold layer records vouch for: the blobs a manifest record's repository may serve on the
//! node's word (see `crate::appview::layers`). A link goes with either record.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{MANIFEST_COLLECTION, RecordAddr, entry};
use crate::appview::index::{BLOBS, Index, IndexError, MAX, REFS};
use crate::blobstore::Digest;

/// (user DID, manifest record key, blob digest) → size: what the hold's `io.atcr.hold.layer`
/// records say — the node vouching that the user uploaded (or mounted) that blob, with that size,
/// into the repository of that manifest. A manifest record's blobs become servable from its
/// repository only through these; a record by itself grants nothing.
pub(in crate::appview::index) const LAYERS: TableDefinition<(&str, &str, &str), u64> =
    TableDefinition::new("hold_layers");
/// (repository, digest, user DID, manifest record key) → size: a blob a repository may serve
/// because a manifest record indexed there references it and a layer record vouches for it.
/// Goes with either record.
pub(in crate::appview::index) const VOUCHED: TableDefinition<(&str, &str, &str, &str), u64> =
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
        let table = tx.open_table(LAYERS)?;
        let mut out = Vec::new();
        for entry in table.range((user, rkey, "")..(user, rkey, MAX))? {
            let (key, _) = entry?;
            if let Ok(d) = key.value().2.parse() {
                out.push(d);
            }
        }
        Ok(out)
    }
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
    let (user, rkey) = (layer.user.as_str(), layer.manifest_rkey.as_str());
    tx.open_table(LAYERS)?
        .insert((user, rkey, digest.as_str()), size)?;
    if stored == Some(size)
        && let Some(m) = entry(tx, &manifest_addr(layer))?
        && let Some(md) = &m.digest
        && tx
            .open_table(REFS)?
            .get((m.repo.as_str(), md.as_str(), digest.as_str()))?
            .is_some()
    {
        vouch(tx, &m.repo, digest, (user, rkey), size)?;
    }
    Ok(())
}

/// The size the layer records of manifest record `addr` vouch for, for each of `links`.
fn layer_sizes(
    tx: &WriteTransaction,
    addr: &RecordAddr,
    links: &[(Digest, u64)],
) -> Result<Vec<Option<u64>>, IndexError> {
    let (did, rkey) = (addr.did.as_str(), addr.rkey.as_str());
    let layers = tx.open_table(LAYERS)?;
    let mut sizes = Vec::with_capacity(links.len());
    for (d, _) in links {
        sizes.push(layers.get((did, rkey, d.as_str()))?.map(|v| v.value()));
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
    let (did, rkey) = (addr.did.as_str(), addr.rkey.as_str());
    let sizes = layer_sizes(tx, addr, links)?;
    for ((d, size), vouched) in links.iter().zip(sizes) {
        if vouched == Some(*size) {
            vouch(tx, repo, d, (did, rkey), *size)?;
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
    let (user, rkey) = (layer.user.as_str(), layer.manifest_rkey.as_str());
    tx.open_table(LAYERS)?
        .remove((user, rkey, digest.as_str()))?;
    if let Some(m) = entry(tx, &manifest_addr(layer))? {
        tx.open_table(VOUCHED)?
            .remove((m.repo.as_str(), digest.as_str(), user, rkey))?;
    }
    Ok(())
}

/// A manifest record at `addr` removed from `repo`: the links its layer records made go.
pub(super) fn unvouch_manifest(
    tx: &WriteTransaction,
    addr: &RecordAddr,
    repo: &str,
) -> Result<(), IndexError> {
    let (did, rkey) = (addr.did.as_str(), addr.rkey.as_str());
    let vouched: Vec<String> = tx
        .open_table(LAYERS)?
        .range((did, rkey, "")..(did, rkey, MAX))?
        .map(|r| r.map(|(k, _)| k.value().2.to_owned()))
        .collect::<Result<_, _>>()?;
    let mut table = tx.open_table(VOUCHED)?;
    for d in &vouched {
        table.remove((repo, d.as_str(), did, rkey))?;
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

/// Makes blob `d` of `size` bytes servable from `repo` on the word of the layer record for
/// `manifest` (user DID, record key).
fn vouch(
    tx: &WriteTransaction,
    repo: &str,
    d: &Digest,
    manifest: (&str, &str),
    size: u64,
) -> Result<(), IndexError> {
    tx.open_table(BLOBS)?.insert(d.as_str(), size)?;
    crate::appview::index::gc::touch(tx, d.as_str())?;
    tx.open_table(VOUCHED)?
        .insert((repo, d.as_str(), manifest.0, manifest.1), size)?;
    Ok(())
}
