//! Docker token scopes (`repository:<name>:pull,push`, `registry:catalog:*`) and the `access`
//! claim they become.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// What a token may do to a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    /// One action, or every action for `*`; unknown words name nothing.
    fn parse_list(s: &str) -> BTreeSet<Action> {
        let mut out = BTreeSet::new();
        for word in s.split(',').map(str::trim) {
            match word {
                "pull" => {
                    out.insert(Action::Pull);
                }
                "push" => {
                    out.insert(Action::Push);
                }
                "delete" => {
                    out.insert(Action::Delete);
                }
                "*" => out.extend(Action::ALL),
                _ => {}
            }
        }
        out
    }
}

/// What a scope is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// A repository, named as the client names it (`alice/app`).
    Repository(String),
    /// `registry:catalog:*`: the repository list.
    Catalog,
}

/// One requested or granted scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub resource: Resource,
    pub actions: BTreeSet<Action>,
}

impl Scope {
    /// Parses `type:name:actions`. The name may itself hold `:` (a DID owner), so the type
    /// ends at the first `:` and the actions start after the last.
    #[must_use]
    pub fn parse(s: &str) -> Option<Scope> {
        let (kind, rest) = s.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        let resource = match (kind, name) {
            ("repository", name) if !name.is_empty() => Resource::Repository(name.to_owned()),
            ("registry", "catalog") => Resource::Catalog,
            _ => return None,
        };
        let actions = match resource {
            // Catalog scopes say `*`; reading the list is all there is to do with it.
            Resource::Catalog => BTreeSet::from([Action::Pull]),
            Resource::Repository(_) => Action::parse_list(actions),
        };
        Some(Scope { resource, actions })
    }

    /// Every scope in `scope` parameters: repeated, and each space-separated.
    pub fn parse_all<'a>(params: impl IntoIterator<Item = &'a str>) -> Vec<Scope> {
        params
            .into_iter()
            .flat_map(str::split_whitespace)
            .filter_map(Scope::parse)
            .collect()
    }

    /// The scope as a `WWW-Authenticate` challenge names it.
    #[must_use]
    pub fn to_challenge(&self) -> String {
        match &self.resource {
            Resource::Catalog => "registry:catalog:*".to_owned(),
            Resource::Repository(name) => {
                let actions: Vec<&str> = self.actions.iter().map(|a| a.as_str()).collect();
                format!("repository:{name}:{}", actions.join(","))
            }
        }
    }
}

/// One entry of a registry token's `access` claim, as the Docker token spec shapes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl Access {
    #[must_use]
    pub fn from_scope(scope: &Scope) -> Access {
        match &scope.resource {
            Resource::Catalog => Access {
                kind: "registry".into(),
                name: "catalog".into(),
                actions: vec!["*".into()],
            },
            Resource::Repository(name) => Access {
                kind: "repository".into(),
                name: name.clone(),
                actions: scope
                    .actions
                    .iter()
                    .map(|a| a.as_str().to_owned())
                    .collect(),
            },
        }
    }

    /// Whether this entry grants `action` on `resource`.
    #[must_use]
    pub fn grants(&self, resource: &Resource, action: Action) -> bool {
        match resource {
            Resource::Catalog => {
                self.kind == "registry"
                    && self.name == "catalog"
                    && self.actions.iter().any(|a| a == "*")
            }
            Resource::Repository(name) => {
                self.kind == "repository"
                    && &self.name == name
                    && self
                        .actions
                        .iter()
                        .any(|a| a == action.as_str() || a == "*")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_with_colons_in_names() {
        let s = Scope::parse("repository:alice/app:pull,push").unwrap();
        assert_eq!(s.resource, Resource::Repository("alice/app".into()));
        assert_eq!(s.actions, BTreeSet::from([Action::Pull, Action::Push]));
        let s = Scope::parse("repository:did:plc:abc/app:pull").unwrap();
        assert_eq!(s.resource, Resource::Repository("did:plc:abc/app".into()));
        let s = Scope::parse("repository:a/b:*").unwrap();
        assert_eq!(s.actions.len(), 3);
        assert_eq!(
            Scope::parse("registry:catalog:*").unwrap().resource,
            Resource::Catalog
        );
        for bad in [
            "",
            "repository",
            "repository:a",
            "registry:other:*",
            "x:a:pull",
        ] {
            assert!(Scope::parse(bad).is_none(), "{bad}");
        }
        let all = Scope::parse_all(["repository:a/b:pull repository:c/d:push", "bogus"]);
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn access_grants_only_what_it_names() {
        let scope = Scope::parse("repository:alice/app:pull").unwrap();
        let access = Access::from_scope(&scope);
        let app = Resource::Repository("alice/app".into());
        assert!(access.grants(&app, Action::Pull));
        assert!(!access.grants(&app, Action::Push));
        assert!(!access.grants(&Resource::Repository("alice/other".into()), Action::Pull));
        assert!(!access.grants(&Resource::Catalog, Action::Pull));
        assert_eq!(scope.to_challenge(), "repository:alice/app:pull");
    }
}
