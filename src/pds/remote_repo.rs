//! Writing into the repositories of users of other PDSes: the session their login opened there
//! (`com.atproto.server.createSession` with a password of their PDS, see `login/remote.rs`),
//! kept in memory only, and the XRPC calls a push makes with it (`uploadBlob`, `applyWrites`),
//! refreshing it (`refreshSession`) when their PDS says it expired.
//!
//! Their PDS is a stranger's server: every call goes through `identity.reachable` (HTTPS at
//! public addresses unless a LAN host), with a timeout and an answer-size limit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value as Json;

use super::Pds;
use super::oauth::{ClientAuth, DpopKey, dpop_post, dpop_request};
use crate::atproto::Did;
use crate::http_client::{get_json, post_bounded};

/// How long one call to a user's PDS may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read from a user's PDS.
const MAX_ANSWER_BYTES: usize = 256 << 10;

/// A session on a remote user's PDS.
#[derive(Clone)]
pub struct RemoteSession {
    /// Their PDS (`https://pds.example.com`).
    pub endpoint: String,
    access: String,
    refresh: String,
    /// Set for a session their authorization server granted this node (OAuth): its tokens are
    /// bound to a DPoP key, and refreshed at its token endpoint.
    oauth: Option<Arc<OAuthGrant>>,
}

/// What an OAuth session holds beyond its tokens.
pub struct OAuthGrant {
    pub key: DpopKey,
    pub issuer: String,
    pub token_endpoint: String,
    pub revocation_endpoint: Option<String>,
    pub client_id: String,
    /// The last nonces the authorization server and the PDS gave.
    nonces: Mutex<(Option<String>, Option<String>)>,
}

impl OAuthGrant {
    #[must_use]
    pub fn new(
        key: DpopKey,
        server: &crate::pds::oauth::AuthServer,
        client_id: String,
        server_nonce: Option<String>,
    ) -> OAuthGrant {
        OAuthGrant {
            key,
            issuer: server.issuer.clone(),
            token_endpoint: server.token_endpoint.clone(),
            revocation_endpoint: server.revocation_endpoint.clone(),
            client_id,
            nonces: Mutex::new((server_nonce, None)),
        }
    }

    /// The node as the client this grant was made to.
    fn client(&self) -> ClientAuth<'_> {
        ClientAuth {
            client_id: &self.client_id,
            issuer: &self.issuer,
        }
    }

    fn server_nonce(&self) -> Option<String> {
        self.nonces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .clone()
    }

    fn pds_nonce(&self) -> Option<String> {
        self.nonces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clone()
    }

    fn set_nonces(&self, server: Option<String>, pds: Option<String>) {
        let mut n = self.nonces.lock().unwrap_or_else(PoisonError::into_inner);
        if server.is_some() {
            n.0 = server;
        }
        if pds.is_some() {
            n.1 = pds;
        }
    }
}

/// An OAuth session as `pds.redb` keeps it (the table is owner-only like the rest of the file).
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredGrant {
    endpoint: String,
    access: String,
    refresh: String,
    dpop_key: String,
    issuer: String,
    token_endpoint: String,
    revocation_endpoint: Option<String>,
    client_id: String,
}

impl RemoteSession {
    #[must_use]
    pub fn new(endpoint: String, access: String, refresh: String) -> RemoteSession {
        RemoteSession {
            endpoint,
            access,
            refresh,
            oauth: None,
        }
    }

    /// A session an authorization server granted (its tokens DPoP-bound to `grant.key`).
    #[must_use]
    pub fn oauth(
        endpoint: String,
        access: String,
        refresh: String,
        grant: OAuthGrant,
    ) -> RemoteSession {
        RemoteSession {
            endpoint,
            access,
            refresh,
            oauth: Some(Arc::new(grant)),
        }
    }

    /// The refresh token, which ends the session (`deleteSession`).
    #[must_use]
    pub fn refresh_token(&self) -> &str {
        &self.refresh
    }

    /// Whether an authorization server granted this session (OAuth).
    #[must_use]
    pub fn is_oauth(&self) -> bool {
        self.oauth.is_some()
    }

    /// Revokes an OAuth session's refresh token at its authorization server (best effort).
    pub async fn revoke(&self, pds: &Pds) {
        let Some(grant) = &self.oauth else { return };
        let Some(endpoint) = &grant.revocation_endpoint else {
            return;
        };
        let form = [("token", self.refresh.as_str())];
        let revoked = dpop_post(
            pds,
            &grant.key,
            endpoint,
            &form,
            grant.client(),
            grant.server_nonce(),
        )
        .await;
        if !matches!(revoked, Ok((200, _, _))) {
            tracing::info!(?revoked, "an OAuth session was not revoked at its server");
        }
    }

    fn stored(&self) -> Option<StoredGrant> {
        let g = self.oauth.as_ref()?;
        Some(StoredGrant {
            endpoint: self.endpoint.clone(),
            access: self.access.clone(),
            refresh: self.refresh.clone(),
            dpop_key: hex::encode(g.key.to_bytes()),
            issuer: g.issuer.clone(),
            token_endpoint: g.token_endpoint.clone(),
            revocation_endpoint: g.revocation_endpoint.clone(),
            client_id: g.client_id.clone(),
        })
    }

    fn from_stored(s: StoredGrant) -> Option<RemoteSession> {
        let key = DpopKey::from_bytes(&hex::decode(&s.dpop_key).ok()?).ok()?;
        let grant = OAuthGrant {
            key,
            issuer: s.issuer,
            token_endpoint: s.token_endpoint,
            revocation_endpoint: s.revocation_endpoint,
            client_id: s.client_id,
            nonces: Mutex::new((None, None)),
        };
        Some(RemoteSession::oauth(s.endpoint, s.access, s.refresh, grant))
    }
}

impl std::fmt::Debug for RemoteSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSession")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// The sessions of remote users who logged in since start, one per user.
#[derive(Default)]
pub struct RemoteSessions {
    by_did: Mutex<HashMap<Did, RemoteSession>>,
    /// Refreshes (and an OAuth session's end) run one at a time per user: two calls
    /// refreshing with the same single-use refresh token would have the second refused, which
    /// ends the session; a sign-out during a refresh would be undone by it.
    refreshing: Mutex<HashMap<Did, Arc<tokio::sync::Mutex<()>>>>,
}

/// Remote sessions kept, at most (one per user who logged in).
const SESSIONS: usize = 4096;

impl RemoteSessions {
    /// Keeps `session` for `did`; returns the one it replaces, which the caller ends.
    pub fn keep(&self, did: &Did, session: RemoteSession) -> Option<RemoteSession> {
        let mut map = self.lock();
        if map.len() >= SESSIONS && !map.contains_key(did) {
            // Bounded: one session goes (its user's next token request opens another: docker
            // clients send their password with every one; an OAuth one is read back from disk).
            if let Some(evicted) = map.keys().next().cloned() {
                map.remove(&evicted);
            }
        }
        map.insert(did.clone(), session)
    }

    /// Held while `did`'s session is refreshed or ended.
    async fn refresh_turn(&self, did: &Did) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut turns = self
                .refreshing
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // Locks nobody holds or waits for go (bounded by the users refreshing at once).
            turns.retain(|_, l| Arc::strong_count(l) > 1);
            turns.entry(did.clone()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Whether `did` has a session here.
    #[must_use]
    pub fn has(&self, did: &Did) -> bool {
        self.lock().contains_key(did)
    }

    fn get(&self, did: &Did) -> Option<RemoteSession> {
        self.lock().get(did).cloned()
    }

    fn forget(&self, did: &Did) {
        self.lock().remove(did);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Did, RemoteSession>> {
        self.by_did.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Why a call to a remote user's PDS did nothing.
#[derive(Debug, thiserror::Error)]
pub enum RemoteCallError {
    /// No session for that user here (the node restarted since their login, or their PDS
    /// ended it): they log in again.
    #[error("no session with the PDS of {0}: log in again")]
    NoSession(Did),
    /// Their PDS answered with an error.
    #[error("the PDS {endpoint} refused: {status} {error}: {message}")]
    Refused {
        endpoint: String,
        status: u16,
        error: String,
        message: String,
    },
    /// Their PDS could not be reached, or answered nonsense.
    #[error("the PDS {0}")]
    Unavailable(String),
}

impl Pds {
    /// `did`'s session: the one in memory, else an OAuth session `pds.redb` kept.
    fn remote_session(&self, did: &Did) -> Option<RemoteSession> {
        if let Some(s) = self.remote_sessions.get(did) {
            return Some(s);
        }
        let stored: StoredGrant =
            serde_json::from_slice(&self.store().remote_grant(did).ok()??).ok()?;
        let session = RemoteSession::from_stored(stored)?;
        self.remote_sessions.keep(did, session.clone());
        Some(session)
    }

    /// Keeps `session` for `did` (an OAuth one in `pds.redb` too, so it outlives a restart);
    /// returns the one it replaces.
    pub async fn keep_remote_session(
        &self,
        did: &Did,
        session: RemoteSession,
    ) -> Option<RemoteSession> {
        let grant = session.stored().and_then(|g| serde_json::to_vec(&g).ok());
        if let Some(grant) = grant
            && let Err(e) = self.store().set_remote_grant(did, Some(grant)).await
        {
            tracing::warn!(%did, error = %e, "an OAuth session could not be kept on disk");
        }
        self.remote_sessions.keep(did, session)
    }

    /// Ends `did`'s OAuth session: revoked at its authorization server (best effort), removed
    /// from disk, and from memory if it is the one there (a password session docker's login
    /// opened stays). Waits for a refresh under way, which would otherwise keep it again.
    pub async fn end_oauth_session(&self, did: &Did) {
        let _turn = self.remote_sessions.refresh_turn(did).await;
        self.end_oauth_session_now(did).await;
    }

    /// [`Pds::end_oauth_session`], its turn held.
    async fn end_oauth_session_now(&self, did: &Did) {
        let stored = self
            .store()
            .remote_grant(did)
            .ok()
            .flatten()
            .and_then(|g| serde_json::from_slice::<StoredGrant>(&g).ok())
            .and_then(RemoteSession::from_stored);
        if self.remote_sessions.get(did).is_some_and(|s| s.is_oauth()) {
            self.remote_sessions.forget(did);
        }
        if let Err(e) = self.store().set_remote_grant(did, None).await {
            tracing::warn!(%did, error = %e, "an OAuth session could not be removed from disk");
        }
        // What `atcr login` holds pushed with that session: it goes too.
        self.cli_codes.forget(did);
        if let Err(e) = self.store().remove_remote_cli_secrets(did).await {
            tracing::warn!(%did, error = %e, "the atcr command's secrets could not be removed");
        }
        if let Some(session) = stored {
            session.revoke(self).await;
        }
    }

    /// `POST`s to XRPC method `nsid` on `did`'s PDS with their session (`body`: content type
    /// and bytes); the answer as JSON. An expired access token is refreshed once.
    pub async fn remote_call(
        &self,
        did: &Did,
        nsid: &str,
        body: Option<(&str, Bytes)>,
    ) -> Result<Json, RemoteCallError> {
        let mut refreshed = false;
        loop {
            let session = self
                .remote_session(did)
                .ok_or_else(|| RemoteCallError::NoSession(did.clone()))?;
            let (status, answer) = match &session.oauth {
                None => {
                    self.remote_post(&session.endpoint, nsid, &session.access, body.clone())
                        .await?
                }
                Some(grant) => {
                    let url = format!("{}/xrpc/{nsid}", session.endpoint);
                    let (status, answer, nonce) = dpop_request(
                        self,
                        &grant.key,
                        "POST",
                        &url,
                        Some(&session.access),
                        body.clone(),
                        grant.pds_nonce(),
                    )
                    .await
                    .map_err(RemoteCallError::Unavailable)?;
                    grant.set_nonces(None, nonce);
                    (status, answer)
                }
            };
            if status == 200 {
                return Ok(answer);
            }
            let expired = matches!(status, 400 | 401)
                && matches!(
                    answer["error"].as_str(),
                    Some("ExpiredToken" | "invalid_token")
                );
            if expired && !refreshed {
                self.refresh_remote_session(did, &session).await?;
                refreshed = true;
                continue;
            }
            return Err(refused(&session.endpoint, status, &answer));
        }
    }

    /// Replaces `did`'s session by the one `refreshSession` (or, for OAuth, the token
    /// endpoint's `refresh_token` grant) gives for it.
    async fn refresh_remote_session(
        &self,
        did: &Did,
        session: &RemoteSession,
    ) -> Result<(), RemoteCallError> {
        let _turn = self.remote_sessions.refresh_turn(did).await;
        if self
            .remote_session(did)
            .is_some_and(|now| now.refresh != session.refresh)
        {
            // Refreshed (or replaced by a new login) while this call waited its turn: the
            // caller goes on with that session.
            return Ok(());
        }
        if let Some(grant) = &session.oauth {
            return self.refresh_oauth_session(did, session, grant).await;
        }
        let nsid = "com.atproto.server.refreshSession";
        let (status, answer) = self
            .remote_post(&session.endpoint, nsid, &session.refresh, None)
            .await?;
        let tokens = (answer["accessJwt"].as_str(), answer["refreshJwt"].as_str());
        match (status, tokens) {
            (200, (Some(access), Some(refresh)))
                if answer["did"].as_str() == Some(did.as_str()) =>
            {
                let fresh =
                    RemoteSession::new(session.endpoint.clone(), access.into(), refresh.into());
                self.remote_sessions.keep(did, fresh);
                Ok(())
            }
            (400 | 401, _) => {
                self.remote_sessions.forget(did);
                Err(RemoteCallError::NoSession(did.clone()))
            }
            _ => Err(refused(&session.endpoint, status, &answer)),
        }
    }

    async fn refresh_oauth_session(
        &self,
        did: &Did,
        session: &RemoteSession,
        grant: &Arc<OAuthGrant>,
    ) -> Result<(), RemoteCallError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", session.refresh.as_str()),
        ];
        let (status, answer, nonce) = dpop_post(
            self,
            &grant.key,
            &grant.token_endpoint,
            &form,
            grant.client(),
            grant.server_nonce(),
        )
        .await
        .map_err(RemoteCallError::Unavailable)?;
        grant.set_nonces(nonce, None);
        let tokens = (
            answer["access_token"].as_str(),
            answer["refresh_token"].as_str(),
        );
        match (status, tokens) {
            (200, (Some(access), Some(refresh)))
                if answer["sub"].as_str() == Some(did.as_str()) =>
            {
                let fresh = RemoteSession {
                    endpoint: session.endpoint.clone(),
                    access: access.to_owned(),
                    refresh: refresh.to_owned(),
                    oauth: Some(grant.clone()),
                };
                self.keep_remote_session(did, fresh).await;
                Ok(())
            }
            // The grant is no more (expired, revoked, replayed): the user signs in again.
            (400 | 401, _) if answer["error"] == "invalid_grant" => {
                tracing::info!(%did, error = ?answer["error"], "an OAuth refresh was refused; the user signs in again");
                self.end_oauth_session_now(did).await;
                Err(RemoteCallError::NoSession(did.clone()))
            }
            // Anything else (the server could not check the client, a proof it did not take)
            // may pass: the session stays, the call fails for now.
            (400 | 401, _) => Err(RemoteCallError::Unavailable(format!(
                "{} refused a refresh: {}",
                grant.token_endpoint, answer["error"]
            ))),
            _ => Err(refused(&grant.token_endpoint, status, &answer)),
        }
    }

    async fn remote_post(
        &self,
        endpoint: &str,
        nsid: &str,
        bearer: &str,
        body: Option<(&str, Bytes)>,
    ) -> Result<(u16, Json), RemoteCallError> {
        let target = self
            .settings
            .identity
            .reachable(endpoint)
            .map_err(RemoteCallError::Unavailable)?;
        post_bounded(
            &target,
            &format!("/xrpc/{nsid}"),
            Some(bearer),
            body,
            MAX_ANSWER_BYTES,
            CALL_TIMEOUT,
        )
        .await
        .map_err(|e| RemoteCallError::Unavailable(format!("{endpoint}: {e:#}")))
    }

    /// A record of `did`'s repository on their PDS (`com.atproto.repo.getRecord`, no session
    /// needed): `None` when it says there is none.
    pub async fn remote_record(
        &self,
        did: &Did,
        collection: &str,
        rkey: &str,
    ) -> Result<Option<Json>, RemoteCallError> {
        let endpoint = self
            .remote_session(did)
            .ok_or_else(|| RemoteCallError::NoSession(did.clone()))?
            .endpoint;
        let target = self
            .settings
            .identity
            .reachable(&endpoint)
            .map_err(RemoteCallError::Unavailable)?;
        let path = get_record_path(did, collection, rkey);
        let (status, answer) = get_json(&target, &path, MAX_ANSWER_BYTES, CALL_TIMEOUT)
            .await
            .map_err(|e| RemoteCallError::Unavailable(format!("{endpoint}: {e:#}")))?;
        match status {
            200 => Ok(Some(answer)),
            400 | 404 if answer["error"].as_str() == Some("RecordNotFound") => Ok(None),
            s => Err(refused(&endpoint, s, &answer)),
        }
    }
}

/// The path and query of `com.atproto.repo.getRecord` for one record.
#[must_use]
pub fn get_record_path(did: &Did, collection: &str, rkey: &str) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("repo", did.as_str())
        .append_pair("collection", collection)
        .append_pair("rkey", rkey)
        .finish();
    format!("/xrpc/com.atproto.repo.getRecord?{query}")
}

/// The error for a non-200 answer: a refusal for 4xx, unavailable otherwise.
fn refused(endpoint: &str, status: u16, answer: &Json) -> RemoteCallError {
    if !(400..500).contains(&status) {
        return RemoteCallError::Unavailable(format!("{endpoint} answered {status}"));
    }
    let text = |key: &str| {
        answer[key]
            .as_str()
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect::<String>()
    };
    RemoteCallError::Refused {
        endpoint: endpoint.to_owned(),
        status,
        error: text("error"),
        message: text("message"),
    }
}

#[cfg(test)]
mod tests;
