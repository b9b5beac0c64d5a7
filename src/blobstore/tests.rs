//! One suite, run against every backend the node ships with.

use super::*;

fn chunks(
    data: &[u8],
    size: usize,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + use<> {
    let pieces: Vec<_> = data
        .chunks(size)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures_util::stream::iter(pieces)
}

async fn read_all(store: &BlobStore, digest: &Digest, range: Range<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stream = std::pin::pin!(store.open(digest, range).await.unwrap());
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

async fn suite(store: BlobStore) {
    // A multi-part upload of data larger than the write chunk, in odd-sized pieces.
    let data: Vec<u8> = (0..3 * WRITE_CHUNK + 17)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let digest = Digest::of(Algorithm::Sha256, &data);
    let id = UploadId::random();
    let mut hasher = Digester::new(Algorithm::Sha256);
    let split = WRITE_CHUNK + 5;
    assert_eq!(
        store
            .append(id, 0, chunks(&data[..split], 4099), &mut hasher)
            .await
            .unwrap(),
        split as u64
    );
    assert_eq!(
        store
            .append(id, 1, chunks(&data[split..], 65536), &mut hasher)
            .await
            .unwrap(),
        (data.len() - split) as u64
    );
    assert_eq!(hasher.clone().finish(), digest);
    let (rehashed, size) = store.rehash(id, 2, Algorithm::Sha256).await.unwrap();
    assert_eq!(
        (rehashed.finish(), size),
        (digest.clone(), data.len() as u64)
    );
    assert_eq!(store.stored_uploads().await.unwrap(), vec![id]);
    assert_eq!(store.stat(&digest).await.unwrap(), None);
    store.commit(id, 2, &digest).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), Some(data.len() as u64));
    assert!(store.stored_uploads().await.unwrap().is_empty());
    assert_eq!(read_all(&store, &digest, 0..data.len() as u64).await, data);
    assert_eq!(read_all(&store, &digest, 10..20).await, &data[10..20]);

    // A single-part upload (renamed or copied into place) of a blob that is then deleted.
    let small = b"hello blob".to_vec();
    let small_digest = Digest::of(Algorithm::Sha512, &small);
    let id = UploadId::random();
    let mut hasher = Digester::new(Algorithm::Sha512);
    store
        .append(id, 0, chunks(&small, 3), &mut hasher)
        .await
        .unwrap();
    assert_eq!(hasher.finish(), small_digest);
    store.commit(id, 1, &small_digest).await.unwrap();
    assert_eq!(
        read_all(&store, &small_digest, 0..small.len() as u64).await,
        small
    );
    store.delete(&small_digest).await.unwrap();
    assert_eq!(store.stat(&small_digest).await.unwrap(), None);
    let missing = match store.open(&small_digest, 0..1).await {
        Err(e) => Err(e),
        Ok(stream) => std::pin::pin!(stream)
            .next()
            .await
            .unwrap()
            .map(drop)
            .map_err(|e| BlobError::Body(e.to_string())),
    };
    assert!(missing.is_err());

    // Committing a digest that already exists keeps one object and drops the parts.
    let id = UploadId::random();
    store
        .append(
            id,
            0,
            chunks(&data, 1 << 16),
            &mut Digester::new(Algorithm::Sha256),
        )
        .await
        .unwrap();
    store.commit(id, 1, &digest).await.unwrap();
    assert!(store.stored_uploads().await.unwrap().is_empty());

    // An empty blob, and a cancelled upload.
    let empty = Digest::of(Algorithm::Sha256, b"");
    store.commit(UploadId::random(), 0, &empty).await.unwrap();
    assert_eq!(store.stat(&empty).await.unwrap(), Some(0));
    let id = UploadId::random();
    store
        .append(
            id,
            0,
            chunks(b"abc", 1),
            &mut Digester::new(Algorithm::Sha256),
        )
        .await
        .unwrap();
    store.cancel(id).await.unwrap();
    assert!(store.stored_uploads().await.unwrap().is_empty());

    // A body that fails midway leaves no part behind.
    let id = UploadId::random();
    let failing = futures_util::stream::iter(vec![
        Ok(Bytes::from_static(b"abc")),
        Err("connection reset"),
    ]);
    let err = store
        .append(id, 0, failing, &mut Digester::new(Algorithm::Sha256))
        .await;
    assert!(matches!(err, Err(BlobError::Body(_))));
    assert!(store.rehash(id, 1, Algorithm::Sha256).await.is_err());

    // Small blobs written whole.
    let manifest = Bytes::from_static(b"{\"schemaVersion\":2}");
    let md = Digest::of(Algorithm::Sha256, &manifest);
    store.put(&md, manifest.clone()).await.unwrap();
    assert_eq!(store.get(&md).await.unwrap(), manifest);
}

#[tokio::test]
async fn filesystem_backend() {
    let dir = tempfile::tempdir().unwrap();
    suite(BlobStore::filesystem(dir.path()).unwrap()).await;
    // Nothing partial is left beside the objects.
    let partial = dir.path().join(".partial");
    assert_eq!(std::fs::read_dir(partial).map_or(0, Iterator::count), 0);
}

#[tokio::test]
async fn memory_backend() {
    suite(BlobStore::memory().unwrap()).await;
}
