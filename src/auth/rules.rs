//! Who may do what, and why not: the rules the token service grants by, phrased so that a
//! refused client can say why (`alice may not push to bob/app: only the owner pushes into a
//! namespace`). The registry asks the same rules when a token falls short, so its answer names
//! the reason too.

use std::sync::PoisonError;

use sha2::Digest as _;

use super::scope::{Action, Resource};
use super::service::TokenService;
use crate::atproto::Did;
use crate::hold::Permission;
use crate::oci::OciError;
use crate::oci::name::RepoName;

/// Refused requests remembered, at most, and for how long.
const REFUSED_CACHE: usize = 1024;
const REFUSED_SECS: u64 = 60;

impl TokenService {
    /// Records that `request` (method, path and query) was refused for a scope `token` lacks,
    /// and says whether the same request with the same token was refused a moment ago: the
    /// client then resent it without acting on the challenge (the oras Python SDK does so once,
    /// and fetches a new token only after a 403).
    pub(super) fn refused_again(&self, token: &str, request: &str, now: u64) -> bool {
        let mut key = sha2::Sha256::new();
        key.update(token.as_bytes());
        key.update([0]);
        key.update(request.as_bytes());
        let key: [u8; 32] = key.finalize().into();
        let mut refused = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
        if refused.len() >= REFUSED_CACHE {
            refused.retain(|_, until| *until > now);
            if refused.len() >= REFUSED_CACHE / 2 {
                refused.clear();
            }
        }
        let before = refused.get(&key).is_some_and(|until| *until > now);
        refused.insert(key, now + REFUSED_SECS);
        before
    }

    /// Why the rules refuse `caller` (`None`: anonymous) `action` on `resource`; `None` when
    /// they allow it.
    pub fn refusal(
        &self,
        caller: Option<&Did>,
        resource: &Resource,
        action: Action,
    ) -> Result<Option<String>, OciError> {
        let hold = |p: Permission| {
            self.hold
                .allows(caller, p)
                .map_err(|e| OciError::internal(&e))
        };
        let who = caller.map(|d| self.appview.display_owner(d.as_str()));
        let name = match resource {
            Resource::Catalog => "the catalog",
            Resource::Repository(name) => name.as_str(),
        };
        if action == Action::Pull || *resource == Resource::Catalog {
            if hold(Permission::BlobRead)? {
                return Ok(None);
            }
            return Ok(Some(match who {
                None => format!("pulling from {name} needs a login: this node's hold is private"),
                Some(who) => format!(
                    "{who} may not pull from {name}: this node's hold is private and {who} is not its crew"
                ),
            }));
        }
        let (verb, doing, rule) = match action {
            Action::Delete => (
                "delete in",
                "deleting in",
                "only the owner deletes in a namespace",
            ),
            _ => (
                "push to",
                "pushing to",
                "only the owner pushes into a namespace",
            ),
        };
        let Some(who) = who else {
            return Ok(Some(format!("{doing} {name} needs a login")));
        };
        let owner = name
            .parse::<RepoName>()
            .ok()
            .and_then(|n| self.appview.locate(&n).ok())
            .map(|loc| loc.owner);
        Ok(if owner.is_none() {
            Some(format!(
                "{who} may not {verb} {name}: its namespace is no account of this node, nor a user of another PDS who logged in here"
            ))
        } else if owner.as_ref() != caller {
            Some(format!("{who} may not {verb} {name}: {rule}"))
        } else if !hold(Permission::BlobWrite)? {
            Some(format!(
                "{who} may not {verb} {name}: that needs blob:write on this node's hold (crew the captain adds)"
            ))
        } else {
            None
        })
    }
}
