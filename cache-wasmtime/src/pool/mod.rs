//! [`PoolConfig`]: engine settings for a fresh instance per call, fast.
//!
//! `needs.rs` reads what each binary needs from the pooling allocator.

mod needs;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::{Error, Result};
use crate::key::ContentHash;

/// Concurrently live instances a [`PoolConfig`] provides for by default (wasmtime's default).
pub const DEFAULT_LIVE_INSTANCES: u32 = 1000;
/// What a memory without a declared maximum may grow to by default: 4 GiB, all of a 32-bit
/// memory (wasmtime's default).
pub const DEFAULT_MEMORY_LIMIT: u64 = 4 << 30;
/// What a table without a declared maximum may grow to by default (wasmtime's default).
pub const DEFAULT_TABLE_LIMIT: u64 = 20_000;
/// wasmtime's default instance size limit, below which the derived limit never goes.
const MIN_INSTANCE_SIZE: u64 = 1 << 20;
/// wasmtime's default for images it always makes copy-on-write, however sparse.
const MIN_DENSE_IMAGE: u64 = 16 << 20;
/// Virtual memory reserved per linear memory: all of a 32-bit memory, so compiled code needs no
/// bounds checks (wasmtime's default on 64-bit hosts).
const MEMORY_RESERVATION: u64 = 4 << 30;
/// Guard region after (and before) each linear memory (wasmtime's default on 64-bit hosts).
const MEMORY_GUARD: u64 = 32 << 20;

/// Engine settings that make [`InstanceCache`](crate::InstanceCache)'s fresh instances cheap:
/// the pooling allocator with limits derived from the binaries it will run, and copy-on-write
/// memory images.
///
/// | Setting | Why | What it costs |
/// |---|---|---|
/// | Pooling allocator | memories, tables and instances come from slots reserved once, so an instance is not an `mmap` and `munmap` each | address space reserved up front: per memory slot the reservation plus guards (about 4.06 GiB), per table slot its elements; no memory until touched |
/// | Copy-on-write memory images | a new instance maps its initial memory from the module's image instead of copying it; for modules from a file tier, from the mapped file itself, shared through the page cache | an instance costs only the pages it writes; a write to a shared page takes a fault |
/// | Slots reset with `madvise(MADV_DONTNEED)` (nothing kept resident) | a returned slot drops what the last instance wrote, so the next one maps the pristine image | the first touch of each page in an instance is a page fault |
/// | 4 GiB reservation, 32 MiB guards before and after (wasmtime's defaults, set explicitly) | 32-bit memories need no bounds checks; stray accesses fault | address space only |
/// | Limits from the binaries ([`module`](Self::module)) | every instance of them fits, nothing larger is provisioned | a memory or table without a declared maximum grows only to [`memory_limit`](Self::memory_limit) or [`table_limit`](Self::table_limit) (growth beyond fails as out of memory, like a declared maximum) |
///
/// **Cache keys**: the pooling allocator, copy-on-write and slot limits change only how
/// instances are allocated, not compiled code, so they are not in wasmtime's compatibility
/// hash: an engine from this helper finds the same artifacts as a default engine with the same
/// compiler settings. The reservation and guard sizes do change code and are in the hash
/// (set to wasmtime's defaults here, so the keys match a default engine).
///
/// # Example
///
/// ```
/// use warmcache_wasmtime::{ModuleCache, ModuleInstances, NamedLinker, PoolConfig};
///
/// let wasm = br#"(module (memory 1 16) (func (export "f")))"#;
/// let mut pool = PoolConfig::new();
/// pool.live_instances(10).module(wasm)?;
/// let engine = pool.engine()?;
///
/// let instances = ModuleInstances::<()>::new(ModuleCache::builder().build());
/// let linker = NamedLinker::new(wasmtime::Linker::new(&engine), "none", 1);
/// let mut store = wasmtime::Store::new(&engine, ());
/// instances.instantiate(&mut store, &linker, wasm)?;
/// # Ok::<(), warmcache_wasmtime::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct PoolConfig {
    needs: needs::Needs,
    live_instances: u32,
    memory_limit: u64,
    table_limit: u64,
    async_calls: bool,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl PoolConfig {
    /// Settings for one memory and one table per module and wasmtime's default sizes, until
    /// [`module`](Self::module) says more.
    pub fn new() -> Self {
        Self {
            needs: needs::Needs {
                memories_per_module: 1,
                tables_per_module: 1,
                core_instances: 1,
                memories: 1,
                tables: 1,
                ..needs::Needs::default()
            },
            live_instances: DEFAULT_LIVE_INSTANCES,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            table_limit: DEFAULT_TABLE_LIMIT,
            async_calls: false,
        }
    }

    /// Provides for instances of `wasm` (a module or component, binary or text): memories and
    /// tables per instance, their sizes, the instance's size, and the extent of its memory
    /// image. Call it for each binary the engine will run.
    ///
    /// # Errors
    ///
    /// [`Error::Inspect`] when `wasm` cannot be parsed, or when it needs a memory larger than
    /// [`memory_limit`](Self::memory_limit) (or the 4 GiB reservation) from the start.
    pub fn module(&mut self, wasm: &[u8]) -> Result<&mut Self> {
        let content = ContentHash::of(wasm);
        let inspect = |reason: String| Error::Inspect { content, reason };
        let wasm = wat::parse_bytes(wasm).map_err(|e| inspect(e.to_string()))?;
        let needs = needs::of(&wasm).map_err(|e| inspect(e.to_string()))?;
        let limit = self.memory_limit.min(MEMORY_RESERVATION);
        if needs.initial_memory > limit {
            return Err(inspect(format!(
                "a memory starts at {} bytes, more than the limit of {limit}; raise \
                 PoolConfig::memory_limit (at most the 4 GiB reservation)",
                needs.initial_memory
            )));
        }
        self.needs.merge(&needs);
        Ok(self)
    }

    /// Provides for `count` instances alive at once (default [`DEFAULT_LIVE_INSTANCES`]); one
    /// more waits for none but fails with [`Error::Instantiate`].
    pub fn live_instances(&mut self, count: u32) -> &mut Self {
        self.live_instances = count.max(1);
        self
    }

    /// What a memory without a declared maximum may grow to, in bytes (default
    /// [`DEFAULT_MEMORY_LIMIT`], at most the 4 GiB reservation).
    pub fn memory_limit(&mut self, bytes: u64) -> &mut Self {
        self.memory_limit = bytes;
        self
    }

    /// What a table without a declared maximum may grow to, in elements (default
    /// [`DEFAULT_TABLE_LIMIT`]).
    pub fn table_limit(&mut self, elements: u64) -> &mut Self {
        self.table_limit = elements;
        self
    }

    /// Whether instances are instantiated and called async
    /// ([`InstanceCache::instantiate_async`](crate::InstanceCache::instantiate_async); default
    /// no): the pool then also provides a fiber stack per live instance (each its size plus a
    /// guard page of address space).
    pub fn async_calls(&mut self, enable: bool) -> &mut Self {
        self.async_calls = enable;
        self
    }

    /// The pooling allocator's limits.
    pub fn pooling(&self) -> PoolingAllocationConfig {
        let needs = &self.needs;
        let live = self.live_instances;
        let mut pool = PoolingAllocationConfig::new();
        let memory_limit = self.memory_limit.min(MEMORY_RESERVATION);
        let max_memory = needs
            .maximum_memory
            .min(memory_limit)
            .max(needs.initial_memory);
        let max_table = needs
            .maximum_table
            .min(self.table_limit)
            .max(needs.initial_table);
        let core_instances = live.saturating_mul(needs.core_instances.max(1));
        pool.total_core_instances(core_instances)
            .total_component_instances(live)
            .total_memories(live.saturating_mul(needs.memories.max(1)))
            .total_tables(live.saturating_mul(needs.tables.max(1)))
            .total_stacks(if self.async_calls { live } else { 0 })
            .total_gc_heaps(core_instances)
            .max_memories_per_module(needs.memories_per_module.max(1))
            .max_tables_per_module(needs.tables_per_module.max(1))
            .max_memory_size(usize_of(max_memory.max(1 << 16)))
            .table_elements(usize_of(max_table.max(1)))
            .max_core_instance_size(usize_of(needs.core_instance_size.max(MIN_INSTANCE_SIZE)))
            .max_component_instance_size(usize_of(
                needs.component_instance_size.max(MIN_INSTANCE_SIZE),
            ))
            .linear_memory_keep_resident(0)
            .table_keep_resident(0);
        pool
    }

    /// Applies the settings to `config`: the pooling allocator, copy-on-write images (always
    /// made for images up to the largest seen), and the reservation
    /// and guards. Other settings of `config` stay.
    pub fn apply<'c>(&self, config: &'c mut Config) -> &'c mut Config {
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(self.pooling()))
            .memory_init_cow(true)
            .memory_guaranteed_dense_image_size(self.needs.image_extent.max(MIN_DENSE_IMAGE))
            .memory_reservation(MEMORY_RESERVATION)
            .memory_guard_size(MEMORY_GUARD)
            .guard_before_linear_memory(true);
        config
    }

    /// An engine with wasmtime's defaults and these settings.
    ///
    /// # Errors
    ///
    /// [`Error::Engine`] when wasmtime refuses the configuration (for example, the host cannot
    /// reserve the address space for this many live instances: lower
    /// [`live_instances`](Self::live_instances)).
    pub fn engine(&self) -> Result<Engine> {
        let mut config = Config::new();
        self.apply(&mut config);
        Engine::new(&config).map_err(|e| Error::Engine {
            source: std::sync::Arc::new(e),
        })
    }
}

fn usize_of(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}
