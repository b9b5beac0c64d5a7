//! The one gate every password login goes through: XRPC `createSession`, the registry's
//! `/auth/token` and the web sign-in.
//!
//! - Failures are limited per account and per client address (`limiter.rs`): past the free
//!   ones the caller is told to wait, without any password being checked.
//! - App passwords are checked with one SHA-256 (`passwords.rs`); argon2 runs only for the
//!   account password, on the blocking pool, at most [`ARGON2_AT_ONCE`] at a time: the memory
//!   of logins is bounded by that times 19 MiB, and the async workers keep answering.
//! - An identifier no account has costs the same argon2 run, against a dummy hash, and is
//!   limited the same way: the answers do not tell known names from unknown ones.
//! - Users of other PDSes log in through the same limits, their passwords checked by their own
//!   PDS (`login/remote.rs`).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

mod remote;

use super::accounts::{Account, AccountError, Accounts, AppPassword};
use super::limiter::{Limiter, Subject};
use super::passwords;

/// argon2 checks that may run at once (each holds 19 MiB for tens of milliseconds).
pub const ARGON2_AT_ONCE: usize = 2;
/// How long a login waits for an argon2 slot before it is told to come back.
const QUEUE_WAIT: Duration = Duration::from_secs(10);
/// What a login that found no slot is told to wait.
const BUSY_RETRY: Duration = Duration::from_secs(5);

/// The address of the client that sent a request, put in its extensions by the server: the
/// per-client limit counts against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    /// The client of `req` (the unspecified address if the server did not say: one shared
    /// allowance for all such requests).
    #[must_use]
    pub fn of<B>(req: &http::Request<B>) -> IpAddr {
        req.extensions()
            .get::<ClientAddr>()
            .map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |c| c.0)
    }
}

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Wrong identifier or password (which of the two is not said).
    #[error("invalid identifier or password")]
    Refused,
    /// Too many failures, or too many logins at once: try again after the wait.
    #[error("too many failed logins; try again in {} seconds", retry_after_secs(*.0))]
    RateLimited(Duration),
    /// A remote user's PDS (or the server that resolves their identity) could not be
    /// reached: nothing was checked; try again later.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error("password check failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl LoginError {
    /// For a `Retry-After` header: whole seconds, at least one.
    #[must_use]
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            LoginError::RateLimited(wait) => Some(retry_after_secs(*wait)),
            _ => None,
        }
    }
}

fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// Which passwords a login path takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepts {
    /// The account password or an app password (API clients).
    AnyPassword,
    /// The account password only (the web pages).
    AccountPassword,
}

/// A login that succeeded.
#[derive(Debug, Clone)]
pub struct Login {
    pub account: Account,
    /// The app password used, if it was one.
    pub app_password: Option<AppPassword>,
}

/// The login gate of a node.
#[derive(Debug)]
pub struct Logins {
    argon2: Arc<tokio::sync::Semaphore>,
    limiter: Mutex<Limiter>,
    argon2_runs: Arc<AtomicU64>,
    /// Remote users' passwords their PDS accepted a moment ago (`remote.rs`).
    remote: remote::Checked,
}

impl Default for Logins {
    fn default() -> Self {
        Logins {
            argon2: Arc::new(tokio::sync::Semaphore::new(ARGON2_AT_ONCE)),
            limiter: Mutex::default(),
            argon2_runs: Arc::default(),
            remote: remote::Checked::default(),
        }
    }
}

impl Logins {
    /// How many argon2 verifications logins have run (for tests and metrics).
    #[must_use]
    pub fn argon2_runs(&self) -> u64 {
        self.argon2_runs.load(Ordering::Relaxed)
    }

    /// Checks `identifier` (short name, handle or DID) and `password` for a caller at
    /// `client`.
    pub async fn check(
        &self,
        accounts: &Accounts,
        identifier: &str,
        password: &str,
        client: IpAddr,
        accepts: Accepts,
    ) -> Result<Login, LoginError> {
        let identifier = identifier.trim();
        let account = accounts.find(identifier)?;
        let subjects = [
            Subject::Account(
                account
                    .as_ref()
                    .map_or_else(|| identifier.to_ascii_lowercase(), |a| a.did.to_string()),
            ),
            Subject::client(client),
        ];
        if let Err(wait) = self.limiter().begin(&subjects, Instant::now()) {
            tracing::info!(%client, wait_secs = wait.as_secs(), "login refused: too many failures");
            return Err(LoginError::RateLimited(wait));
        }
        let did = account.as_ref().map(|a| a.did.to_string());
        let result = self.verify(accounts, account, password, accepts).await;
        match &result {
            Ok(login) => {
                self.limiter().succeeded(&subjects);
                tracing::debug!(did = %login.account.did, app = login.app_password.is_some(), "login");
            }
            Err(LoginError::Refused) => tracing::info!(%client, did = ?did, "failed login"),
            // No argon2 slot came free: the password was not checked.
            Err(LoginError::RateLimited(_)) => {
                self.limiter().abandoned(&subjects);
                tracing::warn!(%client, "login refused: password checks are all busy");
            }
            Err(_) => {}
        }
        result
    }

    async fn verify(
        &self,
        accounts: &Accounts,
        account: Option<Account>,
        password: &str,
        accepts: Accepts,
    ) -> Result<Login, LoginError> {
        let apps = match (&account, accepts) {
            (Some(a), Accepts::AnyPassword) => accounts.list_app_passwords(&a.did)?,
            _ => Vec::new(),
        };
        if let Some(account) = &account {
            let candidate = passwords::hash_app_password(password);
            if let Some(app) = apps
                .iter()
                .find(|a| passwords::app_hash_matches(&a.hash, &candidate))
            {
                return Ok(Login {
                    account: account.clone(),
                    app_password: Some(app.clone()),
                });
            }
        }
        // Earlier versions stored app passwords as argon2: only a password of their shape
        // can match one, and only accounts that still have some pay for them.
        let legacy: Vec<AppPassword> = if passwords::looks_like_app_password(password) {
            apps.into_iter()
                .filter(|a| !passwords::is_fast_app_hash(&a.hash))
                .collect()
        } else {
            Vec::new()
        };
        let permit = tokio::time::timeout(QUEUE_WAIT, self.argon2.clone().acquire_owned())
            .await
            .map_err(|_| LoginError::RateLimited(BUSY_RETRY))?
            .map_err(|_| LoginError::RateLimited(BUSY_RETRY))?;
        let hash = account.as_ref().map_or_else(
            || passwords::DUMMY_HASH.clone(),
            |a| a.password_hash.clone(),
        );
        let (password, runs) = (password.to_owned(), self.argon2_runs.clone());
        let matched = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            runs.fetch_add(1, Ordering::Relaxed);
            if passwords::verify_password(&hash, &password) {
                return Some(None);
            }
            legacy.into_iter().find_map(|app| {
                runs.fetch_add(1, Ordering::Relaxed);
                passwords::verify_password(&app.hash, &password)
                    .then(|| Some((app, password.clone())))
            })
        })
        .await?;
        let Some(account) = account else {
            return Err(LoginError::Refused);
        };
        match matched {
            Some(None) => Ok(Login {
                account,
                app_password: None,
            }),
            Some(Some((app, password))) => {
                accounts.upgrade_app_password(&account.did, &app.name, &password)?;
                Ok(Login {
                    account,
                    app_password: Some(app),
                })
            }
            None => Err(LoginError::Refused),
        }
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, Limiter> {
        self.limiter.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atproto::Did;
    use crate::pds::accounts::PlcEntry;
    use crate::pds::store::PdsStore;

    fn node() -> (tempfile::TempDir, Accounts, Account) {
        let dir = tempfile::tempdir().unwrap();
        let store = PdsStore::open(&dir.path().join("pds.redb")).unwrap();
        let accounts = Accounts::new(store.clone());
        let account = Account {
            did: "did:plc:alice".parse::<Did>().unwrap(),
            name: "alice".into(),
            handle: "alice.atcr.test".into(),
            password_hash: passwords::hash_password("alice-pw").unwrap(),
            admin: false,
            created: 0,
            quota: None,
        };
        let plc = PlcEntry {
            did: account.did.clone(),
            operation: serde_json::json!({}),
            cid: String::new(),
            nullified: false,
            created_at: String::new(),
        };
        store
            .write_sync(|tx| Accounts::insert(tx, &account, &plc))
            .unwrap();
        (dir, accounts, account)
    }

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[tokio::test]
    async fn app_passwords_check_without_argon2_however_many_there_are() {
        let (_dir, accounts, account) = node();
        let mut last = String::new();
        for i in 0..40 {
            let (p, _) = accounts
                .create_app_password(&account.did, &format!("app{i}"), false)
                .unwrap()
                .unwrap();
            last = p;
        }
        let logins = Logins::default();
        let login = logins
            .check(&accounts, "alice", &last, HOME, Accepts::AnyPassword)
            .await
            .unwrap();
        assert_eq!(login.app_password.unwrap().name, "app39");
        assert_eq!(logins.argon2_runs(), 0);
        // A wrong password costs one argon2 run (the account password), not 41.
        let wrong = passwords::generate_app_password();
        let refused = logins
            .check(&accounts, "alice", &wrong, HOME, Accepts::AnyPassword)
            .await;
        assert!(matches!(refused, Err(LoginError::Refused)));
        assert_eq!(logins.argon2_runs(), 1);
        // The web takes the account password only.
        let web = logins
            .check(&accounts, "alice", &last, HOME, Accepts::AccountPassword)
            .await;
        assert!(matches!(web, Err(LoginError::Refused)));
    }

    #[tokio::test]
    async fn unknown_and_known_users_cost_the_same_and_are_limited_alike() {
        let (_dir, accounts, _) = node();
        let logins = Logins::default();
        let known = logins
            .check(&accounts, "alice", "nope", HOME, Accepts::AnyPassword)
            .await;
        assert!(matches!(known, Err(LoginError::Refused)));
        assert_eq!(logins.argon2_runs(), 1);
        let unknown = logins
            .check(&accounts, "mallory", "nope", HOME, Accepts::AnyPassword)
            .await;
        assert!(matches!(unknown, Err(LoginError::Refused)));
        assert_eq!(logins.argon2_runs(), 2);
        // Both kinds reach the wait after the same number of failures.
        for name in ["alice", "mallory"] {
            let mut answers = Vec::new();
            for _ in 0..=super::super::limiter::ACCOUNT_FREE_FAILURES {
                answers.push(
                    logins
                        .check(&accounts, name, "nope", HOME, Accepts::AnyPassword)
                        .await,
                );
            }
            assert!(
                answers[..answers.len() - 1]
                    .iter()
                    .all(|a| matches!(a, Err(LoginError::Refused)))
            );
            let limited = answers.last().unwrap();
            assert!(
                limited
                    .as_ref()
                    .err()
                    .and_then(LoginError::retry_after)
                    .is_some(),
                "{name}: {limited:?}"
            );
        }
        // The right password does not get past the wait either.
        let right = logins
            .check(&accounts, "alice", "alice-pw", HOME, Accepts::AnyPassword)
            .await;
        assert!(matches!(right, Err(LoginError::RateLimited(_))));
    }

    #[tokio::test]
    async fn legacy_argon2_app_passwords_still_work_and_are_upgraded() {
        let (_dir, accounts, account) = node();
        let password = passwords::generate_app_password();
        accounts
            .put_legacy_app_password(
                &account.did,
                "old",
                &passwords::hash_password(&password).unwrap(),
            )
            .unwrap();
        let logins = Logins::default();
        let login = logins
            .check(&accounts, "alice", &password, HOME, Accepts::AnyPassword)
            .await
            .unwrap();
        assert_eq!(login.app_password.unwrap().name, "old");
        let stored = accounts.list_app_passwords(&account.did).unwrap();
        assert!(passwords::is_fast_app_hash(&stored[0].hash));
        let runs = logins.argon2_runs();
        logins
            .check(&accounts, "alice", &password, HOME, Accepts::AnyPassword)
            .await
            .unwrap();
        assert_eq!(
            logins.argon2_runs(),
            runs,
            "the upgraded hash needs no argon2"
        );
    }
}
