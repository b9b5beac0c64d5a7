//! `[node]`: which roles this process runs.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a node serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything: the registry (OCI API, token service, web pages), the PDS and the hold.
    #[default]
    Full,
    /// The hold alone ("bring your own storage"): its PDS (the node's identity, the captain and
    /// crew records, `com.atproto.*`, the PLC directory, the firehose) and the hold's XRPC over
    /// the blob store. A registry elsewhere pushes and pulls through it; this node answers no
    /// OCI request and shows no web pages.
    Hold,
}

impl Role {
    /// The name as written in `atcr.toml`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Full => "full",
            Role::Hold => "hold",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// `full` (default): registry, PDS and hold. `hold`: the hold and its PDS only; the OCI
    /// API, `/auth/token` and the web pages answer 404, and the registry's background work
    /// (search index, retention rules) is not started.
    pub role: Role,
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{Config, ConfigError};
    use super::*;

    /// `ATCR_NODE_ROLE=role`, the environment of a load.
    fn role_env(role: &str) -> [(String, String); 1] {
        [("ATCR_NODE_ROLE".to_owned(), role.to_owned())]
    }

    #[test]
    fn the_role_comes_from_the_file_the_environment_or_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("atcr.toml");
        std::fs::write(&file, "[node]\nrole = \"hold\"\n").unwrap();
        let l = Config::load_layered(Some(&file), [], &[]).unwrap();
        assert_eq!(l.config.node.role, Role::Hold);
        assert!(l.render().contains("role = \"hold\""), "{}", l.render());

        let none = Path::new("/dev/null");
        assert_eq!(
            Config::load_layered(Some(none), [], &[])
                .unwrap()
                .config
                .node
                .role,
            Role::Full
        );
        let l = Config::load_layered(Some(none), role_env("hold"), &[]).unwrap();
        assert_eq!(l.config.node.role, Role::Hold);
        assert!(l.unknown_env.is_empty());
        let flag = super::super::Flag {
            flag: "--role",
            key: "node.role",
            value: "full".into(),
        };
        let l = Config::load_layered(Some(&file), role_env("hold"), &[flag]).unwrap();
        assert_eq!(l.config.node.role, Role::Full);
        assert!(l.render().contains("# flag --role"), "{}", l.render());
    }

    #[test]
    fn an_unknown_role_is_refused_by_name() {
        let e = Config::from_toml("[node]\nrole = \"registry\"", Path::new("t.toml")).unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }));
        let e = e.to_string();
        assert!(
            e.contains("registry") && e.contains("full") && e.contains("hold"),
            "{e}"
        );
        let e = Config::load_layered(Some(Path::new("/dev/null")), role_env("appview"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("ATCR_NODE_ROLE") && e.contains("appview"), "{e}");
    }
}
