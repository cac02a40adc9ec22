//! The gateway's only `bindgen!`: host-side bindings of the WIT world `sluice:plugin/plugin@0.1.0`
//! (`wit/sluice-plugin@0.1.0/`). Everything else in `plugin/` uses these types through this module.
//!
//! Synchronous bindings, no trappable imports: every host import answers from memory, except
//! `http-outbound.call` and `shared`, which bridge to async I/O themselves (see `super::host`), so no
//! import needs `async`
//! and the engine runs with `concurrency_support(false)` (the faster call path; figures in `super`'s docs).
wasmtime::component::bindgen!({
    path: "../wit/sluice-plugin@0.1.0",
    world: "sluice:plugin/plugin@0.1.0",
    // The `log-sink.sink` resource is the host's handle to a shared sink (see `crate::log_sink`).
    with: { "sluice:plugin/log-sink.sink": crate::log_sink::SinkHandle },
});

pub use self::sluice::plugin::types::{HttpMethod, Phase as WitPhase};
