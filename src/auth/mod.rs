//! Docker token auth: the scopes each registry request needs, the bearer tokens that grant
//! them, and the `/auth/token` service that issues tokens by the hold's rules.

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
    /// `Bearer realm="…",service="…"[,scope="…"][,error="…"]`.
    #[must_use]
    pub fn challenge(&self, scope: Option<&Scope>, error: Option<&str>) -> HeaderValue {
        let mut v = format!(
            "Bearer realm=\"{}\",service=\"{}\"",
            self.realm, self.service
        );
        if let Some(s) = scope {
            let _ = write!(v, ",scope=\"{}\"", s.to_challenge());
        }
        if let Some(e) = error {
            let _ = write!(v, ",error=\"{e}\"");
        }
        HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }
}

fn unauthorized(
    realm: &dyn Fn() -> Realm,
    scope: Option<&Scope>,
    error: Option<&str>,
    message: &str,
) -> OciError {
    OciError::new(ErrorCode::Unauthorized, message)
        .with_header(WWW_AUTHENTICATE, realm().challenge(scope, error))
}

/// Checks a registry request's bearer token against what `endpoint` needs. No token, or a bad
/// one: 401 with a challenge. A token short of the scope: 401 if anonymous (so the client
/// retries with credentials, and learns nothing of whether the repository exists), 403
/// `DENIED` if it names a caller.
pub fn authorize(
    tokens: &Tokens,
    realm: &dyn Fn() -> Realm,
    endpoint: &OciEndpoint,
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
    let grant = tokens.verify(token.trim(), now).map_err(|e| {
        tracing::debug!(error = %e, "registry token refused");
        unauthorized(
            realm,
            needed.as_ref(),
            Some("invalid_token"),
            &e.to_string(),
        )
    })?;
    if let Some(scope) = &needed {
        let missing = scope
            .actions
            .iter()
            .filter(|a| {
                // Pushing clients ask for pull too, but a push only needs push.
                **a != Action::Pull || !scope.actions.contains(&Action::Push)
            })
            .any(|a| !grant.allows(&scope.resource, *a));
        if missing {
            if grant.subject.is_none() {
                return Err(unauthorized(
                    realm,
                    Some(scope),
                    Some("insufficient_scope"),
                    "authentication required",
                ));
            }
            return Err(OciError::new(
                ErrorCode::Denied,
                "requested access to the resource is denied",
            ));
        }
    }
    Ok(grant)
}
