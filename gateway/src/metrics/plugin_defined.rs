//! Metrics plugins define through the WIT `metrics` import, exported as `sluice_plugin_<name>` with the
//! plugin's name as the `plugin` label.
//!
//! A plugin chooses names and label values at run time, so everything it sends is checked before it can
//! reach the exposition: names must be Prometheus identifiers and not shadow the gateway's own
//! `sluice_plugin_*` metrics, one name keeps the type it was first used with, and each plugin may create
//! at most [`MAX_SERIES_PER_PLUGIN`] label sets. What is refused is counted in
//! `sluice_plugin_metrics_dropped_total{plugin,reason}` instead of failing the plugin call.

use crate::plugin::services::MetricsSink;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Distinct label sets one plugin may create across all its metrics.
pub const MAX_SERIES_PER_PLUGIN: usize = 1000;
/// Labels per observation, besides `plugin`.
const MAX_LABELS: usize = 8;
/// Longest label value kept; longer values are refused, not truncated (truncation could merge series).
const MAX_LABEL_VALUE: usize = 128;
/// Prometheus' default buckets: plugins measure anything from microseconds to seconds.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Names of the gateway's own per-plugin metrics (after `sluice_plugin_`).
const RESERVED: [&str; 7] = [
    "calls",
    "call_duration_seconds",
    "faults",
    "memory_high_water_bytes",
    "idle_instances",
    "instances_created",
    "metrics_dropped",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Histogram,
}

enum Series {
    Counter(u64),
    Histogram {
        sum: f64,
        /// Per bucket, the last being `+Inf`.
        buckets: [u64; BUCKETS.len() + 1],
    },
}

/// Label set of one series: `plugin` first, then the plugin's labels sorted by name.
type Labels = Vec<(String, String)>;

struct Family {
    kind: Kind,
    series: BTreeMap<Labels, Series>,
}

#[derive(Default)]
struct Inner {
    /// By exported name without the `sluice_` prefix (`plugin_<name>`).
    families: BTreeMap<String, Family>,
    series_per_plugin: HashMap<String, usize>,
    dropped: BTreeMap<(String, &'static str), u64>,
}

/// The [`MetricsSink`] the plugin host writes to and the collector `/metrics` reads.
#[derive(Default)]
pub struct PluginDefinedMetrics {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for PluginDefinedMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PluginDefinedMetrics")
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 100
}

/// The exported name (without `sluice_`), or why the observation is refused.
fn family_name(name: &str, kind: Kind) -> Option<String> {
    // Counters get `_total` from the encoder; a plugin that wrote it already must not get it twice.
    let base = match kind {
        Kind::Counter => name.strip_suffix("_total").unwrap_or(name),
        Kind::Histogram => name,
    };
    (is_identifier(base) && !RESERVED.contains(&base)).then(|| format!("plugin_{base}"))
}

fn series_labels(plugin: &str, labels: &[(String, String)]) -> Option<Labels> {
    if labels.len() > MAX_LABELS {
        return None;
    }
    let mut out: Labels = Vec::with_capacity(labels.len() + 1);
    for (k, v) in labels {
        let reserved = k == "plugin" || k == "le" || k.starts_with("__");
        if reserved || !is_identifier(k) || v.len() > MAX_LABEL_VALUE {
            return None;
        }
        out.push((k.clone(), v.clone()));
    }
    out.sort();
    if out.windows(2).any(|w| w[0].0 == w[1].0) {
        return None;
    }
    out.insert(0, ("plugin".to_string(), plugin.to_string()));
    Some(out)
}

impl Inner {
    fn drop_one(&mut self, plugin: &str, reason: &'static str) {
        *self
            .dropped
            .entry((plugin.to_string(), reason))
            .or_default() += 1;
    }

    fn observe(
        &mut self,
        plugin: &str,
        name: &str,
        labels: &[(String, String)],
        kind: Kind,
        value: f64,
    ) {
        let (Some(family), Some(labels)) = (family_name(name, kind), series_labels(plugin, labels))
        else {
            return self.drop_one(plugin, "invalid");
        };
        let fam = self.families.entry(family).or_insert_with(|| Family {
            kind,
            series: BTreeMap::new(),
        });
        if fam.kind != kind {
            return self.drop_one(plugin, "type_conflict");
        }
        let series = match fam.series.get_mut(&labels) {
            Some(s) => s,
            None => {
                let used = self
                    .series_per_plugin
                    .entry(plugin.to_string())
                    .or_default();
                if *used >= MAX_SERIES_PER_PLUGIN {
                    return self.drop_one(plugin, "series_limit");
                }
                *used += 1;
                fam.series.entry(labels).or_insert(match kind {
                    Kind::Counter => Series::Counter(0),
                    Kind::Histogram => Series::Histogram {
                        sum: 0.0,
                        buckets: [0; BUCKETS.len() + 1],
                    },
                })
            }
        };
        match series {
            Series::Counter(n) => *n = n.saturating_add(value as u64),
            Series::Histogram { sum, buckets } => {
                *sum += value;
                let i = BUCKETS
                    .iter()
                    .position(|le| value <= *le)
                    .unwrap_or(BUCKETS.len());
                buckets[i] += 1;
            }
        }
    }
}

impl MetricsSink for PluginDefinedMetrics {
    fn counter(&self, plugin: &str, name: &str, labels: &[(String, String)], delta: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.observe(plugin, name, labels, Kind::Counter, delta as f64);
    }

    fn histogram(&self, plugin: &str, name: &str, labels: &[(String, String)], value: f64) {
        if !value.is_finite() {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            return inner.drop_one(plugin, "invalid");
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.observe(plugin, name, labels, Kind::Histogram, value);
    }
}

impl Collector for PluginDefinedMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut dropped = encoder.encode_descriptor(
            "plugin_metrics_dropped",
            "Plugin metric updates refused, by plugin and reason (invalid, type_conflict, series_limit).",
            None,
            MetricType::Counter,
        )?;
        for ((plugin, reason), n) in &inner.dropped {
            dropped
                .encode_family(&[("plugin", plugin.as_str()), ("reason", *reason)])?
                .encode_counter::<NoLabelSet, _, u64>(n, None)?;
        }
        for (name, fam) in &inner.families {
            let (kind, help) = match fam.kind {
                Kind::Counter => (MetricType::Counter, "Counter defined by a Wasm plugin."),
                Kind::Histogram => (MetricType::Histogram, "Histogram defined by a Wasm plugin."),
            };
            let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
            for (labels, series) in &fam.series {
                let mut m = metric.encode_family(labels)?;
                match series {
                    Series::Counter(n) => m.encode_counter::<NoLabelSet, _, u64>(n, None)?,
                    Series::Histogram { sum, buckets } => {
                        let pairs: Vec<(f64, u64)> = BUCKETS
                            .iter()
                            .copied()
                            .chain([f64::INFINITY])
                            .zip(buckets.iter().copied())
                            .collect();
                        let count = buckets.iter().sum();
                        m.encode_histogram::<NoLabelSet>(*sum, count, &pairs, None)?
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;
    use std::sync::Arc;

    fn encoded(m: &Arc<PluginDefinedMetrics>) -> String {
        let mut reg = Registry::with_prefix("sluice");
        reg.register_collector(Box::new(Arc::clone(m)));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
        out
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn counters_and_histograms_are_namespaced_by_plugin() {
        let m = Arc::new(PluginDefinedMetrics::default());
        m.counter("p", "served_total", &labels(&[("route", "1")]), 2);
        m.counter("p", "served", &labels(&[("route", "1")]), 1);
        m.histogram("q", "wait_seconds", &[], 0.02);
        let text = encoded(&m);
        assert!(
            text.contains(r#"sluice_plugin_served_total{plugin="p",route="1"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sluice_plugin_wait_seconds_bucket{le="0.025",plugin="q"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sluice_plugin_wait_seconds_count{plugin="q"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn bad_names_type_conflicts_and_label_floods_are_dropped_and_counted() {
        let m = Arc::new(PluginDefinedMetrics::default());
        m.counter("p", "bad-name", &[], 1);
        m.counter("p", "calls", &[], 1);
        m.counter("p", "x", &labels(&[("plugin", "spoof")]), 1);
        m.counter("p", "both", &[], 1);
        m.histogram("p", "both", &[], 1.0);
        for i in 0..MAX_SERIES_PER_PLUGIN + 5 {
            m.counter("p", "flood", &labels(&[("id", &i.to_string())]), 1);
        }
        let text = encoded(&m);
        assert!(
            text.contains(r#"sluice_plugin_metrics_dropped_total{plugin="p",reason="invalid"} 3"#),
            "{text}"
        );
        assert!(text.contains(
            r#"sluice_plugin_metrics_dropped_total{plugin="p",reason="type_conflict"} 1"#
        ));
        // `both` took one series, so the flood gets one fewer than the cap.
        assert!(text.contains(
            r#"sluice_plugin_metrics_dropped_total{plugin="p",reason="series_limit"} 6"#
        ));
        assert!(!text.contains("spoof"));
    }
}
