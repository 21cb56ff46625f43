//! Uploads that fail are aborted (no orphaned multipart upload keeps costing storage), and a
//! planted object over the size limit is refused before its body is downloaded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};
use warmcache_core::bytes::Bytes;
use warmcache_core::{Backend, CacheKey, ErrorKind};
use warmcache_s3::S3Backend;

/// An in-memory store whose multipart uploads fail on their second part, and which records
/// whether the failed upload was aborted.
#[derive(Debug, Default)]
struct FailingParts {
    inner: InMemory,
    aborted: Arc<AtomicBool>,
}

impl fmt::Display for FailingParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FailingParts")
    }
}

#[derive(Debug)]
struct FailingUpload {
    parts: AtomicUsize,
    aborted: Arc<AtomicBool>,
}

#[async_trait]
impl MultipartUpload for FailingUpload {
    fn put_part(&mut self, _data: PutPayload) -> UploadPart {
        let n = self.parts.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if n >= 1 {
                Err(object_store::Error::Generic {
                    store: "FailingParts",
                    source: "injected part failure".into(),
                })
            } else {
                Ok(())
            }
        })
    }
    async fn complete(&mut self) -> object_store::Result<PutResult> {
        Err(object_store::Error::Generic {
            store: "FailingParts",
            source: "a part failed".into(),
        })
    }
    async fn abort(&mut self) -> object_store::Result<()> {
        self.aborted.store(true, Ordering::SeqCst);
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for FailingParts {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        _location: &Path,
        _opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Ok(Box::new(FailingUpload {
            parts: AtomicUsize::new(0),
            aborted: Arc::clone(&self.aborted),
        }))
    }
    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[test]
fn a_failed_multipart_upload_is_aborted() {
    let store = Arc::new(FailingParts::default());
    let aborted = Arc::clone(&store.aborted);
    let backend = S3Backend::from_store(store, "cache")
        .multipart_threshold(1 << 20)
        .part_size(5 << 20)
        .build()
        .unwrap();
    let key = CacheKey::from_bytes([1; 32]);
    let value = Bytes::from(vec![7u8; 48 << 20]);
    let err = futures::executor::block_on(backend.put(&key, value)).unwrap_err();
    assert!(err.to_string().contains("part"), "{err}");
    assert!(
        aborted.load(Ordering::SeqCst),
        "the failed upload was left open (an orphaned multipart upload)"
    );
}

#[test]
fn an_object_over_the_size_limit_is_refused_unread() {
    let store = Arc::new(InMemory::new());
    let backend = S3Backend::from_store(store.clone(), "cache")
        .max_value_size(1 << 20)
        .build()
        .unwrap();
    assert_eq!(backend.capabilities().max_value_size, Some(1 << 20));
    let key = CacheKey::from_bytes([2; 32]);
    let planted = backend.object_path(&key);
    futures::executor::block_on(store.put(&planted, PutPayload::from(vec![0u8; 3 << 20]))).unwrap();
    let err = futures::executor::block_on(backend.get(&key)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("limit"), "{err}");
    let err = futures::executor::block_on(backend.put(&key, Bytes::from(vec![0u8; 2 << 20])))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Capacity, "{err}");
}

#[test]
fn namespaces_keep_entries_of_different_secrets_apart() {
    use warmcache_core::Integrity;
    let store = Arc::new(InMemory::new());
    let open = |integrity: &Integrity| {
        S3Backend::from_store(store.clone(), "cache")
            .namespace(integrity.key_id())
            .build()
            .unwrap()
    };
    let fleet = open(&Integrity::keyed(b"the fleet's secret, at least 32 bytes"));
    let other = open(&Integrity::keyed(
        b"somebody else's secret, also long enough",
    ));
    let key = CacheKey::from_bytes([3; 32]);
    futures::executor::block_on(async {
        fleet.put(&key, Bytes::from_static(b"fleet")).await.unwrap();
        other.put(&key, Bytes::from_static(b"other")).await.unwrap();
        assert_eq!(
            fleet.get(&key).await.unwrap().as_deref(),
            Some(&b"fleet"[..])
        );
        assert_eq!(
            other.get(&key).await.unwrap().as_deref(),
            Some(&b"other"[..])
        );
        other.clear().await.unwrap();
        assert!(
            fleet.contains(&key).await.unwrap(),
            "another namespace's clear reached it"
        );
        assert_eq!(fleet.usage().await.unwrap().entries, 1);
    });
    assert!(fleet.object_path(&key).as_ref().starts_with("cache/k"));
    let err = S3Backend::from_store(store, "cache")
        .namespace("../escape")
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
}
