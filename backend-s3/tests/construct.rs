//! Construction from every supported kind of URL and from an existing store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use futures::executor::block_on;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use warmcache_core::{Backend, CacheKey, ErrorKind};
use warmcache_s3::S3Backend;

#[test]
fn from_an_existing_store_under_a_prefix() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let b = S3Backend::from_store(Arc::clone(&store), "team/cache")
        .build()
        .unwrap();
    let key = CacheKey::from_bytes([0x3c; 32]);
    block_on(b.put(&key, "v".into())).unwrap();
    let path = Path::from(format!("team/cache/3c/{}", key.to_hex()));
    assert_eq!(b.object_path(&key), path);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stored = rt.block_on(async { store.get(&path).await.unwrap().bytes().await.unwrap() });
    assert_eq!(&stored[..], b"v");
    // A foreign object under the prefix is neither listed nor cleared.
    rt.block_on(store.put(&Path::from("team/cache/README"), "hi".into()))
        .unwrap();
    assert_eq!(block_on(b.usage()).unwrap().entries, 1);
    block_on(b.clear()).unwrap();
    assert_eq!(block_on(b.usage()).unwrap().entries, 0);
    assert!(
        rt.block_on(store.head(&Path::from("team/cache/README")))
            .is_ok()
    );
    let caps = b.capabilities();
    assert!(caps.persistent && caps.shared);
}

#[test]
fn every_scheme_builds_or_fails_with_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let file_url = format!("file://{}", dir.path().join("objects").display());
    let file = S3Backend::builder(&file_url).build().unwrap();
    assert!(file.capabilities().persistent && !file.capabilities().shared);
    let memory = S3Backend::builder("memory://").build().unwrap();
    assert!(!memory.capabilities().persistent);
    let s3 = S3Backend::builder("s3://bucket/prefix")
        .region("eu-west-1")
        .build()
        .unwrap();
    assert!(s3.capabilities().shared);
    assert_eq!(s3.prefix().as_ref(), "prefix");
    for url in ["gs://bucket/prefix", "az://container/prefix"] {
        // Without provider credentials in the environment these may refuse to build; either way
        // no panic, and an error says what it could not use.
        if let Err(e) = S3Backend::builder(url).build() {
            assert_eq!(e.kind(), ErrorKind::Config, "{url}: {e}");
            assert!(e.to_string().contains(url), "{e}");
        }
    }
    // WebDAV: shared and persistent, the URL's path is the prefix, and it has no leases.
    let dav = S3Backend::builder("https://dav.example.com/team/cache")
        .build()
        .unwrap();
    let caps = dav.capabilities();
    assert!(caps.shared && caps.persistent && !caps.coordinates);
    assert_eq!(dav.prefix().as_ref(), "team/cache");
    let err = S3Backend::builder("http://dav.example.com/cache")
        .coordinates(true)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("conditional create"), "{err}");
    let err = S3Backend::builder("https://dav.example.com/cache")
        .option("no_such_option", "1")
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("no_such_option"), "{err}");
    let err = S3Backend::builder("ftp://example.com/cache")
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("https://host/path"), "{err}");
    let err = S3Backend::builder("memory://")
        .part_size(1024)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}

#[test]
fn works_inside_a_tokio_runtime_and_from_a_plain_thread() {
    let b = Arc::new(S3Backend::builder("memory://").build().unwrap());
    let key = CacheKey::from_bytes([1; 32]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(b.put(&key, "inside".into())).unwrap();
    let b2 = Arc::clone(&b);
    let got = std::thread::spawn(move || block_on(b2.get(&key)).unwrap())
        .join()
        .unwrap();
    assert_eq!(got.as_deref(), Some(&b"inside"[..]));
    // Dropping the backend inside a runtime does not panic.
    rt.block_on(async move { drop(b) });
}
