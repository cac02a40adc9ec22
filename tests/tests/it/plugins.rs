//! Wasm plugins through the real binary: hot upload, per-route config, phases, ordering, merging,
//! validation, containment of faulty plugins, hot swap under load, and persistence.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use support::*;

/// PUT route `id` on `uri` to origin `a` with this `plugins` map.
async fn plugin_route(gw: &Gateway, id: &str, uri: &str, a: &Origin, plugins: Value) {
    gw.route_to(id, uri, a, plugins).await;
}

async fn with_plugin(name: &str, fixture: &str) -> Gateway {
    let gw = gateway().start().await;
    gw.upload_plugin(name, plugin_wasm(fixture)).await.ok();
    gw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_plugin_runs_on_the_routes_that_enable_it() {
    let a = origin("a").start();
    let gw = with_plugin("add-header", "add-header").await;
    plugin_route(
        &gw,
        "with",
        "/with",
        &a,
        json!({"add-header": {"name": "x-added", "value": "yes"}}),
    )
    .await;
    gw.put_ok(
        "routes",
        "without",
        json!({"uri": "/without", "upstream": upstream(&[&a])}),
    )
    .await;
    assert_eq!(gw.get("/with").await.status, 200);
    assert_eq!(a.last().unwrap().header("x-added"), Some("yes"));
    assert_eq!(gw.get("/without").await.status, 200);
    assert_eq!(a.last().unwrap().header("x-added"), None);
    let list = gw.admin().get("plugins/list").await.ok();
    assert!(list
        .json
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "add-header"));
    let d = gw.admin().get("wasm_plugins/add-header").await.ok();
    assert_eq!(d.json["phases"], json!(["access"]));
    assert_eq!(d.json["sha256"].as_str().unwrap().len(), 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn respond_from_access_never_reaches_the_upstream() {
    let a = origin("a").start();
    let gw = with_plugin("phases", "phases").await;
    plugin_route(
        &gw,
        "1",
        "/p/*",
        &a,
        json!({"phases": {"header": "x-set", "value": "v"}}),
    )
    .await;
    let denied = send(
        gw.request(reqwest::Method::GET, "/p/secret")
            .header("x-deny", "1"),
    )
    .await;
    assert_eq!(denied.status, 403);
    assert_eq!(denied.text(), "denied /p/secret");
    assert_eq!(denied.header("x-denied-by"), Some("phases"));
    assert_eq!(
        a.request_count(),
        0,
        "the upstream must never see a denied request"
    );

    let ok = send(
        gw.request(reqwest::Method::GET, "/p/x")
            .header("x-in", "hello"),
    )
    .await;
    assert_eq!(ok.status, 200);
    let seen = a.last().unwrap();
    assert_eq!(
        seen.header("x-set"),
        Some("v"),
        "access may set request headers"
    );
    assert_eq!(
        seen.header("x-rewrite"),
        Some("1"),
        "rewrite sees the route id"
    );
    assert_eq!(
        ok.header("x-resp"),
        Some("hello"),
        "header_filter reads the context rewrite wrote"
    );
    assert_eq!(ok.header("x-status-seen"), Some("200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_config_is_validated_by_the_plugin_on_write() {
    let a = origin("a").start();
    let gw = with_plugin("phases", "phases").await;
    let r = gw
        .admin()
        .put(
            "routes",
            "1",
            json!({"uri": "/", "upstream": upstream(&[&a]),
            "plugins": {"phases": {"header": "", "value": "v"}}}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.error_msg()
            .unwrap()
            .contains("plugins.phases: header: must not be empty"),
        "{}",
        r.text
    );
    assert_eq!(
        gw.admin().get("routes/1").await.status,
        404,
        "a rejected write stores nothing"
    );

    let r = gw
        .admin()
        .put(
            "routes",
            "1",
            json!({"uri": "/", "upstream": upstream(&[&a]),
            "plugins": {"phases": {"header": "x", "value": "v", "bogus": 1}}}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.error_msg().unwrap().contains("bogus"), "{}", r.text);

    let r = gw
        .admin()
        .put(
            "routes",
            "1",
            json!({"uri": "/", "upstream": upstream(&[&a]),
            "plugins": {"no-such-plugin": {}}}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.error_msg()
            .unwrap()
            .contains("unknown plugin \"no-such-plugin\""),
        "{}",
        r.text
    );

    let r = gw
        .admin()
        .put(
            "routes",
            "1",
            json!({"uri": "/", "upstream": upstream(&[&a]),
            "plugins": {"phases": {"header": "x", "value": "v", "_meta": {"disabled": true}}}}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.error_msg().unwrap().contains("_meta"), "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_rejected_and_the_old_version_keeps_serving() {
    let a = origin("a").start();
    let gw = with_plugin("add-header", "add-header").await;
    plugin_route(
        &gw,
        "1",
        "/",
        &a,
        json!({"add-header": {"name": "x-v", "value": "1"}}),
    )
    .await;
    let good = plugin_wasm("add-header");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "not wasm",
            b"hello, world".to_vec(),
            "not a WebAssembly binary",
        ),
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            "invalid WebAssembly component",
        ),
        ("empty", Vec::new(), "not a WebAssembly binary"),
    ];
    for (what, bytes, expect) in cases {
        let r = gw.upload_plugin("add-header", bytes).await;
        assert_eq!(r.status, 400, "{what}: {}", r.text);
        assert!(
            r.error_msg().unwrap_or("").contains(expect),
            "{what}: {}",
            r.text
        );
    }
    // A new version whose config schema rejects the route's config is refused too.
    let r = gw.upload_plugin("add-header", plugin_wasm("phases")).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.error_msg().unwrap().contains("route 1"), "{}", r.text);

    assert_eq!(gw.get("/").await.status, 200);
    assert_eq!(
        a.last().unwrap().header("x-v"),
        Some("1"),
        "the old version still serves"
    );
}

async fn faulty_route(
    gw: &Gateway,
    a: &Origin,
    id: &str,
    phase: &str,
    fault: &str,
    fail_open: bool,
) {
    gw.put_ok("routes", id, json!({"uri": format!("/{id}"), "upstream": upstream(&[a]),
        "plugins": {"faults": {"phase": phase, "fault": fault, "_meta": {"fail_open": fail_open}}}}))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traps_loops_and_memory_bombs_are_contained_in_every_request_phase() {
    let a = origin("a").start();
    let gw = with_plugin("faults", "faults").await;
    faulty_route(&gw, &a, "healthy", "log", "none", false).await;
    for phase in ["rewrite", "access", "header-filter"] {
        for fault in ["trap", "loop", "memory"] {
            let id = format!("{phase}-{fault}");
            faulty_route(&gw, &a, &id, phase, fault, false).await;
            let started = Instant::now();
            let r = gw.get(&format!("/{id}")).await;
            assert_eq!(r.status, 500, "{id}: {}", r.text());
            assert!(
                !r.text().contains("fault fixture"),
                "details stay in the log: {}",
                r.text()
            );
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "{id} took {:?}",
                started.elapsed()
            );
            // The same plugin keeps serving other requests on fresh instances.
            let ok = gw.get("/healthy").await;
            assert_eq!(ok.status, 200, "after {id}");
            assert_eq!(a.last().unwrap().header("x-faults-ok"), Some("1"));
        }
    }
    let logs = gw.logs();
    assert!(logs.contains("plugin fault"), "faults are logged");
    assert!(logs.contains("plugin=faults"), "with the plugin's name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_does_not_stall_other_routes() {
    let a = origin("a").start();
    let gw = with_plugin("faults", "faults").await;
    faulty_route(&gw, &a, "spin", "access", "loop", false).await;
    faulty_route(&gw, &a, "fine", "log", "none", false).await;
    let spinners: Vec<_> = (0..4)
        .map(|_| {
            let url = gw.url("/spin");
            tokio::spawn(async move { send(client().get(url)).await.status })
        })
        .collect();
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(gw.get("/fine").await.status, 200);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    for s in spinners {
        assert_eq!(s.await.unwrap(), 500);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_skips_a_faulting_plugin_and_disable_skips_it_entirely() {
    let a = origin("a").start();
    let gw = with_plugin("faults", "faults").await;
    faulty_route(&gw, &a, "open", "access", "trap", true).await;
    assert_eq!(gw.get("/open").await.status, 200);
    plugin_route(
        &gw,
        "off",
        "/off",
        &a,
        json!({"faults": {"phase": "access", "fault": "trap", "_meta": {"disable": true}}}),
    )
    .await;
    assert_eq!(gw.get("/off").await.status, 200);
    assert_eq!(
        a.last().unwrap().header("x-faults-ok"),
        None,
        "a disabled plugin does not run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_run_in_priority_order_and_service_and_route_plugins_merge() {
    let a = origin("a").start();
    let gw = gateway().start().await;
    for name in ["first", "second"] {
        gw.upload_plugin(name, plugin_wasm("add-header")).await.ok();
    }
    // Both set x-order; the lower priority runs later and wins.
    let route = |p1: i64, p2: i64| {
        json!({"uri": "/o", "upstream": upstream(&[&a]), "plugins": {
            "first": {"name": "x-order", "value": "first", "_meta": {"priority": p1}},
            "second": {"name": "x-order", "value": "second", "_meta": {"priority": p2}}}})
    };
    gw.put_ok("routes", "o", route(10, 5)).await;
    gw.get("/o").await;
    assert_eq!(a.last().unwrap().header("x-order"), Some("second"));
    gw.put_ok("routes", "o", route(5, 10)).await;
    gw.get("/o").await;
    assert_eq!(a.last().unwrap().header("x-order"), Some("first"));

    // Service plugins apply to its routes; the route's own entry for the same plugin wins.
    gw.put_ok(
        "services",
        "s",
        json!({"upstream": upstream(&[&a]), "plugins": {
        "first": {"name": "x-svc", "value": "service"},
        "second": {"name": "x-both", "value": "service"}}}),
    )
    .await;
    gw.put_ok(
        "routes",
        "r",
        json!({"uri": "/s", "service_id": "s", "plugins": {
        "second": {"name": "x-both", "value": "route"}}}),
    )
    .await;
    gw.get("/s").await;
    let seen = a.last().unwrap();
    assert_eq!(seen.header("x-svc"), Some("service"));
    assert_eq!(seen.header("x-both"), Some("route"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_rules_apply_to_every_route() {
    let a = origin("a").start();
    let gw = with_plugin("add-header", "add-header").await;
    gw.put_ok(
        "routes",
        "1",
        json!({"uri": "/one", "upstream": upstream(&[&a])}),
    )
    .await;
    gw.put_ok(
        "routes",
        "2",
        json!({"uri": "/two", "upstream": upstream(&[&a])}),
    )
    .await;
    gw.put_ok(
        "global_rules",
        "g",
        json!({"plugins": {"add-header": {"name": "x-global", "value": "1"}}}),
    )
    .await;
    // A second rule configuring the same plugin runs too, rather than replacing the first.
    gw.put_ok(
        "global_rules",
        "g2",
        json!({"plugins": {"add-header": {"name": "x-global-2", "value": "2"}}}),
    )
    .await;
    for path in ["/one", "/two"] {
        gw.get(path).await;
        let seen = a.last().unwrap();
        assert_eq!(seen.header("x-global"), Some("1"), "{path}");
        assert_eq!(seen.header("x-global-2"), Some("2"), "{path}");
    }
    assert_eq!(gw.get("/none").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_in_use_cannot_be_deleted() {
    let a = origin("a").start();
    let gw = with_plugin("add-header", "add-header").await;
    plugin_route(
        &gw,
        "1",
        "/",
        &a,
        json!({"add-header": {"name": "x", "value": "1"}}),
    )
    .await;
    let r = gw.admin().delete("wasm_plugins", "add-header").await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.error_msg().unwrap().contains("route [1]"), "{}", r.text);
    gw.admin().delete("routes", "1").await.ok();
    gw.admin().delete("wasm_plugins", "add-header").await.ok();
    assert_eq!(gw.admin().get("wasm_plugins/add-header").await.status, 404);
    let r = gw
        .admin()
        .put(
            "routes",
            "1",
            json!({"uri": "/", "upstream": upstream(&[&a]),
        "plugins": {"add-header": {"name": "x", "value": "1"}}}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_under_load_drops_no_request() {
    let a = origin("a").start();
    let gw = gateway().start().await;
    gw.upload_plugin("swap", plugin_wasm("noop")).await.ok();
    plugin_route(
        &gw,
        "1",
        "/",
        &a,
        json!({"swap": {"name": "x-swapped", "value": "yes"}}),
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (url, stop) = (gw.url("/"), stop.clone());
            tokio::spawn(async move {
                let c = client();
                let (mut n, mut failed) = (0usize, 0usize);
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    if send(c.get(&url)).await.status != 200 {
                        failed += 1;
                    }
                }
                (n, failed)
            })
        })
        .collect();
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let fixture = if i % 2 == 0 { "add-header" } else { "noop" };
        gw.upload_plugin("swap", plugin_wasm(fixture)).await.ok();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::SeqCst);
    let (mut total, mut failed) = (0, 0);
    for w in workers {
        let (n, f) = w.await.unwrap();
        total += n;
        failed += f;
    }
    assert!(total > 100, "load ran ({total} requests)");
    assert_eq!(
        failed, 0,
        "{failed} of {total} requests failed during swaps"
    );
    // The last upload was noop: no header; one more swap brings the header back.
    gw.get("/").await;
    assert_eq!(a.last().unwrap().header("x-swapped"), None);
    gw.upload_plugin("swap", plugin_wasm("add-header"))
        .await
        .ok();
    gw.get("/").await;
    assert_eq!(a.last().unwrap().header("x-swapped"), Some("yes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_survive_a_restart_without_recompiling() {
    let a = origin("a").start();
    let mut gw = with_plugin("add-header", "add-header").await;
    plugin_route(
        &gw,
        "1",
        "/",
        &a,
        json!({"add-header": {"name": "x-after", "value": "restart"}}),
    )
    .await;
    gw.restart().await;
    let line = gw
        .wait_for_log("wasm plugin loaded", Duration::from_secs(10))
        .await;
    assert!(
        line.contains("from_cache=true"),
        "loaded from the artifact cache: {line}"
    );
    assert_eq!(gw.get("/").await.status, 200);
    assert_eq!(a.last().unwrap().header("x-after"), Some("restart"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_filter_rewrites_the_streamed_body_and_log_runs_after_the_response() {
    let a = origin("a").body("hello from the origin").start();
    let gw = with_plugin("phases", "phases").await;
    plugin_route(
        &gw,
        "1",
        "/b",
        &a,
        json!({"phases": {"header": "x", "value": "v", "upper": true}}),
    )
    .await;
    let r = gw.get("/b").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "HELLO FROM THE ORIGIN");
    let line = gw.wait_for_log("served /b", Duration::from_secs(5)).await;
    assert!(
        line.contains("phases"),
        "the log phase's line names the plugin: {line}"
    );
}

/// The walk-through in examples/hello-plugin/README.md, step by step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hello_plugin_example_works_as_its_readme_says() {
    let a = origin("a").start();
    let gw = gateway().start().await;
    let up = gw
        .upload_plugin("hello-plugin", plugin_wasm("hello-plugin"))
        .await
        .ok();
    assert_eq!(up.json["phases"], json!(["access", "header-filter"]));
    let bad = gw
        .admin()
        .put(
            "routes",
            "hello",
            json!({"uri": "/*", "upstream": upstream(&[&a]),
            "plugins": {"hello-plugin": {"greeting": "x", "path": "hello"}}}),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.error_msg()
            .unwrap()
            .contains("path: must start with '/'"),
        "{}",
        bad.text
    );
    plugin_route(
        &gw,
        "hello",
        "/*",
        &a,
        json!({"hello-plugin": {"greeting": "hi from wasm"}}),
    )
    .await;
    let r = gw.get("/hello?name=ada").await;
    assert_eq!((r.status, r.text().as_str()), (200, "Hello, ada!\n"));
    assert_eq!(a.request_count(), 0, "the plugin answered by itself");
    let r = gw.get("/anything").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-hello"), Some("hi from wasm"));
    assert_eq!(a.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_in_plugins_cannot_be_replaced_by_an_upload() {
    let gw = gateway().start().await;
    let r = gw
        .upload_plugin("key-auth", plugin_wasm("add-header"))
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(
        r.error_msg().unwrap_or_default().contains("built-in"),
        "{}",
        r.text
    );
    let list = gw.admin().get("plugins/list").await.ok();
    for name in [
        "basic-auth",
        "cors",
        "ip-restriction",
        "jwt-auth",
        "key-auth",
        "limit-conn",
        "limit-count",
        "limit-req",
        "proxy-cache",
        "proxy-rewrite",
        "request-id",
        "response-rewrite",
    ] {
        assert!(
            list.json.as_array().unwrap().iter().any(|n| n == name),
            "{name} missing from {}",
            list.text
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_built_in_plugin_is_compiled_on_first_use_and_loaded_from_the_cache_after_a_restart() {
    let a = origin("a").start();
    let mut gw = gateway().start().await;
    assert!(
        !gw.logs().contains("plugin=limit-count"),
        "not compiled before a config uses it"
    );
    plugin_route(
        &gw,
        "1",
        "/",
        &a,
        json!({"limit-count": {"count": 1, "time_window": 60}}),
    )
    .await;
    let compiled = gw
        .wait_for_log("from_cache=false", Duration::from_secs(10))
        .await;
    assert!(compiled.contains("limit-count"), "{compiled}");
    gw.restart().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let logs = gw.logs();
        let reloaded = logs.lines().any(|l| {
            l.contains("plugin loaded")
                && l.contains("limit-count")
                && l.contains("from_cache=true")
        });
        if reloaded {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no cached load in {logs}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gw.get("/").await.status, 200);
    assert_eq!(gw.get("/").await.status, 503, "the limit still applies");
}
