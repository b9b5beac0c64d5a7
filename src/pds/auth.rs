//! JWTs, by hand: `base64url(header).base64url(claims).base64url(sig)` with the 64-byte
//! compact low-S ECDSA signature (`ES256` with the node's P-256 token key for sessions,
//! `ES256K` with the account's repository key for service auth).
//!
//! - access token: header `{"typ":"at+jwt","alg":"ES256"}`, claims `{scope:
//!   "com.atproto.access" | "com.atproto.appPass", sub, aud: <node did>, iat, exp (+2 h), jti,
//!   sid}` where `sid` is the refresh token's `jti`: an access token is only good while its
//!   session row exists, so `deleteSession`, `passwd` and app-password revocation end it.
//! - refresh token: header `{"typ":"refresh+jwt","alg":"ES256"}`, claims `{scope:
//!   "com.atproto.refresh", sub, aud, iat, exp (+90 d), jti}`; rotated on every refresh.
//! - service auth: header `{"typ":"JWT","alg":"ES256K"}`, claims `{iss, aud, exp (≤ 1 h), iat,
//!   jti, lxm?}`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::atproto::{Keypair, PublicKey};

pub const ACCESS_SECS: u64 = 2 * 3600;
pub const REFRESH_SECS: u64 = 90 * 86_400;
/// How long a used refresh token still refreshes, to the session that replaced it (as the
/// reference PDS does): a retried request, or two clients resuming one stored session, are not
/// logged out.
pub const REFRESH_GRACE_SECS: u64 = 2 * 3600;
pub const SERVICE_MAX_SECS: u64 = 3600;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("bad token signature")]
    Signature,
    #[error("token has expired")]
    Expired,
    #[error("wrong token type")]
    WrongType,
}

/// The claims of session tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub scope: String,
    pub sub: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// Signs a JWT with `key`.
#[must_use]
pub fn sign(key: &Keypair, typ: &str, claims: &serde_json::Value) -> String {
    let header = json!({"typ": typ, "alg": key.algorithm().jwt_alg()});
    sign_with_header(key, &header, claims)
}

/// A compact JWS of `claims` under `header` (which names `key`'s algorithm), signed with `key`.
#[must_use]
pub fn sign_with_header(
    key: &Keypair,
    header: &serde_json::Value,
    claims: &serde_json::Value,
) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// Verifies a JWT's signature and `typ`; returns its claims (expiry is the caller's check).
pub fn verify(token: &str, key: &PublicKey, typ: &str) -> Result<serde_json::Value, TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let decode = |p: &str| URL_SAFE_NO_PAD.decode(p).map_err(|_| TokenError::Malformed);
    let header: serde_json::Value =
        serde_json::from_slice(&decode(h)?).map_err(|_| TokenError::Malformed)?;
    if header["alg"].as_str() != Some(key.algorithm().jwt_alg()) {
        return Err(TokenError::Signature);
    }
    if header["typ"].as_str() != Some(typ) {
        return Err(TokenError::WrongType);
    }
    let sig = decode(s)?;
    let input_len = h.len() + 1 + c.len();
    key.verify(&token.as_bytes()[..input_len], &sig)
        .map_err(|_| TokenError::Signature)?;
    serde_json::from_slice(&decode(c)?).map_err(|_| TokenError::Malformed)
}

/// A session token pair.
#[derive(Debug, Clone)]
pub struct TokenPair {
    pub access: String,
    pub refresh: String,
    pub refresh_id: String,
    pub refresh_expires: u64,
}

/// Issues an access and a refresh token for `did` (`app`: opened with an app password).
#[must_use]
pub fn issue(key: &Keypair, node_did: &str, did: &str, app: bool, now: u64) -> TokenPair {
    issue_for(
        key,
        node_did,
        did,
        app,
        now,
        uuid::Uuid::new_v4().to_string(),
    )
}

/// Like [`issue`], for the existing session `refresh_id` (a refresh within the grace period).
#[must_use]
pub fn issue_for(
    key: &Keypair,
    node_did: &str,
    did: &str,
    app: bool,
    now: u64,
    refresh_id: String,
) -> TokenPair {
    let access = Claims {
        scope: if app {
            "com.atproto.appPass"
        } else {
            "com.atproto.access"
        }
        .into(),
        sub: did.into(),
        aud: node_did.into(),
        iat: now,
        exp: now + ACCESS_SECS,
        jti: uuid::Uuid::new_v4().to_string(),
        sid: Some(refresh_id.clone()),
    };
    let refresh = Claims {
        scope: "com.atproto.refresh".into(),
        sub: did.into(),
        aud: node_did.into(),
        iat: now,
        exp: now + REFRESH_SECS,
        jti: refresh_id.clone(),
        sid: None,
    };
    let to_json = |c: &Claims| serde_json::to_value(c).unwrap_or_default();
    TokenPair {
        access: sign(key, "at+jwt", &to_json(&access)),
        refresh: sign(key, "refresh+jwt", &to_json(&refresh)),
        refresh_id,
        refresh_expires: refresh.exp,
    }
}

/// Checks a session token: signature, type, audience and expiry.
pub fn check(
    token: &str,
    key: &PublicKey,
    typ: &str,
    node_did: &str,
    now: u64,
) -> Result<Claims, TokenError> {
    let claims: Claims =
        serde_json::from_value(verify(token, key, typ)?).map_err(|_| TokenError::Malformed)?;
    if claims.aud != node_did {
        return Err(TokenError::Signature);
    }
    if claims.exp <= now {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// Session tokens whose signature checked out, by the SHA-256 of type and token: a client
/// sends the same access token with every request, and its ES256 verification (≈0.45 ms) is
/// paid once. Only the signature check is remembered: expiry is checked on every use, and
/// revocation lives in the session table, which callers consult each time.
#[derive(Default)]
pub struct VerifiedTokens {
    map: std::sync::Mutex<std::collections::HashMap<[u8; 32], Claims>>,
}

/// How many verified tokens are remembered; when full, expired ones go, then all.
const VERIFIED_CAPACITY: usize = 4096;

impl VerifiedTokens {
    /// [`check`], remembering tokens that pass.
    pub fn check(
        &self,
        token: &str,
        key: &PublicKey,
        typ: &str,
        node_did: &str,
        now: u64,
    ) -> Result<Claims, TokenError> {
        use sha2::{Digest, Sha256};
        let id: [u8; 32] = Sha256::new()
            .chain_update(typ)
            .chain_update([0])
            .chain_update(token)
            .finalize()
            .into();
        let lock = || {
            self.map
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(claims) = lock().get(&id).cloned() {
            return if claims.exp <= now {
                Err(TokenError::Expired)
            } else {
                Ok(claims)
            };
        }
        let claims = check(token, key, typ, node_did, now)?;
        let mut map = lock();
        if map.len() >= VERIFIED_CAPACITY {
            map.retain(|_, c| c.exp > now);
            if map.len() >= VERIFIED_CAPACITY {
                map.clear();
            }
        }
        map.insert(id, claims.clone());
        Ok(claims)
    }
}

/// A service-auth JWT issued by `iss` for `aud`, optionally bound to one method (`lxm`).
#[must_use]
pub fn service_token(
    key: &Keypair,
    iss: &str,
    aud: &str,
    lxm: Option<&str>,
    now: u64,
    exp: u64,
) -> String {
    let mut claims = json!({
        "iss": iss,
        "aud": aud,
        "iat": now,
        "exp": exp,
        "jti": uuid::Uuid::new_v4().to_string(),
    });
    if let Some(l) = lxm {
        claims["lxm"] = json!(l);
    }
    sign(key, "JWT", &claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atproto::Algorithm;

    #[test]
    fn session_tokens_round_trip_and_expire() {
        let key = Keypair::generate(Algorithm::P256);
        let pair = issue(&key, "did:web:node", "did:plc:abc", false, 1000);
        let c = check(
            &pair.access,
            &key.public_key(),
            "at+jwt",
            "did:web:node",
            1001,
        )
        .unwrap();
        assert_eq!(c.sub, "did:plc:abc");
        assert_eq!(c.sid.as_deref(), Some(pair.refresh_id.as_str()));
        assert_eq!(
            check(
                &pair.access,
                &key.public_key(),
                "at+jwt",
                "did:web:node",
                1000 + ACCESS_SECS
            ),
            Err(TokenError::Expired)
        );
        // A refresh token is not an access token, and another key does not verify.
        assert_eq!(
            check(
                &pair.refresh,
                &key.public_key(),
                "at+jwt",
                "did:web:node",
                1001
            ),
            Err(TokenError::WrongType)
        );
        let other = Keypair::generate(Algorithm::P256);
        assert_eq!(
            check(
                &pair.access,
                &other.public_key(),
                "at+jwt",
                "did:web:node",
                1001
            ),
            Err(TokenError::Signature)
        );
        assert_eq!(
            check("a.b", &key.public_key(), "at+jwt", "did:web:node", 1),
            Err(TokenError::Malformed)
        );
        // Tampered claims break the signature.
        let mut parts: Vec<&str> = pair.access.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(r#"{"scope":"com.atproto.access","sub":"did:plc:evil","aud":"did:web:node","iat":1,"exp":99999,"jti":"x"}"#);
        parts[1] = &forged;
        assert_eq!(
            check(
                &parts.join("."),
                &key.public_key(),
                "at+jwt",
                "did:web:node",
                1001
            ),
            Err(TokenError::Signature)
        );
    }

    #[test]
    fn verified_tokens_are_remembered_but_still_expire() {
        let key = Keypair::generate(Algorithm::P256);
        let other = Keypair::generate(Algorithm::P256);
        let pair = issue(&key, "did:web:node", "did:plc:abc", false, 1000);
        let cache = VerifiedTokens::default();
        let check = |key: &Keypair, typ, now| {
            cache.check(&pair.access, &key.public_key(), typ, "did:web:node", now)
        };
        assert_eq!(check(&key, "at+jwt", 1001).unwrap().sub, "did:plc:abc");
        // A hit still checks expiry; a token of another type is not taken from the cache.
        assert_eq!(check(&key, "at+jwt", 1002).unwrap().sub, "did:plc:abc");
        assert!(matches!(
            check(&key, "at+jwt", 1000 + ACCESS_SECS),
            Err(TokenError::Expired)
        ));
        assert!(check(&key, "refresh+jwt", 1001).is_err());
        // What failed is not remembered as good.
        let forged = VerifiedTokens::default();
        for _ in 0..2 {
            let checked = forged.check(
                &pair.access,
                &other.public_key(),
                "at+jwt",
                "did:web:node",
                1001,
            );
            assert!(checked.is_err());
        }
    }

    #[test]
    fn service_tokens_are_es256k() {
        let key = Keypair::generate(Algorithm::K256);
        let t = service_token(
            &key,
            "did:plc:a",
            "did:web:b",
            Some("com.atproto.repo.uploadBlob"),
            10,
            70,
        );
        let claims = verify(&t, &key.public_key(), "JWT").unwrap();
        assert_eq!(claims["lxm"], "com.atproto.repo.uploadBlob");
        assert_eq!(claims["exp"], 70);
    }
}
