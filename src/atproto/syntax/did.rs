//! Decentralized identifiers.

use super::SyntaxError;

/// A DID, checked against the generic DID grammar atproto uses
/// (`did:<lowercase method>:<id>`, at most 2 KiB, no query or fragment).
///
/// Method-specific rules (`did:plc`, `did:web`) are a separate check,
/// [`Did::check_atproto_method`], because a DID with another method is still a valid DID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Did(String);

string_newtype!(Did, check_did);

const KIND: &str = "did";

fn check_did(s: &str) -> Result<(), SyntaxError> {
    let err = |reason| Err(SyntaxError::new(KIND, reason));
    if s.len() > 2048 {
        return err("longer than 2048 characters");
    }
    let Some(rest) = s.strip_prefix("did:") else {
        return err("does not start with \"did:\"");
    };
    let Some((method, id)) = rest.split_once(':') else {
        return err("no method-specific identifier");
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_lowercase()) {
        return err("method must be lowercase letters");
    }
    if id.is_empty() {
        return err("empty method-specific identifier");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'%' | b'-'))
    {
        return err("disallowed character");
    }
    if id.ends_with(':') || id.ends_with('%') {
        return err("ends with ':' or '%'");
    }
    Ok(())
}

impl Did {
    /// The method name (`plc`, `web`, `key`, …).
    #[must_use]
    pub fn method(&self) -> &str {
        self.0[4..].split_once(':').map_or("", |(m, _)| m)
    }

    /// The method-specific identifier (after `did:<method>:`).
    #[must_use]
    pub fn method_specific_id(&self) -> &str {
        self.0[4..].split_once(':').map_or("", |(_, id)| id)
    }

    /// For a `did:web`, the host it names, with a percent-encoded port decoded
    /// (`did:web:localhost%3A8080` → `localhost:8080`).
    #[must_use]
    pub fn web_host(&self) -> Option<String> {
        (self.method() == "web").then(|| self.method_specific_id().replace("%3A", ":"))
    }

    /// Checks the rules atproto adds for the methods it supports, and rejects other methods.
    ///
    /// - `did:plc:` + 24 characters of base32 (`a-z2-7`);
    /// - `did:web:` + a hostname; percent-encoding only for the port of `localhost`
    ///   (`did:web:localhost%3A8080`); no paths.
    pub fn check_atproto_method(&self) -> Result<(), SyntaxError> {
        let id = self.method_specific_id();
        match self.method() {
            "plc" => {
                if id.len() == 24 && id.bytes().all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7')) {
                    Ok(())
                } else {
                    Err(SyntaxError::new(KIND, "did:plc needs 24 base32 characters"))
                }
            }
            "web" => check_web_id(id),
            _ => Err(SyntaxError::new(KIND, "method not supported by atproto")),
        }
    }
}

fn check_web_id(id: &str) -> Result<(), SyntaxError> {
    let err = |reason| Err(SyntaxError::new(KIND, reason));
    if id.contains(':') {
        return err("did:web paths are not allowed");
    }
    let (host, port) = match id.split_once('%') {
        None => (id, None),
        Some((host, port)) => {
            let Some(port) = port.strip_prefix("3A") else {
                return err("did:web allows percent-encoding only for a port");
            };
            (host, Some(port))
        }
    };
    if let Some(port) = port {
        if host != "localhost" {
            return err("did:web allows a port only for localhost");
        }
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return err("did:web port is not a number");
        }
        return Ok(());
    }
    if host == "localhost" || super::handle::check_handle(host).is_ok() {
        Ok(())
    } else {
        err("did:web host is not a valid hostname")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts() {
        let d: Did = "did:web:localhost%3A8080".parse().unwrap();
        assert_eq!(d.method(), "web");
        assert_eq!(d.web_host().as_deref(), Some("localhost:8080"));
        assert!(d.check_atproto_method().is_ok());
        let d: Did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz".parse().unwrap();
        assert!(d.check_atproto_method().is_ok());
        assert_eq!(d.method_specific_id(), "ewvi7nxzyoun6zhxrhs64oiz");
    }
}
