//! The node's state is for its own user only: the data directory is 0700 and whatever the
//! node writes there is 0600 (files) or 0700 (directories), whatever umask it was started
//! with. Databases hold account data and session hashes; nothing in them is for other local
//! users.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Makes every file and directory this process creates owner-only. Called first thing by the
/// commands that write state.
pub fn restrict_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Takes group and other permissions off `dir` and everything under it (symbolic links are
/// not followed) that the running user owns. Returns how many entries were changed.
pub fn tighten(dir: &Path) -> std::io::Result<usize> {
    let me = rustix::process::geteuid().as_raw();
    let mut changed = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        // Files may come and go under a running daemon (a search index merging segments).
        let meta = match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            other => other?,
        };
        if meta.file_type().is_symlink() || meta.uid() != me {
            continue;
        }
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7700)) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                other => other?,
            }
            changed += 1;
        }
        if meta.is_dir() {
            match std::fs::read_dir(&path) {
                Ok(entries) => stack.extend(entries.filter_map(Result::ok).map(|e| e.path())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(changed)
}

/// Entries under `dir` (itself included; symbolic links not followed) that group or others
/// may read, write or enter.
#[must_use]
pub fn exposed(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            continue;
        }
        // A socket is reached through its directory; its own mode does not matter.
        let socket = std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type());
        if !socket && meta.permissions().mode() & 0o077 != 0 {
            out.push(path.clone());
        }
        if meta.is_dir()
            && let Ok(entries) = std::fs::read_dir(&path)
        {
            stack.extend(entries.filter_map(Result::ok).map(|e| e.path()));
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tightening_leaves_nothing_exposed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("search/seg")).unwrap();
        std::fs::write(root.join("pds.redb"), b"x").unwrap();
        std::fs::write(root.join("search/seg/a"), b"x").unwrap();
        for p in [
            root.to_owned(),
            root.join("search"),
            root.join("search/seg"),
        ] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        for p in [root.join("pds.redb"), root.join("search/seg/a")] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        assert_eq!(exposed(root).len(), 5);
        assert_eq!(tighten(root).unwrap(), 5);
        assert!(exposed(root).is_empty(), "{:?}", exposed(root));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(root), 0o700);
        assert_eq!(mode(&root.join("pds.redb")), 0o600);
        assert_eq!(tighten(root).unwrap(), 0);
    }
}
