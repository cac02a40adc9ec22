//! Upstream health in metrics, read at scrape time from the live snapshot's upstream runtimes (only those
//! with `checks`): how many nodes are unhealthy now, and how often nodes changed state. Labels are the
//! upstream's name (`upstreams/<id>`, or `routes/<id>` / `services/<id>` for inline upstreams), so the
//! series follow configured objects, never addresses of discovered nodes.
//!
//! The transition counters live in the upstream runtime, which a config change to that upstream
//! rebuilds: the series then starts again at 0, which Prometheus reads as a counter reset.

use crate::snapshot::Live;
use crate::upstream::health::HealthTally;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use std::fmt::Error;
use std::sync::Arc;

/// A per-upstream gauge: name, help, and how to read it from a tally.
type GaugeSpec = (&'static str, &'static str, fn(&HealthTally) -> usize);

/// `sluice_upstream_unhealthy_nodes`, `sluice_upstream_nodes` and
/// `sluice_upstream_health_transitions_total{to}`.
pub struct HealthCollector(pub Arc<Live>);

impl std::fmt::Debug for HealthCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HealthCollector")
    }
}

impl Collector for HealthCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), Error> {
        let snapshot = self.0.load();
        let mut rows: Vec<(&str, HealthTally)> = snapshot
            .upstream_runtimes()
            .filter_map(|(name, rt)| rt.health_tally().map(|t| (name, t)))
            .collect();
        rows.sort_by(|a, b| a.0.cmp(b.0));

        let gauges: [GaugeSpec; 2] = [
            (
                "upstream_nodes",
                "Nodes of an upstream with health checks (after service discovery).",
                |t| t.nodes,
            ),
            (
                "upstream_unhealthy_nodes",
                "Nodes of an upstream its health checks hold unhealthy now.",
                |t| t.unhealthy,
            ),
        ];
        for (metric, help, value) in gauges {
            let mut family = encoder.encode_descriptor(metric, help, None, MetricType::Gauge)?;
            for (name, t) in &rows {
                let v = i64::try_from(value(t)).unwrap_or(i64::MAX);
                family
                    .encode_family(&[("upstream", *name)])?
                    .encode_gauge(&v)?;
            }
        }

        let mut transitions = encoder.encode_descriptor(
            "upstream_health_transitions",
            "Node state changes seen by health checks, by upstream and the state entered.",
            None,
            MetricType::Counter,
        )?;
        for (name, t) in &rows {
            for (to, n) in [("unhealthy", t.went_down), ("healthy", t.came_back)] {
                transitions
                    .encode_family(&[("upstream", *name), ("to", to)])?
                    .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
            }
        }
        Ok(())
    }
}
