//! Handles: DNS names that resolve to a DID.

use super::SyntaxError;

/// A handle (`alice.example.com`): a DNS hostname of at least two labels whose top-level label
/// does not start with a digit. Case is kept as written; compare with [`Handle::normalized`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle(String);

string_newtype!(Handle, check_handle);

pub(super) fn check_handle(s: &str) -> Result<(), SyntaxError> {
    let err = |reason| Err(SyntaxError::new("handle", reason));
    if s.len() > 253 {
        return err("longer than 253 characters");
    }
    let labels: Vec<&str> = s.split('.').collect();
    if labels.len() < 2 {
        return err("needs at least two labels");
    }
    for label in &labels {
        if label.is_empty() || label.len() > 63 {
            return err("label must be 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return err("disallowed character");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return err("label starts or ends with '-'");
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.starts_with(|c: char| c.is_ascii_digit()))
    {
        return err("top-level label starts with a digit");
    }
    Ok(())
}

impl Handle {
    /// The handle in lowercase, the form to compare and store.
    #[must_use]
    pub fn normalized(&self) -> Handle {
        Handle(self.0.to_ascii_lowercase())
    }
}
