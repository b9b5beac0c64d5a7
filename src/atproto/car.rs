//! CAR v1 files: streaming reader and writer, and repository export.

use std::collections::HashSet;
use std::io::{Read, Write};

use bytes::Bytes;
use thiserror::Error;

use super::blockstore::BlockStore;
use super::cbor::{write_head, write_link, write_text};
use super::cid::{Cid, read_varint, write_varint};
use super::commit::Commit;
use super::data::Value;
use super::mst::{Mst, MstError, WalkItem};

/// Largest block the reader accepts unless told otherwise.
pub const DEFAULT_MAX_BLOCK: usize = 8 * 1024 * 1024;

/// Why a CAR could not be read or written.
#[derive(Debug, Error)]
pub enum CarError {
    /// The underlying reader or writer failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The header is not `{version: 1, roots: [...]}`.
    #[error("invalid CAR header: {0}")]
    Header(&'static str),
    /// A block section is malformed (bad varint, bad CID, oversized).
    #[error("invalid CAR block: {0}")]
    Block(&'static str),
    /// A block whose bytes do not hash to its CID.
    #[error("block {0} does not match its CID")]
    HashMismatch(Cid),
    /// Export: the repository is missing blocks or is malformed.
    #[error(transparent)]
    Mst(#[from] MstError),
    /// Export: the commit block is not a commit.
    #[error(transparent)]
    Commit(#[from] super::commit::CommitError),
}

/// Writes a CAR v1 stream block by block.
pub struct CarWriter<W: Write> {
    w: W,
    scratch: Vec<u8>,
}

impl<W: Write> CarWriter<W> {
    /// Writes the header naming `roots`.
    pub fn new(mut w: W, roots: &[Cid]) -> Result<Self, CarError> {
        let mut header = Vec::new();
        header.push(0xa2);
        write_text(&mut header, "roots");
        write_head(&mut header, 4, roots.len() as u64);
        for r in roots {
            write_link(&mut header, r);
        }
        write_text(&mut header, "version");
        header.push(0x01);
        let mut len = Vec::new();
        write_varint(&mut len, header.len() as u64);
        w.write_all(&len)?;
        w.write_all(&header)?;
        Ok(Self {
            w,
            scratch: Vec::with_capacity(64),
        })
    }

    /// Appends one block. The caller vouches that `bytes` hash to `cid`.
    pub fn write_block(&mut self, cid: &Cid, bytes: &[u8]) -> Result<(), CarError> {
        self.scratch.clear();
        let cid_bytes = cid.to_bytes();
        write_varint(&mut self.scratch, (cid_bytes.len() + bytes.len()) as u64);
        self.scratch.extend_from_slice(&cid_bytes);
        self.w.write_all(&self.scratch)?;
        self.w.write_all(bytes)?;
        Ok(())
    }

    /// Flushes and returns the writer.
    pub fn finish(mut self) -> Result<W, CarError> {
        self.w.flush()?;
        Ok(self.w)
    }
}

/// Reads a CAR v1 stream one block at a time, checking each block against its CID.
pub struct CarReader<R: Read> {
    r: R,
    roots: Vec<Cid>,
    max_block: usize,
}

/// Reads a varint from a stream; `None` at a clean end of stream.
fn read_stream_varint<R: Read>(r: &mut R) -> Result<Option<u64>, CarError> {
    let mut buf = [0u8; 10];
    for i in 0..buf.len() {
        let mut b = [0u8; 1];
        if r.read(&mut b)? == 0 {
            return if i == 0 {
                Ok(None)
            } else {
                Err(CarError::Block("truncated varint"))
            };
        }
        buf[i] = b[0];
        if b[0] & 0x80 == 0 {
            return read_varint(&buf[..=i])
                .map(|(v, _)| Some(v))
                .ok_or(CarError::Block("bad varint"));
        }
    }
    Err(CarError::Block("varint too long"))
}

impl<R: Read> CarReader<R> {
    /// Reads the header.
    pub fn new(r: R) -> Result<Self, CarError> {
        Self::with_max_block(r, DEFAULT_MAX_BLOCK)
    }

    /// Reads the header; blocks larger than `max_block` bytes will be refused.
    pub fn with_max_block(mut r: R, max_block: usize) -> Result<Self, CarError> {
        let bad = CarError::Header;
        let len = read_stream_varint(&mut r)?.ok_or(bad("empty stream"))?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= 64 * 1024)
            .ok_or(bad("too long"))?;
        let mut header = vec![0u8; len];
        r.read_exact(&mut header)?;
        let value = Value::from_cbor(&header).map_err(|_| bad("not DAG-CBOR"))?;
        if value.get("version") != Some(&Value::Integer(1)) {
            return Err(bad("version is not 1"));
        }
        let Some(Value::Array(items)) = value.get("roots") else {
            return Err(bad("roots is not an array"));
        };
        let roots = items
            .iter()
            .map(|v| match v {
                Value::Link(c) => Ok(*c),
                _ => Err(bad("root is not a link")),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            r,
            roots,
            max_block,
        })
    }

    /// The roots named by the header.
    #[must_use]
    pub fn roots(&self) -> &[Cid] {
        &self.roots
    }

    /// The next block, or `None` at the end of the stream.
    pub fn next_block(&mut self) -> Result<Option<(Cid, Bytes)>, CarError> {
        let Some(len) = read_stream_varint(&mut self.r)? else {
            return Ok(None);
        };
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= self.max_block + 64)
            .ok_or(CarError::Block("block too large"))?;
        let mut buf = vec![0u8; len];
        self.r.read_exact(&mut buf)?;
        let (cid, n) = Cid::read_bytes(&buf).map_err(|_| CarError::Block("bad CID"))?;
        let data = Bytes::from(buf).slice(n..);
        if !cid.matches(&data) {
            return Err(CarError::HashMismatch(cid));
        }
        Ok(Some((cid, data)))
    }

    /// Reads every remaining block into `store`; returns how many.
    pub fn load_into(mut self, store: &dyn BlockStore) -> Result<usize, CarError> {
        let mut n = 0;
        while let Some((cid, bytes)) = self.next_block()? {
            store.put(cid, bytes).map_err(MstError::from)?;
            n += 1;
        }
        Ok(n)
    }
}

impl<R: Read> Iterator for CarReader<R> {
    type Item = Result<(Cid, Bytes), CarError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_block().transpose()
    }
}

/// Streams a repository as `com.atproto.sync.getRepo` serves it: a CAR whose root is the
/// commit, then the commit block, then the MST depth-first (each node before its subtrees,
/// each record right after its key). Nodes are read one at a time, so memory stays bounded
/// by one root-to-leaf path whatever the repository's size. Returns the writer.
pub fn export_repo<W: Write>(store: &dyn BlockStore, commit_cid: Cid, w: W) -> Result<W, CarError> {
    export(store, commit_cid, &HashSet::new(), w)
}

/// Like [`export_repo`], without the MST nodes and records reachable from `since_data`, the
/// MST root of an earlier commit: what a client holding that commit lacks (`getRepo` with
/// `since`). Where the earlier tree's blocks are no longer stored (a PDS collects what no head
/// reaches), the part of it that can be read is left out and the rest sent: a superset, as the
/// whole repository is.
pub fn export_repo_since<W: Write>(
    store: &dyn BlockStore,
    commit_cid: Cid,
    since_data: Cid,
    w: W,
) -> Result<W, CarError> {
    let mut known = HashSet::new();
    let walked = Mst::load(store, since_data).and_then(|old| {
        old.walk(store, &mut |item| {
            known.insert(match item {
                WalkItem::Node { cid, .. } => cid,
                WalkItem::Leaf { value, .. } => value,
            });
            Ok(())
        })
    });
    match walked {
        Ok(()) | Err(MstError::MissingBlock(_)) => {}
        Err(e) => return Err(e.into()),
    }
    export(store, commit_cid, &known, w)
}

fn export<W: Write>(
    store: &dyn BlockStore,
    commit_cid: Cid,
    known: &HashSet<Cid>,
    w: W,
) -> Result<W, CarError> {
    let commit_bytes = store
        .get(&commit_cid)
        .map_err(MstError::from)?
        .ok_or(MstError::MissingBlock(commit_cid))?;
    let commit = Commit::from_cbor(&commit_bytes)?;
    let mut car = CarWriter::new(w, &[commit_cid])?;
    car.write_block(&commit_cid, &commit_bytes)?;
    let mst = Mst::load(store, commit.unsigned.data)?;
    let mut io_error = None;
    let result = mst.walk(store, &mut |item| {
        let written = match item {
            WalkItem::Node { cid, .. } | WalkItem::Leaf { value: cid, .. }
                if known.contains(&cid) =>
            {
                Ok(())
            }
            WalkItem::Node { cid, bytes } => car.write_block(&cid, bytes),
            WalkItem::Leaf { value, .. } => {
                let record = store.get(&value)?.ok_or(MstError::MissingBlock(value))?;
                car.write_block(&value, &record)
            }
        };
        written.map_err(|e| {
            io_error = Some(e);
            MstError::Conflict("write failed")
        })
    });
    if let Some(e) = io_error {
        return Err(e);
    }
    result?;
    car.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn car_with(blocks: &[(Cid, &[u8])]) -> Vec<u8> {
        let mut w = CarWriter::new(Vec::new(), &[blocks[0].0]).unwrap();
        for (cid, b) in blocks {
            w.write_block(cid, b).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn round_trip_and_rejections() {
        let a = Cid::for_cbor(b"\xa0");
        let b = Cid::for_raw(b"hello");
        let bytes = car_with(&[(a, b"\xa0"), (b, b"hello")]);
        let r = CarReader::new(bytes.as_slice()).unwrap();
        assert_eq!(r.roots(), &[a]);
        let blocks: Vec<_> = r.map(Result::unwrap).collect();
        assert_eq!(
            blocks,
            vec![
                (a, Bytes::from_static(b"\xa0")),
                (b, Bytes::from_static(b"hello"))
            ]
        );

        // A block whose bytes do not match its CID.
        let bad = car_with(&[(a, b"\xa1")]);
        let mut r = CarReader::new(bad.as_slice()).unwrap();
        assert!(matches!(r.next_block(), Err(CarError::HashMismatch(_))));
        // Truncated in the middle of a block.
        let mut r = CarReader::new(&bytes[..bytes.len() - 2]).unwrap();
        assert!(r.next_block().is_ok());
        assert!(r.next_block().is_err());
        // Not a CAR at all, and a block over the size limit.
        assert!(CarReader::new(&b"\x05hello"[..]).is_err());
        let mut r = CarReader::with_max_block(bytes.as_slice(), 0).unwrap();
        assert!(r.next_block().is_ok());
        let big = car_with(&[(Cid::for_raw(&[0u8; 200]), &[0u8; 200])]);
        let mut r = CarReader::with_max_block(big.as_slice(), 100).unwrap();
        assert!(matches!(r.next_block(), Err(CarError::Block(_))));
    }
}
