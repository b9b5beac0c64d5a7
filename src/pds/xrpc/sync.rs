//! `com.atproto.sync.*` (except `subscribeRepos`, see `subscribe.rs`).

use std::collections::HashSet;
use std::io::Write;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};
use serde_json::json;

use super::lookup::{is_active, sync_did, sync_repo};
use super::{Call, XrpcError, ok_json};
use crate::atproto::blockstore::{BlockStore, RecordingStore};
use crate::atproto::car::{CarWriter, export_repo, export_repo_since};
use crate::atproto::mst::{MstError, WalkItem};
use crate::atproto::{Cid, Mst};
use crate::blobstore::Digest;
use crate::http::body::{self, Body};
use crate::pds::Pds;
use crate::pds::store::{RepoHead, Snapshot};

type Answer = Result<Response<Body>, XrpcError>;

const CAR: &str = "application/vnd.ipld.car";

fn car_response(b: Body) -> Response<Body> {
    let mut r = Response::new(b);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(CAR));
    r
}

/// A writer that hands 64 KiB chunks to an async body through a bounded channel (so a slow
/// client slows the export rather than filling memory).
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(1 << 16),
        ));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 1 << 16 {
            self.send()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

pub(super) fn get_repo(pds: &Pds, call: &Call) -> Answer {
    let (did, head) = sync_repo(pds, call)?;
    // One read transaction for the whole export: a consistent view while writes go on. The
    // head is read again from it: blocks only the one read above reached may be collected.
    let snapshot = pds.repos.store().snapshot()?;
    let head = snapshot.head(&did)?.unwrap_or(head);
    // `since`: only what changed after that revision. A revision this node has no commit for
    // (made before it kept the table, or unknown) or whose commit block was collected gets the
    // whole repository, a superset.
    let since = match call.param("since") {
        Some(rev) => {
            rev.parse::<crate::atproto::Tid>()
                .map_err(|_| XrpcError::invalid("since is not a revision (TID)"))?;
            pds.repos
                .store()
                .commit_at(&did, rev)?
                .map(|c| commit_data(&snapshot, c.commit))
                .transpose()?
                .flatten()
        }
        None => None,
    };
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(1 << 16),
        };
        let result = match since {
            Some(data) => export_repo_since(&snapshot, head.commit, data, &mut w),
            None => export_repo(&snapshot, head.commit, &mut w),
        }
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(std::io::Write::flush);
        if let Err(e) = result {
            // The export's own error wraps the writer's, so the kind is lost: a closed channel
            // is what tells a client that hung up (no failure of the node's) from a real one.
            if tx.is_closed() {
                tracing::debug!(error = %e, "client went away during a repository export");
            } else {
                tracing::error!(error = %e, "repository export failed");
            }
            let _ = tx.blocking_send(Err(e));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok(car_response(body::stream(stream)))
}

/// The MST root a stored commit signs; `None` once the commit block was collected (no head
/// reaches it), when `getRepo` sends the whole repository.
fn commit_data(snapshot: &Snapshot, commit: Cid) -> Result<Option<Cid>, XrpcError> {
    let Some(bytes) = snapshot.get(&commit).map_err(|e| super::internal(&e))? else {
        return Ok(None);
    };
    let commit =
        crate::atproto::commit::Commit::from_cbor(&bytes).map_err(|e| super::internal(&e))?;
    Ok(Some(commit.unsigned.data))
}

pub(super) fn get_latest_commit(pds: &Pds, call: &Call) -> Answer {
    let (_, head) = sync_repo(pds, call)?;
    ok_json(&json!({"cid": head.commit.to_string(), "rev": head.rev.as_str()}))
}

/// A CAR proving one record (or its absence): the commit, the MST path to the key, and the
/// record block.
pub(super) fn get_record(pds: &Pds, call: &Call) -> Answer {
    let (did, head) = sync_repo(pds, call)?;
    let collection = call.required("collection")?;
    let rkey = call.required("rkey")?;
    let snapshot = pds.repos.store().snapshot()?;
    let head = snapshot.head(&did)?.unwrap_or(head);
    let recording = RecordingStore::new(&snapshot);
    let mst = Mst::load(&recording, head.data).map_err(|e| super::internal(&e))?;
    let key = format!("{collection}/{rkey}");
    let found = mst
        .get(&recording, &key)
        .map_err(|e| XrpcError::invalid(e.to_string()))?;
    let Some(record) = found else {
        return Err(XrpcError::new(
            StatusCode::NOT_FOUND,
            "RecordNotFound",
            format!("could not locate record: {key}"),
        ));
    };
    let mut cids: Vec<Cid> = vec![head.commit];
    for c in recording.reads().into_iter().chain([head.data, record]) {
        if !cids.contains(&c) {
            cids.push(c);
        }
    }
    let write = || -> Result<Vec<u8>, String> {
        let mut car = CarWriter::new(Vec::new(), &[head.commit]).map_err(|e| e.to_string())?;
        for c in &cids {
            let bytes = snapshot
                .get(c)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("block {c} missing"))?;
            car.write_block(c, &bytes).map_err(|e| e.to_string())?;
        }
        car.finish().map_err(|e| e.to_string())
    };
    let bytes = write().map_err(|e| super::internal(&e))?;
    Ok(car_response(body::full(bytes)))
}

/// A CAR (no roots) of the requested blocks of one repository: its head commit, the nodes of
/// its current tree and its current records. The block store is shared by every repository
/// here, so a block is served only if it is one of these: another repository's blocks are not
/// fetched through this one (the read gate admits a caller to their own repository). Any
/// block not found fails the call (400 `BlockNotFound`), as the reference PDS does.
pub(super) async fn get_blocks(pds: &Pds, call: &Call) -> Answer {
    let (did, head) = sync_repo(pds, call)?;
    let mut wanted: Vec<Cid> = Vec::new();
    for c in call.params.get("cids").map_or(&[][..], Vec::as_slice) {
        let cid = c
            .parse()
            .map_err(|_| XrpcError::invalid(format!("cids: {c:?} is not a CID")))?;
        if !wanted.contains(&cid) {
            wanted.push(cid);
        }
    }
    if wanted.is_empty() {
        return Err(XrpcError::invalid("parameter cids is required"));
    }
    let snapshot = pds.repos.store().snapshot()?;
    let head = snapshot.head(&did)?.unwrap_or(head);
    let found = tokio::task::spawn_blocking(move || repo_blocks(&snapshot, &head, wanted))
        .await
        .map_err(|e| super::internal(&e))?;
    let (blocks, missing) = found.map_err(|e| super::internal(&e))?;
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(Cid::to_string).collect();
        return Err(XrpcError::new(
            StatusCode::BAD_REQUEST,
            "BlockNotFound",
            format!("Could not find cids: {}", list.join(",")),
        ));
    }
    let mut car = CarWriter::new(Vec::new(), &[]).map_err(|e| super::internal(&e))?;
    for (cid, bytes) in &blocks {
        car.write_block(cid, bytes)
            .map_err(|e| super::internal(&e))?;
    }
    let bytes = car.finish().map_err(|e| super::internal(&e))?;
    Ok(car_response(body::full(bytes)))
}

/// Blocks found (CID and bytes), and the CIDs not found.
type FoundBlocks = (Vec<(Cid, Bytes)>, Vec<Cid>);

/// The blocks of `wanted` that belong to the repository at `head` (commit, tree nodes,
/// records), in the order asked, and the CIDs that do not.
fn repo_blocks(
    store: &dyn BlockStore,
    head: &RepoHead,
    wanted: Vec<Cid>,
) -> Result<FoundBlocks, MstError> {
    let mut pending: HashSet<Cid> = wanted.iter().copied().collect();
    pending.remove(&head.commit);
    if !pending.is_empty() {
        Mst::load(store, head.data)?.walk(store, &mut |item| {
            pending.remove(&match item {
                WalkItem::Node { cid, .. } => cid,
                WalkItem::Leaf { value, .. } => value,
            });
            Ok(())
        })?;
    }
    let (mut blocks, mut missing) = (Vec::new(), Vec::new());
    for cid in wanted {
        match store.get(&cid)? {
            Some(bytes) if !pending.contains(&cid) => blocks.push((cid, bytes)),
            _ => missing.push(cid),
        }
    }
    Ok((blocks, missing))
}

pub(super) async fn get_blob(pds: &Pds, call: &Call) -> Answer {
    let (did, _) = sync_repo(pds, call)?;
    let cid: Cid = call
        .required("cid")?
        .parse()
        .map_err(|_| XrpcError::invalid("cid is not a CID"))?;
    let not_found = || XrpcError::new(StatusCode::NOT_FOUND, "BlobNotFound", "blob not found");
    let meta = pds
        .repos
        .store()
        .blob_meta(&did, &cid)?
        .ok_or_else(not_found)?;
    let digest: Digest = format!("sha256:{}", hex::encode(cid.digest()))
        .parse()
        .map_err(|_| not_found())?;
    let bytes = pds.blobs.get(&digest).await.map_err(|e| match e {
        crate::blobstore::BlobError::NotFound => not_found(),
        e => super::internal(&e),
    })?;
    let mut r = Response::new(body::full(bytes));
    if let Ok(v) = HeaderValue::from_str(&meta.mime_type) {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r.headers_mut().insert(
        http::header::HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    r.headers_mut().insert(
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    Ok(r)
}

pub(super) fn list_blobs(pds: &Pds, call: &Call) -> Answer {
    let (did, _) = sync_repo(pds, call)?;
    let limit = call.limit(500, 1000)?;
    let store = pds.repos.store();
    let cids = match call.param("since") {
        // Blobs of the records written after that revision.
        Some(since) => {
            since
                .parse::<crate::atproto::Tid>()
                .map_err(|_| XrpcError::invalid("since is not a revision (TID)"))?;
            store.blobs_since(&did, since, call.param("cursor"), limit)?
        }
        None => store.list_blobs(&did, call.param("cursor"), limit)?,
    };
    let mut out = json!({ "cids": cids });
    if cids.len() == limit
        && let Some(last) = cids.last()
    {
        out["cursor"] = json!(last);
    }
    ok_json(&out)
}

pub(super) fn list_repos(pds: &Pds, call: &Call) -> Answer {
    let limit = call.limit(500, 1000)?;
    let rows = pds.repos.store().list_repos(call.param("cursor"), limit)?;
    let repos: Vec<_> = rows
        .iter()
        .map(|(did, head)| {
            json!({"did": did.as_str(), "head": head.commit.to_string(), "rev": head.rev.as_str(), "active": head.active})
        })
        .collect();
    let mut out = json!({ "repos": repos });
    if rows.len() == limit
        && let Some((last, _)) = rows.last()
    {
        out["cursor"] = json!(last.as_str());
    }
    ok_json(&out)
}

pub(super) fn get_repo_status(pds: &Pds, call: &Call) -> Answer {
    let (did, head) = sync_did(pds, call)?;
    let active = is_active(pds, &did, &head)?;
    let mut out = json!({"did": did.as_str(), "active": active, "rev": head.rev.as_str()});
    if !active {
        out["status"] = json!("deactivated");
    }
    ok_json(&out)
}
