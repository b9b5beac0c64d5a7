//! `atcr login` for users of other PDSes. Signed in to the pages through OAuth (their PDS's
//! authorization page), they let the `atcr` command on their computer push as them: the
//! browser goes back to the command's loopback listener with a one-time code, which the
//! command exchanges here, with the verifier of the challenge its link carried (as PKCE does:
//! whoever else catches the code cannot use it), for a secret of this node (`atcr-cli-…`).
//! docker, podman and skopeo then send that secret as the password (through the credential
//! helper). The node keeps only its SHA-256, bound to the user's DID; it takes the secret only
//! while their OAuth session lives here (their pushes are written to their PDS with that
//! session), never sends it anywhere, and forgets it when the session ends (sign-out, a refused
//! refresh).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

use super::Pds;
use super::store::StoreError;
use crate::atproto::Did;

/// How every secret of this kind begins: a password that does is never sent to a PDS.
pub const CLI_SECRET_PREFIX: &str = "atcr-cli-";
/// How long a one-time code may wait for its exchange.
const CODE_FOR: Duration = Duration::from_mins(2);
/// Codes waiting, at most, and per user.
const CODES_MAX: usize = 256;
const CODES_PER_USER: usize = 4;
/// Secrets kept per user, at most: a new one past it replaces the oldest.
pub const SECRETS_PER_USER: usize = 16;

/// A code waiting: when it was issued, for whom, and the command's challenge.
struct Waiting {
    at: Instant,
    did: Did,
    challenge: String,
}

/// One-time codes waiting for the `atcr` command's exchange, by code.
#[derive(Default)]
pub struct CliCodes(Mutex<HashMap<String, Waiting>>);

impl CliCodes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiting>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets the codes waiting for `did` (their OAuth session ended).
    pub fn forget(&self, did: &Did) {
        self.lock().retain(|_, w| &w.did != did);
    }
}

/// The challenge of `verifier`: base64url of its SHA-256.
#[must_use]
pub fn challenge_of(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

impl Pds {
    /// A one-time code for the `atcr` command of `did`, who has an OAuth session here, bound
    /// to the command's `challenge`; `None` without a session, or when too many codes wait (in
    /// all, or for them).
    pub fn cli_code(&self, did: &Did, challenge: &str) -> Result<Option<String>, StoreError> {
        if self.store().remote_grant(did)?.is_none() {
            return Ok(None);
        }
        let mut codes = self.cli_codes.lock();
        codes.retain(|_, w| w.at.elapsed() < CODE_FOR);
        let theirs = codes.values().filter(|w| &w.did == did).count();
        if codes.len() >= CODES_MAX || theirs >= CODES_PER_USER {
            return Ok(None);
        }
        let code = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>());
        let waiting = Waiting {
            at: Instant::now(),
            did: did.clone(),
            challenge: challenge.to_owned(),
        };
        codes.insert(code.clone(), waiting);
        Ok(Some(code))
    }

    /// Exchanges a one-time code and the verifier of its challenge for a new secret of its
    /// user: (their DID, the secret). A code works once (a wrong verifier spends it too), for
    /// two minutes, while its user's OAuth session lives.
    pub async fn cli_secret(
        &self,
        code: &str,
        verifier: &str,
    ) -> Result<Option<(Did, String)>, StoreError> {
        let Some(waiting) = self.cli_codes.lock().remove(code) else {
            return Ok(None);
        };
        let did = waiting.did;
        if waiting.at.elapsed() >= CODE_FOR
            || challenge_of(verifier) != waiting.challenge
            || self.store().remote_grant(&did)?.is_none()
        {
            return Ok(None);
        }
        let secret = format!(
            "{CLI_SECRET_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
        );
        self.store()
            .add_remote_cli_secret(&did, hash(&secret), SECRETS_PER_USER)
            .await?;
        tracing::info!(%did, "issued a secret to the atcr command of a user of another PDS");
        Ok(Some((did, secret)))
    }

    /// How many secrets `atcr login` holds for `did`.
    pub fn cli_secrets(&self, did: &Did) -> Result<usize, StoreError> {
        self.store().count_remote_cli_secrets(did)
    }

    /// Revokes every secret `atcr login` holds for `did` (the settings page).
    pub async fn revoke_cli_secrets(&self, did: &Did) -> Result<usize, StoreError> {
        self.cli_codes.forget(did);
        self.store().remove_remote_cli_secrets(did).await
    }

    /// Whether `secret` is one `atcr login` holds for `did`, and their OAuth session lives.
    pub fn cli_secret_valid(&self, did: &Did, secret: &str) -> Result<bool, StoreError> {
        let store = self.store();
        Ok(store.has_remote_cli_secret(did, &hash(secret))? && store.remote_grant(did)?.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn codes_work_once_with_their_verifier_and_secrets_only_with_a_session() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = crate::blobstore::BlobStore::memory().unwrap();
        let pds = Pds::open(dir.path(), crate::pds::PdsSettings::localhost(4000), blobs)
            .await
            .unwrap();
        let did: Did = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa".parse().unwrap();
        let challenge = challenge_of("verifier");
        // No OAuth session: no code.
        assert_eq!(pds.cli_code(&did, &challenge).unwrap(), None);
        let grant = Some(b"{}".to_vec());
        pds.store()
            .set_remote_grant(&did, grant.clone())
            .await
            .unwrap();
        // Whoever catches a code cannot use it without the command's verifier.
        let code = pds.cli_code(&did, &challenge).unwrap().unwrap();
        assert!(pds.cli_secret(&code, "another").await.unwrap().is_none());
        let spent = pds.cli_secret(&code, "verifier").await.unwrap();
        assert!(spent.is_none(), "a wrong verifier spends the code");
        let code = pds.cli_code(&did, &challenge).unwrap().unwrap();
        let (owner, secret) = pds.cli_secret(&code, "verifier").await.unwrap().unwrap();
        assert_eq!(owner, did);
        assert!(secret.starts_with(CLI_SECRET_PREFIX));
        let again = pds.cli_secret(&code, "verifier").await.unwrap();
        assert!(again.is_none(), "a code works once");
        assert!(pds.cli_secret_valid(&did, &secret).unwrap());
        assert_eq!(pds.cli_secrets(&did).unwrap(), 1);
        let other: Did = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb".parse().unwrap();
        assert!(!pds.cli_secret_valid(&other, &secret).unwrap());
        assert!(!pds.cli_secret_valid(&did, "atcr-cli-guess").unwrap());
        // At most a few codes wait per user; they are forgotten when the session ends.
        for _ in 0..CODES_PER_USER {
            assert!(pds.cli_code(&did, &challenge).unwrap().is_some());
        }
        assert_eq!(pds.cli_code(&did, &challenge).unwrap(), None);
        pds.cli_codes.forget(&did);
        assert!(pds.cli_code(&did, &challenge).unwrap().is_some());
        pds.cli_codes.forget(&did);
        // The session gone, the secret no longer works, nor does a code issued before.
        let code = pds.cli_code(&did, &challenge).unwrap().unwrap();
        pds.store().set_remote_grant(&did, None).await.unwrap();
        assert!(!pds.cli_secret_valid(&did, &secret).unwrap());
        assert!(pds.cli_secret(&code, "verifier").await.unwrap().is_none());
        pds.store().set_remote_grant(&did, grant).await.unwrap();
        assert_eq!(
            pds.store().remove_remote_cli_secrets(&did).await.unwrap(),
            1
        );
        assert!(!pds.cli_secret_valid(&did, &secret).unwrap());
        // Past the cap, a new secret replaces the oldest.
        let mut secrets = Vec::new();
        for _ in 0..=SECRETS_PER_USER {
            let code = pds.cli_code(&did, &challenge).unwrap().unwrap();
            secrets.push(pds.cli_secret(&code, "verifier").await.unwrap().unwrap().1);
            pds.cli_codes.forget(&did);
        }
        assert!(!pds.cli_secret_valid(&did, &secrets[0]).unwrap());
        let kept = secrets[1..]
            .iter()
            .all(|s| pds.cli_secret_valid(&did, s).unwrap());
        assert!(kept);
        assert_eq!(pds.cli_secrets(&did).unwrap(), SECRETS_PER_USER);
        assert_eq!(
            pds.revoke_cli_secrets(&did).await.unwrap(),
            SECRETS_PER_USER
        );
        assert!(!pds.cli_secret_valid(&did, &secrets[1]).unwrap());
    }
}
