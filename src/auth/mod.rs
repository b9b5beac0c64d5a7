//! Docker token auth: the scopes each registry request needs, the bearer tokens that grant
//! them, and the `/auth/token` service that issues tokens by the hold's rules.
//!
//! Imports `appview`, `hold`, `pds`, `oci` and `http`; never `registry`, `web` or `server`.

mod rules;
pub mod scope;
pub mod service;
pub mod token;

use std::fmt::Write as _;

use http::HeaderValue;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};

pub use scope::{Access, Action, Resource, Scope};
pub use token::{Grant, TOKEN_SECS, Tokens};

use crate::oci::{ErrorCode, OciEndpoint, OciError};

/// What an endpoint needs: an action on a resource. `None` (the `/v2/` probe) needs only a
/// valid token, anonymous or not.
#[must_use]
pub fn required(endpoint: &OciEndpoint) -> Option<Scope> {
    let (resource, action) = match endpoint {
        OciEndpoint::Base => return None,
        OciEndpoint::Catalog { .. } => (Resource::Catalog, Action::Pull),
        OciEndpoint::ListTags { name, .. }
        | OciEndpoint::GetManifest { name, .. }
        | OciEndpoint::GetBlob { name, .. }
        | OciEndpoint::Referrers { name, .. } => {
            (Resource::Repository(name.to_string()), Action::Pull)
        }
        OciEndpoint::PutManifest { name, .. }
        | OciEndpoint::StartUpload { name, .. }
        | OciEndpoint::UploadStatus { name, .. }
        | OciEndpoint::PatchUpload { name, .. }
        | OciEndpoint::FinishUpload { name, .. }
        | OciEndpoint::CancelUpload { name, .. } => {
            (Resource::Repository(name.to_string()), Action::Push)
        }
        OciEndpoint::DeleteManifest { name, .. } | OciEndpoint::DeleteBlob { name, .. } => {
            (Resource::Repository(name.to_string()), Action::Delete)
        }
    };
    // Pushing clients ask for pull too (they check what exists); challenge for both.
    let mut actions = std::collections::BTreeSet::from([action]);
    if action == Action::Push {
        actions.insert(Action::Pull);
    }
    Some(Scope { resource, actions })
}

/// Where clients get tokens: the `realm` and `service` of `WWW-Authenticate` challenges.
#[derive(Debug, Clone)]
pub struct Realm {
    pub realm: String,
    pub service: String,
}

impl Realm {
    /// `Bearer realm="…",service="…"[,scope="…"][,error="…"[,error_description="…"]]`.
    #[must_use]
    pub fn challenge(&self, scope: Option<&Scope>, error: Option<(&str, &str)>) -> HeaderValue {
        let mut v = format!(
            "Bearer realm=\"{}\",service=\"{}\"",
            self.realm, self.service
        );
        if let Some(s) = scope {
            let _ = write!(v, ",scope=\"{}\"", s.to_challenge());
        }
        if let Some((error, description)) = error {
            let _ = write!(v, ",error=\"{error}\"");
            // A quoted-string of visible ASCII (RFC 6750 §3): Docker shows it as the reason.
            let description: String = description
                .chars()
                .filter(|c| (c.is_ascii_graphic() || *c == ' ') && !matches!(c, '"' | '\\'))
                .collect();
            if !description.is_empty() {
                let _ = write!(v, ",error_description=\"{description}\"");
            }
        }
        HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }
}

fn unauthorized(
    realm: &dyn Fn() -> Realm,
    scope: Option<&Scope>,
    error: Option<(&str, &str)>,
    message: &str,
) -> OciError {
    OciError::new(ErrorCode::Unauthorized, message)
        .with_header(WWW_AUTHENTICATE, realm().challenge(scope, error))
}

/// Checks a registry request's bearer token against what `endpoint` needs. No token, or a bad
/// one: 401 with a challenge. A token short of the scope: 401 with `error="insufficient_scope"`
/// and the scope, as Distribution answers, so that a client reusing a token across scopes
/// gets one for this scope and retries; the same request with the same token again within a
/// minute: 403 with the same challenge (RFC 6750's status for `insufficient_scope`), which
/// clients that ignored the 401 act on. When the rules (`service`'s) refuse the scope, a new
/// token would not help: the answer then says why, in the challenge's `error_description` and
/// in the body (`DENIED` for a named caller), so that clients stop at once and show it.
/// `request` (method and URI) names the request for that bookkeeping.
pub fn authorize(
    service: &service::TokenService,
    realm: &dyn Fn() -> Realm,
    endpoint: &OciEndpoint,
    request: (&http::Method, &http::Uri),
    headers: &http::HeaderMap,
    now: u64,
) -> Result<Grant, OciError> {
    let needed = required(endpoint);
    let Some(token) = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
    else {
        return Err(unauthorized(
            realm,
            needed.as_ref(),
            None,
            "authentication required",
        ));
    };
    let grant = service.tokens.verify(token.trim(), now).map_err(|e| {
        tracing::debug!(error = %e, "registry token refused");
        let message = e.to_string();
        unauthorized(
            realm,
            needed.as_ref(),
            Some(("invalid_token", &message)),
            &message,
        )
    })?;
    let Some(scope) = &needed else {
        return Ok(grant);
    };
    // Pushing clients ask for pull too, but a push only needs push.
    let missing: Vec<Action> = scope
        .actions
        .iter()
        .copied()
        .filter(|a| *a != Action::Pull || !scope.actions.contains(&Action::Push))
        .filter(|a| !grant.allows(&scope.resource, *a))
        .collect();
    if missing.is_empty() {
        return Ok(grant);
    }
    let caller = grant.subject.as_ref();
    let mut reason = None;
    for action in missing {
        reason = service.refusal(caller, &scope.resource, action)?;
        if reason.is_some() {
            break;
        }
    }
    let refused = match (reason, caller) {
        (None, _) => OciError::new(
            ErrorCode::Unauthorized,
            "the token does not grant this scope: get a token for it",
        ),
        (Some(reason), None) => OciError::new(ErrorCode::Unauthorized, reason),
        (Some(reason), Some(_)) => OciError::new(ErrorCode::Denied, reason),
    };
    let challenge = realm().challenge(Some(scope), Some(("insufficient_scope", &refused.message)));
    let status =
        if service.refused_again(token.trim(), &format!("{} {}", request.0, request.1), now) {
            http::StatusCode::FORBIDDEN
        } else {
            http::StatusCode::UNAUTHORIZED
        };
    Err(refused
        .with_status(status)
        .with_detail(serde_json::json!({ "scope": scope.to_challenge() }))
        .with_header(WWW_AUTHENTICATE, challenge))
}
