//! The module map as a test: which top-level modules each module of `src/` may name. A `use`
//! (or path, or doc link) that points up the map fails here, so the layering in `README.md`
//! ("Layout") cannot erode one import at a time, nor a file grow past 600 lines. File-level
//! import circles are checked by `scripts/module-graph --cycles`, which `scripts/test` runs.

use std::collections::BTreeSet;
use std::path::Path;

/// Every top-level module, for rules written as "all but".
const ALL: &[&str] = &[
    "admin",
    "appview",
    "atproto",
    "auth",
    "blobstore",
    "cli",
    "config",
    "dbslot",
    "doctor",
    "hold",
    "http",
    "http_client",
    "macros",
    "oci",
    "pds",
    "registry",
    "search",
    "server",
    "tls",
    "web",
    "worker",
];

/// What each module must never name (besides itself).
fn forbidden(module: &str) -> BTreeSet<&'static str> {
    let only = |allowed: &[&str]| -> BTreeSet<&'static str> {
        ALL.iter()
            .copied()
            .filter(|m| *m != module && !allowed.contains(m))
            .collect()
    };
    match module {
        // Leaves: the data model, the spec model, HTTP plumbing, search.
        "atproto" | "http" | "search" | "dbslot" | "macros" | "worker" => only(&[]),
        "oci" => only(&["atproto"]),
        "tls" => only(&["oci"]),
        // The S3 client builds its TLS configuration with the node's own helpers.
        "blobstore" => only(&["oci", "tls", "http_client"]),
        "http_client" => only(&["tls"]),
        "pds" => only(&[
            "atproto",
            "blobstore",
            "dbslot",
            "http",
            "http_client",
            "macros",
        ]),
        "hold" => only(&["atproto", "blobstore", "http", "http_client", "pds"]),
        "appview" => only(&[
            "atproto",
            "blobstore",
            "dbslot",
            "macros",
            "oci",
            "pds",
            "search",
        ]),
        "auth" => only(&["appview", "atproto", "hold", "http", "oci", "pds"]),
        "registry" => only(&[
            "appview",
            "atproto",
            "auth",
            "blobstore",
            "hold",
            "http",
            "oci",
        ]),
        "web" => only(&["appview", "atproto", "hold", "http", "oci", "pds", "search"]),
        "cli" => BTreeSet::new(),
        // Everything else sits under `cli` and never names `server`.
        _ => ["server"].into_iter().collect(),
    }
}

/// The top-level modules a source file names through `crate::…` paths.
fn named_modules(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            // Tools the test command installs into the tree (npm packages, venvs, binaries).
            let name = path.file_name().unwrap_or_default();
            if !["node_modules", "node", "venv", "bin"]
                .iter()
                .any(|n| name == *n)
            {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_names_one_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut broken = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs");
        if !ALL.contains(&module) {
            continue; // lib.rs, main.rs
        }
        let text = std::fs::read_to_string(file).unwrap();
        let bad = forbidden(module);
        for named in named_modules(&text) {
            if bad.contains(named.as_str()) {
                broken.push(format!("{} names crate::{named}", rel.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "imports against the module map:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_pages_use_the_pds_through_its_public_surface() {
    // `web` may use `crate::pds::{…}` re-exports and the `Pds` handle, never a PDS submodule.
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web");
    let mut files = Vec::new();
    rust_files(&web, &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (at, _) in text.match_indices("crate::pds::") {
            let after = &text[at + "crate::pds::".len()..];
            let word: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let is_module = word.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && after[word.len()..].starts_with("::");
            assert!(
                !is_module,
                "{} reaches into crate::pds::{word}",
                file.display()
            );
        }
    }
}

#[test]
fn the_scanner_sees_grouped_and_plain_paths() {
    let text = "use crate::{oci::name::Tag, pds};\nlet x = crate::server::App::new();";
    let named = named_modules(text);
    assert_eq!(
        named.into_iter().collect::<Vec<_>>(),
        ["oci", "pds", "server"]
    );
}

#[test]
fn no_rust_file_is_over_600_lines() {
    // Past that, a file holds more than one idea: split it along a seam.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches"] {
        rust_files(&root.join(dir), &mut files);
    }
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f).unwrap().lines().count();
            (lines > 600).then(|| format!("{}: {lines} lines", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "{}", long.join("\n"));
}
