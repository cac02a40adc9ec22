//! The wasmtime engine for plugins: configuration, limits, the epoch ticker, and the linker with the
//! world's imports.
use super::bindings;
use super::host::StoreData;
use super::services::HostServices;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{
    Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, StoreLimits,
    StoreLimitsBuilder,
};

/// Limits and deadlines. Defaults are chosen for a gateway: small guests, many requests, short phases.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Deadline of one phase call (default 50 ms). Enforced by epoch interruption, so the effective
    /// deadline is rounded up to a multiple of `epoch_tick`.
    pub phase_deadline: Duration,
    /// Deadline of `info`/`validate`/`configure`/`release` (default 200 ms: a config may be large JSON).
    pub config_deadline: Duration,
    /// Epoch ticker period (default 5 ms). Shorter is more precise and costs a wakeup per tick.
    pub epoch_tick: Duration,
    /// Linear memory per instance (default 32 MiB; wasmtime's default is 4 GiB).
    pub max_memory_per_instance: usize,
    /// Table elements per table (default 10 000).
    pub max_table_elements: usize,
    /// Component instances alive at once across all plugins (pooling slots; default 256, wasmtime's 1000).
    pub max_instances_total: u32,
    /// Core instances / memories / tables per component (defaults 8 / 2 / 4; wasmtime's are 20 each).
    pub max_core_instances_per_component: u32,
    /// See `max_core_instances_per_component`.
    pub max_memories_per_component: u32,
    /// See `max_core_instances_per_component`.
    pub max_tables_per_component: u32,
    /// Idle instances kept per plugin version for reuse (default 16).
    pub max_idle_instances_per_plugin: usize,
    /// Largest accepted upload (default 8 MiB).
    pub max_upload_size: usize,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            phase_deadline: Duration::from_millis(50),
            config_deadline: Duration::from_millis(200),
            epoch_tick: Duration::from_millis(5),
            max_memory_per_instance: 32 << 20,
            max_table_elements: 10_000,
            max_instances_total: 256,
            max_core_instances_per_component: 8,
            max_memories_per_component: 2,
            max_tables_per_component: 4,
            max_idle_instances_per_plugin: 16,
            max_upload_size: 8 << 20,
        }
    }
}

impl HostConfig {
    /// Epoch ticks for a deadline (at least 1).
    pub(crate) fn ticks(&self, deadline: Duration) -> u64 {
        // u64 arithmetic: this runs on every call, and u128 division is a slow library call.
        let tick = u64::try_from(self.epoch_tick.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        let deadline = u64::try_from(deadline.as_nanos()).unwrap_or(u64::MAX);
        deadline.div_ceil(tick).max(1)
    }

    pub(crate) fn store_limits(&self) -> StoreLimits {
        StoreLimitsBuilder::new()
            .memory_size(self.max_memory_per_instance)
            .table_elements(self.max_table_elements)
            .instances(self.max_core_instances_per_component as usize)
            .memories(self.max_memories_per_component as usize)
            .tables(self.max_tables_per_component as usize)
            .trap_on_grow_failure(false)
            .build()
    }
}

/// Why the engine could not be built.
#[derive(Debug, thiserror::Error)]
#[error("plugin engine: {0}")]
pub struct EngineError(pub String);

pub(crate) struct EngineInner {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<StoreData>,
    pub(crate) config: HostConfig,
    pub(crate) services: Arc<HostServices>,
    pub(crate) fingerprint: String,
}

/// A configured wasmtime engine with its linker and epoch ticker. Cheap to clone; one per gateway.
#[derive(Clone)]
pub struct PluginEngine {
    pub(crate) inner: Arc<EngineInner>,
}

impl PluginEngine {
    /// Builds the engine and starts its epoch ticker thread (it stops when the last clone is dropped).
    pub fn new(config: HostConfig, services: HostServices) -> Result<Self, EngineError> {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(config.max_instances_total)
            .total_core_instances(
                config
                    .max_instances_total
                    .saturating_mul(config.max_core_instances_per_component.min(4)),
            )
            .total_memories(config.max_instances_total)
            .total_tables(config.max_instances_total.saturating_mul(2))
            .max_core_instances_per_component(config.max_core_instances_per_component)
            .max_memories_per_component(config.max_memories_per_component)
            .max_tables_per_component(config.max_tables_per_component)
            .max_memories_per_module(1)
            .max_tables_per_module(2)
            .table_elements(config.max_table_elements)
            .max_memory_size(config.max_memory_per_instance)
            // Keep the first 2 MiB of a recycled slot resident and reset it with PAGEMAP_SCAN where the
            // kernel has it: instantiation then skips most page faults.
            .linear_memory_keep_resident(2 << 20)
            .table_keep_resident(64 << 10)
            .pagemap_scan(Enabled::Auto);

        let mut cfg = wasmtime::Config::new();
        cfg.wasm_component_model(true)
            // Nothing here needs component-model-async; turning it off halves the cost of a call.
            .concurrency_support(false)
            .epoch_interruption(true)
            .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(32))
            .parallel_compilation(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&cfg).map_err(|e| EngineError(super::fault::error_chain(&e)))?;

        let mut linker = Linker::<StoreData>::new(&engine);
        bindings::Plugin::add_to_linker::<StoreData, HasSelf<StoreData>>(&mut linker, |s| s)
            .map_err(|e| EngineError(super::fault::error_chain(&e)))?;

        let fingerprint = engine_fingerprint(&engine);
        spawn_ticker(&engine, config.epoch_tick)?;
        Ok(Self {
            inner: Arc::new(EngineInner {
                engine,
                linker,
                config,
                services: Arc::new(services),
                fingerprint,
            }),
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The limits in force.
    pub fn config(&self) -> &HostConfig {
        &self.inner.config
    }

    /// Hex sha256 of wasmtime's precompile-compatibility hash (version, target, flags): artifacts compiled
    /// under another fingerprint are never loaded.
    pub fn fingerprint(&self) -> &str {
        &self.inner.fingerprint
    }
}

struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn engine_fingerprint(engine: &Engine) -> String {
    let mut h = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    h.0.update(b"sluice:plugin@0.1.0");
    hex::encode(h.0.finalize())
}

fn spawn_ticker(engine: &Engine, tick: Duration) -> Result<(), EngineError> {
    // A dedicated thread rather than a tokio task: deadlines must hold even when every runtime worker is
    // busy (possibly running the very plugin that has to be interrupted).
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("sluice-plugin-epoch".to_string())
        .spawn(move || loop {
            std::thread::sleep(tick);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => break,
            }
        })
        .map(|_| ())
        .map_err(|e| EngineError(format!("epoch ticker thread: {e}")))
}
