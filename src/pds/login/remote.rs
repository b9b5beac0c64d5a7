//! Logins of users of other PDSes: their handle or DID and a password of *their* PDS (an app
//! password), checked by that PDS with `com.atproto.server.createSession` (see
//! `docs/federation.md`).
//!
//! - The same failure limits as local logins (per identity and per client address): wrong
//!   passwords cannot be tried faster against a remote PDS than against a local account.
//! - A password that checked out is remembered for [`REMEMBER`] as an HMAC of (DID, password)
//!   under a secret drawn at start, never in the clear, so pulls that send it with every token
//!   request do not reach the remote PDS each time.
//! - A PDS (or identity server) that cannot be reached is [`LoginError::Unavailable`], not a
//!   refusal: the caller is told to try later; it counts against the caller's address only.
//!   At most [`SESSIONS_AT_ONCE`] remote PDSes are asked at once.
//! - A DID of this node's own accounts is refused here: they log in as local accounts.
//! - The session `createSession` opens is kept (in memory, one per user, the previous one
//!   ended): the user's pushes write their records with it (see `pds::remote_repo`). The user
//!   is remembered (DID, handle, PDS) in `pds.redb`, so their repositories have names here.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::{LoginError, Logins};
use crate::atproto::Did;
use crate::http_client::post_json_bounded;
use crate::pds::Pds;
use crate::pds::identities::ResolveError;
use crate::pds::limiter::Subject;
use crate::pds::remote_repo::RemoteSession;
use crate::pds::store::RemoteUser;

/// How long a checked password is taken without asking its PDS again.
pub const REMEMBER: Duration = Duration::from_mins(5);
/// Checked passwords remembered, at most.
const CAPACITY: usize = 4096;
/// How long the remote PDS may take to answer `createSession` (and `deleteSession`).
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest `createSession` answer read (tokens and a DID document).
const MAX_ANSWER_BYTES: usize = 64 << 10;

/// Passwords of remote users that their PDS accepted a moment ago, as HMACs.
pub struct Checked {
    secret: [u8; 32],
    until: Mutex<HashMap<[u8; 32], Instant>>,
    /// `createSession` calls to other PDSes in flight, at most [`SESSIONS_AT_ONCE`]: a login
    /// past that is told to come back, whatever addresses the callers use.
    sessions: tokio::sync::Semaphore,
}

/// Remote PDSes asked at once.
const SESSIONS_AT_ONCE: usize = 16;

impl Default for Checked {
    fn default() -> Self {
        Checked {
            secret: rand::random(),
            until: Mutex::new(HashMap::new()),
            sessions: tokio::sync::Semaphore::new(SESSIONS_AT_ONCE),
        }
    }
}

impl std::fmt::Debug for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checked").finish_non_exhaustive()
    }
}

impl Checked {
    /// The HMAC of `did`, a zero byte and `password` under the secret.
    fn key(&self, did: &Did, password: &str) -> [u8; 32] {
        hmac_sha256(
            &self.secret,
            &[did.as_str().as_bytes(), &[0], password.as_bytes()],
        )
    }

    fn holds(&self, key: &[u8; 32], now: Instant) -> bool {
        self.lock().get(key).is_some_and(|until| *until > now)
    }

    fn remember(&self, key: [u8; 32], now: Instant) {
        let mut until = self.lock();
        if until.len() >= CAPACITY {
            until.retain(|_, u| *u > now);
            if until.len() >= CAPACITY {
                until.clear();
            }
        }
        until.insert(key, now + REMEMBER);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Instant>> {
        self.until.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Logins {
    /// Checks `identifier` (the handle or DID of a user of another PDS) and `password` for a
    /// caller at `client`; returns the user's DID.
    pub async fn check_remote(
        &self,
        pds: &Pds,
        identifier: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<Did, LoginError> {
        // Handles are case-insensitive; DIDs are not (a DID in other case is another DID).
        let identifier = identifier.trim();
        let identifier = if identifier.starts_with("did:") {
            identifier.to_owned()
        } else {
            identifier.to_ascii_lowercase()
        };
        let mut subjects = vec![
            Subject::Account(identifier.clone()),
            Subject::client(client),
        ];
        if let Err(wait) = self.limiter().begin(&subjects, Instant::now()) {
            tracing::info!(%client, wait_secs = wait.as_secs(), "remote login refused: too many failures");
            return Err(LoginError::RateLimited(wait));
        }
        let result = self
            .check_remote_counted(pds, &identifier, password, &mut subjects)
            .await;
        match &result {
            Ok(did) => {
                self.limiter().succeeded(&subjects);
                tracing::debug!(%did, "remote login");
            }
            Err(LoginError::Refused) => {
                tracing::info!(%client, identifier = %identifier, "failed remote login");
            }
            // Nothing was checked: the attempt does not count against the identity. It does
            // against the client when a server could not be reached (the identity's, or the
            // user's PDS): whoever names unreachable hosts is held to the address's allowance,
            // and cannot make the node reach them without limit.
            Err(e) => {
                let mut limiter = self.limiter();
                if matches!(e, LoginError::Unavailable(_)) {
                    let identities: Vec<Subject> = subjects
                        .iter()
                        .filter(|s| matches!(s, Subject::Account(_)))
                        .cloned()
                        .collect();
                    limiter.abandoned(&identities);
                } else {
                    limiter.abandoned(&subjects);
                }
                drop(limiter);
                tracing::warn!(%client, identifier = %identifier, error = %e, "remote login not checked");
            }
        }
        result
    }

    /// [`Logins::check_remote`] once the attempt is counted against `subjects` (to which the
    /// resolved DID is added).
    async fn check_remote_counted(
        &self,
        pds: &Pds,
        identifier: &str,
        password: &str,
        subjects: &mut Vec<Subject>,
    ) -> Result<Did, LoginError> {
        let identity = match pds.identities.resolve(pds, identifier).await {
            Ok(identity) => identity,
            Err(ResolveError::NotFound(_)) => return Err(LoginError::Refused),
            Err(ResolveError::Unavailable(why)) => {
                return Err(LoginError::Unavailable(format!(
                    "cannot resolve {identifier}: {why}"
                )));
            }
        };
        let did = identity.did;
        // An account of this node logs in as such (its own passwords, its own cache), never
        // through its PDS's createSession.
        let local = pds
            .accounts
            .get(&did)
            .map_err(|e| LoginError::Unavailable(e.to_string()))?
            .is_some();
        if local || did == pds.node_did {
            return Err(LoginError::Refused);
        }
        // A handle and its DID share one allowance.
        if did.as_str() != identifier {
            let by_did = Subject::Account(did.to_string());
            if let Err(wait) = self
                .limiter()
                .begin(std::slice::from_ref(&by_did), Instant::now())
            {
                return Err(LoginError::RateLimited(wait));
            }
            subjects.push(by_did);
        }
        // An account their PDS said is not active (taken down, deactivated) logs in nowhere
        // here, whatever it holds.
        let inactive = pds
            .store()
            .remote_inactive(&did)
            .map_err(|e| LoginError::Unavailable(e.to_string()))?;
        if let Some(status) = inactive {
            tracing::info!(%did, %status, "a remote login of an account that is not active");
            return Err(LoginError::Refused);
        }
        // A secret of this node's (`atcr login`): checked here, never sent to their PDS.
        if password.starts_with(crate::pds::oauth_cli::CLI_SECRET_PREFIX) {
            let valid = pds
                .cli_secret_valid(&did, password)
                .map_err(|e| LoginError::Unavailable(e.to_string()))?;
            return if valid {
                Ok(did)
            } else {
                Err(LoginError::Refused)
            };
        }
        let key = self.remote.key(&did, password);
        // A remembered password does without its PDS, unless the user has no session there
        // for pushes (the node restarted, or the session ended): then one is opened if it can
        // be, and the login stands if the PDS cannot be reached.
        let remembered = self.remote.holds(&key, Instant::now());
        if remembered && pds.remote_sessions.has(&did) {
            return Ok(did);
        }
        let Ok(_slot) = self.remote.sessions.try_acquire() else {
            if remembered {
                return Ok(did);
            }
            return Err(LoginError::Unavailable(
                "too many remote logins are being checked".into(),
            ));
        };
        let session = match create_session(pds, &identity.pds, &did, password).await {
            Ok(session) => session,
            Err(LoginError::Unavailable(why)) if remembered => {
                tracing::debug!(%did, %why, "no session opened for a remembered remote login");
                return Ok(did);
            }
            Err(e) => return Err(e),
        };
        self.remote.remember(key, Instant::now());
        // A session an OAuth sign-in opened stays on disk (and is used again after a restart);
        // a password session replaced is ended.
        if let Some(old) = pds.remote_sessions.keep(&did, session)
            && !old.is_oauth()
        {
            end_session(pds, &did, old).await;
        }
        let user = RemoteUser {
            handle: identity.handle.map(|h| h.to_string()),
            pds: identity.pds,
        };
        // Without it their namespace would not resolve: the login is not half-made.
        pds.store()
            .remember_remote_user(&did, user)
            .await
            .map_err(|e| LoginError::Unavailable(format!("cannot remember {did}: {e}")))?;
        Ok(did)
    }
}

/// HMAC-SHA256 (RFC 2104) of the concatenated `parts` under `key` (at most 64 bytes).
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut inner_pad = [0x36u8; 64];
    let mut outer_pad = [0x5cu8; 64];
    for (i, b) in key.iter().take(64).enumerate() {
        inner_pad[i] ^= b;
        outer_pad[i] ^= b;
    }
    let mut inner = Sha256::new().chain_update(inner_pad);
    for part in parts {
        inner.update(part);
    }
    Sha256::new()
        .chain_update(outer_pad)
        .chain_update(inner.finalize())
        .finalize()
        .into()
}

/// Asks the PDS at `endpoint` whether `password` is one of `did`'s: the session it opens when
/// it is, which pushes by that user write with.
async fn create_session(
    pds: &Pds,
    endpoint: &str,
    did: &Did,
    password: &str,
) -> Result<RemoteSession, LoginError> {
    let unavailable = |why: String| LoginError::Unavailable(format!("the PDS {endpoint}: {why}"));
    let target = pds
        .settings
        .identity
        .reachable(endpoint)
        .map_err(unavailable)?;
    let (status, answer) = post_json_bounded(
        &target,
        "/xrpc/com.atproto.server.createSession",
        None,
        Some(&json!({ "identifier": did.as_str(), "password": password })),
        MAX_ANSWER_BYTES,
        SESSION_TIMEOUT,
    )
    .await
    .map_err(|e| unavailable(format!("{e:#}")))?;
    match status {
        // A deactivated or taken-down account (`active: false`) logs in nowhere.
        200 if answer["did"].as_str() == Some(did.as_str()) && answer["active"] != false => {
            match (answer["accessJwt"].as_str(), answer["refreshJwt"].as_str()) {
                (Some(access), Some(refresh)) => Ok(RemoteSession::new(
                    endpoint.to_owned(),
                    access.to_owned(),
                    refresh.to_owned(),
                )),
                _ => Err(unavailable("it answered without tokens".into())),
            }
        }
        200 => Err(unavailable("it answered for another DID".into())),
        // AuthenticationRequired (a wrong password), AccountTakedown, AuthFactorTokenRequired.
        400 | 401 | 403 => {
            tracing::debug!(%did, status, error = ?answer["error"].as_str(), "remote PDS refused the password");
            Err(LoginError::Refused)
        }
        s => Err(unavailable(format!("it answered {s}"))),
    }
}

/// Ends a session replaced by a newer login's, so that logins do not pile up sessions on the
/// user's PDS. Its failure changes nothing here.
async fn end_session(pds: &Pds, did: &Did, old: RemoteSession) {
    let Ok(target) = pds.settings.identity.reachable(&old.endpoint) else {
        return;
    };
    let ended = post_json_bounded(
        &target,
        "/xrpc/com.atproto.server.deleteSession",
        Some(old.refresh_token()),
        None,
        MAX_ANSWER_BYTES,
        SESSION_TIMEOUT,
    )
    .await;
    if !matches!(ended, Ok((200, _))) {
        tracing::debug!(%did, ?ended, "the replaced remote session was not ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_passwords_are_keyed_by_did_and_password_and_expire() {
        let checked = Checked::default();
        let (a, b): (Did, Did) = (
            "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa".parse().unwrap(),
            "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb".parse().unwrap(),
        );
        let key = checked.key(&a, "pw");
        assert_ne!(key, checked.key(&b, "pw"));
        assert_ne!(key, checked.key(&a, "pw2"));
        assert_ne!(key, Checked::default().key(&a, "pw"), "a secret per node");
        let now = Instant::now();
        assert!(!checked.holds(&key, now));
        checked.remember(key, now);
        assert!(checked.holds(&key, now + REMEMBER / 2));
        assert!(!checked.holds(&key, now + REMEMBER));
    }

    /// Identities that cannot be resolved (their servers are unreachable) are answered as
    /// unavailable, and count against the client address only: past its allowance it waits.
    #[tokio::test]
    async fn unresolvable_identities_count_against_the_client() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let dir = tempfile::tempdir().unwrap();
        let mut settings = crate::pds::PdsSettings::localhost(4000);
        settings.identity.handle_resolver = Some(format!("http://127.0.0.1:{port}"));
        let pds = Pds::open(
            dir.path(),
            settings,
            crate::blobstore::BlobStore::memory().unwrap(),
        )
        .await
        .unwrap();
        let client = IpAddr::from([192, 0, 2, 1]);
        let mut answers = Vec::new();
        for i in 0..=crate::pds::limiter::CLIENT_FREE_FAILURES + 1 {
            let name = format!("user{i}.example.com");
            answers.push(pds.logins.check_remote(&pds, &name, "pw", client).await);
        }
        let (last, first) = answers.split_last().unwrap();
        assert!(
            first
                .iter()
                .all(|a| matches!(a, Err(LoginError::Unavailable(_)))),
            "{first:?}"
        );
        assert!(matches!(last, Err(LoginError::RateLimited(_))), "{last:?}");
        // Another client is not held up, and the identities themselves were not charged.
        let other = IpAddr::from([192, 0, 2, 2]);
        let again = pds
            .logins
            .check_remote(&pds, "user0.example.com", "pw", other)
            .await;
        assert!(
            matches!(again, Err(LoginError::Unavailable(_))),
            "{again:?}"
        );
    }

    /// A DID of this node's own accounts, however it is written, never logs in through the
    /// remote path (its own PDS's createSession, bypassing the local checks).
    #[tokio::test]
    async fn local_dids_are_refused_here() {
        let dir = tempfile::tempdir().unwrap();
        let pds = Pds::open(
            dir.path(),
            crate::pds::PdsSettings::localhost(4000),
            crate::blobstore::BlobStore::memory().unwrap(),
        )
        .await
        .unwrap();
        let alice = pds
            .create_account("alice", "alice-password", false)
            .await
            .unwrap()
            .did;
        let client = IpAddr::from([192, 0, 2, 1]);
        for name in [alice.to_string(), format!(" {alice} ")] {
            let answer = pds
                .logins
                .check_remote(&pds, &name, "alice-password", client)
                .await;
            assert!(
                matches!(answer, Err(LoginError::Refused)),
                "{name}: {answer:?}"
            );
        }
        // In other case it is another DID, which nothing resolves.
        let upper = format!(
            "did:plc:{}",
            alice.as_str()["did:plc:".len()..].to_ascii_uppercase()
        );
        let answer = pds
            .logins
            .check_remote(&pds, &upper, "alice-password", client)
            .await;
        assert!(answer.is_err(), "{answer:?}");
    }

    #[test]
    fn the_hmac_is_rfc_4231s() {
        // RFC 4231, test case 1.
        assert_eq!(
            hex::encode(hmac_sha256(&[0x0b; 20], &[b"Hi ", b"There"])),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        // Test case 2 (a key shorter than the block).
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", &[b"what do ya want for nothing?"])),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
