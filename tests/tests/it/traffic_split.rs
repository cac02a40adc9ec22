//! `traffic-split` through the real binary and real origins, configured as APISIX users write it (a route
//! plugin): weighted canary shares, A/B by a request header, blue-green switches by weight, the route's own
//! upstream for entries without one and for requests no rule matches, and the admin API's refusals.

use std::collections::HashMap;
use support::*;

/// Sends `n` GETs to `path` with these headers; returns origin → count.
async fn spread_with(
    gw: &Gateway,
    path: &str,
    n: usize,
    headers: &[(&str, &str)],
) -> HashMap<String, usize> {
    spread(gw, path, n, |_, rb| {
        headers.iter().fold(rb, |rb, (k, v)| rb.header(*k, *v))
    })
    .await
}

/// `share` of `counts` held by `name`, checked to ±3 %.
#[track_caller]
fn assert_share(counts: &HashMap<String, usize>, name: &str, share: f64) {
    let total: usize = counts.values().sum();
    let got = *counts.get(name).unwrap_or(&0) as f64 / total as f64;
    assert!(
        (got - share).abs() <= 0.03,
        "{name}: share {got:.3}, want {share:.3} ± 0.03 (counts {counts:?})"
    );
}

/// Route `id` on `uri` whose own upstream is `own`, with this traffic-split config.
async fn split_route(gw: &Gateway, id: &str, uri: &str, own: &Origin, split: Value) {
    gw.put_ok(
        "routes",
        id,
        json!({"uri": uri, "upstream": upstream(&[own]), "plugins": {"traffic-split": split}}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_weights_hold_within_three_percent_over_1000_requests() {
    let (stable, canary) = (origin("stable").start(), origin("canary").start());
    let gw = gateway().start().await;
    // `entry` at `weight` against the route's own upstream (an entry without one) at `own`: shares hold
    // within 3 % over 1000 requests.
    let check = |entry: Value, weight: u32, own: u32| {
        let gw = &gw;
        let stable = &stable;
        async move {
            let mut entry = entry;
            entry["weight"] = json!(weight);
            let rules = json!({"rules": [{"weighted_upstreams": [entry, {"weight": own}]}]});
            split_route(gw, "1", "/canary", stable, rules).await;
            let counts = spread_with(gw, "/canary", 1000, &[]).await;
            let share = f64::from(weight) / f64::from(weight + own);
            assert_share(&counts, "canary", share);
            assert_share(&counts, "stable", 1.0 - share);
        }
    };
    check(json!({"upstream": upstream(&[&canary])}), 3, 7).await;
    // The same split through an upstream object named by id.
    gw.put_ok("upstreams", "canary", upstream(&[&canary])).await;
    check(json!({"upstream_id": "canary"}), 1, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_b_rules_route_by_header_and_unmatched_requests_keep_the_route_upstream() {
    let (a, b) = (origin("a").start(), origin("b").start());
    let gw = gateway().start().await;
    gw.put_ok("upstreams", "b", upstream(&[&b])).await;
    // Any one of a rule's `match` entries is enough; within one entry every condition must hold.
    split_route(
        &gw,
        "1",
        "/ab",
        &a,
        json!({"rules": [{
            "match": [
                {"vars": [["http_x_group", "==", "beta"]]},
                {"vars": [["arg_beta", "==", "1"], ["http_x_region", "==", "eu"]]}
            ],
            "weighted_upstreams": [{"upstream_id": "b"}]
        }]}),
    )
    .await;
    assert_eq!(
        spread_with(&gw, "/ab", 20, &[("x-group", "beta")]).await["b"],
        20
    );
    assert_eq!(
        spread_with(&gw, "/ab", 20, &[("x-group", "alpha")]).await["a"],
        20
    );
    assert_eq!(spread_with(&gw, "/ab", 20, &[]).await["a"], 20);
    assert_eq!(
        spread_with(&gw, "/ab?beta=1", 20, &[("x-region", "eu")]).await["b"],
        20
    );
    assert_eq!(
        spread_with(&gw, "/ab?beta=1", 20, &[("x-region", "us")]).await["a"],
        20
    );
    // The upstream it names cannot be deleted while the rule uses it.
    let r = gw.admin().delete("upstreams", "b").await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("route [1] is still using it"), "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_switches_all_traffic_by_weight() {
    let (blue, green) = (origin("blue").start(), origin("green").start());
    let gw = gateway().start().await;
    gw.put_ok("upstreams", "green", upstream(&[&green])).await;
    let weights = |green: u32, blue: u32| {
        json!({"rules": [{"weighted_upstreams": [
            {"upstream_id": "green", "weight": green},
            {"weight": blue}
        ]}]})
    };
    split_route(&gw, "1", "/bg", &blue, weights(0, 100)).await;
    assert_eq!(spread_with(&gw, "/bg", 50, &[]).await["blue"], 50);
    split_route(&gw, "1", "/bg", &blue, weights(100, 0)).await;
    assert_eq!(spread_with(&gw, "/bg", 50, &[]).await["green"], 50);
    // Disabled through `_meta`, the route's own upstream serves again.
    gw.put_ok(
        "routes",
        "1",
        json!({"uri": "/bg", "upstream": upstream(&[&blue]),
               "plugins": {"traffic-split": {"_meta": {"disable": true},
                   "rules": [{"weighted_upstreams": [{"upstream_id": "green"}]}]}}}),
    )
    .await;
    assert_eq!(spread_with(&gw, "/bg", 10, &[]).await["blue"], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_split_applies_to_its_routes() {
    let (a, b) = (origin("a").start(), origin("b").start());
    let gw = gateway().start().await;
    gw.put_ok(
        "services",
        "s",
        json!({"upstream": upstream(&[&a]), "plugins": {"traffic-split": {"rules": [{
            "match": [{"vars": [["http_x_canary", "==", "yes"]]}],
            "weighted_upstreams": [{"upstream": upstream(&[&b])}]
        }]}}}),
    )
    .await;
    gw.put_ok("routes", "1", json!({"uri": "/svc", "service_id": "s"}))
        .await;
    assert_eq!(
        spread_with(&gw, "/svc", 10, &[("x-canary", "yes")]).await["b"],
        10
    );
    assert_eq!(spread_with(&gw, "/svc", 10, &[]).await["a"], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configs_are_refused_with_the_field_that_is_wrong() {
    let a = origin("a").start();
    let gw = gateway().start().await;
    let admin = gw.admin();
    let refused = |split: Value| {
        let admin = admin.clone();
        let route =
            json!({"uri": "/x", "upstream": upstream(&[&a]), "plugins": {"traffic-split": split}});
        async move {
            let r = admin.put("routes", "1", route).await;
            assert_eq!(r.status, 400, "{}", r.text);
            r.error_msg().unwrap_or_default().to_string()
        }
    };
    let msg = refused(json!({"rules": [{"weighted_upstreams": [{"upstream_id": "nope"}]}]})).await;
    assert!(
        msg.contains(
            "plugins.traffic-split.rules[0].weighted_upstreams[0].upstream_id: upstream \"nope\" not found"
        ),
        "{msg}"
    );
    let msg = refused(json!({"rules": [{"weighted_upstreams": [{"weight": -1}]}]})).await;
    assert!(
        msg.contains("rules[0].weighted_upstreams[0].weight: must be an integer from 0"),
        "{msg}"
    );
    let msg = refused(json!({"rules": [{"weighted_upstreams": [{"weight": 0}]}]})).await;
    assert!(msg.contains("at least one weight must be above 0"), "{msg}");
    let msg = refused(json!({"rules": [{"weighted_upstreams": []}]})).await;
    assert!(msg.contains("weighted_upstreams"), "{msg}");
    let msg = refused(
        json!({"rules": [{"match": [{"vars": [["arg_a", "=~=", "1"]]}],
        "weighted_upstreams": [{"weight": 1}]}]}),
    )
    .await;
    assert!(msg.contains("rules[0].match[0].vars"), "{msg}");
    let msg =
        refused(json!({"rules": [{"weighted_upstreams": [{"upstream": {"nodes": "bad"}}]}]})).await;
    assert!(
        msg.contains("rules[0].weighted_upstreams[0].upstream: "),
        "{msg}"
    );
    let msg = refused(json!({"rulez": []})).await;
    assert!(msg.contains("rulez"), "{msg}");

    let r = admin
        .put(
            "global_rules",
            "1",
            json!({"plugins": {"traffic-split": {"rules": []}}}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.error_msg().unwrap_or_default().contains("traffic-split"),
        "{}",
        r.text
    );

    let list = admin.get("plugins/list").await;
    assert!(list.text.contains("\"traffic-split\""), "{}", list.text);
    // Its name is taken: an upload under it would never run.
    let r = admin
        .put_bytes(
            "wasm_plugins/traffic-split",
            "application/wasm",
            b"\0asm".to_vec(),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
}
