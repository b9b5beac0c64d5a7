//! `/auth/token`: the Docker token service.
//!
//! `GET /auth/token?service=…&scope=…` with optional Basic credentials (a local user's short
//! name, handle or DID, and the account password or an app password; or a user of another PDS's
//! handle or DID and an app password of that PDS, checked there), or the `OAuth2` form
//! `POST /auth/token` (`grant_type=password`). Each requested scope is granted as far as the
//! rules allow — pull: whoever may read the hold; push and delete: the namespace owner, if they
//! may write to the hold (`rules.rs`) — and the answer is a token with what was granted
//! (possibly nothing), with the reasons for the rest under `denied`: a short token is refused
//! later, by the request that needs more.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::http::body::RequestBody;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;
use sha2::Digest as _;

use super::scope::{Access, Scope};
use super::token::{TOKEN_SECS, Tokens};
use crate::appview::AppView;
use crate::atproto::{Datetime, Did};
use crate::hold::Hold;
use crate::http::body::{self, Body};
use crate::oci::{ErrorCode, OciError};
use crate::pds::accounts::now_secs;
use crate::pds::login::{Accepts, ClientAddr, LoginError};

/// Largest form body accepted by the `OAuth2` endpoint.
const MAX_FORM: usize = 16 * 1024;

/// Credential checks remembered, at most, and for how long.
const CHECKED_CACHE: usize = 1024;
const CHECKED_SECS: u64 = 300;

/// The token service of a node.
pub struct TokenService {
    pub tokens: Tokens,
    pub(super) appview: Arc<AppView>,
    pub(super) hold: Arc<Hold>,
    /// sha256(did, password, stored hashes) → expiry of credentials that checked out.
    checked: Mutex<HashMap<[u8; 32], u64>>,
    /// sha256(token, request) → expiry of registry requests refused for a scope their token
    /// lacked (see `rules.rs`).
    pub(super) refused: Mutex<HashMap<[u8; 32], u64>>,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService")
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

impl TokenService {
    #[must_use]
    pub fn new(tokens: Tokens, appview: Arc<AppView>, hold: Arc<Hold>) -> TokenService {
        TokenService {
            tokens,
            appview,
            hold,
            checked: Mutex::default(),
            refused: Mutex::default(),
        }
    }

    /// Answers a request to `/auth/token`.
    pub async fn handle(&self, req: Request<RequestBody>) -> Result<Response<Body>, OciError> {
        let client = ClientAddr::of(&req);
        let (params, basic) = match *req.method() {
            Method::GET => {
                let params = parse_form(req.uri().query().unwrap_or(""));
                let basic = basic_credentials(req.headers());
                (params, basic)
            }
            Method::POST => {
                let basic = basic_credentials(req.headers());
                let params = parse_form(&read_form(req).await?);
                (params, basic)
            }
            _ => {
                return Err(OciError::new(
                    ErrorCode::Unsupported,
                    "the token service takes GET or POST",
                )
                .with_status(StatusCode::METHOD_NOT_ALLOWED));
            }
        };
        let one = |k: &str| params.get(k).and_then(|v| v.first()).map(String::as_str);
        if let Some(service) = one("service")
            && service != self.tokens.service()
        {
            return Err(OciError::new(
                ErrorCode::Unsupported,
                "this token service does not serve that service",
            )
            .with_status(StatusCode::BAD_REQUEST)
            .with_detail(json!({ "service": service, "expected": self.tokens.service() })));
        }
        let credentials = match (one("grant_type"), basic) {
            (Some("password"), _) => Some((
                one("username").unwrap_or_default().to_owned(),
                one("password").unwrap_or_default().to_owned(),
            )),
            (Some("refresh_token"), _) => {
                return Err(OciError::new(
                    ErrorCode::Unsupported,
                    "refresh tokens are not issued; use grant_type=password",
                )
                .with_status(StatusCode::BAD_REQUEST));
            }
            (_, basic) => basic,
        };
        let caller = match credentials {
            Some((user, password)) => Some(self.check_credentials(&user, &password, client).await?),
            None => None,
        };
        let requested = Scope::parse_all(
            params
                .get("scope")
                .into_iter()
                .flatten()
                .map(String::as_str),
        );
        let mut access = Vec::new();
        let mut denied = Vec::new();
        for scope in &requested {
            let (granted, refused) = self.grant(caller.as_ref(), scope)?;
            access.extend(granted);
            denied.extend(refused);
        }
        let now = now_secs();
        let token = self.tokens.issue(caller.as_ref(), access, now);
        tracing::debug!(caller = ?caller.as_ref().map(Did::as_str), scopes = requested.len(), "registry token issued");
        let issued_at = Datetime::from_unix_micros(i64::try_from(now).unwrap_or(0) * 1_000_000);
        let mut answer = json!({
            "token": token,
            "access_token": token,
            "expires_in": TOKEN_SECS,
            "issued_at": issued_at.as_str(),
        });
        // As the token spec wants, a refused scope is no error here (the token just lacks it,
        // and the registry refuses the request). Clients ignore this field; people reading
        // the answer learn why.
        if !denied.is_empty() {
            answer["denied"] = json!(denied);
        }
        Response::builder()
            .status(StatusCode::OK)
            .header(CONTENT_TYPE, "application/json")
            .header(http::header::CACHE_CONTROL, "no-store")
            .body(body::json(&answer))
            .map_err(|e| OciError::internal(&e))
    }

    /// The account behind a user name and password (account or app password), through the
    /// node's login gate (`pds::login`).
    async fn check_credentials(
        &self,
        user: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<Did, OciError> {
        let accounts = &self.appview.pds().accounts;
        // Clients send their credentials with every token request: credentials that checked
        // out are remembered for a while. The key covers the stored hashes, so a password
        // change or a revoked app password takes effect at once.
        let key = match accounts.find(user).map_err(|e| OciError::internal(&e))? {
            Some(account) => {
                let mut key = sha2::Sha256::new();
                key.update(account.did.as_str().as_bytes());
                key.update([0]);
                key.update(password.as_bytes());
                key.update([0]);
                key.update(account.password_hash.as_bytes());
                for app in accounts
                    .list_app_passwords(&account.did)
                    .map_err(|e| OciError::internal(&e))?
                {
                    key.update([0]);
                    key.update(app.hash.as_bytes());
                }
                let key: [u8; 32] = key.finalize().into();
                Some((key, account.did))
            }
            None => None,
        };
        if key.is_none() && self.is_remote(user) {
            let pds = self.appview.pds();
            return pds
                .logins
                .check_remote(pds, user, password, client)
                .await
                .map_err(login_error);
        }
        let now = now_secs();
        if let Some((key, did)) = &key
            && self
                .checked
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(key)
                .is_some_and(|expires| *expires > now)
        {
            return Ok(did.clone());
        }
        let login = self
            .appview
            .pds()
            .logins
            .check(accounts, user, password, client, Accepts::AnyPassword)
            .await
            .map_err(login_error)?;
        if let Some((key, _)) = key {
            let mut checked = self.checked.lock().unwrap_or_else(PoisonError::into_inner);
            if checked.len() >= CHECKED_CACHE {
                checked.retain(|_, expires| *expires > now);
                if checked.len() >= CHECKED_CACHE / 2 {
                    checked.clear();
                }
            }
            checked.insert(key, now + CHECKED_SECS);
        }
        Ok(login.account.did)
    }

    /// Whether `user` names a user of another PDS: a DID, or a handle outside the node's
    /// handle domain, that is no account here. Other names are checked as local ones.
    fn is_remote(&self, user: &str) -> bool {
        let user = user.trim();
        if user.parse::<Did>().is_ok() {
            return true;
        }
        let domain = format!(".{}", self.appview.pds().settings.handle_domain);
        user.parse::<crate::atproto::Handle>().is_ok()
            && !user
                .to_ascii_lowercase()
                .ends_with(&domain.to_ascii_lowercase())
    }

    /// How much of `scope` the caller gets (`None` for nothing), and why the rest is refused.
    fn grant(
        &self,
        caller: Option<&Did>,
        scope: &Scope,
    ) -> Result<(Option<Access>, Vec<String>), OciError> {
        let mut granted = BTreeSet::new();
        let mut refused = Vec::new();
        for action in &scope.actions {
            match self.refusal(caller, &scope.resource, *action)? {
                None => {
                    granted.insert(*action);
                }
                Some(reason) => refused.push(reason),
            }
        }
        let access = (!granted.is_empty()).then(|| {
            Access::from_scope(&Scope {
                resource: scope.resource.clone(),
                actions: granted,
            })
        });
        Ok((access, refused))
    }
}

/// A failed login as the token service answers it: 401, 429 with `Retry-After`, or 503 when a
/// remote user's PDS could not be asked (their password may well be right). Why it could not is
/// logged, not told: the servers are named by the caller, and their errors would map the
/// node's network for a stranger.
fn login_error(e: LoginError) -> OciError {
    match e {
        LoginError::Unavailable(_) => OciError::new(
            ErrorCode::Unavailable,
            "cannot check the password now: the PDS of that user (or the servers that resolve its identity) could not be reached; try again later",
        ),
        LoginError::Refused => {
            OciError::new(ErrorCode::Unauthorized, "incorrect username or password")
        }
        LoginError::RateLimited(_) => {
            let mut refused = OciError::new(ErrorCode::TooManyRequests, e.to_string());
            if let Some(secs) = e.retry_after() {
                refused = refused.with_header(http::header::RETRY_AFTER, HeaderValue::from(secs));
            }
            refused
        }
        e => OciError::internal(&e),
    }
}

fn parse_form(s: &str) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in form_urlencoded::parse(s.as_bytes()) {
        out.entry(k.into_owned()).or_default().push(v.into_owned());
    }
    out
}

async fn read_form(req: Request<RequestBody>) -> Result<String, OciError> {
    let bad = |m: &str| {
        OciError::new(ErrorCode::Unsupported, m.to_owned()).with_status(StatusCode::BAD_REQUEST)
    };
    let limited = http_body_util::Limited::new(req.into_body(), MAX_FORM);
    let bytes = limited
        .collect()
        .await
        .map_err(|_| bad("the form is unreadable or too large"))?
        .to_bytes();
    String::from_utf8(bytes.to_vec()).map_err(|_| bad("the form is not UTF-8"))
}

/// `Authorization: Basic base64(user:password)`.
fn basic_credentials(headers: &http::HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    // A DID user name holds colons itself: `did:<method>:<id>` comes first, then the password
    // (did:plc and host-only did:web identifiers have no further colon).
    let split = if decoded.starts_with("did:") {
        decoded
            .match_indices(':')
            .nth(2)
            .map(|(i, _)| (&decoded[..i], &decoded[i + 1..]))
    } else {
        decoded.split_once(':')
    };
    let (user, password) = split?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_parse() {
        let mut h = http::HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            format!("Basic {}", STANDARD.encode("alice:pa:ss"))
                .parse()
                .unwrap(),
        );
        assert_eq!(
            basic_credentials(&h),
            Some(("alice".into(), "pa:ss".into()))
        );
        h.insert(
            AUTHORIZATION,
            format!("Basic {}", STANDARD.encode("did:plc:abc:pa:ss"))
                .parse()
                .unwrap(),
        );
        assert_eq!(
            basic_credentials(&h),
            Some(("did:plc:abc".into(), "pa:ss".into()))
        );
        h.insert(AUTHORIZATION, "Bearer x".parse().unwrap());
        assert_eq!(basic_credentials(&h), None);
        h.insert(AUTHORIZATION, "Basic !!!".parse().unwrap());
        assert_eq!(basic_credentials(&h), None);
    }
}
