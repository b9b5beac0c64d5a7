//! Login sessions of the accounts: stored under a hash of their id, looked up, rotated when
//! their refresh token is used, re-keyed from older versions and pruned.

use redb::ReadableTable;

use super::passwords::{SESSION_KEY_PREFIX, session_key};
use super::{AccountError, Accounts, Rotated, Rotation, Session};
use crate::pds::store::SESSIONS;

impl Accounts {
    pub fn put_session(&self, id: &str, session: &Session) -> Result<(), AccountError> {
        let json = serde_json::to_vec(session)?;
        let id = session_key(id);
        self.store.write_sync(move |tx| {
            tx.open_table(SESSIONS)?
                .insert(id.as_str(), json.as_slice())?;
            Ok(())
        })
    }

    pub fn session(&self, id: &str) -> Result<Option<Session>, AccountError> {
        let tx = self.store.read()?;
        let table = tx.open_table(SESSIONS)?;
        Ok(table
            .get(session_key(id).as_str())?
            .map(|v| serde_json::from_slice(v.value()))
            .transpose()?)
    }

    /// Removes a session; returns whether it existed.
    pub fn delete_session(&self, id: &str) -> Result<bool, AccountError> {
        let id = session_key(id);
        self.store
            .write_sync(move |tx| Ok(tx.open_table(SESSIONS)?.remove(id.as_str())?.is_some()))
    }

    /// Replaces session `old` by `new` atomically (refresh-token rotation). `old` stays, marked
    /// as replaced, until `grace_until`: a client that retries a refresh, or two that share one
    /// stored session, get `new` again instead of being logged out.
    pub fn rotate_session(
        &self,
        old: &str,
        new: &str,
        session: &Session,
        grace_until: u64,
    ) -> Result<Rotated, AccountError> {
        let json = serde_json::to_vec(session)?;
        let (old, new_key, new) = (session_key(old), session_key(new), new.to_owned());
        self.store.write_sync(move |tx| {
            let mut t = tx.open_table(SESSIONS)?;
            let Some(raw) = t.get(old.as_str())?.map(|v| v.value().to_vec()) else {
                return Ok(Rotated::Gone);
            };
            let mut previous: Session = serde_json::from_slice(&raw)?;
            if let Some(rotation) = previous.rotated {
                return Ok(Rotated::Before(rotation));
            }
            previous.rotated = Some(Rotation {
                next: new,
                until: grace_until,
            });
            t.insert(old.as_str(), serde_json::to_vec(&previous)?.as_slice())?;
            t.insert(new_key.as_str(), json.as_slice())?;
            Ok(Rotated::Now)
        })
    }
}

impl Accounts {
    /// Re-keys sessions stored by earlier versions under their id in the clear: afterwards
    /// the table holds only [`session_key`]s. Returns how many were re-keyed.
    pub fn hash_session_ids(&self) -> Result<usize, AccountError> {
        self.store.write_sync(|tx| {
            let mut sessions = tx.open_table(SESSIONS)?;
            let mut clear = Vec::new();
            for item in sessions.iter()? {
                let (k, v) = item?;
                if !k.value().starts_with(SESSION_KEY_PREFIX) {
                    clear.push((k.value().to_owned(), v.value().to_vec()));
                }
            }
            for (id, value) in &clear {
                sessions.remove(id.as_str())?;
                sessions.insert(session_key(id).as_str(), value.as_slice())?;
            }
            Ok(clear.len())
        })
    }

    /// Removes sessions nobody can use any more: expired ones, and replaced ones past their
    /// grace period. Returns how many went.
    pub fn prune_sessions(&self, now: u64) -> Result<usize, AccountError> {
        self.store.write_sync(move |tx| {
            let mut sessions = tx.open_table(SESSIONS)?;
            let mut dead = Vec::new();
            for item in sessions.iter()? {
                let (k, v) = item?;
                let s: Session = serde_json::from_slice(v.value())?;
                if s.expires <= now || s.rotated.is_some_and(|r| r.until < now) {
                    dead.push(k.value().to_owned());
                }
            }
            for k in &dead {
                sessions.remove(k.as_str())?;
            }
            Ok(dead.len())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atproto::Did;
    use crate::pds::store::PdsStore;

    fn session(did: &Did) -> Session {
        Session {
            did: did.clone(),
            expires: u64::MAX,
            app_password: None,
            rotated: None,
            web: true,
        }
    }

    /// The keys of the session table as stored.
    fn stored_keys(store: &PdsStore) -> Vec<String> {
        let tx = store.read().unwrap();
        let table = tx.open_table(SESSIONS).unwrap();
        table
            .iter()
            .unwrap()
            .map(|i| i.unwrap().0.value().to_owned())
            .collect()
    }

    #[test]
    fn sessions_are_stored_under_a_hash_of_their_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = PdsStore::open(&dir.path().join("pds.redb")).unwrap();
        let accounts = Accounts::new(store.clone());
        let did: Did = "did:plc:abc".parse().unwrap();
        accounts.put_session("the-cookie", &session(&did)).unwrap();
        assert!(accounts.session("the-cookie").unwrap().is_some());
        assert_eq!(stored_keys(&store), vec![session_key("the-cookie")]);
        // A session stored by an earlier version, id in the clear, is re-keyed.
        store
            .write_sync(|tx| {
                tx.open_table(SESSIONS)?
                    .insert("old-cookie", serde_json::to_vec(&session(&did))?.as_slice())?;
                Ok::<_, AccountError>(())
            })
            .unwrap();
        assert_eq!(accounts.hash_session_ids().unwrap(), 1);
        assert!(accounts.session("old-cookie").unwrap().is_some());
        assert!(
            stored_keys(&store)
                .iter()
                .all(|k| k.starts_with(SESSION_KEY_PREFIX) && !k.contains("cookie"))
        );
        assert!(accounts.delete_session("old-cookie").unwrap());
    }

    #[test]
    fn unusable_sessions_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let accounts = Accounts::new(PdsStore::open(&dir.path().join("pds.redb")).unwrap());
        let did: Did = "did:plc:abc".parse().unwrap();
        let session = |expires, rotated: Option<u64>| Session {
            did: did.clone(),
            expires,
            app_password: None,
            rotated: rotated.map(|until| Rotation {
                next: "next".into(),
                until,
            }),
            web: false,
        };
        accounts.put_session("live", &session(2000, None)).unwrap();
        accounts
            .put_session("expired", &session(1000, None))
            .unwrap();
        accounts
            .put_session("in-grace", &session(2000, Some(1500)))
            .unwrap();
        accounts
            .put_session("past-grace", &session(2000, Some(1200)))
            .unwrap();
        assert_eq!(accounts.prune_sessions(1300).unwrap(), 2);
        for (id, kept) in [
            ("live", true),
            ("expired", false),
            ("in-grace", true),
            ("past-grace", false),
        ] {
            assert_eq!(accounts.session(id).unwrap().is_some(), kept, "{id}");
        }
    }
}
