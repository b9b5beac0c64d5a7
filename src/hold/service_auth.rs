//! Service-auth JWTs presented to the hold: tokens a user's PDS issued through
//! `com.atproto.server.getServiceAuth` (see [`crate::pds::auth::service_token`] for ours).
//!
//! The rules are those of the reference `verifyJwt` (`@atproto/xrpc-server`), with the error
//! names it uses, all `401`:
//! - three base64url parts, a header with an `alg`, a `typ` that is not a session or `DPoP`
//!   token's (`BadJwt`, `BadJwtType`);
//! - claims `iss` (a DID: a `did#service` issuer is refused, unlike the reference, since a
//!   service's key must never act as the user), `aud`, `exp` (`BadJwt` when missing or mistyped);
//! - `exp` in the future (`JwtExpired`); `aud` the hold's DID (`BadJwtAudience`); `lxm` the
//!   method called, required (`BadJwtLexiconMethod`);
//! - and, beyond the reference: `exp` at most [`MAX_LIFETIME_SECS`] (plus [`CLOCK_SKEW_SECS`])
//!   ahead, as the reference PDS never issues longer tokens, and `iat`, when present, not in the
//!   future nor more than that lifetime before `exp` (`BadJwt`);
//! - the signature (ES256K or ES256, compact low-S) against the `#atproto` key of the issuer's
//!   DID document (`BadJwtSignature`), checked last: [`ServiceToken::parse`] costs no I/O, and
//!   the caller decides whether the issuer is worth resolving.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;

use super::Permission;
use super::xrpc::HoldMethod;
use crate::atproto::{Did, PublicKey};
use crate::pds::accounts::now_secs;
use crate::pds::auth::SERVICE_MAX_SECS;
use crate::pds::xrpc::{Call, XrpcError};

/// The longest lifetime a token may claim: what the reference PDS (and ours) issue at most.
pub const MAX_LIFETIME_SECS: u64 = SERVICE_MAX_SECS;
/// How far the issuer's clock may run ahead of the hold's.
pub const CLOCK_SKEW_SECS: u64 = 60;
/// Largest token accepted: a service JWT is a few hundred bytes.
const MAX_TOKEN_BYTES: usize = 8 << 10;

/// Why a service token was refused; each maps to the reference's XRPC error name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceAuthError {
    #[error("poorly formatted jwt: {0}")]
    BadJwt(&'static str),
    #[error("invalid jwt type {0:?}")]
    BadJwtType(String),
    #[error("jwt expired")]
    Expired,
    #[error("jwt audience does not match the hold's did")]
    BadAudience,
    #[error("missing jwt lexicon method (\"lxm\"); must match {0}")]
    MissingLxm(&'static str),
    #[error("bad jwt lexicon method (\"lxm\"); must match {0}")]
    BadLxm(&'static str),
    #[error("jwt signature does not match jwt issuer")]
    BadSignature,
    #[error("the issuer's signing key could not be resolved: {0}")]
    Unresolved(String),
}

impl From<ServiceAuthError> for XrpcError {
    fn from(e: ServiceAuthError) -> Self {
        use ServiceAuthError as E;
        let name = match &e {
            E::BadJwt(_) => "BadJwt",
            E::BadJwtType(_) => "BadJwtType",
            E::Expired => "JwtExpired",
            E::BadAudience => "BadJwtAudience",
            E::MissingLxm(_) | E::BadLxm(_) => "BadJwtLexiconMethod",
            E::BadSignature | E::Unresolved(_) => "BadJwtSignature",
        };
        XrpcError::new(StatusCode::UNAUTHORIZED, name, e.to_string())
    }
}

/// A service token whose claims checked out, its signature not yet.
#[derive(Debug, Clone)]
pub struct ServiceToken {
    /// The issuer's DID (`iss`).
    pub issuer: Did,
    /// The verification method the signature must be checked with: `atproto`.
    pub key_id: &'static str,
    /// The JWT `alg` of the header.
    alg: String,
    /// `header.claims`, the signed bytes.
    signed: String,
    signature: Vec<u8>,
}

impl ServiceToken {
    /// Decodes `token` and checks everything but the signature for a call of `lxm` to the
    /// hold `aud`, at `now` (unix seconds).
    pub fn parse(
        token: &str,
        aud: &Did,
        lxm: &'static str,
        now: u64,
    ) -> Result<Self, ServiceAuthError> {
        use ServiceAuthError as E;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(E::BadJwt("too long"));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(E::BadJwt("not three parts"));
        };
        let json = |part: &str| -> Result<serde_json::Value, ServiceAuthError> {
            let bytes = URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| E::BadJwt("not base64url"))?;
            let v: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|_| E::BadJwt("not JSON"))?;
            v.is_object().then_some(v).ok_or(E::BadJwt("not an object"))
        };
        let header = json(h)?;
        let alg = header["alg"]
            .as_str()
            .ok_or(E::BadJwt("no alg"))?
            .to_owned();
        if let Some(typ @ ("at+jwt" | "refresh+jwt" | "dpop+jwt")) = header["typ"].as_str() {
            return Err(E::BadJwtType(typ.to_owned()));
        }
        let claims = json(c)?;
        let iss = claims["iss"].as_str().ok_or(E::BadJwt("no iss"))?;
        let claimed_aud = claims["aud"].as_str().ok_or(E::BadJwt("no aud"))?;
        let exp = claims["exp"]
            .as_u64()
            .ok_or(E::BadJwt("exp is no unix time"))?;
        let (issuer, key_id) = issuer(iss)?;
        if exp <= now {
            return Err(E::Expired);
        }
        if exp > now + MAX_LIFETIME_SECS + CLOCK_SKEW_SECS {
            return Err(E::BadJwt("exp is more than an hour away"));
        }
        match &claims["iat"] {
            serde_json::Value::Null => {}
            iat => {
                let iat = iat.as_u64().ok_or(E::BadJwt("iat is no unix time"))?;
                if iat > now + CLOCK_SKEW_SECS {
                    return Err(E::BadJwt("iat is in the future"));
                }
                if exp.saturating_sub(iat) > MAX_LIFETIME_SECS + CLOCK_SKEW_SECS {
                    return Err(E::BadJwt("lifetime longer than an hour"));
                }
            }
        }
        if claimed_aud != aud.as_str() {
            return Err(E::BadAudience);
        }
        match &claims["lxm"] {
            serde_json::Value::Null => return Err(E::MissingLxm(lxm)),
            serde_json::Value::String(l) if l == lxm => {}
            _ => return Err(E::BadLxm(lxm)),
        }
        let signature = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| E::BadJwt("signature is not base64url"))?;
        Ok(ServiceToken {
            issuer,
            key_id,
            alg,
            signed: format!("{h}.{c}"),
            signature,
        })
    }

    /// Checks the signature with the issuer's key (whose curve must be the header's `alg`).
    pub fn verify(&self, key: &PublicKey) -> Result<(), ServiceAuthError> {
        if key.algorithm().jwt_alg() != self.alg {
            return Err(ServiceAuthError::BadSignature);
        }
        key.verify(self.signed.as_bytes(), &self.signature)
            .map_err(|_| ServiceAuthError::BadSignature)
    }
}

impl super::Hold {
    /// The caller of `method`, authenticated by a service token and allowed `want` by the
    /// crew rules. Whether the issuer may do `want` is decided before its DID document is
    /// resolved, so a stranger's token costs no fetch; a refusal then is `403 Forbidden`.
    pub(super) async fn authorize(
        &self,
        call: &Call,
        method: HoldMethod,
        want: Permission,
    ) -> Result<Did, XrpcError> {
        let parsed = self.service_token(call, method)?;
        self.check_permission(&parsed.issuer, want)?;
        self.verify_issuer(&parsed).await?;
        Ok(parsed.issuer)
    }

    /// The call's service token for `method`, its claims checked, its signature not yet (no
    /// I/O): for methods whose permission depends on their input.
    pub(super) fn service_token(
        &self,
        call: &Call,
        method: HoldMethod,
    ) -> Result<ServiceToken, XrpcError> {
        let token = call.bearer().ok_or_else(|| {
            XrpcError::auth_required(format!("{} needs a service-auth token", method.nsid()))
        })?;
        Ok(ServiceToken::parse(
            token,
            &self.pds.node_did,
            method.nsid(),
            now_secs(),
        )?)
    }

    /// Who asks to join: a local account (its session), or anyone whose PDS signed a service
    /// token for this hold and `requestCrew` (how users of other PDSes ask, through their PDS's
    /// `com.atproto.server.getServiceAuth`, as ATCR's `AppView` does for its users). The
    /// issuer's DID document is fetched only when the hold takes new members at all.
    pub(super) async fn crew_applicant(&self, call: &Call) -> Result<Did, XrpcError> {
        let token = call
            .bearer()
            .ok_or_else(|| XrpcError::auth_required("authentication required"))?;
        let lxm = "io.atcr.hold.requestCrew";
        match ServiceToken::parse(token, &self.pds.node_did, lxm, now_secs()) {
            Ok(parsed) => {
                let captain = self.ensure_captain().await?;
                if !captain.allow_all_crew && parsed.issuer != captain.owner {
                    return Err(XrpcError::new(
                        StatusCode::FORBIDDEN,
                        "RegistrationDisabled",
                        "this hold does not take new crew members",
                    ));
                }
                self.verify_issuer(&parsed).await?;
                Ok(parsed.issuer)
            }
            Err(ServiceAuthError::BadJwtType(_)) => {
                Ok(crate::pds::xrpc::authenticate(&self.pds, call)?.did)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Refuses `caller` unless the crew rules allow `want`.
    pub(super) fn check_permission(&self, caller: &Did, want: Permission) -> Result<(), XrpcError> {
        if self.allows(Some(caller), want)? {
            return Ok(());
        }
        Err(XrpcError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("{caller} may not {} on this hold", want.as_str()),
        ))
    }

    /// Checks a token's signature with the issuer's key; once more with a freshly fetched key
    /// if it fails (the key may have been rotated), as the reference does.
    pub(super) async fn verify_issuer(&self, token: &ServiceToken) -> Result<(), ServiceAuthError> {
        let resolve = |refresh| {
            self.resolver
                .signing_key(&self.pds, &token.issuer, token.key_id, refresh)
        };
        let key = resolve(false).await.map_err(ServiceAuthError::Unresolved)?;
        if token.verify(&key).is_ok() {
            return Ok(());
        }
        match resolve(true).await {
            Ok(fresh) if fresh != key => token.verify(&fresh),
            _ => Err(ServiceAuthError::BadSignature),
        }
    }
}

/// The DID and verification method `iss` names. The hold serves users, who sign with their
/// account key: an `iss` with a fragment names a service of that DID (a labeler, say), whose
/// key must never act as the user's, so it is refused.
fn issuer(iss: &str) -> Result<(Did, &'static str), ServiceAuthError> {
    if iss.contains('#') {
        return Err(ServiceAuthError::BadJwt(
            "iss names a service (#fragment); the hold accepts user tokens only",
        ));
    }
    let (did, key_id) = (iss, "atproto");
    let did: Did = did
        .parse()
        .map_err(|_| ServiceAuthError::BadJwt("iss is not a DID"))?;
    did.check_atproto_method()
        .map_err(|_| ServiceAuthError::BadJwt("iss is not a did:plc or did:web"))?;
    Ok((did, key_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atproto::{Algorithm, Keypair};
    use crate::pds::auth::{service_token, sign};
    use serde_json::json;

    const ALICE: &str = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";
    const NOW: u64 = 1_700_000_000;
    const LXM: &str = "io.atcr.hold.initiateUpload";

    fn hold() -> Did {
        "did:web:hold.example".parse().unwrap()
    }

    fn parse(token: &str) -> Result<ServiceToken, ServiceAuthError> {
        ServiceToken::parse(token, &hold(), LXM, NOW)
    }

    fn token(key: &Keypair, claims: &serde_json::Value) -> String {
        sign(key, "JWT", claims)
    }

    #[test]
    fn a_token_from_our_pds_verifies_with_either_curve() {
        for alg in [Algorithm::K256, Algorithm::P256] {
            let key = Keypair::generate(alg);
            let t = service_token(&key, ALICE, hold().as_str(), Some(LXM), NOW, NOW + 60);
            let parsed = parse(&t).unwrap();
            assert_eq!(parsed.issuer.as_str(), ALICE);
            assert_eq!(parsed.key_id, "atproto");
            parsed.verify(&key.public_key()).unwrap();
            // Another key, or a key of the other curve, does not verify.
            let other = Keypair::generate(alg);
            assert_eq!(
                parsed.verify(&other.public_key()),
                Err(ServiceAuthError::BadSignature)
            );
            let curve = match alg {
                Algorithm::K256 => Algorithm::P256,
                Algorithm::P256 => Algorithm::K256,
            };
            let other = Keypair::generate(curve);
            assert_eq!(
                parsed.verify(&other.public_key()),
                Err(ServiceAuthError::BadSignature)
            );
        }
    }

    #[test]
    fn claims_are_checked_in_the_reference_order_with_its_names() {
        use ServiceAuthError as E;
        let key = Keypair::generate(Algorithm::K256);
        let hold = hold();
        let t = |aud: &str, lxm: Option<&str>, iat: u64, exp: u64| {
            service_token(&key, ALICE, aud, lxm, iat, exp)
        };
        assert_eq!(
            parse(&t(hold.as_str(), Some(LXM), NOW - 120, NOW)).unwrap_err(),
            E::Expired
        );
        assert_eq!(
            parse(&t("did:web:other.example", Some(LXM), NOW, NOW + 60)).unwrap_err(),
            E::BadAudience
        );
        assert_eq!(
            parse(&t(hold.as_str(), None, NOW, NOW + 60)).unwrap_err(),
            E::MissingLxm(LXM)
        );
        assert_eq!(
            parse(&t(
                hold.as_str(),
                Some("io.atcr.hold.abortUpload"),
                NOW,
                NOW + 60
            ))
            .unwrap_err(),
            E::BadLxm(LXM)
        );
        // Too long a lifetime, or issued in the future.
        let far = NOW + MAX_LIFETIME_SECS + CLOCK_SKEW_SECS + 1;
        assert!(matches!(
            parse(&t(hold.as_str(), Some(LXM), NOW, far)),
            Err(E::BadJwt(_))
        ));
        assert!(matches!(
            parse(&t(hold.as_str(), Some(LXM), NOW + 600, NOW + 660)),
            Err(E::BadJwt(_))
        ));
        // Within the skew both ways, it passes.
        assert!(
            parse(&t(
                hold.as_str(),
                Some(LXM),
                NOW + 30,
                NOW + MAX_LIFETIME_SECS
            ))
            .is_ok()
        );
    }

    #[test]
    fn malformed_tokens_and_session_types_are_refused() {
        use ServiceAuthError as E;
        let key = Keypair::generate(Algorithm::K256);
        let good = json!({"iss": ALICE, "aud": hold().as_str(), "exp": NOW + 60, "lxm": LXM});
        assert!(parse(&token(&key, &good)).is_ok());
        for bad in ["", "a.b", "a.b.c.d", "!!.??.**"] {
            assert!(matches!(parse(bad), Err(E::BadJwt(_))), "{bad}");
        }
        assert!(matches!(
            parse(&"a".repeat(MAX_TOKEN_BYTES + 1)),
            Err(E::BadJwt(_))
        ));
        for typ in ["at+jwt", "refresh+jwt", "dpop+jwt"] {
            assert_eq!(
                parse(&sign(&key, typ, &good)).unwrap_err(),
                E::BadJwtType(typ.into())
            );
        }
        let mut claims = good.clone();
        claims["iss"] = json!("not-a-did");
        assert!(matches!(parse(&token(&key, &claims)), Err(E::BadJwt(_))));
        claims["iss"] = json!("did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme");
        assert!(matches!(parse(&token(&key, &claims)), Err(E::BadJwt(_))));
        // A service of the user's DID (a labeler's key, say) never acts as the user.
        for service in ["#atproto_labeler", "#atproto", "#anything"] {
            claims["iss"] = json!(format!("{ALICE}{service}"));
            assert!(matches!(parse(&token(&key, &claims)), Err(E::BadJwt(_))));
        }
        let mut claims = good.clone();
        claims["exp"] = json!("soon");
        assert!(matches!(parse(&token(&key, &claims)), Err(E::BadJwt(_))));
        let mut claims = good;
        claims["lxm"] = json!(7);
        assert_eq!(parse(&token(&key, &claims)).unwrap_err(), E::BadLxm(LXM));
    }

    #[test]
    fn tampered_claims_break_the_signature() {
        let key = Keypair::generate(Algorithm::K256);
        let t = service_token(&key, ALICE, hold().as_str(), Some(LXM), NOW, NOW + 60);
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        let forged = json!({"iss": "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb", "aud": hold().as_str(),
            "exp": NOW + 60, "lxm": LXM});
        parts[1] = URL_SAFE_NO_PAD.encode(forged.to_string());
        let parsed = parse(&parts.join(".")).unwrap();
        assert_eq!(
            parsed.verify(&key.public_key()),
            Err(ServiceAuthError::BadSignature)
        );
    }

    #[test]
    fn errors_carry_the_reference_names() {
        let e: XrpcError = ServiceAuthError::MissingLxm(LXM).into();
        assert_eq!(
            (e.status, e.error),
            (StatusCode::UNAUTHORIZED, "BadJwtLexiconMethod")
        );
        let e: XrpcError = ServiceAuthError::Expired.into();
        assert_eq!(e.error, "JwtExpired");
    }
}
