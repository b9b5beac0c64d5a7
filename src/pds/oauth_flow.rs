//! The ATProto OAuth flow with this node as the client (the protocol half; the web pages do
//! the browser's half in `web/oauth.rs`): PAR with PKCE and a DPoP key of the session's own, and
//! the code exchange with every check a client owes — state single use and bound to the
//! browser, `iss` the server's, tokens DPoP-bound and for the DID the handle resolved to.

use super::Pds;
use super::oauth::{ClientAuth, DpopKey, Pending, discover, dpop_post, pkce};
use super::remote_repo::{OAuthGrant, RemoteSession};
use super::store::RemoteUser;
use crate::atproto::Did;

/// This node as an OAuth client on the address a browser used.
pub struct OAuthClient {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: &'static str,
}

/// What the browser came back to the redirect URI with.
pub struct OAuthReturn<'a> {
    pub state: &'a str,
    /// The state the browser's cookie holds (set when the authorization started).
    pub browser_state: Option<&'a str>,
    pub code: Option<&'a str>,
    pub iss: Option<&'a str>,
    pub error: Option<&'a str>,
}

impl Pds {
    /// The node's OAuth client key as a JWK Set (`/oauth/jwks.json`, named by the client
    /// metadata of a node served over HTTPS).
    #[must_use]
    pub fn oauth_client_jwks(&self) -> serde_json::Value {
        super::oauth::client_jwks(&self.keys.oauth_client)
    }

    /// Starts an authorization for `handle` (lowercase, or a DID) as `client`: the `state`
    /// to bind to the browser, and where to send it. The error is a message for the user
    /// (what went wrong with a stranger's servers is logged, not told: the page would tell
    /// anyone what answers where on the node's network).
    pub async fn oauth_begin(
        &self,
        handle: &str,
        client: OAuthClient,
        next: &str,
    ) -> Result<(String, String), String> {
        let pds = self;
        let OAuthClient {
            client_id,
            redirect_uri,
            scope,
        } = client;
        if handle.is_empty() {
            return Err("Give your handle (alice.example.com) or DID.".into());
        }
        let identity = pds.identities.resolve(pds, handle).await.map_err(|e| {
            tracing::info!(?handle, error = %e, "OAuth sign-in: handle not resolved");
            format!("{handle} could not be resolved to an account.")
        })?;
        let local = pds
            .accounts
            .get(&identity.did)
            .map_err(|e| e.to_string())?
            .is_some();
        if local || identity.did == pds.node_did {
            return Err("That account is one of this node's: sign in with its password.".into());
        }
        let unreachable = |e: String| {
            tracing::info!(did = %identity.did, error = %e, "OAuth sign-in: authorization server failed");
            "Your PDS's sign-in could not be reached, or refused the request.".to_owned()
        };
        let server = discover(pds, &identity.pds).await.map_err(unreachable)?;
        let (verifier, challenge) = pkce();
        let state = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            rand::random::<[u8; 24]>(),
        );
        let key = DpopKey::generate();
        let login_hint = identity
            .handle
            .as_ref()
            .map_or_else(|| identity.did.to_string(), ToString::to_string);
        let form = [
            ("response_type", "code"),
            ("redirect_uri", redirect_uri.as_str()),
            ("scope", scope),
            ("state", state.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("login_hint", login_hint.as_str()),
        ];
        let client = ClientAuth {
            client_id: &client_id,
            issuer: &server.issuer,
        };
        let (status, answer, nonce) =
            dpop_post(pds, &key, &server.par_endpoint, &form, client, None)
                .await
                .map_err(unreachable)?;
        let request_uri = match (status, answer["request_uri"].as_str()) {
            (200 | 201, Some(uri)) => uri.to_owned(),
            _ => {
                return Err(unreachable(format!(
                    "PAR answered {status} {}",
                    answer["error"]
                )));
            }
        };
        let go = format!(
            "{}?{}",
            server.authorization_endpoint,
            form_urlencoded::Serializer::new(String::new())
                .append_pair("client_id", &client_id)
                .append_pair("request_uri", &request_uri)
                .finish()
        );
        let pending = Pending {
            did: identity.did,
            handle: identity.handle.map(|h| h.to_string()),
            endpoint: identity.pds,
            server,
            verifier,
            key,
            client_id,
            redirect_uri,
            next: next.to_owned(),
            server_nonce: nonce,
        };
        if !pds.oauth_pending.put(state.clone(), pending) {
            return Err("Too many sign-ins are under way; try again in a few minutes.".into());
        }
        Ok((state, go))
    }

    /// Finishes the authorization the browser came back with: the user signed in (their
    /// session kept, they remembered) and where they were going. The error is a message for
    /// the user.
    pub async fn oauth_finish(&self, back: OAuthReturn<'_>) -> Result<(Did, String), String> {
        let pds = self;
        let OAuthReturn {
            state,
            browser_state,
            code,
            iss,
            error,
        } = back;
        // Single use: a replayed callback (or a forged state) finds nothing.
        let pending = pds
            .oauth_pending
            .take(state)
            .ok_or("This sign-in has expired or was already used; start again.")?;
        if browser_state != Some(state) {
            return Err("This sign-in was started in another browser; start again here.".into());
        }
        if let Some(error) = error {
            return Err(format!("Your PDS did not grant the sign-in: {error}."));
        }
        if iss.map(|i| i.trim_end_matches('/')) != Some(pending.server.issuer.as_str()) {
            return Err(
                "The sign-in came back from another authorization server than asked.".into(),
            );
        }
        let code = code.ok_or("The sign-in came back without a code.")?;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", pending.redirect_uri.as_str()),
            ("code_verifier", pending.verifier.as_str()),
        ];
        let client = ClientAuth {
            client_id: &pending.client_id,
            issuer: &pending.server.issuer,
        };
        let (status, answer, nonce) = dpop_post(
            pds,
            &pending.key,
            &pending.server.token_endpoint,
            &form,
            client,
            pending.server_nonce.clone(),
        )
        .await
        .map_err(|e| {
            tracing::info!(did = %pending.did, error = %e, "OAuth sign-in: token endpoint failed");
            "Your PDS's sign-in could not be reached to finish; start again.".to_owned()
        })?;
        let (Some(access), Some(refresh)) = (
            answer["access_token"].as_str(),
            answer["refresh_token"].as_str(),
        ) else {
            return Err(format!(
                "Your PDS's authorization server did not issue tokens ({status} {}).",
                answer["error"].as_str().unwrap_or_default()
            ));
        };
        let dpop = answer["token_type"]
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case("DPoP"));
        let scoped = answer["scope"]
            .as_str()
            .is_some_and(|s| s.split(' ').any(|p| p == "atproto"));
        if answer["sub"].as_str() != Some(pending.did.as_str()) || !dpop || !scoped {
            return Err("The tokens are for another account, or not DPoP-bound.".into());
        }
        let did = pending.did.clone();
        let grant = OAuthGrant::new(pending.key, &pending.server, pending.client_id, nonce);
        let session = RemoteSession::oauth(
            pending.endpoint.clone(),
            access.into(),
            refresh.into(),
            grant,
        );
        pds.keep_remote_session(&did, session).await;
        let user = RemoteUser {
            handle: pending.handle,
            pds: pending.endpoint,
        };
        pds.store()
            .remember_remote_user(&did, user)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(%did, "signed in to the pages through OAuth");
        Ok((did, pending.next))
    }
}
