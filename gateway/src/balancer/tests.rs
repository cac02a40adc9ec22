//! Behaviour tests through the public `Balancer` API.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{Balancer, BalancerError, Kind, NodeSpec};

const ALL_KINDS: [Kind; 4] = [Kind::RoundRobin, Kind::Chash, Kind::LeastConn, Kind::Ewma];

fn nodes(weights: &[u32]) -> Vec<NodeSpec> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| NodeSpec::new(format!("10.0.0.{}:8080", i + 1), w))
        .collect()
}

fn balancer(kind: Kind, weights: &[u32]) -> Balancer {
    Balancer::new(kind, nodes(weights)).expect("valid nodes")
}

fn share(count: usize, total: usize) -> f64 {
    count as f64 / total as f64
}

fn assert_share(count: usize, total: usize, expected: f64, tolerance: f64) {
    let got = share(count, total);
    assert!(
        (got - expected).abs() <= tolerance,
        "share {got:.4} not within {tolerance} of {expected:.4}"
    );
}

#[test]
fn balancer_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Balancer>();
}

// ---------- construction ----------

#[test]
fn rejects_invalid_node_lists() {
    assert_eq!(
        Balancer::new(Kind::RoundRobin, vec![]).err(),
        Some(BalancerError::NoNodes)
    );
    assert_eq!(
        Balancer::new(Kind::Chash, nodes(&[0, 0])).err(),
        Some(BalancerError::AllZeroWeight)
    );
    assert_eq!(
        Balancer::new(Kind::LeastConn, vec![NodeSpec::new("", 1)]).err(),
        Some(BalancerError::EmptyAddr(0))
    );
    assert_eq!(
        Balancer::new(
            Kind::Ewma,
            vec![NodeSpec::new("a:1", 1), NodeSpec::new("a:1", 2)]
        )
        .err(),
        Some(BalancerError::DuplicateNode("a:1".into()))
    );
}

#[test]
fn nodes_keep_config_order_and_zero_weights() {
    let b = balancer(Kind::RoundRobin, &[1, 0, 2]);
    assert_eq!(b.nodes(), nodes(&[1, 0, 2]).as_slice());
    assert_eq!(b.kind(), Kind::RoundRobin);
}

// ---------- roundrobin ----------

#[test]
fn roundrobin_weights_3_to_1_over_1000_picks() {
    let b = balancer(Kind::RoundRobin, &[3, 1]);
    let mut counts = [0usize; 2];
    for _ in 0..1000 {
        counts[b.pick(None, &[]).expect("pick")] += 1;
    }
    assert_share(counts[0], 1000, 0.75, 0.05);
    assert_share(counts[1], 1000, 0.25, 0.05);
}

#[test]
fn roundrobin_is_smooth_for_5_1_1() {
    let b = balancer(Kind::RoundRobin, &[5, 1, 1]);
    let pattern: String = (0..7)
        .map(|_| match b.pick(None, &[]) {
            Some(0) => 'a',
            Some(1) => 'b',
            Some(2) => 'c',
            other => panic!("unexpected pick {other:?}"),
        })
        .collect();
    assert_eq!(pattern, "aabacaa");
}

#[test]
fn zero_weight_nodes_are_never_picked_by_any_kind() {
    for kind in ALL_KINDS {
        let b = balancer(kind, &[1, 0, 1]);
        for i in 0..500u32 {
            let key = i.to_be_bytes();
            let idx = b.pick(Some(&key), &[]).expect("pick");
            assert_ne!(idx, 1, "{kind} picked a zero-weight node");
            b.on_start(idx);
            b.on_finish(idx, Duration::from_millis(1), true);
        }
        // Exhausting the weighted nodes must not fall through to it either.
        assert_eq!(b.pick(Some(b"k"), &[0, 2]), None, "{kind}");
    }
}

#[test]
fn roundrobin_concurrent_picks_keep_weights() {
    let b = balancer(Kind::RoundRobin, &[3, 1]);
    let per_thread: Vec<[usize; 2]> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut counts = [0usize; 2];
                    for _ in 0..10_000 {
                        counts[b.pick(None, &[]).expect("pick")] += 1;
                    }
                    counts
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect()
    });
    let a: usize = per_thread.iter().map(|c| c[0]).sum();
    let total: usize = per_thread.iter().map(|c| c[0] + c[1]).sum();
    assert_eq!(total, 40_000);
    assert_share(a, total, 0.75, 0.05);
    // The shared sequence is exact: no pick was lost or duplicated.
    assert_eq!(a, 30_000);
}

// ---------- chash ----------

fn chash_map(b: &Balancer, keys: usize) -> Vec<String> {
    (0..keys)
        .map(|i| {
            let key = format!("user-{i}");
            let idx = b.pick(Some(key.as_bytes()), &[]).expect("pick");
            b.nodes()[idx].addr.clone()
        })
        .collect()
}

fn count_by_addr(map: &[String]) -> HashMap<&str, usize> {
    let mut counts = HashMap::new();
    for addr in map {
        *counts.entry(addr.as_str()).or_insert(0) += 1;
    }
    counts
}

#[test]
fn chash_same_key_same_node_across_builds_and_orderings() {
    let b1 = balancer(Kind::Chash, &[1, 1, 1]);
    let mut reversed = nodes(&[1, 1, 1]);
    reversed.reverse();
    let b2 = Balancer::new(Kind::Chash, reversed).expect("valid");
    let first = chash_map(&b1, 2_000);
    assert_eq!(chash_map(&b1, 2_000), first, "repeat picks moved");
    assert_eq!(chash_map(&b2, 2_000), first, "rebuild/reorder moved keys");
}

#[test]
fn chash_spreads_evenly_over_three_nodes() {
    let b = balancer(Kind::Chash, &[1, 1, 1]);
    let map = chash_map(&b, 10_000);
    let counts = count_by_addr(&map);
    assert_eq!(counts.len(), 3);
    for count in counts.values() {
        assert_share(*count, 10_000, 1.0 / 3.0, 0.05);
    }
}

#[test]
fn chash_adding_a_node_moves_about_a_quarter_of_keys_all_to_it() {
    let before = chash_map(&balancer(Kind::Chash, &[1, 1, 1]), 10_000);
    let after = chash_map(&balancer(Kind::Chash, &[1, 1, 1, 1]), 10_000);
    let new_addr = &nodes(&[1, 1, 1, 1])[3].addr;
    let moved: Vec<usize> = (0..before.len())
        .filter(|&i| before[i] != after[i])
        .collect();
    let fraction = share(moved.len(), before.len());
    assert!((0.15..=0.35).contains(&fraction), "moved {fraction}");
    for i in moved {
        assert_eq!(&after[i], new_addr, "key {i} moved between old nodes");
    }
}

#[test]
fn chash_removing_a_node_only_moves_its_keys() {
    let four = nodes(&[1, 1, 1, 1]);
    let removed = four[1].addr.clone();
    let three: Vec<NodeSpec> = four.iter().filter(|n| n.addr != removed).cloned().collect();
    let before = chash_map(&Balancer::new(Kind::Chash, four).expect("valid"), 10_000);
    let after = chash_map(&Balancer::new(Kind::Chash, three).expect("valid"), 10_000);
    let mut moved = 0;
    for (old, new) in before.iter().zip(&after) {
        if *old == removed {
            moved += 1;
            assert_ne!(*new, removed);
        } else {
            assert_eq!(old, new, "a key of a surviving node moved");
        }
    }
    assert!(moved > 1_500, "removed node owned only {moved} keys");
}

#[test]
fn chash_respects_weights() {
    let b = balancer(Kind::Chash, &[2, 1, 1]);
    let map = chash_map(&b, 10_000);
    let counts = count_by_addr(&map);
    let specs = nodes(&[2, 1, 1]);
    assert_share(counts[specs[0].addr.as_str()], 10_000, 0.50, 0.05);
    assert_share(counts[specs[1].addr.as_str()], 10_000, 0.25, 0.05);
    assert_share(counts[specs[2].addr.as_str()], 10_000, 0.25, 0.05);
}

#[test]
fn chash_retry_moves_to_another_node_and_is_repeatable() {
    let b = balancer(Kind::Chash, &[1, 1, 1, 1]);
    for i in 0..200 {
        let key = format!("k{i}");
        let first = b.pick(Some(key.as_bytes()), &[]).expect("first");
        let second = b.pick(Some(key.as_bytes()), &[first]).expect("second");
        assert_ne!(first, second);
        assert_eq!(b.pick(Some(key.as_bytes()), &[first]), Some(second));
    }
}

// ---------- least_conn ----------

#[test]
fn least_conn_picks_least_loaded_with_held_requests() {
    let b = balancer(Kind::LeastConn, &[1, 1, 1]);
    for idx in [0, 0, 1, 2, 2, 2] {
        b.on_start(idx);
    }
    // active = [2, 1, 3]
    assert_eq!(b.pick(None, &[]), Some(1));
    b.on_start(1);
    b.on_start(1);
    // active = [2, 3, 3]
    assert_eq!(b.pick(None, &[]), Some(0));
    b.on_finish(2, Duration::ZERO, true);
    b.on_finish(2, Duration::ZERO, true);
    // active = [2, 3, 1]
    assert_eq!(b.pick(None, &[]), Some(2));
    assert_eq!(b.active(2), 1);
}

#[test]
fn least_conn_respects_weights_under_held_load() {
    let b = balancer(Kind::LeastConn, &[3, 1]);
    for _ in 0..400 {
        let idx = b.pick(None, &[]).expect("pick");
        b.on_start(idx);
    }
    assert_eq!((b.active(0), b.active(1)), (300, 100));
}

#[test]
fn least_conn_spreads_equal_nodes_without_feedback() {
    let b = balancer(Kind::LeastConn, &[1, 1, 1, 1]);
    let mut counts = [0; 4];
    for _ in 0..400 {
        counts[b.pick(None, &[]).expect("pick")] += 1;
    }
    assert_eq!(counts, [100; 4]);
}

#[test]
fn least_conn_concurrent_feedback_loses_no_counts() {
    let b = balancer(Kind::LeastConn, &[2, 1, 1]);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10_000 {
                    let idx = b.pick(None, &[]).expect("pick");
                    b.on_start(idx);
                    b.on_finish(idx, Duration::from_micros(10), true);
                }
            });
        }
    });
    assert_eq!((b.active(0), b.active(1), b.active(2)), (0, 0, 0));
}

// ---------- ewma ----------

fn run_ewma(
    b: &Balancer,
    rounds: usize,
    latency_of: impl Fn(usize) -> (Duration, bool),
) -> Vec<usize> {
    let mut counts = vec![0; b.nodes().len()];
    for _ in 0..rounds {
        let idx = b.pick(None, &[]).expect("pick");
        counts[idx] += 1;
        b.on_start(idx);
        let (latency, ok) = latency_of(idx);
        b.on_finish(idx, latency, ok);
    }
    counts
}

#[test]
fn ewma_slow_node_gets_far_fewer_picks() {
    let b = balancer(Kind::Ewma, &[1, 1, 1]);
    let counts = run_ewma(&b, 3_000, |idx| {
        let ms = if idx == 2 { 200 } else { 10 };
        (Duration::from_millis(ms), true)
    });
    assert!(counts[2] < 30, "slow node got {counts:?}");
    assert!(counts[0] > 1_000 && counts[1] > 1_000, "{counts:?}");
}

#[test]
fn ewma_fast_failing_node_is_avoided() {
    let b = balancer(Kind::Ewma, &[1, 1, 1]);
    let counts = run_ewma(&b, 3_000, |idx| {
        if idx == 0 {
            (Duration::from_micros(50), false)
        } else {
            (Duration::from_millis(20), true)
        }
    });
    assert!(counts[0] < 30, "failing node got {counts:?}");
}

#[test]
fn ewma_decay_lets_an_avoided_node_back_in() {
    let b = balancer(Kind::Ewma, &[1, 1]);
    let t0 = Instant::now();
    for (idx, ms) in [(0, 500), (1, 20)] {
        b.on_start(idx);
        b.on_finish_at(idx, Duration::from_millis(ms), true, t0);
    }
    assert_eq!(b.pick_at(None, &[], t0), Some(1));
    // Node 1 keeps answering in 20 ms; node 0 idles for 60 s and its 500 ms
    // estimate decays to 500 * e^-6 ≈ 1.2 ms.
    let t1 = t0 + Duration::from_secs(60);
    b.on_start(1);
    b.on_finish_at(1, Duration::from_millis(20), true, t1);
    assert_eq!(b.pick_at(None, &[], t1), Some(0));
}

// ---------- retries and priority ----------

#[test]
fn tried_nodes_are_excluded_and_exhaustion_returns_none() {
    for kind in ALL_KINDS {
        let b = balancer(kind, &[1, 1, 1]);
        for i in 0..50u32 {
            let key = i.to_be_bytes();
            let first = b.pick(Some(&key), &[]).expect("first");
            let second = b.pick(Some(&key), &[first]).expect("second");
            assert_ne!(first, second, "{kind}");
            let third = b.pick(Some(&key), &[first, second]).expect("third");
            assert!(third != first && third != second, "{kind}");
            assert_eq!(b.pick(Some(&key), &[first, second, third]), None, "{kind}");
        }
        // Unknown indexes in `tried` are harmless.
        assert!(b.pick(Some(b"k"), &[99]).is_some(), "{kind}");
    }
}

#[test]
fn lower_priority_only_after_higher_group_is_tried() {
    for kind in ALL_KINDS {
        let specs = vec![
            NodeSpec::new("backup:1", 5).with_priority(-1),
            NodeSpec::new("main-a:1", 1).with_priority(10),
            NodeSpec::new("main-b:1", 1).with_priority(10),
            NodeSpec::new("mid:1", 1),
            NodeSpec::new("main-off:1", 0).with_priority(10),
        ];
        let b = Balancer::new(kind, specs).expect("valid");
        assert_eq!(b.priorities().collect::<Vec<_>>(), [10, 0, -1], "{kind}");
        for i in 0..100u32 {
            let key = i.to_be_bytes();
            let idx = b.pick(Some(&key), &[]).expect("pick");
            assert!(idx == 1 || idx == 2, "{kind} left the top group: {idx}");
            b.on_start(idx);
            b.on_finish(idx, Duration::from_millis(5), true);
        }
        assert_eq!(b.pick(Some(b"k"), &[1]), Some(2), "{kind}");
        assert_eq!(b.pick(Some(b"k"), &[1, 2]), Some(3), "{kind}");
        assert_eq!(b.pick(Some(b"k"), &[2, 3, 1]), Some(0), "{kind}");
        assert_eq!(b.pick(Some(b"k"), &[0, 1, 2, 3]), None, "{kind}");
    }
}

#[test]
fn feedback_for_unknown_indexes_is_ignored() {
    let b = balancer(Kind::Ewma, &[1]);
    b.on_start(7);
    b.on_finish(7, Duration::from_millis(1), false);
    b.on_finish(0, Duration::from_millis(1), true);
    assert_eq!(b.active(0), 0);
    assert_eq!(b.pick(None, &[]), Some(0));
}

#[test]
fn every_kind_avoids_unhealthy_nodes_until_nothing_else_is_left() {
    for kind in ALL_KINDS {
        let b = balancer(kind, &[1, 1, 1]);
        for i in 0..60u32 {
            let key = i.to_be_bytes();
            let idx = b.pick_avoiding(Some(&key), &[], &[1]).expect("pick");
            assert_ne!(idx, 1, "{kind} picked an unhealthy node");
        }
        // The only healthy node failed in this request: the retry goes to an unhealthy one.
        let idx = b.pick_avoiding(Some(b"k"), &[0, 2], &[1]);
        assert_eq!(idx, Some(1), "{kind}");
        // All unhealthy: traffic still flows, to all of them.
        let picked: std::collections::HashSet<usize> = (0..60u32)
            .filter_map(|i| b.pick_avoiding(Some(&i.to_be_bytes()), &[], &[0, 1, 2]))
            .collect();
        assert_eq!(picked.len(), 3, "{kind}: {picked:?}");
    }
}
