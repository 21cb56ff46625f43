//! The S3 backend under each fault of a real network and a real store, one at a time, through
//! the fault proxy in front of moto: every operation either does all of its work or fails with
//! an error, within its timeout. A read never returns part of an object; a write cut off never
//! leaves part of one in the bucket.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use crate::faults::{Fault, FaultProxy};

use std::time::{Duration, Instant};

use futures::executor::block_on;
use warmcache_core::bytes::Bytes;
use warmcache_core::{Backend, CacheKey};
use warmcache_s3::S3Backend;

/// Each request's timeout in this test; no retries, so each fault meets one request.
const TIMEOUT: Duration = Duration::from_millis(1500);

/// What an operation under any fault may take at most: its timeout, and time to connect and
/// give up (a fault that hangs for longer, a stall or a partition, outlasts this).
const BOUND: Duration = Duration::from_secs(4);

fn through(endpoint: &str, bucket: &str) -> S3Backend {
    S3Backend::builder(format!("s3://{bucket}/faults"))
        .endpoint(endpoint)
        .allow_http(true)
        .region("us-east-1")
        .credentials("testing", "testing-secret")
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        .retries(0, TIMEOUT)
        .build()
        .unwrap()
}

/// A value of `len` bytes that differs for every `seed`.
fn value(seed: u8, len: usize) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<u8>>(),
    )
}

/// Runs `op`, asserting it ends within [`BOUND`].
fn bounded<T>(what: &str, fault: Fault, op: impl std::future::Future<Output = T>) -> T {
    let started = Instant::now();
    let out = block_on(op);
    assert!(
        started.elapsed() < BOUND,
        "{what} under {fault:?} took {:?}",
        started.elapsed()
    );
    out
}

#[test]
fn every_fault_fails_an_operation_or_leaves_it_whole() {
    let moto = common::shared();
    let bucket = common::unique_bucket("faults");
    common::create_bucket(moto.port(), &bucket);
    let direct = through(&moto.endpoint(), &bucket);
    let faults = [
        (Fault::Pass, true),
        (Fault::Latency(Duration::from_millis(300)), true),
        (Fault::Bandwidth(4 << 20), true),
        (Fault::Reset, false),
        (Fault::Stall(Duration::from_secs(20)), false),
        (Fault::Truncate, false),
        (Fault::Status(500), false),
        (Fault::Status(503), false),
        (Fault::CutRequest, false),
        (
            Fault::Partition(Instant::now() + Duration::from_secs(30)),
            false,
        ),
    ];
    for (seed, (fault, succeeds)) in faults.into_iter().enumerate() {
        let seed = u8::try_from(seed).unwrap();
        let proxy = FaultProxy::start(moto.port(), move |_| fault);
        let faulty = through(&proxy.endpoint(), &bucket);
        let key = CacheKey::from_bytes([seed + 1; 32]);
        let value = value(seed, 600 << 10);

        let put = bounded("a put", fault, faulty.put(&key, value.clone()));
        let held = block_on(direct.get(&key)).unwrap();
        assert!(
            held.is_none() || held.as_ref() == Some(&value),
            "under {fault:?} the bucket holds {} bytes of a {}-byte value",
            held.map_or(0, |h| h.len()),
            value.len()
        );
        // A put whose answer was lost may have landed: the client cannot know, and need not.
        assert!(put.is_err() || held.is_some(), "{fault:?}: {put:?}");
        assert_eq!(put.is_ok(), succeeds, "{fault:?}: {put:?}");

        block_on(direct.put(&key, value.clone())).unwrap();
        match bounded("a get", fault, faulty.get(&key)) {
            Ok(got) => {
                assert!(succeeds, "{fault:?} should have failed the read");
                assert_eq!(got.as_ref(), Some(&value), "{fault:?}");
            }
            Err(e) => {
                assert!(!succeeds, "{fault:?}: {e}");
                assert!(!e.to_string().is_empty());
            }
        }
        let tail = bounded("a ranged read", fault, faulty.get_tail(&key, 100));
        assert!(
            tail.as_ref().map_or(!succeeds, |t| t.as_deref()
                == Some(&value[value.len() - 100..])),
            "{fault:?}: {tail:?}"
        );
        let counts = proxy.counts();
        assert!(
            counts.get(fault.name()).copied().unwrap_or(0) >= 3,
            "{counts:?}"
        );
    }
}
