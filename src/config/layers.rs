//! The configuration's layers — built-in defaults < the file < `ATCR_*` environment variables <
//! command-line flags — and where each effective value came from.
//!
//! Every key `a.b_c` has the environment variable `ATCR_A_B_C`. A value is taken as text for
//! keys whose values are text (addresses and paths included) and as a TOML value otherwise
//! (`true`, `8080`, `["a", "b"]`; a list may also be written `a,b`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::{Table, Value};

use super::{Config, ConfigError, SYSTEM_CONFIG};

/// `ATCR_*` variables that are not configuration keys.
const OTHER_VARIABLES: [&str; 2] = ["ATCR_CONFIG", "ATCR_CREDENTIALS_FILE"];

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File(PathBuf),
    Env(String),
    Flag(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(path) => write!(f, "file {}", path.display()),
            Origin::Env(name) => write!(f, "environment {name}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// A command-line flag that sets a key.
pub struct Flag {
    /// The flag as typed, e.g. `--listen`.
    pub flag: &'static str,
    /// The dotted key it sets, e.g. `listen`.
    pub key: &'static str,
    pub value: String,
}

/// The effective configuration, with the origin of every value.
#[derive(Debug)]
pub struct Layered {
    pub config: Config,
    /// Values not from the defaults, by dotted key.
    origins: BTreeMap<String, Origin>,
    /// `ATCR_*` variables that name no key (probably misspelt).
    pub unknown_env: Vec<String>,
}

impl Layered {
    /// Where the value of the dotted `key` came from.
    #[must_use]
    pub fn origin(&self, key: &str) -> &Origin {
        self.origins.get(key).unwrap_or(&Origin::Default)
    }

    /// The effective configuration as a TOML document, each value followed by its origin;
    /// unset optional keys appear as comments.
    #[must_use]
    pub fn render(&self) -> String {
        let effective = flatten(&Table::try_from(&self.config).unwrap_or_default());
        let keys = every_key();
        let mut sections: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for key in keys.keys() {
            let (section, name) = key.rsplit_once('.').unwrap_or(("", key));
            let line = match effective.get(key) {
                Some(value) => format!("{name} = {value}"),
                None => format!("# {name} (unset)"),
            };
            sections
                .entry(section)
                .or_default()
                .push(format!("{line:<44} # {}", self.origin(key)));
        }
        let mut out = String::new();
        for (section, lines) in sections {
            if !section.is_empty() {
                out.push_str("\n[");
                out.push_str(section);
                out.push_str("]\n");
            }
            for line in lines {
                out.push_str(&line);
                out.push('\n');
            }
        }
        out.trim_end().to_owned()
    }
}

/// The environment variable of a dotted key.
#[must_use]
pub fn env_name(key: &str) -> String {
    format!("ATCR_{}", key.replace('.', "_").to_uppercase())
}

/// Every key with a value of its type (optional keys included), by dotted name.
fn every_key() -> BTreeMap<String, Value> {
    let mut config = Config::default();
    config.storage.root = Some(PathBuf::new());
    config.storage.bucket = Some(String::new());
    config.storage.endpoint = Some(String::new());
    config.storage.region = Some(String::new());
    config.storage.access_key_id_file = Some(PathBuf::new());
    config.storage.secret_access_key_file = Some(PathBuf::new());
    config.storage.ca_file = Some(PathBuf::new());
    config.tls.cert = Some(PathBuf::new());
    config.tls.key = Some(PathBuf::new());
    config.pds.public_host = Some(String::new());
    config.pds.scheme = Some(String::new());
    config.pds.plc_upstream = Some(String::new());
    config.identity.handle_resolver = Some(String::new());
    config.accounts.admin_password_file = Some(PathBuf::new());
    config.server.metrics_token_file = Some(PathBuf::new());
    config.quota.default = Some(String::new());
    config.holds.default = Some(String::new());
    flatten(&Table::try_from(&config).expect("the configuration serializes"))
}

/// The leaves of a table by dotted key (arrays are leaves).
fn flatten(table: &Table) -> BTreeMap<String, Value> {
    fn walk(table: &Table, prefix: &str, out: &mut BTreeMap<String, Value>) {
        for (name, value) in table {
            let key = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            match value {
                Value::Table(inner) => walk(inner, &key, out),
                leaf => {
                    out.insert(key, leaf.clone());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(table, "", &mut out);
    out
}

fn set(table: &mut Table, key: &str, value: Value) {
    match key.split_once('.') {
        Some((section, rest)) => {
            let inner = table
                .entry(section)
                .or_insert_with(|| Value::Table(Table::new()));
            if !inner.is_table() {
                *inner = Value::Table(Table::new());
            }
            if let Value::Table(inner) = inner {
                set(inner, rest, value);
            }
        }
        None => {
            table.insert(key.to_owned(), value);
        }
    }
}

/// `raw` as a value of the type `example` has.
fn typed(raw: &str, example: &Value) -> Option<Value> {
    match example {
        Value::String(_) => Some(Value::String(raw.to_owned())),
        Value::Array(_) if !raw.trim_start().starts_with('[') => Some(Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        )),
        _ => toml::from_str::<Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v")),
    }
}

impl Config {
    /// The configuration from every layer: `file` (or the system file if it exists), then the
    /// `ATCR_*` variables in `env`, then `flags`. Does not run [`Config::check`].
    pub fn load_layered(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &[Flag],
    ) -> Result<Layered, ConfigError> {
        let mut origins = BTreeMap::new();
        let path = match file {
            Some(p) => Some(p.to_owned()),
            None if Path::new(SYSTEM_CONFIG).exists() => Some(PathBuf::from(SYSTEM_CONFIG)),
            None => None,
        };
        let mut table = Table::new();
        if let Some(path) = path {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            // Parsing into the struct first gives errors with line numbers and unknown keys.
            Config::from_toml(&text, &path)?;
            table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                path: path.clone(),
                source: Box::new(e),
            })?;
            for key in flatten(&table).into_keys() {
                origins.insert(key, Origin::File(path.clone()));
            }
        }

        let keys = every_key();
        let by_env: BTreeMap<String, &String> = keys.keys().map(|k| (env_name(k), k)).collect();
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(name, _)| name.starts_with("ATCR_") && !OTHER_VARIABLES.contains(&&**name))
            .collect();
        env.sort();
        let mut unknown_env = Vec::new();
        let mut overrides = Vec::new();
        for (name, raw) in env {
            match by_env.get(&name) {
                Some(key) => overrides.push(((*key).clone(), raw, Origin::Env(name))),
                None => unknown_env.push(name),
            }
        }
        for flag in flags {
            overrides.push((
                flag.key.to_owned(),
                flag.value.clone(),
                Origin::Flag(flag.flag),
            ));
        }
        for (key, raw, origin) in overrides {
            let invalid = |why: String| ConfigError::Invalid(format!("{origin}: {why}"));
            let example = keys
                .get(&key)
                .ok_or_else(|| invalid(format!("{key} is not a configuration key")))?;
            let value = typed(&raw, example)
                .ok_or_else(|| invalid(format!("{raw:?} is not a valid value for {key}")))?;
            set(&mut table, &key, value);
            // Checked one at a time, so an error names the layer that caused it.
            Config::deserialize(table.clone()).map_err(|e| invalid(format!("{key}: {e}")))?;
            origins.insert(key, origin);
        }
        let config = Config::deserialize(table)
            .map_err(|e| ConfigError::Invalid(format!("configuration: {e}")))?;
        Ok(Layered {
            config,
            origins,
            unknown_env,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn each_layer_overrides_the_one_below_and_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("atcr.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:6000\"\ndata_dir = \"/srv/file\"\n[tls]\nenabled = true\n",
        )
        .unwrap();
        let env = vars(&[
            ("ATCR_DATA_DIR", "/srv/env"),
            ("ATCR_TLS_NAMES", "registry.lan, reg"),
            ("ATCR_TLS_IPS", "[\"10.0.0.5\"]"),
            ("ATCR_STORAGE_MIN_FREE_BYTES", "4096"),
            ("ATCR_PDS_PUBLIC_HOST", "registry.lan"),
            ("ATCR_LISTN", "typo"),
            ("ATCR_CONFIG", "/elsewhere"),
            ("HOME", "/root"),
        ]);
        let flags = [Flag {
            flag: "--data-dir",
            key: "data_dir",
            value: "/srv/flag".into(),
        }];
        let l = Config::load_layered(Some(&file), env, &flags).unwrap();
        let c = &l.config;
        assert_eq!(c.listen.port(), 6000);
        assert_eq!(c.data_dir, PathBuf::from("/srv/flag"));
        assert!(c.tls.enabled);
        assert_eq!(c.tls.names, ["registry.lan", "reg"]);
        assert_eq!(c.tls.ips, [std::net::IpAddr::from([10, 0, 0, 5])]);
        assert_eq!(c.storage.min_free_bytes, 4096);
        assert_eq!(c.pds.public_host.as_deref(), Some("registry.lan"));
        assert_eq!(l.origin("listen"), &Origin::File(file.clone()));
        assert_eq!(l.origin("data_dir"), &Origin::Flag("--data-dir"));
        assert_eq!(l.origin("tls.names"), &Origin::Env("ATCR_TLS_NAMES".into()));
        assert_eq!(l.origin("http"), &Origin::Default);
        assert_eq!(l.unknown_env, ["ATCR_LISTN"]);

        let shown = l.render();
        assert!(shown.contains("data_dir = \"/srv/flag\""), "{shown}");
        assert!(shown.contains("# flag --data-dir"), "{shown}");
        assert!(shown.contains("# environment ATCR_STORAGE_MIN_FREE_BYTES"));
        assert!(shown.contains(&format!("# file {}", file.display())));
        assert!(shown.contains("# cert (unset)"), "{shown}");
        // What is shown reads back as the same configuration.
        let back: Table = toml::from_str(&shown).unwrap();
        assert_eq!(Config::deserialize(back).unwrap(), l.config);
    }

    #[test]
    fn bad_values_name_their_layer() {
        let err = |env: &[(&str, &str)]| {
            Config::load_layered(Some(Path::new("/dev/null")), vars(env), &[])
                .unwrap_err()
                .to_string()
        };
        let e = err(&[("ATCR_LISTEN", "not an address")]);
        assert!(e.contains("ATCR_LISTEN") && e.contains("listen"), "{e}");
        let e = err(&[("ATCR_HTTP", "maybe")]);
        assert!(e.contains("ATCR_HTTP"), "{e}");
        let e = err(&[("ATCR_STORAGE_BACKEND", "tape")]);
        assert!(e.contains("ATCR_STORAGE_BACKEND"), "{e}");
        let e = err(&[("ATCR_UPLOADS_EXPIRE_AFTER_SECS", "-1")]);
        assert!(e.contains("ATCR_UPLOADS_EXPIRE_AFTER_SECS"), "{e}");
    }

    #[test]
    fn every_key_has_one_variable_and_is_documented_in_the_shipped_file() {
        let keys = every_key();
        let names: std::collections::BTreeSet<String> = keys.keys().map(|k| env_name(k)).collect();
        assert_eq!(names.len(), keys.len(), "two keys share a variable");

        // The shipped atcr.toml shows every key, set or commented out, and no other.
        let text = include_str!("../../atcr.toml");
        let mut documented = std::collections::BTreeSet::new();
        let mut section = String::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_owned();
            } else if let Some((key, _)) = line.trim_start_matches("# ").split_once(" = ")
                && !key.contains(' ')
            {
                documented.insert(if section.is_empty() {
                    key.to_owned()
                } else {
                    format!("{section}.{key}")
                });
            }
        }
        let known: std::collections::BTreeSet<String> = keys.into_keys().collect();
        assert_eq!(documented, known);
    }
}
