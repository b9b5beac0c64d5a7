//! `com.atproto.repo.*`.

use http::{Response, StatusCode};
use serde_json::{Value as Json, json};

use super::{Call, Caller, XrpcError, authenticate, lookup, ok_json, resolve_repo};
use crate::atproto::{Cid, Did, Nsid, RecordKey, Value};
use crate::blobstore::{Algorithm as DigestAlg, Digest};
use crate::http::body::Body;
use crate::pds::Pds;
use crate::pds::accounts::now_secs;
use crate::pds::repo::{CommitInfo, RepoError, SwapRecord, Validation, WriteOp, WriteResult};
use crate::pds::store::{BlobMeta, TempAdmit};

type Answer = Result<Response<Body>, XrpcError>;

fn str_field<'a>(body: &'a Json, name: &str) -> Result<&'a str, XrpcError> {
    body[name]
        .as_str()
        .ok_or_else(|| XrpcError::invalid(format!("{name} is required")))
}

fn nsid(s: &str) -> Result<Nsid, XrpcError> {
    s.parse()
        .map_err(|e| XrpcError::invalid(format!("invalid collection: {e}")))
}

fn rkey(s: &str) -> Result<RecordKey, XrpcError> {
    s.parse()
        .map_err(|e| XrpcError::invalid(format!("invalid record key: {e}")))
}

fn cid(s: &str, what: &str) -> Result<Cid, XrpcError> {
    s.parse()
        .map_err(|_| XrpcError::invalid(format!("{what} is not a CID")))
}

fn record_value(v: &Json) -> Result<Value, XrpcError> {
    Value::from_json_object(v).map_err(|e| XrpcError::invalid(format!("invalid record: {e}")))
}

/// `swapRecord`: absent = no check; `null` = must not exist; a CID = must be that CID.
fn swap_record(body: &Json) -> Result<Option<SwapRecord>, XrpcError> {
    match body.get("swapRecord") {
        None => Ok(None),
        Some(Json::Null) => Ok(Some(None)),
        Some(Json::String(s)) => Ok(Some(Some(cid(s, "swapRecord")?))),
        Some(_) => Err(XrpcError::invalid("swapRecord must be a CID or null")),
    }
}

fn swap_commit(body: &Json) -> Result<Option<Cid>, XrpcError> {
    match body.get("swapCommit") {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(cid(s, "swapCommit")?)),
        Some(_) => Err(XrpcError::invalid("swapCommit must be a CID")),
    }
}

fn validation(body: &Json) -> Result<Validation, XrpcError> {
    match body.get("validate") {
        None | Some(Json::Null) => Ok(Validation::IfKnown),
        Some(Json::Bool(true)) => Ok(Validation::Require),
        Some(Json::Bool(false)) => Ok(Validation::Skip),
        Some(_) => Err(XrpcError::invalid("validate must be a boolean")),
    }
}

/// The caller may only write its own repository (see [`lookup::own_repo`]).
fn own_repo(pds: &Pds, caller: &Caller, body: &Json) -> Result<Did, XrpcError> {
    lookup::own_repo(pds, caller, str_field(body, "repo")?)
}

fn commit_json(info: &CommitInfo) -> Json {
    json!({"cid": info.cid.to_string(), "rev": info.rev.as_str()})
}

fn status(validated: bool) -> &'static str {
    if validated { "valid" } else { "unknown" }
}

pub(super) async fn create_record(pds: &Pds, call: Call) -> Answer {
    let caller = authenticate(pds, &call)?;
    let body = call.json().await?;
    let did = own_repo(pds, &caller, &body)?;
    let write = WriteOp::Create {
        collection: nsid(str_field(&body, "collection")?)?,
        rkey: body["rkey"].as_str().map(rkey).transpose()?,
        value: record_value(&body["record"])?,
    };
    let (info, results) = pds
        .repos
        .apply_writes(&did, vec![write], swap_commit(&body)?, validation(&body)?)
        .await?;
    written_record(&info, &results)
}

/// The answer of createRecord and putRecord: the one record written and the commit.
fn written_record(info: &CommitInfo, results: &[WriteResult]) -> Answer {
    let Some(
        WriteResult::Create {
            uri,
            cid,
            validated,
        }
        | WriteResult::Update {
            uri,
            cid,
            validated,
        },
    ) = results.first()
    else {
        return Err(XrpcError::internal());
    };
    ok_json(&json!({
        "uri": uri,
        "cid": cid.to_string(),
        "commit": commit_json(info),
        "validationStatus": status(*validated),
    }))
}

pub(super) async fn put_record(pds: &Pds, call: Call) -> Answer {
    let caller = authenticate(pds, &call)?;
    let body = call.json().await?;
    let did = own_repo(pds, &caller, &body)?;
    let write = WriteOp::Update {
        collection: nsid(str_field(&body, "collection")?)?,
        rkey: rkey(str_field(&body, "rkey")?)?,
        value: record_value(&body["record"])?,
        swap_record: swap_record(&body)?,
    };
    let (info, results) = pds
        .repos
        .apply_writes(&did, vec![write], swap_commit(&body)?, validation(&body)?)
        .await?;
    written_record(&info, &results)
}

pub(super) async fn delete_record(pds: &Pds, call: Call) -> Answer {
    let caller = authenticate(pds, &call)?;
    let body = call.json().await?;
    let did = own_repo(pds, &caller, &body)?;
    let collection = nsid(str_field(&body, "collection")?)?;
    let key = rkey(str_field(&body, "rkey")?)?;
    let swap = swap_record(&body)?;
    // Deleting a record that does not exist is not an error (and makes no commit), unless a
    // swapRecord CID says it should exist.
    let current = pds
        .repos
        .store()
        .record_cid(&did, collection.as_str(), key.as_str())?;
    if current.is_none() {
        if let Some(Some(expected)) = swap {
            return Err(XrpcError::new(
                StatusCode::CONFLICT,
                "InvalidSwap",
                format!("record is not at {expected}"),
            ));
        }
        return ok_json(&json!({}));
    }
    let write = WriteOp::Delete {
        collection,
        rkey: key,
        swap_record: swap,
    };
    match pds
        .repos
        .apply_writes(&did, vec![write], swap_commit(&body)?, Validation::IfKnown)
        .await
    {
        Ok((info, _)) => ok_json(&json!({ "commit": commit_json(&info) })),
        // Deleted by a concurrent write since the check above: gone, as asked.
        Err(RepoError::RecordNotFound(_)) => ok_json(&json!({})),
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn apply_writes(pds: &Pds, call: Call) -> Answer {
    let caller = authenticate(pds, &call)?;
    let body = call.json().await?;
    let did = own_repo(pds, &caller, &body)?;
    let writes = body["writes"]
        .as_array()
        .ok_or_else(|| XrpcError::invalid("writes must be an array"))?;
    if writes.len() > 200 {
        return Err(XrpcError::invalid("at most 200 writes per call"));
    }
    let mut ops = Vec::with_capacity(writes.len());
    for w in writes {
        let collection = nsid(str_field(w, "collection")?)?;
        let op = match w["$type"].as_str() {
            Some("com.atproto.repo.applyWrites#create") => WriteOp::Create {
                collection,
                rkey: w["rkey"].as_str().map(rkey).transpose()?,
                value: record_value(&w["value"])?,
            },
            Some("com.atproto.repo.applyWrites#update") => WriteOp::Replace {
                collection,
                rkey: rkey(str_field(w, "rkey")?)?,
                value: record_value(&w["value"])?,
            },
            Some("com.atproto.repo.applyWrites#delete") => WriteOp::Delete {
                collection,
                rkey: rkey(str_field(w, "rkey")?)?,
                swap_record: None,
            },
            _ => return Err(XrpcError::invalid("each write needs a known $type")),
        };
        ops.push(op);
    }
    let (info, results) = pds
        .repos
        .apply_writes(&did, ops, swap_commit(&body)?, validation(&body)?)
        .await?;
    let results: Vec<Json> = results
        .iter()
        .map(|r| match r {
            WriteResult::Create {
                uri,
                cid,
                validated,
            } => json!({
                "$type": "com.atproto.repo.applyWrites#createResult",
                "uri": uri, "cid": cid.to_string(), "validationStatus": status(*validated),
            }),
            WriteResult::Update {
                uri,
                cid,
                validated,
            } => json!({
                "$type": "com.atproto.repo.applyWrites#updateResult",
                "uri": uri, "cid": cid.to_string(), "validationStatus": status(*validated),
            }),
            WriteResult::Delete => json!({"$type": "com.atproto.repo.applyWrites#deleteResult"}),
        })
        .collect();
    ok_json(&json!({ "commit": commit_json(&info), "results": results }))
}

pub(super) async fn upload_blob(pds: &Pds, call: Call) -> Answer {
    let caller = authenticate(pds, &call)?;
    let mime = call
        .req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let limit = usize::try_from(pds.settings.max_blob_bytes).unwrap_or(usize::MAX);
    let bytes = call.body(limit).await?;
    let digest = Digest::of(DigestAlg::Sha256, &bytes);
    let cid = Cid::for_raw(&bytes);
    let size = bytes.len() as u64;
    let cap = pds.settings.max_temp_blob_bytes;
    let store = pds.repos.store();
    over_temp_cap(
        store.temp_blob_admits(&caller.did, &cid, size, cap)?,
        size,
        cap,
    )?;
    // Pinned from the write until the blob table names it (the collector's sweep then leaves
    // the object to the PDS): a sweep of the same bytes, unused by the registry, cannot delete
    // the object between the two.
    let _pin = pds.blobs.pins().pin([digest.clone()]).await;
    pds.blobs.put(&digest, bytes).await.map_err(|e| match e {
        crate::blobstore::BlobError::StorageFull => XrpcError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "StorageFull",
            "storage is full",
        ),
        e => super::internal(&e),
    })?;
    let meta = BlobMeta {
        mime_type: mime.clone(),
        size,
        created: now_secs(),
    };
    // Checked again where it is counted: of two uploads at once, one may find no room left.
    // Its object, if no one else's, is left for the collector.
    over_temp_cap(
        store.put_temp_blob(&caller.did, cid, meta, cap).await?,
        size,
        cap,
    )?;
    ok_json(&json!({
        "blob": {"$type": "blob", "ref": {"$link": cid.to_string()}, "mimeType": mime, "size": size}
    }))
}

/// The refusal of an upload that would take the account's temporary blobs (uploaded, no record
/// referencing them yet) over `pds.max_temp_blob_bytes`.
fn over_temp_cap(admit: TempAdmit, size: u64, cap: u64) -> Result<(), XrpcError> {
    match admit {
        TempAdmit::Yes => Ok(()),
        TempAdmit::OverCap { held } => {
            tracing::info!(
                held,
                size,
                cap,
                "uploadBlob refused: over the temporary blob cap"
            );
            Err(XrpcError::new(
                StatusCode::BAD_REQUEST,
                "QuotaExceeded",
                format!(
                    "blobs uploaded but not yet referenced by a record hold {held} bytes; this \
                     blob ({size} bytes) would take them over the limit of {cap}: reference them \
                     in records, or wait until unreferenced ones expire"
                ),
            ))
        }
    }
}

fn load_record(pds: &Pds, cid: &Cid) -> Result<Value, XrpcError> {
    use crate::atproto::BlockStore;
    let bytes = pds
        .repos
        .store()
        .get(cid)
        .map_err(|e| super::internal(&e))?
        .ok_or_else(XrpcError::internal)?;
    Value::from_cbor(&bytes).map_err(|e| super::internal(&e))
}

pub(super) fn get_record(pds: &Pds, call: &Call) -> Answer {
    let did = resolve_repo(pds, call.required("repo")?)?;
    let collection = nsid(call.required("collection")?)?;
    let key = rkey(call.required("rkey")?)?;
    let not_found = || {
        XrpcError::new(
            StatusCode::NOT_FOUND,
            "RecordNotFound",
            format!("could not locate record: at://{did}/{collection}/{key}"),
        )
    };
    // The CID and the block from one snapshot: a record replaced since may be collected.
    let (found, bytes) = pds
        .repos
        .store()
        .snapshot()?
        .record(&did, collection.as_str(), key.as_str())?
        .ok_or_else(not_found)?;
    if let Some(want) = call.param("cid")
        && cid(want, "cid")? != found
    {
        return Err(not_found());
    }
    let value = Value::from_cbor(&bytes).map_err(|e| super::internal(&e))?;
    ok_json(&json!({
        "uri": format!("at://{did}/{collection}/{key}"),
        "cid": found.to_string(),
        "value": value.to_json(),
    }))
}

pub(super) fn list_records(pds: &Pds, call: &Call) -> Answer {
    let did = resolve_repo(pds, call.required("repo")?)?;
    let collection = nsid(call.required("collection")?)?;
    let limit = call.limit(50, 100)?;
    let reverse = call.flag("reverse")?;
    let cursor = call.param("cursor");
    // Default order is newest first (descending rkey), as the reference PDS does; `reverse`
    // gives ascending order.
    let rows =
        pds.repos
            .store()
            .list_records(&did, collection.as_str(), cursor, limit, !reverse)?;
    let mut records = Vec::with_capacity(rows.len());
    for (key, cid) in &rows {
        records.push(json!({
            "uri": format!("at://{did}/{collection}/{key}"),
            "cid": cid.to_string(),
            "value": load_record(pds, cid)?.to_json(),
        }));
    }
    let mut out = json!({ "records": records });
    if rows.len() == limit
        && let Some((last, _)) = rows.last()
    {
        out["cursor"] = json!(last);
    }
    ok_json(&out)
}

pub(super) fn describe_repo(pds: &Pds, call: &Call) -> Answer {
    let did = resolve_repo(pds, call.required("repo")?)?;
    // A DID without a local handle (the node's did:web: its document names none) answers
    // `handle.invalid`, as the reference PDS does: clients validate `handle` as a handle, and a
    // bare host such as `localhost` is not one.
    let (handle, correct) = match pds.handle_of(&did)? {
        Some(handle) => (handle, true),
        None => ("handle.invalid".to_owned(), false),
    };
    ok_json(&json!({
        "handle": handle,
        "did": did.as_str(),
        "didDoc": pds.did_document(&did)?,
        "collections": pds.repos.store().collections(&did)?,
        "handleIsCorrect": correct,
    }))
}
