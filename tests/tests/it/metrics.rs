//! Observability through the real binary: Prometheus metrics after real traffic, the status endpoints
//! and W3C trace context towards the upstream.

use support::*;

const WAIT: Duration = Duration::from_secs(10);

async fn observed_gateway() -> Gateway {
    gateway().wait_for_listener("metrics").start().await
}

/// Waits until `name{labels}` reaches `expected` (a request is counted once its response body is done,
/// which can be just after the client has read it), then checks it did not go past.
async fn expect_count(gw: &Gateway, name: &str, labels: &[(&str, &str)], expected: f64) {
    let what = format!("{name} {labels:?} reaches {expected}");
    eventually(&what, WAIT, || async move {
        gw.scrape().await.count(name, labels) >= expected
    })
    .await;
    assert_eq!(
        gw.scrape().await.count(name, labels),
        expected,
        "{name} {labels:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_by_route_and_status_class() {
    let a = origin("a").start();
    let gw = observed_gateway().await;
    gw.route_to("ok", "/ok", &a, json!({})).await;
    gw.route_to("err", "/err", &a, json!({})).await;

    let mut ok_bytes = 0;
    for _ in 0..3 {
        let r = gw.get("/ok").await;
        assert_eq!(r.status, 200);
        ok_bytes += r.body.len();
    }
    let posted = send(gw.request(reqwest::Method::POST, "/ok").body("0123456789")).await;
    assert_eq!(posted.status, 200);
    ok_bytes += posted.body.len();
    for _ in 0..2 {
        let r = send(
            gw.request(reqwest::Method::GET, "/err")
                .header("x-status", "503"),
        )
        .await;
        assert_eq!(r.status, 503);
    }
    assert_eq!(gw.get("/nowhere").await.status, 404);

    let requests = "sluice_http_requests_total";
    expect_count(&gw, requests, &[("route", "ok"), ("code", "2xx")], 4.0).await;
    expect_count(&gw, requests, &[("route", "err"), ("code", "5xx")], 2.0).await;
    expect_count(&gw, requests, &[("route", ""), ("code", "4xx")], 1.0).await;
    let m = gw.scrape().await;
    assert_eq!(m.count(requests, &[("route", "ok"), ("code", "5xx")]), 0.0);
    assert_eq!(m.count(requests, &[("route", "err"), ("code", "2xx")]), 0.0);
    let by_route = |name: &str, route: &str| m.count(name, &[("route", route)]);
    assert_eq!(
        by_route("sluice_http_request_duration_seconds_count", "ok"),
        4.0
    );
    assert_eq!(
        by_route("sluice_http_request_duration_seconds_count", "err"),
        2.0
    );
    assert_eq!(
        by_route("sluice_upstream_response_seconds_count", "ok"),
        4.0
    );
    // No upstream was asked for the unrouted request.
    assert_eq!(by_route("sluice_upstream_response_seconds_count", ""), 0.0);
    assert_eq!(by_route("sluice_http_request_bytes_total", "ok"), 10.0);
    assert_eq!(
        by_route("sluice_http_response_bytes_total", "ok"),
        ok_bytes as f64
    );
    let le_inf = [("route", "ok"), ("le", "+Inf")];
    assert_eq!(
        m.count("sluice_http_request_duration_seconds_bucket", &le_inf),
        4.0
    );
    assert!(
        m.count(
            "sluice_http_request_duration_seconds_sum",
            &[("route", "ok")]
        ) > 0.0
    );
    assert!(m.value("sluice_connections_active", &[]).is_some());
    let node = a.node();
    let by_node = |code| {
        m.count(
            "sluice_upstream_responses_total",
            &[("route", "ok"), ("node", node.as_str()), ("code", code)],
        )
    };
    assert_eq!((by_node("2xx"), by_node("5xx")), (4.0, 0.0));
    let err_5xx = [("route", "err"), ("node", node.as_str()), ("code", "5xx")];
    assert_eq!(m.count("sluice_upstream_responses_total", &err_5xx), 2.0);
    // Keepalive: at least one new connection was timed, never more than the exchanges.
    let connects = by_route("sluice_upstream_connect_seconds_count", "ok");
    assert!((1.0..=4.0).contains(&connects), "{connects}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_node_is_counted_as_failed() {
    let gw = observed_gateway().await;
    let down = closed_port();
    gw.put_ok(
        "routes",
        "down",
        json!({"uri": "/down", "upstream": {"nodes": {down.to_string(): 1}, "type": "roundrobin"}}),
    )
    .await;
    assert_eq!(gw.get("/down").await.status, 502);
    let failed = [
        ("route", "down"),
        ("node", &*down.to_string()),
        ("code", "failed"),
    ];
    expect_count(&gw, "sluice_upstream_responses_total", &failed, 1.0).await;
    let m = gw.scrape().await;
    assert_eq!(
        m.count(
            "sluice_upstream_connect_seconds_count",
            &[("route", "down")]
        ),
        0.0
    );
    assert_eq!(
        m.count(
            "sluice_http_requests_total",
            &[("route", "down"), ("code", "5xx")]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_of_a_configured_consumer_carry_its_name() {
    let a = origin("a").start();
    let gw = observed_gateway().await;
    gw.put_ok(
        "consumers",
        "jack",
        json!({"username": "jack", "plugins": {"key-auth": {"key": "jack-key"}}}),
    )
    .await;
    gw.route_to("auth", "/auth", &a, json!({"key-auth": {}}))
        .await;
    let r = send(
        gw.request(reqwest::Method::GET, "/auth")
            .header("apikey", "jack-key"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(gw.get("/auth").await.status, 401);

    let requests = "sluice_http_requests_total";
    let jack = [("route", "auth"), ("consumer", "jack"), ("code", "2xx")];
    expect_count(&gw, requests, &jack, 1.0).await;
    let anonymous = [("route", "auth"), ("consumer", ""), ("code", "4xx")];
    expect_count(&gw, requests, &anonymous, 1.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_version_moves_with_each_admin_write() {
    let a = origin("a").start();
    let gw = observed_gateway().await;
    let before = gw.scrape().await;
    let version = before.value("sluice_config_version", &[]).unwrap();
    let reloaded = before
        .value("sluice_config_reload_timestamp_seconds", &[])
        .unwrap();
    assert!(reloaded > 1.6e9, "a Unix time: {reloaded}");
    gw.route_to("1", "/one", &a, json!({})).await;
    gw.route_to("2", "/two", &a, json!({})).await;
    let after = gw.scrape().await;
    assert_eq!(
        after.value("sluice_config_version", &[]),
        Some(version + 2.0)
    );
    assert!(
        after
            .value("sluice_config_reload_timestamp_seconds", &[])
            .unwrap()
            >= reloaded
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_route_leaves_the_exposition() {
    let a = origin("a").start();
    let gw = observed_gateway().await;
    gw.route_to("old", "/old", &a, json!({})).await;
    assert_eq!(gw.get("/old").await.status, 200);
    let served = [("route", "old"), ("code", "2xx")];
    expect_count(&gw, "sluice_http_requests_total", &served, 1.0).await;
    gw.admin().delete("routes", "old").await.ok();
    let m = gw.scrape().await;
    assert!(!m.0.contains(r#"route="old""#), "{}", m.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_trap_is_counted_once_with_its_plugin_and_phase() {
    let a = origin("a").start();
    let gw = observed_gateway().await;
    gw.upload_plugin("faults", plugin_wasm("faults")).await.ok();
    let trap = json!({"faults": {"phase": "access", "fault": "trap"}});
    gw.route_to("trap", "/trap", &a, trap).await;
    assert_eq!(gw.get("/trap").await.status, 500);

    expect_count(
        &gw,
        "sluice_http_requests_total",
        &[("route", "trap"), ("code", "5xx")],
        1.0,
    )
    .await;
    let m = gw.scrape().await;
    let faults = |kind| {
        m.count(
            "sluice_plugin_faults_total",
            &[("plugin", "faults"), ("kind", kind)],
        )
    };
    assert_eq!(faults("trap"), 1.0);
    assert_eq!(faults("deadline"), 0.0);
    let access = [("plugin", "faults"), ("phase", "access")];
    assert_eq!(m.count("sluice_plugin_calls_total", &access), 1.0);
    assert_eq!(
        m.count("sluice_plugin_call_duration_seconds_count", &access),
        1.0
    );
    let plugin = [("plugin", "faults")];
    assert!(m.value("sluice_plugin_idle_instances", &plugin).is_some());
    // The trapped instance was discarded: another one serves the next request.
    assert!(m.count("sluice_plugin_instances_created_total", &plugin) >= 1.0);
    assert!(m.count("sluice_plugin_memory_high_water_bytes", &plugin) > 0.0);
    // The upstream never saw the request.
    assert_eq!(a.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_a_plugin_defines_are_exported_under_its_name() {
    let a = origin("a").start();
    let gw = observed_gateway().await;
    gw.upload_plugin("phases", plugin_wasm("phases")).await.ok();
    let phases = json!({"phases": {"header": "x-set", "value": "v"}});
    gw.route_to("p", "/p", &a, phases).await;
    for _ in 0..2 {
        assert_eq!(gw.get("/p").await.status, 200);
    }
    // The fixture counts `phases_served{route}` in its log phase.
    expect_count(
        &gw,
        "sluice_plugin_phases_served_total",
        &[("plugin", "phases"), ("route", "p")],
        2.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_endpoints_report_liveness_and_readiness() {
    let gw = observed_gateway().await;
    let alive = gw.metrics_get("/status").await;
    assert_eq!((alive.status, alive.json()), (200, json!({"status": "ok"})));
    let ready = gw.metrics_get("/status/ready").await;
    assert_eq!((ready.status, ready.json()), (200, json!({"status": "ok"})));
    let metrics = gw.metrics_get("/metrics").await;
    assert!(metrics
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/openmetrics-text")));
    assert!(metrics.text().ends_with("# EOF\n"));
    assert_eq!(gw.metrics_get("/nothing").await.status, 404);
}

fn traceparent_fields(v: &str) -> Vec<String> {
    let fields: Vec<String> = v.split('-').map(str::to_string).collect();
    assert_eq!(fields.len(), 4, "{v}");
    assert_eq!(
        (
            fields[0].len(),
            fields[1].len(),
            fields[2].len(),
            fields[3].len()
        ),
        (2, 32, 16, 2),
        "{v}"
    );
    assert!(
        v.bytes()
            .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{v}"
    );
    fields
}

/// GET `/t` with this `traceparent` and a `tracestate`; what origin `a` received.
async fn traced(gw: &Gateway, a: &Origin, traceparent: &str) -> Record {
    let r = send(
        gw.request(reqwest::Method::GET, "/t")
            .header("traceparent", traceparent)
            .header("tracestate", "congo=t61rcWkgMzE"),
    )
    .await;
    assert_eq!(r.status, 200);
    a.last().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_gets_a_child_of_the_clients_trace() {
    let a = origin("a").start();
    let gw = gateway().start().await;
    gw.route_to("1", "/t", &a, json!({})).await;
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let seen = traced(&gw, &a, parent).await;
    let child = traceparent_fields(seen.header("traceparent").unwrap());
    assert_eq!(child[0], "00");
    assert_eq!(child[1], "4bf92f3577b34da6a3ce929d0e0e4736", "same trace");
    assert_ne!(child[2], "00f067aa0ba902b7", "a new parent span id");
    assert_eq!(child[3], "01", "flags kept");
    assert_eq!(seen.header("tracestate"), Some("congo=t61rcWkgMzE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_trace_starts_when_the_client_sent_none_or_an_invalid_one() {
    let a = origin("a").start();
    let gw = gateway().start().await;
    gw.route_to("1", "/t", &a, json!({})).await;
    let mut traces = Vec::new();
    for _ in 0..2 {
        assert_eq!(gw.get("/t").await.status, 200);
        let fields = traceparent_fields(a.last().unwrap().header("traceparent").unwrap());
        assert_ne!(fields[1], "0".repeat(32));
        traces.push(fields[1].clone());
    }
    assert_ne!(traces[0], traces[1], "each request starts its own trace");

    let invalid = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
    let seen = traced(&gw, &a, invalid).await;
    let fresh = traceparent_fields(seen.header("traceparent").unwrap());
    assert_ne!(fresh[1], "0".repeat(32));
    assert_eq!(
        seen.header("tracestate"),
        None,
        "tracestate of an invalid parent is dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_off_serves_traffic_without_a_metrics_listener() {
    let a = origin("a").start();
    let builder = gateway().bare();
    let data = builder.data_dir().to_path_buf();
    let gw = builder
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0"])
        .args(["--admin-listen", "127.0.0.1:0", "--metrics-listen", "off"])
        .start()
        .await;
    gw.route_to("1", "/m", &a, json!({})).await;
    assert_eq!(gw.get("/m").await.status, 200);
    assert_eq!(gw.listener("metrics"), None);
    assert!(gw.logs().contains("metrics off"), "{}", gw.logs());
}
