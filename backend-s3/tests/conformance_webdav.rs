//! The conformance suite against a real WebDAV server (nginx with its dav modules) on loopback,
//! through `http://`, over a link with 3 ms round trips (a delay proxy between the two;
//! `WARMCACHE_TEST_RTT_MS` sets another round trip, 0 connects directly): what a backend in
//! the same cloud region as its store sees.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::common;

use common::Server as _;
use common::{delay, webdav};

/// The collection is derived from `dir` and the endpoint recorded in it, so a reopen, or the
/// crash test's child process, finds the same collection on the same server.
fn open(dir: &Path) -> warmcache_core::Result<Arc<dyn warmcache_core::Backend>> {
    let endpoint = common::recorded(dir, "webdav-endpoint", || far_endpoint().to_owned());
    let collection = common::bucket_for(dir);
    webdav::create_collection(common::port_of(&endpoint), &collection);
    Ok(Arc::new(webdav::Nginx::backend_at(
        &endpoint,
        &collection,
        "cache",
        |b| b,
    )))
}

/// The shared server's endpoint, behind the delay proxy unless the round trip is 0.
fn far_endpoint() -> &'static str {
    static FAR: OnceLock<(Option<delay::DelayProxy>, String)> = OnceLock::new();
    let (_, endpoint) = FAR.get_or_init(|| {
        let server = webdav::shared();
        let rtt: u64 = std::env::var("WARMCACHE_TEST_RTT_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3);
        if rtt == 0 {
            return (None, server.endpoint());
        }
        let proxy = delay::DelayProxy::start(server.port(), Duration::from_millis(rtt));
        let endpoint = proxy.endpoint();
        (Some(proxy), endpoint)
    });
    endpoint
}

// Cleared after each check, so a run leaves nothing on the server.
warmcache_conformance::backend_tests!(warmcache_conformance::ClearedAfter(open));
