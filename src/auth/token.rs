//! Registry bearer tokens: ES256 JWTs signed with the node's P-256 token key.
//!
//! Header `{"typ":"JWT","alg":"ES256"}`; claims `{iss: <node did>, sub: <caller did or "">,
//! aud: <service>, iat, nbf, exp (+5 min), jti, access: [{type, name, actions}]}`. The PDS's
//! session tokens share the key but not the `typ` (`at+jwt`) nor the audience (the node DID),
//! so neither kind passes for the other.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use super::scope::{Access, Action, Resource};
use crate::atproto::{Did, Keypair, PublicKey};
use crate::pds::auth::{self, TokenError};

/// How long a registry token lives.
pub const TOKEN_SECS: u64 = 300;
/// Clock skew tolerated on `nbf`.
const SKEW_SECS: u64 = 30;
const TYP: &str = "JWT";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: String,
    #[serde(default)]
    access: Vec<Access>,
}

/// What a verified token lets its bearer do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grant {
    /// The caller; `None` for an anonymous token.
    pub subject: Option<Did>,
    pub access: Vec<Access>,
}

impl Grant {
    #[must_use]
    pub fn allows(&self, resource: &Resource, action: Action) -> bool {
        self.access.iter().any(|a| a.grants(resource, action))
    }
}

/// Verified tokens remembered, at most (a client reuses its token for every request of a
/// push or pull; checking an ECDSA signature each time would cost more than serving a small
/// blob).
const VERIFIED_CACHE: usize = 4096;

/// A token whose signature and claims checked out: its grant and validity period.
type Verified = (Grant, u64, u64);

/// Issues and checks registry tokens for one service.
#[derive(Clone)]
pub struct Tokens {
    key: std::sync::Arc<Keypair>,
    public: PublicKey,
    issuer: String,
    service: String,
    /// token → (grant, nbf, exp) of tokens verified before.
    verified: std::sync::Arc<Mutex<HashMap<String, Verified>>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("issuer", &self.issuer)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    #[must_use]
    pub fn new(key: std::sync::Arc<Keypair>, issuer: &Did, service: &str) -> Tokens {
        Tokens {
            public: key.public_key(),
            key,
            issuer: issuer.as_str().to_owned(),
            service: service.to_owned(),
            verified: std::sync::Arc::default(),
        }
    }

    /// The `service` of challenges and the `aud` of tokens.
    #[must_use]
    pub fn service(&self) -> &str {
        &self.service
    }

    /// A token for `subject` (anonymous when `None`) granting `access`, valid from `now`.
    #[must_use]
    pub fn issue(&self, subject: Option<&Did>, access: Vec<Access>, now: u64) -> String {
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: subject.map(|d| d.as_str().to_owned()).unwrap_or_default(),
            aud: self.service.clone(),
            iat: now,
            nbf: now.saturating_sub(SKEW_SECS),
            exp: now + TOKEN_SECS,
            jti: uuid::Uuid::new_v4().to_string(),
            access,
        };
        auth::sign(
            &self.key,
            TYP,
            &serde_json::to_value(&claims).unwrap_or_default(),
        )
    }

    /// Checks signature, algorithm, type, issuer, audience and validity period.
    pub fn verify(&self, token: &str, now: u64) -> Result<Grant, TokenError> {
        let remembered = self.lock().get(token).cloned();
        let (grant, nbf, exp) = if let Some(v) = remembered {
            v
        } else {
            let v = self.verify_signed(token)?;
            let mut cache = self.lock();
            if cache.len() >= VERIFIED_CACHE {
                cache.retain(|_, (_, _, exp)| *exp > now);
                if cache.len() >= VERIFIED_CACHE / 2 {
                    cache.clear();
                }
            }
            cache.insert(token.to_owned(), v.clone());
            v
        };
        if exp <= now || nbf > now + SKEW_SECS {
            return Err(TokenError::Expired);
        }
        Ok(grant)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Verified>> {
        self.verified.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Everything but the validity period.
    fn verify_signed(&self, token: &str) -> Result<Verified, TokenError> {
        let claims: Claims = serde_json::from_value(auth::verify(token, &self.public, TYP)?)
            .map_err(|_| TokenError::Malformed)?;
        if claims.aud != self.service || claims.iss != self.issuer {
            return Err(TokenError::Signature);
        }
        let subject = if claims.sub.is_empty() {
            None
        } else {
            Some(claims.sub.parse().map_err(|_| TokenError::Malformed)?)
        };
        Ok((
            Grant {
                subject,
                access: claims.access,
            },
            claims.nbf,
            claims.exp,
        ))
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    use super::*;
    use crate::atproto::Algorithm;
    use crate::auth::scope::Scope;

    fn tokens() -> Tokens {
        let key = std::sync::Arc::new(Keypair::generate(Algorithm::P256));
        Tokens::new(key, &"did:web:reg.lan".parse().unwrap(), "reg.lan")
    }

    fn access(scope: &str) -> Vec<Access> {
        vec![Access::from_scope(&Scope::parse(scope).unwrap())]
    }

    #[test]
    fn tokens_round_trip() {
        let t = tokens();
        let alice: Did = "did:plc:alice".parse().unwrap();
        let token = t.issue(Some(&alice), access("repository:alice/app:pull,push"), 1000);
        let grant = t.verify(&token, 1001).unwrap();
        assert_eq!(grant.subject, Some(alice));
        let app = Resource::Repository("alice/app".into());
        assert!(grant.allows(&app, Action::Push));
        assert!(!grant.allows(&app, Action::Delete));
        let anon = t.verify(&t.issue(None, vec![], 1000), 1000).unwrap();
        assert_eq!(anon.subject, None);
        assert!(!anon.allows(&app, Action::Pull));
    }

    #[test]
    fn expired_wrong_audience_wrong_key_and_unsigned_tokens_are_refused() {
        let t = tokens();
        let token = t.issue(None, access("repository:a/b:pull"), 1000);
        assert!(t.verify(&token, 1001).is_ok());
        // Remembered now, and still expiring.
        assert_eq!(
            t.verify(&token, 1000 + TOKEN_SECS),
            Err(TokenError::Expired)
        );
        assert_eq!(t.verify(&token, 1000 - 120), Err(TokenError::Expired));

        let other_service = Tokens::new(t.key.clone(), &"did:web:reg.lan".parse().unwrap(), "x");
        let token = other_service.issue(None, vec![], 1000);
        assert_eq!(t.verify(&token, 1000), Err(TokenError::Signature));

        let other_key = tokens();
        let token = other_key.issue(None, vec![], 1000);
        assert_eq!(t.verify(&token, 1000), Err(TokenError::Signature));

        // alg none, and a P-256 signature lifted onto altered claims.
        let claims = json!({"iss": "did:web:reg.lan", "sub": "did:plc:evil", "aud": "reg.lan",
            "iat": 1000, "nbf": 1000, "exp": 2000, "jti": "x",
            "access": [{"type": "repository", "name": "a/b", "actions": ["push"]}]});
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        assert!(t.verify(&none, 1000).is_err());
        let real = t.issue(None, access("repository:a/b:pull"), 1000);
        let mut parts: Vec<&str> = real.split('.').collect();
        let forged_claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        parts[1] = &forged_claims;
        assert_eq!(t.verify(&parts.join("."), 1000), Err(TokenError::Signature));

        // A PDS session token signed by the same key is not a registry token.
        let pair = auth::issue(&t.key, "did:web:reg.lan", "did:plc:alice", false, 1000);
        assert!(t.verify(&pair.access, 1000).is_err());
    }
}
