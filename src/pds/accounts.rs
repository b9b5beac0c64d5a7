//! Local accounts, app passwords, sessions and the built-in PLC log, in `pds.redb`.
//! No secret is stored in the clear (`passwords.rs`): account passwords as argon2id PHC
//! strings, app passwords as SHA-256, sessions under the SHA-256 of their id (a web session's
//! id is its cookie).

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::passwords;
pub use super::passwords::{
    MIN_PASSWORD_CHARS, check_new_password, generate_app_password, hash_password, verify_password,
};
use super::store::{ACCOUNTS, APP_PASSWORDS, HANDLES, PLC_OPS, PdsStore, SESSIONS, StoreError};
use crate::atproto::Did;

mod sessions;

/// App passwords an account may have: each is one more thing to revoke when a laptop is lost,
/// and a bound on what a login attempt may have to look at.
pub const MAX_APP_PASSWORDS: usize = 50;

/// A local account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub did: Did,
    /// The short name (`alice`); the handle is `<name>.<handle domain>`.
    pub name: String,
    pub handle: String,
    pub password_hash: String,
    pub admin: bool,
    pub created: u64,
    /// The account's own storage quota in bytes, set by `atcr user quota` (operator state, so
    /// kept here rather than in the derived registry index): `None` follows the node's
    /// `quota.default`, `Some(0)` is no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<u64>,
}

/// An app password (its hash; the password itself is shown once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppPassword {
    pub name: String,
    pub hash: String,
    pub created: u64,
    pub privileged: bool,
}

/// A login session, stored under [`passwords::session_key`] of its id: the refresh token's `jti` (access
/// tokens name it in `sid`), or a web session's cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub did: Did,
    /// Unix seconds after which the refresh token is dead.
    pub expires: u64,
    /// The app password the session was opened with, if any (revoking it ends the session).
    pub app_password: Option<String>,
    /// Set once the refresh token was used: the session it was replaced by, and until when the
    /// old token still refreshes (to that same session). `next` is a refresh token's `jti`,
    /// which opens nothing without a token signed by the node's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated: Option<Rotation>,
    /// A session of the web pages (signed in with the account password; its id is the
    /// cookie's value), not of the XRPC API.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub web: bool,
}

/// See [`Session::rotated`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    pub next: String,
    /// Unix seconds.
    pub until: u64,
}

/// What [`Accounts::rotate_session`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotated {
    /// `new` replaces `old`.
    Now,
    /// `old` had already been replaced by this session (a retried or concurrent refresh).
    Before(Rotation),
    /// `old` is gone.
    Gone,
}

/// One entry of a DID's PLC log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlcEntry {
    pub did: Did,
    pub operation: serde_json::Value,
    pub cid: String,
    pub nullified: bool,
    pub created_at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("handle already taken: {0}")]
    HandleTaken(String),
    #[error("no such account: {0}")]
    NotFound(String),
    #[error("password hashing failed")]
    Hash,
    #[error(transparent)]
    PasswordTooShort(#[from] passwords::TooShort),
    #[error("an account may have at most {MAX_APP_PASSWORDS} app passwords; revoke one first")]
    TooManyAppPasswords,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<redb::TableError> for AccountError {
    fn from(e: redb::TableError) -> Self {
        AccountError::Store(e.into())
    }
}
impl From<redb::StorageError> for AccountError {
    fn from(e: redb::StorageError) -> Self {
        AccountError::Store(e.into())
    }
}
impl From<serde_json::Error> for AccountError {
    fn from(e: serde_json::Error) -> Self {
        AccountError::Store(e.into())
    }
}

impl From<passwords::HashError> for AccountError {
    fn from(_: passwords::HashError) -> Self {
        AccountError::Hash
    }
}

/// Unix seconds now.
#[must_use]
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Account queries and changes.
#[derive(Clone, Debug)]
pub struct Accounts {
    store: PdsStore,
}

impl Accounts {
    #[must_use]
    pub fn new(store: PdsStore) -> Accounts {
        Accounts { store }
    }

    /// Inserts an account, its handle and its genesis PLC entry in `tx`.
    pub fn insert(
        tx: &WriteTransaction,
        account: &Account,
        plc: &PlcEntry,
    ) -> Result<(), AccountError> {
        let mut handles = tx.open_table(HANDLES)?;
        if handles.get(account.handle.as_str())?.is_some() {
            return Err(AccountError::HandleTaken(account.handle.clone()));
        }
        handles.insert(account.handle.as_str(), account.did.as_str())?;
        let json = serde_json::to_vec(account)?;
        tx.open_table(ACCOUNTS)?
            .insert(account.did.as_str(), json.as_slice())?;
        Self::append_plc(tx, plc)?;
        Ok(())
    }

    /// Appends an operation to a DID's PLC log.
    pub fn append_plc(tx: &WriteTransaction, entry: &PlcEntry) -> Result<(), AccountError> {
        let mut ops = tx.open_table(PLC_OPS)?;
        let d = entry.did.as_str();
        let next = ops
            .range((d, 0)..=(d, u64::MAX))?
            .next_back()
            .transpose()?
            .map_or(0, |(k, _)| k.value().1 + 1);
        let json = serde_json::to_vec(entry)?;
        ops.insert((d, next), json.as_slice())?;
        Ok(())
    }

    /// Appends `entry` if its operation extends the DID's log as it is in this transaction;
    /// `Ok(Err(_))` (nothing written) when another operation got there first.
    pub fn append_plc_next(
        tx: &WriteTransaction,
        entry: &PlcEntry,
    ) -> Result<Result<(), crate::pds::plc::PlcError>, AccountError> {
        let last: Option<PlcEntry> = {
            let ops = tx.open_table(PLC_OPS)?;
            let d = entry.did.as_str();
            ops.range((d, 0)..=(d, u64::MAX))?
                .next_back()
                .transpose()?
                .map(|(_, v)| serde_json::from_slice(v.value()))
                .transpose()?
        };
        let last = last.as_ref().map(|e| &e.operation);
        if let Err(e) = crate::pds::plc::check_next(&entry.did, last, &entry.operation) {
            return Ok(Err(e));
        }
        Self::append_plc(tx, entry)?;
        Ok(Ok(()))
    }

    /// The PLC log of a DID (empty if the directory does not know it).
    pub fn plc_log(&self, did: &Did) -> Result<Vec<PlcEntry>, AccountError> {
        let tx = self.store.read()?;
        let ops = tx.open_table(PLC_OPS)?;
        let d = did.as_str();
        let mut out = Vec::new();
        for item in ops.range((d, 0)..=(d, u64::MAX))? {
            let (_, v) = item?;
            out.push(serde_json::from_slice(v.value())?);
        }
        Ok(out)
    }

    pub fn get(&self, did: &Did) -> Result<Option<Account>, AccountError> {
        let tx = self.store.read()?;
        let table = tx.open_table(ACCOUNTS)?;
        Ok(table
            .get(did.as_str())?
            .map(|v| serde_json::from_slice(v.value()))
            .transpose()?)
    }

    /// The DID of a handle hosted here.
    pub fn resolve_handle(&self, handle: &str) -> Result<Option<Did>, AccountError> {
        let tx = self.store.read()?;
        let table = tx.open_table(HANDLES)?;
        let handle = handle.to_ascii_lowercase();
        Ok(table
            .get(handle.as_str())?
            .and_then(|v| v.value().parse().ok()))
    }

    /// An account by DID, handle or short name.
    pub fn find(&self, identifier: &str) -> Result<Option<Account>, AccountError> {
        if let Ok(did) = identifier.parse::<Did>() {
            return self.get(&did);
        }
        let did = match self.resolve_handle(identifier)? {
            Some(d) => Some(d),
            None => self
                .list()?
                .into_iter()
                .find(|a| a.name.eq_ignore_ascii_case(identifier))
                .map(|a| a.did),
        };
        match did {
            Some(d) => self.get(&d),
            None => Ok(None),
        }
    }

    pub fn list(&self) -> Result<Vec<Account>, AccountError> {
        let tx = self.store.read()?;
        let table = tx.open_table(ACCOUNTS)?;
        let mut out = Vec::new();
        for item in table.iter()? {
            let (_, v) = item?;
            out.push(serde_json::from_slice(v.value())?);
        }
        Ok(out)
    }

    /// Changes an account's password and ends all its sessions.
    pub fn set_password(&self, did: &Did, password: &str) -> Result<(), AccountError> {
        passwords::check_new_password(password)?;
        let hash = hash_password(password)?;
        let did = did.clone();
        self.store.write_sync(move |tx| {
            modify(tx, &did, |account| account.password_hash = hash)?;
            remove_sessions(tx, &did, None)
        })
    }

    /// Sets (`Some`) or clears (`None`) an account's own quota: see [`Account::quota`].
    pub fn set_quota(&self, did: &Did, quota: Option<u64>) -> Result<Account, AccountError> {
        let did = did.clone();
        self.store
            .write_sync(move |tx| modify(tx, &did, |account| account.quota = quota))
    }

    /// Removes an account, its handle, app passwords and sessions. Its repository blocks stay
    /// (the repository is marked inactive by the caller).
    pub fn remove(&self, did: &Did) -> Result<Account, AccountError> {
        let did = did.clone();
        self.store.write_sync(move |tx| {
            let account: Account = match tx.open_table(ACCOUNTS)?.remove(did.as_str())? {
                Some(v) => serde_json::from_slice(v.value())?,
                None => return Err(AccountError::NotFound(did.to_string())),
            };
            tx.open_table(HANDLES)?.remove(account.handle.as_str())?;
            let mut apps = tx.open_table(APP_PASSWORDS)?;
            let d = did.as_str();
            let names: Vec<String> = apps
                .range((d, "")..=(d, "\u{10FFFF}"))?
                .map(|i| i.map(|(k, _)| k.value().1.to_owned()))
                .collect::<Result<_, _>>()?;
            for n in names {
                apps.remove((d, n.as_str()))?;
            }
            drop(apps);
            remove_sessions(tx, &did, None)?;
            Ok(account)
        })
    }

    /// Creates an app password; returns the password (shown once), or `None` if the account
    /// has one of that name.
    pub fn create_app_password(
        &self,
        did: &Did,
        name: &str,
        privileged: bool,
    ) -> Result<Option<(String, AppPassword)>, AccountError> {
        let password = generate_app_password();
        let app = AppPassword {
            name: name.to_owned(),
            hash: passwords::hash_app_password(&password),
            created: now_secs(),
            privileged,
        };
        let (did, stored) = (did.clone(), app.clone());
        let created = self.store.write_sync(move |tx| {
            let mut apps = tx.open_table(APP_PASSWORDS)?;
            if apps.get((did.as_str(), stored.name.as_str()))?.is_some() {
                return Ok::<_, AccountError>(false);
            }
            let d = did.as_str();
            if apps.range((d, "")..=(d, "\u{10FFFF}"))?.count() >= MAX_APP_PASSWORDS {
                return Err(AccountError::TooManyAppPasswords);
            }
            let json = serde_json::to_vec(&stored)?;
            apps.insert((did.as_str(), stored.name.as_str()), json.as_slice())?;
            Ok(true)
        })?;
        Ok(created.then_some((password, app)))
    }

    pub fn list_app_passwords(&self, did: &Did) -> Result<Vec<AppPassword>, AccountError> {
        let tx = self.store.read()?;
        let apps = tx.open_table(APP_PASSWORDS)?;
        let d = did.as_str();
        let mut out = Vec::new();
        for item in apps.range((d, "")..=(d, "\u{10FFFF}"))? {
            let (_, v) = item?;
            out.push(serde_json::from_slice(v.value())?);
        }
        Ok(out)
    }

    /// Revokes an app password and ends the sessions opened with it.
    pub fn revoke_app_password(&self, did: &Did, name: &str) -> Result<bool, AccountError> {
        let (did, name) = (did.clone(), name.to_owned());
        self.store.write_sync(move |tx| {
            let removed = tx
                .open_table(APP_PASSWORDS)?
                .remove((did.as_str(), name.as_str()))?
                .is_some();
            remove_sessions(tx, &did, Some(&name))?;
            Ok(removed)
        })
    }

    /// Rewrites an app password stored as argon2 (by an earlier version) as SHA-256, once
    /// `password` was found to match it.
    pub fn upgrade_app_password(
        &self,
        did: &Did,
        name: &str,
        password: &str,
    ) -> Result<(), AccountError> {
        let (did, name, hash) = (
            did.clone(),
            name.to_owned(),
            passwords::hash_app_password(password),
        );
        self.store.write_sync(move |tx| {
            let mut apps = tx.open_table(APP_PASSWORDS)?;
            let key = (did.as_str(), name.as_str());
            let Some(mut app) = apps
                .get(key)?
                .map(|v| serde_json::from_slice::<AppPassword>(v.value()))
                .transpose()?
            else {
                return Ok(());
            };
            app.hash = hash;
            apps.insert(key, serde_json::to_vec(&app)?.as_slice())?;
            Ok(())
        })
    }

    /// Stores an app password with a given hash, as an earlier version did (tests of the
    /// upgrade path).
    #[cfg(test)]
    pub(crate) fn put_legacy_app_password(
        &self,
        did: &Did,
        name: &str,
        hash: &str,
    ) -> Result<(), AccountError> {
        let app = AppPassword {
            name: name.to_owned(),
            hash: hash.to_owned(),
            created: now_secs(),
            privileged: false,
        };
        self.store.write_sync(|tx| {
            tx.open_table(APP_PASSWORDS)?
                .insert((did.as_str(), name), serde_json::to_vec(&app)?.as_slice())?;
            Ok(())
        })
    }
}

/// Changes an account in `tx`; returns it as changed.
fn modify(
    tx: &WriteTransaction,
    did: &Did,
    change: impl FnOnce(&mut Account),
) -> Result<Account, AccountError> {
    let mut accounts = tx.open_table(ACCOUNTS)?;
    let mut account: Account = match accounts.get(did.as_str())? {
        Some(v) => serde_json::from_slice(v.value())?,
        None => return Err(AccountError::NotFound(did.to_string())),
    };
    change(&mut account);
    accounts.insert(did.as_str(), serde_json::to_vec(&account)?.as_slice())?;
    Ok(account)
}

/// Removes `did`'s sessions (only those of app password `app` if given).
fn remove_sessions(
    tx: &WriteTransaction,
    did: &Did,
    app: Option<&str>,
) -> Result<(), AccountError> {
    let mut sessions = tx.open_table(SESSIONS)?;
    let mut dead = Vec::new();
    for item in sessions.iter()? {
        let (k, v) = item?;
        let s: Session = serde_json::from_slice(v.value())?;
        if &s.did == did && app.is_none_or(|a| s.app_password.as_deref() == Some(a)) {
            dead.push(k.value().to_owned());
        }
    }
    for k in dead {
        sessions.remove(k.as_str())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_passwords_are_capped_and_not_stored_in_the_clear() {
        let dir = tempfile::tempdir().unwrap();
        let accounts = Accounts::new(PdsStore::open(&dir.path().join("pds.redb")).unwrap());
        let did: Did = "did:plc:abc".parse().unwrap();
        for i in 0..MAX_APP_PASSWORDS {
            let (password, app) = accounts
                .create_app_password(&did, &format!("app{i}"), false)
                .unwrap()
                .unwrap();
            assert!(!app.hash.contains(&password));
            assert!(passwords::is_fast_app_hash(&app.hash));
        }
        assert!(matches!(
            accounts.create_app_password(&did, "one-more", false),
            Err(AccountError::TooManyAppPasswords)
        ));
        // A name already taken still says so.
        assert!(
            accounts
                .create_app_password(&did, "app0", false)
                .unwrap()
                .is_none()
        );
        assert!(accounts.revoke_app_password(&did, "app0").unwrap());
        assert!(
            accounts
                .create_app_password(&did, "one-more", false)
                .unwrap()
                .is_some()
        );
    }
}
