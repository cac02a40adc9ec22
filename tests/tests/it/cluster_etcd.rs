//! Several `sluice` nodes on one real etcd: what one node is told, every node serves; etcd going away,
//! coming back, compacting its history or being replaced never leaves a node serving something else than
//! etcd holds (checked with the config digest each node reports against one computed from etcd itself).

use support::*;

/// A node whose configuration lives in the etcd at `store_url`.
async fn node(store_url: &str) -> Gateway {
    gateway()
        .arg("--config-store")
        .arg(store_url)
        .wait_for_listener("metrics")
        .start()
        .await
}

/// `GET /apisix/admin/cluster/status` of one node.
async fn status(gw: &Gateway) -> Value {
    gw.admin().get("cluster/status").await.ok().json
}

/// Polls until every node reports the digest etcd's own content gives.
async fn converged(etcd: &Etcd, nodes: &[&Gateway]) {
    let want = etcd.config_digest().await;
    for (i, n) in nodes.iter().enumerate() {
        eventually(
            &format!("node {i} serves what etcd holds ({want})"),
            Duration::from_secs(15),
            || async { status(n).await["config_digest"] == want.as_str() },
        )
        .await;
    }
}

/// Retries `PUT routes/<id>` until a node accepts it (its watcher must find etcd again first).
async fn put_once_etcd_is_back(gw: &Gateway, id: &str, body: Value) {
    eventually(
        &format!("PUT routes/{id} is accepted once etcd is back"),
        Duration::from_secs(20),
        || async {
            gw.admin()
                .put("routes", id, body.clone())
                .await
                .is_success()
        },
    )
    .await;
}

/// Polls `path` on `gw` every 2 ms until it answers `want`; returns how long after `since` that was.
async fn answered_at(gw: &Gateway, path: &str, want: u16, since: Instant) -> Duration {
    loop {
        if gw.get(path).await.status == want {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "{path} never answered {want} on this node"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// [`answered_at`] from now.
async fn time_until(gw: &Gateway, path: &str, want: u16) -> Duration {
    answered_at(gw, path, want, Instant::now()).await
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The median and the largest.
fn median_max(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort_unstable();
    (ms(v[v.len() / 2]), ms(v[v.len() - 1]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_and_a_plugin_written_on_one_node_serve_on_every_node() {
    let etcd = Etcd::start().await;
    let a = origin("a").start();
    let (n0, n1, n2) = (
        node(&etcd.store_url()).await,
        node(&etcd.store_url()).await,
        node(&etcd.store_url()).await,
    );

    // Each route, from the moment node 0 acknowledged it until both other nodes serve it.
    let (mut writes, mut propagations) = (Vec::new(), Vec::new());
    for i in 0..20 {
        let path = format!("/r{i}");
        let started = Instant::now();
        n0.route_to(&format!("r{i}"), &path, &a, json!({})).await;
        let acked = Instant::now();
        let (t1, t2) = tokio::join!(
            answered_at(&n1, &path, 200, acked),
            answered_at(&n2, &path, 200, acked)
        );
        writes.push(acked - started);
        propagations.push(t1.max(t2));
    }

    // A plugin uploaded to one node runs on the others: the binary travels through etcd.
    let started = Instant::now();
    n1.upload_plugin("add-header", plugin_wasm("add-header"))
        .await
        .ok();
    n1.route_to(
        "plugged",
        "/plugged",
        &a,
        json!({"add-header": {"name": "x-added", "value": "yes"}}),
    )
    .await;
    let plugin = answered_at(&n2, "/plugged", 200, Instant::now()).await;
    let plugin_total = started.elapsed();
    assert_eq!(a.last().unwrap().header("x-added"), Some("yes"));
    time_until(&n0, "/plugged", 200).await;
    assert_eq!(a.last().unwrap().header("x-added"), Some("yes"));
    let (write_med, write_max) = median_max(writes);
    let (prop_med, prop_max) = median_max(propagations);
    println!(
        "etcd propagation, 20 routes written on node 0 until both other nodes serve them: median {prop_med:.1} ms, \
         max {prop_max:.1} ms (the admin PUT itself: median {write_med:.1} ms, max {write_max:.1} ms); \
         plugin upload + route on node 1 until node 2 serves it: {:.1} ms after the route write, {:.1} ms in all",
        ms(plugin),
        ms(plugin_total)
    );

    converged(&etcd, &[&n0, &n1, &n2]).await;
    let s = status(&n2).await;
    assert_eq!(s["wasm_plugins"][0]["name"], "add-header");
    assert_eq!(s["objects"], 21);

    // Deleting through another node removes it everywhere.
    n2.admin().delete("routes", "r0").await.ok();
    time_until(&n0, "/r0", 404).await;
    converged(&etcd, &[&n0, &n1, &n2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_etcd_down_nodes_serve_the_last_config_refuse_writes_then_converge() {
    let mut etcd = Etcd::start().await;
    let a = origin("a").start();
    let (n1, n2) = (node(&etcd.store_url()).await, node(&etcd.store_url()).await);
    n1.route_to("1", "/hi", &a, json!({})).await;
    time_until(&n2, "/hi", 200).await;

    etcd.kill();
    for n in [&n1, &n2] {
        for _ in 0..5 {
            assert_eq!(n.get("/hi").await.status, 200, "the data plane keeps going");
        }
    }
    let second = json!({"uri": "/two", "upstream": upstream(&[&a])});
    let started = Instant::now();
    let refused = n2.admin().put("routes", "2", second.clone()).await;
    assert_eq!(refused.status, 503, "{}", refused.text);
    let msg = refused.error_msg().unwrap_or_default();
    assert!(
        msg.contains("etcd") && msg.contains("unreachable") && msg.contains("last configuration"),
        "{msg}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a refused write answers, it does not hang"
    );
    assert_eq!(n2.get("/two").await.status, 404, "nothing half-applied");
    let ready = format!("http://{}/status/ready", n1.listener("metrics").unwrap());
    assert_eq!(send(client().get(&ready)).await.status, 503);

    etcd.restart().await;
    put_once_etcd_is_back(&n2, "2", second).await;
    time_until(&n1, "/two", 200).await;
    assert_eq!(send(client().get(&ready)).await.status, 200);
    converged(&etcd, &[&n1, &n2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_a_compaction_resyncs_to_identical_config() {
    let etcd = Etcd::start().await;
    let proxy = TcpProxy::start(etcd.addr()).await;
    let a = origin("a").start();
    let direct = node(&etcd.store_url()).await;
    let behind = node(&format!("etcd://{}", proxy.addr())).await;
    for (id, uri) in [("1", "/one"), ("2", "/two")] {
        direct.route_to(id, uri, &a, json!({})).await;
    }
    time_until(&behind, "/two", 200).await;

    // Cut off, the node misses a create, an update and a delete, and the history that held them is gone.
    proxy.cut();
    direct.route_to("3", "/three", &a, json!({})).await;
    direct.route_to("1", "/one-b", &a, json!({})).await;
    direct.admin().delete("routes", "2").await.ok();
    etcd.compact(etcd.revision().await).await;
    assert_eq!(behind.get("/two").await.status, 200, "still the old config");

    proxy.restore();
    behind
        .wait_for_log("compacted its history", Duration::from_secs(20))
        .await;
    behind
        .wait_for_log(
            "configuration resynchronised from etcd",
            Duration::from_secs(20),
        )
        .await;
    converged(&etcd, &[&direct, &behind]).await;
    assert_eq!(behind.get("/three").await.status, 200);
    assert_eq!(behind.get("/one-b").await.status, 200);
    assert_eq!(behind.get("/one").await.status, 404);
    assert_eq!(behind.get("/two").await.status, 404);
    let head = etcd.revision().await;
    for n in [&direct, &behind] {
        eventually(
            "the node reports etcd's revision",
            Duration::from_secs(10),
            || async { status(n).await["revision"] == head },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_replaced_by_an_empty_one_is_followed() {
    let mut etcd = Etcd::start().await;
    let a = origin("a").start();
    let (n1, n2) = (node(&etcd.store_url()).await, node(&etcd.store_url()).await);
    for id in ["1", "2", "3"] {
        n1.route_to(id, &format!("/r{id}"), &a, json!({})).await;
    }
    time_until(&n2, "/r3", 200).await;

    // Same address, no data: its revision starts again from 1, below what the nodes have seen.
    etcd.wipe_and_restart().await;
    let new = json!({"uri": "/new", "upstream": upstream(&[&a])});
    put_once_etcd_is_back(&n1, "new", new).await;
    time_until(&n2, "/new", 200).await;
    assert!(n2.logs().contains("revision went back"), "{}", n2.logs());
    assert_eq!(n2.get("/r1").await.status, 404, "etcd no longer holds it");
    converged(&etcd, &[&n1, &n2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_by_another_tool_that_does_not_build_waits_for_what_completes_it() {
    let etcd = Etcd::start().await;
    let a = origin("a").start();
    let n1 = node(&etcd.store_url()).await;
    n1.route_to("1", "/hi", &a, json!({})).await;

    // Written straight into etcd, not through a node: a route to an upstream that does not exist yet.
    let route = json!({"id": "2", "uri": "/late", "upstream_id": "u"});
    etcd.put("/apisix/routes/2", &route.to_string()).await;
    n1.wait_for_log("does not build", Duration::from_secs(10))
        .await;
    assert_eq!(
        n1.get("/hi").await.status,
        200,
        "the last good config serves"
    );
    assert_eq!(n1.get("/late").await.status, 404);

    let upstream = json!({"id": "u", "type": "roundrobin", "nodes": nodes(&[&a])});
    etcd.put("/apisix/upstreams/u", &upstream.to_string()).await;
    time_until(&n1, "/late", 200).await;
    converged(&etcd, &[&n1]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writes_on_two_nodes_never_store_a_config_that_does_not_build() {
    let etcd = Etcd::start().await;
    let a = origin("a").start();
    let (n1, n2) = (node(&etcd.store_url()).await, node(&etcd.store_url()).await);
    let mut both_refused = 0;
    for round in 0..20 {
        let u = format!("u{round}");
        n1.put_ok("upstreams", &u, upstream(&[&a])).await;
        eventually(
            "the other node has the upstream",
            Duration::from_secs(10),
            || async { n2.admin().get(&format!("upstreams/{u}")).await.is_success() },
        )
        .await;
        // Each write is valid against its own node's view; together they would leave a route without
        // its upstream.
        let route = json!({"uri": format!("/r{round}"), "upstream_id": u});
        let (admin1, admin2, id) = (n1.admin(), n2.admin(), format!("r{round}"));
        let (deleted, added) = tokio::join!(
            admin1.delete("upstreams", &u),
            admin2.put("routes", &id, route),
        );
        assert!(
            !(deleted.is_success() && added.is_success()),
            "round {round}: both accepted\n{}\n{}",
            deleted.text,
            added.text
        );
        both_refused += usize::from(!deleted.is_success() && !added.is_success());
    }
    assert_eq!(both_refused, 0, "one of the two always goes through");
    converged(&etcd, &[&n1, &n2]).await;
    for n in [&n1, &n2] {
        assert!(!n.logs().contains("does not build"), "{}", n.logs());
    }
}
