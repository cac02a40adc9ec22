//! Prometheus metrics and the status endpoints, served on `--metrics-listen`.
//!
//! Each kind of data is collected where it is cheapest:
//! - [`requests`]: per request, recorded once where the access-log record completes
//!   (`proxy::access_log`), with per-route label handles resolved once;
//! - [`runtime`]: read at scrape time from state kept anyway (each loaded Wasm plugin's runtime counters,
//!   the live config's version), so it costs nothing per request; [`upstream_health`] likewise reads the
//!   health checks' node states and transition counts;
//! - [`plugin_defined`]: what plugins report through the WIT `metrics` import, checked and capped.
//!
//! [`endpoint`] serves `/metrics`, `/status` and `/status/ready`. Every name starts with `sluice_`.

pub mod endpoint;
pub mod plugin_defined;
pub mod requests;
pub mod runtime;
pub mod upstream_health;

pub use plugin_defined::PluginDefinedMetrics;
pub use requests::{Completed, ConnectionGuard, HttpMetrics};

use crate::catalog::Catalog;
use crate::snapshot::Live;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// Everything `/metrics` exposes.
pub struct Metrics {
    registry: Registry,
    http: Arc<HttpMetrics>,
}

impl Metrics {
    pub fn new(
        http: Arc<HttpMetrics>,
        live: Arc<Live>,
        catalog: Arc<Catalog>,
        plugin_defined: Arc<PluginDefinedMetrics>,
    ) -> Self {
        let mut registry = Registry::with_prefix("sluice");
        http.register(&mut registry);
        registry.register_collector(Box::new(upstream_health::HealthCollector(Arc::clone(
            &live,
        ))));
        registry.register_collector(Box::new(runtime::ConfigCollector(live)));
        registry.register_collector(Box::new(runtime::PluginCollector(catalog)));
        registry.register_collector(Box::new(plugin_defined));
        Metrics { registry, http }
    }

    /// Adds metrics another part of the gateway collects (access log, log sinks).
    pub fn with_collector(
        mut self,
        collector: Box<dyn prometheus_client::collector::Collector>,
    ) -> Self {
        self.registry.register_collector(collector);
        self
    }

    /// The exposition text (OpenMetrics, which Prometheus reads).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        self.http.prune();
        let mut out = String::with_capacity(16 << 10);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
