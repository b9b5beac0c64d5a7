//! Record keys.

use super::SyntaxError;

/// A record key: 1 to 512 characters of `A-Za-z0-9._:~-`, and not `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey(String);

string_newtype!(RecordKey, check_record_key);

pub(crate) fn check_record_key(s: &str) -> Result<(), SyntaxError> {
    let err = |reason| Err(SyntaxError::new("record key", reason));
    if s.is_empty() || s.len() > 512 {
        return err("must be 1 to 512 characters");
    }
    if s == "." || s == ".." {
        return err("may not be '.' or '..'");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'~' | b'-'))
    {
        return err("disallowed character");
    }
    Ok(())
}
