//! `docker-credential-atcr`: docker's credential-helper protocol (`get`, `store`, `erase`,
//! `list` on stdin/stdout), keeping credentials in a file only the user can read.
//!
//! The file is `$ATCR_CREDENTIALS_FILE`, else `$XDG_CONFIG_HOME/atcr/credentials.json`, else
//! `~/.config/atcr/credentials.json`: a JSON object from server URL to `{Username, Secret}`,
//! mode 0600 in a 0700 directory, replaced atomically. A file group or others may read is refused
//! rather than used. The binary answers to this protocol when it is invoked under the name
//! `docker-credential-atcr` (a link to `atcr`, as the packages install it).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The name docker derives from `credHelpers: {"host": "atcr"}` / `credsStore: "atcr"`.
pub const HELPER_NAME: &str = "docker-credential-atcr";

/// What docker-credential-helpers print when there is nothing for a server.
const NOT_FOUND: &str = "credentials not found in native keychain";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    #[serde(rename = "Username")]
    pub username: String,
    #[serde(rename = "Secret")]
    pub secret: String,
}

/// The credential file.
#[derive(Debug)]
pub struct CredentialStore {
    path: PathBuf,
}

/// `https://host:port/`, `host:port` and `http://host:port` all name `host:port`.
fn normalize(server: &str) -> String {
    let s = server.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    s.trim_end_matches('/').to_owned()
}

impl CredentialStore {
    /// The store the environment names.
    pub fn from_env() -> anyhow::Result<CredentialStore> {
        if let Some(p) = std::env::var_os("ATCR_CREDENTIALS_FILE") {
            return Ok(CredentialStore { path: p.into() });
        }
        let base = match std::env::var_os("XDG_CONFIG_HOME") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => PathBuf::from(
                std::env::var_os("HOME").context("neither XDG_CONFIG_HOME nor HOME is set")?,
            )
            .join(".config"),
        };
        Ok(CredentialStore {
            path: base.join("atcr").join("credentials.json"),
        })
    }

    #[cfg(test)]
    fn at(path: &Path) -> CredentialStore {
        CredentialStore {
            path: path.to_owned(),
        }
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn load(&self) -> anyhow::Result<BTreeMap<String, Credential>> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(e).with_context(|| format!("{}", self.path.display())),
        };
        crate::config::check_owner_only(&self.path, &meta)?;
        let text = std::fs::read_to_string(&self.path)
            .with_context(|| format!("cannot read {}", self.path.display()))?;
        if text.trim().is_empty() {
            return Ok(BTreeMap::new());
        }
        serde_json::from_str(&text).with_context(|| format!("{} is not valid", self.path.display()))
    }

    fn save(&self, entries: &BTreeMap<String, Credential>) -> anyhow::Result<()> {
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.exists() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(&serde_json::to_vec_pretty(entries)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("cannot replace {}", self.path.display()))?;
        Ok(())
    }

    pub fn get(&self, server: &str) -> anyhow::Result<Option<Credential>> {
        let key = normalize(server);
        Ok(self
            .load()?
            .into_iter()
            .find(|(k, _)| normalize(k) == key)
            .map(|(_, c)| c))
    }

    pub fn store(&self, server: &str, credential: Credential) -> anyhow::Result<()> {
        let mut entries = self.load()?;
        let key = normalize(server);
        entries.retain(|k, _| normalize(k) != key);
        entries.insert(key, credential);
        self.save(&entries)
    }

    /// Returns whether there was anything to erase.
    pub fn erase(&self, server: &str) -> anyhow::Result<bool> {
        let mut entries = self.load()?;
        let key = normalize(server);
        let before = entries.len();
        entries.retain(|k, _| normalize(k) != key);
        if entries.len() == before {
            return Ok(false);
        }
        self.save(&entries)?;
        Ok(true)
    }

    pub fn list(&self) -> anyhow::Result<BTreeMap<String, String>> {
        Ok(self
            .load()?
            .into_iter()
            .map(|(k, c)| (k, c.username))
            .collect())
    }
}

#[derive(Deserialize)]
struct StoreInput {
    #[serde(rename = "ServerURL")]
    server_url: String,
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// One helper call: `action` with `input` (stdin); returns stdout or an error message.
pub fn respond(store: &CredentialStore, action: &str, input: &str) -> Result<String, String> {
    let fail = |e: anyhow::Error| format!("{e:#}");
    match action {
        "get" => {
            let server = input.trim();
            if server.is_empty() {
                return Err("no server URL given".into());
            }
            let c = store
                .get(server)
                .map_err(fail)?
                .ok_or_else(|| NOT_FOUND.to_owned())?;
            Ok(serde_json::json!({"ServerURL": server, "Username": c.username, "Secret": c.secret})
                .to_string())
        }
        "store" => {
            let i: StoreInput = serde_json::from_str(input)
                .map_err(|e| format!("expected {{ServerURL, Username, Secret}}: {e}"))?;
            store
                .store(
                    &i.server_url,
                    Credential {
                        username: i.username,
                        secret: i.secret,
                    },
                )
                .map_err(fail)?;
            Ok(String::new())
        }
        "erase" => {
            if store.erase(input.trim()).map_err(fail)? {
                Ok(String::new())
            } else {
                Err(NOT_FOUND.into())
            }
        }
        "list" => Ok(serde_json::to_string(&store.list().map_err(fail)?).unwrap_or_default()),
        "version" => Ok(format!("{HELPER_NAME} {}", env!("CARGO_PKG_VERSION"))),
        other => Err(format!(
            "unknown action {other:?}: usage: {HELPER_NAME} get|store|erase|list|version"
        )),
    }
}

/// The helper's `main`: action from the arguments, input from stdin.
#[must_use]
pub fn helper_main(args: &[String]) -> ExitCode {
    let action = args.get(1).map_or("", String::as_str);
    let mut input = String::new();
    if matches!(action, "get" | "store" | "erase")
        && std::io::stdin().read_to_string(&mut input).is_err()
    {
        println!("cannot read stdin");
        return ExitCode::FAILURE;
    }
    let store = match CredentialStore::from_env() {
        Ok(s) => s,
        Err(e) => {
            println!("{e:#}");
            return ExitCode::FAILURE;
        }
    };
    // Docker reads the error message from stdout.
    match respond(&store, action, &input) {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            println!("{message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::at(&dir.path().join("sub/credentials.json"));
        assert_eq!(
            respond(&store, "get", "registry.lan\n"),
            Err(NOT_FOUND.to_owned())
        );
        respond(
            &store,
            "store",
            r#"{"ServerURL":"https://registry.lan","Username":"alice","Secret":"abcd-efgh"}"#,
        )
        .unwrap();
        let got: serde_json::Value =
            serde_json::from_str(&respond(&store, "get", "registry.lan").unwrap()).unwrap();
        assert_eq!(
            got,
            serde_json::json!({"ServerURL": "registry.lan", "Username": "alice", "Secret": "abcd-efgh"})
        );
        assert_eq!(
            respond(&store, "list", "").unwrap(),
            r#"{"registry.lan":"alice"}"#
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(store.path()), 0o600);
        assert_eq!(mode(store.path().parent().unwrap()), 0o700);
        respond(&store, "erase", "https://registry.lan/").unwrap();
        assert_eq!(
            respond(&store, "erase", "registry.lan"),
            Err(NOT_FOUND.into())
        );
        assert_eq!(respond(&store, "list", "").unwrap(), "{}");
        assert!(respond(&store, "store", "not json").is_err());
        assert!(respond(&store, "frobnicate", "").is_err());
    }

    #[test]
    fn a_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::at(&dir.path().join("c.json"));
        store
            .store(
                "r",
                Credential {
                    username: "u".into(),
                    secret: "s".into(),
                },
            )
            .unwrap();
        std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = respond(&store, "get", "r").unwrap_err();
        assert!(err.contains("readable by group or others"), "{err}");
    }
}
