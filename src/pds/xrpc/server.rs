//! `com.atproto.server.*` and `com.atproto.identity.resolveHandle`.

use http::{Response, StatusCode};
use serde_json::json;

use super::{Call, XrpcError, authenticate, check_token, ok_json};
use crate::http::body::Body;
use crate::pds::Pds;
use crate::pds::accounts::{Account, Rotated, Session, now_secs};
use crate::pds::auth;
use crate::pds::login::Accepts;

type Answer = Result<Response<Body>, XrpcError>;

pub(super) fn describe(pds: &Pds) -> Answer {
    ok_json(&json!({
        "did": pds.node_did.as_str(),
        "availableUserDomains": [format!(".{}", pds.settings.handle_domain)],
        "inviteCodeRequired": true,
        "phoneVerificationRequired": false,
        "links": {},
        "contact": {},
    }))
}

fn session_json(pds: &Pds, account: &Account, pair: Option<&auth::TokenPair>) -> serde_json::Value {
    let mut out = json!({
        "did": account.did.as_str(),
        "handle": account.handle,
        "didDoc": pds.did_document(&account.did).ok().flatten(),
        "active": true,
        "emailConfirmed": false,
    });
    if let Some(p) = pair {
        out["accessJwt"] = json!(p.access);
        out["refreshJwt"] = json!(p.refresh);
    }
    out
}

fn open_session(
    pds: &Pds,
    account: &Account,
    app: Option<String>,
) -> Result<auth::TokenPair, XrpcError> {
    let pair = auth::issue(
        &pds.keys.token,
        pds.node_did.as_str(),
        account.did.as_str(),
        app.is_some(),
        now_secs(),
    );
    pds.accounts.put_session(
        &pair.refresh_id,
        &Session {
            did: account.did.clone(),
            expires: pair.refresh_expires,
            app_password: app,
            rotated: None,
            web: false,
        },
    )?;
    Ok(pair)
}

pub(super) async fn create_session(pds: &Pds, call: Call) -> Answer {
    let client = call.client();
    let body = call.json().await?;
    let identifier = body["identifier"]
        .as_str()
        .ok_or_else(|| XrpcError::invalid("identifier is required"))?;
    let password = body["password"]
        .as_str()
        .ok_or_else(|| XrpcError::invalid("password is required"))?;
    let login = pds
        .logins
        .check(
            &pds.accounts,
            identifier,
            password,
            client,
            Accepts::AnyPassword,
        )
        .await?;
    let pair = open_session(pds, &login.account, login.app_password.map(|a| a.name))?;
    ok_json(&session_json(pds, &login.account, Some(&pair)))
}

pub(super) fn refresh_session(pds: &Pds, call: &Call) -> Answer {
    let token = call
        .bearer()
        .ok_or_else(|| XrpcError::auth_required("refresh token required"))?;
    let claims = check_token(pds, token, "refresh+jwt")?;
    let session = pds.accounts.session(&claims.jti)?.ok_or_else(|| {
        XrpcError::new(
            StatusCode::UNAUTHORIZED,
            "ExpiredToken",
            "session has ended",
        )
    })?;
    let account = pds.accounts.get(&session.did)?.ok_or_else(|| {
        XrpcError::new(
            StatusCode::UNAUTHORIZED,
            "AccountNotFound",
            "account is gone",
        )
    })?;
    let ended = || {
        XrpcError::new(
            StatusCode::UNAUTHORIZED,
            "ExpiredToken",
            "session has ended",
        )
    };
    let now = now_secs();
    let app = session.app_password.is_some();
    let issue = |id: String| {
        auth::issue_for(
            &pds.keys.token,
            pds.node_did.as_str(),
            account.did.as_str(),
            app,
            now,
            id,
        )
    };
    let rotation = if let Some(rotation) = session.rotated.clone() {
        Rotated::Before(rotation)
    } else {
        let pair = issue(uuid::Uuid::new_v4().to_string());
        let next = Session {
            expires: pair.refresh_expires,
            rotated: None,
            ..session
        };
        match pds.accounts.rotate_session(
            &claims.jti,
            &pair.refresh_id,
            &next,
            now + auth::REFRESH_GRACE_SECS,
        )? {
            Rotated::Now => return ok_json(&session_json(pds, &account, Some(&pair))),
            other => other,
        }
    };
    // The token was used before: within the grace period it refreshes to the session that
    // replaced it (as long as that one lives), after it never again.
    match rotation {
        Rotated::Before(rotation) if now <= rotation.until => {
            if pds.accounts.session(&rotation.next)?.is_none() {
                return Err(ended());
            }
            let pair = issue(rotation.next);
            ok_json(&session_json(pds, &account, Some(&pair)))
        }
        Rotated::Before(_) => {
            pds.accounts.delete_session(&claims.jti)?;
            Err(ended())
        }
        Rotated::Now | Rotated::Gone => Err(ended()),
    }
}

pub(super) fn get_session(pds: &Pds, call: &Call) -> Answer {
    let caller = authenticate(pds, call)?;
    let account = pds.accounts.get(&caller.did)?.ok_or_else(|| {
        XrpcError::new(
            StatusCode::UNAUTHORIZED,
            "AccountNotFound",
            "account is gone",
        )
    })?;
    ok_json(&session_json(pds, &account, None))
}

pub(super) fn delete_session(pds: &Pds, call: &Call) -> Answer {
    let token = call
        .bearer()
        .ok_or_else(|| XrpcError::auth_required("refresh token required"))?;
    let claims = check_token(pds, token, "refresh+jwt")?;
    // Logging out with a token already rotated ends the session that replaced it too.
    let mut id = Some(claims.jti);
    while let Some(current) = id.take() {
        id = pds
            .accounts
            .session(&current)?
            .and_then(|s| s.rotated)
            .map(|r| r.next);
        pds.accounts.delete_session(&current)?;
    }
    Ok(Response::new(crate::http::body::empty()))
}

/// The caller of a call that manages credentials: only a session opened with the account
/// password (as the reference PDS): a leaked app password cannot mint, list or revoke others.
fn full_session(pds: &Pds, call: &Call) -> Result<super::Caller, XrpcError> {
    let caller = authenticate(pds, call)?;
    if caller.claims.scope != "com.atproto.access" {
        return Err(XrpcError::new(
            StatusCode::BAD_REQUEST,
            "InvalidToken",
            "Bad token scope: app password sessions cannot manage app passwords",
        ));
    }
    Ok(caller)
}

pub(super) async fn create_app_password(pds: &Pds, call: Call) -> Answer {
    let caller = full_session(pds, &call)?;
    let body = call.json().await?;
    let name = body["name"]
        .as_str()
        .filter(|n| !n.trim().is_empty() && n.len() <= 64)
        .ok_or_else(|| XrpcError::invalid("name is required (at most 64 bytes)"))?;
    let privileged = body["privileged"].as_bool().unwrap_or(false);
    let Some((password, app)) = pds
        .accounts
        .create_app_password(&caller.did, name, privileged)?
    else {
        return Err(XrpcError::new(
            StatusCode::BAD_REQUEST,
            "DuplicateName",
            "an app password with that name exists",
        ));
    };
    ok_json(&json!({
        "name": app.name,
        "password": password,
        "createdAt": crate::atproto::Datetime::from_unix_micros(i64::try_from(app.created).unwrap_or(0) * 1_000_000).as_str(),
        "privileged": app.privileged,
    }))
}

pub(super) fn list_app_passwords(pds: &Pds, call: &Call) -> Answer {
    let caller = full_session(pds, call)?;
    let passwords: Vec<_> = pds
        .accounts
        .list_app_passwords(&caller.did)?
        .into_iter()
        .map(|a| {
            json!({
                "name": a.name,
                "createdAt": crate::atproto::Datetime::from_unix_micros(i64::try_from(a.created).unwrap_or(0) * 1_000_000).as_str(),
                "privileged": a.privileged,
            })
        })
        .collect();
    ok_json(&json!({ "passwords": passwords }))
}

pub(super) async fn revoke_app_password(pds: &Pds, call: Call) -> Answer {
    let caller = full_session(pds, &call)?;
    let body = call.json().await?;
    let name = body["name"]
        .as_str()
        .ok_or_else(|| XrpcError::invalid("name is required"))?;
    pds.accounts.revoke_app_password(&caller.did, name)?;
    Ok(Response::new(crate::http::body::empty()))
}

pub(super) fn get_service_auth(pds: &Pds, call: &Call) -> Answer {
    let caller = authenticate(pds, call)?;
    let aud = call.required("aud")?;
    if !aud.starts_with("did:") {
        return Err(XrpcError::invalid("aud must be a DID"));
    }
    let now = now_secs();
    let exp = match call.param("exp") {
        None => now + 60,
        Some(e) => e
            .parse::<u64>()
            .map_err(|_| XrpcError::invalid("exp must be a unix time in seconds"))?,
    };
    if exp <= now {
        return Err(XrpcError::new(
            StatusCode::BAD_REQUEST,
            "BadExpiration",
            "exp is in the past",
        ));
    }
    if exp > now + auth::SERVICE_MAX_SECS {
        return Err(XrpcError::new(
            StatusCode::BAD_REQUEST,
            "BadExpiration",
            "exp is more than an hour away",
        ));
    }
    let lxm = call.param("lxm");
    if let Some(l) = lxm
        && l.parse::<crate::atproto::Nsid>().is_err()
    {
        return Err(XrpcError::invalid("lxm must be an NSID"));
    }
    let key = pds.repos.key(&caller.did).ok_or_else(XrpcError::internal)?;
    let token = auth::service_token(&key, caller.did.as_str(), aud, lxm, now, exp);
    ok_json(&json!({ "token": token }))
}

pub(super) fn resolve_handle(pds: &Pds, call: &Call) -> Answer {
    let handle = call.required("handle")?;
    if handle.parse::<crate::atproto::Handle>().is_err() {
        return Err(XrpcError::invalid("handle is not a valid handle"));
    }
    match pds.resolve_handle(handle)? {
        Some(d) => ok_json(&json!({ "did": d.as_str() })),
        None => Err(XrpcError::new(
            StatusCode::BAD_REQUEST,
            "HandleNotFound",
            "unable to resolve handle",
        )),
    }
}
