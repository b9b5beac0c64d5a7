//! Signing keys of other identities, from their DID documents: for checking service-auth tokens
//! by the hold (see `docs/hold.md`).
//!
//! A DID hosted here (the node's `did:web`, a local or registered `did:plc`) is answered from
//! the built-in directory, always fresh. Others are fetched: a `did:plc` from the upstream PLC
//! directory (`pds.plc_upstream`; none configured: unknown), a `did:web` from
//! `https://<host>/.well-known/did.json` at public addresses only, unless the host is one of
//! `identity.lan_hosts` (then `http` for `localhost`, as atproto's test setups do).
//! Fetched keys (and failures) are kept a while, a bounded number of them, and at most
//! [`FETCHES`] fetches run at once, each bounded in time and size: whoever can make the node
//! resolve a DID cannot make it spend more than that.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Pds;
use crate::atproto::{Algorithm, Did, PublicKey};
use crate::http_client::{Target, get_json};

/// How long a fetched key is used before it is fetched again.
const KEY_TTL: Duration = Duration::from_mins(5);
/// How long a failed resolution is remembered.
const FAILURE_TTL: Duration = Duration::from_secs(30);
/// A forced refresh (after a signature failed, the key may have rotated) fetches again only if
/// the cached answer is at least this old.
const MIN_REFRESH: Duration = Duration::from_secs(30);
/// Entries kept; when full, expired ones go, then all.
const CAPACITY: usize = 1024;
/// Fetches running at once.
pub const FETCHES: usize = 4;
/// Largest DID document accepted.
const MAX_DOCUMENT_BYTES: usize = 64 << 10;
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for one of the [`FETCHES`] slots; then the caller is answered with an error
/// (not cached).
const SLOT_WAIT: Duration = Duration::from_secs(2);

struct Entry {
    at: Instant,
    key: Result<PublicKey, String>,
}

/// Resolves DIDs to the keys their documents name, with a cache.
pub struct DidResolver {
    cache: Mutex<HashMap<(Did, &'static str), Entry>>,
    fetches: tokio::sync::Semaphore,
}

impl Default for DidResolver {
    fn default() -> Self {
        DidResolver {
            cache: Mutex::new(HashMap::new()),
            fetches: tokio::sync::Semaphore::new(FETCHES),
        }
    }
}

impl DidResolver {
    /// The public key of `did`'s verification method `key_id` (`atproto`, say). With
    /// `refresh`, a cached answer older than `MIN_REFRESH` (30 s) is fetched again. The error says
    /// why there is none, for the caller's message.
    pub async fn signing_key(
        &self,
        pds: &Pds,
        did: &Did,
        key_id: &'static str,
        refresh: bool,
    ) -> Result<PublicKey, String> {
        if let Some(doc) = pds.did_document(did).map_err(|e| e.to_string())? {
            return key_in_document(&doc, did, key_id);
        }
        let slot = (did.clone(), key_id);
        if let Some(cached) = self.cached(&slot, refresh) {
            return cached;
        }
        // Waiting for a slot is bounded too: slow DID hosts must not queue every other issuer.
        let _permit = tokio::time::timeout(SLOT_WAIT, self.fetches.acquire())
            .await
            .map_err(|_| "too many DID documents being fetched; try again".to_owned())?
            .map_err(|_| "resolver closed".to_owned())?;
        // Another caller may have fetched it while this one waited.
        if let Some(cached) = self.cached(&slot, false) {
            return cached;
        }
        let key = match fetch_document(pds, did).await {
            Ok(doc) => key_in_document(&doc, did, key_id),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = &key {
            tracing::info!(%did, error = %e, "DID resolution failed");
        }
        let mut cache = self.lock();
        if cache.len() >= CAPACITY {
            cache.retain(|_, e| e.at.elapsed() < ttl(&e.key));
            if cache.len() >= CAPACITY {
                cache.clear();
            }
        }
        cache.insert(
            slot,
            Entry {
                at: Instant::now(),
                key: key.clone(),
            },
        );
        key
    }

    /// Where `did`'s repository is served: its DID document's `#atproto_pds` endpoint (not
    /// cached: for the hold's collection, which asks once per user and run).
    pub async fn pds_endpoint(&self, pds: &Pds, did: &Did) -> Result<String, String> {
        if let Some(doc) = pds.did_document(did).map_err(|e| e.to_string())? {
            return pds_in_document(&doc);
        }
        let _permit = tokio::time::timeout(SLOT_WAIT, self.fetches.acquire())
            .await
            .map_err(|_| "too many DID documents being fetched; try again".to_owned())?
            .map_err(|_| "resolver closed".to_owned())?;
        let doc = fetch_document(pds, did).await.map_err(|e| e.to_string())?;
        pds_in_document(&doc)
    }

    fn cached(
        &self,
        slot: &(Did, &'static str),
        refresh: bool,
    ) -> Option<Result<PublicKey, String>> {
        let cache = self.lock();
        let entry = cache.get(slot)?;
        let age = entry.at.elapsed();
        (age < ttl(&entry.key) && !(refresh && age >= MIN_REFRESH)).then(|| entry.key.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Did, &'static str), Entry>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn ttl(key: &Result<PublicKey, String>) -> Duration {
    if key.is_ok() { KEY_TTL } else { FAILURE_TTL }
}

/// Why an identity, or a DID document, could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The answers say there is none (or it is malformed, or the two directions disagree).
    #[error("{0}")]
    NotFound(String),
    /// A server that would say could not be reached, or answered with a server error.
    #[error("{0}")]
    Unavailable(String),
}

/// Where a DID document not hosted here is fetched from: server and path.
pub(super) fn document_location(pds: &Pds, did: &Did) -> Result<(String, String), String> {
    did.check_atproto_method().map_err(|e| e.to_string())?;
    if did.method() == "plc" {
        let upstream = pds
            .settings
            .plc_upstream
            .clone()
            .ok_or_else(|| "no PLC directory configured knows it".to_owned())?;
        return Ok((upstream, format!("/{did}")));
    }
    let host = did.web_host().unwrap_or_default();
    let scheme = if crate::http_client::host_without_port(&host) == "localhost" {
        "http"
    } else {
        "https"
    };
    Ok((format!("{scheme}://{host}"), "/.well-known/did.json".into()))
}

/// `did`'s document fetched from where it lives (not the built-in directory): a did:web's host
/// as a stranger's server (HTTPS at public addresses unless it is one of `identity.lan_hosts`:
/// anyone may name any host in one), a did:plc from the operator's PLC directory. Bounded in
/// time and size; the error says whether the answer was that there is none or no answer came.
pub(super) async fn fetch_document(
    pds: &Pds,
    did: &Did,
) -> Result<serde_json::Value, ResolveError> {
    use ResolveError::{NotFound, Unavailable};
    let (server, path) = document_location(pds, did).map_err(NotFound)?;
    let target = if did.method() == "web" {
        pds.settings.identity.reachable(&server).map_err(NotFound)?
    } else {
        Target::parse(&server, false).map_err(|e| NotFound(format!("{server}: {e:#}")))?
    };
    let (status, doc) = get_json(&target, &path, MAX_DOCUMENT_BYTES, FETCH_TIMEOUT)
        .await
        .map_err(|e| Unavailable(format!("{server}: {e:#}")))?;
    match status {
        200 if doc["id"].as_str() == Some(did.as_str()) => Ok(doc),
        200 => Err(NotFound(format!("{server} sent a document of another DID"))),
        s if s >= 500 || s == 429 => Err(Unavailable(format!("{server} answered {s}"))),
        s => Err(NotFound(format!("{server} knows no {did} ({s})"))),
    }
}

/// The `#atproto_pds` service endpoint of a DID document.
pub fn pds_in_document(doc: &serde_json::Value) -> Result<String, String> {
    doc["service"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| {
            s["id"]
                .as_str()
                .is_some_and(|id| id.ends_with("#atproto_pds"))
        })
        .and_then(|s| s["serviceEndpoint"].as_str())
        .map(|e| e.trim_end_matches('/').to_owned())
        .ok_or_else(|| "the DID document names no #atproto_pds service".to_owned())
}

/// The key of verification method `key_id` in a DID document: `Multikey`, or the legacy
/// `EcdsaSecp256k1VerificationKey2019` / `EcdsaSecp256r1VerificationKey2019` forms.
pub fn key_in_document(
    doc: &serde_json::Value,
    did: &Did,
    key_id: &str,
) -> Result<PublicKey, String> {
    let (short, full) = (format!("#{key_id}"), format!("{did}#{key_id}"));
    let method = doc["verificationMethod"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["id"].as_str().is_some_and(|id| id == short || id == full))
        .ok_or_else(|| format!("the DID document has no #{key_id} key"))?;
    let multibase = method["publicKeyMultibase"]
        .as_str()
        .ok_or_else(|| format!("#{key_id} has no publicKeyMultibase"))?;
    let key = match method["type"].as_str() {
        Some("Multikey") => PublicKey::from_multikey(multibase),
        Some("EcdsaSecp256k1VerificationKey2019") => {
            PublicKey::from_legacy_multibase(Algorithm::K256, multibase)
        }
        Some("EcdsaSecp256r1VerificationKey2019") => {
            PublicKey::from_legacy_multibase(Algorithm::P256, multibase)
        }
        t => return Err(format!("#{key_id} has an unsupported type {t:?}")),
    };
    key.map_err(|e| format!("#{key_id}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atproto::Keypair;
    use serde_json::json;

    /// While every fetch slot is taken (slow DID hosts), another issuer is answered with an
    /// error within the slot wait instead of queueing behind them.
    #[tokio::test]
    async fn waiting_for_a_fetch_slot_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let pds = crate::pds::Pds::open(
            dir.path(),
            crate::pds::PdsSettings::localhost(4000),
            crate::blobstore::BlobStore::memory().unwrap(),
        )
        .await
        .unwrap();
        let resolver = DidResolver::default();
        let _all = resolver
            .fetches
            .acquire_many(u32::try_from(FETCHES).unwrap())
            .await
            .unwrap();
        let did: Did = "did:web:slow.example.com".parse().unwrap();
        // (The outer timeout only keeps a regression from hanging the suite.)
        let err = tokio::time::timeout(
            Duration::from_mins(2),
            resolver.signing_key(&pds, &did, "atproto", false),
        )
        .await
        .expect("the wait for a fetch slot is unbounded")
        .unwrap_err();
        assert!(err.contains("too many"), "{err}");
        // Not cached: once a slot is free the DID is fetched.
        assert!(resolver.cached(&(did, "atproto"), false).is_none());
    }

    /// A did:web issuer naming this machine or the LAN is not fetched unless its host is a
    /// LAN host: anyone can present a token claiming to be one.
    #[tokio::test]
    async fn did_web_documents_are_fetched_from_public_addresses_only() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let pds = crate::pds::Pds::open(
            dir.path(),
            crate::pds::PdsSettings::localhost(4000),
            crate::blobstore::BlobStore::memory().unwrap(),
        )
        .await
        .unwrap();
        for did in [
            format!("did:web:localhost%3A{port}"),
            "did:web:localhost".to_owned(),
        ] {
            let err = fetch_document(&pds, &did.parse().unwrap())
                .await
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("not HTTPS") || err.contains("not a public address"),
                "{did}: {err}"
            );
        }
    }

    #[test]
    fn keys_are_found_by_method_id_in_every_form() {
        let did: Did = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa".parse().unwrap();
        let k = Keypair::generate(Algorithm::K256).public_key();
        let p = Keypair::generate(Algorithm::P256).public_key();
        let doc = json!({"id": did.as_str(), "verificationMethod": [
            {"id": "#other", "type": "Multikey", "publicKeyMultibase": p.to_multikey()},
            {"id": format!("{did}#atproto"), "type": "Multikey", "publicKeyMultibase": k.to_multikey()},
            {"id": "#atproto_label", "type": "EcdsaSecp256r1VerificationKey2019",
             "publicKeyMultibase": p.to_legacy_multibase()},
        ]});
        assert_eq!(key_in_document(&doc, &did, "atproto").unwrap(), k);
        assert_eq!(key_in_document(&doc, &did, "atproto_label").unwrap(), p);
        assert!(key_in_document(&doc, &did, "missing").is_err());
        assert!(key_in_document(&json!({}), &did, "atproto").is_err());
        let bad = json!({"verificationMethod": [{"id": "#atproto", "type": "JsonWebKey2020"}]});
        assert!(key_in_document(&bad, &did, "atproto").is_err());
    }
}
