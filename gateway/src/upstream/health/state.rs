//! The health state machine of one node, in atomics so the request path reads and feeds it without a lock.
//!
//! Counters are consecutive, as in lua-resty-healthcheck (which APISIX uses): a success clears every
//! failure counter and a failure clears the success counter, so a node flaps only on a real run of
//! results. A threshold of 0 switches that kind of evidence off.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// What one probe or one proxied attempt told us about a node, after classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    HttpFailure,
    TcpFailure,
    Timeout,
}

/// How many consecutive results of each kind flip the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub successes: u32,
    pub http_failures: u32,
    pub tcp_failures: u32,
    pub timeouts: u32,
}

/// A change of state, returned so the caller logs it once with its context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    BecameHealthy,
    BecameUnhealthy,
}

/// Snapshot of the counters for the admin endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    pub success: u32,
    pub http_failure: u32,
    pub tcp_failure: u32,
    pub timeout_failure: u32,
}

#[derive(Debug)]
pub struct NodeState {
    healthy: AtomicBool,
    successes: AtomicU32,
    http_failures: AtomicU32,
    tcp_failures: AtomicU32,
    timeouts: AtomicU32,
    /// When it last turned unhealthy, in ms on the owner's clock; read for the passive recovery timeout.
    unhealthy_since_ms: AtomicU64,
}

impl Default for NodeState {
    fn default() -> Self {
        NodeState {
            healthy: AtomicBool::new(true),
            successes: AtomicU32::new(0),
            http_failures: AtomicU32::new(0),
            tcp_failures: AtomicU32::new(0),
            timeouts: AtomicU32::new(0),
            unhealthy_since_ms: AtomicU64::new(0),
        }
    }
}

/// Stores 0 only when needed: the common case (a healthy node answering fine) then writes nothing, so
/// concurrent requests to one node do not bounce its cache line.
fn clear(c: &AtomicU32) {
    if c.load(Ordering::Relaxed) != 0 {
        c.store(0, Ordering::Relaxed);
    }
}

impl NodeState {
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn unhealthy_since_ms(&self) -> u64 {
        self.unhealthy_since_ms.load(Ordering::Relaxed)
    }

    pub fn counters(&self) -> Counters {
        Counters {
            success: self.successes.load(Ordering::Relaxed),
            http_failure: self.http_failures.load(Ordering::Relaxed),
            tcp_failure: self.tcp_failures.load(Ordering::Relaxed),
            timeout_failure: self.timeouts.load(Ordering::Relaxed),
        }
    }

    /// Feeds one result; `now_ms` stamps a move to unhealthy. Concurrent callers may both push a counter
    /// over its threshold, but the state flips (and a transition is reported) exactly once.
    pub fn record(&self, outcome: Outcome, t: &Thresholds, now_ms: u64) -> Option<Transition> {
        let failure_counter = match outcome {
            Outcome::Success => {
                clear(&self.http_failures);
                clear(&self.tcp_failures);
                clear(&self.timeouts);
                if self.is_healthy() {
                    clear(&self.successes);
                    return None;
                }
                if t.successes == 0 {
                    return None;
                }
                let n = self.successes.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= t.successes && self.set_healthy(true) {
                    self.successes.store(0, Ordering::Relaxed);
                    return Some(Transition::BecameHealthy);
                }
                return None;
            }
            Outcome::HttpFailure => (&self.http_failures, t.http_failures),
            Outcome::TcpFailure => (&self.tcp_failures, t.tcp_failures),
            Outcome::Timeout => (&self.timeouts, t.timeouts),
        };
        clear(&self.successes);
        let (counter, limit) = failure_counter;
        if limit == 0 || !self.is_healthy() {
            return None;
        }
        let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= limit && self.set_healthy(false) {
            self.unhealthy_since_ms.store(now_ms, Ordering::Relaxed);
            clear(&self.http_failures);
            clear(&self.tcp_failures);
            clear(&self.timeouts);
            return Some(Transition::BecameUnhealthy);
        }
        None
    }

    /// Marks the node healthy without evidence (the passive recovery timeout); true if it was unhealthy.
    pub fn reset_healthy(&self) -> bool {
        if self.set_healthy(true) {
            clear(&self.successes);
            return true;
        }
        false
    }

    /// True when this call changed the state.
    fn set_healthy(&self, to: bool) -> bool {
        self.healthy
            .compare_exchange(!to, to, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        successes: 2,
        http_failures: 3,
        tcp_failures: 2,
        timeouts: 1,
    };

    #[test]
    fn consecutive_failures_of_one_kind_flip_to_unhealthy() {
        let n = NodeState::default();
        assert_eq!(n.record(Outcome::HttpFailure, &T, 0), None);
        assert_eq!(n.record(Outcome::HttpFailure, &T, 0), None);
        assert_eq!(
            n.record(Outcome::HttpFailure, &T, 42),
            Some(Transition::BecameUnhealthy)
        );
        assert!(!n.is_healthy());
        assert_eq!(n.unhealthy_since_ms(), 42);
        // Further failures do not report again.
        assert_eq!(n.record(Outcome::TcpFailure, &T, 50), None);
    }

    #[test]
    fn a_success_in_between_resets_the_failure_run() {
        let n = NodeState::default();
        n.record(Outcome::HttpFailure, &T, 0);
        n.record(Outcome::HttpFailure, &T, 0);
        n.record(Outcome::Success, &T, 0);
        n.record(Outcome::HttpFailure, &T, 0);
        n.record(Outcome::HttpFailure, &T, 0);
        assert!(n.is_healthy(), "{:?}", n.counters());
        assert_eq!(n.counters().http_failure, 2);
    }

    #[test]
    fn recovery_needs_consecutive_successes() {
        let n = NodeState::default();
        n.record(Outcome::Timeout, &T, 0);
        assert!(!n.is_healthy());
        assert_eq!(n.record(Outcome::Success, &T, 0), None);
        n.record(Outcome::TcpFailure, &T, 0); // breaks the run
        assert_eq!(n.record(Outcome::Success, &T, 0), None);
        assert_eq!(
            n.record(Outcome::Success, &T, 0),
            Some(Transition::BecameHealthy)
        );
        assert!(n.is_healthy());
        assert_eq!(n.counters().success, 0);
    }

    #[test]
    fn zero_threshold_ignores_that_kind() {
        let t = Thresholds {
            timeouts: 0,
            successes: 0,
            ..T
        };
        let n = NodeState::default();
        for _ in 0..10 {
            assert_eq!(n.record(Outcome::Timeout, &t, 0), None);
        }
        assert!(n.is_healthy());
        n.record(Outcome::TcpFailure, &t, 0);
        n.record(Outcome::TcpFailure, &t, 0);
        assert!(!n.is_healthy());
        // successes: 0 means results never bring it back; only a reset does.
        for _ in 0..10 {
            n.record(Outcome::Success, &t, 0);
        }
        assert!(!n.is_healthy());
        assert!(n.reset_healthy());
        assert!(!n.reset_healthy());
    }

    #[test]
    fn concurrent_failures_report_one_transition() {
        let n = std::sync::Arc::new(NodeState::default());
        let t = Thresholds {
            http_failures: 50,
            ..T
        };
        let flips: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let n = &n;
                    s.spawn(move || {
                        (0..100)
                            .filter(|_| n.record(Outcome::HttpFailure, &t, 1).is_some())
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        assert_eq!(flips, 1);
        assert!(!n.is_healthy());
    }
}
