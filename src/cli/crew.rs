//! `atcr crew add|remove|list`: the hold's crew, who may pull from and push to this node.

use anyhow::{Context, bail};

use crate::atproto::Did;
use crate::config::Config;
use crate::hold::{Hold, Permission, role_permissions};

/// A local user by name, handle or DID, or any DID (users of other PDSes may be crew too).
pub(super) fn resolve(hold: &Hold, who: &str) -> anyhow::Result<Did> {
    if let Some(account) = hold.pds().accounts.find(who)? {
        return Ok(account.did);
    }
    if who.starts_with("did:") {
        return who.parse().with_context(|| format!("invalid DID {who:?}"));
    }
    bail!("no local user {who:?} (name, handle or DID; users of other PDSes by DID)")
}

pub fn add(
    config: &Config,
    who: &str,
    role: &str,
    permissions: &[Permission],
) -> anyhow::Result<()> {
    let defaults = role_permissions(role)
        .with_context(|| format!("unknown role {role:?}: read, write or admin"))?;
    let permissions = if permissions.is_empty() {
        defaults
    } else {
        permissions
    };
    super::user::runtime()?.block_on(async {
        let hold = super::hold::open(config).await?;
        let did = resolve(&hold, who)?;
        let m = hold.add_crew(&did, role, permissions).await?;
        super::print(&format!(
            "{}\t{}\t{}",
            m.member,
            m.role,
            m.permissions.join(",")
        ))
    })
}

pub fn remove(config: &Config, who: &str) -> anyhow::Result<()> {
    super::user::runtime()?.block_on(async {
        let hold = super::hold::open(config).await?;
        let did = resolve(&hold, who)?;
        if !hold.remove_crew(&did).await? {
            bail!("{did} is not in the crew");
        }
        super::print(&format!("removed {did} from the crew"))
    })
}

pub fn list(config: &Config) -> anyhow::Result<()> {
    super::user::runtime()?.block_on(async {
        let hold = super::hold::open(config).await?;
        let mut lines = Vec::new();
        for m in hold.crew()? {
            let handle = hold.pds().handle_of(&m.member)?;
            lines.push(format!(
                "{}\t{}\t{}\t{}",
                m.member,
                handle.as_deref().unwrap_or("-"),
                m.role,
                m.permissions.join(",")
            ));
        }
        super::print(&lines.join("\n"))
    })
}
