//! # Wasm plugin runtime
//!
//! Runs Sluice plugins: Wasm components of the world `sluice:plugin/plugin@0.1.0` (`wit/`), built with
//! `plugin-sdk` and uploaded through the admin API.
//!
//! ## Embedding recipe
//!
//! 1. At startup build one [`PluginEngine`]: `PluginEngine::new(HostConfig::default(), services)`, where
//!    `services` ([`HostServices`]) holds the gateway's implementations of the shared stores, consumer
//!    lookup, outbound HTTP and metrics sink ([`services`] has working in-process ones).
//! 2. Wrap it in a [`PluginRegistry`] with an [`ArtifactCache`] over the gateway's store (sled), so a restart
//!    deserializes compiled artifacts instead of compiling.
//! 3. On upload (and at startup for stored binaries), **off the request path** (`spawn_blocking`):
//!    `let p = registry.prepare(name, &bytes)?` (validation, compile or cache hit, `InstancePre`, `info()`),
//!    then `p.validate(json)` for every config that already uses `name`, then `registry.install(p)`.
//!    [`UploadError`] and [`ConfigError::Rejected`] carry the 400 message.
//! 4. When building a config snapshot, for each (plugin, route/service/global-rule config version):
//!    `loaded.configure(json)?` → [`ConfiguredPlugin`] (parsed once; keep it in the snapshot behind an
//!    `Arc`), ordered by `loaded.info().priority` or `_meta.priority`.
//! 5. Per request: build one [`RequestState`], then for each phase and each plugin in order call
//!    `configured.call(phase, &mut state)`. [`Decision::Respond`] from rewrite/access skips the upstream;
//!    apply `state` (path, query, headers, consumer, response) to what goes upstream/downstream. On
//!    `Err(`[`PluginFault`]`)` answer 500 with a generic body (or skip the plugin with `_meta.fail_open`)
//!    and log the fault with its `backtrace`.
//!
//! Why this shape: compile once per binary, parse config once per config version, and make the per-request
//! path a pooled-instance checkout plus one guest call, so a plugin costs well under a microsecond when it
//! does nothing and a fault costs one discarded instance.
//!
//! ## Instance model: pooled instances per plugin version (measured)
//!
//! Each [`LoadedPlugin`] keeps idle instances (`Store` + instance, default ≤ 16). A call checks one out (or
//! instantiates one from the `InstancePre`), makes sure the config is configured in it (a handle cached per
//! instance; `configure` runs once per instance and config version), runs the phase and checks it back in.
//! A faulted instance is dropped, never reused (wasmtime would refuse to re-enter it anyway); the next call
//! gets a fresh one. Per-request state lives on the host side ([`RequestState`], including the `context`
//! map), so every phase and plugin of a request sees one consistent context even if its calls land on
//! different instances. Memory is `plugins × live instances (≈ concurrency) × instance memory`: it does
//! not grow with routes (configs are small parsed structs inside each instance) nor with worker count.
//!
//! Figures (release, this 2-core machine, `benches/plugin_calls.rs`, criterion medians):
//!
//! | what | time |
//! |---|---|
//! | no-op phase, pooled instance (`ConfiguredPlugin::call`, all included) | 560 ns |
//! | a phase the plugin does not implement (no wasm entered) | 23 ns |
//! | one header set (`add-header` access) | 0.9–1.0 µs |
//! | four host calls (header get, context set, header set, refused status write) | 2.7 µs |
//! | pool checkout + checkin | 16 ns |
//! | fresh `Store` + `InstancePre::instantiate` + drop (pooling allocator) | 6.6 µs |
//! | fresh-instance model: instantiate + `configure` + no-op phase | 18.3 µs |
//! | fresh-instance model with `add-header` | 18.9 µs |
//! | `prepare` of a 124 KB component, cache miss (validate + compile + link + `info`) | 187 ms |
//! | `prepare`, artifact-cache hit (deserialize + link + `info`) | 0.72 ms |
//! | access phase with one loopback outbound HTTP call / without | 62 µs / 3.9 µs |
//!
//! Taken with other builds running (load average 3–4 on 2 cores); expect somewhat less on an idle machine.
//! The 560 ns no-op is wasmtime's component call (~250–500 ns here) plus two clock reads (deadline and
//! time metric, ~9 %), the pool mutex and two `RequestState` swaps; the 300 ns goal is not met yet.
//!
//! A fresh instance per request would cost an instantiation **plus a `configure` (JSON parse) per request
//! per plugin** — and per-request parsing is exactly what the issue forbids — against a mutex pop/push for
//! the pool. Pooling wins by an order of magnitude; the price is that guest globals persist between
//! requests (plugins must keep per-request state in `context`, which the SDK steers them to).
//!
//! ## Sync bindings, and network I/O without blocking the event loop
//!
//! Bindings are synchronous and the engine runs with `concurrency_support(false)`: facts measured with
//! wasmtime 48 on this machine type put a no-op call at ~254 ns min / 500 ns median sync versus 435 ns with
//! async (fiber-based) bindings, and async would also need a fiber stack per store. Every import but two
//! answers from memory; `http-outbound.call` and the `shared` stores (Redis, [`shared_store`]) are the
//! exceptions: they run through [`services::OutboundHttp`] and [`shared_store::SharedStores`], which
//! perform the I/O on their own runtime (`io_runtime`), while the calling thread waits inside
//! `tokio::task::block_in_place` when it is a multi-threaded runtime worker (the worker's other tasks move
//! to another thread meanwhile, so the event loop never stalls). Its timeout is the rest of the phase
//! deadline (for `shared`, the store's own timeout, not charged to the phase deadline). Cost: one blocked
//! thread per in-flight call, measured below; plugins that make no such calls pay nothing for it. If
//! outbound-heavy plugins become common, the alternative is async bindings on a second engine used only
//! for components that import `http-outbound`.
//!
//! ## Imports that wait: `request.delay` and `cache.lookup`
//!
//! Two imports wait on a plugin's behalf. `request.delay` only records the wish in the
//! [`RequestState`]; the proxy sleeps on a tokio timer after the phase returns (no instance, no thread held),
//! which is how `limit-req` and `limit-conn` smooth bursts. `cache.lookup` coalesces concurrent misses of one
//! key (the first request becomes the filler, the rest wait for its response, see [`services::LocalCache`]);
//! that wait happens inside the call (`block_in_place`, like outbound HTTP), and its duration is added back to
//! the phase deadline through the store's epoch callback, which only runs when the tick deadline is reached
//! and so costs nothing per call. `cache.store-response` does not copy the body through the guest at all:
//! the proxy tees the upstream body into the cache as it streams to the client and commits it at the end.
//!
//! ## Limits and containment
//!
//! [`HostConfig`] defaults: phase deadline 50 ms (epoch interruption, 5 ms ticker thread), 200 ms for
//! `validate`/`configure`; 32 MiB linear memory per instance; 256 component instances in all (wasmtime's
//! default 1000), 8 core instances / 2 memories / 4 tables per component (20 each by default), 10 000 table
//! elements; pooling allocator with 2 MiB kept resident per slot; 8 MiB upload limit. A memory grow past
//! the limit is refused (`StoreLimits` wrapped to record the high-water mark and the refusal, which is how
//! a memory fault is told from a plain trap). Uploads must be components importing only the world's
//! interfaces (no WASI at all for now) and exporting all of its functions.
//!
//! ## Files
//! `bindings` (the only `bindgen!`), `engine` (config, limits, ticker, linker), `host` (store data and the
//! imports), `services` (traits + in-process impls), `shared_store` (the `shared` import on Redis),
//! `io_runtime` (the runtime imports that do network I/O run on), `response_cache` (the cache store with fill locks),
//! `bounded_map` (the byte-bounded TTL map under kv and cache), `registry` (load, pool, configure, call),
//! `validate` (upload checks), `artifact` (compiled-artifact cache), `state` (request state, decisions),
//! `fault` (errors), `metrics` (per-plugin counters).
pub mod artifact;
pub mod bindings;
mod bounded_map;
pub mod engine;
pub mod fault;
mod host;
mod io_runtime;
pub mod metrics;
pub mod registry;
mod response_cache;
pub mod services;
pub mod shared_store;
pub mod state;
pub mod validate;

pub use artifact::{ArtifactCache, DirArtifactCache, MemoryArtifactCache};
pub use engine::{EngineError, HostConfig, PluginEngine};
pub use fault::{CallSite, ConfigError, FaultKind, PluginFault, UploadError};
pub use metrics::{CallBuckets, MetricsSnapshot, PluginMetrics, CALL_BUCKETS};
pub use registry::{ConfiguredPlugin, LoadedPlugin, PluginInfo, PluginRegistry};
pub use services::HostServices;
pub use state::{Completion, Decision, Phase, PluginResponse, RequestState, ResponseState};
