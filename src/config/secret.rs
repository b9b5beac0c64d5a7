//! Secrets kept in files (the `*_file` keys): only an owner-only file is trusted with one.

use std::fs::Metadata;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The most a secret file is read of; a secret is one line.
const MAX_SECRET_BYTES: u64 = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is readable by group or others (mode {mode:03o}): refusing to use it; `chmod 600` it"
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("{0} is not a regular file")]
    NotAFile(PathBuf),
    #[error("{0} holds no secret (its first line is empty)")]
    Empty(PathBuf),
}

/// Refuses a file that anyone but its owner may read or write.
pub fn check_owner_only(path: &Path, meta: &Metadata) -> Result<(), SecretError> {
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretError::Exposed {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// The secret in `path`: its first line, without the line ending. The file must be a regular,
/// owner-only file.
pub fn read_secret(path: &Path) -> Result<String, SecretError> {
    let read_err = |source| SecretError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(SecretError::NotAFile(path.to_owned()));
    }
    check_owner_only(path, &meta)?;
    let mut text = String::new();
    file.take(MAX_SECRET_BYTES)
        .read_to_string(&mut text)
        .map_err(read_err)?;
    let secret = text.lines().next().unwrap_or_default();
    if secret.is_empty() {
        return Err(SecretError::Empty(path.to_owned()));
    }
    Ok(secret.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn owner_only_files_give_their_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let ok = write(dir.path(), "ok", "s3cret pass\r\nignored\n", 0o600);
        assert_eq!(read_secret(&ok).unwrap(), "s3cret pass");
        let ro = write(dir.path(), "ro", "x", 0o400);
        assert_eq!(read_secret(&ro).unwrap(), "x");

        for (name, mode) in [("group", 0o640), ("world", 0o604), ("gw", 0o620)] {
            let p = write(dir.path(), name, "x\n", mode);
            let e = read_secret(&p).unwrap_err();
            assert!(matches!(e, SecretError::Exposed { .. }), "{name}: {e}");
            assert!(e.to_string().contains("chmod 600"), "{e}");
        }
        let empty = write(dir.path(), "empty", "\nsecond\n", 0o600);
        assert!(matches!(read_secret(&empty), Err(SecretError::Empty(_))));
        assert!(matches!(
            read_secret(&dir.path().join("missing")),
            Err(SecretError::Read { .. })
        ));
        assert!(matches!(
            read_secret(dir.path()),
            Err(SecretError::NotAFile(_) | SecretError::Exposed { .. })
        ));
    }
}
