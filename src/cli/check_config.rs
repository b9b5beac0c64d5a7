//! `atcr check-config`: whether the configuration is valid, in one line.

use crate::config::Layered;

pub fn run(layered: &Layered) -> anyhow::Result<()> {
    let config = &layered.config;
    super::print(&format!(
        "configuration is valid: listen {} (http {}), tls {}, data_dir {}\n\
         `atcr config show` prints every value and where it came from",
        config.listen,
        if config.http { "on" } else { "off" },
        if config.tls.enabled {
            format!("on at {}", config.tls.listen)
        } else {
            "off".to_owned()
        },
        config.data_dir.display(),
    ))
}
