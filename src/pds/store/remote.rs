//! What this node keeps about users of other PDSes: who they are (handle, PDS), and a copy of
//! the `io.atcr.*` records it wrote into their repositories for them — the mirror the registry
//! index is rebuilt from without asking their PDSes (see `docs/federation.md`).

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{PdsStore, StoreError};
use crate::atproto::Did;

/// DID → [`RemoteUser`] (JSON).
const REMOTE_USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("remote_users");
/// Handle (lowercase) → DID, for the users in `REMOTE_USERS` with a handle.
const REMOTE_HANDLES: TableDefinition<&str, &str> = TableDefinition::new("remote_handles");
/// (DID, collection, record key) → the record as JSON, as written to the user's PDS.
const REMOTE_RECORDS: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("remote_records");

/// PDS endpoint → the sequence number of the last firehose event taken in from it.
const REMOTE_CURSORS: TableDefinition<&str, u64> = TableDefinition::new("remote_cursors");

/// DID → an OAuth session of that user (JSON: tokens, DPoP key, token endpoint).
const REMOTE_GRANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("remote_oauth_sessions");

/// DID → the `rev` of the last commit of theirs taken in from their PDS's firehose.
const REMOTE_REVS: TableDefinition<&str, &str> = TableDefinition::new("remote_revs");

/// DID → why a remote user's account is not active on their PDS (`takendown`, `deactivated`,
/// `suspended`, …), as its `#account` event said; their repositories are hidden meanwhile.
const REMOTE_INACTIVE: TableDefinition<&str, &str> = TableDefinition::new("remote_inactive");

/// (DID, SHA-256 of a secret, hex) → when it was issued (µs): the secrets `atcr login`
/// holds for users of other PDSes (see `pds::oauth_cli`).
const REMOTE_CLI_SECRETS: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("remote_cli_secrets");

/// A user of another PDS this node has met (they logged in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteUser {
    /// The handle their DID document names and that resolves back, if any.
    pub handle: Option<String>,
    /// Their PDS (`https://pds.example.com`).
    pub pds: String,
}

/// A record change in the mirror: `Some(record)` puts, `None` deletes.
pub type MirrorWrite = (String, String, Option<serde_json::Value>);

impl PdsStore {
    /// A table to read, `None` before anything was written to it.
    fn table_if_exists<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        table: TableDefinition<K, V>,
    ) -> Result<Option<redb::ReadOnlyTable<K, V>>, StoreError> {
        match self.db.begin_read()?.open_table(table) {
            Ok(t) => Ok(Some(t)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Remembers `did` as `user` (a new handle replaces the old one).
    pub async fn remember_remote_user(
        &self,
        did: &Did,
        user: RemoteUser,
    ) -> Result<(), StoreError> {
        let did = did.clone();
        self.write(move |tx| {
            let mut users = tx.open_table(REMOTE_USERS)?;
            let mut handles = tx.open_table(REMOTE_HANDLES)?;
            let before: Option<RemoteUser> = users
                .get(did.as_str())?
                .map(|v| serde_json::from_slice(v.value()))
                .transpose()?;
            if before.as_ref() == Some(&user) {
                return Ok(());
            }
            if let Some(old) = before.and_then(|b| b.handle) {
                let owner = handles.get(old.as_str())?.map(|v| v.value().to_owned());
                if owner.as_deref() == Some(did.as_str()) {
                    handles.remove(old.as_str())?;
                }
            }
            if let Some(handle) = &user.handle {
                // The handle moved here: whoever had it before shows by DID from now on.
                let previous = handles
                    .insert(handle.as_str(), did.as_str())?
                    .map(|v| v.value().to_owned());
                if let Some(previous) = previous.filter(|p| p != did.as_str()) {
                    let entry: Option<RemoteUser> = users
                        .get(previous.as_str())?
                        .map(|v| serde_json::from_slice(v.value()))
                        .transpose()?;
                    if let Some(mut entry) = entry {
                        entry.handle = None;
                        users.insert(previous.as_str(), serde_json::to_vec(&entry)?.as_slice())?;
                    }
                }
            }
            users.insert(did.as_str(), serde_json::to_vec(&user)?.as_slice())?;
            Ok::<_, StoreError>(())
        })
        .await
    }

    /// What this node knows of `did`, if it is a user of another PDS it has met.
    pub fn remote_user(&self, did: &Did) -> Result<Option<RemoteUser>, StoreError> {
        let Some(table) = self.table_if_exists(REMOTE_USERS)? else {
            return Ok(None);
        };
        Ok(table
            .get(did.as_str())?
            .map(|v| serde_json::from_slice(v.value()))
            .transpose()?)
    }

    /// The DID of the remote user with `handle` (lowercase), if this node has met one.
    pub fn remote_did_of_handle(&self, handle: &str) -> Result<Option<Did>, StoreError> {
        let Some(table) = self.table_if_exists(REMOTE_HANDLES)? else {
            return Ok(None);
        };
        Ok(table
            .get(handle)?
            .and_then(|v| v.value().parse::<Did>().ok()))
    }

    /// The remote users this node has met, in DID order, after `cursor`, at most `limit`.
    pub fn remote_users(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(Did, RemoteUser)>, StoreError> {
        use std::ops::Bound::{Excluded, Unbounded};
        let Some(table) = self.table_if_exists(REMOTE_USERS)? else {
            return Ok(Vec::new());
        };
        let range = match cursor {
            Some(c) => table.range::<&str>((Excluded(c), Unbounded))?,
            None => table.range::<&str>(..)?,
        };
        let mut out = Vec::new();
        for row in range.take(limit) {
            let (k, v) = row?;
            let Ok(did) = k.value().parse::<Did>() else {
                continue;
            };
            out.push((did, serde_json::from_slice(v.value())?));
        }
        Ok(out)
    }

    /// Applies record changes of `did`'s repository to the mirror, in one transaction.
    pub async fn mirror_remote(
        &self,
        did: &Did,
        writes: Vec<MirrorWrite>,
    ) -> Result<(), StoreError> {
        let did = did.clone();
        self.write(move |tx| {
            let mut table = tx.open_table(REMOTE_RECORDS)?;
            for (collection, rkey, record) in &writes {
                let key = (did.as_str(), collection.as_str(), rkey.as_str());
                match record {
                    Some(r) => table.insert(key, serde_json::to_vec(r)?.as_slice())?,
                    None => table.remove(key)?,
                };
            }
            Ok::<_, StoreError>(())
        })
        .await
    }

    /// `did`'s OAuth session as kept (see `pds::remote_repo`).
    pub fn remote_grant(&self, did: &Did) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(table) = self.table_if_exists(REMOTE_GRANTS)? else {
            return Ok(None);
        };
        Ok(table.get(did.as_str())?.map(|v| v.value().to_vec()))
    }

    /// Keeps (`Some`) or removes `did`'s OAuth session.
    pub async fn set_remote_grant(
        &self,
        did: &Did,
        grant: Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        let did = did.clone();
        self.write(move |tx| {
            let mut table = tx.open_table(REMOTE_GRANTS)?;
            match grant {
                Some(g) => table.insert(did.as_str(), g.as_slice())?,
                None => table.remove(did.as_str())?,
            };
            Ok::<_, StoreError>(())
        })
        .await
    }

    /// Why `did`'s account on their PDS is not active, if it is not (see `REMOTE_INACTIVE`).
    pub fn remote_inactive(&self, did: &Did) -> Result<Option<String>, StoreError> {
        let Some(table) = self.table_if_exists(REMOTE_INACTIVE)? else {
            return Ok(None);
        };
        Ok(table.get(did.as_str())?.map(|v| v.value().to_owned()))
    }

    /// Records that `did`'s account is not active (`Some(status)`) or active again (`None`);
    /// whether that changed anything.
    pub async fn set_remote_inactive(
        &self,
        did: &Did,
        status: Option<String>,
    ) -> Result<bool, StoreError> {
        let did = did.clone();
        self.write(move |tx| {
            let mut table = tx.open_table(REMOTE_INACTIVE)?;
            let before = match &status {
                Some(s) => table.insert(did.as_str(), s.as_str())?,
                None => table.remove(did.as_str())?,
            }
            .map(|v| v.value().to_owned());
            Ok::<_, StoreError>(before != status)
        })
        .await
    }

    /// Keeps a secret `atcr login` holds for `did`, by its hash; past `most` of theirs, the
    /// oldest goes.
    pub async fn add_remote_cli_secret(
        &self,
        did: &Did,
        hash: String,
        most: usize,
    ) -> Result<(), StoreError> {
        let did = did.clone();
        // Microseconds: secrets made in one second still have an order.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        self.write(move |tx| {
            let mut table = tx.open_table(REMOTE_CLI_SECRETS)?;
            let mut theirs = cli_secrets_of(&table, &did)?;
            theirs.sort();
            let excess = (theirs.len() + 1).saturating_sub(most);
            for (_, old) in theirs.iter().take(excess) {
                table.remove((did.as_str(), old.as_str()))?;
            }
            table.insert((did.as_str(), hash.as_str()), now)?;
            Ok::<_, StoreError>(())
        })
        .await
    }

    /// Whether `hash` is that of a secret kept for `did`.
    pub fn has_remote_cli_secret(&self, did: &Did, hash: &str) -> Result<bool, StoreError> {
        let Some(table) = self.table_if_exists(REMOTE_CLI_SECRETS)? else {
            return Ok(false);
        };
        Ok(table.get((did.as_str(), hash))?.is_some())
    }

    /// How many secrets are kept for `did`.
    pub fn count_remote_cli_secrets(&self, did: &Did) -> Result<usize, StoreError> {
        let Some(table) = self.table_if_exists(REMOTE_CLI_SECRETS)? else {
            return Ok(0);
        };
        Ok(cli_secrets_of(&table, did)?.len())
    }

    /// Forgets every secret kept for `did` (their OAuth session ended); how many.
    pub async fn remove_remote_cli_secrets(&self, did: &Did) -> Result<usize, StoreError> {
        let did = did.clone();
        self.write(move |tx| {
            let mut table = tx.open_table(REMOTE_CLI_SECRETS)?;
            let theirs = cli_secrets_of(&table, &did)?;
            for (_, hash) in &theirs {
                table.remove((did.as_str(), hash.as_str()))?;
            }
            Ok::<_, StoreError>(theirs.len())
        })
        .await
    }

    /// The `rev` of `did`'s last commit taken in from their PDS, if any.
    pub fn remote_rev(&self, did: &Did) -> Result<Option<String>, StoreError> {
        let Some(table) = self.table_if_exists(REMOTE_REVS)? else {
            return Ok(None);
        };
        Ok(table.get(did.as_str())?.map(|v| v.value().to_owned()))
    }

    /// Records `rev` as `did`'s last commit taken in.
    pub async fn set_remote_rev(&self, did: &Did, rev: &str) -> Result<(), StoreError> {
        let (did, rev) = (did.clone(), rev.to_owned());
        self.write(move |tx| {
            tx.open_table(REMOTE_REVS)?
                .insert(did.as_str(), rev.as_str())?;
            Ok::<_, StoreError>(())
        })
        .await
    }

    /// The last firehose event taken in from the PDS at `endpoint`, if any.
    pub fn remote_cursor(&self, endpoint: &str) -> Result<Option<u64>, StoreError> {
        let Some(table) = self.table_if_exists(REMOTE_CURSORS)? else {
            return Ok(None);
        };
        Ok(table.get(endpoint)?.map(|v| v.value()))
    }

    /// Records `seq` as the last event taken in from `endpoint` (`None`: start over).
    pub async fn set_remote_cursor(
        &self,
        endpoint: &str,
        seq: Option<u64>,
    ) -> Result<(), StoreError> {
        let endpoint = endpoint.to_owned();
        self.write(move |tx| {
            let mut table = tx.open_table(REMOTE_CURSORS)?;
            match seq {
                Some(seq) => table.insert(endpoint.as_str(), seq)?,
                None => table.remove(endpoint.as_str())?,
            };
            Ok::<_, StoreError>(())
        })
        .await
    }

    /// Forgets every host's cursor (each is then caught up with afresh).
    pub async fn clear_remote_cursors(&self) -> Result<(), StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(REMOTE_CURSORS)?;
            table.retain(|_, _| false)?;
            Ok::<_, StoreError>(())
        })
        .await
    }

    /// Mirrored records of one collection of `did`, in key order, after `cursor`.
    pub fn remote_records(
        &self,
        did: &Did,
        collection: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        use std::ops::Bound::{Excluded, Included};
        let Some(table) = self.table_if_exists(REMOTE_RECORDS)? else {
            return Ok(Vec::new());
        };
        let (did, start) = (did.as_str(), cursor.unwrap_or(""));
        let low = (did, collection, start);
        let low = if cursor.is_some() {
            Excluded(low)
        } else {
            Included(low)
        };
        let mut out = Vec::new();
        for row in
            table.range::<(&str, &str, &str)>((low, Included((did, collection, "\u{10ffff}"))))?
        {
            let (k, v) = row?;
            out.push((k.value().2.to_owned(), serde_json::from_slice(v.value())?));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

/// The secrets kept for `did`: (when issued, hash), in hash order.
fn cli_secrets_of(
    table: &impl ReadableTable<(&'static str, &'static str), u64>,
    did: &Did,
) -> Result<Vec<(u64, String)>, StoreError> {
    let mut theirs = Vec::new();
    for row in table.range::<(&str, &str)>((did.as_str(), "")..)? {
        let (k, v) = row?;
        let (owner, hash) = k.value();
        if owner != did.as_str() {
            break;
        }
        theirs.push((v.value(), hash.to_owned()));
    }
    Ok(theirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn remote_users_and_their_mirrored_records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = PdsStore::open(&dir.path().join("pds.redb")).unwrap();
        let did: Did = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa".parse().unwrap();
        assert_eq!(store.remote_user(&did).unwrap(), None);
        assert_eq!(store.remote_did_of_handle("carol.example").unwrap(), None);
        let user = |h: &str| RemoteUser {
            handle: Some(h.into()),
            pds: "https://pds.example".into(),
        };
        store
            .remember_remote_user(&did, user("carol.example"))
            .await
            .unwrap();
        assert_eq!(
            store.remote_did_of_handle("carol.example").unwrap(),
            Some(did.clone())
        );
        // A new handle replaces the old one.
        store
            .remember_remote_user(&did, user("c.example"))
            .await
            .unwrap();
        assert_eq!(store.remote_did_of_handle("carol.example").unwrap(), None);
        assert_eq!(
            store.remote_did_of_handle("c.example").unwrap(),
            Some(did.clone())
        );
        assert_eq!(
            store.remote_users(None, 10).unwrap(),
            vec![(did.clone(), user("c.example"))]
        );
        // The handle moved to another DID: the one that had it shows by DID from then on.
        let other: Did = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb".parse().unwrap();
        store
            .remember_remote_user(&other, user("c.example"))
            .await
            .unwrap();
        assert_eq!(
            store.remote_did_of_handle("c.example").unwrap(),
            Some(other.clone())
        );
        assert_eq!(store.remote_user(&did).unwrap().unwrap().handle, None);

        let put = |rkey: &str| {
            (
                "io.atcr.tag".to_owned(),
                rkey.to_owned(),
                Some(serde_json::json!({ "tag": rkey })),
            )
        };
        store
            .mirror_remote(&did, vec![put("a"), put("b"), put("c")])
            .await
            .unwrap();
        store
            .mirror_remote(&did, vec![("io.atcr.tag".into(), "b".into(), None)])
            .await
            .unwrap();
        let rkeys = |cursor| -> Vec<String> {
            store
                .remote_records(&did, "io.atcr.tag", cursor, 10)
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        assert_eq!(rkeys(None), ["a", "c"]);
        assert_eq!(rkeys(Some("a")), ["c"]);
        assert!(
            store
                .remote_records(&did, "io.atcr.manifest", None, 10)
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn an_inactive_account_is_remembered_until_it_is_active_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = PdsStore::open(&dir.path().join("pds.redb")).unwrap();
        let did: Did = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa".parse().unwrap();
        assert_eq!(store.remote_inactive(&did).unwrap(), None);
        assert!(!store.set_remote_inactive(&did, None).await.unwrap());
        let down = Some("takendown".to_owned());
        assert!(store.set_remote_inactive(&did, down.clone()).await.unwrap());
        assert!(!store.set_remote_inactive(&did, down.clone()).await.unwrap());
        assert_eq!(store.remote_inactive(&did).unwrap(), down);
        let other: Did = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb".parse().unwrap();
        assert_eq!(store.remote_inactive(&other).unwrap(), None);
        assert!(store.set_remote_inactive(&did, None).await.unwrap());
        assert_eq!(store.remote_inactive(&did).unwrap(), None);
    }
}
