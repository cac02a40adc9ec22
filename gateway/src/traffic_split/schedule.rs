//! The order in which one rule's weighted upstreams take turns, fixed when the snapshot is built so that
//! a pick on the request path is one atomic increment: no lock, no allocation.
//!
//! The order is nginx's smooth weighted round robin over one cycle (weights 3,1 give `a a b a`, not
//! `a a a b`), so every `sum(weights)` consecutive requests split exactly by weight and a short burst is
//! already close to the ratio. A cycle longer than [`MAX_CYCLE`] is scaled down: the ratio then holds to
//! within `1 / MAX_CYCLE`, far inside what anyone can observe, and a rule cannot make a huge table.
//!
//! Every config write rebuilds the schedule. Starting each one at a random turn (not the first, which
//! always belongs to the heaviest target) keeps frequent writes from skewing traffic toward that target.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Longest cycle kept (entries are `u16`, so 8 KiB at most per rule).
const MAX_CYCLE: u64 = 4096;

#[derive(Debug)]
pub(crate) struct Schedule {
    /// Indexes into the rule's targets, one per turn of the cycle.
    order: Vec<u16>,
    next: AtomicUsize,
}

impl Schedule {
    /// `None` when no weight is positive (nothing could ever be picked). Starts at a random turn.
    pub(crate) fn new(weights: &[u32]) -> Option<Schedule> {
        let schedule = Schedule::from_first_turn(weights)?;
        let start = usize::try_from(random_u64() % schedule.order.len() as u64).unwrap_or(0);
        schedule.next.store(start, Ordering::Relaxed);
        Some(schedule)
    }

    /// The schedule starting at the cycle's first turn.
    fn from_first_turn(weights: &[u32]) -> Option<Schedule> {
        let weights = scaled(weights);
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        if total == 0 {
            return None;
        }
        let mut current = vec![0i64; weights.len()];
        let mut order = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        for _ in 0..total {
            let mut best = 0;
            for (i, &w) in weights.iter().enumerate() {
                current[i] += i64::from(w);
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= i64::try_from(total).unwrap_or(i64::MAX);
            order.push(u16::try_from(best).unwrap_or(u16::MAX));
        }
        Some(Schedule {
            order,
            next: AtomicUsize::new(0),
        })
    }

    /// The target index for the next request.
    pub(crate) fn pick(&self) -> usize {
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.order.len();
        usize::from(self.order[turn])
    }
}

/// A random number from std's per-process hash keys (no RNG crate needed for a start offset).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// Weights reduced by their common divisor and, past [`MAX_CYCLE`], scaled down keeping every positive
/// weight at least 1 (a canary at weight 1 next to 100000 must still get traffic).
fn scaled(weights: &[u32]) -> Vec<u32> {
    let divisor = weights.iter().fold(0u32, |g, &w| gcd(g, w)).max(1);
    let reduced: Vec<u32> = weights.iter().map(|&w| w / divisor).collect();
    let total: u64 = reduced.iter().map(|&w| u64::from(w)).sum();
    if total <= MAX_CYCLE {
        return reduced;
    }
    reduced
        .iter()
        .map(|&w| match w {
            0 => 0,
            w => u32::try_from((u64::from(w) * MAX_CYCLE / total).max(1)).unwrap_or(u32::MAX),
        })
        .collect()
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picks(weights: &[u32], n: usize) -> Vec<usize> {
        let s = Schedule::from_first_turn(weights).expect("a positive weight");
        (0..n).map(|_| s.pick()).collect()
    }

    #[test]
    fn a_cycle_splits_exactly_by_weight_and_interleaves() {
        assert_eq!(picks(&[3, 1], 8), [0, 0, 1, 0, 0, 0, 1, 0]);
        assert_eq!(picks(&[5, 1, 1], 7), [0, 0, 1, 0, 2, 0, 0]);
        // Reduced by the common divisor: 20/80 is a cycle of 5.
        assert_eq!(picks(&[20, 80], 5).iter().filter(|&&i| i == 0).count(), 1);
    }

    #[test]
    fn a_random_start_keeps_whole_cycles_exact() {
        let s = Schedule::new(&[3, 1]).expect("a positive weight");
        let picks: Vec<usize> = (0..400).map(|_| s.pick()).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 1).count(), 100);
    }

    #[test]
    fn weight_zero_is_never_picked_and_all_zero_is_refused() {
        assert!(picks(&[0, 100], 50).iter().all(|&i| i == 1));
        assert!(Schedule::new(&[0, 0]).is_none());
        assert!(Schedule::new(&[]).is_none());
    }

    #[test]
    fn huge_weights_are_scaled_but_keep_small_ones_alive() {
        let p = picks(&[1, 1_000_000], 8192);
        let small = p.iter().filter(|&&i| i == 0).count();
        assert!((1..=4).contains(&small), "canary got {small}");
        let p = picks(&[300_000, 700_000], 4000);
        let share = p.iter().filter(|&&i| i == 0).count() as f64 / 4000.0;
        assert!((share - 0.3).abs() < 0.01, "share {share}");
    }
}
