//! A hold on another machine, seen from the registry that uses it: its upload methods and
//! `com.atproto.sync.getBlob`, called with service tokens the caller mints for the user it
//! acts for (see `docs/hold.md`, "A hold on another machine").
//!
//! A blob goes to the hold in parts of [`PART_BYTES`], each sent whole from memory (so a part
//! can be sent again), at most [`TRANSFERS`] blobs at once: memory stays bounded by their
//! product whatever the blob sizes. Every exchange is bounded in time; a hold that does not
//! answer is [`RemoteError::Unreachable`], never a hang.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};

use crate::atproto::Did;
use crate::blobstore::Digest;

/// Bytes per part sent to the hold (above S3's 5 MiB minimum; 10,000 of them make 80 GiB).
pub const PART_BYTES: usize = 8 << 20;
/// Blobs sent to holds at once; more wait.
pub const TRANSFERS: usize = 4;
/// How long one JSON exchange may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a `notifyManifest` may take: the client's manifest `PUT` waits for it.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one part may take to send (8 MiB at 100 KiB/s).
const PART_TIMEOUT: Duration = Duration::from_secs(90);
/// How often a failed part is sent again.
const PART_ATTEMPTS: usize = 3;
/// Largest JSON answer read from a hold.
const MAX_ANSWER: usize = 64 << 10;

/// The upload methods, as the service tokens name them.
pub const INITIATE_UPLOAD: &str = "io.atcr.hold.initiateUpload";
pub const GET_PART_UPLOAD_URL: &str = "io.atcr.hold.getPartUploadUrl";
pub const UPLOAD_PART: &str = "io.atcr.hold.uploadPart";
pub const COMPLETE_UPLOAD: &str = "io.atcr.hold.completeUpload";
pub const ABORT_UPLOAD: &str = "io.atcr.hold.abortUpload";
pub const GET_BLOB: &str = "com.atproto.sync.getBlob";
/// How long after a hold's answer to `notifyManifest` the registry may still commit the
/// manifest record; later, the push fails (the hold judges layer records only once they are
/// older than the hold collection's `NOTICE_FLOOR_SECS`, twice this).
pub const PUBLISH_WITHIN: Duration = Duration::from_secs(30);
pub const NOTIFY_MANIFEST: &str = "io.atcr.hold.notifyManifest";

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The hold did not answer (down, unreachable, too slow).
    #[error("hold {hold} is unreachable: {cause}")]
    Unreachable { hold: Did, cause: String },
    /// The hold answered with an XRPC error.
    #[error("hold {hold} refused: {error}: {message}")]
    Refused {
        hold: Did,
        status: u16,
        error: String,
        message: String,
    },
    /// The hold answered something that is no answer of the method.
    #[error("hold {hold} answered badly: {cause}")]
    Protocol { hold: Did, cause: String },
    /// The blob to send could not be read here.
    #[error("cannot read the blob to send: {0}")]
    Source(String),
}

/// Mints a service token for the user a call acts for: `(audience, method) → token`.
pub type Minter<'a> = &'a (dyn Fn(&Did, &str) -> Option<String> + Send + Sync);

/// What the hold answered to a blob read.
pub enum BlobAnswer {
    /// Fetch it there (a presigned URL of the hold's object store).
    Redirect(String),
    /// The bytes: status (200 or 206), headers worth passing on, and the body.
    Bytes {
        status: u16,
        headers: Vec<(http::HeaderName, http::HeaderValue)>,
        body: reqwest::Response,
    },
}

/// One blob of a manifest, as `notifyManifest` names it.
pub struct BlobInfo<'a> {
    pub digest: &'a Digest,
    pub size: u64,
    pub media_type: &'a str,
}

/// A manifest pushed to a user's repository whose blobs a hold keeps.
pub struct PushedManifest<'a> {
    /// The repository below the owner (`app`): with the digest, it names the manifest record.
    pub repository: &'a str,
    pub owner: &'a Did,
    pub digest: &'a Digest,
    pub media_type: &'a str,
    pub tag: Option<&'a str>,
    pub config: Option<BlobInfo<'a>>,
    pub layers: Vec<BlobInfo<'a>>,
}

fn blob_json(b: &BlobInfo<'_>) -> Value {
    json!({ "digest": b.digest.as_str(), "size": b.size, "mediaType": b.media_type })
}

/// One hold on another machine.
#[derive(Clone)]
pub struct RemoteHold {
    pub did: Did,
    /// `https://host[:port]` (no path), where its XRPC answers.
    pub endpoint: String,
    client: reqwest::Client,
}

impl RemoteHold {
    /// A hold at `endpoint`, spoken to through `client` (which must not follow redirects).
    #[must_use]
    pub fn new(did: Did, endpoint: &str, client: reqwest::Client) -> RemoteHold {
        RemoteHold {
            did,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            client,
        }
    }

    fn url(&self, nsid: &str) -> String {
        format!("{}/xrpc/{nsid}", self.endpoint)
    }

    fn unreachable(&self, e: &reqwest::Error) -> RemoteError {
        RemoteError::Unreachable {
            hold: self.did.clone(),
            cause: describe(e),
        }
    }

    fn protocol(&self, cause: impl Into<String>) -> RemoteError {
        RemoteError::Protocol {
            hold: self.did.clone(),
            cause: cause.into(),
        }
    }

    fn token(&self, mint: Minter<'_>, lxm: &str) -> Result<String, RemoteError> {
        mint(&self.did, lxm).ok_or_else(|| RemoteError::Refused {
            hold: self.did.clone(),
            status: 401,
            error: "AuthRequired".to_owned(),
            message: "no service token can be made for this user here".to_owned(),
        })
    }

    /// Calls a procedure with a JSON input; returns its JSON output.
    async fn procedure(
        &self,
        mint: Minter<'_>,
        nsid: &str,
        input: &Value,
    ) -> Result<Value, RemoteError> {
        self.procedure_within(mint, nsid, input, CALL_TIMEOUT).await
    }

    async fn procedure_within(
        &self,
        mint: Minter<'_>,
        nsid: &str,
        input: &Value,
        timeout: Duration,
    ) -> Result<Value, RemoteError> {
        let token = self.token(mint, nsid)?;
        let sent = self
            .client
            .post(self.url(nsid))
            .bearer_auth(token)
            .json(input)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        self.answer(sent).await
    }

    /// The JSON of a success, or the XRPC error of a failure.
    async fn answer(&self, response: reqwest::Response) -> Result<Value, RemoteError> {
        let status = response.status();
        let body = read_capped(response, MAX_ANSWER)
            .await
            .map_err(|e| self.unreachable(&e))?;
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let text = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_owned);
        Err(RemoteError::Refused {
            hold: self.did.clone(),
            status: status.as_u16(),
            error: text("error").unwrap_or_else(|| status.to_string()),
            message: text("message").unwrap_or_default(),
        })
    }

    /// Sends a blob of `size` bytes whose digest the caller has checked, as `parts` (read in
    /// order), acting for the user `mint` makes tokens for. On any failure the hold's session
    /// is aborted (best effort): the hold keeps no partial object under the digest either way.
    pub async fn upload<S>(
        &self,
        mint: Minter<'_>,
        digest: &Digest,
        bytes: S,
    ) -> Result<(), RemoteError>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    {
        let started = self
            .procedure(mint, INITIATE_UPLOAD, &json!({ "digest": digest.as_str() }))
            .await?;
        let id = started
            .get("uploadId")
            .and_then(Value::as_str)
            .ok_or_else(|| self.protocol("initiateUpload gave no uploadId"))?
            .to_owned();
        let result = self.send_parts(mint, &id, digest, bytes).await;
        if result.is_err() {
            let _ = self
                .procedure(mint, ABORT_UPLOAD, &json!({ "uploadId": id }))
                .await;
        }
        result
    }

    async fn send_parts<S>(
        &self,
        mint: Minter<'_>,
        id: &str,
        digest: &Digest,
        mut bytes: S,
    ) -> Result<(), RemoteError>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    {
        let mut parts = Vec::new();
        let mut buffer = BytesMut::new();
        let mut ended = false;
        loop {
            // Fill one part; the stream's chunks are small (the store reads in pieces).
            while !ended && buffer.len() < PART_BYTES {
                match bytes.next().await {
                    Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                    Some(Err(e)) => return Err(RemoteError::Source(e.to_string())),
                    None => ended = true,
                }
            }
            let part = buffer.split_to(buffer.len().min(PART_BYTES)).freeze();
            // An empty blob is one empty part; otherwise there is no empty trailing part.
            if part.is_empty() && !parts.is_empty() {
                break;
            }
            let number = parts.len() + 1;
            let etag = self.send_part(mint, id, number, part).await?;
            parts.push(json!({ "partNumber": number, "etag": etag }));
            if ended && buffer.is_empty() {
                break;
            }
        }
        let completed = self
            .procedure(
                mint,
                COMPLETE_UPLOAD,
                &json!({ "uploadId": id, "digest": digest.as_str(), "parts": parts }),
            )
            .await?;
        match completed.get("digest").and_then(Value::as_str) {
            Some(d) if d == digest.as_str() => Ok(()),
            other => Err(self.protocol(format!(
                "completeUpload answered digest {other:?} for {digest}"
            ))),
        }
    }

    /// Sends one part where `getPartUploadUrl` says, again after a failure; returns its `ETag`.
    async fn send_part(
        &self,
        mint: Minter<'_>,
        id: &str,
        number: usize,
        part: Bytes,
    ) -> Result<String, RemoteError> {
        let mut last = None;
        for _ in 0..PART_ATTEMPTS {
            match self.try_part(mint, id, number, part.clone()).await {
                Ok(etag) => return Ok(etag),
                // The hold said no: sending again would not change its mind.
                Err(e @ RemoteError::Refused { .. }) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| self.protocol("no attempt made")))
    }

    async fn try_part(
        &self,
        mint: Minter<'_>,
        id: &str,
        number: usize,
        part: Bytes,
    ) -> Result<String, RemoteError> {
        let target = self
            .procedure(
                mint,
                GET_PART_UPLOAD_URL,
                &json!({ "uploadId": id, "partNumber": number }),
            )
            .await?;
        let url = target
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| self.protocol("getPartUploadUrl gave no url"))?;
        let method = match target.get("method").and_then(Value::as_str) {
            None | Some("PUT") => reqwest::Method::PUT,
            Some("POST") => reqwest::Method::POST,
            Some(other) => return Err(self.protocol(format!("part method {other:?}"))),
        };
        let mut request = self
            .client
            .request(method, url)
            .body(part)
            .timeout(PART_TIMEOUT);
        if let Some(headers) = target.get("headers").and_then(Value::as_object) {
            for (name, value) in headers {
                if let Some(v) = value.as_str() {
                    request = request.header(name.as_str(), v);
                }
            }
        }
        // The token goes only to the hold itself, never to an object store's presigned URL.
        if self.is_hold(url) {
            request = request.bearer_auth(self.token(mint, UPLOAD_PART)?);
        }
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        let header_etag = response
            .headers()
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_matches('"').to_owned());
        let value = self.answer(response).await?;
        value
            .get("etag")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or(header_etag)
            .ok_or_else(|| self.protocol("the part's answer named no ETag"))
    }

    /// Tells the hold that `pushed` was published (`notifyManifest`, operation `push`), acting
    /// for its owner, so the hold writes its layer records; returns the blobs the hold says it
    /// does not store (atcr holds name them; other holds say nothing, read as none). Bounded by
    /// 10 s (`NOTIFY_TIMEOUT`).
    pub async fn notify_push(
        &self,
        mint: Minter<'_>,
        pushed: &PushedManifest<'_>,
    ) -> Result<Vec<Digest>, RemoteError> {
        let mut manifest = json!({
            "mediaType": pushed.media_type,
            "layers": pushed.layers.iter().map(blob_json).collect::<Vec<_>>(),
        });
        if let Some(config) = &pushed.config {
            manifest["config"] = blob_json(config);
        }
        let mut input = json!({
            "repository": pushed.repository,
            "userDid": pushed.owner.as_str(),
            "manifestDigest": pushed.digest.as_str(),
            "operation": "push",
            "manifest": manifest,
        });
        if let Some(tag) = pushed.tag {
            input["tag"] = json!(tag);
        }
        let answer = self
            .procedure_within(mint, NOTIFY_MANIFEST, &input, NOTIFY_TIMEOUT)
            .await?;
        let named = |d: &Digest| {
            pushed
                .config
                .iter()
                .chain(&pushed.layers)
                .any(|b| b.digest == d)
        };
        let mut not_held = Vec::new();
        for v in answer["blobsNotHeld"].as_array().into_iter().flatten() {
            match v.as_str().map(str::parse::<Digest>) {
                Some(Ok(d)) if named(&d) => not_held.push(d),
                _ => return Err(self.protocol("blobsNotHeld names a blob the manifest does not")),
            }
        }
        Ok(not_held)
    }

    /// Asks the hold for a blob, acting for `reader` when there is one (`None`: anonymous, for
    /// public holds). `range` is passed on as the client sent it.
    pub async fn get_blob(
        &self,
        mint: Option<Minter<'_>>,
        digest: &Digest,
        range: Option<&http::HeaderValue>,
    ) -> Result<BlobAnswer, RemoteError> {
        let mut request = self
            .client
            .get(self.url(GET_BLOB))
            .query(&[("did", self.did.as_str()), ("cid", digest.as_str())]);
        if let Some(mint) = mint {
            request = request.bearer_auth(self.token(mint, GET_BLOB)?);
        }
        if let Some(r) = range {
            request = request.header(http::header::RANGE, r.clone());
        }
        // Only the time to the answer's head: the body streams as the client reads it.
        let response = tokio::time::timeout(CALL_TIMEOUT, request.send())
            .await
            .map_err(|_| RemoteError::Unreachable {
                hold: self.did.clone(),
                cause: "no answer in time".to_owned(),
            })?
            .map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| self.protocol("a redirect without Location"))?;
            return Ok(BlobAnswer::Redirect(location.to_owned()));
        }
        if !status.is_success() {
            return Err(self
                .answer(response)
                .await
                .err()
                .unwrap_or_else(|| self.protocol(format!("getBlob answered {status}"))));
        }
        let headers = [
            http::header::CONTENT_LENGTH,
            http::header::CONTENT_RANGE,
            http::header::ACCEPT_RANGES,
        ]
        .into_iter()
        .filter_map(|name| {
            let value = response.headers().get(&name)?.clone();
            Some((name, value))
        })
        .collect();
        Ok(BlobAnswer::Bytes {
            status: status.as_u16(),
            headers,
            body: response,
        })
    }
}

impl RemoteHold {
    /// Whether `url` is the hold's own: on its endpoint, or on the host its `did:web` names
    /// (where a hold behind another address says its methods are).
    fn is_hold(&self, url: &str) -> bool {
        let Some(host) = authority(url) else {
            return false;
        };
        let web = self
            .did
            .as_str()
            .strip_prefix("did:web:")
            .map(|h| h.replace("%3A", ":"));
        authority(&self.endpoint) == Some(host) || web.as_deref() == Some(host)
    }
}

/// The `host[:port]` of an `http(s)://` URL.
fn authority(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = &rest[..end];
    (!host.is_empty() && !host.contains('@')).then_some(host)
}

/// Reads at most `cap` bytes of an answer (the rest is dropped).
async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = cap.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= cap {
            break;
        }
    }
    Ok(out)
}

/// A reqwest error with its causes, for people.
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_go_only_to_the_hold_itself() {
        let hold = RemoteHold::new(
            "did:web:nas.lan%3A8443".parse().unwrap(),
            "http://127.0.0.1:4000/",
            crate::http_client::reqwest_client(None, false).unwrap(),
        );
        assert!(hold.is_hold("http://127.0.0.1:4000/xrpc/x"));
        assert!(hold.is_hold("https://nas.lan:8443/xrpc/io.atcr.hold.uploadPart"));
        assert!(!hold.is_hold("http://127.0.0.1:40001/xrpc/x"));
        assert!(!hold.is_hold("http://127.0.0.1:4000.evil/x"));
        assert!(!hold.is_hold("http://127.0.0.1:4000@evil/x"));
        assert!(!hold.is_hold("https://nas.lan/xrpc/x"));
        assert!(!hold.is_hold("https://s3.lan/bucket?sig"));
        assert!(!hold.is_hold("ftp://127.0.0.1:4000/"));
    }
}
