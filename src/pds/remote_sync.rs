//! Reading other PDSes' repositories as a consumer: their firehose
//! (`com.atproto.sync.subscribeRepos`, a WebSocket) and their repository exports
//! (`com.atproto.sync.getRepo`). Both are strangers' servers: reached through
//! `identity.reachable`, frames and exports bounded in size, connecting and reading in time.
//! What the frames and records mean is the `AppView`'s (`appview/follow.rs`).

use std::time::Duration;

use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::Pds;
use crate::atproto::Did;
use crate::http_client::{Io, connect, get_bytes};

/// Largest firehose frame taken from a host.
pub const MAX_FRAME: usize = 4 << 20;
/// How long connecting (TCP, TLS, WebSocket handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest repository export (`getRepo`) read; a larger repository is not caught up with
/// (its commits are still followed).
pub const MAX_EXPORT: usize = 32 << 20;
/// How long a repository export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(30);

/// A firehose connection to another PDS.
pub type Firehose = WebSocketStream<Box<dyn Io>>;

impl Pds {
    /// Subscribes to the firehose of the PDS at `endpoint`, after event `cursor` if given.
    ///
    /// # Errors
    /// Why it could not be reached (for the log).
    pub async fn subscribe_remote(
        &self,
        endpoint: &str,
        cursor: Option<u64>,
    ) -> Result<Firehose, String> {
        let target = self.settings.identity.reachable(endpoint)?;
        let scheme = if target.https { "wss" } else { "ws" };
        let query = cursor.map(|c| format!("?cursor={c}")).unwrap_or_default();
        let url = format!(
            "{scheme}://{}/xrpc/com.atproto.sync.subscribeRepos{query}",
            target.authority()
        );
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_FRAME))
            .max_frame_size(Some(MAX_FRAME));
        let (ws, _) = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let stream = connect(&target, None).await.map_err(|e| format!("{e:#}"))?;
            tokio_tungstenite::client_async_with_config(url.as_str(), stream, Some(config))
                .await
                .map_err(|e| format!("WebSocket handshake: {e}"))
        })
        .await
        .map_err(|_| format!("connecting to {endpoint} took too long"))??;
        Ok(ws)
    }

    /// `did`'s whole repository from the PDS at `endpoint` (`com.atproto.sync.getRepo`, a
    /// CAR of at most [`MAX_EXPORT`] bytes), to be verified by the caller.
    ///
    /// # Errors
    /// Why there is none: for the log, and whether the host said the account is not active.
    pub async fn export_remote_repo(
        &self,
        endpoint: &str,
        did: &Did,
    ) -> Result<bytes::Bytes, ExportError> {
        let failed = |why: String| ExportError { why, status: None };
        let target = self.settings.identity.reachable(endpoint).map_err(failed)?;
        let path = {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query.append_pair("did", did.as_str());
            format!("/xrpc/com.atproto.sync.getRepo?{}", query.finish())
        };
        let (status, car) = get_bytes(&target, &path, MAX_EXPORT, EXPORT_TIMEOUT)
            .await
            .map_err(|e| failed(format!("{endpoint}: {e:#}")))?;
        if status != 200 {
            let error = serde_json::from_slice::<serde_json::Value>(&car)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_default();
            let inactive = [
                ("RepoTakendown", "takendown"),
                ("RepoDeactivated", "deactivated"),
                ("RepoSuspended", "suspended"),
            ];
            return Err(ExportError {
                why: format!("{endpoint} answered {status} to getRepo"),
                status: inactive
                    .into_iter()
                    .find_map(|(name, status)| (error == name).then_some(status)),
            });
        }
        Ok(car)
    }
}

/// Why a repository export could not be had.
#[derive(Debug)]
pub struct ExportError {
    /// For the log.
    pub why: String,
    /// The account's status when the host refused because it is not active (`takendown`,
    /// `deactivated`, `suspended`).
    pub status: Option<&'static str>,
}

impl std::fmt::Display for ExportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) => write!(f, "{} (the account is {status})", self.why),
            None => f.write_str(&self.why),
        }
    }
}
