//! `atcr hold show|set`: the captain record, the hold's owner and policy.

use std::sync::Arc;

use anyhow::Context;

use crate::config::Config;
use crate::hold::Hold;

/// Opens the PDS (see `user::open`) and the hold over it, writing the captain record on first
/// use.
pub(super) async fn open(config: &Config) -> anyhow::Result<Hold> {
    let hold = Hold::new(Arc::new(super::user::open(config).await?));
    hold.ensure_captain()
        .await
        .context("cannot read or write the hold's captain record")?;
    Ok(hold)
}

pub fn show(config: &Config) -> anyhow::Result<()> {
    super::user::runtime()?.block_on(async {
        let hold = open(config).await?;
        let captain = hold.captain()?;
        let crew = hold.crew()?;
        let owner = match hold.pds().handle_of(&captain.owner)? {
            Some(handle) => format!("{} ({handle})", captain.owner),
            None if captain.owner == hold.pds().node_did => {
                format!("{} (this node)", captain.owner)
            }
            None => captain.owner.to_string(),
        };
        super::print(&format!(
            "owner\t{owner}\npublic\t{}\nallowAllCrew\t{}\ndeployedAt\t{}\ncrew\t{}",
            captain.public,
            captain.allow_all_crew,
            captain.deployed_at,
            crew.len()
        ))
    })
}

pub fn set(
    config: &Config,
    owner: Option<&str>,
    public: Option<bool>,
    allow_all_crew: Option<bool>,
) -> anyhow::Result<()> {
    if owner.is_none() && public.is_none() && allow_all_crew.is_none() {
        anyhow::bail!("nothing to set: give --owner, --public or --allow-all-crew");
    }
    super::user::runtime()?.block_on(async {
        let hold = open(config).await?;
        let owner = owner
            .map(|who| super::crew::resolve(&hold, who))
            .transpose()?;
        let captain = hold.set_captain(owner, public, allow_all_crew).await?;
        super::print(&format!(
            "owner {}, public {}, allowAllCrew {}",
            captain.owner, captain.public, captain.allow_all_crew
        ))
    })
}
