//! Wrappers that make a backend misbehave, for testing the layers above it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use warmcache_core::{
    Backend, CacheKey, Capabilities, Context, Error, ListPage, Op, Result, Usage, async_trait,
};

/// What a [`FaultyBackend`] injects, each at a rate in `[0, 1]` per operation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultConfig {
    /// Fail with [`Error::Unavailable`].
    pub error_rate: f64,
    /// Sleep for [`delay`](Self::delay) before running the operation (a slow store).
    pub slow_rate: f64,
    /// Never complete (a hung connection); only a timeout above frees the caller.
    pub hang_rate: f64,
    /// How long a slow operation sleeps.
    pub delay: Duration,
    /// Seed of the fault sequence, for reproducible runs.
    pub seed: u64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            error_rate: 0.0,
            slow_rate: 0.0,
            hang_rate: 0.0,
            delay: Duration::from_millis(200),
            seed: 0,
        }
    }
}

enum Fault {
    None,
    Error,
    Slow(Duration),
    Hang,
}

/// Injects errors, delays and hangs into another backend at seeded rates, and can be switched
/// fully down and up again to simulate an outage.
#[derive(Debug)]
pub struct FaultyBackend {
    inner: Arc<dyn Backend>,
    config: FaultConfig,
    rng: Mutex<StdRng>,
    down: AtomicBool,
}

impl FaultyBackend {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Backend>, config: FaultConfig) -> Self {
        Self {
            inner,
            rng: Mutex::new(StdRng::seed_from_u64(config.seed)),
            config,
            down: AtomicBool::new(false),
        }
    }

    /// When `true`, every operation fails with [`Error::Unavailable`] until set back to `false`.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn draw(&self) -> Fault {
        if self.down.load(Ordering::SeqCst) {
            return Fault::Error;
        }
        let x: f64 = self.rng.lock().random();
        let c = &self.config;
        if x < c.error_rate {
            Fault::Error
        } else if x < c.error_rate + c.hang_rate {
            Fault::Hang
        } else if x < c.error_rate + c.hang_rate + c.slow_rate {
            Fault::Slow(c.delay)
        } else {
            Fault::None
        }
    }

    async fn inject(&self, op: Op, key: Option<&CacheKey>) -> Result<()> {
        match self.draw() {
            Fault::None => Ok(()),
            Fault::Slow(d) => {
                futures_timer::Delay::new(d).await;
                Ok(())
            }
            Fault::Hang => futures::future::pending().await,
            Fault::Error => {
                let context = match key {
                    Some(k) => Context::with_key(self.name(), op, k),
                    None => Context::new(self.name(), op),
                };
                Err(Error::Unavailable {
                    context,
                    source: "injected fault".into(),
                })
            }
        }
    }
}

#[async_trait]
impl Backend for FaultyBackend {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn get(&self, key: &CacheKey) -> Result<Option<Bytes>> {
        self.inject(Op::Get, Some(key)).await?;
        self.inner.get(key).await
    }
    async fn put(&self, key: &CacheKey, value: Bytes) -> Result<()> {
        self.inject(Op::Put, Some(key)).await?;
        self.inner.put(key, value).await
    }
    async fn delete(&self, key: &CacheKey) -> Result<()> {
        self.inject(Op::Delete, Some(key)).await?;
        self.inner.delete(key).await
    }
    async fn contains(&self, key: &CacheKey) -> Result<bool> {
        self.inject(Op::Contains, Some(key)).await?;
        self.inner.contains(key).await
    }
    async fn clear(&self) -> Result<()> {
        self.inject(Op::Clear, None).await?;
        self.inner.clear().await
    }
    async fn list(&self, after: Option<CacheKey>, limit: usize) -> Result<ListPage> {
        self.inject(Op::List, None).await?;
        self.inner.list(after, limit).await
    }
    async fn usage(&self) -> Result<Usage> {
        self.inject(Op::Usage, None).await?;
        self.inner.usage().await
    }
    async fn open_file(&self, key: &CacheKey) -> Result<Option<std::fs::File>> {
        self.inject(Op::OpenFile, Some(key)).await?;
        self.inner.open_file(key).await
    }
}

/// Flips one random bit in values returned by `get`, at a seeded rate; everything else passes
/// through. Models a disk or network that damages data.
#[derive(Debug)]
pub struct CorruptingBackend {
    inner: Arc<dyn Backend>,
    rate: f64,
    rng: Mutex<StdRng>,
}

impl CorruptingBackend {
    /// Wraps `inner`, damaging a fraction `rate` of non-empty reads.
    pub fn new(inner: Arc<dyn Backend>, rate: f64, seed: u64) -> Self {
        Self {
            inner,
            rate,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }
}

#[async_trait]
impl Backend for CorruptingBackend {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn get(&self, key: &CacheKey) -> Result<Option<Bytes>> {
        let value = self.inner.get(key).await?;
        Ok(value.map(|v| {
            if v.is_empty() {
                return v;
            }
            let mut rng = self.rng.lock();
            if rng.random::<f64>() >= self.rate {
                return v;
            }
            let mut damaged = v.to_vec();
            let bit = rng.random_range(0..damaged.len() * 8);
            damaged[bit / 8] ^= 1 << (bit % 8);
            Bytes::from(damaged)
        }))
    }
    async fn put(&self, key: &CacheKey, value: Bytes) -> Result<()> {
        self.inner.put(key, value).await
    }
    async fn delete(&self, key: &CacheKey) -> Result<()> {
        self.inner.delete(key).await
    }
    async fn contains(&self, key: &CacheKey) -> Result<bool> {
        self.inner.contains(key).await
    }
    async fn clear(&self) -> Result<()> {
        self.inner.clear().await
    }
    async fn list(&self, after: Option<CacheKey>, limit: usize) -> Result<ListPage> {
        self.inner.list(after, limit).await
    }
    async fn usage(&self) -> Result<Usage> {
        self.inner.usage().await
    }
    async fn open_file(&self, key: &CacheKey) -> Result<Option<std::fs::File>> {
        self.inner.open_file(key).await
    }
}
