//! Per-node runtime feedback shared by `least_conn` and `ewma`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::ewma::PeakEwma;

/// Live state of one node for the lifetime of one balancer (config version).
#[derive(Debug, Default)]
pub(crate) struct NodeLoad {
    /// Requests started and not yet finished. An atomic because it changes
    /// twice per request on every worker thread.
    active: AtomicUsize,
    /// Latency estimate; a short lock because decay needs the value and its
    /// timestamp updated together.
    latency: Mutex<PeakEwma>,
}

impl NodeLoad {
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    pub fn start(&self) {
        self.active.fetch_add(1, Ordering::Relaxed);
    }

    /// Saturates at 0 so an unmatched `on_finish` (a caller bug) cannot wrap
    /// the counter to `usize::MAX` and blacklist the node forever.
    pub fn finish(&self) {
        // The closure never returns None, so the update always succeeds and
        // the result carries no information.
        let _ = self
            .active
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
    }

    pub fn observe(&self, latency: Duration, now: Instant) {
        self.lock_latency().observe(latency, now);
    }

    /// Latency estimate in nanoseconds decayed to `now`; `None` if the node
    /// has never reported a latency.
    pub fn latency_ns(&self, now: Instant) -> Option<f64> {
        self.lock_latency().value_at(now)
    }

    fn lock_latency(&self) -> std::sync::MutexGuard<'_, PeakEwma> {
        // Every PeakEwma value is valid, so a poisoned lock is safe to reuse.
        self.latency.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_counts_saturate_at_zero() {
        let load = NodeLoad::default();
        load.start();
        load.start();
        load.finish();
        assert_eq!(load.active(), 1);
        load.finish();
        load.finish();
        assert_eq!(load.active(), 0);
    }
}
