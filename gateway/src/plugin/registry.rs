//! Loaded plugins, their instance pools, configured plugins, and the phase-call API.
use super::artifact::ArtifactCache;
use super::bindings::{self, PluginPre};
use super::engine::{HostConfig, PluginEngine};
use super::fault::{error_chain, CallSite, ConfigError, FaultKind, PluginFault, UploadError};
use super::host::{parse_header, StoreData};
use super::metrics::PluginMetrics;
use super::state::{Decision, Phase, PluginResponse, RequestState};
use super::validate;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime};
use wasmtime::component::Component;
use wasmtime::{Store, Trap, WasmBacktrace};

/// What a plugin says about itself (`info()` at load).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// The plugin's own name (the registry name is the one it was uploaded under).
    pub name: String,
    /// Its version.
    pub version: String,
    /// Default priority; higher runs first.
    pub priority: i32,
    /// The phases it implements, in request order. Others are never called.
    pub phases: Vec<Phase>,
    /// Auth plugins: the consumer-config field that identifies a credential (`key` for key-auth).
    pub consumer_credential: Option<String>,
}

/// Hasher for config ids (unique counters): the id is its own hash.
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type IdMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

/// One live instance of a plugin: its store, its exports, and the configs it has parsed.
struct Instance {
    store: Store<StoreData>,
    exports: bindings::Plugin,
    /// config id -> (liveness of the `ConfiguredPlugin`, handle inside this instance).
    configs: IdMap<(Weak<()>, u32)>,
    /// Value of `LoadedPlugin::retired` when dead configs were last released here.
    swept: u64,
}

static NEXT_CONFIG_ID: AtomicU64 = AtomicU64::new(1);

/// A compiled plugin version: component, `InstancePre`, idle instances, metrics. Shared (`Arc`) by every
/// configuration that uses it; a new upload under the same name is a new `LoadedPlugin`, and requests
/// holding the old one finish on it.
pub struct LoadedPlugin {
    name: String,
    sha256: String,
    size: usize,
    info: PluginInfo,
    phase_mask: u8,
    from_cache: bool,
    load_time: Duration,
    loaded_at: SystemTime,
    engine: PluginEngine,
    pre: PluginPre<StoreData>,
    // Boxed: a pop/push then moves a pointer, not the ~300-byte instance (measured: memmove was 12% of a
    // no-op call).
    #[allow(clippy::vec_box)]
    pool: Mutex<Vec<Box<Instance>>>,
    retired: AtomicU64,
    metrics: PluginMetrics,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("sha256", &self.sha256)
            .field("size", &self.size)
            .field("info", &self.info)
            .field("from_cache", &self.from_cache)
            .finish_non_exhaustive()
    }
}

fn site_fault(plugin: &str, site: CallSite, kind: FaultKind, message: String) -> PluginFault {
    PluginFault {
        plugin: plugin.to_string(),
        site,
        kind,
        message,
        backtrace: None,
    }
}

/// Classifies a wasmtime error from a guest call.
fn classify(
    plugin: &str,
    site: CallSite,
    err: &wasmtime::Error,
    memory_denied: bool,
) -> PluginFault {
    let trap = err.downcast_ref::<Trap>().copied();
    let kind = if memory_denied {
        FaultKind::Memory
    } else if trap == Some(Trap::Interrupt) {
        FaultKind::Deadline
    } else if trap.is_some() {
        FaultKind::Trap
    } else {
        // Errors that are not traps: e.g. re-entering a poisoned instance, host-side limits.
        FaultKind::Host
    };
    let message = match trap {
        Some(t) => t.to_string(),
        None => error_chain(err),
    };
    PluginFault {
        plugin: plugin.to_string(),
        site,
        kind,
        message,
        backtrace: err.downcast_ref::<WasmBacktrace>().map(|b| b.to_string()),
    }
}

fn new_instance(
    engine: &PluginEngine,
    pre: &PluginPre<StoreData>,
    name: &str,
) -> Result<Box<Instance>, PluginFault> {
    let inner = &engine.inner;
    let data = StoreData::new(
        Arc::from(name),
        inner.services.clone(),
        inner.config.store_limits(),
    );
    let mut store = Store::new(&inner.engine, data);
    store.limiter(|d| &mut d.limiter);
    // Runs only when the tick deadline set per call is reached (so it costs nothing per call): it traps
    // once the call's wall-clock deadline has really passed, and otherwise lets the guest go on. The
    // difference matters after host imports that wait on the guest's behalf (a coalesced cache miss):
    // they push `deadline_at` back by the time they waited, which is not the guest's to pay for.
    let tick = inner.config.clone();
    store.epoch_deadline_callback(move |ctx| {
        let left = ctx
            .data()
            .deadline_at
            .saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(Trap::Interrupt.into())
        } else {
            Ok(wasmtime::UpdateDeadline::Continue(tick.ticks(left)))
        }
    });
    store.set_epoch_deadline(inner.config.ticks(inner.config.config_deadline));
    let exports = pre.instantiate(&mut store).map_err(|e| {
        let denied = store.data().limiter.memory_denied;
        let mut f = classify(name, CallSite::Instantiate, &e, denied);
        if f.kind == FaultKind::Trap && e.downcast_ref::<Trap>().is_none() {
            f.kind = FaultKind::Host;
        }
        f
    })?;
    Ok(Box::new(Instance {
        store,
        exports,
        configs: IdMap::default(),
        swept: 0,
    }))
}

/// Runs one guest call under a deadline; on error the instance must be discarded.
fn run_call<R>(
    config: &HostConfig,
    name: &str,
    inst: &mut Instance,
    site: CallSite,
    deadline: Duration,
    f: impl FnOnce(&bindings::Plugin, &mut Store<StoreData>) -> wasmtime::Result<R>,
) -> Result<R, PluginFault> {
    run_call_from(config, name, inst, site, Instant::now(), deadline, f)
}

/// [`run_call`] with the call's start time already read (saves a clock read on the phase path).
fn run_call_from<R>(
    config: &HostConfig,
    name: &str,
    inst: &mut Instance,
    site: CallSite,
    started: Instant,
    deadline: Duration,
    f: impl FnOnce(&bindings::Plugin, &mut Store<StoreData>) -> wasmtime::Result<R>,
) -> Result<R, PluginFault> {
    inst.store.set_epoch_deadline(config.ticks(deadline));
    {
        let data = inst.store.data_mut();
        data.deadline_at = started + deadline;
        data.limiter.memory_denied = false;
    }
    let result = f(&inst.exports, &mut inst.store);
    result.map_err(|e| classify(name, site, &e, inst.store.data().limiter.memory_denied))
}

fn phase_from_wit(p: bindings::WitPhase) -> Phase {
    match p {
        bindings::WitPhase::Rewrite => Phase::Rewrite,
        bindings::WitPhase::Access => Phase::Access,
        bindings::WitPhase::HeaderFilter => Phase::HeaderFilter,
        bindings::WitPhase::BodyFilter => Phase::BodyFilter,
        bindings::WitPhase::Log => Phase::Log,
    }
}

impl LoadedPlugin {
    /// The name it was uploaded under.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Hex sha256 of the component bytes.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
    /// Size of the component in bytes.
    pub fn size(&self) -> usize {
        self.size
    }
    /// What the plugin reported at load.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }
    /// When it was loaded.
    pub fn loaded_at(&self) -> SystemTime {
        self.loaded_at
    }
    /// True when the compiled artifact came from the cache (no compilation at load).
    pub fn loaded_from_cache(&self) -> bool {
        self.from_cache
    }
    /// Time spent compiling (or deserializing) the component.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }
    /// Whether the plugin implements `phase`.
    pub fn implements(&self, phase: Phase) -> bool {
        self.phase_mask & (1 << phase.index()) != 0
    }
    /// Runtime metrics.
    pub fn metrics(&self) -> &PluginMetrics {
        &self.metrics
    }
    /// Idle instances currently pooled.
    pub fn idle_instances(&self) -> usize {
        self.pool.lock().map(|p| p.len()).unwrap_or(0)
    }

    fn config(&self) -> &HostConfig {
        &self.engine.inner.config
    }

    /// Bench/diagnostic hook: creates a fresh instance (new Store + `InstancePre::instantiate`) and drops
    /// it — the per-request cost of the "fresh instance per request" model.
    #[doc(hidden)]
    pub fn instantiate_and_drop(&self) -> Result<(), PluginFault> {
        new_instance(&self.engine, &self.pre, &self.name).map(drop)
    }

    /// Bench/diagnostic hook: one pool checkout and checkin (the pooled model's per-call overhead).
    #[doc(hidden)]
    pub fn checkout_checkin(&self) -> Result<(), PluginFault> {
        let inst = self.checkout()?;
        self.checkin(inst);
        Ok(())
    }

    fn fault(&self, f: PluginFault) -> PluginFault {
        self.metrics.record_fault(f.kind);
        tracing::warn!(
            plugin = %self.name,
            site = %f.site,
            kind = ?f.kind,
            backtrace = f.backtrace.as_deref().unwrap_or(""),
            "plugin fault: {}",
            f.message
        );
        f
    }

    fn checkout(&self) -> Result<Box<Instance>, PluginFault> {
        let idle = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(inst) => Ok(inst),
            None => {
                let inst =
                    new_instance(&self.engine, &self.pre, &self.name).map_err(|f| self.fault(f))?;
                self.metrics.record_instance();
                Ok(inst)
            }
        }
    }

    fn checkin(&self, inst: Box<Instance>) {
        self.metrics
            .record_memory(inst.store.data().limiter.peak_memory);
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < self.config().max_idle_instances_per_plugin {
            pool.push(inst);
        }
    }

    /// Releases, in this instance, configs whose `ConfiguredPlugin` is gone.
    fn sweep(&self, inst: &mut Instance) -> Result<(), PluginFault> {
        let retired = self.retired.load(Ordering::Acquire);
        if inst.swept == retired {
            return Ok(());
        }
        let dead: Vec<(u64, u32)> = inst
            .configs
            .iter()
            .filter(|(_, (alive, _))| alive.strong_count() == 0)
            .map(|(id, (_, h))| (*id, *h))
            .collect();
        for (id, handle) in dead {
            inst.configs.remove(&id);
            let deadline = self.config().config_deadline;
            run_call(
                self.config(),
                &self.name,
                inst,
                CallSite::Configure,
                deadline,
                |p, s| p.call_release(s, handle),
            )?;
        }
        inst.swept = retired;
        Ok(())
    }

    /// The handle of `cfg` in this instance, configuring it on first use.
    fn handle_for(&self, inst: &mut Instance, cfg: &ConfiguredPlugin) -> Result<u32, PluginFault> {
        self.sweep(inst)?;
        if let Some((_, h)) = inst.configs.get(&cfg.id) {
            return Ok(*h);
        }
        let handle = self.configure_in(inst, &cfg.config)?.map_err(|msg| {
            site_fault(
                &self.name,
                CallSite::Configure,
                FaultKind::Contract,
                format!("configure rejected a config it accepted before: {msg}"),
            )
        })?;
        inst.configs
            .insert(cfg.id, (Arc::downgrade(&cfg.alive), handle));
        Ok(handle)
    }

    fn configure_in(
        &self,
        inst: &mut Instance,
        json: &str,
    ) -> Result<Result<u32, String>, PluginFault> {
        self.metrics.record_configure();
        let deadline = self.config().config_deadline;
        run_call(
            self.config(),
            &self.name,
            inst,
            CallSite::Configure,
            deadline,
            |p, s| p.call_configure(s, json),
        )
    }

    /// Runs the plugin's `validate` on a config (admin writes call this; errors go back as 400s).
    pub fn validate(&self, config: &str) -> Result<(), ConfigError> {
        self.check_config(|p, s| p.call_validate(s, config))
    }

    /// Runs the plugin's `validate-consumer` on its config inside a consumer object.
    pub fn validate_consumer(&self, config: &str) -> Result<(), ConfigError> {
        self.check_config(|p, s| p.call_validate_consumer(s, config))
    }

    fn check_config(
        &self,
        call: impl FnOnce(
            &bindings::Plugin,
            &mut Store<StoreData>,
        ) -> wasmtime::Result<Result<(), String>>,
    ) -> Result<(), ConfigError> {
        let mut inst = self.checkout()?;
        let deadline = self.config().config_deadline;
        let result = run_call(
            self.config(),
            &self.name,
            &mut inst,
            CallSite::Validate,
            deadline,
            call,
        );
        match result {
            Ok(r) => {
                self.checkin(inst);
                r.map_err(ConfigError::Rejected)
            }
            Err(f) => Err(ConfigError::Fault(self.fault(f))),
        }
    }

    /// Parses a config once for this plugin version; the result is what routes hold and call. Parsing
    /// happens in the instance that runs this, and lazily (once) in each other pooled instance on first
    /// use — never per request.
    pub fn configure(self: &Arc<Self>, config: &str) -> Result<ConfiguredPlugin, ConfigError> {
        let cfg = ConfiguredPlugin {
            plugin: self.clone(),
            id: NEXT_CONFIG_ID.fetch_add(1, Ordering::Relaxed),
            config: Arc::from(config),
            alive: Arc::new(()),
        };
        let mut inst = self.checkout()?;
        match self.configure_in(&mut inst, config) {
            Ok(Ok(handle)) => {
                inst.configs
                    .insert(cfg.id, (Arc::downgrade(&cfg.alive), handle));
                self.checkin(inst);
                Ok(cfg)
            }
            Ok(Err(msg)) => {
                self.checkin(inst);
                Err(ConfigError::Rejected(msg))
            }
            Err(f) => Err(ConfigError::Fault(self.fault(f))),
        }
    }
}

/// A plugin plus one parsed configuration (one per plugin × route/service/global-rule config version).
/// Dropping it releases the parsed config in the instances that hold it.
pub struct ConfiguredPlugin {
    plugin: Arc<LoadedPlugin>,
    id: u64,
    config: Arc<str>,
    alive: Arc<()>,
}

impl std::fmt::Debug for ConfiguredPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfiguredPlugin")
            .field("plugin", &self.plugin.name)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Drop for ConfiguredPlugin {
    fn drop(&mut self) {
        self.plugin.retired.fetch_add(1, Ordering::Release);
    }
}

impl ConfiguredPlugin {
    /// The plugin version this config runs on.
    pub fn plugin(&self) -> &Arc<LoadedPlugin> {
        &self.plugin
    }

    /// The config JSON.
    pub fn config_json(&self) -> &str {
        &self.config
    }

    /// Runs one phase on `req`. A phase the plugin does not implement returns `Continue` without touching
    /// wasm. On `Err` the instance was discarded (the next call gets a fresh one); `req` keeps whatever the
    /// plugin changed before it faulted, so the gateway should answer 500 (or, with `fail_open`, go on).
    ///
    /// Synchronous and bounded by the phase deadline (default 50 ms); typical cost is well under a
    /// microsecond (see the module docs). Call it from the request task directly.
    pub fn call(&self, phase: Phase, req: &mut RequestState) -> Result<Decision, PluginFault> {
        let plugin = &*self.plugin;
        if !plugin.implements(phase) {
            return Ok(Decision::Continue);
        }
        let started = Instant::now();
        let mut inst = plugin.checkout()?;
        let result = self.call_in(&mut inst, phase, req, started);
        plugin.metrics.record_call(phase, started.elapsed());
        if result.is_err() {
            // Faulted instances are not checked in; keep their high-water mark (memory bombs).
            plugin
                .metrics
                .record_memory(inst.store.data().limiter.peak_memory);
        }
        match result {
            Ok(d) => {
                plugin.checkin(inst);
                convert_decision(&plugin.name, phase, d).map_err(|f| plugin.fault(f))
            }
            Err(f) => Err(plugin.fault(f)),
        }
    }

    /// Bench/diagnostic hook: the "fresh instance per request" model — new instance, `configure`, the
    /// phase, drop. Same semantics as [`ConfiguredPlugin::call`], without the pool.
    #[doc(hidden)]
    pub fn call_fresh(
        &self,
        phase: Phase,
        req: &mut RequestState,
    ) -> Result<Decision, PluginFault> {
        let plugin = &*self.plugin;
        let mut inst = new_instance(&plugin.engine, &plugin.pre, &plugin.name)?;
        let d = self.call_in(&mut inst, phase, req, Instant::now())?;
        convert_decision(&plugin.name, phase, d)
    }

    fn call_in(
        &self,
        inst: &mut Instance,
        phase: Phase,
        req: &mut RequestState,
        started: Instant,
    ) -> Result<bindings::Decision, PluginFault> {
        let plugin = &*self.plugin;
        let handle = plugin.handle_for(inst, self)?;
        {
            let data = inst.store.data_mut();
            data.phase = Some(phase);
            std::mem::swap(&mut data.req, req);
        }
        let deadline = plugin.config().phase_deadline;
        let result = run_call_from(
            plugin.config(),
            &plugin.name,
            inst,
            CallSite::Phase(phase),
            started,
            deadline,
            |p, s| match phase {
                Phase::Rewrite => p.call_rewrite(s, handle),
                Phase::Access => p.call_access(s, handle),
                Phase::HeaderFilter => p.call_header_filter(s, handle),
                Phase::BodyFilter => p.call_body_filter(s, handle),
                Phase::Log => p.call_log(s, handle),
            },
        );
        let data = inst.store.data_mut();
        std::mem::swap(&mut data.req, req);
        data.phase = None;
        result
    }
}

fn convert_decision(
    plugin: &str,
    phase: Phase,
    d: bindings::Decision,
) -> Result<Decision, PluginFault> {
    let contract =
        |msg: String| site_fault(plugin, CallSite::Phase(phase), FaultKind::Contract, msg);
    match d {
        bindings::Decision::Continue => Ok(Decision::Continue),
        bindings::Decision::Respond(_) if !phase.may_respond() => {
            Err(contract(format!("`respond` is not allowed in {phase}")))
        }
        bindings::Decision::Respond(r) => {
            let status = http::StatusCode::from_u16(r.status)
                .map_err(|_| contract(format!("respond: invalid status {}", r.status)))?;
            let mut headers = http::HeaderMap::with_capacity(r.headers.len());
            for h in r.headers {
                let (n, v) = parse_header(&h.name, &h.value)
                    .map_err(|_| contract(format!("respond: invalid header {:?}", h.name)))?;
                headers.append(n, v);
            }
            Ok(Decision::Respond(PluginResponse {
                status,
                headers,
                body: Bytes::from(r.body),
            }))
        }
    }
}

/// All loaded plugins by name, with the compiled-artifact cache.
pub struct PluginRegistry {
    engine: PluginEngine,
    cache: Arc<dyn ArtifactCache>,
    plugins: RwLock<HashMap<String, Arc<LoadedPlugin>>>,
}

impl PluginRegistry {
    /// An empty registry.
    pub fn new(engine: PluginEngine, cache: Arc<dyn ArtifactCache>) -> Self {
        Self {
            engine,
            cache,
            plugins: RwLock::new(HashMap::new()),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &PluginEngine {
        &self.engine
    }

    /// Validates, compiles (or loads the cached artifact), links and introspects an upload, without
    /// installing it. CPU-heavy on a cache miss (tens of ms): call it off the request path
    /// (`spawn_blocking` in the admin handler). Then validate existing configs against it, then
    /// [`PluginRegistry::install`].
    pub fn prepare(&self, name: &str, bytes: &[u8]) -> Result<Arc<LoadedPlugin>, UploadError> {
        let inner = &self.engine.inner;
        validate::check_header(bytes, inner.config.max_upload_size)?;
        let sha256 = hex::encode(Sha256::digest(bytes));
        let key = format!("{sha256}-{}", inner.fingerprint);
        let started = Instant::now();
        // SAFETY: artifacts are written only by this function (from `Component::serialize` of an engine
        // with the same fingerprint, which the key includes) into the gateway's own store; wasmtime checks
        // the engine compatibility header again and fails cleanly on a mismatch.
        let cached = self
            .cache
            .get(&key)
            .and_then(|artifact| unsafe { Component::deserialize(&inner.engine, &artifact) }.ok());
        let from_cache = cached.is_some();
        let component = match cached {
            Some(c) => c,
            None => {
                validate::check_structure(bytes)?;
                let c = Component::new(&inner.engine, bytes)
                    .map_err(|e| UploadError::Compile(error_chain(&e)))?;
                match c.serialize() {
                    Ok(artifact) => {
                        if let Err(e) = self.cache.put(&key, &artifact) {
                            tracing::warn!(plugin = name, "storing compiled artifact failed: {e}");
                        }
                    }
                    Err(e) => tracing::warn!(plugin = name, "serializing artifact failed: {e}"),
                }
                c
            }
        };
        let load_time = started.elapsed();
        validate::check_world(&inner.engine, &component)?;
        let pre = inner
            .linker
            .instantiate_pre(&component)
            .and_then(PluginPre::new)
            .map_err(|e| UploadError::WrongWorld(error_chain(&e)))?;

        let mut inst =
            new_instance(&self.engine, &pre, name).map_err(|f| UploadError::Info(f.to_string()))?;
        let deadline = inner.config.config_deadline;
        let wit_info = run_call(
            &inner.config,
            name,
            &mut inst,
            CallSite::Info,
            deadline,
            |p, s| p.call_info(s),
        )
        .map_err(|f| UploadError::Info(f.to_string()))?;
        let mut phases: Vec<Phase> = wit_info.phases.into_iter().map(phase_from_wit).collect();
        phases.sort();
        phases.dedup();
        let phase_mask = phases.iter().fold(0u8, |m, p| m | (1 << p.index()));
        let plugin = LoadedPlugin {
            name: name.to_string(),
            sha256,
            size: bytes.len(),
            info: PluginInfo {
                name: wit_info.name,
                version: wit_info.version,
                priority: wit_info.priority,
                phases,
                consumer_credential: wit_info.consumer_credential,
            },
            phase_mask,
            from_cache,
            load_time,
            loaded_at: SystemTime::now(),
            engine: self.engine.clone(),
            pre,
            pool: Mutex::new(Vec::new()),
            retired: AtomicU64::new(0),
            metrics: PluginMetrics::default(),
        };
        plugin.metrics.record_instance();
        plugin.checkin(inst);
        tracing::info!(
            plugin = name,
            sha256 = %plugin.sha256,
            from_cache,
            load_ms = load_time.as_secs_f64() * 1e3,
            "plugin loaded"
        );
        Ok(Arc::new(plugin))
    }

    /// Makes `plugin` the one served under its name; returns the previous version (requests holding it
    /// finish on it).
    pub fn install(&self, plugin: Arc<LoadedPlugin>) -> Option<Arc<LoadedPlugin>> {
        self.plugins
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(plugin.name.clone(), plugin)
    }

    /// `prepare` + `install`.
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<Arc<LoadedPlugin>, UploadError> {
        let plugin = self.prepare(name, bytes)?;
        self.install(plugin.clone());
        Ok(plugin)
    }

    /// The plugin served under `name`.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Removes a plugin (the gateway checks it is unused first).
    pub fn remove(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.plugins
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
    }

    /// Every loaded plugin, by name.
    pub fn list(&self) -> Vec<Arc<LoadedPlugin>> {
        let mut v: Vec<_> = self
            .plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}
