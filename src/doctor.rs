//! `atcr doctor`'s findings, and the checks that need the open state: the registry index
//! against the PDS event log and blob storage, and the clock against the newest commit. The
//! daemon runs these through its admin socket; with the daemon stopped the command opens the
//! state and runs them itself. The checks of files, ports and certificates are in
//! `cli/doctor.rs`.
//!
//! Imports `appview`, `blobstore` and `pds`; never `server`.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::appview::index::Index;
use crate::blobstore::Digest;
use crate::pds::Pds;

/// How many examples a finding about many items names.
const EXAMPLES: usize = 5;
/// A commit revision this far past the clock means the clock went back.
const CLOCK_SLACK_SECS: i64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

/// One line of the report: what was checked, how it stands, what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub level: Level,
    pub area: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    #[must_use]
    pub fn ok(area: &str, message: impl Into<String>) -> Finding {
        Finding {
            level: Level::Ok,
            area: area.to_owned(),
            message: message.into(),
            fix: None,
        }
    }

    #[must_use]
    pub fn warn(area: &str, message: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            level: Level::Warn,
            fix: Some(fix.into()),
            ..Finding::ok(area, message)
        }
    }

    #[must_use]
    pub fn fail(area: &str, message: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            level: Level::Fail,
            fix: Some(fix.into()),
            ..Finding::ok(area, message)
        }
    }
}

/// `n` items, naming the first few.
pub(crate) fn examples(items: &[String]) -> String {
    let shown = items
        .iter()
        .take(EXAMPLES)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > EXAMPLES {
        format!("{shown}, … ({} in all)", items.len())
    } else {
        shown
    }
}

/// The state checks. `running`: the daemon is serving (its indexer may be a moment behind).
/// Whether scheduled garbage collection keeps up: a warning when the last run finished more than
/// twice `interval_secs` before `now`. None finished yet is no warning: the daemon runs one at
/// start, and may be in it. Only meaningful while the daemon runs.
#[must_use]
pub fn check_gc(last_run: Option<u64>, interval_secs: u64, now: u64) -> Finding {
    if interval_secs == 0 {
        return Finding::ok(
            "gc",
            "scheduled garbage collection is off (gc.interval_secs = 0); `atcr gc` runs it",
        );
    }
    match last_run {
        Some(t) if now.saturating_sub(t) <= 2 * interval_secs => Finding::ok(
            "gc",
            format!(
                "garbage collection last finished {} s ago (every {interval_secs} s)",
                now.saturating_sub(t)
            ),
        ),
        Some(t) => Finding::warn(
            "gc",
            format!(
                "garbage collection last finished {} s ago, more than twice gc.interval_secs ({interval_secs} s)",
                now.saturating_sub(t)
            ),
            "look for \"worker run failed\" with worker=gc in the log; `atcr gc` runs one now",
        ),
        None => Finding::ok(
            "gc",
            "no garbage collection has finished yet (the daemon runs one at start)",
        ),
    }
}

pub async fn check_state(pds: &Pds, index: &Index, running: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    match check_index(pds, index, running).await {
        Ok(found) => out.extend(found),
        Err(e) => out.push(Finding::fail(
            "index",
            format!("cannot read the index or the event log: {e:#}"),
            "stop the service and run `atcr index rebuild`",
        )),
    }
    out.push(match newest_revision(pds) {
        Ok(newest) => check_clock_against(newest, OffsetDateTime::now_utc()),
        Err(e) => Finding::warn(
            "clock",
            format!("cannot read the repositories' revisions: {e:#}"),
            "see the index and PDS findings",
        ),
    });
    out
}

async fn check_index(pds: &Pds, index: &Index, running: bool) -> anyhow::Result<Vec<Finding>> {
    let mut out = Vec::new();
    let cursor = index.cursor()?;
    let head = pds.store().last_seq()?;
    let rebuild = "stop the service and run `atcr index rebuild` (it re-derives the index from the repositories)";
    out.push(if cursor > head {
        Finding::fail(
            "index",
            format!("the index has applied event {cursor} but the PDS log ends at {head}: it was built from other state"),
            rebuild,
        )
    } else if cursor == head {
        Finding::ok("index", format!("up to date with the PDS event log (seq {head})"))
    } else if running {
        Finding::warn(
            "index",
            format!("{} events behind the PDS event log (seq {head})", head - cursor),
            "normally transient while pushes arrive; if it persists, see the daemon's log for indexer errors",
        )
    } else {
        Finding::ok(
            "index",
            format!("{} events behind the PDS event log; the daemon applies them at start", head - cursor),
        )
    });

    let audit = index.audit()?;
    if !audit.dangling_tags.is_empty() {
        out.push(Finding::fail(
            "index",
            format!(
                "tags name manifests the index lacks: {}",
                examples(&audit.dangling_tags)
            ),
            rebuild,
        ));
    }
    let (mut missing, mut wrong_size) = (Vec::new(), Vec::new());
    for (text, size) in &audit.stored {
        let Ok(digest) = text.parse::<Digest>() else {
            missing.push(format!("{text} (not a digest)"));
            continue;
        };
        match pds.blobs.stat(&digest).await? {
            None => missing.push(text.clone()),
            Some(actual) if actual != *size => {
                wrong_size.push(format!("{text} ({actual} bytes, index says {size})"));
            }
            Some(_) => {}
        }
    }
    let restore = "restore the blob storage from a backup; pulls of what it held fail until then";
    if !missing.is_empty() {
        out.push(Finding::fail(
            "storage",
            format!(
                "{} of {} blobs and manifests the index lists are missing from storage: {}",
                missing.len(),
                audit.stored.len(),
                examples(&missing)
            ),
            restore,
        ));
    }
    if !wrong_size.is_empty() {
        out.push(Finding::fail(
            "storage",
            format!(
                "stored blobs differ in size from the index: {}",
                examples(&wrong_size)
            ),
            restore,
        ));
    }
    if audit.stored.is_empty() {
        out.push(Finding::ok("storage", "no blobs or manifests pushed yet"));
    } else if missing.is_empty() && wrong_size.is_empty() {
        out.push(Finding::ok(
            "storage",
            format!(
                "all {} blobs and manifests the index lists are in storage with their sizes",
                audit.stored.len()
            ),
        ));
    }
    Ok(out)
}

/// The time of the newest commit revision of any repository on this node.
fn newest_revision(pds: &Pds) -> anyhow::Result<Option<OffsetDateTime>> {
    let store = pds.store();
    let mut newest = 0u64;
    let mut cursor: Option<String> = None;
    loop {
        let page = store.list_repos(cursor.as_deref(), 500)?;
        let Some((last, _)) = page.last() else { break };
        cursor = Some(last.to_string());
        for (_, head) in &page {
            newest = newest.max(head.rev.timestamp_micros());
        }
    }
    if newest == 0 {
        return Ok(None);
    }
    Ok(OffsetDateTime::from_unix_timestamp_nanos(i128::from(newest) * 1000).ok())
}

/// The clock must not be behind the newest commit: revisions are timestamps, and a clock that
/// went back makes the node's new revisions look older than what peers already have.
#[must_use]
pub fn check_clock_against(newest: Option<OffsetDateTime>, now: OffsetDateTime) -> Finding {
    match newest {
        Some(newest) if (newest - now).whole_seconds() > CLOCK_SLACK_SECS => Finding::fail(
            "clock",
            format!(
                "the clock ({}) is behind the newest commit ({})",
                seconds(now),
                seconds(newest)
            ),
            "set the clock right (e.g. `timedatectl set-ntp true`, or chrony against a LAN time server)",
        ),
        Some(newest) => Finding::ok(
            "clock",
            format!(
                "{}, after the newest commit ({})",
                seconds(now),
                seconds(newest)
            ),
        ),
        None => Finding::ok("clock", format!("{} (no commits yet)", seconds(now))),
    }
}

/// `2026-11-29T05:01:09Z`.
fn seconds(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_behind_the_newest_commit_fails() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let at = |s: i64| Some(now + time::Duration::seconds(s));
        assert_eq!(check_clock_against(None, now).level, Level::Ok);
        assert_eq!(check_clock_against(at(-3600), now).level, Level::Ok);
        assert_eq!(check_clock_against(at(30), now).level, Level::Ok);
        let behind = check_clock_against(at(3600), now);
        assert_eq!(behind.level, Level::Fail);
        assert!(behind.fix.unwrap().contains("timedatectl"));
    }

    #[test]
    fn examples_name_the_first_few() {
        let items: Vec<String> = (0..7).map(|i| i.to_string()).collect();
        assert_eq!(examples(&items[..2]), "0, 1");
        assert_eq!(examples(&items), "0, 1, 2, 3, 4, … (7 in all)");
    }
}
