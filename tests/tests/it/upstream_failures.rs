//! Upstream failures: read and connect timeouts → 504, failed connects retried on the next node, `retries`
//! honoured, 502 when every node fails, origin errors passed through untouched.

use support::*;

async fn route(gw: &Gateway, up: Value) {
    gw.put_ok("routes", "1", json!({"uri": "/f", "upstream": up}))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_timeout_gives_504() {
    let o = origin("slow").delay(Duration::from_secs(3)).start();
    let gw = gateway().start().await;
    route(
        &gw,
        json!({"nodes": nodes(&[&o]), "timeout": {"connect": 1, "send": 1, "read": 0.5}}),
    )
    .await;
    let t = Instant::now();
    let r = gw.get("/f").await;
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "took {:?}; read timeout is 0.5 s",
        t.elapsed()
    );
    assert!(
        t.elapsed() >= Duration::from_millis(450),
        "gave up too early: {:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_within_read_timeout_is_served() {
    let o = origin("ok").delay(Duration::from_millis(200)).start();
    let gw = gateway().start().await;
    route(
        &gw,
        json!({"nodes": nodes(&[&o]), "timeout": {"connect": 1, "send": 1, "read": 2}}),
    )
    .await;
    assert_eq!(gw.get("/f").await.hit(), (200, Some("ok")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_timeout_applies_between_reads_not_to_the_whole_body() {
    // As nginx's proxy_read_timeout (APISIX `timeout.read`): a body that keeps arriving is not cut off.
    let o = origin("drip").start();
    let gw = gateway().start().await;
    route(
        &gw,
        json!({"nodes": nodes(&[&o]), "timeout": {"connect": 1, "send": 1, "read": 1}}),
    )
    .await;
    let r = send(
        gw.request(reqwest::Method::GET, "/f")
            .header("x-drip", "8:250"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text().lines().count(), 8, "whole body: {:?}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_gives_504() {
    let hole = blackhole().await;
    let gw = gateway().start().await;
    route(
        &gw,
        json!({"nodes": {hole.node(): 1}, "retries": 0, "timeout": {"connect": 0.3, "send": 1, "read": 5}}),
    )
    .await;
    let t = Instant::now();
    let r = gw.get("/f").await;
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}; connect timeout is 0.3 s",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_moves_to_the_next_node() {
    let hole = blackhole().await;
    let live = origin("live").start();
    let gw = gateway().start().await;
    let up = json!({"nodes": {hole.node(): 1, live.node(): 1}, "retries": 1,
                    "timeout": {"connect": 0.2, "send": 1, "read": 5}});
    route(&gw, up).await;
    for i in 0..6 {
        let r = gw.get("/f").await;
        assert_eq!(r.hit(), (200, Some("live")), "request {i}: {}", r.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connect_is_retried_on_another_node() {
    let live = origin("live").start();
    let gw = gateway().start().await;
    let up = json!({"nodes": {closed_port().to_string(): 1, live.node(): 1}, "retries": 1});
    route(&gw, up).await;
    for i in 0..20 {
        let r = gw.get("/f").await;
        assert_eq!(r.hit(), (200, Some("live")), "request {i}: {}", r.text());
    }
    assert_eq!(live.request_count(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_retries_cover_every_node() {
    // APISIX: without `retries`, a failed connect is retried on each of the other nodes.
    let live = origin("live").start();
    let gw = gateway().start().await;
    let nodes = json!({closed_port().to_string(): 1, closed_port().to_string(): 1, live.node(): 1});
    route(&gw, json!({"nodes": nodes})).await;
    for i in 0..9 {
        assert_eq!(gw.get("/f").await.hit(), (200, Some("live")), "request {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_zero_does_not_retry() {
    let live = origin("live").start();
    let gw = gateway().start().await;
    route(
        &gw,
        json!({"nodes": {closed_port().to_string(): 1, live.node(): 1}, "retries": 0}),
    )
    .await;
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(gw.get("/f").await.status);
    }
    assert!(
        statuses.contains(&502),
        "some requests hit the dead node and fail: {statuses:?}"
    );
    assert!(
        statuses.contains(&200),
        "the others are served: {statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_nodes_down_gives_502_with_a_body() {
    let gw = gateway().start().await;
    route(
        &gw,
        json!({"nodes": {closed_port().to_string(): 1, closed_port().to_string(): 1}}),
    )
    .await;
    let t = Instant::now();
    let r = gw.get("/f").await;
    assert_eq!(r.status, 502);
    assert!(!r.body.is_empty(), "502 explains itself");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "refused connects fail fast: {:?}",
        t.elapsed()
    );
    assert_eq!(gw.get("/f").await.status, 502, "and again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_coming_back_is_used_again() {
    let gw = gateway().start().await;
    let dead = closed_port();
    route(&gw, json!({"nodes": {dead.to_string(): 1}})).await;
    assert_eq!(gw.get("/f").await.status, 502);
    let o = origin("back").start();
    route(&gw, json!({"nodes": nodes(&[&o])})).await;
    eventually("the new node serves", Duration::from_secs(1), || async {
        gw.get("/f").await.hit() == (200, Some("back"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_error_statuses_pass_through_unretried() {
    let (a, b) = (
        origin("a").status(500).body("boom").start(),
        origin("b").status(500).body("boom").start(),
    );
    let gw = gateway().start().await;
    route(&gw, json!({"nodes": nodes(&[&a, &b]), "retries": 1})).await;
    let r = gw.get("/f").await;
    assert_eq!((r.status, r.text().as_str()), (500, "boom"));
    assert_eq!(
        a.request_count() + b.request_count(),
        1,
        "an HTTP answer is not a connect failure"
    );
    let r = send(
        gw.request(reqwest::Method::GET, "/f")
            .header("x-status", "404"),
    )
    .await;
    assert_eq!(r.status, 404, "origin 404 passes through");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_on_one_route_leaves_others_fast() {
    let slow = origin("slow").delay(Duration::from_secs(2)).start();
    let fast = origin("fast").start();
    let gw = gateway().start().await;
    gw.put_ok(
        "routes",
        "slow",
        json!({"uri": "/slow", "upstream":
        {"nodes": nodes(&[&slow]), "timeout": {"connect": 1, "send": 1, "read": 1}}}),
    )
    .await;
    gw.put_ok(
        "routes",
        "fast",
        json!({"uri": "/fast", "upstream": upstream(&[&fast])}),
    )
    .await;
    let stuck = tokio::spawn({
        let rb = gw.request(reqwest::Method::GET, "/slow");
        async move { send(rb).await.status }
    });
    slow.wait_for_arrivals(1, Duration::from_secs(2)).await;
    let t = Instant::now();
    assert_eq!(gw.get("/fast").await.hit(), (200, Some("fast")));
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "blocked by the slow route: {:?}",
        t.elapsed()
    );
    assert_eq!(stuck.await.unwrap(), 504);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_timeout_bounds_the_time_spent_retrying() {
    let holes = [blackhole().await, blackhole().await, blackhole().await];
    let gw = gateway().start().await;
    let nodes: serde_json::Map<String, Value> =
        holes.iter().map(|h| (h.node(), json!(1))).collect();
    let up = json!({"nodes": nodes, "retries": 2, "retry_timeout": 0.3,
                    "timeout": {"connect": 0.5, "send": 1, "read": 1}});
    route(&gw, up).await;
    let t = Instant::now();
    let r = gw.get("/f").await;
    assert!(
        r.status == 502 || r.status == 504,
        "{} {}",
        r.status,
        r.text()
    );
    assert!(
        t.elapsed() < Duration::from_millis(1300),
        "3 tries × 0.5 s ran despite retry_timeout 0.3: {:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_closing_connections_is_not_an_error() {
    let once = origin("once").no_keepalive().start();
    let idle = origin("idle")
        .idle_close(Duration::from_millis(150))
        .start();
    let gw = gateway().start().await;
    gw.put_ok(
        "routes",
        "once",
        json!({"uri": "/once", "upstream": upstream(&[&once])}),
    )
    .await;
    gw.put_ok(
        "routes",
        "idle",
        json!({"uri": "/idle", "upstream": upstream(&[&idle])}),
    )
    .await;
    for i in 0..30 {
        assert_eq!(
            gw.get("/once").await.hit(),
            (200, Some("once")),
            "request {i}"
        );
    }
    assert_eq!(once.connections(), 30);
    for i in 0..4 {
        tokio::time::sleep(Duration::from_millis(300)).await; // the origin has closed the pooled connection
        assert_eq!(
            gw.get("/idle").await.hit(),
            (200, Some("idle")),
            "request {i} after idle close"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_balancer_retries_a_refused_node() {
    let live = origin("live").start();
    let gw = gateway().start().await;
    let dead = closed_port().to_string();
    let mut wrong = Vec::new();
    for kind in ["roundrobin", "chash", "least_conn", "ewma"] {
        let mut up =
            json!({"type": kind, "nodes": {dead.clone(): 1, live.node(): 1}, "retries": 1});
        if kind == "chash" {
            up["hash_on"] = json!("vars");
            up["key"] = json!("arg_k");
        }
        gw.put_ok(
            "routes",
            kind,
            json!({"uri": format!("/{kind}"), "upstream": up}),
        )
        .await;
        for i in 0..12 {
            let r = gw.get(&format!("/{kind}?k=key{i}")).await;
            if r.hit() != (200, Some("live")) {
                wrong.push(format!("{kind} key{i}: {} {}", r.status, r.text()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "not retried on the live node:\n{}",
        wrong.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_requests_still_carry_their_body() {
    let live = origin("live").start();
    let gw = gateway().start().await;
    route(
        &gw,
        json!({"nodes": {closed_port().to_string(): 1, live.node(): 1}, "retries": 1}),
    )
    .await;
    for i in 0..6 {
        let fixed = send(
            gw.request(reqwest::Method::POST, "/f")
                .body(vec![b'x'; 100_000]),
        )
        .await;
        assert_eq!(fixed.hit(), (200, Some("live")), "request {i}");
        assert_eq!(
            live.last().unwrap().body_len,
            100_000,
            "request {i}: body with Content-Length"
        );
        let streamed = reqwest::Body::wrap_stream(pattern_stream::<std::io::Error>(70_000));
        let r = send(gw.request(reqwest::Method::POST, "/f").body(streamed)).await;
        assert_eq!(r.hit(), (200, Some("live")), "request {i} (chunked)");
        let rec = live.last().unwrap();
        assert_eq!(
            (rec.body_len, rec.body_intact),
            (70_000, true),
            "request {i}: chunked body"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_without_usable_nodes_fails_cleanly() {
    let gw = gateway().start().await;
    let o = origin("a").start();
    let zero = json!({o.node(): 0});
    for (id, nodes) in [("empty", json!({})), ("zero", zero)] {
        let r = gw
            .admin()
            .put(
                "routes",
                id,
                json!({"uri": format!("/{id}"), "upstream": {"nodes": nodes}}),
            )
            .await;
        if !r.is_success() {
            assert_eq!(
                r.status, 400,
                "{id}: rejected at write time is fine: {}",
                r.text
            );
            continue;
        }
        let r = gw.get(&format!("/{id}")).await;
        assert!(
            [502, 503].contains(&r.status),
            "{id}: {} {}",
            r.status,
            r.text()
        );
    }
    assert_eq!(o.request_count(), 0);
    assert_eq!(
        gw.get("/nothing").await.status,
        404,
        "gateway still healthy"
    );
}

/// A TCP server that answers every connection with `reply` (raw bytes) and closes it.
async fn raw_server(reply: &'static [u8]) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(reply).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_upstream_responses_are_502() {
    let gw = gateway().start().await;
    let (garbage, g) = raw_server(b"this is not http\r\n\r\n").await;
    let (silent, s) = raw_server(b"").await;
    for (what, addr) in [("garbage", garbage), ("closed without answering", silent)] {
        route(&gw, json!({"nodes": {addr.to_string(): 1}, "retries": 0})).await;
        let r = gw.get("/f").await;
        assert_eq!(r.status, 502, "{what}: {}", r.text());
    }
    g.abort();
    s.abort();
    assert_eq!(
        gw.get("/nothing").await.status,
        404,
        "gateway still healthy"
    );
}

/// An upstream that accepts the connection but never reads: the request body stalls inside the
/// gateway's writes, where nothing polls the body, and `timeout.send` must still end the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_stops_reading_the_body_gets_a_504_after_the_send_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().take(2).flatten().collect();
        std::thread::sleep(Duration::from_secs(30));
        drop(held);
    });
    let gw = gateway().start().await;
    route(
        &gw,
        json!({"nodes": {addr.to_string(): 1}, "retries": 0,
               "timeout": {"connect": 1, "send": 1, "read": 30}}),
    )
    .await;
    let started = Instant::now();
    let body = reqwest::Body::wrap_stream(pattern_stream::<std::io::Error>(256 << 20));
    let outcome = try_send(gw.request(reqwest::Method::POST, "/f").body(body)).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "the request hung for {took:?}"
    );
    if let Ok(r) = outcome {
        assert_eq!(r.status, 504, "{}", r.text());
    }
}
