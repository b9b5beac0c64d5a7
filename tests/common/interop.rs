//! The npm side of the interop tests: Node.js 22 and the pinned `@atproto/*` packages in
//! `tests/interop/` (`tests/interop/setup.sh` installs both).

use std::path::{Path, PathBuf};

/// `tests/interop/`.
#[must_use]
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// The Node.js 22 binary of `tests/interop/node/` once `package` (`@atproto/api`) is installed
/// beside it, or `None` when the client tests are skipped (`ATCR_SKIP_CLIENT_TESTS=1`).
///
/// # Panics
/// If either is missing and the client tests are not skipped.
#[must_use]
pub fn node(package: &str) -> Option<PathBuf> {
    let dir = interop_dir();
    let node = dir.join("node/bin/node");
    let ready = node.is_file()
        && dir
            .join("node_modules")
            .join(package)
            .join("package.json")
            .is_file();
    if ready {
        return Some(node);
    }
    if std::env::var("ATCR_SKIP_CLIENT_TESTS").as_deref() == Ok("1") {
        eprintln!("skipped: tests/interop is not set up (ATCR_SKIP_CLIENT_TESTS=1)");
        return None;
    }
    panic!(
        "the npm interop suite is not installed (no {package}): run tests/interop/setup.sh \
         (or set ATCR_SKIP_CLIENT_TESTS=1 to skip the client tests)"
    );
}
