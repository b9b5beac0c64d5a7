//! The holds on other machines this registry may send blobs to and read them from: named by
//! the operator (`atcr hold add|list|remove`), kept in `<data_dir>/holds.json` (mode 0600,
//! replaced whole on every change). A manifest or profile naming a hold not on this list is
//! never followed: the node talks only to holds its operator chose.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::remote::RemoteHold;
use crate::atproto::Did;
use crate::http_client::Target;

/// The file, in the data directory.
pub const FILE: &str = "holds.json";
/// Largest DID document read when a hold is added.
const MAX_DOCUMENT: usize = 64 << 10;
/// How long the check of a new hold may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a list of holds: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// One trusted hold as the file keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedHold {
    pub did: Did,
    /// `http(s)://host[:port]`: where its XRPC answers.
    pub endpoint: String,
}

impl TrustedHold {
    /// Checks that the server at the endpoint answers as this hold: its
    /// `/.well-known/did.json` names the DID.
    pub async fn check(&self) -> Result<(), TrustError> {
        let (did, endpoint) = (&self.did, &self.endpoint);
        let target = Target::parse(endpoint, false).map_err(|e| {
            TrustError::Invalid(format!("{e:#}: give the hold's URL, e.g. https://nas.lan"))
        })?;
        let (status, document) = crate::http_client::get_json(
            &target,
            "/.well-known/did.json",
            MAX_DOCUMENT,
            CHECK_TIMEOUT,
        )
        .await
        .map_err(|e| TrustError::Invalid(format!("cannot reach {endpoint}: {e:#}")))?;
        let named = document.get("id").and_then(serde_json::Value::as_str);
        if status != 200 || named != Some(did.as_str()) {
            return Err(TrustError::Invalid(format!(
                "{endpoint} is not {did}: its /.well-known/did.json names {}",
                named.unwrap_or("no DID")
            )));
        }
        Ok(())
    }
}

#[derive(Default, Serialize, Deserialize)]
struct File {
    holds: Vec<TrustedHold>,
}

/// The trusted holds, read at start and changed through [`Trusted::add`] and
/// [`Trusted::remove`].
pub struct Trusted {
    path: PathBuf,
    client: reqwest::Client,
    holds: RwLock<BTreeMap<Did, Arc<RemoteHold>>>,
}

impl Trusted {
    /// Reads `<data_dir>/holds.json` (none: no trusted holds).
    pub fn open(data_dir: &Path) -> Result<Trusted, TrustError> {
        let path = data_dir.join(FILE);
        let file: File = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| TrustError::Parse {
                path: path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => File::default(),
            Err(source) => return Err(TrustError::Io { path, source }),
        };
        let client = client().map_err(TrustError::Invalid)?;
        let holds = file
            .holds
            .into_iter()
            .map(|h| {
                let remote = RemoteHold::new(h.did.clone(), &h.endpoint, client.clone());
                (h.did, Arc::new(remote))
            })
            .collect();
        Ok(Trusted {
            path,
            client,
            holds: RwLock::new(holds),
        })
    }

    /// The trusted hold `did`, if it is one.
    #[must_use]
    pub fn get(&self, did: &Did) -> Option<Arc<RemoteHold>> {
        self.read().get(did).cloned()
    }

    /// Every trusted hold, by DID.
    #[must_use]
    pub fn list(&self) -> Vec<TrustedHold> {
        self.read()
            .values()
            .map(|h| TrustedHold {
                did: h.did.clone(),
                endpoint: h.endpoint.clone(),
            })
            .collect()
    }

    /// Trusts the hold `did` at `endpoint` (default: the host of a `did:web`), after checking
    /// that the server there is that hold: its `/.well-known/did.json` names `did`.
    pub async fn add(&self, did: Did, endpoint: Option<&str>) -> Result<TrustedHold, TrustError> {
        let endpoint = match endpoint {
            Some(e) => e.trim_end_matches('/').to_owned(),
            None => web_endpoint(&did)?,
        };
        let hold = TrustedHold { did, endpoint };
        hold.check().await?;
        let remote = RemoteHold::new(hold.did.clone(), &hold.endpoint, self.client.clone());
        self.change(|holds| {
            holds.insert(hold.did.clone(), Arc::new(remote));
        })?;
        Ok(hold)
    }

    /// Stops trusting `did`; whether it was trusted.
    pub fn remove(&self, did: &Did) -> Result<bool, TrustError> {
        let mut removed = false;
        self.change(|holds| removed = holds.remove(did).is_some())?;
        Ok(removed)
    }

    /// Applies `f` and writes the file; the list changes only if the file was written.
    fn change(
        &self,
        f: impl FnOnce(&mut BTreeMap<Did, Arc<RemoteHold>>),
    ) -> Result<(), TrustError> {
        let mut holds = self
            .holds
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = holds.clone();
        f(&mut next);
        let file = File {
            holds: next
                .values()
                .map(|h| TrustedHold {
                    did: h.did.clone(),
                    endpoint: h.endpoint.clone(),
                })
                .collect(),
        };
        let bytes =
            serde_json::to_vec_pretty(&file).map_err(|e| TrustError::Invalid(e.to_string()))?;
        crate::pds::identity::write_private_file(&self.path, &bytes).map_err(|source| {
            TrustError::Io {
                path: self.path.clone(),
                source,
            }
        })?;
        *holds = next;
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Did, Arc<RemoteHold>>> {
        self.holds
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `https://<host>` of a `did:web` (`http` for `localhost`, as atproto's test setups do).
fn web_endpoint(did: &Did) -> Result<String, TrustError> {
    let host = did
        .as_str()
        .strip_prefix("did:web:")
        .filter(|h| !h.contains(':'))
        .ok_or_else(|| {
            TrustError::Invalid(format!(
                "{did}: give --endpoint (only a did:web names where it answers)"
            ))
        })?
        .replace("%3A", ":");
    let scheme = if crate::http_client::host_without_port(&host) == "localhost" {
        "http"
    } else {
        "https"
    };
    Ok(format!("{scheme}://{host}"))
}

/// The client holds are spoken to with: rustls with the system's CA certificates (none found:
/// plain HTTP only), redirects not followed (a blob read's redirect is the client's to follow).
fn client() -> Result<reqwest::Client, String> {
    let tls = crate::http_client::tls_config(None).ok();
    crate::http_client::reqwest_client(tls, false).map_err(|e| format!("{e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_dids_name_their_endpoint() {
        let did = |s: &str| s.parse::<Did>().unwrap();
        assert_eq!(
            web_endpoint(&did("did:web:nas.lan")).unwrap(),
            "https://nas.lan"
        );
        assert_eq!(
            web_endpoint(&did("did:web:localhost%3A8080")).unwrap(),
            "http://localhost:8080"
        );
        assert!(web_endpoint(&did("did:plc:abcdefghijklmnopqrstuvwx")).is_err());
    }

    #[tokio::test]
    async fn the_file_is_private_and_survives_a_reopen() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let trusted = Trusted::open(dir.path()).unwrap();
        assert!(trusted.list().is_empty());
        // Adding checks the endpoint: nothing listens here.
        let did: Did = "did:web:localhost%3A1".parse().unwrap();
        assert!(trusted.add(did.clone(), None).await.is_err());
        assert!(trusted.list().is_empty());
        assert!(!dir.path().join(FILE).exists());
        // A hold written to the file (as an earlier `add` would) is read back.
        let file = File {
            holds: vec![TrustedHold {
                did: did.clone(),
                endpoint: "http://localhost:1".into(),
            }],
        };
        std::fs::write(dir.path().join(FILE), serde_json::to_vec(&file).unwrap()).unwrap();
        let trusted = Trusted::open(dir.path()).unwrap();
        assert_eq!(trusted.get(&did).unwrap().endpoint, "http://localhost:1");
        assert!(trusted.remove(&did).unwrap());
        assert!(!trusted.remove(&did).unwrap());
        let mode = std::fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(Trusted::open(dir.path()).unwrap().list().is_empty());
    }
}
