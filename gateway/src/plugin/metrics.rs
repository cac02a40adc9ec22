//! Per-plugin runtime metrics, read by the gateway's Prometheus endpoint at scrape time
//! (`crate::metrics`), so a plugin call never touches the exporter.
use super::fault::FaultKind;
use super::state::Phase;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds (seconds) of the phase-call duration histogram; the last bucket is `+Inf`. Plugin calls
/// run in microseconds and are cut off at a 50 ms deadline, so the buckets span that range only.
pub const CALL_BUCKETS: [f64; 10] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05,
];

/// Per-bucket (not cumulative) call counts of one phase; index `CALL_BUCKETS.len()` is `+Inf`.
pub type CallBuckets = [u64; CALL_BUCKETS.len() + 1];

/// Counters of one loaded plugin version. All relaxed atomics: a call costs a few uncontended adds.
#[derive(Debug, Default)]
pub struct PluginMetrics {
    calls: [AtomicU64; 5],
    nanos: [AtomicU64; 5],
    buckets: [[AtomicU64; CALL_BUCKETS.len() + 1]; 5],
    traps: AtomicU64,
    deadline_hits: AtomicU64,
    memory_faults: AtomicU64,
    contract_faults: AtomicU64,
    host_faults: AtomicU64,
    memory_high_water: AtomicUsize,
    instances_created: AtomicU64,
    configures: AtomicU64,
}

/// A point-in-time copy of [`PluginMetrics`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Phase calls, by phase (index = `Phase as usize`).
    pub calls: [u64; 5],
    /// Time spent in phase calls, by phase.
    pub time: [Duration; 5],
    /// Phase call durations by [`CALL_BUCKETS`], by phase.
    pub time_buckets: [CallBuckets; 5],
    /// Traps.
    pub traps: u64,
    /// Deadline interruptions.
    pub deadline_hits: u64,
    /// Memory limit hits.
    pub memory_faults: u64,
    /// Contract violations.
    pub contract_faults: u64,
    /// Host-side failures (instance limits).
    pub host_faults: u64,
    /// Largest linear memory any instance of this plugin reached, in bytes.
    pub memory_high_water: usize,
    /// Instances created (first use and replacements of faulted ones).
    pub instances_created: u64,
    /// `configure` calls (once per instance and config version).
    pub configures: u64,
}

impl MetricsSnapshot {
    /// All phase calls.
    pub fn total_calls(&self) -> u64 {
        self.calls.iter().sum()
    }
    /// All faults.
    pub fn total_faults(&self) -> u64 {
        self.traps
            + self.deadline_hits
            + self.memory_faults
            + self.contract_faults
            + self.host_faults
    }
}

impl PluginMetrics {
    pub(crate) fn record_call(&self, phase: Phase, took: Duration) {
        let i = phase.index();
        self.calls[i].fetch_add(1, Relaxed);
        self.nanos[i].fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
        let secs = took.as_secs_f64();
        let bucket = CALL_BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(CALL_BUCKETS.len());
        self.buckets[i][bucket].fetch_add(1, Relaxed);
    }
    pub(crate) fn record_fault(&self, kind: FaultKind) {
        let c = match kind {
            FaultKind::Trap => &self.traps,
            FaultKind::Deadline => &self.deadline_hits,
            FaultKind::Memory => &self.memory_faults,
            FaultKind::Contract => &self.contract_faults,
            FaultKind::Host => &self.host_faults,
        };
        c.fetch_add(1, Relaxed);
    }
    pub(crate) fn record_memory(&self, bytes: usize) {
        self.memory_high_water.fetch_max(bytes, Relaxed);
    }
    pub(crate) fn record_instance(&self) {
        self.instances_created.fetch_add(1, Relaxed);
    }
    pub(crate) fn record_configure(&self) {
        self.configures.fetch_add(1, Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let mut s = MetricsSnapshot::default();
        for i in 0..5 {
            s.calls[i] = self.calls[i].load(Relaxed);
            s.time[i] = Duration::from_nanos(self.nanos[i].load(Relaxed));
            for (b, count) in self.buckets[i].iter().enumerate() {
                s.time_buckets[i][b] = count.load(Relaxed);
            }
        }
        s.traps = self.traps.load(Relaxed);
        s.deadline_hits = self.deadline_hits.load(Relaxed);
        s.memory_faults = self.memory_faults.load(Relaxed);
        s.contract_faults = self.contract_faults.load(Relaxed);
        s.host_faults = self.host_faults.load(Relaxed);
        s.memory_high_water = self.memory_high_water.load(Relaxed);
        s.instances_created = self.instances_created.load(Relaxed);
        s.configures = self.configures.load(Relaxed);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_durations_land_in_their_buckets() {
        let m = PluginMetrics::default();
        m.record_call(Phase::Access, Duration::from_micros(20));
        m.record_call(Phase::Access, Duration::from_millis(3));
        m.record_call(Phase::Access, Duration::from_secs(1));
        let s = m.snapshot();
        let access = s.time_buckets[Phase::Access.index()];
        assert_eq!(access[0], 1, "20 µs <= 25 µs");
        assert_eq!(access[7], 1, "3 ms <= 5 ms");
        assert_eq!(access[CALL_BUCKETS.len()], 1, "1 s only fits +Inf");
        assert_eq!(access.iter().sum::<u64>(), s.calls[Phase::Access.index()]);
    }
}
