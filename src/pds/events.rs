//! Firehose frames of `com.atproto.sync.subscribeRepos`: a DAG-CBOR header
//! (`{op: 1, t: "#commit"}`) followed by the DAG-CBOR body, exactly the bytes a WebSocket
//! binary message carries. Frames are built once, when their sequence number is assigned, and
//! stored as they are sent.

use std::collections::BTreeMap;

use crate::atproto::mst::RecordOp;
use crate::atproto::{Cid, Datetime, Did, Tid, Value};

fn text(s: &str) -> Value {
    Value::String(s.to_owned())
}

fn int(n: u64) -> Value {
    Value::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

/// Header + body as one binary message.
#[must_use]
pub fn frame(kind: &str, body: BTreeMap<String, Value>) -> Vec<u8> {
    let mut header = BTreeMap::new();
    header.insert("op".to_owned(), Value::Integer(1));
    header.insert("t".to_owned(), text(kind));
    let mut out = Value::Map(header).to_cbor();
    out.extend_from_slice(&Value::Map(body).to_cbor());
    out
}

/// An `#info` frame (`{name, message}`), such as `OutdatedCursor` for a cursor older than the
/// oldest event the log keeps.
#[must_use]
pub fn info_frame(name: &str, message: &str) -> Vec<u8> {
    let mut body = BTreeMap::new();
    body.insert("name".to_owned(), text(name));
    body.insert("message".to_owned(), text(message));
    frame("#info", body)
}

/// An error frame (`op: -1`), sent before closing a subscription.
#[must_use]
pub fn error_frame(error: &str, message: &str) -> Vec<u8> {
    let mut header = BTreeMap::new();
    header.insert("op".to_owned(), Value::Integer(-1));
    let mut body = BTreeMap::new();
    body.insert("error".to_owned(), text(error));
    body.insert("message".to_owned(), text(message));
    let mut out = Value::Map(header).to_cbor();
    out.extend_from_slice(&Value::Map(body).to_cbor());
    out
}

/// What a `#commit` event says (everything but its sequence number).
#[derive(Debug, Clone)]
pub struct CommitEvent {
    pub repo: Did,
    pub commit: Cid,
    pub rev: Tid,
    pub since: Option<Tid>,
    /// A CAR holding the commit block, new record blocks and the sync 1.1 proof blocks.
    pub blocks: Vec<u8>,
    pub ops: Vec<RecordOp>,
    pub blobs: Vec<Cid>,
    pub prev_data: Option<Cid>,
    pub time: Datetime,
}

impl CommitEvent {
    /// The frame with sequence number `seq`.
    #[must_use]
    pub fn frame(&self, seq: u64) -> Vec<u8> {
        let mut b = BTreeMap::new();
        b.insert("seq".to_owned(), int(seq));
        b.insert("rebase".to_owned(), Value::Bool(false));
        b.insert("tooBig".to_owned(), Value::Bool(false));
        b.insert("repo".to_owned(), text(self.repo.as_str()));
        b.insert("commit".to_owned(), Value::Link(self.commit));
        b.insert("rev".to_owned(), text(self.rev.as_str()));
        b.insert(
            "since".to_owned(),
            self.since
                .as_ref()
                .map_or(Value::Null, |t| text(t.as_str())),
        );
        b.insert("blocks".to_owned(), Value::Bytes(self.blocks.clone()));
        let ops = self
            .ops
            .iter()
            .map(|op| {
                let mut m = BTreeMap::new();
                let (action, path, cid, prev) = match op {
                    RecordOp::Create { key, cid } => ("create", key, Some(*cid), None),
                    RecordOp::Update { key, cid, prev } => ("update", key, Some(*cid), Some(*prev)),
                    RecordOp::Delete { key, prev } => ("delete", key, None, Some(*prev)),
                };
                m.insert("action".to_owned(), text(action));
                m.insert("path".to_owned(), text(path));
                m.insert("cid".to_owned(), cid.map_or(Value::Null, Value::Link));
                if let Some(prev) = prev {
                    m.insert("prev".to_owned(), Value::Link(prev));
                }
                Value::Map(m)
            })
            .collect();
        b.insert("ops".to_owned(), Value::Array(ops));
        b.insert(
            "blobs".to_owned(),
            Value::Array(self.blobs.iter().map(|c| Value::Link(*c)).collect()),
        );
        if let Some(prev) = self.prev_data {
            b.insert("prevData".to_owned(), Value::Link(prev));
        }
        b.insert("time".to_owned(), text(self.time.as_str()));
        frame("#commit", b)
    }
}

/// An `#identity` frame: the DID document or handle of `did` changed.
#[must_use]
pub fn identity_frame(seq: u64, did: &Did, handle: Option<&str>, time: &Datetime) -> Vec<u8> {
    let mut b = BTreeMap::new();
    b.insert("seq".to_owned(), int(seq));
    b.insert("did".to_owned(), text(did.as_str()));
    b.insert("time".to_owned(), text(time.as_str()));
    if let Some(h) = handle {
        b.insert("handle".to_owned(), text(h));
    }
    frame("#identity", b)
}

/// An `#account` frame: the hosting status of `did` changed.
#[must_use]
pub fn account_frame(
    seq: u64,
    did: &Did,
    active: bool,
    status: Option<&str>,
    time: &Datetime,
) -> Vec<u8> {
    let mut b = BTreeMap::new();
    b.insert("seq".to_owned(), int(seq));
    b.insert("did".to_owned(), text(did.as_str()));
    b.insert("time".to_owned(), text(time.as_str()));
    b.insert("active".to_owned(), Value::Bool(active));
    if let Some(s) = status {
        b.insert("status".to_owned(), text(s));
    }
    frame("#account", b)
}

/// Splits a frame into its header and body values.
#[must_use]
pub fn parse_frame(bytes: &[u8]) -> Option<(Value, Value)> {
    // The header is a small map; find where it ends by decoding prefixes of growing length.
    (1..bytes.len().min(64)).find_map(|n| {
        let header = Value::from_untrusted_cbor(&bytes[..n]).ok()?;
        let body = Value::from_untrusted_cbor(&bytes[n..]).ok()?;
        Some((header, body))
    })
}
