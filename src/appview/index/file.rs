//! The index file as a whole: replacing a damaged one, compacting one no process has open or
//! the one this node uses (`online`).

use std::path::{Path, PathBuf};

use redb::Database;

use super::{Index, IndexError};

impl Index {
    /// Opens the index at `path` like [`Index::open`]; one that cannot be read (damaged,
    /// truncated, not a redb file) is moved aside to `<path>.damaged-<unix seconds>` and an empty
    /// one created in its place, to be rebuilt from the PDS: the index is derived. Upload
    /// sessions live here and are lost with it (clients start those uploads again). Returns
    /// where the damaged file went, if it was moved. Errors that say nothing of the file (it is
    /// in use by another process, permissions) are returned as they are.
    pub fn open_or_replace(path: &Path) -> Result<(Index, Option<PathBuf>), IndexError> {
        let err = match Index::open(path) {
            Ok(index) => return Ok((index, None)),
            Err(e) => e,
        };
        if !err.is_damage() {
            return Err(err);
        }
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let named = |n: u32| {
            let mut aside = path.as_os_str().to_owned();
            aside.push(format!(".damaged-{secs}"));
            if n > 0 {
                aside.push(format!("-{n}"));
            }
            PathBuf::from(aside)
        };
        let aside = (0..1000)
            .map(named)
            .find(|p| !p.exists())
            .unwrap_or_else(|| named(1000));
        std::fs::rename(path, &aside).map_err(|e| IndexError::Db(e.into()))?;
        tracing::warn!(
            path = %path.display(),
            moved_to = %aside.display(),
            error = %err,
            "the registry index is damaged: moved aside, rebuilding it from the PDS (upload sessions in progress are lost)"
        );
        Ok((Index::open(path)?, Some(aside)))
    }

    /// Compacts the index file at `path` (no process may have it open): rewrites it into a
    /// fresh file, table by table in key order, and puts that in its place. Pages filled in
    /// key order are full, where the ones a running node fills (keys arriving in no order) are
    /// about half empty; the fresh file also has no free pages. An index of an older format is
    /// brought to this one first (see [`Index::open`]). Needs room for a second copy beside
    /// the first while it runs; until the rename the old file is untouched, and a copy left by
    /// an interrupted run is removed by the next. Returns the file's bytes on disk before and
    /// after.
    pub fn compact(path: &Path) -> Result<(u64, u64), IndexError> {
        let before = online::file_size(path);
        let fresh = online::sibling(path, ".compacting");
        {
            // Opened first: that proves no node has the file, nor is writing a copy.
            let index = Index::open(path)?;
            online::remove_if_present(&fresh)?;
            let src = index.db.begin_read()?;
            let mut dst = Database::builder()
                .set_cache_size(super::CACHE_BYTES)
                .create(&fresh)?;
            rewrite::all_tables(&src, &dst, rewrite::Pace::Alone)?;
            // The copy's pages are full, but the file grew in steps ahead of them: moving the
            // pages down lets redb give the end of the file back.
            while dst.compact().map_err(redb::Error::from)? {}
        }
        std::fs::rename(&fresh, path).map_err(|e| IndexError::Db(e.into()))?;
        online::sync_parent(path)?;
        let after = online::file_size(path);
        // The running node's collector compacts again once the file has grown from here.
        Index::open(path)?.record_compacted(after)?;
        Ok((before, after))
    }
}

mod online;
mod rewrite;

#[cfg(test)]
pub(super) use online::Step;
