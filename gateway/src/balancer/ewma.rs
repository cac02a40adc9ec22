//! `ewma`: peak-EWMA latency with power-of-two-choices (Finagle / APISIX).
//!
//! Each node keeps an exponentially weighted moving average of its latency
//! whose weight depends on *time*, not sample count: a sample taken `td`
//! after the previous one gets weight `1 - exp(-td / DECAY_TIME)`. It is a
//! *peak* EWMA: a sample above the average replaces it outright, so a node
//! that turns slow is avoided at once, while recovery is gradual. Reads decay
//! the value toward 0 with the time since the last sample (as APISIX does),
//! so a node that was avoided and got no traffic becomes attractive again
//! after a few decay periods and is re-probed.
//!
//! The cost of a node is `ewma * (active + 1) / weight`, so in-flight
//! requests and configured weight both count. A node never observed scores 0
//! and therefore gets tried, but once it has a request in flight it scores a
//! huge penalty until its first response (Finagle's rule) so a burst does not
//! pile onto a node of unknown speed.
//!
//! Choice: two distinct candidates are sampled at random and the cheaper one
//! wins. Unlike a full scan this does not herd every gateway worker onto the
//! single best node between feedback updates, and it never picks the single
//! worst node while another candidate exists. For two candidates it is the
//! same as a full scan.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use super::kind::Member;
use super::load::NodeLoad;
use super::rng::SplitMix;

/// Decay time constant. 10 s as in APISIX's ewma balancer (and Finagle's
/// default): long enough to smooth jitter, short enough that a recovered node
/// wins traffic back within tens of seconds.
pub(crate) const DECAY_TIME: Duration = Duration::from_secs(10);

/// Minimum latency recorded for a failed request. Failures are often fast
/// (connection refused, instant 502); recording their real latency would make
/// a broken node look like the fastest one and attract all traffic.
pub(crate) const FAILURE_PENALTY: Duration = Duration::from_secs(1);

/// Cost of a never-observed node that already has a request in flight
/// (Finagle's `Penalty`): worse than any real latency, still ordered by load.
const UNSEEN_BUSY_PENALTY_NS: f64 = (i64::MAX >> 16) as f64;

/// Time-decayed peak EWMA of one node's latency, in nanoseconds.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PeakEwma {
    value_ns: f64,
    /// `None` until the first sample: distinguishes "unknown" from "fast".
    stamp: Option<Instant>,
}

impl PeakEwma {
    pub fn observe(&mut self, latency: Duration, now: Instant) {
        let rtt = latency.as_nanos() as f64;
        self.value_ns = match self.stamp {
            None => rtt,
            Some(_) if rtt > self.value_ns => rtt,
            Some(stamp) => {
                let w = decay_weight(stamp, now);
                self.value_ns * w + rtt * (1.0 - w)
            }
        };
        self.stamp = Some(now);
    }

    /// Estimate at `now`, or `None` if the node was never observed.
    pub fn value_at(&self, now: Instant) -> Option<f64> {
        self.stamp
            .map(|stamp| self.value_ns * decay_weight(stamp, now))
    }
}

fn decay_weight(stamp: Instant, now: Instant) -> f64 {
    let td = now.saturating_duration_since(stamp).as_secs_f64();
    (-td / DECAY_TIME.as_secs_f64()).exp()
}

/// The latency sample to record for a finished request.
pub(crate) fn sample(latency: Duration, ok: bool) -> Duration {
    if ok {
        latency
    } else {
        latency.max(FAILURE_PENALTY)
    }
}

#[derive(Debug)]
pub(crate) struct Ewma {
    members: Vec<Member>,
    rng: SplitMix,
}

impl Ewma {
    pub fn new(members: Vec<Member>, rng: SplitMix) -> Self {
        Self { members, rng }
    }

    pub fn pick(&self, loads: &[NodeLoad], tried: &[usize], now: Instant) -> Option<usize> {
        // Retries are rare; only they pay for building a filtered list.
        let candidates: Cow<'_, [Member]> = if tried.is_empty() {
            Cow::Borrowed(&self.members)
        } else {
            Cow::Owned(
                self.members
                    .iter()
                    .copied()
                    .filter(|m| !tried.contains(&m.idx))
                    .collect(),
            )
        };
        match candidates.len() {
            0 => None,
            1 => Some(candidates[0].idx),
            n => {
                let a = self.rng.below(n);
                let mut b = self.rng.below(n - 1);
                if b >= a {
                    b += 1;
                }
                let (a, b) = (candidates[a], candidates[b]);
                let cheaper = if cost(loads, b, now) < cost(loads, a, now) {
                    b
                } else {
                    a
                };
                Some(cheaper.idx)
            }
        }
    }
}

fn cost(loads: &[NodeLoad], member: Member, now: Instant) -> f64 {
    let Some(load) = loads.get(member.idx) else {
        return f64::INFINITY;
    };
    let active = load.active() as f64;
    let weight = f64::from(member.weight.max(1));
    match load.latency_ns(now) {
        None if active == 0.0 => 0.0,
        None => UNSEEN_BUSY_PENALTY_NS + active,
        // Floor at 1 ns so a fully decayed node still counts its in-flight
        // requests instead of scoring 0 however busy it is.
        Some(ns) => ns.max(1.0) * (active + 1.0) / weight,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn first_sample_sets_value_and_peaks_replace_it() {
        let t0 = Instant::now();
        let mut e = PeakEwma::default();
        assert_eq!(e.value_at(t0), None);
        e.observe(10 * MS, t0);
        assert_eq!(e.value_at(t0), Some(10e6));
        e.observe(50 * MS, t0 + MS);
        assert_eq!(e.value_at(t0 + MS), Some(50e6));
    }

    #[test]
    fn lower_samples_blend_by_elapsed_time() {
        let t0 = Instant::now();
        let mut e = PeakEwma::default();
        e.observe(100 * MS, t0);
        // One decay period later the old value keeps weight 1/e.
        let t1 = t0 + DECAY_TIME;
        e.observe(10 * MS, t1);
        let w = (-1.0f64).exp();
        let expected = 100e6 * w + 10e6 * (1.0 - w);
        let got = e.value_at(t1).expect("observed");
        assert!((got - expected).abs() < 1.0, "{got} vs {expected}");
    }

    #[test]
    fn reads_decay_toward_zero_when_idle() {
        let t0 = Instant::now();
        let mut e = PeakEwma::default();
        e.observe(100 * MS, t0);
        let later = e.value_at(t0 + 3 * DECAY_TIME).expect("observed");
        assert!((later - 100e6 * (-3.0f64).exp()).abs() < 1.0, "{later}");
    }

    #[test]
    fn failures_never_look_fast() {
        assert_eq!(sample(MS, false), FAILURE_PENALTY);
        assert_eq!(sample(3 * FAILURE_PENALTY, false), 3 * FAILURE_PENALTY);
        assert_eq!(sample(MS, true), MS);
    }

    fn setup(weights: &[u32]) -> (Ewma, Vec<NodeLoad>) {
        let members = weights
            .iter()
            .enumerate()
            .map(|(idx, &weight)| Member { idx, weight })
            .collect();
        let loads = weights.iter().map(|_| NodeLoad::default()).collect();
        (Ewma::new(members, SplitMix::with_seed(1)), loads)
    }

    #[test]
    fn unseen_node_is_tried_before_observed_ones() {
        let (e, loads) = setup(&[1, 1]);
        let now = Instant::now();
        loads[0].observe(5 * MS, now);
        for _ in 0..20 {
            assert_eq!(e.pick(&loads, &[], now), Some(1));
        }
        // ...but not flooded once it has a request in flight.
        loads[1].start();
        assert_eq!(e.pick(&loads, &[], now), Some(0));
    }

    #[test]
    fn in_flight_requests_and_weight_raise_cost() {
        let (e, loads) = setup(&[1, 4]);
        let now = Instant::now();
        loads[0].observe(10 * MS, now);
        loads[1].observe(10 * MS, now);
        // node1: 10*(2+1)/4 = 7.5 < node0: 10*1/1 = 10
        loads[1].start();
        loads[1].start();
        assert_eq!(e.pick(&loads, &[], now), Some(1));
        // node1: 10*(4+1)/4 = 12.5 > 10
        loads[1].start();
        loads[1].start();
        assert_eq!(e.pick(&loads, &[], now), Some(0));
    }

    #[test]
    fn avoided_node_is_reprobed_after_idle_decay() {
        let (e, loads) = setup(&[1, 1]);
        let t0 = Instant::now();
        loads[0].observe(FAILURE_PENALTY, t0);
        loads[1].observe(20 * MS, t0);
        assert_eq!(e.pick(&loads, &[], t0 + DECAY_TIME), Some(1));
        // Node 1 keeps serving (fresh 20 ms samples); node 0 stays idle and
        // its 1 s estimate decays below 20 ms after ~10 * ln(50) ≈ 39 s.
        let t1 = t0 + 45 * DECAY_TIME / 10;
        loads[1].observe(20 * MS, t1);
        assert_eq!(e.pick(&loads, &[], t1), Some(0));
    }
}
