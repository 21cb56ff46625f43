//! Exporting warmcache's metrics to Prometheus: install `metrics-exporter-prometheus`'s recorder
//! before building the cache, then render (or serve) its registry.
//!
//! Run with `cargo run -p warmcache-core --example prometheus`. A service would rather call
//! `PrometheusBuilder::new().with_http_listener(addr).install()` (the exporter's `http-listener`
//! feature) and let Prometheus scrape it.
#![allow(clippy::print_stdout)]

use metrics_exporter_prometheus::PrometheusBuilder;
use warmcache_core::bytes::Bytes;
use warmcache_core::{BytesCodec, Cache};

fn compile(source: &&str) -> Result<Bytes, std::io::Error> {
    Ok(Bytes::from(source.to_uppercase()))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // First the recorder: handles registered before it exists stay no-ops.
    let handle = PrometheusBuilder::new().install_recorder()?;
    let cache = Cache::builder("example", BytesCodec).build();
    for _ in 0..3 {
        cache.get_or_compute(&"fn main() {}", compile)?;
    }
    let text = handle.render();
    print!("{text}");
    assert!(text.contains("warmcache_cache_live_hits_total{cache=\"example\"} 2"));
    Ok(())
}
