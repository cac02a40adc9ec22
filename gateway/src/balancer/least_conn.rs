//! `least_conn`: the node with the fewest in-flight requests per weight.
//!
//! Like APISIX, the score is `(active + 1) / weight`: the load the node would
//! carry *after* taking this request. Adding the request being placed (rather
//! than using `active / weight`) makes idle nodes of different weights
//! distinguishable, so a weight-2 node takes twice the concurrent requests of
//! a weight-1 node. Ties are broken by scanning from a rotating start
//! position, so equally loaded nodes take turns instead of the first node in
//! the list absorbing every burst.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::kind::Member;
use super::load::NodeLoad;

#[derive(Debug)]
pub(crate) struct LeastConn {
    members: Vec<Member>,
    /// Start of the next scan; only a tie-breaker, so relaxed is enough.
    cursor: AtomicUsize,
}

impl LeastConn {
    pub fn new(members: Vec<Member>) -> Self {
        Self {
            members,
            cursor: AtomicUsize::new(0),
        }
    }

    /// `loads` is indexed by node idx. O(n) scan: upstreams are small and a
    /// scan needs no heap to keep in sync with concurrent `on_finish` calls.
    pub fn pick(&self, loads: &[NodeLoad], tried: &[usize]) -> Option<usize> {
        let n = self.members.len();
        let start = self.cursor.fetch_add(1, Ordering::Relaxed) % n.max(1);
        // (cost numerator, weight) of the best so far; compare a/w exactly
        // by cross-multiplying instead of using floats.
        let mut best: Option<(usize, u128, u128)> = None;
        for step in 0..n {
            let member = self.members[(start + step) % n];
            if tried.contains(&member.idx) {
                continue;
            }
            let active = loads.get(member.idx).map_or(0, NodeLoad::active);
            let cost = active as u128 + 1;
            let weight = u128::from(member.weight);
            if best.is_none_or(|(_, bc, bw)| cost * bw < bc * weight) {
                best = Some((member.idx, cost, weight));
            }
        }
        best.map(|(idx, _, _)| idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(weights: &[u32]) -> (LeastConn, Vec<NodeLoad>) {
        let members = weights
            .iter()
            .enumerate()
            .map(|(idx, &weight)| Member { idx, weight })
            .collect();
        let loads = weights.iter().map(|_| NodeLoad::default()).collect();
        (LeastConn::new(members), loads)
    }

    #[test]
    fn ties_rotate_between_equal_nodes() {
        let (lc, loads) = setup(&[1, 1, 1]);
        let mut counts = [0; 3];
        for _ in 0..30 {
            counts[lc.pick(&loads, &[]).expect("pick")] += 1;
        }
        assert_eq!(counts, [10, 10, 10]);
    }

    #[test]
    fn idle_heavier_node_wins() {
        let (lc, loads) = setup(&[1, 3]);
        assert_eq!(lc.pick(&loads, &[]), Some(1));
        for _ in 0..3 {
            loads[1].start();
        }
        // (3+1)/3 > (0+1)/1
        assert_eq!(lc.pick(&loads, &[]), Some(0));
    }
}
