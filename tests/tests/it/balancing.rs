//! Load balancers: roundrobin (weighted, smooth), chash (vars/header/cookie; stability when a node is added),
//! least_conn (prefers the idle node), ewma (prefers the fast node).

use std::collections::HashMap;
use support::*;

#[track_caller]
fn assert_shares(counts: &HashMap<String, usize>, want: &[(&str, f64)]) {
    let total: usize = counts.values().sum();
    for (name, share) in want {
        let got = *counts.get(*name).unwrap_or(&0) as f64 / total as f64;
        assert!(
            (got - share).abs() <= 0.05,
            "{name}: share {got:.3}, want {share:.3} ± 0.05 (counts {counts:?})"
        );
    }
}

/// Which origin serves key `k` for each of `keys` (sequentially).
async fn key_map<F>(gw: &Gateway, keys: &[String], req: F) -> Vec<String>
where
    F: Fn(&str, reqwest::RequestBuilder) -> reqwest::RequestBuilder,
{
    let mut out = Vec::new();
    for k in keys {
        let r = send(req(k, gw.request(reqwest::Method::GET, "/lb"))).await;
        assert_eq!(r.status, 200, "{}", r.text());
        out.push(r.origin().unwrap().to_string());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roundrobin_follows_weights_and_skips_weight_zero() {
    let (a, b, c, z) = (
        origin("a").start(),
        origin("b").start(),
        origin("c").start(),
        origin("z").start(),
    );
    let gw = gateway().start().await;
    let nodes = json!({a.node(): 1, b.node(): 3, c.node(): 6, z.node(): 0});
    gw.put_ok(
        "routes",
        "1",
        json!({"uri": "/lb", "upstream": {"type": "roundrobin", "nodes": nodes}}),
    )
    .await;
    let counts = spread(&gw, "/lb", 1000, |_, rb| rb).await;
    assert_shares(&counts, &[("a", 0.1), ("b", 0.3), ("c", 0.6)]);
    assert_eq!(z.request_count(), 0, "a weight-0 node gets no traffic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roundrobin_with_node_list_form() {
    let (a, b) = (origin("a").start(), origin("b").start());
    let gw = gateway().start().await;
    let nodes = json!([
        {"host": "127.0.0.1", "port": a.addr().port(), "weight": 1},
        {"host": "127.0.0.1", "port": b.addr().port(), "weight": 4},
    ]);
    gw.put_ok(
        "upstreams",
        "u",
        json!({"type": "roundrobin", "nodes": nodes}),
    )
    .await;
    gw.put_ok("routes", "1", json!({"uri": "/lb", "upstream_id": "u"}))
        .await;
    let counts = spread(&gw, "/lb", 1000, |_, rb| rb).await;
    assert_shares(&counts, &[("a", 0.2), ("b", 0.8)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roundrobin_is_smooth() {
    // Smooth weighted round robin (nginx) spreads a heavy node's turns: for weights 5:1:1 the cycle is
    // a a b a c a a, so a never gets more than 4 in a row; a naive one gives a a a a a b c.
    let (a, b, c) = (
        origin("a").start(),
        origin("b").start(),
        origin("c").start(),
    );
    let gw = gateway().start().await;
    let nodes = json!({a.node(): 5, b.node(): 1, c.node(): 1});
    gw.put_ok(
        "routes",
        "1",
        json!({"uri": "/lb", "upstream": {"type": "roundrobin", "nodes": nodes}}),
    )
    .await;
    let mut seq = String::new();
    for _ in 0..70 {
        seq.push_str(gw.get("/lb").await.origin().unwrap());
    }
    let longest = seq
        .as_bytes()
        .chunk_by(|x, y| x == y)
        .map(<[u8]>::len)
        .max()
        .unwrap();
    assert!(longest <= 4, "runs too long for smooth WRR: {seq}");
    assert_eq!(seq.matches('a').count(), 50, "{seq}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chash_by_vars_is_sticky_and_spreads_keys() {
    let (a, b, c) = (
        origin("a").start(),
        origin("b").start(),
        origin("c").start(),
    );
    let gw = gateway().start().await;
    let up = json!({"type": "chash", "hash_on": "vars", "key": "arg_user", "nodes": nodes(&[&a, &b, &c])});
    gw.put_ok("routes", "1", json!({"uri": "/lb", "upstream": up}))
        .await;
    let keys: Vec<String> = (0..150).map(|i| format!("user{i}")).collect();
    let by_arg = |k: &str, rb: reqwest::RequestBuilder| rb.query(&[("user", k)]);
    let first = key_map(&gw, &keys, by_arg).await;
    let second = key_map(&gw, &keys, by_arg).await;
    assert_eq!(first, second, "the same key always goes to the same node");
    for n in ["a", "b", "c"] {
        let share = first.iter().filter(|o| *o == n).count() as f64 / keys.len() as f64;
        assert!(
            share > 0.15,
            "node {n} got {share:.2} of the keys: poor spread"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chash_by_header_and_cookie_is_sticky() {
    let (a, b, c) = (
        origin("a").start(),
        origin("b").start(),
        origin("c").start(),
    );
    let gw = gateway().start().await;
    let n = nodes(&[&a, &b, &c]);
    gw.put_ok("routes", "h", json!({"uri": "/lb", "upstream":
        {"type": "chash", "hash_on": "header", "key": "x-user", "nodes": n}, "vars": [["http_x_mode", "==", "h"]]}))
        .await;
    gw.put_ok("routes", "c", json!({"uri": "/lb", "upstream":
        {"type": "chash", "hash_on": "cookie", "key": "session", "nodes": n}, "vars": [["http_x_mode", "==", "c"]]}))
        .await;
    let keys: Vec<String> = (0..60).map(|i| format!("k{i}")).collect();
    let by_header =
        |k: &str, rb: reqwest::RequestBuilder| rb.header("x-mode", "h").header("x-user", k);
    let by_cookie = |k: &str, rb: reqwest::RequestBuilder| {
        rb.header("x-mode", "c")
            .header("cookie", format!("session={k}; z=1"))
    };
    for (label, first, second) in [
        (
            "header",
            key_map(&gw, &keys, by_header).await,
            key_map(&gw, &keys, by_header).await,
        ),
        (
            "cookie",
            key_map(&gw, &keys, by_cookie).await,
            key_map(&gw, &keys, by_cookie).await,
        ),
    ] {
        assert_eq!(first, second, "{label}: same key, same node");
        let distinct: std::collections::HashSet<_> = first.iter().collect();
        assert!(
            distinct.len() >= 2,
            "{label}: all keys on one node {distinct:?}: the key is not hashed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chash_adding_a_node_moves_about_one_nth_of_keys_all_to_the_new_node() {
    let (a, b, c, d) = (
        origin("a").start(),
        origin("b").start(),
        origin("c").start(),
        origin("d").start(),
    );
    let gw = gateway().start().await;
    let up = |ns: &[&Origin]| json!({"type": "chash", "hash_on": "vars", "key": "arg_k", "nodes": nodes(ns)});
    gw.put_ok("upstreams", "u", up(&[&a, &b, &c])).await;
    gw.put_ok("routes", "1", json!({"uri": "/lb", "upstream_id": "u"}))
        .await;
    let keys: Vec<String> = (0..400).map(|i| format!("key-{i}")).collect();
    let by_arg = |k: &str, rb: reqwest::RequestBuilder| rb.query(&[("k", k)]);
    let before = key_map(&gw, &keys, by_arg).await;

    gw.put_ok("upstreams", "u", up(&[&a, &b, &c, &d])).await;
    eventually(
        "the new node takes keys",
        Duration::from_secs(1),
        || async {
            key_map(&gw, &keys[..40], by_arg)
                .await
                .iter()
                .any(|o| o == "d")
        },
    )
    .await;
    let after = key_map(&gw, &keys, by_arg).await;
    let moved: Vec<(&String, &String)> =
        before.iter().zip(&after).filter(|(x, y)| x != y).collect();
    let share = moved.len() as f64 / keys.len() as f64;
    assert!(
        (0.10..=0.40).contains(&share),
        "{:.2} of keys moved; ~0.25 expected",
        share
    );
    assert!(
        moved.iter().all(|(_, to)| *to == "d"),
        "keys moved between old nodes: {:?}",
        moved
            .iter()
            .filter(|(_, to)| *to != "d")
            .take(5)
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_prefers_the_idle_node() {
    let (a, b) = (origin("a").start(), origin("b").start());
    let gw = gateway().start().await;
    let up = json!({"type": "least_conn", "nodes": nodes(&[&a, &b])});
    gw.put_ok("routes", "1", json!({"uri": "/lb", "upstream": up}))
        .await;

    let slow = tokio::spawn(send(
        gw.request(reqwest::Method::GET, "/lb")
            .header("x-delay-ms", "1500"),
    ));
    eventually(
        "slow request reaches a node",
        Duration::from_secs(2),
        || async { a.active() + b.active() == 1 },
    )
    .await;
    let busy = if a.active() == 1 { "a" } else { "b" };
    for i in 0..10 {
        let r = gw.get("/lb").await;
        assert_eq!(r.status, 200);
        assert_ne!(
            r.origin(),
            Some(busy),
            "request {i} went to the busy node {busy}"
        );
    }
    assert_eq!(slow.await.unwrap().origin(), Some(busy));
    let counts = spread(&gw, "/lb", 20, |_, rb| rb).await;
    assert_eq!(counts.len(), 2, "both nodes used once idle: {counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ewma_prefers_the_fast_node() {
    let fast = origin("fast").start();
    let slow = origin("slow").delay(Duration::from_millis(150)).start();
    let gw = gateway().start().await;
    let up = json!({"type": "ewma", "nodes": nodes(&[&fast, &slow])});
    gw.put_ok("routes", "1", json!({"uri": "/lb", "upstream": up}))
        .await;
    for _ in 0..20 {
        assert_eq!(gw.get("/lb").await.status, 200);
    }
    let mut fast_hits = 0;
    for _ in 0..30 {
        if gw.get("/lb").await.origin() == Some("fast") {
            fast_hits += 1;
        }
    }
    assert!(
        fast_hits >= 25,
        "after warm-up only {fast_hits}/30 went to the fast node"
    );
    assert!(
        slow.request_count() >= 1,
        "the slow node was tried at least once"
    );
}
