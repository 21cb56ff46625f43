//! Bad input: malformed URLs, unknown schemes and options, unreachable endpoints, missing
//! buckets, garbage and truncated responses. Clear errors, never a credential in a message.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use futures::executor::block_on;
use warmcache_core::{Backend, CacheKey, ErrorKind, Tier, Tiered};
use warmcache_s3::S3Backend;

const SECRET: &str = "do-not-print-this-secret";

fn key() -> CacheKey {
    CacheKey::from_bytes([5; 32])
}

#[test]
fn malformed_url_is_a_config_error_naming_it() {
    let err = S3Backend::builder("s3//no-scheme").build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("s3//no-scheme"), "{err}");
}

#[test]
fn unknown_scheme_is_a_config_error() {
    let err = S3Backend::builder("ftp://host/path").build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("unsupported URL"), "{err}");
}

#[test]
fn unknown_option_names_the_key_not_the_value() {
    let err = S3Backend::builder("s3://bucket/prefix")
        .option("aws_no_such_option", SECRET)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let msg = err.to_string();
    assert!(msg.contains("aws_no_such_option"), "{msg}");
    assert!(!msg.contains(SECRET), "{msg}");
}

#[test]
fn credentials_never_appear_in_errors_or_debug_output() {
    let builder = S3Backend::builder(format!("s3://AKIDEXAMPLE:{SECRET}@bucket/p"))
        .credentials("AKIDEXAMPLE", SECRET);
    assert!(!format!("{builder:?}").contains(SECRET));
    let err = S3Backend::builder(format!("s3:/AKIDEXAMPLE:{SECRET}@bucket")).build();
    if let Err(e) = err {
        assert!(!e.to_string().contains(SECRET), "{e}");
    }
    // An unreachable endpoint with credentials set: the failure message has no secret.
    let b = S3Backend::builder("s3://bucket/p")
        .endpoint("http://127.0.0.1:9")
        .allow_http(true)
        .credentials("AKIDEXAMPLE", SECRET)
        .retries(0, Duration::from_secs(1))
        .connect_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let e = block_on(b.get(&key())).unwrap_err();
    assert!(!e.to_string().contains(SECRET), "{e}");
    assert!(!format!("{e:?}").contains(SECRET), "{e:?}");
}

#[test]
fn unreachable_endpoint_is_unavailable() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let b = S3Backend::builder("s3://bucket/p")
        .endpoint(format!("http://127.0.0.1:{port}"))
        .allow_http(true)
        .credentials("a", "b")
        .retries(1, Duration::from_secs(2))
        .connect_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let err = block_on(b.check()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_transient());
    let err = block_on(b.put(&key(), "v".into())).unwrap_err();
    assert!(err.to_string().contains("s3 backend: put"), "{err}");
}

#[test]
fn missing_bucket_is_reported_by_check() {
    let moto = common::shared();
    let b = common::backend(&moto.endpoint(), "wc-bucket-that-does-not-exist", "p");
    let err = block_on(b.check()).unwrap_err();
    assert!(
        !err.is_transient() || err.kind() == ErrorKind::Unavailable,
        "{err}"
    );
    assert!(err.to_string().contains("s3 backend: open"), "{err}");
    // A read from a missing bucket is a miss or an error, never a panic.
    let _ = block_on(b.get(&key()));
}

#[test]
fn wrong_credentials_are_a_clear_error() {
    // With this setting moto checks signatures against its (empty) IAM user list, like AWS.
    let moto = common::Moto::start_with_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    let b = S3Backend::builder("s3://some-bucket/p")
        .endpoint(moto.endpoint())
        .allow_http(true)
        .region("us-east-1")
        .credentials("AKIDWRONG", SECRET)
        .retries(0, Duration::from_secs(2))
        .build()
        .unwrap();
    let err = block_on(b.check()).unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Config, "{msg}");
    assert!(msg.contains("credentials"), "{msg}");
    assert!(!msg.contains(SECRET), "{msg}");
}

/// Serves every request with `response`, forever, on a free port.
fn canned_server(response: Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 8192];
            let _ = s.read(&mut buf);
            let _ = s.write_all(&response);
        }
    });
    port
}

fn tiered_over(port: u16) -> Tiered {
    let b = S3Backend::builder("s3://bucket/p")
        .endpoint(format!("http://127.0.0.1:{port}"))
        .allow_http(true)
        .credentials("a", "b")
        .retries(0, Duration::from_secs(2))
        .build()
        .unwrap();
    Tiered::builder()
        .tier(Tier::new(Arc::new(b)).timeout(Duration::from_secs(10)))
        .build()
}

#[test]
fn garbage_body_is_a_counted_miss() {
    let body = b"this is not an envelope, just some bytes a broken proxy sent".to_vec();
    let mut response = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Sat, 21 Nov 2026 05:00:00 GMT\r\nETag: \"abc\"\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    let tiers = tiered_over(canned_server(response));
    assert!(block_on(tiers.get(&key(), 1)).is_none());
    let stats = &tiers.stats()[0];
    assert_eq!(stats.hits, 0);
    assert!(stats.corrupt + stats.errors >= 1, "{stats:?}");
}

#[test]
fn truncated_body_is_a_counted_miss() {
    let response = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nLast-Modified: Sat, 21 Nov 2026 05:00:00 GMT\r\nETag: \"abc\"\r\nConnection: close\r\n\r\nonly a few bytes".to_vec();
    let tiers = tiered_over(canned_server(response));
    assert!(block_on(tiers.get(&key(), 1)).is_none());
    let stats = &tiers.stats()[0];
    assert_eq!(stats.hits, 0);
    assert!(stats.corrupt + stats.errors >= 1, "{stats:?}");
}
