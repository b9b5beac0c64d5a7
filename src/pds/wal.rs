//! `pds.wal`: the redo log that makes a group of commits durable with one small sequential
//! write and `fdatasync`, instead of a durable redb transaction (which writes and syncs every
//! page the group touched, 1–3 ms here against ≈0.2 ms for the log).
//!
//! The committer writes each group into redb without syncing it (`Durability::None`); before
//! that transaction commits, the same writes are appended here and synced, and only then are
//! writers answered. Every second of commits, or when the log is full, a group's transaction is
//! made durable instead — which makes every earlier one durable too — and the log starts again
//! from the top. Each group transaction also writes its group number to redb, so opening the
//! store after a crash replays the logged groups after the last one redb kept.
//!
//! The file starts with a header, `b"AWH1"`, the log's epoch (u64 LE) and the CRC-32 of those
//! twelve bytes, written and synced when the store opens; entries follow from [`LOG_START`].
//! `pds.redb` records (durably, before any group rides on the log) the epoch of the log that
//! holds its unsynced groups, so a start can tell a missing, emptied or foreign log from the one
//! it needs (see `store/commit.rs`).
//!
//! An entry is `b"AWL1"`, the group number (u64 LE), the payload length (u32 LE), the CRC-32 of
//! those twelve bytes and the payload (u32 LE), then the payload. New entries are written over
//! old ones, so the log is read from the top while each entry is whole and numbered one after
//! the previous: a stale or torn entry ends it. The file grows in zeroed 1 MiB steps and is not
//! shrunk, so a sync after writing an entry never has file metadata to write.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

const MAGIC: &[u8; 4] = b"AWL1";
const HEADER: usize = 20;
const FILE_MAGIC: &[u8; 4] = b"AWH1";
/// Where entries begin, after the file header.
pub const LOG_START: u64 = 64;
/// The file grows by this much at a time, zero-filled and synced once.
const STEP: u64 = 1 << 20;
/// A group that would take the log past this size is made durable in redb instead.
const MAX_BYTES: u64 = 32 << 20;
/// How long groups may ride on the log before one is made durable in redb.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// The log file and where the next entry goes.
pub struct Wal {
    file: File,
    /// Where the next entry is written.
    pos: u64,
    /// How far the file is zero-filled and synced.
    len: u64,
    /// When redb last made a group durable itself.
    checkpointed: Instant,
    /// Set after a failed write: every later group is made durable in redb.
    broken: bool,
}

/// What the top of the file said when it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogHeader {
    /// There was no file.
    Missing,
    /// The file was empty, or its header all zeros.
    Empty,
    /// No valid header: written over, damaged, or not a log.
    Damaged,
    /// A log from before headers existed (entries from the top).
    Legacy,
    /// A log with this epoch.
    Epoch(u64),
}

impl std::fmt::Display for LogHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogHeader::Missing => f.write_str("is missing"),
            LogHeader::Empty => f.write_str("is empty"),
            LogHeader::Damaged => f.write_str("has no valid header (written over or damaged)"),
            LogHeader::Legacy => f.write_str("is in the format of an older atcr"),
            LogHeader::Epoch(e) => write!(f, "is the log of epoch {e:016x}"),
        }
    }
}

/// A log as opened: its header and the entries it holds.
pub struct Opened {
    pub header: LogHeader,
    pub entries: Vec<Entry>,
}

/// A logged group: its number and payload.
pub struct Entry {
    pub group: u64,
    pub payload: Vec<u8>,
}

impl Wal {
    /// Opens (or creates) the log at `path` and reads its header and entries, in order. Nothing
    /// is written: [`Wal::reset`] starts the log of this run.
    pub fn open(path: &Path) -> std::io::Result<(Wal, Opened)> {
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        if !existed && let Some(dir) = path.parent() {
            // The new name is durable before any group relies on the file.
            File::open(dir)?.sync_all()?;
        }
        let len = file.metadata()?.len();
        let header = if existed {
            read_header(&file, len)?
        } else {
            LogHeader::Missing
        };
        let entries = match header {
            LogHeader::Epoch(_) => read_entries(&file, LOG_START, len)?,
            LogHeader::Legacy => read_entries(&file, 0, len)?,
            _ => Vec::new(),
        };
        let wal = Wal {
            file,
            pos: LOG_START,
            len,
            checkpointed: Instant::now(),
            broken: false,
        };
        Ok((wal, Opened { header, entries }))
    }

    /// Starts the log again as epoch `epoch`: writes and syncs the header. Entries of the old
    /// log past it are stale from now on (they do not follow the new ones).
    pub fn reset(&mut self, epoch: u64) -> std::io::Result<()> {
        self.grow_to(LOG_START + HEADER as u64)?;
        let mut header = [0u8; LOG_START as usize];
        header[..4].copy_from_slice(FILE_MAGIC);
        header[4..12].copy_from_slice(&epoch.to_le_bytes());
        let sum = checksum(&header[..12], &[]);
        header[12..16].copy_from_slice(&sum.to_le_bytes());
        self.file.write_all_at(&header, 0)?;
        self.file.sync_data()?;
        self.checkpointed();
        Ok(())
    }

    /// Whether the next group should be made durable in redb rather than logged.
    #[must_use]
    pub fn checkpoint_due(&self) -> bool {
        self.broken || self.checkpointed.elapsed() >= CHECKPOINT_EVERY
    }

    /// Appends `payload` as group `group` and syncs it. `Ok(false)`: it does not fit, nothing
    /// was written. After an error the log is not used again until the process restarts.
    pub fn append(&mut self, group: u64, payload: &[u8]) -> std::io::Result<bool> {
        let Ok(size) = u32::try_from(payload.len()) else {
            return Ok(false);
        };
        let end = self.pos + HEADER as u64 + u64::from(size);
        if end > MAX_BYTES {
            return Ok(false);
        }
        let written = self.grow_to(end).and_then(|()| {
            let mut entry = Vec::with_capacity(HEADER + payload.len());
            entry.extend_from_slice(MAGIC);
            entry.extend_from_slice(&group.to_le_bytes());
            entry.extend_from_slice(&size.to_le_bytes());
            entry.extend_from_slice(&checksum(&entry[4..16], payload).to_le_bytes());
            entry.extend_from_slice(payload);
            self.file.write_all_at(&entry, self.pos)?;
            self.file.sync_data()
        });
        if let Err(e) = written {
            self.broken = true;
            return Err(e);
        }
        self.pos = end;
        Ok(true)
    }

    /// Unwrites the entry last appended (its transaction failed), so it is never replayed.
    pub fn retract(&mut self, group: u64, payload: &[u8]) {
        let start = self.pos - HEADER as u64 - payload.len() as u64;
        let cleared = self
            .file
            .write_all_at(&[0; 4], start)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = cleared {
            tracing::error!(error = %e, group, "could not clear a failed group from pds.wal");
        }
        self.broken = true;
    }

    /// Redb has made every logged group durable: start again from the top.
    pub fn checkpointed(&mut self) {
        self.pos = LOG_START;
        self.checkpointed = Instant::now();
    }

    /// Zero-fills and syncs the file up to at least `end`, a step at a time.
    fn grow_to(&mut self, end: u64) -> std::io::Result<()> {
        if end <= self.len {
            return Ok(());
        }
        let target = end.div_ceil(STEP) * STEP;
        let zeros = vec![0u8; STEP as usize];
        let mut at = self.len;
        while at < target {
            let n = (target - at).min(STEP);
            self.file.write_all_at(&zeros[..n as usize], at)?;
            at += n;
        }
        self.file.sync_all()?;
        self.len = target;
        Ok(())
    }
}

fn checksum(header: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header);
    hasher.update(payload);
    hasher.finalize()
}

/// What the first bytes of a file of `len` bytes say.
fn read_header(file: &File, len: u64) -> std::io::Result<LogHeader> {
    if len < 16 {
        return Ok(if len == 0 {
            LogHeader::Empty
        } else {
            LogHeader::Damaged
        });
    }
    let mut header = [0u8; 16];
    file.read_exact_at(&mut header, 0)?;
    let epoch = u64::from_le_bytes(header[4..12].try_into().unwrap_or_default());
    let sum = u32::from_le_bytes(header[12..16].try_into().unwrap_or_default());
    Ok(match &header[..4] {
        m if m == FILE_MAGIC && checksum(&header[..12], &[]) == sum => LogHeader::Epoch(epoch),
        m if m == MAGIC => LogHeader::Legacy,
        _ if header.iter().all(|&b| b == 0) => LogHeader::Empty,
        _ => LogHeader::Damaged,
    })
}

/// The entries from `start` while each is whole and numbered one after the last.
fn read_entries(file: &File, start: u64, len: u64) -> std::io::Result<Vec<Entry>> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut pos = start;
    let mut header = [0u8; HEADER];
    while pos + HEADER as u64 <= len {
        file.read_exact_at(&mut header, pos)?;
        let (magic, rest) = header.split_at(4);
        let group = u64::from_le_bytes(rest[..8].try_into().unwrap_or_default());
        let size = u32::from_le_bytes(rest[8..12].try_into().unwrap_or_default());
        let sum = u32::from_le_bytes(rest[12..16].try_into().unwrap_or_default());
        let end = pos + HEADER as u64 + u64::from(size);
        let follows = entries.last().is_none_or(|last| last.group + 1 == group);
        if magic != MAGIC || !follows || end > len {
            break;
        }
        let mut payload = vec![0u8; size as usize];
        file.read_exact_at(&mut payload, pos + HEADER as u64)?;
        if checksum(&rest[..12], &payload) != sum {
            break;
        }
        entries.push(Entry { group, payload });
        pos = end;
    }
    Ok(entries)
}

/// Builds a payload: length-prefixed byte strings and fixed-width numbers.
#[derive(Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    pub fn byte(&mut self, b: u8) {
        self.0.push(b);
    }

    pub fn u64(&mut self, n: u64) {
        self.0.extend_from_slice(&n.to_le_bytes());
    }

    pub fn bytes(&mut self, b: &[u8]) {
        let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_le_bytes());
        self.0.extend_from_slice(b);
    }
}

/// Reads a payload written by [`Writer`]; `None` when it ends early or says too much.
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    pub fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    pub fn u64(&mut self) -> Option<u64> {
        self.take(8)?.try_into().ok().map(u64::from_le_bytes)
    }

    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?);
        self.take(len as usize)
    }

    pub fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &Path) -> (Wal, Vec<u64>) {
        let (mut wal, opened) = Wal::open(path).unwrap();
        if opened.header == LogHeader::Missing {
            wal.reset(7).unwrap();
        }
        (wal, opened.entries.iter().map(|e| e.group).collect())
    }

    #[test]
    fn entries_read_back_in_order_until_a_stale_or_torn_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pds.wal");
        let (mut wal, groups) = open(&path);
        assert!(groups.is_empty());
        for g in 1..=5 {
            assert!(wal.append(g, &vec![g as u8; 100 * g as usize]).unwrap());
        }
        drop(wal);
        let (mut wal, groups) = open(&path);
        assert_eq!(groups, [1, 2, 3, 4, 5]);

        // From the top again: the new entries end where the stale ones begin.
        wal.checkpointed();
        assert!(wal.append(6, b"six").unwrap());
        assert!(wal.append(7, b"seven").unwrap());
        drop(wal);
        let (wal, opened) = Wal::open(&path).unwrap();
        assert_eq!(opened.header, LogHeader::Epoch(7));
        let got: Vec<_> = opened
            .entries
            .iter()
            .map(|e| (e.group, e.payload.clone()))
            .collect();
        assert_eq!(got, [(6, b"six".to_vec()), (7, b"seven".to_vec())]);
        drop(wal);

        // A torn payload ends the log at the entry before it.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(b"X", LOG_START + HEADER as u64 + 3 + HEADER as u64 + 2)
            .unwrap();
        assert_eq!(open(&path).1, [6]);
    }

    #[test]
    fn a_retracted_entry_is_not_read_and_a_full_log_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pds.wal");
        let (mut wal, _) = open(&path);
        assert!(wal.append(1, b"one").unwrap());
        assert!(wal.append(2, b"two").unwrap());
        wal.retract(2, b"two");
        assert!(wal.checkpoint_due(), "a log that failed is not used again");
        assert_eq!(open(&path).1, [1]);

        let (mut wal, _) = open(&path);
        let big = vec![7u8; (MAX_BYTES / 2) as usize];
        assert!(wal.append(1, &big).unwrap());
        assert!(!wal.append(2, &big).unwrap(), "past the cap: redb instead");
        assert_eq!(std::fs::metadata(&path).unwrap().len() % STEP, 0);
    }

    #[test]
    fn headers_tell_missing_empty_damaged_and_foreign_logs_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pds.wal");
        let header = |path: &Path| Wal::open(path).unwrap().1.header;
        assert_eq!(header(&path), LogHeader::Missing);
        assert_eq!(
            header(&path),
            LogHeader::Empty,
            "created empty by the last open"
        );
        let (mut wal, _) = Wal::open(&path).unwrap();
        wal.reset(0xfeed).unwrap();
        assert!(wal.append(1, b"one").unwrap());
        drop(wal);
        let (_, opened) = Wal::open(&path).unwrap();
        assert_eq!(opened.header, LogHeader::Epoch(0xfeed));
        assert_eq!(opened.entries.len(), 1);

        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&[0xff], 5).unwrap();
        assert_eq!(header(&path), LogHeader::Damaged);
        file.write_all_at(&[0; 16], 0).unwrap();
        assert_eq!(header(&path), LogHeader::Empty);
        file.set_len(0).unwrap();
        assert_eq!(header(&path), LogHeader::Empty);
        file.write_all_at(b"AWL1", 0).unwrap();
        file.write_all_at(&[0; 16], 4).unwrap();
        assert_eq!(header(&path), LogHeader::Legacy);
    }

    #[test]
    fn payloads_read_back_and_short_ones_are_refused() {
        let mut w = Writer::default();
        w.byte(3);
        w.u64(42);
        w.bytes(b"did:plc:abc");
        let mut r = Reader(&w.0);
        assert_eq!(r.byte(), Some(3));
        assert_eq!(r.u64(), Some(42));
        assert_eq!(r.str(), Some("did:plc:abc"));
        assert!(r.is_empty());
        let cut = &w.0[..w.0.len() - 1];
        let mut r = Reader(cut);
        r.byte();
        r.u64();
        assert_eq!(r.bytes(), None);
    }
}
