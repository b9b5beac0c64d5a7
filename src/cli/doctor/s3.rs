//! `atcr doctor` on the `s3` backend: the bucket answers, takes and removes an object with
//! the configured credentials, and the server's clock agrees with this one.

use std::time::{Duration, SystemTime};

use crate::blobstore::BlobStore;
use crate::config::Config;
use crate::doctor::Finding;

/// `SigV4` refuses requests signed further off the server's clock than 15 minutes; warn well
/// before.
const MAX_SKEW: Duration = Duration::from_mins(5);
/// How long the probe may take, retries included.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn storage(config: &Config) -> Vec<Finding> {
    let settings = match config.storage.s3_settings() {
        Ok(Some(s)) => s,
        Ok(None) => return Vec::new(),
        Err(e) => {
            return vec![Finding::fail(
                "storage",
                e.to_string(),
                "fix [storage] (`atcr check-config`)",
            )];
        }
    };
    let place = settings.describe();
    let checked = super::super::admin::runtime().map(|rt| {
        rt.block_on(async {
            let probe = async {
                let store = BlobStore::s3(&settings)?;
                store.probe().await
            };
            let probe = tokio::time::timeout(PROBE_TIMEOUT, probe).await;
            (probe, settings.server_date().await)
        })
    });
    let (probe, date) = match checked {
        Ok(found) => found,
        Err(e) => return vec![Finding::fail("storage", format!("{e:#}"), "")],
    };
    let mut out = vec![match probe {
        Ok(Ok(())) => Finding::ok(
            "storage",
            format!("{place}: reachable, writable with these credentials"),
        ),
        Ok(Err(e)) => Finding::fail(
            "storage",
            format!("{place}: cannot write and remove an object: {e}"),
            "check storage.endpoint, that the bucket exists, and the credentials (storage.*_file or AWS_*)",
        ),
        Err(_) => Finding::fail(
            "storage",
            format!("{place}: no answer within {} s", PROBE_TIMEOUT.as_secs()),
            "check that the object store runs and storage.endpoint reaches it",
        ),
    }];
    out.push(match date {
        Ok(server) => skew_finding(SystemTime::now(), server),
        Err(e) => Finding::warn(
            "clock",
            format!("cannot read the object store's clock: {e}"),
            "",
        ),
    });
    out
}

fn skew_finding(local: SystemTime, server: SystemTime) -> Finding {
    let (skew, behind) = match local.duration_since(server) {
        Ok(ahead) => (ahead, false),
        Err(e) => (e.duration(), true),
    };
    let words = if behind { "behind" } else { "ahead of" };
    if skew > MAX_SKEW {
        Finding::fail(
            "clock",
            format!(
                "{} s {words} the object store's clock: signed requests and redirect URLs are refused past 15 minutes",
                skew.as_secs()
            ),
            "synchronise both clocks with the same time server (timedatectl set-ntp true)",
        )
    } else {
        Finding::ok(
            "clock",
            format!(
                "within {} s of the object store's clock",
                skew.as_secs().max(1)
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Level;

    #[test]
    fn skew_past_five_minutes_fails() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_hours(500_000);
        assert_eq!(skew_finding(t, t).level, Level::Ok);
        let off = Duration::from_mins(10);
        assert_eq!(skew_finding(t + off, t).level, Level::Fail);
        assert_eq!(skew_finding(t, t + off).level, Level::Fail);
        assert_eq!(skew_finding(t, t + Duration::from_mins(1)).level, Level::Ok);
    }
}
