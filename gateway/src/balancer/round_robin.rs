//! `roundrobin`: nginx's smooth weighted round robin.
//!
//! Each pick adds every candidate's weight to its running `current` score,
//! takes the candidate with the highest score, and subtracts the total weight
//! from the winner. Over one cycle of `sum(weights)` picks every node gets
//! exactly its weight, and the picks are interleaved (5,1,1 gives
//! `a a b a c a a`) instead of bursting `a a a a a b c`, which keeps the
//! instantaneous load on small nodes smooth.

use std::sync::{Mutex, PoisonError};

use super::kind::Member;

#[derive(Debug)]
pub(crate) struct RoundRobin {
    members: Vec<Member>,
    /// Running scores, parallel to `members`. One short lock per pick: the
    /// algorithm reads and writes every score, which atomics cannot do as a
    /// unit, and the critical section is a tiny loop.
    current: Mutex<Vec<i64>>,
}

impl RoundRobin {
    pub fn new(members: Vec<Member>) -> Self {
        let current = Mutex::new(vec![0; members.len()]);
        Self { members, current }
    }

    /// Next node, skipping `tried` ones. Skipped nodes neither gain nor lose
    /// score (as nginx does with its `tried` bitmap), so a retry does not
    /// disturb the long-run ratio between the remaining nodes.
    pub fn pick(&self, tried: &[usize]) -> Option<usize> {
        // A panic while holding this lock cannot leave the scores invalid
        // (any i64 vector is a valid state), so a poisoned lock is reused.
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let mut total: i64 = 0;
        let mut best: Option<usize> = None;
        for (i, member) in self.members.iter().enumerate() {
            if tried.contains(&member.idx) {
                continue;
            }
            let weight = i64::from(member.weight);
            current[i] += weight;
            total += weight;
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let best = best?;
        current[best] -= total;
        Some(self.members[best].idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rr(weights: &[u32]) -> RoundRobin {
        RoundRobin::new(
            weights
                .iter()
                .enumerate()
                .map(|(idx, &weight)| Member { idx, weight })
                .collect(),
        )
    }

    #[test]
    fn smooth_pattern_5_1_1() {
        let rr = rr(&[5, 1, 1]);
        let picks: Vec<usize> = (0..14).map(|_| rr.pick(&[]).expect("pick")).collect();
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn tried_nodes_are_skipped_and_exhaustion_is_none() {
        let rr = rr(&[1, 1, 1]);
        for _ in 0..10 {
            assert_eq!(rr.pick(&[0, 2]), Some(1));
        }
        assert_eq!(rr.pick(&[0, 1, 2]), None);
    }

    #[test]
    fn retries_do_not_skew_the_long_run_ratio() {
        let rr = rr(&[2, 1]);
        let mut counts = [0u32; 2];
        for i in 0..300 {
            // Every 10th pick is a retry that excludes node 0.
            let tried: &[usize] = if i % 10 == 0 { &[0] } else { &[] };
            let idx = rr.pick(tried).expect("pick");
            if tried.is_empty() {
                counts[idx] += 1;
            }
        }
        let share = f64::from(counts[0]) / f64::from(counts[0] + counts[1]);
        assert!((share - 2.0 / 3.0).abs() < 0.05, "share {share}");
    }
}
