//! The access log and the logger plugins through the real binary: one well-formed line per request,
//! formats, `http-logger` batches to a live endpoint (and an endpoint that fails or is down), and
//! `file-logger` lines inside the plugin log directory.

use support::*;

const WAIT: Duration = Duration::from_secs(10);

/// The non-empty lines of `path` (none while it does not exist).
fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Waits until `path` has `n` lines, then checks it got no more.
async fn expect_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    let what = format!("{} has {n} lines", path.display());
    eventually(&what, WAIT, || async { lines(path).len() >= n }).await;
    let got = lines(path);
    assert_eq!(got.len(), n, "{got:#?}");
    got
}

fn json_line(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_has_one_apisix_json_line_per_request() {
    let a = origin("a").start();
    let builder = gateway();
    let log = builder.root().join("access.log");
    let gw = builder.arg("--access-log").arg(&log).start().await;
    gw.route_to("r1", "/hello", &a, json!({})).await;

    let ok = send(
        gw.request(reqwest::Method::GET, "/hello?a=1&b=x+y")
            .header("user-agent", "logging-test"),
    )
    .await;
    assert_eq!(ok.status, 200);
    let posted = send(
        gw.request(reqwest::Method::POST, "/hello")
            .body("0123456789"),
    )
    .await;
    assert_eq!(posted.status, 200);
    assert_eq!(gw.get("/nowhere").await.status, 404);

    let entries: Vec<Value> = expect_lines(&log, 3)
        .await
        .iter()
        .map(|l| json_line(l))
        .collect();
    let first = entries
        .iter()
        .find(|e| e["request"]["method"] == "GET" && e["route_id"] == "r1")
        .expect("the GET's line");
    assert_eq!(first["request"]["uri"], "/hello?a=1&b=x+y");
    assert_eq!(
        first["request"]["querystring"],
        json!({"a": "1", "b": "x y"})
    );
    assert_eq!(first["request"]["headers"]["user-agent"], "logging-test");
    assert_eq!(
        first["request"]["url"],
        format!("http://{}/hello?a=1&b=x+y", gw.http_addr())
    );
    assert_eq!(first["response"]["status"], 200);
    assert_eq!(first["response"]["size"], ok.body.len());
    assert_eq!(first["upstream"], a.node());
    assert_eq!(first["client_ip"], "127.0.0.1");
    assert_eq!(first["complete"], true);
    let latency = first["latency"].as_f64().expect("latency in ms");
    let upstream = first["upstream_latency"]
        .as_f64()
        .expect("upstream latency");
    assert!(latency >= upstream && upstream > 0.0, "{first}");
    assert!(first["start_time"].as_u64().unwrap() > 1_600_000_000_000);

    let post = entries
        .iter()
        .find(|e| e["request"]["method"] == "POST")
        .expect("the POST's line");
    assert_eq!(post["request"]["size"], 10);
    let miss = entries
        .iter()
        .find(|e| e["response"]["status"] == 404)
        .expect("the 404's line");
    assert_eq!(miss["route_id"], "");
    assert!(miss.get("upstream").is_none(), "{miss}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_format_writes_nginx_style_lines_to_stdout() {
    let a = origin("a").start();
    let gw = gateway()
        .args([
            "--access-log-format",
            r#"ACCESS $remote_addr "$request" $status $body_bytes_sent $route_id $upstream_addr $http_x_trace $request_completion"#,
        ])
        .start()
        .await;
    gw.route_to("tpl", "/tpl", &a, json!({})).await;
    let r = send(
        gw.request(reqwest::Method::GET, "/tpl?q=1")
            .header("x-trace", "t-1"),
    )
    .await;
    assert_eq!(r.status, 200);
    let line = gw.wait_for_log("ACCESS ", WAIT).await;
    assert_eq!(
        line.trim(),
        format!(
            r#"ACCESS 127.0.0.1 "GET /tpl?q=1 HTTP/1.1" 200 {} tpl {} t-1 OK"#,
            r.body.len(),
            a.node()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_access_log_variable_stops_startup_with_its_name() {
    let out = std::process::Command::new(sluice_bin())
        .args(["serve", "--access-log-format", "$status $bogus_var"])
        .output()
        .expect("run sluice");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("$bogus_var"), "{err}");
}

/// The entries a collector received, each batch decoded as a JSON array.
fn batches(c: &Collector) -> Vec<Vec<Value>> {
    c.posts()
        .iter()
        .filter(|p| p.status == 200)
        .map(|p| serde_json::from_slice(&p.body).unwrap_or_else(|e| panic!("{e}: {}", p.text())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_logger_delivers_full_batches_and_flushes_the_rest_when_idle() {
    let a = origin("a").start();
    let logs = collector();
    let gw = gateway().wait_for_listener("metrics").start().await;
    let logger = json!({"http-logger": {
        "uri": logs.url("/ingest"), "auth_header": "Bearer t0ken",
        "batch_max_size": 3, "inactive_timeout": 1,
    }});
    gw.route_to("logged", "/logged", &a, logger).await;
    for i in 0..7 {
        let r = gw.get(&format!("/logged?i={i}")).await;
        assert_eq!(r.status, 200);
    }
    // Two full batches go at once; the seventh entry waits for a second without traffic.
    eventually("7 entries delivered", WAIT, || async {
        batches(&logs).iter().map(Vec::len).sum::<usize>() >= 7
    })
    .await;
    let got = batches(&logs);
    assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    let order: Vec<Value> = got
        .iter()
        .flatten()
        .map(|e| e["request"]["querystring"]["i"].clone())
        .collect();
    assert_eq!(
        order,
        (0..7).map(|i| json!(i.to_string())).collect::<Vec<_>>()
    );
    let post = &logs.posts()[0];
    assert_eq!(
        (post.method.as_str(), post.path.as_str()),
        ("POST", "/ingest")
    );
    assert_eq!(post.headers["authorization"], "Bearer t0ken");
    assert_eq!(post.headers["content-type"], "application/json");
    let entry = &got[0][0];
    assert_eq!(entry["route_id"], "logged");
    assert_eq!(entry["upstream"], a.node());
    assert_eq!(entry["response"]["status"], 200);
    let delivered = [("plugin", "http-logger"), ("result", "delivered")];
    assert_eq!(
        gw.scrape()
            .await
            .count("sluice_log_sink_entries_total", &delivered),
        7.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_logger_retries_a_failing_endpoint_and_then_delivers() {
    let a = origin("a").start();
    let logs = collector();
    logs.set_status(503);
    let gw = gateway().start().await;
    let logger = json!({"http-logger": {
        "uri": logs.url("/in"), "concat_method": "new_line",
        "batch_max_size": 2, "max_retry_count": 5, "retry_delay": 1,
    }});
    gw.route_to("r", "/r", &a, logger).await;
    for _ in 0..2 {
        assert_eq!(gw.get("/r").await.status, 200);
    }
    eventually("a failed attempt", WAIT, || async {
        !logs.posts().is_empty()
    })
    .await;
    // Retries wait 1, 2, 4, ... s: a later one finds the endpoint healthy again.
    logs.set_status(200);
    eventually("the batch delivered after retries", 2 * WAIT, || async {
        logs.posts().iter().any(|p| p.status == 200)
    })
    .await;
    let posts = logs.posts();
    let delivered = posts.iter().find(|p| p.status == 200).unwrap();
    // Every attempt carried the same batch: two newline-terminated entries.
    assert!(posts.iter().all(|p| p.body == delivered.body));
    assert_eq!(delivered.headers["content-type"], "text/plain");
    let text = delivered.text();
    assert_eq!(text.matches('\n').count(), 2, "{text}");
    for line in text.lines() {
        assert_eq!(json_line(line)["route_id"], "r");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_unaffected_when_the_log_endpoint_is_down() {
    let a = origin("a").start();
    let gw = gateway().wait_for_listener("metrics").start().await;
    let logger = json!({"http-logger": {
        "uri": format!("http://{}/gone", closed_port()), "timeout": 1,
        "batch_max_size": 1, "max_retry_count": 2, "retry_delay": 0,
    }});
    gw.route_to("down", "/down", &a, logger).await;
    for _ in 0..5 {
        let r = gw.get("/down").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.origin(), Some("a"));
    }
    let failed = [("plugin", "http-logger"), ("result", "failed")];
    eventually("5 entries dropped after their retries", WAIT, || async {
        gw.scrape()
            .await
            .count("sluice_log_sink_entries_total", &failed)
            >= 5.0
    })
    .await;
    let m = gw.scrape().await;
    assert_eq!(m.count("sluice_log_sink_entries_total", &failed), 5.0);
    let delivered = [("plugin", "http-logger"), ("result", "delivered")];
    assert_eq!(m.count("sluice_log_sink_entries_total", &delivered), 0.0);
    assert_eq!(
        m.count(
            "sluice_http_requests_total",
            &[("route", "down"), ("code", "2xx")]
        ),
        5.0
    );
    gw.wait_for_log("log batch dropped", WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_logger_writes_one_json_line_per_request_inside_the_log_directory() {
    let a = origin("a").start();
    let builder = gateway();
    let dir = builder.root().join("plugin-logs");
    let gw = builder.arg("--plugin-log-dir").arg(&dir).start().await;
    gw.route_to(
        "f",
        "/f",
        &a,
        json!({"file-logger": {"path": "routes/f.log"}}),
    )
    .await;
    for i in 0..4 {
        assert_eq!(gw.get(&format!("/f?n={i}")).await.status, 200);
    }
    let got = expect_lines(&dir.join("routes/f.log"), 4).await;
    for (i, line) in got.iter().enumerate() {
        let e = json_line(line);
        assert_eq!(e["request"]["querystring"]["n"], i.to_string());
        assert_eq!(e["route_id"], "f");
        assert_eq!(e["response"]["status"], 200);
    }

    for path in ["../escape.log", "/tmp/abs.log"] {
        let r = gw
            .admin()
            .put(
                "routes",
                "bad",
                json!({"uri": "/bad", "upstream": upstream(&[&a]), "plugins": {"file-logger": {"path": path}}}),
            )
            .await;
        assert_eq!(r.status, 400, "{path}: {}", r.text);
        assert!(r.text.contains("path"), "{}", r.text);
    }
    assert!(!builder_root_has(&gw, "escape.log"));
}

/// Whether a file named `name` exists next to the plugin log directory (where `..` would have led).
fn builder_root_has(gw: &Gateway, name: &str) -> bool {
    gw.root().join(name).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_log_entries_are_delivered_when_the_gateway_stops() {
    let a = origin("a").start();
    let logs = collector();
    let mut gw = gateway().start().await;
    let logger = json!({"http-logger": {
        "uri": logs.url("/late"), "batch_max_size": 100, "inactive_timeout": 600, "buffer_duration": 600,
    }});
    gw.route_to("late", "/late", &a, logger).await;
    for _ in 0..3 {
        assert_eq!(gw.get("/late").await.status, 200);
    }
    assert!(
        logs.posts().is_empty(),
        "nothing is due before the batch fills or times out"
    );
    gw.terminate();
    assert!(gw.wait_exit(WAIT).await.success());
    assert_eq!(batches(&logs).iter().map(Vec::len).collect::<Vec<_>>(), [3]);
}
