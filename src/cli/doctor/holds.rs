//! `atcr doctor` on a registry that uses holds on other machines: `holds.default` names a
//! trusted hold, and every trusted hold answers as itself.

use crate::config::Config;
use crate::doctor::Finding;
use crate::hold::trusted::Trusted;

pub(super) fn holds(config: &Config) -> Vec<Finding> {
    let trusted = match Trusted::open(&config.data_dir) {
        Ok(t) => t,
        Err(e) => {
            return vec![Finding::fail(
                "holds",
                e.to_string(),
                "fix or remove the file (`atcr hold list`, `atcr hold add`)",
            )];
        }
    };
    let mut out = Vec::new();
    let listed = trusted.list();
    match config.holds.default_did() {
        Ok(Some(d)) if !listed.iter().any(|h| h.did == d) => out.push(Finding::fail(
            "holds",
            format!("holds.default is {d}, which this node does not trust: pushes fail"),
            format!("atcr hold add {d} [--endpoint URL], or unset holds.default"),
        )),
        Ok(_) => {}
        Err(e) => out.push(Finding::fail("holds", e.to_string(), "fix holds.default")),
    }
    let checked = super::super::admin::runtime().map(|rt| {
        rt.block_on(async {
            let mut results = Vec::new();
            for hold in &listed {
                results.push((hold, hold.check().await));
            }
            results
        })
    });
    match checked {
        Ok(results) => {
            for (hold, result) in results {
                out.push(match result {
                    Ok(()) => Finding::ok(
                        "holds",
                        format!("{} answers at {}", hold.did, hold.endpoint),
                    ),
                    Err(e) => Finding::warn(
                        "holds",
                        e.to_string(),
                        "start the hold, or `atcr hold add` it again with its current --endpoint",
                    ),
                });
            }
        }
        Err(e) => out.push(Finding::fail("holds", format!("{e:#}"), "")),
    }
    out
}
