//! Identities of users anywhere: handle → DID → DID document → PDS endpoint, checked both ways
//! (the document must name the handle back), for logins of users of other PDSes (see
//! `docs/federation.md`).
//!
//! A handle's DID comes from the configured resolver (`identity.handle_resolver`: a PDS asked
//! `com.atproto.identity.resolveHandle`) or else from DNS (the `_atproto.<handle>` TXT record,
//! `dns.rs`) and then `https://<handle>/.well-known/atproto-did`;
//! a DID's document from the built-in directory, the upstream PLC directory or the `did:web`
//! host (as [`super::did_resolver`]). Every byte comes from strangers' servers: each fetch is
//! bounded in time and size, at most [`FETCHES`] resolutions run at once, and answers (and
//! refusals) are cached for a while, a bounded number of them. An identity server that cannot
//! be reached is [`ResolveError::Unavailable`] and is not cached.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

mod dns;

use super::Pds;
use crate::atproto::{Did, Handle};
use crate::http_client::{Target, get_bytes, get_json};

/// Resolutions running at once.
pub const FETCHES: usize = 4;
/// Longest wait for one of the [`FETCHES`] slots.
const SLOT_WAIT: Duration = Duration::from_secs(2);
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long resolving one identity may take in all.
const RESOLVE_DEADLINE: Duration = Duration::from_secs(8);
/// Largest `/.well-known/atproto-did` or `resolveHandle` answer accepted.
const MAX_HANDLE_ANSWER_BYTES: usize = 2 << 10;
/// How long an identifier that resolves to nothing is remembered.
const NOT_FOUND_TTL: Duration = Duration::from_secs(30);
/// Entries kept; when full, expired ones go, then all.
const CAPACITY: usize = 4096;

/// How identities are resolved (`[identity]` in `atcr.toml`).
#[derive(Debug, Clone)]
pub struct IdentitySettings {
    /// A PDS asked for the DID of every handle, instead of the handle's host.
    pub handle_resolver: Option<String>,
    /// Hosts (lowercase) on the LAN or this machine: reached over plain HTTP too, and
    /// although they resolve to non-public addresses. Any other host a stranger names must be
    /// HTTPS at public addresses only.
    pub lan_hosts: Vec<String>,
    /// How long a resolved identity is used.
    pub cache: Duration,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        IdentitySettings {
            handle_resolver: None,
            lan_hosts: Vec::new(),
            cache: Duration::from_mins(5),
        }
    }
}

impl IdentitySettings {
    /// Whether `host` (no port) is one of `identity.lan_hosts`.
    fn lan_host(&self, host: &str) -> bool {
        let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
        self.lan_hosts.contains(&host)
    }

    /// `url` (a server a stranger named: a PDS endpoint, a handle's or a did:web's host) as
    /// the node may reach it: a LAN host as it is, any other over HTTPS at public addresses
    /// only ([`Target::public_only`]).
    pub fn reachable(&self, url: &str) -> Result<Target, String> {
        let target = Target::parse(url, false).map_err(|e| format!("{url}: {e}"))?;
        if self.lan_host(&target.host) {
            return Ok(target);
        }
        if !target.https {
            return Err(format!(
                "{url} is not HTTPS (plain HTTP only for identity.lan_hosts)"
            ));
        }
        Ok(target.public_only())
    }
}

/// A resolved identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub did: Did,
    /// The handle, when the DID document names one that resolves back to the DID.
    pub handle: Option<Handle>,
    /// The `#atproto_pds` endpoint (`https://pds.example.com`), without a trailing `/`.
    pub pds: String,
}

/// Why an identifier resolved to no identity (kept beside the document fetch it shares).
pub use super::did_resolver::ResolveError;

struct Entry {
    at: Instant,
    answer: Result<Identity, ResolveError>,
}

/// Resolves identities, with a cache.
pub struct Identities {
    cache: Mutex<HashMap<String, Entry>>,
    fetches: tokio::sync::Semaphore,
}

impl Default for Identities {
    fn default() -> Self {
        Identities {
            cache: Mutex::new(HashMap::new()),
            fetches: tokio::sync::Semaphore::new(FETCHES),
        }
    }
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identities").finish_non_exhaustive()
    }
}

impl Identities {
    /// The identity of `identifier` (a handle or a DID), from the cache when fresh.
    pub async fn resolve(&self, pds: &Pds, identifier: &str) -> Result<Identity, ResolveError> {
        let key = identifier.trim().to_ascii_lowercase();
        let settings = &pds.settings.identity;
        if let Some(hit) = self.cached(&key, settings.cache) {
            return hit;
        }
        let _permit = tokio::time::timeout(SLOT_WAIT, self.fetches.acquire())
            .await
            .map_err(|_| {
                ResolveError::Unavailable("too many identities being resolved; try again".into())
            })?
            .map_err(|_| ResolveError::Unavailable("resolver closed".into()))?;
        // Another caller may have resolved it while this one waited.
        if let Some(hit) = self.cached(&key, settings.cache) {
            return hit;
        }
        // One deadline for every step (DNS, well-known, document, the check back), so one
        // caller's slow servers hold a slot this long at most.
        let answer = tokio::time::timeout(RESOLVE_DEADLINE, resolve_uncached(pds, &key))
            .await
            .unwrap_or_else(|_| {
                Err(ResolveError::Unavailable(format!(
                    "resolving {key} took longer than {} s",
                    RESOLVE_DEADLINE.as_secs()
                )))
            });
        match &answer {
            Err(ResolveError::Unavailable(e)) => {
                tracing::warn!(identifier = ?key, error = %e, "identity unreachable");
                return answer;
            }
            Err(e) => tracing::info!(identifier = ?key, error = %e, "identity not found"),
            Ok(id) => tracing::debug!(identifier = %key, did = %id.did, "identity resolved"),
        }
        let mut cache = self.lock();
        if cache.len() >= CAPACITY {
            cache.retain(|_, e| e.at.elapsed() < ttl(&e.answer, settings.cache));
            if cache.len() >= CAPACITY {
                cache.clear();
            }
        }
        cache.insert(
            key,
            Entry {
                at: Instant::now(),
                answer: answer.clone(),
            },
        );
        answer
    }

    /// Forgets what is known about `identifier`.
    pub fn forget(&self, identifier: &str) {
        self.lock().remove(&identifier.trim().to_ascii_lowercase());
    }

    fn cached(&self, key: &str, fresh: Duration) -> Option<Result<Identity, ResolveError>> {
        let cache = self.lock();
        let entry = cache.get(key)?;
        (entry.at.elapsed() < ttl(&entry.answer, fresh)).then(|| entry.answer.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn ttl(answer: &Result<Identity, ResolveError>, fresh: Duration) -> Duration {
    if answer.is_ok() {
        fresh
    } else {
        NOT_FOUND_TTL.min(fresh)
    }
}

async fn resolve_uncached(pds: &Pds, identifier: &str) -> Result<Identity, ResolveError> {
    let not_found = ResolveError::NotFound;
    if identifier.starts_with("did:") {
        let did: Did = identifier
            .parse()
            .map_err(|e| not_found(format!("{identifier}: {e}")))?;
        let doc = document(pds, &did).await?;
        let endpoint = endpoint_in(&pds.settings.identity, &doc)?;
        // The handle counts only if it resolves back to this DID.
        let handle = match claimed_handles(&doc).into_iter().next() {
            Some(h) => match handle_to_did(pds, &h).await {
                Ok(d) if d == did => Some(h),
                _ => None,
            },
            None => None,
        };
        return Ok(Identity {
            did,
            handle,
            pds: endpoint,
        });
    }
    let handle: Handle = identifier
        .parse()
        .map_err(|e| not_found(format!("{identifier} is no handle or DID: {e}")))?;
    let did = handle_to_did(pds, &handle).await?;
    let doc = document(pds, &did).await?;
    if !claimed_handles(&doc).contains(&handle) {
        return Err(not_found(format!(
            "the DID document of {did} does not name {handle}"
        )));
    }
    Ok(Identity {
        did,
        handle: Some(handle),
        pds: endpoint_in(&pds.settings.identity, &doc)?,
    })
}

/// The handles a DID document claims (`alsoKnownAs: ["at://<handle>"]`), normalized.
fn claimed_handles(doc: &Value) -> Vec<Handle> {
    doc["alsoKnownAs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str()?.strip_prefix("at://")?.parse::<Handle>().ok())
        .map(|h| h.normalized())
        .collect()
}

/// The document's PDS endpoint, if the node may reach it (HTTPS, or HTTP where allowed).
fn endpoint_in(settings: &IdentitySettings, doc: &Value) -> Result<String, ResolveError> {
    let endpoint = super::did_resolver::pds_in_document(doc).map_err(ResolveError::NotFound)?;
    settings
        .reachable(&endpoint)
        .map_err(|e| ResolveError::NotFound(format!("PDS endpoint {e}")))?;
    Ok(endpoint)
}

/// The DID of `handle`: a local account's, else the configured resolver's, else its DNS TXT
/// record's or its host's `/.well-known/atproto-did`.
pub async fn handle_to_did(pds: &Pds, handle: &Handle) -> Result<Did, ResolveError> {
    let handle = handle.normalized();
    if let Some(did) = pds
        .resolve_handle(handle.as_str())
        .map_err(|e| ResolveError::Unavailable(e.to_string()))?
    {
        return Ok(did);
    }
    let settings = &pds.settings.identity;
    if let Some(resolver) = &settings.handle_resolver {
        return ask_resolver(resolver, &handle).await;
    }
    let dns = dns::txt_did(&handle).await;
    if let Ok(Some(did)) = dns {
        return Ok(did);
    }
    match well_known(settings, &handle).await {
        // Neither says; one could not be asked: that is no answer.
        Err(ResolveError::NotFound(why)) => match dns {
            Err(ResolveError::Unavailable(dns)) => {
                Err(ResolveError::Unavailable(format!("{dns}; {why}")))
            }
            _ => Err(ResolveError::NotFound(why)),
        },
        answer => answer,
    }
}

async fn ask_resolver(resolver: &str, handle: &Handle) -> Result<Did, ResolveError> {
    let target = Target::parse(resolver, false)
        .map_err(|e| ResolveError::Unavailable(format!("identity.handle_resolver: {e}")))?;
    let path = format!(
        "/xrpc/com.atproto.identity.resolveHandle?handle={}",
        handle.as_str()
    );
    let (status, answer) = get_json(&target, &path, MAX_HANDLE_ANSWER_BYTES, FETCH_TIMEOUT)
        .await
        .map_err(|e| ResolveError::Unavailable(format!("{resolver}: {e:#}")))?;
    match status {
        200 => answer["did"]
            .as_str()
            .and_then(|d| d.parse::<Did>().ok())
            .ok_or_else(|| ResolveError::NotFound(format!("{resolver} sent no DID for {handle}"))),
        400..=499 if status != 429 => Err(ResolveError::NotFound(format!(
            "{resolver} knows no {handle} ({status})"
        ))),
        _ => Err(ResolveError::Unavailable(format!(
            "{resolver} answered {status}"
        ))),
    }
}

async fn well_known(settings: &IdentitySettings, handle: &Handle) -> Result<Did, ResolveError> {
    let host = handle.as_str();
    let scheme = if settings.lan_host(host) {
        "http"
    } else {
        "https"
    };
    let server = format!("{scheme}://{host}");
    let target = settings
        .reachable(&server)
        .map_err(ResolveError::NotFound)?;
    let (status, body) = get_bytes(
        &target,
        "/.well-known/atproto-did",
        MAX_HANDLE_ANSWER_BYTES,
        FETCH_TIMEOUT,
    )
    .await
    .map_err(|e| ResolveError::Unavailable(format!("{server}: {e:#}")))?;
    match status {
        200 => std::str::from_utf8(&body)
            .ok()
            .and_then(|s| s.trim().parse::<Did>().ok())
            .ok_or_else(|| ResolveError::NotFound(format!("{server} sent no DID for {handle}"))),
        s if s >= 500 || s == 429 => {
            Err(ResolveError::Unavailable(format!("{server} answered {s}")))
        }
        s => Err(ResolveError::NotFound(format!(
            "{server} answered {s} for {handle}"
        ))),
    }
}

/// `did`'s document: the built-in directory's, or fetched ([`super::did_resolver`]).
async fn document(pds: &Pds, did: &Did) -> Result<Value, ResolveError> {
    if let Some(doc) = pds
        .did_document(did)
        .map_err(|e| ResolveError::Unavailable(e.to_string()))?
    {
        return Ok(doc);
    }
    super::did_resolver::fetch_document(pds, did).await
}

#[cfg(test)]
mod tests;
