//! The node's keys and DID documents.
//!
//! Keys live in `<data_dir>/keys/` as hex secret scalars, mode 0600, created on first start:
//! `repo.key` (K-256: signs the node's repository), `rotation.key` (K-256: the rotation key of
//! every `did:plc` the node creates), `token.key` (P-256: signs session JWTs), and
//! `users/<plc id>.key` (K-256: the repository key of each local account). Never logged.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;

use crate::atproto::{Algorithm, Did, Keypair, PublicKey};

/// The node's own keys.
#[derive(Clone)]
pub struct NodeKeys {
    /// Signs the node's repository (`did:web`).
    pub repo: Arc<Keypair>,
    /// Signs PLC operations of local accounts.
    pub rotation: Arc<Keypair>,
    /// Signs access and refresh tokens.
    pub token: Arc<Keypair>,
    /// Authenticates the node to other PDSes' authorization servers, as a confidential OAuth
    /// client (`pds::oauth::ClientAuth`); its public half is `/oauth/jwks.json`.
    pub oauth_client: Arc<Keypair>,
    dir: PathBuf,
}

impl std::fmt::Debug for NodeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKeys")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl NodeKeys {
    /// Loads the keys in `dir`, creating those that do not exist yet.
    pub fn load_or_create(dir: &Path) -> std::io::Result<NodeKeys> {
        std::fs::create_dir_all(dir.join("users"))?;
        set_mode(dir, 0o700)?;
        Ok(NodeKeys {
            repo: Arc::new(load_or_create_key(&dir.join("repo.key"), Algorithm::K256)?),
            rotation: Arc::new(load_or_create_key(
                &dir.join("rotation.key"),
                Algorithm::K256,
            )?),
            token: Arc::new(load_or_create_key(&dir.join("token.key"), Algorithm::P256)?),
            oauth_client: Arc::new(load_or_create_key(
                &dir.join("oauth-client.key"),
                Algorithm::P256,
            )?),
            dir: dir.to_owned(),
        })
    }

    fn user_key_path(&self, did: &Did) -> PathBuf {
        self.dir
            .join("users")
            .join(format!("{}.key", did.method_specific_id()))
    }

    /// The repository key of a local account, created if missing.
    pub fn user_key(&self, did: &Did) -> std::io::Result<Keypair> {
        load_or_create_key(&self.user_key_path(did), Algorithm::K256)
    }

    /// Saves a freshly generated account key under its DID.
    pub fn save_user_key(&self, did: &Did, key: &Keypair) -> std::io::Result<()> {
        write_key(&self.user_key_path(did), key)
    }

    /// Removes an account's key (the account is gone).
    pub fn remove_user_key(&self, did: &Did) -> std::io::Result<()> {
        match std::fs::remove_file(self.user_key_path(did)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

fn write_key(path: &Path, key: &Keypair) -> std::io::Result<()> {
    write_private_file(path, hex::encode(key.to_bytes()).as_bytes())
}

/// Replaces a state file with `contents`, readable by its owner only: written beside it,
/// synced and renamed into place, so a crash leaves the old file or the new one, whole.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

fn load_or_create_key(path: &Path, alg: Algorithm) -> std::io::Result<Keypair> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let bad = || {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not a valid key file", path.display()),
                )
            };
            let bytes = hex::decode(text.trim()).map_err(|_| bad())?;
            Keypair::from_bytes(alg, &bytes).map_err(|_| bad())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate(alg);
            write_key(path, &key)?;
            tracing::info!(path = %path.display(), "generated a new key");
            Ok(key)
        }
        Err(e) => Err(e),
    }
}

/// The node's `did:web` for a public host (`host` or `host:port`). A port is only allowed for
/// `localhost` by the did:web rules atproto follows; it is percent-encoded.
pub fn node_did(host: &str) -> Result<Did, String> {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) if p.chars().all(|c| c.is_ascii_digit()) => (n, Some(p)),
        _ => (host, None),
    };
    let did = match port {
        Some(p) if name == "localhost" => format!("did:web:localhost%3A{p}"),
        Some(_) => return Err(format!("a port is only allowed on localhost: {host}")),
        None => format!("did:web:{name}"),
    };
    did.parse().map_err(|e| format!("{did}: {e}"))
}

/// The node's DID, kept stable while it has no public host: a `did:web:localhost%3A<port>`
/// is recorded in `<keys>/node-did` on first start and reused when the port changes, so the
/// node's repository (and the hold records in it) stays the same across restarts. A real
/// public host is always used as configured.
pub fn keep_local_did(keys: &Path, did: Did) -> std::io::Result<Did> {
    const LOCAL: &str = "did:web:localhost%3A";
    let path = keys.join("node-did");
    if !did.as_str().starts_with(LOCAL) {
        return Ok(did);
    }
    match std::fs::read_to_string(&path) {
        Ok(stored) => match stored.trim().parse::<Did>() {
            Ok(kept) if kept.as_str().starts_with(LOCAL) => Ok(kept),
            _ => Ok(did),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tmp = keys.join("node-did.tmp");
            std::fs::write(&tmp, did.as_str())?;
            std::fs::rename(&tmp, &path)?;
            Ok(did)
        }
        Err(e) => Err(e),
    }
}

/// A DID document in the shape atproto resolvers expect: `#atproto` Multikey verification
/// method and `#atproto_pds` service.
#[must_use]
pub fn did_document(
    did: &Did,
    handle: Option<&str>,
    signing: &PublicKey,
    endpoint: &str,
) -> serde_json::Value {
    json!({
        "@context": [
            "https://www.w3.org/ns/did/v1",
            "https://w3id.org/security/multikey/v1",
            "https://w3id.org/security/suites/secp256k1-2019/v1"
        ],
        "id": did.as_str(),
        "alsoKnownAs": handle.map(|h| vec![format!("at://{h}")]).unwrap_or_default(),
        "verificationMethod": [{
            "id": format!("{did}#atproto"),
            "type": "Multikey",
            "controller": did.as_str(),
            "publicKeyMultibase": signing.to_multikey(),
        }],
        "service": [{
            "id": "#atproto_pds",
            "type": "AtprotoPersonalDataServer",
            "serviceEndpoint": endpoint,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_dids() {
        assert_eq!(
            node_did("localhost:5000").unwrap().as_str(),
            "did:web:localhost%3A5000"
        );
        assert_eq!(
            node_did("registry.example.com").unwrap().as_str(),
            "did:web:registry.example.com"
        );
        assert!(node_did("registry.example.com:8443").is_err());
    }

    #[test]
    fn keys_are_created_once_with_owner_only_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = NodeKeys::load_or_create(&dir.path().join("keys")).unwrap();
        let b = NodeKeys::load_or_create(&dir.path().join("keys")).unwrap();
        assert_eq!(a.repo.public_key(), b.repo.public_key());
        assert_eq!(a.token.algorithm(), Algorithm::P256);
        for f in ["repo.key", "rotation.key", "token.key"] {
            let mode = std::fs::metadata(dir.path().join("keys").join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        let doc = did_document(
            &node_did("localhost:1").unwrap(),
            None,
            &a.repo.public_key(),
            "http://localhost:1",
        );
        assert_eq!(
            doc["verificationMethod"][0]["publicKeyMultibase"],
            a.repo.public_key().to_multikey()
        );
    }
}
