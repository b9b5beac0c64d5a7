//! `atcr check-config`: the configuration as it will be used.

use crate::config::Config;

pub fn run(config: &Config) {
    println!("{config:#?}");
    println!("configuration is valid");
}
