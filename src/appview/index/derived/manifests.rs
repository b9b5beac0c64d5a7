//! A manifest put into the index and taken out again, with everything keyed by it: its tags,
//! references, users (for the collector), usage and referrer entry.

use redb::ReadableTable;

use super::super::journal::WriteTransaction;

use super::find_repo;
use crate::appview::index::{
    AFTER_DIGESTS, IndexError, MANIFESTS, ManifestRecord, REFERRERS, REFS, TAGS, digest_key,
    ensure_repo, gc, ids, social, usage,
};
use crate::blobstore::Digest;

pub(super) fn put_manifest_in(
    tx: &WriteTransaction,
    repo: &str,
    digest: &Digest,
    record: &ManifestRecord,
    references: &[Digest],
    referrer: Option<&serde_json::Value>,
) -> Result<(), IndexError> {
    let rid = ids::repo_id(tx, repo)?;
    let d = digest_key(digest);
    ensure_repo(tx, repo, record.created)?;
    social::touch(tx, rid, record.created)?;
    tx.open_table(MANIFESTS)?
        .insert((rid, d.as_slice()), record.encode().as_slice())?;
    let mut refs = tx.open_table(REFS)?;
    for r in references {
        let r = digest_key(r);
        refs.insert((rid, d.as_slice(), r.as_slice()), ())?;
        gc::add_user(tx, &r, rid, &d)?;
    }
    gc::add_manifest(tx, rid, &d, record.size)?;
    if let Some(subject) = &record.subject {
        gc::add_user(tx, &digest_key(subject), rid, &d)?;
    }
    if let (Some(subject), Some(referrer)) = (&record.subject, referrer) {
        tx.open_table(REFERRERS)?.insert(
            (rid, digest_key(subject).as_slice(), d.as_slice()),
            serde_json::to_vec(referrer)?.as_slice(),
        )?;
    }
    Ok(())
}

/// Removes a manifest, every tag pointing at it, its references and its referrer entry.
/// Returns whether it existed.
pub(super) fn delete_manifest_in(
    tx: &WriteTransaction,
    repo: &str,
    digest: &Digest,
) -> Result<bool, IndexError> {
    let Some(rid) = find_repo(tx, repo)? else {
        return Ok(false);
    };
    let d = digest_key(digest);
    let mut manifests = tx.open_table(MANIFESTS)?;
    let Some(raw) = manifests.remove((rid, d.as_slice()))? else {
        return Ok(false);
    };
    let record = ManifestRecord::decode(raw.value())?;
    drop(raw);
    let mut tags = tx.open_table(TAGS)?;
    let tagged: Vec<String> = tags
        .range((rid, "")..(rid + 1, ""))?
        .filter_map(|row| match row {
            Ok((k, target)) => (target.value() == d.as_slice()).then(|| Ok(k.value().1.to_owned())),
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_, _>>()?;
    for tag in &tagged {
        tags.remove((rid, tag.as_str()))?;
    }
    let mut refs = tx.open_table(REFS)?;
    let used: Vec<Vec<u8>> = refs
        .range((rid, d.as_slice(), &[][..])..(rid, d.as_slice(), AFTER_DIGESTS))?
        .map(|r| r.map(|(k, _)| k.value().2.to_vec()))
        .collect::<Result<_, _>>()?;
    for u in &used {
        refs.remove((rid, d.as_slice(), u.as_slice()))?;
    }
    drop((tags, refs));
    for u in &used {
        gc::remove_user(tx, u, rid, &d)?;
    }
    usage::release(tx, rid, &used)?;
    gc::remove_user(tx, &d, rid, &d)?;
    if let Some(subject) = record.subject {
        let s = digest_key(&subject);
        gc::remove_user(tx, &s, rid, &d)?;
        tx.open_table(REFERRERS)?
            .remove((rid, s.as_slice(), d.as_slice()))?;
    }
    Ok(true)
}
