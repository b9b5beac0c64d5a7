//! Namespaced identifiers of lexicons and collections.

use super::SyntaxError;

/// An NSID (`io.atcr.manifest`): a reversed domain authority and a name, at least three
/// segments, at most 317 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nsid(String);

string_newtype!(Nsid, check_nsid);

fn check_nsid(s: &str) -> Result<(), SyntaxError> {
    let err = |reason| Err(SyntaxError::new("nsid", reason));
    if s.len() > 253 + 1 + 63 {
        return err("longer than 317 characters");
    }
    let segments: Vec<&str> = s.split('.').collect();
    if segments.len() < 3 {
        return err("needs at least three segments");
    }
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        if seg.is_empty() || seg.len() > 63 {
            return err("segment must be 1 to 63 characters");
        }
        if i == last {
            let mut b = seg.bytes();
            if !b.next().is_some_and(|c| c.is_ascii_alphabetic())
                || !b.all(|c| c.is_ascii_alphanumeric())
            {
                return err("name must be a letter followed by letters and digits");
            }
        } else {
            if !seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return err("disallowed character in authority");
            }
            if seg.starts_with('-') || seg.ends_with('-') {
                return err("segment starts or ends with '-'");
            }
            if i == 0 && seg.starts_with(|c: char| c.is_ascii_digit()) {
                return err("first segment starts with a digit");
            }
        }
    }
    Ok(())
}

impl Nsid {
    /// The authority part in domain order (`io.atcr.manifest` → `atcr.io`).
    #[must_use]
    pub fn authority(&self) -> String {
        let mut parts: Vec<&str> = self.0.split('.').collect();
        parts.pop();
        parts.reverse();
        parts.join(".")
    }

    /// The last segment (`manifest`).
    #[must_use]
    pub fn name(&self) -> &str {
        self.0.rsplit('.').next().unwrap_or("")
    }
}
