//! `/.well-known/did.json`, `/.well-known/atproto-did` and the built-in PLC directory
//! (`GET /did:plc:…`, `/log`, `/log/audit`, `/log/last`, `/data`; `POST /did:plc:…`).

use std::net::IpAddr;
use std::time::Instant;

use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use serde_json::json;

use super::{Call, XrpcError, json_response, ok_json};
use crate::atproto::{Datetime, Did};
use crate::http::PeerAddr;
use crate::http::body::{self, Body, RequestBody};
use crate::pds::accounts::{Accounts, PlcEntry};
use crate::pds::{Pds, plc};

type Answer = Result<Response<Body>, XrpcError>;

pub(super) fn well_known(pds: &Pds, req: &Request<RequestBody>, path: &str) -> Answer {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(XrpcError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "InvalidRequest",
            "GET only",
        ));
    }
    match path {
        "/.well-known/did.json" => {
            let doc = pds
                .did_document(&pds.node_did)?
                .ok_or_else(XrpcError::internal)?;
            ok_json(&doc)
        }
        "/.well-known/atproto-did" => {
            // Answered by Host header: `<handle>` → its DID; the node's own host → the node.
            let host = req
                .headers()
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| req.uri().host())
                .unwrap_or_default();
            let name = crate::http_client::host_without_port(host);
            match pds.resolve_handle(name)? {
                Some(d) => {
                    let mut r = Response::new(body::full(d.to_string()));
                    r.headers_mut()
                        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                    Ok(r)
                }
                None => Err(XrpcError::new(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    "no user by that handle",
                )),
            }
        }
        _ => Err(XrpcError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "not found",
        )),
    }
}

fn plc_error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json_response(status, &json!({"message": message.into()}))
}

pub(super) async fn plc(pds: &Pds, req: Request<RequestBody>, path: &str) -> Answer {
    let rest = path.trim_start_matches('/');
    let (did, sub) = rest.split_once('/').map_or((rest, ""), |(d, s)| (d, s));
    let Ok(did) = did.parse::<Did>() else {
        return Ok(plc_error(
            StatusCode::BAD_REQUEST,
            format!("invalid DID: {did}"),
        ));
    };
    if req.method() == Method::POST && sub.is_empty() {
        let address = req
            .extensions()
            .get::<PeerAddr>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |p| p.0.ip());
        let call = Call::new(req);
        let op = call.json().await?;
        return submit(pds, &did, op, address).await;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(plc_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
        ));
    }
    let log = pds.accounts.plc_log(&did)?;
    let Some(last) = log.last() else {
        return Ok(plc_error(
            StatusCode::NOT_FOUND,
            format!("DID not registered: {did}"),
        ));
    };
    match sub {
        "" => match plc::document(&did, &last.operation) {
            Ok(doc) => ok_json(&doc),
            Err(_) => Ok(plc_error(
                StatusCode::GONE,
                format!("DID not available: {did}"),
            )),
        },
        "log" => ok_json(&json!(log.iter().map(|e| &e.operation).collect::<Vec<_>>())),
        "log/audit" => ok_json(&serde_json::to_value(&log).map_err(|e| super::internal(&e))?),
        "log/last" => ok_json(&last.operation),
        "data" => ok_json(&plc::data(&did, &last.operation)),
        _ => Ok(plc_error(StatusCode::NOT_FOUND, "not found")),
    }
}

/// Accepts a signed operation for `did`: a genesis operation for a new DID, or the next
/// operation of a known one signed by a current rotation key. (No forks: an operation must
/// extend the last one, checked again in the transaction that appends it.) Operations are
/// held to the reference directory's limits. A new DID is registered only when the node's
/// rotation key signed it, or with `plc_open_creation` (then at most
/// [`crate::pds::PLC_CREATIONS_PER_HOUR`] genesis attempts per client address within the
/// limits, signed validly or not).
/// For an account of this node,
/// an `#identity` event tells followers to resolve the DID again.
async fn submit(pds: &Pds, did: &Did, op: serde_json::Value, address: IpAddr) -> Answer {
    if let Err(e) = plc::check_limits(&op) {
        return Ok(plc_error(StatusCode::BAD_REQUEST, e.0));
    }
    let log = pds.accounts.plc_log(did)?;
    if log.is_empty() {
        let node_key = pds.keys.rotation.public_key().to_did_key();
        let by_node = plc::verify(&op, &[node_key.as_str()]).is_ok();
        if !by_node && !pds.settings.plc_open_creation {
            tracing::debug!(%address, "PLC genesis refused: creation is closed");
            return Ok(plc_error(
                StatusCode::FORBIDDEN,
                "this directory registers only DIDs of its own node",
            ));
        }
        if !by_node && !pds.plc_creations.allow(address, Instant::now()) {
            return Ok(plc_error(
                StatusCode::TOO_MANY_REQUESTS,
                "too many new DIDs from this address; try again later",
            ));
        }
    }
    if let Err(e) = plc::check_next(did, log.last().map(|e| &e.operation), &op) {
        return Ok(plc_error(StatusCode::BAD_REQUEST, e.0));
    }
    let cid = plc::op_cid(&op).map_err(|e| XrpcError::invalid(e.0))?;
    // The upstream directory first (when configured): an operation it refuses is not kept.
    if let Err(e) = pds.forward_plc(did, &op).await {
        return Ok(plc_error(StatusCode::BAD_GATEWAY, e.to_string()));
    }
    let entry = PlcEntry {
        did: did.clone(),
        operation: op,
        cid: cid.to_string(),
        nullified: false,
        created_at: Datetime::now().as_str().to_owned(),
    };
    let claimed = plc::handle_of(&entry.operation);
    let appended = pds
        .repos
        .store()
        .write(move |tx| Accounts::append_plc_next(tx, &entry))
        .await?;
    if let Err(e) = appended {
        return Ok(plc_error(StatusCode::CONFLICT, e.0));
    }
    if let Some(account) = pds.accounts.get(did)? {
        // The node's handle table is not changed by an operation: its handle stays announced
        // only while the document still claims it.
        let handle = Some(account.handle.as_str()).filter(|h| claimed.as_deref() == Some(*h));
        pds.emit_identity(did, handle).await?;
    }
    Ok(Response::new(body::empty()))
}
