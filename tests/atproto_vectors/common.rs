use std::path::PathBuf;

/// The vectors carried in the repository (`tests/vectors/`, provenance in its README): tests read
/// nothing outside the clone.
pub fn vectors(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors/atproto-interop-tests")
        .join(rel)
}

pub fn read(rel: &str) -> String {
    let p = vectors(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn json(rel: &str) -> serde_json::Value {
    serde_json::from_str(&read(rel)).unwrap()
}

/// The lines of a vector list: every line except empty ones and `#` comments, whitespace kept
/// (some vectors test leading and trailing spaces).
pub fn lines(rel: &str) -> Vec<String> {
    let v: Vec<String> = read(rel)
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    assert!(!v.is_empty(), "{rel} has no vectors");
    v
}

/// Runs `check` on every line of `valid` (must be true) and `invalid` (must be false), and
/// reports all mismatches at once.
pub fn check_lists(valid: &str, invalid: &str, check: impl Fn(&str) -> bool) {
    let mut wrong = Vec::new();
    for l in lines(valid) {
        if !check(&l) {
            wrong.push(format!("rejected valid {l:?}"));
        }
    }
    for l in lines(invalid) {
        if check(&l) {
            wrong.push(format!("accepted invalid {l:?}"));
        }
    }
    assert!(wrong.is_empty(), "{valid}: {wrong:#?}");
}
