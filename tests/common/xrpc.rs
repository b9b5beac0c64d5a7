//! XRPC over HTTP for tests, whether the node runs in-process (`pds_node`, which includes this
//! file too) or as the built binary (`common::Server`): plain calls, sessions, service tokens,
//! and the hold's upload in parts and blob reads.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub const INITIATE: &str = "io.atcr.hold.initiateUpload";
pub const PART_URL: &str = "io.atcr.hold.getPartUploadUrl";
pub const UPLOAD_PART: &str = "io.atcr.hold.uploadPart";
pub const COMPLETE: &str = "io.atcr.hold.completeUpload";
pub const ABORT: &str = "io.atcr.hold.abortUpload";
pub const GET_BLOB: &str = "com.atproto.sync.getBlob";

/// A node's XRPC at `base` (`http://127.0.0.1:PORT`).
#[derive(Clone, Copy)]
pub struct Xrpc<'a> {
    pub client: &'a reqwest::Client,
    pub base: &'a str,
}

impl Xrpc<'_> {
    /// `method /xrpc/<nsid>` (which may carry a query) with an optional bearer token and JSON
    /// body; the status and the JSON answer (`Null` when it is none).
    pub async fn call(
        &self,
        method: Method,
        nsid: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.try_call(method, nsid, token, body).await.unwrap()
    }

    /// [`Xrpc::call`], for a node that may be gone (killed by the test): the failure to reach
    /// it is the caller's to judge.
    pub async fn try_call(
        &self,
        method: Method,
        nsid: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> reqwest::Result<(StatusCode, Value)> {
        let mut req = self
            .client
            .request(method, format!("{}/xrpc/{nsid}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let r = req.send().await?;
        let status = r.status();
        let bytes = r.bytes().await?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    pub async fn get(&self, path_and_query: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::GET, path_and_query, token, None).await
    }

    pub async fn post(&self, nsid: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, nsid, token, Some(body)).await
    }

    /// `createSession` for `who`, which must succeed.
    pub async fn login(&self, who: &str, pw: &str) -> Value {
        let (s, v) = self
            .post(
                "com.atproto.server.createSession",
                None,
                json!({"identifier": who, "password": pw}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    /// A service token from this node's PDS for the session `access`, for `aud` and `lxm`.
    pub async fn service_auth(&self, access: &str, aud: &str, lxm: Option<&str>) -> String {
        // `did:web:localhost%3A<port>`: the `%` itself is encoded.
        let mut q = format!(
            "com.atproto.server.getServiceAuth?aud={}",
            aud.replace('%', "%25")
        );
        if let Some(l) = lxm {
            q = format!("{q}&lxm={l}");
        }
        let (s, v) = self.get(&q, Some(access)).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["token"].as_str().unwrap().to_owned()
    }

    /// `PUT url` with `bytes`, a bearer `token` and the `headers` `getPartUploadUrl` named.
    pub async fn put_part(
        &self,
        token: &str,
        url: &str,
        headers: &Value,
        bytes: &[u8],
    ) -> (StatusCode, Value) {
        let mut req = self.client.put(url).bearer_auth(token).body(bytes.to_vec());
        for (k, v) in headers.as_object().unwrap() {
            req = req.header(k.as_str(), v.as_str().unwrap());
        }
        json_of(req.send().await.unwrap()).await
    }

    /// `getBlob` of `did` (a hold's) and `cid` (a CID or an OCI digest).
    pub async fn get_blob(&self, did: &str, cid: &str, token: Option<&str>) -> reqwest::Response {
        let did = did.replace('%', "%25");
        let mut req = self
            .client
            .get(format!("{}/xrpc/{GET_BLOB}?did={did}&cid={cid}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }
}

/// A crew member's upload through a hold whose PDS also issues the member's service tokens.
pub struct HoldUpload<'a> {
    pub xrpc: Xrpc<'a>,
    /// The member's session on the hold's PDS.
    pub access: &'a str,
    pub hold_did: String,
    /// The hold's public endpoint, which `getPartUploadUrl` names.
    pub endpoint: String,
}

impl HoldUpload<'_> {
    /// A service token for the hold and `lxm`.
    pub async fn token(&self, lxm: &str) -> String {
        self.xrpc
            .service_auth(self.access, &self.hold_did, Some(lxm))
            .await
    }

    /// Starts an upload of `digest` and sends `parts`, the last one first (parts may come in
    /// any order); returns the upload id and the parts with their `ETags`, for `completeUpload`.
    pub async fn send(&self, digest: &str, parts: &[&[u8]]) -> (String, Value) {
        let x = self.xrpc;
        let (s, v) = x
            .post(
                INITIATE,
                Some(&self.token(INITIATE).await),
                json!({"digest": digest}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let id = v["uploadId"].as_str().unwrap().to_owned();
        let mut etags = Vec::new();
        for (i, bytes) in parts.iter().enumerate().rev() {
            let n = i + 1;
            let (s, at) = x
                .post(
                    PART_URL,
                    Some(&self.token(PART_URL).await),
                    json!({"uploadId": id, "partNumber": n}),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{at}");
            assert_eq!(at["method"], "PUT");
            assert_eq!(at["url"], format!("{}/xrpc/{UPLOAD_PART}", self.endpoint));
            // The URL names the node's public host; the test reaches it on 127.0.0.1.
            let url = format!("{}/xrpc/{UPLOAD_PART}", x.base);
            let token = self.token(UPLOAD_PART).await;
            let (s, v) = x.put_part(&token, &url, &at["headers"], bytes).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            assert_eq!(v["etag"], sha256_hex(bytes));
            etags.push(json!({"partNumber": n, "etag": v["etag"]}));
        }
        etags.reverse();
        (id, Value::Array(etags))
    }

    /// `completeUpload` of `id` with `parts`.
    pub async fn complete(&self, id: &str, digest: &str, parts: Value) -> (StatusCode, Value) {
        let body = json!({"uploadId": id, "digest": digest, "parts": parts});
        self.xrpc
            .post(COMPLETE, Some(&self.token(COMPLETE).await), body)
            .await
    }
}

/// The status and JSON body (`Null` when it is none) of a response.
pub async fn json_of(r: reqwest::Response) -> (StatusCode, Value) {
    let status = r.status();
    (
        status,
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(Value::Null),
    )
}

/// An XRPC error answer: `status`, and `error` named with a message.
pub fn assert_error(got: &(StatusCode, Value), status: StatusCode, error: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"], error, "{}", got.1);
    assert!(got.1["message"].is_string(), "{}", got.1);
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}
