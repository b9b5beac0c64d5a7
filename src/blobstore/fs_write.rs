//! Upload parts on the filesystem backend, written without `OpenDAL`: the request's frames go
//! to a plain file as they came, a batch of about 1 MiB at a time in one blocking task that
//! hashes it and writes it with `writev`, so no byte is copied in user space and a batch costs
//! one hand-off to the blocking pool. No thread is held while the client is slow to send.
//!
//! The layout and the guarantees are the `OpenDAL` filesystem service's, which reads these
//! files back: the part is written under `.partial/`, synced, and renamed to its key (and the
//! key's directory synced), so a crash never leaves a partial file under the key, and a part
//! that fails leaves nothing (but for an empty file under `.partial/`, removed at the next
//! start, when the request is dropped while its file is being created).

use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, TryStreamExt};

use super::{BlobError, Digester};

/// Frames gathered into one batch (one blocking task, a few `writev` calls): large enough that
/// hand-offs and system calls are few, small enough that memory per upload stays bounded.
const BATCH_BYTES: usize = 1 << 20;
/// Most frames in one `writev` (the kernel's `IOV_MAX` is 1024).
const MAX_IOVECS: usize = 512;
/// Frames below this size are gathered into one piece before they are batched.
const SMALL_FRAME: usize = 16 << 10;

/// A part being written: its file, the hash so far, and its length.
struct Part {
    file: File,
    hasher: Digester,
    total: u64,
}

/// Streams `body` into the file `root/key` as described in the module, feeding every byte to
/// `hasher` (left as it was when the part fails). Returns the number of bytes written.
pub(super) async fn write_part<S, E>(
    root: &Path,
    key: &str,
    body: S,
    hasher: &mut Digester,
) -> Result<u64, BlobError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    let partial = root.join(".partial").join(format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    ));
    // Also when the request is dropped midway (the client went away).
    let mut leftover = Leftover(Some(partial.clone()));
    let part = write_into(&partial, root.join(key), body, hasher.clone()).await?;
    leftover.0 = None;
    *hasher = part.hasher;
    Ok(part.total)
}

/// Removes a partial file when dropped, unless it was taken out.
struct Leftover(Option<PathBuf>);

impl Drop for Leftover {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn write_into<S, E>(
    partial: &Path,
    target: PathBuf,
    body: S,
    hasher: Digester,
) -> Result<Part, BlobError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    let path = partial.to_path_buf();
    let mut part = blocking(move || {
        Ok(Part {
            file: create(&path)?,
            hasher,
            total: 0,
        })
    })
    .await?;
    let mut body = std::pin::pin!(body.map_err(|e| BlobError::Body(e.to_string())));
    let mut batch = Vec::new();
    let mut bytes = 0;
    // Frames smaller than this are copied together (a client sending tiny chunks must not
    // cost a hand-off per few hundred bytes); larger ones go as they came.
    let mut small = BytesMut::new();
    while let Some(frame) = body.try_next().await? {
        bytes += frame.len();
        if frame.len() < SMALL_FRAME {
            small.extend_from_slice(&frame);
            if small.len() >= SMALL_FRAME {
                batch.push(small.split().freeze());
            }
        } else {
            if !small.is_empty() {
                batch.push(small.split().freeze());
            }
            batch.push(frame);
        }
        if bytes >= BATCH_BYTES || batch.len() >= MAX_IOVECS {
            if !small.is_empty() {
                batch.push(small.split().freeze());
            }
            part = write_batch(part, std::mem::take(&mut batch)).await?;
            bytes = 0;
        }
    }
    if !small.is_empty() {
        batch.push(small.split().freeze());
    }
    if !batch.is_empty() {
        part = write_batch(part, batch).await?;
    }
    let path = partial.to_path_buf();
    blocking(move || {
        part.file.sync_all()?;
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::rename(&path, &target)?;
        sync_parent(&target)?;
        Ok(part)
    })
    .await
}

/// Syncs the directory that holds `path`, so a rename into it survives a power loss.
pub(super) fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// Hashes and writes one batch in the blocking pool.
async fn write_batch(mut part: Part, batch: Vec<Bytes>) -> Result<Part, BlobError> {
    blocking(move || {
        for frame in &batch {
            part.hasher.update(frame);
            part.total += frame.len() as u64;
        }
        write_all_vectored(&mut part.file, &batch)?;
        Ok(part)
    })
    .await
}

/// Runs `f` in the blocking pool; its I/O error as the store reports it.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T, BlobError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(io_failed(e)),
        Err(e) => Err(io_failed(io::Error::other(e.to_string()))),
    }
}

fn create(path: &Path) -> io::Result<File> {
    let open = || File::options().write(true).create_new(true).open(path);
    match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            open()
        }
        other => other,
    }
}

/// Writes every frame of `batch`, in as few `writev` calls as the kernel takes.
fn write_all_vectored(file: &mut File, batch: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|b| IoSlice::new(b)).collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// An I/O error as the store reports it (a full disk is [`BlobError::StorageFull`]).
pub(super) fn io_failed(e: io::Error) -> BlobError {
    if e.kind() == io::ErrorKind::StorageFull {
        return BlobError::StorageFull;
    }
    BlobError::from(
        opendal::Error::new(
            opendal::ErrorKind::Unexpected,
            "a file operation in the blob store failed",
        )
        .set_source(e),
    )
}
