//! How secrets are stored: account passwords as argon2id PHC strings; app passwords, session
//! ids and other random, high-entropy secrets as SHA-256 digests.
//!
//! An app password is 80 random bits chosen by the node, so a slow hash buys nothing against a
//! stolen database while costing one argon2 run per app password on every login attempt: it is
//! checked with one SHA-256. App passwords stored as argon2 hashes by earlier versions still
//! verify (and are rewritten as SHA-256 on their next successful use).

use std::sync::LazyLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sha2::{Digest, Sha256};

/// The prefix of an app password stored as SHA-256 (see [`hash_app_password`]).
const APP_SHA256: &str = "$atcr-sha256$";

/// The prefix of a session id stored as SHA-256 (see [`session_key`]).
pub const SESSION_KEY_PREFIX: &str = "sha256:";

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed")]
pub struct HashError;

/// argon2id with OWASP's recommended configuration: 19 MiB, two passes, one lane. A check
/// costs no more memory than a push; logins run a bounded number of checks at once
/// (`login.rs`), so their memory is bounded too. Verification uses the parameters stored in
/// each hash: hashes made with other parameters (46 MiB, one pass, before) still verify.
fn hasher() -> argon2::Argon2<'static> {
    let params = argon2::Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// The fewest characters an account password may have. Every way of setting one checks it
/// ([`check_new_password`]): `atcr user add`/`passwd` (directly or through the admin socket)
/// and the first start's `accounts.admin_password_file`.
pub const MIN_PASSWORD_CHARS: usize = 8;

#[derive(Debug, thiserror::Error)]
#[error("a password must have at least {MIN_PASSWORD_CHARS} characters")]
pub struct TooShort;

/// Refuses a new account password shorter than [`MIN_PASSWORD_CHARS`].
pub fn check_new_password(password: &str) -> Result<(), TooShort> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(TooShort);
    }
    Ok(())
}

/// An argon2id hash (PHC string) of a password.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| HashError)
}

/// Whether `password` matches an argon2 hash (constant-time in the hash comparison).
#[must_use]
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| hasher().verify_password(password.as_bytes(), &h).is_ok())
}

/// The hash an unknown user's password is checked against, so that a login for an account
/// that does not exist costs the same argon2 run as one for an account that does.
pub static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let password = generate_app_password();
    hash_password(&password).unwrap_or_default()
});

/// A fresh app password in the reference PDS's shape (`xxxx-xxxx-xxxx-xxxx`, 80 bits).
#[must_use]
pub fn generate_app_password() -> String {
    use rand::Rng;
    let mut rng = rand::rngs::OsRng;
    let chunks: Vec<String> = (0..4)
        .map(|_| {
            (0..4)
                .map(|_| char::from(APP_ALPHABET[rng.gen_range(0..APP_ALPHABET.len())]))
                .collect()
        })
        .collect();
    chunks.join("-")
}

const APP_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Whether `password` has the shape of a generated app password: only such a password can
/// match an app password stored as argon2 by an earlier version.
#[must_use]
pub fn looks_like_app_password(password: &str) -> bool {
    password.len() == 19
        && password.bytes().enumerate().all(|(i, b)| {
            if i % 5 == 4 {
                b == b'-'
            } else {
                APP_ALPHABET.contains(&b)
            }
        })
}

/// How an app password is stored.
#[must_use]
pub fn hash_app_password(password: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"atcr-app-password\0")
        .chain_update(password)
        .finalize();
    format!("{APP_SHA256}{}", hex::encode(digest))
}

/// Whether `stored` is an app password hash of the fast kind ([`hash_app_password`]).
#[must_use]
pub fn is_fast_app_hash(stored: &str) -> bool {
    stored.starts_with(APP_SHA256)
}

/// Whether `password` matches a stored app password hash of the fast kind, given the
/// `candidate` ([`hash_app_password`] of the password, computed once for all app passwords).
#[must_use]
pub fn app_hash_matches(stored: &str, candidate: &str) -> bool {
    is_fast_app_hash(stored) && constant_time_eq(stored.as_bytes(), candidate.as_bytes())
}

/// The table key of a session id: only its SHA-256 is stored, so reading `pds.redb` gives no
/// cookie or token that opens a session.
#[must_use]
pub fn session_key(id: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"atcr-session\0")
        .chain_update(id)
        .finalize();
    format!("{SESSION_KEY_PREFIX}{}", hex::encode(digest))
}

/// Equality that takes the same time wherever the first difference is.
#[must_use]
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("hunter2").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password(&h, "hunter2"));
        assert!(!verify_password(&h, "hunter3"));
        assert!(!verify_password("garbage", "hunter2"));
        assert!(!verify_password(&DUMMY_HASH, "hunter2"));
    }

    #[test]
    fn hashes_with_other_parameters_still_verify() {
        // Made by the previous configuration (46 MiB, one pass).
        let params = argon2::Params::new(46 * 1024, 1, 1, None).unwrap();
        let old = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let h = old.hash_password(b"pw", &salt).unwrap().to_string();
        assert!(h.contains("m=47104,t=1,p=1"), "{h}");
        assert!(verify_password(&h, "pw"));
        assert!(!verify_password(&h, "px"));
    }

    #[test]
    fn app_passwords_are_fast_hashes() {
        let p = generate_app_password();
        assert!(looks_like_app_password(&p), "{p}");
        assert!(!looks_like_app_password("hunter2"));
        assert!(!looks_like_app_password("abcd-efgh-ijkl-mn01"));
        let stored = hash_app_password(&p);
        assert!(is_fast_app_hash(&stored));
        assert!(app_hash_matches(&stored, &hash_app_password(&p)));
        assert!(!app_hash_matches(&stored, &hash_app_password("other")));
        // An argon2 hash is never taken for a fast one.
        let slow = hash_password(&p).unwrap();
        assert!(!app_hash_matches(&slow, &slow));
    }

    #[test]
    fn session_keys_hide_the_id() {
        let k = session_key("cookie-value");
        assert!(k.starts_with(SESSION_KEY_PREFIX));
        assert!(!k.contains("cookie-value"));
        assert_eq!(k, session_key("cookie-value"));
        assert_ne!(k, session_key("cookie-valuf"));
    }
}
