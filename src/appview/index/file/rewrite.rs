//! Every table of the index copied, in key order, into a fresh database: what compaction
//! writes. redb packs a leaf full when keys arrive in ascending order (it starts a new leaf
//! instead of splitting the last one), so the copy has next to no slack.

use redb::{
    Database, Durability, Key, ReadTransaction, ReadableTable as _, TableDefinition,
    TableHandle as _, Value,
};

use super::super::{
    BLOBS, HELD, IndexError, MANIFESTS, REFERRERS, REFS, REPO_BLOBS, REPOS, TAGS, UPLOADS, derived,
    gc, ids, social, usage,
};

/// Rows written per transaction: the copy never holds a whole large table uncommitted.
const BATCH: usize = 50_000;

/// How a copy shares the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pace {
    /// As fast as it goes, synced once at the end (nothing else runs: offline).
    Alone,
    /// Beside a serving node: every batch synced, so that the node's commits never wait behind
    /// one sync of the whole copy.
    Beside,
}

/// Copies every table of `src` into the empty database `dst`, each in key order, and makes it
/// durable (see [`Pace`]). A table this version does not know is an error (before anything is
/// replaced): compaction must not drop what it cannot copy.
pub(super) fn all_tables(
    src: &ReadTransaction,
    dst: &Database,
    pace: Pace,
) -> Result<(), IndexError> {
    let mut copied = Vec::new();
    let mut c = Copier {
        src,
        dst,
        pace,
        copied: &mut copied,
    };
    c.copy(REPOS)?;
    c.copy(REPO_BLOBS)?;
    c.copy(BLOBS)?;
    c.copy(MANIFESTS)?;
    c.copy(TAGS)?;
    c.copy(REFS)?;
    c.copy(REFERRERS)?;
    c.copy(UPLOADS)?;
    c.copy(HELD)?;
    c.copy(ids::REPO_IDS)?;
    c.copy(ids::REPO_NAMES)?;
    c.copy(ids::DID_IDS)?;
    c.copy(ids::DID_NAMES)?;
    c.copy(gc::USERS)?;
    c.copy(gc::TOUCHED)?;
    c.copy(gc::MANIFEST_OBJECTS)?;
    c.copy(gc::GC_META)?;
    c.copy(derived::RECORDS)?;
    c.copy(derived::META)?;
    c.copy(derived::LAYERS)?;
    c.copy(derived::VOUCHED)?;
    c.copy(social::STARS)?;
    c.copy(social::STARRERS)?;
    c.copy(social::STAR_COUNTS)?;
    c.copy(social::POPULAR)?;
    c.copy(social::PAGES)?;
    c.copy(social::PUSHED)?;
    c.copy(social::RECENT)?;
    c.copy(usage::OWNER_COUNTED)?;
    c.copy(usage::OWNER_BYTES)?;
    c.copy(usage::REPO_COUNTED)?;
    c.copy(usage::REPO_BYTES)?;
    if src
        .list_tables()?
        .any(|t| !copied.iter().any(|name| name == t.name()))
    {
        return Err(IndexError::Undecodable(
            "a table compaction does not know how to copy",
        ));
    }
    // The copies were committed without syncing: one durable commit makes them all durable.
    let tx = dst.begin_write()?;
    tx.commit()?;
    Ok(())
}

struct Copier<'a> {
    src: &'a ReadTransaction,
    dst: &'a Database,
    pace: Pace,
    copied: &'a mut Vec<String>,
}

impl Copier<'_> {
    /// Copies `table` (absent in `src`: nothing to copy) in key order.
    fn copy<K: Key + 'static, V: Value + 'static>(
        &mut self,
        table: TableDefinition<K, V>,
    ) -> Result<(), IndexError> {
        self.copied.push(table.name().to_owned());
        let from = match self.src.open_table(table) {
            Ok(from) => from,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(redb::Error::from(e).into()),
        };
        let mut rows = from.iter()?;
        loop {
            let mut tx = self.dst.begin_write()?;
            let durability = match self.pace {
                Pace::Alone => Durability::None,
                Pace::Beside => Durability::Immediate,
            };
            tx.set_durability(durability)
                .map_err(|e| IndexError::Db(redb::Error::from(e)))?;
            let mut more = false;
            {
                let mut to = tx.open_table(table)?;
                for (n, row) in rows.by_ref().enumerate() {
                    let (k, v) = row?;
                    to.insert(k.value(), v.value())?;
                    if n + 1 == BATCH {
                        more = true;
                        break;
                    }
                }
            }
            tx.commit()?;
            if !more {
                return Ok(());
            }
        }
    }
}
