//! Metrics read at scrape time from state the gateway keeps anyway: each loaded Wasm plugin's runtime
//! counters and the live config's version. Nothing here runs per request.

use crate::catalog::Catalog;
use crate::plugin::{MetricsSnapshot, Phase, CALL_BUCKETS};
use crate::snapshot::Live;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::fmt::Error;
use std::sync::Arc;

/// `sluice_config_version` and `sluice_config_reload_timestamp_seconds`.
pub struct ConfigCollector(pub Arc<Live>);

impl std::fmt::Debug for ConfigCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConfigCollector")
    }
}

impl Collector for ConfigCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), Error> {
        let (version, at) = self.0.version();
        let v = ConstGauge::new(i64::try_from(version).unwrap_or(i64::MAX));
        v.encode(encoder.encode_descriptor(
            "config_version",
            "Config snapshots installed since start (1 = the one loaded at start).",
            None,
            v.metric_type(),
        )?)?;
        let t = ConstGauge::new(at);
        t.encode(encoder.encode_descriptor(
            "config_reload_timestamp_seconds",
            "When the live config was last installed, Unix time.",
            None,
            t.metric_type(),
        )?)
    }
}

/// Per-plugin runtime metrics of every loaded plugin (uploaded and built-in). A re-uploaded plugin starts
/// its counters again, which Prometheus reads as a counter reset.
pub struct PluginCollector(pub Arc<Catalog>);

impl std::fmt::Debug for PluginCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PluginCollector")
    }
}

/// One plugin's figures, read once per scrape.
struct Row {
    name: String,
    m: MetricsSnapshot,
    idle: usize,
    /// Only the phases it implements get series: the others would be zeros forever.
    phases: Vec<Phase>,
}

/// A per-plugin gauge: name, help, and how to read it from a [`Row`].
type GaugeSpec = (&'static str, &'static str, fn(&Row) -> i64);

const GAUGES: [GaugeSpec; 2] = [
    (
        "plugin_memory_high_water_bytes",
        "Largest linear memory any instance of the plugin reached.",
        |r| i64::try_from(r.m.memory_high_water).unwrap_or(i64::MAX),
    ),
    (
        "plugin_idle_instances",
        "Instances of the plugin pooled and ready for a request.",
        |r| i64::try_from(r.idle).unwrap_or(i64::MAX),
    ),
];

/// Buckets as `encode_histogram` wants them: (upper bound, per-bucket count).
fn histogram_buckets(counts: &crate::plugin::CallBuckets) -> Vec<(f64, u64)> {
    CALL_BUCKETS
        .iter()
        .copied()
        .chain([f64::INFINITY])
        .zip(counts.iter().copied())
        .collect()
}

impl Collector for PluginCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), Error> {
        let mut plugins: Vec<Row> = self
            .0
            .loaded()
            .into_iter()
            .map(|p| Row {
                name: p.name().to_string(),
                m: p.metrics().snapshot(),
                idle: p.idle_instances(),
                phases: Phase::ALL
                    .into_iter()
                    .filter(|ph| p.implements(*ph))
                    .collect(),
            })
            .collect();
        plugins.sort_by(|a, b| a.name.cmp(&b.name));

        let mut calls = encoder.encode_descriptor(
            "plugin_calls",
            "Wasm plugin phase calls, by plugin and phase.",
            None,
            MetricType::Counter,
        )?;
        for r in &plugins {
            for phase in &r.phases {
                let labels = [("plugin", r.name.as_str()), ("phase", phase.as_str())];
                calls
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&r.m.calls[*phase as usize], None)?;
            }
        }

        let mut time = encoder.encode_descriptor(
            "plugin_call_duration_seconds",
            "Time spent in Wasm plugin phase calls, by plugin and phase.",
            None,
            MetricType::Histogram,
        )?;
        for r in &plugins {
            for phase in &r.phases {
                let i = *phase as usize;
                let buckets = histogram_buckets(&r.m.time_buckets[i]);
                // The count is the buckets' sum, not the call counter, so `+Inf` always equals it.
                let count = buckets.iter().map(|(_, c)| c).sum();
                let labels = [("plugin", r.name.as_str()), ("phase", phase.as_str())];
                time.encode_family(&labels)?
                    .encode_histogram::<NoLabelSet>(
                        r.m.time[i].as_secs_f64(),
                        count,
                        &buckets,
                        None,
                    )?;
            }
        }

        let mut faults = encoder.encode_descriptor(
            "plugin_faults",
            "Wasm plugin faults, by plugin and kind (trap, deadline, memory, contract, host).",
            None,
            MetricType::Counter,
        )?;
        for r in &plugins {
            let kinds = [
                ("trap", r.m.traps),
                ("deadline", r.m.deadline_hits),
                ("memory", r.m.memory_faults),
                ("contract", r.m.contract_faults),
                ("host", r.m.host_faults),
            ];
            for (kind, n) in kinds {
                faults
                    .encode_family(&[("plugin", r.name.as_str()), ("kind", kind)])?
                    .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
            }
        }

        let mut created = encoder.encode_descriptor(
            "plugin_instances_created",
            "Wasm instances of the plugin created; a faulted instance is discarded and replaced, so \
             growth beyond the pool size means faults or bursts.",
            None,
            MetricType::Counter,
        )?;
        for r in &plugins {
            created
                .encode_family(&[("plugin", r.name.as_str())])?
                .encode_counter::<NoLabelSet, _, u64>(&r.m.instances_created, None)?;
        }

        for (metric, help, value) in GAUGES {
            let mut family = encoder.encode_descriptor(metric, help, None, MetricType::Gauge)?;
            for r in &plugins {
                family
                    .encode_family(&[("plugin", r.name.as_str())])?
                    .encode_gauge(&value(r))?;
            }
        }
        Ok(())
    }
}
