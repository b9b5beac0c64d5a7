//! The embedded Personal Data Server: repositories in redb, the write path, identities, accounts
//! and sessions, XRPC and the firehose. See `docs/pds.md`.
//!
//! Imports `atproto`, `blobstore`, `http`, `http_client` and `dbslot`; never `oci`, `registry`,
//! `appview`, `auth`, `hold`, `web` or `server`. Other rooms use accounts and sign-in through the
//! re-exports below.

pub mod accounts;
pub mod auth;
pub mod did_resolver;
pub mod events;
pub mod identities;
pub mod identity;
pub mod lexicons;
pub mod limiter;
pub mod login;
pub mod oauth;
pub mod oauth_cli;
mod oauth_flow;
pub mod passwords;
pub mod plc;
pub mod rate;
pub mod remote_repo;
pub mod remote_sync;
pub mod repo;
pub mod store;
pub mod subscribers;
pub mod wal;
pub mod xrpc;

// Accounts and sign-in as the pages use them: the PDS's public surface for sessions.
pub use accounts::{AccountError, Session, now_secs};
pub use login::{Accepts, ClientAddr, LoginError};
pub use oauth::PENDING_FOR as OAUTH_PENDING_FOR;
pub use oauth_flow::{OAuthClient, OAuthReturn};

use std::path::Path;
use std::sync::Arc;

use accounts::{Account, Accounts, PlcEntry};
use identity::NodeKeys;
use repo::{RepoError, Repos};
use store::{PdsStore, StoreError};

use crate::atproto::{Algorithm, Datetime, Did, Handle, Keypair};
use crate::blobstore::BlobStore;

/// `pds.max_temp_blob_bytes` unless configured: 256 MiB.
pub const DEFAULT_MAX_TEMP_BLOB_BYTES: u64 = 256 << 20;

/// Settings the PDS needs from the configuration.
#[derive(Debug, Clone)]
pub struct PdsSettings {
    /// The public host (`host` or `localhost:<port>`): the node's `did:web` and endpoint.
    pub public_host: String,
    /// `http` or `https`, for the service endpoint in DID documents.
    pub scheme: String,
    /// Local handles are `<name>.<handle_domain>`.
    pub handle_domain: String,
    /// Largest `uploadBlob` body.
    pub max_blob_bytes: u64,
    /// Most bytes of blobs one account may hold uploaded but referenced by no record yet.
    pub max_temp_blob_bytes: u64,
    /// An upstream PLC directory that receives every operation too (`https://plc.directory`).
    pub plc_upstream: Option<String>,
    /// Bounds on `subscribeRepos` subscribers.
    pub firehose: subscribers::FirehoseLimits,
    /// Whether anyone may register a new did:plc in the built-in directory (`POST /did:plc:…`
    /// with a genesis operation). Off: only the node creates DIDs there.
    pub plc_open_creation: bool,
    /// How users of other PDSes are resolved.
    pub identity: identities::IdentitySettings,
}

impl PdsSettings {
    /// Settings for a node serving on `addr` (tests and `localhost` nodes).
    #[must_use]
    pub fn localhost(port: u16) -> PdsSettings {
        PdsSettings {
            public_host: format!("localhost:{port}"),
            scheme: "http".into(),
            handle_domain: "atcr.test".into(),
            max_blob_bytes: 50 << 20,
            max_temp_blob_bytes: DEFAULT_MAX_TEMP_BLOB_BYTES,
            plc_upstream: None,
            firehose: subscribers::FirehoseLimits::default(),
            plc_open_creation: false,
            identity: identities::IdentitySettings::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PdsError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("key storage: {0}")]
    Keys(#[from] std::io::Error),
    #[error("{0}")]
    Upstream(String),
}

/// The PDS role of a node.
pub struct Pds {
    pub settings: PdsSettings,
    pub node_did: Did,
    pub keys: NodeKeys,
    pub repos: Repos,
    pub accounts: Accounts,
    pub blobs: BlobStore,
    /// Session tokens already verified (see [`auth::VerifiedTokens`]).
    pub verified_tokens: auth::VerifiedTokens,
    /// The gate of every password login (see [`login::Logins`]).
    pub logins: login::Logins,
    /// Identities of users anywhere, resolved and cached (see [`identities`]).
    pub identities: identities::Identities,
    /// Sessions on other PDSes of their users who logged in here (see [`remote_repo`]).
    pub remote_sessions: remote_repo::RemoteSessions,
    /// OAuth sign-ins of remote users under way (see [`oauth`]).
    pub oauth_pending: oauth::Authorizations,
    /// One-time codes for `atcr login` of remote users (see [`oauth_cli`]).
    pub cli_codes: oauth_cli::CliCodes,
    /// Cancelled when the node stops: firehose subscribers (upgraded connections, which the
    /// server's graceful shutdown does not track) close on it.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The firehose subscribers connected now.
    pub subscribers: subscribers::Subscribers,
    /// New DIDs registered in the built-in directory, per client address
    /// (with `plc_open_creation`).
    pub plc_creations: rate::PerAddress,
    /// Who may read the repositories (records, CAR exports, blobs, the firehose): set by the
    /// role that owns the policy (the hold: anyone when public, else crew). Unset: anyone.
    pub read_policy: std::sync::OnceLock<ReadPolicy>,
}

/// Whether a caller (`None`: anonymous) may read the node's repositories.
pub type ReadPolicy = Box<dyn Fn(Option<&Did>) -> bool + Send + Sync>;

/// Genesis operations (new DIDs) one client address may submit to the built-in directory per
/// hour: those within the size limits, signed validly or not (with `pds.plc_open_creation`;
/// the node's own are not counted).
pub const PLC_CREATIONS_PER_HOUR: u32 = 10;

impl std::fmt::Debug for Pds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pds({})", self.node_did)
    }
}

impl Pds {
    /// A service token for the account `user` to call `lxm` on the service `aud`, valid a
    /// minute, as `com.atproto.server.getServiceAuth` would give it; `None` for a DID that is
    /// no account here.
    #[must_use]
    pub fn service_token(&self, user: &Did, aud: &Did, lxm: &str) -> Option<String> {
        let key = self.repos.key(user)?;
        let now = accounts::now_secs();
        Some(auth::service_token(
            &key,
            user.as_str(),
            aud.as_str(),
            Some(lxm),
            now,
            now + 60,
        ))
    }

    /// The repository store: records, blocks, blob metadata and the event log.
    #[must_use]
    pub fn store(&self) -> &PdsStore {
        self.repos.store()
    }

    /// Opens `<data_dir>/pds.redb` and `<data_dir>/keys/`, creating the node's repository on
    /// first start.
    pub async fn open(
        data_dir: &Path,
        settings: PdsSettings,
        blobs: BlobStore,
    ) -> Result<Pds, PdsError> {
        let keys = NodeKeys::load_or_create(&data_dir.join("keys"))?;
        let node_did = identity::node_did(&settings.public_host).map_err(PdsError::Invalid)?;
        let node_did = identity::keep_local_did(&data_dir.join("keys"), node_did)?;
        let store = PdsStore::open(&data_dir.join("pds.redb"))?;
        let repos = Repos::new(store.clone(), Arc::new(lexicons::builtin()));
        let accounts = Accounts::new(store.clone());
        let rekeyed = accounts.hash_session_ids()?;
        if rekeyed > 0 {
            tracing::info!(sessions = rekeyed, "session ids now stored as hashes");
        }
        repos.register_key(node_did.clone(), keys.repo.clone());
        if store.head(&node_did)?.is_none() {
            repos.create_repo(&node_did, keys.repo.clone()).await?;
        }
        for account in accounts.list()? {
            let key = keys.user_key(&account.did)?;
            repos.register_key(account.did.clone(), Arc::new(key));
        }
        Ok(Pds {
            settings,
            node_did,
            keys,
            repos,
            accounts,
            blobs,
            verified_tokens: auth::VerifiedTokens::default(),
            logins: login::Logins::default(),
            identities: identities::Identities::default(),
            remote_sessions: remote_repo::RemoteSessions::default(),
            oauth_pending: oauth::Authorizations::default(),
            cli_codes: oauth_cli::CliCodes::default(),
            shutdown: tokio_util::sync::CancellationToken::new(),
            subscribers: subscribers::Subscribers::default(),
            plc_creations: rate::PerAddress::new(
                PLC_CREATIONS_PER_HOUR,
                std::time::Duration::from_hours(1),
            ),
            read_policy: std::sync::OnceLock::new(),
        })
    }

    /// Whether `caller` may read the repositories (see [`Pds::read_policy`]).
    #[must_use]
    pub fn may_read(&self, caller: Option<&Did>) -> bool {
        self.read_policy.get().is_none_or(|allows| allows(caller))
    }

    /// `scheme://host`: the PDS endpoint in DID documents.
    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("{}://{}", self.settings.scheme, self.settings.public_host)
    }

    /// The handle of a local name.
    pub fn handle_for(&self, name: &str) -> Result<String, PdsError> {
        let ok = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !ok {
            return Err(PdsError::Invalid(format!(
                "user names are 1-63 lowercase letters, digits and inner hyphens: {name:?}"
            )));
        }
        let handle = format!("{name}.{}", self.settings.handle_domain);
        handle
            .parse::<Handle>()
            .map_err(|e| PdsError::Invalid(format!("{handle}: {e}")))?;
        Ok(handle)
    }

    /// Creates a local account: a new repository key, a `did:plc` genesis operation signed
    /// with the node's rotation key (recorded in the built-in directory), the account row, the
    /// repository, and `#identity` and `#account` events.
    pub async fn create_account(
        &self,
        name: &str,
        password: &str,
        admin: bool,
    ) -> Result<Account, PdsError> {
        accounts::check_new_password(password).map_err(AccountError::from)?;
        let handle = self.handle_for(name)?;
        if self.accounts.resolve_handle(&handle)?.is_some() {
            return Err(AccountError::HandleTaken(handle).into());
        }
        let key = Keypair::generate(Algorithm::K256);
        let (did, op) = plc::genesis(
            &self.keys.rotation,
            &key.public_key(),
            &handle,
            &self.endpoint(),
        )
        .map_err(|e| PdsError::Invalid(e.to_string()))?;
        let cid = plc::op_cid(&op).map_err(|e| PdsError::Invalid(e.to_string()))?;
        // The upstream directory first: if it refuses, nothing is created here.
        self.forward_plc(&did, &op).await?;
        self.keys.save_user_key(&did, &key)?;
        let account = Account {
            did: did.clone(),
            name: name.to_owned(),
            handle: handle.clone(),
            password_hash: accounts::hash_password(password).map_err(AccountError::from)?,
            admin,
            created: accounts::now_secs(),
            quota: None,
        };
        let entry = PlcEntry {
            did: did.clone(),
            operation: op,
            cid: cid.to_string(),
            nullified: false,
            created_at: Datetime::now().as_str().to_owned(),
        };
        let row = account.clone();
        self.repos
            .store()
            .write(move |tx| Accounts::insert(tx, &row, &entry))
            .await?;
        self.repos.create_repo(&did, Arc::new(key)).await?;
        self.emit_identity(&did, Some(&handle)).await?;
        self.emit_account(&did, true, None).await?;
        tracing::info!(%did, %handle, "account created");
        Ok(account)
    }

    /// Sends a did:plc operation to the upstream directory, when one is configured.
    pub async fn forward_plc(&self, did: &Did, op: &serde_json::Value) -> Result<(), PdsError> {
        let Some(url) = &self.settings.plc_upstream else {
            return Ok(());
        };
        let failed = |why: String| PdsError::Upstream(format!("PLC directory {url}: {why}"));
        let target =
            crate::http_client::Target::parse(url, false).map_err(|e| failed(e.to_string()))?;
        let (status, answer) = crate::http_client::send_json(
            &target,
            None,
            http::Method::POST,
            &format!("/{did}"),
            None,
            op,
        )
        .await
        .map_err(|e| failed(format!("{e:#}")))?;
        if !(200..300).contains(&status) {
            let message = answer["message"].as_str().unwrap_or("no message");
            return Err(failed(format!(
                "refused the operation ({status}): {message}"
            )));
        }
        tracing::info!(%did, upstream = %url, "PLC operation forwarded");
        Ok(())
    }

    /// Removes a local account (its repository is deactivated, not erased).
    pub async fn remove_account(&self, did: &Did) -> Result<Account, PdsError> {
        let account = self.accounts.remove(did)?;
        self.keys.remove_user_key(did)?;
        self.emit_account(did, false, Some("deleted")).await?;
        Ok(account)
    }

    /// Appends and publishes an `#identity` event for `did`.
    pub(crate) async fn emit_identity(
        &self,
        did: &Did,
        handle: Option<&str>,
    ) -> Result<(), PdsError> {
        let (store, did2, handle) = (
            self.repos.store().clone(),
            did.clone(),
            handle.map(str::to_owned),
        );
        let (seq, frame) = tokio::task::spawn_blocking(move || {
            store.append_event(Box::new(move |seq| {
                events::identity_frame(seq, &did2, handle.as_deref(), &Datetime::now())
            }))
        })
        .await
        .map_err(StoreError::from)??;
        self.repos.publish(seq, frame);
        Ok(())
    }

    async fn emit_account(
        &self,
        did: &Did,
        active: bool,
        status: Option<&'static str>,
    ) -> Result<(), PdsError> {
        let (store, did2) = (self.repos.store().clone(), did.clone());
        let (seq, frame) = tokio::task::spawn_blocking(move || {
            store.append_event(Box::new(move |seq| {
                events::account_frame(seq, &did2, active, status, &Datetime::now())
            }))
        })
        .await
        .map_err(StoreError::from)??;
        self.repos.publish(seq, frame);
        Ok(())
    }

    /// The DID document of a DID hosted here (the node's `did:web` or a local `did:plc`).
    pub fn did_document(&self, did: &Did) -> Result<Option<serde_json::Value>, PdsError> {
        if did == &self.node_did {
            return Ok(Some(identity::did_document(
                did,
                self.node_handle().as_deref(),
                &self.keys.repo.public_key(),
                &self.endpoint(),
            )));
        }
        let log = self.accounts.plc_log(did)?;
        Ok(log
            .last()
            .and_then(|e| plc::document(did, &e.operation).ok()))
    }

    /// The handle of a DID hosted here: an account's, or the node's.
    pub fn handle_of(&self, did: &Did) -> Result<Option<String>, PdsError> {
        if did == &self.node_did {
            return Ok(self.node_handle());
        }
        Ok(self.accounts.get(did)?.map(|a| a.handle))
    }

    /// The node's own handle: its public host name, when that is a valid handle (`localhost`
    /// is not: a node known only as localhost has no handle). Its DID document names it in
    /// `alsoKnownAs`, and `/.well-known/atproto-did` on that host answers the node's DID.
    #[must_use]
    pub fn node_handle(&self) -> Option<String> {
        let name = crate::http_client::host_without_port(&self.settings.public_host);
        name.parse::<crate::atproto::Handle>()
            .ok()
            .map(|_| name.to_ascii_lowercase())
    }

    /// The DID a handle names here: the node's own, or an account's.
    pub fn resolve_handle(&self, handle: &str) -> Result<Option<Did>, PdsError> {
        if self
            .node_handle()
            .is_some_and(|h| h.eq_ignore_ascii_case(handle))
        {
            return Ok(Some(self.node_did.clone()));
        }
        Ok(self.accounts.resolve_handle(handle)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accounts_get_plc_identities_and_repos() {
        let dir = tempfile::tempdir().unwrap();
        let pds = Pds::open(
            dir.path(),
            PdsSettings::localhost(4000),
            BlobStore::memory().unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(pds.node_did.as_str(), "did:web:localhost%3A4000");
        let short = pds.create_account("alice", "7-chars", false).await;
        assert!(
            short.is_err_and(|e| e.to_string().contains("at least 8 characters")),
            "a short password was accepted"
        );
        let alice = pds
            .create_account("alice", "8-chars!", false)
            .await
            .unwrap();
        assert_eq!(alice.handle, "alice.atcr.test");
        assert!(
            pds.create_account("alice", "alice-pw", false)
                .await
                .is_err()
        );
        assert!(
            pds.create_account("Bad_Name", "alice-pw", false)
                .await
                .is_err()
        );
        let doc = pds.did_document(&alice.did).unwrap().unwrap();
        assert_eq!(doc["alsoKnownAs"][0], "at://alice.atcr.test");
        assert_eq!(
            doc["service"][0]["serviceEndpoint"],
            "http://localhost:4000"
        );
        let log = pds.accounts.plc_log(&alice.did).unwrap();
        plc::check_next(&alice.did, None, &log[0].operation).unwrap();
        assert!(pds.repos.store().head(&alice.did).unwrap().is_some());
        // node repo commit, alice's repo commit, #identity, #account
        assert_eq!(pds.repos.store().last_seq().unwrap(), 4);
        drop(pds);
        let pds = Pds::open(
            dir.path(),
            PdsSettings::localhost(4000),
            BlobStore::memory().unwrap(),
        )
        .await
        .unwrap();
        assert!(pds.repos.key(&alice.did).is_some());
        assert_eq!(pds.repos.store().last_seq().unwrap(), 4);
        pds.remove_account(&alice.did).await.unwrap();
        assert!(pds.accounts.find("alice").unwrap().is_none());
        // Known only as localhost, the node has no handle.
        assert_eq!(pds.node_handle(), None);
        let doc = pds.did_document(&pds.node_did).unwrap().unwrap();
        assert_eq!(doc["alsoKnownAs"], serde_json::json!([]));
    }

    #[tokio::test]
    async fn a_node_with_a_public_name_has_it_as_its_handle() {
        let dir = tempfile::tempdir().unwrap();
        let settings = PdsSettings {
            public_host: "registry.example.com".into(),
            ..PdsSettings::localhost(4000)
        };
        let pds = Pds::open(dir.path(), settings, BlobStore::memory().unwrap())
            .await
            .unwrap();
        assert_eq!(pds.node_did.as_str(), "did:web:registry.example.com");
        assert_eq!(pds.node_handle().as_deref(), Some("registry.example.com"));
        let doc = pds.did_document(&pds.node_did).unwrap().unwrap();
        assert_eq!(doc["alsoKnownAs"][0], "at://registry.example.com");
        assert_eq!(
            pds.resolve_handle("registry.example.com").unwrap(),
            Some(pds.node_did.clone())
        );
        assert_eq!(
            pds.handle_of(&pds.node_did).unwrap().as_deref(),
            Some("registry.example.com")
        );
    }
}
