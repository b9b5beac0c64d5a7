//! `atcr login` for users of other PDSes. Signed in to the pages through OAuth (their PDS's
//! authorization page), they let the `atcr` command on their computer push as them: the
//! browser goes back to the command's loopback listener with a one-time code, which the
//! command exchanges here for a secret of this node (`atcr-cli-…`). docker, podman and skopeo
//! then send that secret as the password (through the credential helper). The node keeps only
//! its SHA-256, bound to the user's DID; it takes the secret only while their OAuth session
//! lives here (their pushes are written to their PDS with that session), never sends it
//! anywhere, and forgets it when the session ends (sign-out, a refused refresh).

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
/// Codes waiting, at most.
const CODES_MAX: usize = 256;

/// One-time codes waiting for the `atcr` command's exchange: code → (issued, user).
#[derive(Default)]
pub struct CliCodes(Mutex<HashMap<String, (Instant, Did)>>);

impl CliCodes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Did)>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

impl Pds {
    /// A one-time code for the `atcr` command of `did`, who has an OAuth session here; `None`
    /// without one, or when too many codes wait.
    pub fn cli_code(&self, did: &Did) -> Result<Option<String>, StoreError> {
        if self.store().remote_grant(did)?.is_none() {
            return Ok(None);
        }
        let mut codes = self.cli_codes.lock();
        codes.retain(|_, (at, _)| at.elapsed() < CODE_FOR);
        if codes.len() >= CODES_MAX {
            return Ok(None);
        }
        let code = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>());
        codes.insert(code.clone(), (Instant::now(), did.clone()));
        Ok(Some(code))
    }

    /// Exchanges a one-time code for a new secret of its user: (their DID, the secret). A code
    /// works once, for two minutes.
    pub async fn cli_secret(&self, code: &str) -> Result<Option<(Did, String)>, StoreError> {
        let Some((at, did)) = self.cli_codes.lock().remove(code) else {
            return Ok(None);
        };
        if at.elapsed() >= CODE_FOR {
            return Ok(None);
        }
        let secret = format!(
            "{CLI_SECRET_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
        );
        self.store()
            .add_remote_cli_secret(&did, hash(&secret))
            .await?;
        tracing::info!(%did, "issued a secret to the atcr command of a user of another PDS");
        Ok(Some((did, secret)))
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
    async fn codes_work_once_and_secrets_only_with_a_session() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = crate::blobstore::BlobStore::memory().unwrap();
        let pds = Pds::open(dir.path(), crate::pds::PdsSettings::localhost(4000), blobs)
            .await
            .unwrap();
        let did: Did = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa".parse().unwrap();
        // No OAuth session: no code.
        assert_eq!(pds.cli_code(&did).unwrap(), None);
        pds.store()
            .set_remote_grant(&did, Some(b"{}".to_vec()))
            .await
            .unwrap();
        let code = pds.cli_code(&did).unwrap().unwrap();
        let (owner, secret) = pds.cli_secret(&code).await.unwrap().unwrap();
        assert_eq!(owner, did);
        assert!(secret.starts_with(CLI_SECRET_PREFIX));
        assert!(
            pds.cli_secret(&code).await.unwrap().is_none(),
            "a code works once"
        );
        assert!(pds.cli_secret_valid(&did, &secret).unwrap());
        let other: Did = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb".parse().unwrap();
        assert!(!pds.cli_secret_valid(&other, &secret).unwrap());
        assert!(!pds.cli_secret_valid(&did, "atcr-cli-guess").unwrap());
        // The session gone, the secret no longer works.
        pds.store().set_remote_grant(&did, None).await.unwrap();
        assert!(!pds.cli_secret_valid(&did, &secret).unwrap());
        pds.store()
            .set_remote_grant(&did, Some(b"{}".to_vec()))
            .await
            .unwrap();
        assert_eq!(
            pds.store().remove_remote_cli_secrets(&did).await.unwrap(),
            1
        );
        assert!(!pds.cli_secret_valid(&did, &secret).unwrap());
    }
}
