//! `atcr check-config`: the configuration as it will be used.

use crate::config::Config;

pub fn run(config: &Config) -> anyhow::Result<()> {
    super::print(&format!("{config:#?}\nconfiguration is valid"))
}
