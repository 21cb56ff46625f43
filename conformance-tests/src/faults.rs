//! Wrappers that make a backend misbehave, for testing the layers above it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use warmcache_core::backend::{BlockingBackend, Lease};
use warmcache_core::{
    Backend, CacheKey, Capabilities, Context, Error, ListPage, Op, Result, Usage, async_trait,
};

/// Which operations a [`FaultConfig`] applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultedOps {
    /// Every operation.
    #[default]
    All,
    /// Only reads: `get`, `get_tail`, `contains`, `list`, `usage`, `open_file`.
    Reads,
    /// Only writes: `put`, `delete`, `clear`, `shrink_to`, and leases (`try_lease`, `renew`,
    /// `release`): a full disk, read-only credentials.
    Writes,
}

impl FaultedOps {
    fn covers(self, op: Op) -> bool {
        let write = matches!(
            op,
            Op::Put | Op::Delete | Op::Clear | Op::Shrink | Op::Lease
        );
        match self {
            FaultedOps::All => true,
            FaultedOps::Reads => !write,
            FaultedOps::Writes => write,
        }
    }
}

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
    /// Which operations faults are injected into.
    pub ops: FaultedOps,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            error_rate: 0.0,
            slow_rate: 0.0,
            hang_rate: 0.0,
            delay: Duration::from_millis(200),
            seed: 0,
            ops: FaultedOps::All,
        }
    }
}

enum Fault {
    None,
    Error,
    Slow(Duration),
    Hang,
}

/// The seeded fault sequence and the outage switch, shared by both wrappers.
#[derive(Debug)]
struct Faults {
    name: String,
    config: FaultConfig,
    rng: Mutex<StdRng>,
    down: AtomicBool,
}

impl Faults {
    fn new(name: &str, config: FaultConfig) -> Self {
        Self {
            name: name.to_owned(),
            rng: Mutex::new(StdRng::seed_from_u64(config.seed)),
            config,
            down: AtomicBool::new(false),
        }
    }

    fn draw(&self, op: Op) -> Fault {
        if !self.config.ops.covers(op) {
            return Fault::None;
        }
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

    fn error(&self, op: Op, key: Option<&CacheKey>) -> Error {
        let context = match key {
            Some(k) => Context::with_key(self.name.clone(), op, k),
            None => Context::new(self.name.clone(), op),
        };
        Error::Unavailable {
            context,
            source: "injected fault".into(),
        }
    }

    async fn inject(&self, op: Op, key: Option<&CacheKey>) -> Result<()> {
        match self.draw(op) {
            Fault::None => Ok(()),
            Fault::Slow(d) => {
                futures_timer::Delay::new(d).await;
                Ok(())
            }
            Fault::Hang => futures::future::pending().await,
            Fault::Error => Err(self.error(op, key)),
        }
    }

    /// The same faults as a stuck disk shows them: the calling thread sleeps, or never returns.
    fn inject_blocking(&self, op: Op, key: Option<&CacheKey>) -> Result<()> {
        match self.draw(op) {
            Fault::None => Ok(()),
            Fault::Slow(d) => {
                std::thread::sleep(d);
                Ok(())
            }
            Fault::Hang => loop {
                std::thread::park();
            },
            Fault::Error => Err(self.error(op, key)),
        }
    }
}

/// Injects errors, delays and hangs into another backend at seeded rates, and can be switched
/// fully down and up again to simulate an outage. Delays and hangs are asynchronous (a slow or
/// hung connection); [`BlockingFaultyBackend`] blocks the thread instead, as a stuck disk does.
#[derive(Debug)]
pub struct FaultyBackend {
    inner: Arc<dyn Backend>,
    faults: Arc<Faults>,
}

impl FaultyBackend {
    /// Wraps `inner`. Every operation is forwarded, leases included: a lease's `renew` and
    /// `release` draw faults as `try_lease` does.
    pub fn new(inner: Arc<dyn Backend>, config: FaultConfig) -> Self {
        Self {
            faults: Arc::new(Faults::new(inner.name(), config)),
            inner,
        }
    }

    /// When `true`, every operation fails with [`Error::Unavailable`] until set back to `false`.
    pub fn set_down(&self, down: bool) {
        self.faults.down.store(down, Ordering::SeqCst);
    }

    async fn inject(&self, op: Op, key: Option<&CacheKey>) -> Result<()> {
        self.faults.inject(op, key).await
    }
}

/// A [`BlockingBackend`] that injects the faults of [`FaultyBackend`] by blocking the calling
/// thread: a slow operation sleeps, a hung one never returns, like a file or database tier on
/// a stuck disk or an unresponsive NFS server. Through the blanket [`Backend`] impl it runs the
/// way fs, redb and RocksDB tiers do, so it tests what bounds them. Use it under a tier
/// [`timeout`](warmcache_core::Tier::timeout) or a Tokio runtime: it drives the wrapped
/// backend with `futures::executor::block_on`, which cannot run inside another `block_on` on
/// the same thread.
#[derive(Debug, Clone)]
pub struct BlockingFaultyBackend {
    inner: Arc<dyn Backend>,
    faults: Arc<Faults>,
}

impl BlockingFaultyBackend {
    /// Wraps `inner` (each operation blocks the calling thread until it completes). Every
    /// operation is forwarded, leases included.
    pub fn new(inner: Arc<dyn Backend>, config: FaultConfig) -> Self {
        Self {
            faults: Arc::new(Faults::new(inner.name(), config)),
            inner,
        }
    }

    /// When `true`, every operation fails with [`Error::Unavailable`] until set back to `false`.
    pub fn set_down(&self, down: bool) {
        self.faults.down.store(down, Ordering::SeqCst);
    }

    /// Injects a fault on the calling thread, then drives `f` to completion on a thread of its
    /// own, so the wrapper also works under `futures::executor::block_on` (which cannot be
    /// entered twice on one thread).
    fn run<T: Send>(
        &self,
        op: Op,
        key: Option<&CacheKey>,
        f: impl std::future::Future<Output = Result<T>> + Send,
    ) -> Result<T> {
        self.faults.inject_blocking(op, key)?;
        std::thread::scope(|scope| {
            match scope.spawn(move || futures::executor::block_on(f)).join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}

#[deny(clippy::missing_trait_methods)]
impl BlockingBackend for BlockingFaultyBackend {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn get(&self, key: &CacheKey) -> Result<Option<Bytes>> {
        self.run(Op::Get, Some(key), self.inner.get(key))
    }
    fn put(&self, key: &CacheKey, value: Bytes) -> Result<()> {
        self.run(Op::Put, Some(key), self.inner.put(key, value))
    }
    fn delete(&self, key: &CacheKey) -> Result<()> {
        self.run(Op::Delete, Some(key), self.inner.delete(key))
    }
    fn contains(&self, key: &CacheKey) -> Result<bool> {
        self.run(Op::Contains, Some(key), self.inner.contains(key))
    }
    fn clear(&self) -> Result<()> {
        self.run(Op::Clear, None, self.inner.clear())
    }
    fn list(&self, after: Option<CacheKey>, limit: usize) -> Result<ListPage> {
        self.run(Op::List, None, self.inner.list(after, limit))
    }
    fn usage(&self) -> Result<Usage> {
        self.run(Op::Usage, None, self.inner.usage())
    }
    fn open_file(&self, key: &CacheKey) -> Result<Option<std::fs::File>> {
        self.run(Op::OpenFile, Some(key), self.inner.open_file(key))
    }
    fn get_tail(&self, key: &CacheKey, len: u64) -> Result<Option<Bytes>> {
        self.run(Op::GetTail, Some(key), self.inner.get_tail(key, len))
    }
    fn shrink_to(&self, max_bytes: u64) -> Result<u64> {
        self.run(Op::Shrink, None, self.inner.shrink_to(max_bytes))
    }
    fn try_lease(
        &self,
        key: &CacheKey,
        ttl: Duration,
        holder: &str,
    ) -> Result<Option<Box<dyn Lease>>> {
        let lease = self.run(Op::Lease, Some(key), self.inner.try_lease(key, ttl, holder))?;
        Ok(FaultyLease::wrap(lease, &self.faults, key))
    }
    fn pin(&self, key: &CacheKey, pinned: bool) -> Result<bool> {
        self.run(Op::Pin, Some(key), self.inner.pin(key, pinned))
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
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
    async fn get_tail(&self, key: &CacheKey, len: u64) -> Result<Option<Bytes>> {
        self.inject(Op::GetTail, Some(key)).await?;
        self.inner.get_tail(key, len).await
    }
    async fn shrink_to(&self, max_bytes: u64) -> Result<u64> {
        self.inject(Op::Shrink, None).await?;
        self.inner.shrink_to(max_bytes).await
    }
    async fn try_lease(
        &self,
        key: &CacheKey,
        ttl: Duration,
        holder: &str,
    ) -> Result<Option<Box<dyn Lease>>> {
        self.inject(Op::Lease, Some(key)).await?;
        let lease = self.inner.try_lease(key, ttl, holder).await?;
        Ok(FaultyLease::wrap(lease, &self.faults, key))
    }
    async fn pin(&self, key: &CacheKey, pinned: bool) -> Result<bool> {
        self.inject(Op::Pin, Some(key)).await?;
        self.inner.pin(key, pinned).await
    }
}

/// A lease of a faulty backend: `renew` and `release` draw faults (as [`Op::Lease`]) before
/// reaching the wrapped lease. Faults are asynchronous here for both wrappers.
#[derive(Debug)]
struct FaultyLease {
    inner: Box<dyn Lease>,
    faults: Arc<Faults>,
    key: CacheKey,
}

impl FaultyLease {
    fn wrap(
        lease: Option<Box<dyn Lease>>,
        faults: &Arc<Faults>,
        key: &CacheKey,
    ) -> Option<Box<dyn Lease>> {
        lease.map(|inner| {
            Box::new(Self {
                inner,
                faults: Arc::clone(faults),
                key: *key,
            }) as Box<dyn Lease>
        })
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Lease for FaultyLease {
    async fn renew(&self) -> Result<()> {
        self.faults.inject(Op::Lease, Some(&self.key)).await?;
        self.inner.renew().await
    }
    async fn release(&self) -> Result<()> {
        self.faults.inject(Op::Lease, Some(&self.key)).await?;
        self.inner.release().await
    }
    fn renew_every(&self) -> Option<Duration> {
        self.inner.renew_every()
    }
}

/// Flips one random bit in values returned by `get` and `get_tail`, at a seeded rate; everything
/// else passes through (files handed out by `open_file` are not damaged). Models a disk or network that damages data.
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

impl CorruptingBackend {
    /// `value`, with one random bit flipped at the configured rate.
    fn damage(&self, value: Bytes) -> Bytes {
        if value.is_empty() {
            return value;
        }
        let mut rng = self.rng.lock();
        if rng.random::<f64>() >= self.rate {
            return value;
        }
        let mut damaged = value.to_vec();
        let bit = rng.random_range(0..damaged.len() * 8);
        damaged[bit / 8] ^= 1 << (bit % 8);
        Bytes::from(damaged)
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Backend for CorruptingBackend {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn get(&self, key: &CacheKey) -> Result<Option<Bytes>> {
        Ok(self.inner.get(key).await?.map(|v| self.damage(v)))
    }
    async fn get_tail(&self, key: &CacheKey, len: u64) -> Result<Option<Bytes>> {
        Ok(self.inner.get_tail(key, len).await?.map(|v| self.damage(v)))
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
    async fn shrink_to(&self, max_bytes: u64) -> Result<u64> {
        self.inner.shrink_to(max_bytes).await
    }
    async fn try_lease(
        &self,
        key: &CacheKey,
        ttl: Duration,
        holder: &str,
    ) -> Result<Option<Box<dyn Lease>>> {
        self.inner.try_lease(key, ttl, holder).await
    }
    async fn pin(&self, key: &CacheKey, pinned: bool) -> Result<bool> {
        self.inner.pin(key, pinned).await
    }
}
