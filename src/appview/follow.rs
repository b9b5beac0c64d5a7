//! Following remote users' repositories: one `com.atproto.sync.subscribeRepos` connection per
//! PDS host of the remote users this node knows, each `#commit` of one of them checked (signed
//! by the key their DID document names, sync 1.1 ops that undo to `prevData`, sent by the PDS
//! their document names) and its `io.atcr.manifest`/`io.atcr.tag` changes applied to the copy
//! in `pds.redb` and the index — so a record deleted on their PDS leaves the node within
//! seconds. A host seen for the first time, an `#info OutdatedCursor` or a `#sync` is caught
//! up from the users' verified repositories (`getRepo`); `#account` hides or shows a user's
//! repositories. The cursor per host is kept in `pds.redb`; a dropped connection is retried
//! with a doubling wait (1 s to 60 s).
//!
//! Only users with records here (they pushed or starred through this node) are followed, and
//! at most [`MAX_HOSTS`] hosts. Every frame is a stranger's: size-bounded (4 MiB, and
//! [`crate::atproto::data::UNTRUSTED_ITEMS`] decoded items), and frames about DIDs this node
//! does not follow, or about users whose PDS is another host, are skipped after reading their
//! repository; a commit or repository older than the last one taken in from that user (by
//! `rev`) is refused, so an old signed state cannot be replayed. What a host says unsigned
//! (`#account`, `#sync`) counts only when the user's DID document names that host now.
//! Catching up holds one repository (≤ 32 MiB) in memory, one user at a time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::records::STAR_COLLECTION;
use super::remote::MIRRORED;
use super::{AppView, AppViewError};
use crate::atproto::sync::{event_repo, verify_commit};
use crate::atproto::{Did, Value};
use crate::pds::events::parse_frame;
use crate::pds::store::MirrorWrite;

mod catch_up;

/// How often the set of hosts to follow is read again.
const HOSTS_EVERY: Duration = Duration::from_secs(5);
/// The longest wait before a dropped subscription is tried again.
const MAX_BACKOFF: Duration = Duration::from_mins(1);
/// A ping is sent this often; a host that sends nothing (no pong either) for three times as
/// long is dropped.
const PING_EVERY: Duration = Duration::from_secs(30);
/// How often the cursor is written while frames arrive.
const CURSOR_EVERY: Duration = Duration::from_secs(2);

/// Repositories of a renamed, hidden or shown-again user taken into search again, at most.
const SEARCH_AGAIN: usize = 10_000;
/// PDS hosts followed at once, at most.
const MAX_HOSTS: usize = 32;
/// How often one frame may fail (its user's key not found, storage) before it is skipped.
const FRAME_ATTEMPTS: u32 = 5;

/// Why following a host stopped: the frame it stopped at (to skip after [`FRAME_ATTEMPTS`]),
/// and why.
struct Stopped {
    seq: Option<u64>,
    why: String,
}

impl<E: std::fmt::Display> From<E> for Stopped {
    fn from(e: E) -> Self {
        Stopped {
            seq: None,
            why: e.to_string(),
        }
    }
}

fn stopped(why: impl Into<String>) -> Stopped {
    Stopped {
        seq: None,
        why: why.into(),
    }
}

impl AppView {
    /// Follows the PDS hosts of the remote users this node knows until `cancel`: the
    /// 32 that matter most (those hosting the most users with records here); a host that drops out of
    /// them is no longer followed.
    pub async fn run_remote_follower(self: Arc<Self>, cancel: CancellationToken) {
        let mut running: HashMap<String, (tokio::task::JoinHandle<()>, CancellationToken)> =
            HashMap::new();
        let mut left_out = 0;
        loop {
            match self.remote_hosts() {
                Ok(mut hosts) => {
                    if hosts.len() > MAX_HOSTS && hosts.len() != left_out {
                        tracing::warn!(
                            hosts = hosts.len(),
                            limit = MAX_HOSTS,
                            "too many remote PDS hosts to follow; those with the fewest users here are not followed"
                        );
                    }
                    left_out = hosts.len();
                    hosts.truncate(MAX_HOSTS);
                    running.retain(|host, (task, stop)| {
                        if !hosts.contains(host) {
                            stop.cancel();
                        }
                        !task.is_finished() && hosts.contains(host)
                    });
                    for host in hosts {
                        if running.contains_key(&host) {
                            continue;
                        }
                        let stop = cancel.child_token();
                        let task = self.clone().follow_host(host.clone(), stop.clone());
                        running.insert(host, (tokio::spawn(task), stop));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot list the remote users' hosts"),
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(HOSTS_EVERY) => {}
            }
        }
        for (_, (task, _)) in running {
            let _ = task.await;
        }
    }

    /// The PDS endpoints of the remote users this node follows — those with records here (a
    /// login alone, which anyone can make with a PDS of their own, does not open connections)
    /// — most important first: by how many users the operator vouches for (the hold's crew)
    /// each hosts, then by how many with manifests or tags, then by how many with other
    /// records only (stars, pages), so that strangers cannot crowd a team's PDS out of the
    /// [`MAX_HOSTS`] followed.
    fn remote_hosts(&self) -> Result<Vec<String>, AppViewError> {
        let mut users = Vec::new();
        self.each_remote_user(|did, pds| users.push((did.clone(), pds.to_owned())))?;
        let mut weights: HashMap<String, [usize; 3]> = HashMap::new();
        for (did, pds) in users {
            let images = self.mirrors_any(&did, &MIRRORED[..2])?;
            if !images && !self.mirrors_any(&did, &MIRRORED[2..])? {
                continue;
            }
            let tier = match (self.vouches_for(&did), images) {
                (true, _) => 0,
                (false, true) => 1,
                (false, false) => 2,
            };
            weights.entry(pds).or_default()[tier] += 1;
        }
        let mut hosts: Vec<(String, [usize; 3])> = weights.into_iter().collect();
        hosts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(hosts.into_iter().map(|(host, _)| host).collect())
    }

    fn has_mirrored_records(&self, did: &Did) -> Result<bool, AppViewError> {
        self.mirrors_any(did, &MIRRORED)
    }

    /// Whether the copy here holds records of `did` in any of `collections`.
    fn mirrors_any(&self, did: &Did, collections: &[&str]) -> Result<bool, AppViewError> {
        for collection in collections {
            if !self
                .pds
                .store()
                .remote_records(did, collection, None, 1)?
                .is_empty()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Calls `f` with the DID and PDS of every remote user this node knows.
    pub(super) fn each_remote_user(
        &self,
        mut f: impl FnMut(&Did, &str),
    ) -> Result<(), AppViewError> {
        let store = self.pds.store();
        let mut after: Option<String> = None;
        loop {
            let users = store.remote_users(after.as_deref(), 500)?;
            let Some((last, _)) = users.last() else {
                return Ok(());
            };
            after = Some(last.as_str().to_owned());
            for (did, user) in &users {
                f(did, &user.pds);
            }
        }
    }

    async fn follow_host(self: Arc<Self>, endpoint: String, cancel: CancellationToken) {
        let mut backoff = Duration::from_secs(1);
        let mut failing: (Option<u64>, u32) = (None, 0);
        loop {
            let started = Instant::now();
            let Err(e) = self.subscribe(&endpoint, &cancel).await else {
                return;
            };
            tracing::warn!(%endpoint, error = %e.why, "following a remote PDS failed; retrying");
            // A frame that keeps failing (its user's DID document gone, say) is skipped after
            // a few attempts, so that one user cannot stop the host's others being followed.
            if let Some(seq) = e.seq {
                failing = if failing.0 == Some(seq) {
                    (Some(seq), failing.1 + 1)
                } else {
                    (Some(seq), 1)
                };
                if failing.1 >= FRAME_ATTEMPTS {
                    tracing::error!(%endpoint, seq, "skipped a remote PDS's event that kept failing");
                    if let Err(e) = self
                        .pds
                        .store()
                        .set_remote_cursor(&endpoint, Some(seq))
                        .await
                    {
                        tracing::warn!(%endpoint, error = %e, "cannot move the remote cursor");
                    }
                }
            }
            if started.elapsed() > MAX_BACKOFF {
                backoff = Duration::from_secs(1);
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One subscription to `endpoint`, until it drops (an error) or `cancel` (`Ok`).
    async fn subscribe(&self, endpoint: &str, cancel: &CancellationToken) -> Result<(), Stopped> {
        let store = self.pds.store();
        let mut cursor = store.remote_cursor(endpoint)?;
        let mut ws = self
            .pds
            .subscribe_remote(endpoint, cursor)
            .await
            .map_err(stopped)?;
        // Connected first, then caught up: what is committed meanwhile waits in the socket.
        if cursor.is_none() {
            self.catch_up_host(endpoint).await?;
        }
        tracing::info!(%endpoint, ?cursor, "following a remote PDS");
        let mut saved = cursor;
        let mut saved_at = Instant::now();
        let mut heard = Instant::now();
        let mut ping = tokio::time::interval(PING_EVERY);
        let result = loop {
            let message = tokio::select! {
                () = cancel.cancelled() => break Ok(()),
                _ = ping.tick() => {
                    if heard.elapsed() > PING_EVERY * 3 {
                        break Err(stopped("the host went silent"));
                    }
                    if let Err(e) = ws.send(Message::Ping(Vec::new().into())).await {
                        break Err(e.into());
                    }
                    continue;
                }
                m = ws.next() => m,
            };
            heard = Instant::now();
            let data = match message {
                None => break Err(stopped("the host closed the connection")),
                Some(Err(e)) => break Err(e.into()),
                Some(Ok(Message::Binary(data))) => data,
                Some(Ok(Message::Close(_))) => {
                    break Err(stopped("the host closed the subscription"));
                }
                Some(Ok(_)) => continue,
            };
            match self.take_frame(endpoint, &data).await {
                Ok(Some(seq)) => cursor = Some(seq),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
            if cursor != saved && saved_at.elapsed() >= CURSOR_EVERY {
                store.set_remote_cursor(endpoint, cursor).await?;
                (saved, saved_at) = (cursor, Instant::now());
            }
        };
        if cursor != saved {
            store.set_remote_cursor(endpoint, cursor).await?;
        }
        result
    }

    /// Takes in one frame from `endpoint`; its sequence number, if it has one.
    async fn take_frame(&self, endpoint: &str, frame: &[u8]) -> Result<Option<u64>, Stopped> {
        let Some((header, body)) = parse_frame(frame) else {
            return Err(stopped("an unreadable frame"));
        };
        if header.get("op") == Some(&Value::Integer(-1)) {
            let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            // A stranger's text: quoted and cut, never a line of the log of its own.
            let cut = |t: String| t.chars().take(200).collect::<String>();
            return Err(stopped(format!(
                "error frame: {:?} {:?}",
                cut(text("error")),
                cut(text("message"))
            )));
        }
        let seq = match body.get("seq") {
            Some(Value::Integer(n)) => u64::try_from(*n).ok(),
            _ => None,
        };
        let kind = header.get("t").and_then(Value::as_str).unwrap_or("");
        if kind == "#info" {
            if body.get("name").and_then(Value::as_str) == Some("OutdatedCursor") {
                tracing::warn!(%endpoint, "our cursor is older than the host keeps; catching up from their repositories");
                self.catch_up_host(endpoint).await?;
            }
            return Ok(seq);
        }
        // Only users of this host whom this node knows: a host does not speak for DIDs whose
        // documents name another PDS.
        let Some(did) = event_repo(&body).or_else(|| {
            body.get("did")
                .and_then(Value::as_str)
                .and_then(|d| d.parse().ok())
        }) else {
            return Ok(seq);
        };
        let Some(user) = self.pds.store().remote_user(&did)? else {
            return Ok(seq);
        };
        if user.pds != endpoint || !self.has_mirrored_records(&did)? {
            return Ok(seq);
        }
        let at = |e: AppViewError| Stopped {
            seq,
            why: e.to_string(),
        };
        match kind {
            "#commit" => self.take_commit(&did, body).await.map_err(at)?,
            "#sync" => self.catch_up_user(&did, endpoint).await.map_err(at)?,
            "#identity" => self.identity_changed(&did).await,
            "#account" => self
                .account_changed(&did, endpoint, &body)
                .await
                .map_err(at)?,
            _ => {}
        }
        Ok(seq)
    }

    /// A followed user's account was taken down, deactivated or suspended on their PDS, or is
    /// active again (`#account`): their repositories are hidden meanwhile (see
    /// [`AppView::hidden`]), shown again after.
    async fn account_changed(
        &self,
        did: &Did,
        endpoint: &str,
        body: &Value,
    ) -> Result<(), AppViewError> {
        let Some(Value::Bool(active)) = body.get("active") else {
            return Ok(());
        };
        if !self.hosts_now(did, endpoint).await? {
            return Ok(());
        }
        let status = (!active).then(|| {
            let status = body
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("inactive");
            // A status is a short token; anything else is not taken as said.
            if status.len() <= 64
                && status
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                status.to_owned()
            } else {
                "inactive".to_owned()
            }
        });
        self.set_account_status(did, status).await
    }

    /// Records whether `did`'s account is active on their PDS (`None`) or not (its status),
    /// and when that changed, hides or shows their repositories (search taken in again).
    pub(super) async fn set_account_status(
        &self,
        did: &Did,
        status: Option<String>,
    ) -> Result<(), AppViewError> {
        if !self
            .pds
            .store()
            .set_remote_inactive(did, status.clone())
            .await?
        {
            return Ok(());
        }
        if let Some(status) = &status {
            tracing::warn!(%did, %status, "a remote user's account is not active; their repositories are hidden");
        } else {
            tracing::info!(%did, "a remote user's account is active again; their repositories are shown");
        }
        // Their stars count again, or no longer (see `AppView::index_mirrored`).
        self.index_mirrored(did, STAR_COLLECTION, None).await?;
        let (repos, _) = self.index.repos_of(did, SEARCH_AGAIN)?;
        self.mark_for_search(repos.iter().map(|r| r.as_str().to_owned()).collect());
        Ok(())
    }

    /// A followed user's handle or PDS changed (`#identity`): resolved again, so that their
    /// repositories go by the new handle (the old one no longer names them). A resolution that
    /// fails changes nothing (their next login resolves again).
    async fn identity_changed(&self, did: &Did) {
        self.pds.identities.forget(did.as_str());
        match self.pds.identities.resolve(&self.pds, did.as_str()).await {
            Ok(identity) => {
                let user = crate::pds::store::RemoteUser {
                    handle: identity.handle.map(|h| h.to_string()),
                    pds: identity.pds,
                };
                tracing::info!(%did, handle = ?user.handle, pds = %user.pds, "a remote user's identity changed");
                if let Err(e) = self.pds.store().remember_remote_user(did, user).await {
                    tracing::warn!(%did, error = %e, "could not remember a remote user's new identity");
                }
                // Search shows their repositories by name: taken in again under the new one.
                match self.index.repos_of(did, SEARCH_AGAIN) {
                    Ok((repos, _)) => {
                        self.mark_for_search(repos.iter().map(|r| r.as_str().to_owned()).collect());
                    }
                    Err(e) => {
                        tracing::warn!(%did, error = %e, "cannot list a renamed user's repositories");
                    }
                }
            }
            Err(e) => {
                tracing::info!(%did, error = %e, "a remote user's identity changed and does not resolve now");
            }
        }
    }

    /// Checks a `#commit` of a followed remote user and applies its ATCR records. A key that
    /// cannot be had (their DID document unreachable) is an error: the frame is tried again.
    async fn take_commit(&self, did: &Did, body: Value) -> Result<(), AppViewError> {
        let body = Arc::new(body);
        let mut verified = None;
        for refresh in [false, true] {
            let key = self
                .keys
                .signing_key(&self.pds, did, "atproto", refresh)
                .await
                .map_err(|e| AppViewError::Data(format!("no key to check {did}'s commit: {e}")))?;
            let frame = body.clone();
            let checked = tokio::task::spawn_blocking(move || verify_commit(&frame, &key))
                .await
                .map_err(|e| AppViewError::Data(e.to_string()))?;
            match checked {
                Ok(v) => {
                    verified = Some(v);
                    break;
                }
                // The key may have rotated: fetched again once.
                Err(e) if e.starts_with("signature") && !refresh => {}
                Err(e) => {
                    tracing::warn!(%did, error = %e, "refused a remote commit event; the index is unchanged");
                    return Ok(());
                }
            }
        }
        let Some(commit) = verified else {
            return Ok(());
        };
        let _serial = self.lock_owner(did).await;
        let store = self.pds.store();
        if store
            .remote_rev(did)?
            .is_some_and(|last| last.as_str() >= commit.rev.as_str())
        {
            tracing::warn!(%did, rev = %commit.rev, "refused a remote commit no newer than the last taken in");
            return Ok(());
        }
        let writes: Vec<MirrorWrite> = commit
            .ops
            .into_iter()
            .filter(|op| MIRRORED.contains(&op.collection.as_str()))
            .map(|op| (op.collection, op.rkey, op.record.map(|r| r.to_json())))
            .collect();
        if !writes.is_empty() {
            tracing::debug!(%did, rev = %commit.rev, ops = writes.len(), "remote commit taken in");
            self.take_in_remote(did, writes).await?;
        }
        store.set_remote_rev(did, &commit.rev).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
