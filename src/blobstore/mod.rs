//! Content-addressed blob storage over `OpenDAL`.
//!
//! One object per digest for the whole node (`blobs/<algorithm>/<2 hex>/<hex>`), shared by every
//! repository. Uploads are written as numbered parts under `uploads/<id>/`, hashed while they
//! stream, and moved to their final key only after the caller has checked the digest, so a digest
//! key never holds anything but the bytes that hash to it.
//!
//! Imports `oci` (digests, upload ids), and `tls`/`http_client` for the S3 client's TLS; never
//! the index, `appview`, `pds`, `config` or anything that serves HTTP.

mod fs_write;
mod fsck;
mod list;
mod migrate;
pub mod pins;
mod range;
mod s3;

use std::io;
use std::ops::Range;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt, TryStreamExt};
use opendal::{Capability, ErrorKind, Operator};

pub use crate::oci::digest::{Algorithm, Digest, DigestError, Digester};
pub use fsck::{BadObject, FsckReport, QUARANTINE};
pub use list::ObjectLister;
pub use migrate::{MigrateReport, Step};
pub use pins::{PinGuard, Pins};
pub use range::{ByteRange, RangeError};
pub use s3::{MULTIPART_CHUNK, S3Settings};
// The OCI model owns these identifiers; the store names its objects by them.
pub use crate::oci::name::UploadId;

/// Writes to the backend are coalesced to this size: fewer, larger writes cost far less CPU
/// than one write per network frame, and memory stays bounded by it per upload.
const WRITE_CHUNK: usize = 1 << 20;
/// Filesystem reads are fetched in pieces of this size (object stores stream one ranged `GET`).
const READ_CHUNK: usize = 1 << 20;

/// What can go wrong in the blob store.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob not found")]
    NotFound,
    #[error("storage is full")]
    StorageFull,
    #[error("request body failed: {0}")]
    Body(String),
    #[error("storage backend: {0}")]
    Backend(#[source] opendal::Error),
}

impl From<opendal::Error> for BlobError {
    fn from(e: opendal::Error) -> Self {
        if e.kind() == ErrorKind::NotFound {
            return BlobError::NotFound;
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
        while let Some(s) = source {
            if s.downcast_ref::<io::Error>()
                .is_some_and(|io| io.kind() == io::ErrorKind::StorageFull)
            {
                return BlobError::StorageFull;
            }
            source = s.source();
        }
        BlobError::Backend(e)
    }
}

/// The node's blob store.
#[derive(Clone)]
pub struct BlobStore {
    op: Operator,
    capability: Capability,
    /// Writes go to the backend in pieces of this size (S3 multipart parts); `None`: as they
    /// come.
    multipart_chunk: Option<usize>,
    /// Blob reads answer with presigned URLs valid this long (`storage.redirect`).
    redirect_ttl: Option<std::time::Duration>,
    /// Requests' pins and the collector's claims on digests, shared by every clone.
    pins: std::sync::Arc<Pins>,
    /// The directory of the filesystem backend, whose upload parts are written directly
    /// (`fs_write.rs`); `None` for the others.
    fs_root: Option<std::path::PathBuf>,
}

impl BlobStore {
    /// A store over any `OpenDAL` operator.
    #[must_use]
    pub fn new(op: Operator) -> BlobStore {
        let capability = op.info().capability();
        BlobStore {
            op,
            capability,
            multipart_chunk: None,
            redirect_ttl: None,
            pins: std::sync::Arc::default(),
            fs_root: None,
        }
    }

    /// The pins that keep blobs a request relies on from the collector (see [`pins`]).
    #[must_use]
    pub fn pins(&self) -> &std::sync::Arc<Pins> {
        &self.pins
    }

    /// A store in a local directory. Every object is written to a temporary file, synced and
    /// renamed into place, so a crash never leaves a partial object under its final name.
    pub fn filesystem(root: &Path) -> Result<BlobStore, BlobError> {
        let text = root.to_string_lossy();
        let atomic = format!("{}/.partial", text.trim_end_matches('/'));
        let builder = opendal::services::Fs::default()
            .root(&text)
            .atomic_write_dir(&atomic);
        let mut store = BlobStore::new(Operator::new(builder)?);
        store.fs_root = Some(root.to_path_buf());
        Ok(store)
    }

    /// A store held in memory (tests, and nodes that keep nothing).
    pub fn memory() -> Result<BlobStore, BlobError> {
        Ok(BlobStore::new(Operator::new(
            opendal::services::Memory::default(),
        )?))
    }

    fn blob_key(digest: &Digest) -> String {
        let hex = digest.hex();
        format!("blobs/{}/{}/{hex}", digest.algorithm().name(), &hex[..2])
    }

    fn part_key(id: UploadId, part: u32) -> String {
        format!("uploads/{id}/{part:08}")
    }

    fn upload_dir(id: UploadId) -> String {
        format!("uploads/{id}/")
    }

    /// Streams `body` into part number `part` of upload `id`, feeding every byte to `hasher`.
    /// Returns the number of bytes stored. A part that fails midway leaves nothing behind under
    /// its name (and `hasher` in no state to go on from); writing the same part number again
    /// replaces it.
    pub async fn append<S, E>(
        &self,
        id: UploadId,
        part: u32,
        body: S,
        hasher: &mut Digester,
    ) -> Result<u64, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        if let Some(root) = &self.fs_root {
            return fs_write::write_part(root, &Self::part_key(id, part), body, hasher).await;
        }
        let mut writer = self.writer(&Self::part_key(id, part)).await?;
        match copy_hashing(body, &mut writer, hasher).await {
            Ok(n) => {
                writer.close().await?;
                Ok(n)
            }
            Err(e) => {
                let _ = writer.abort().await;
                Err(e)
            }
        }
    }

    /// Streams part `part` of upload `id` (to send it on elsewhere).
    pub async fn open_part(
        &self,
        id: UploadId,
        part: u32,
    ) -> Result<opendal::FuturesBytesStream, BlobError> {
        self.read_object(&Self::part_key(id, part), ..).await
    }

    /// Hashes the first `parts` parts of an upload again (after a restart lost the in-memory
    /// hash state). Returns the hasher and the number of bytes read.
    pub async fn rehash(
        &self,
        id: UploadId,
        parts: u32,
        algorithm: Algorithm,
    ) -> Result<(Digester, u64), BlobError> {
        let mut hasher = Digester::new(algorithm);
        let mut size = 0u64;
        for part in 0..parts {
            let mut stream = self.read_object(&Self::part_key(id, part), ..).await?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| BlobError::Body(e.to_string()))?;
                hasher.update(&chunk);
                size += chunk.len() as u64;
            }
        }
        Ok((hasher, size))
    }

    /// Moves the first `parts` parts of upload `id` into place as `digest`. The caller must have
    /// checked that the parts hash to `digest`. If the blob already exists the parts are dropped.
    pub async fn commit(&self, id: UploadId, parts: u32, digest: &Digest) -> Result<(), BlobError> {
        let key = Self::blob_key(digest);
        if self.op.exists(&key).await? {
            return self.cancel(id).await;
        }
        match parts {
            0 => {
                self.op.write(&key, Bytes::new()).await?;
            }
            1 if self.capability.rename => self.op.rename(&Self::part_key(id, 0), &key).await?,
            // A server-side copy (S3 `CopyObject`): no byte passes through the node.
            1 if self.capability.copy && self.copyable(&Self::part_key(id, 0)).await? => {
                self.op.copy(&Self::part_key(id, 0), &key).await?;
            }
            _ => {
                let mut writer = self.writer(&key).await?;
                for part in 0..parts {
                    let stream = self.read_object(&Self::part_key(id, part), ..).await?;
                    let mut discard = Digester::new(Algorithm::Sha256);
                    if let Err(e) = copy_hashing(stream, &mut writer, &mut discard).await {
                        let _ = writer.abort().await;
                        return Err(e);
                    }
                }
                writer.close().await?;
            }
        }
        // The rename (or write) into place survives a power loss before the index names it.
        self.sync_dir_of(&key).await?;
        self.cancel(id).await
    }

    /// A writer that sends `multipart_chunk` pieces where the backend wants them.
    async fn writer(&self, key: &str) -> Result<opendal::Writer, BlobError> {
        Ok(match self.multipart_chunk {
            Some(chunk) => self.op.writer_with(key).chunk(chunk).await?,
            None => self.op.writer(key).await?,
        })
    }

    /// Whether the backend copies `key` in one call (S3 copies at most 5 GiB so).
    async fn copyable(&self, key: &str) -> Result<bool, BlobError> {
        if self.multipart_chunk.is_none() {
            return Ok(true);
        }
        Ok(self.op.stat(key).await?.content_length() <= s3::MAX_COPY_BYTES)
    }

    /// Removes everything an upload stored.
    pub async fn cancel(&self, id: UploadId) -> Result<(), BlobError> {
        Ok(self
            .op
            .delete_with(&Self::upload_dir(id))
            .recursive(true)
            .await?)
    }

    /// Upload ids that have parts in storage (to sweep the ones no session knows).
    pub async fn stored_uploads(&self) -> Result<Vec<UploadId>, BlobError> {
        let entries = match self.op.list("uploads/").await {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        Ok(entries
            .iter()
            .filter_map(|e| e.name().trim_end_matches('/').parse().ok())
            .collect())
    }

    /// Stores a small blob whose digest the caller computed (manifests).
    pub async fn put(&self, digest: &Digest, bytes: Bytes) -> Result<(), BlobError> {
        let key = Self::blob_key(digest);
        if !self.op.exists(&key).await? {
            self.op.write(&key, bytes).await?;
            self.sync_dir_of(&key).await?;
        }
        Ok(())
    }

    /// On the filesystem backend, the stored file of a blob, opened to read, with its length;
    /// `None` elsewhere or when it is missing (the streaming read then says why).
    pub async fn open_file(
        &self,
        digest: &Digest,
    ) -> Result<Option<(std::fs::File, u64)>, BlobError> {
        let Some(root) = &self.fs_root else {
            return Ok(None);
        };
        let path = root.join(Self::blob_key(digest));
        let opened = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(path)?;
            let len = file.metadata()?.len();
            Ok::<_, std::io::Error>((file, len))
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()));
        match opened.and_then(|opened| opened) {
            Ok(opened) => Ok(Some(opened)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(fs_write::io_failed(e)),
        }
    }

    /// On the filesystem backend, syncs the directory of `key`, so that an object renamed into
    /// place survives a power loss before anything names it; elsewhere nothing.
    async fn sync_dir_of(&self, key: &str) -> Result<(), BlobError> {
        let Some(root) = &self.fs_root else {
            return Ok(());
        };
        let path = root.join(key);
        tokio::task::spawn_blocking(move || fs_write::sync_parent(&path))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|synced| synced)
            .map_err(fs_write::io_failed)
    }

    /// Reads a small blob whole. When the size is known, [`BlobStore::read_range`] saves a stat.
    pub async fn get(&self, digest: &Digest) -> Result<Bytes, BlobError> {
        // A read without a range makes the fs backend allocate and zero a 2 MiB buffer per call;
        // reading the exact size does not.
        let size = self.stat(digest).await?.ok_or(BlobError::NotFound)?;
        self.read_range(digest, 0..size).await
    }

    /// The size of a stored blob, or `None`.
    pub async fn stat(&self, digest: &Digest) -> Result<Option<u64>, BlobError> {
        match self.op.stat(&Self::blob_key(digest)).await {
            Ok(meta) => Ok(Some(meta.content_length())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads `range` of a blob whole: for small ranges, one backend call instead of a stream.
    pub async fn read_range(&self, digest: &Digest, range: Range<u64>) -> Result<Bytes, BlobError> {
        Ok(self
            .op
            .read_with(&Self::blob_key(digest))
            .range(range)
            .await?
            .to_bytes())
    }

    /// Streams `range` of a blob. A blob missing from storage may surface as the stream's first
    /// error rather than here.
    pub async fn open(
        &self,
        digest: &Digest,
        range: Range<u64>,
    ) -> Result<impl Stream<Item = io::Result<Bytes>> + Send + Sync + 'static, BlobError> {
        self.read_object(&Self::blob_key(digest), range).await
    }

    async fn read_object(
        &self,
        key: &str,
        range: impl Into<opendal::BytesRange>,
    ) -> Result<opendal::FuturesBytesStream, BlobError> {
        // On a filesystem, reads of bounded pieces; from an object store one ranged `GET`
        // streamed through: a `GET` per piece costs a round trip and a request the server must
        // serve each (s3s-fs: 22 MiB/s for a 1 GiB pull in 1 MiB pieces).
        let reader = match self.multipart_chunk {
            None => self.op.reader_with(key).chunk(READ_CHUNK).await?,
            Some(_) => self.op.reader(key).await?,
        };
        Ok(reader.into_bytes_stream(range).await?)
    }

    /// Writes and removes a small object: proves the backend accepts writes right now.
    pub async fn probe(&self) -> Result<(), BlobError> {
        let key = format!("probe/{}", UploadId::random());
        self.op.write(&key, Bytes::from_static(b"probe")).await?;
        self.op.delete(&key).await?;
        Ok(())
    }

    /// Removes a blob from storage (garbage collection; the index decides when).
    pub async fn delete(&self, digest: &Digest) -> Result<(), BlobError> {
        Ok(self.op.delete(&Self::blob_key(digest)).await?)
    }
}

/// Copies a stream into `writer` in `WRITE_CHUNK` pieces, hashing every byte.
async fn copy_hashing<S, E>(
    body: S,
    writer: &mut opendal::Writer,
    hasher: &mut Digester,
) -> Result<u64, BlobError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    let mut body = std::pin::pin!(body.map_err(|e| BlobError::Body(e.to_string())));
    // Sized once per piece: growing it frame by frame would copy each piece several times.
    let mut pending = BytesMut::with_capacity(WRITE_CHUNK);
    let mut total = 0u64;
    while let Some(chunk) = body.try_next().await? {
        hasher.update(&chunk);
        total += chunk.len() as u64;
        if pending.is_empty() && chunk.len() >= WRITE_CHUNK {
            writer.write(chunk).await?;
            continue;
        }
        pending.extend_from_slice(&chunk);
        if pending.len() >= WRITE_CHUNK {
            writer.write(pending.split().freeze()).await?;
            pending.reserve(WRITE_CHUNK);
        }
    }
    if !pending.is_empty() {
        writer.write(pending.freeze()).await?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests;
