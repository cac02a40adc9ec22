//! Upstream health checks (`checks.active`, `checks.passive`) and idempotency-aware retries, through the real
//! binary: nodes that die, come back and return 500s, and what the admin endpoint shows about them.

use futures_util::future::join_all;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use support::*;

/// Health of node `node` of the named upstream as the admin endpoint reports it (`None`: not listed yet).
async fn node_status(gw: &Gateway, upstream: &str, node: &str) -> Option<String> {
    let r = gw.admin().get(&format!("healthcheck/{upstream}")).await;
    r.json["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["node"] == node)
        .and_then(|n| n["status"].as_str().map(str::to_string))
}

/// Polls until `node` reaches `want`; returns how long that took.
async fn time_until(gw: &Gateway, upstream: &str, node: &str, want: &str) -> Duration {
    let start = Instant::now();
    eventually(
        &format!("{upstream} {node} becomes {want}"),
        Duration::from_secs(20),
        || async { node_status(gw, upstream, node).await.as_deref() == Some(want) },
    )
    .await;
    start.elapsed()
}

/// `upstreams/web` in the metrics: [nodes, unhealthy nodes, transitions to unhealthy, to healthy].
async fn health_figures(gw: &Gateway) -> [f64; 4] {
    let m = gw.scrape().await;
    let web = [("upstream", "upstreams/web")];
    let to = |state| [("upstream", "upstreams/web"), ("to", state)];
    [
        m.count("sluice_upstream_nodes", &web),
        m.count("sluice_upstream_unhealthy_nodes", &web),
        m.count("sluice_upstream_health_transitions_total", &to("unhealthy")),
        m.count("sluice_upstream_health_transitions_total", &to("healthy")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_checks_remove_a_dead_node_and_restore_it() {
    let a = origin("a").start();
    let b = origin("b").start();
    let gw = gateway().wait_for_listener("metrics").start().await;
    let (interval, tcp_failures, successes) = (1u32, 2u32, 2u32);
    gw.put_ok(
        "upstreams",
        "web",
        json!({"nodes": nodes(&[&a, &b]), "retries": 0, "checks": {"active": {
            "type": "http", "http_path": "/health", "timeout": 1,
            "healthy": {"interval": interval, "successes": successes},
            "unhealthy": {"interval": interval, "tcp_failures": tcp_failures, "http_failures": 2}}}}),
    )
    .await;
    gw.put_ok("routes", "1", json!({"uri": "/h", "upstream_id": "web"}))
        .await;
    let b_node = b.node();
    let b_addr = b.addr();
    eventually("the checker probes b", Duration::from_secs(10), || async {
        b.requests().iter().any(|r| r.path == "/health")
    })
    .await;
    assert_eq!(
        node_status(&gw, "upstreams/web", &b_node).await.as_deref(),
        Some("healthy")
    );

    drop(b);
    let detection = time_until(&gw, "upstreams/web", &b_node, "unhealthy").await;
    let bound = Duration::from_secs(u64::from(interval * tcp_failures + interval));
    println!("active check: dead node detected after {detection:?} (bound interval x tcp_failures + interval = {bound:?})");
    // Two seconds of slack for a loaded machine: polling and scheduling, not the checker.
    assert!(
        detection <= bound + Duration::from_secs(2),
        "took {detection:?}"
    );
    gw.wait_for_log("upstream node marked unhealthy", Duration::from_secs(5))
        .await;
    assert_eq!(health_figures(&gw).await, [2.0, 1.0, 1.0, 0.0]);

    // With retries 0 a pick of the dead node would be a 502: every request reaching `a` shows it is skipped.
    for _ in 0..20 {
        assert_eq!(gw.get("/h").await.hit(), (200, Some("a")));
    }
    let report = gw.admin().get("healthcheck").await;
    let listed = report.json.as_array().expect("a list");
    assert_eq!(listed.len(), 1, "{}", report.text);
    assert_eq!(listed[0]["name"], "upstreams/web");
    assert_eq!(listed[0]["type"], "http");
    let dead = listed[0]["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["node"] == b_node.as_str()))
        .expect("b listed");
    assert_eq!(dead["last_check"]["result"], "tcp_failure", "{dead}");
    assert_eq!(dead["last_check"]["source"], "active", "{dead}");

    let b = origin("b").start_at(b_addr);
    let recovery = time_until(&gw, "upstreams/web", &b_node, "healthy").await;
    println!("active check: node restored after {recovery:?} ({successes} successes, interval {interval} s)");
    assert!(
        recovery
            <= Duration::from_secs(u64::from(interval * successes + interval))
                + Duration::from_secs(2),
        "took {recovery:?}"
    );
    gw.wait_for_log("upstream node healthy again", Duration::from_secs(5))
        .await;
    assert_eq!(health_figures(&gw).await, [2.0, 0.0, 1.0, 1.0]);
    let mut seen_b = false;
    for _ in 0..10 {
        let r = gw.get("/h").await;
        assert_eq!(r.status, 200);
        seen_b |= r.origin() == Some("b");
    }
    assert!(seen_b, "b gets traffic again");
    assert!(b.request_count() > 0);

    // The endpoint sits behind the admin key, and unknown upstreams are a 404.
    assert_eq!(
        gw.admin().with_key(None).get("healthcheck").await.status,
        401
    );
    assert_eq!(
        gw.admin().get("healthcheck/upstreams/nope").await.status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_http_checks_mark_a_node_returning_500_unhealthy() {
    let a = origin("a").start();
    let b = origin("b").start();
    let gw = gateway().start().await;
    gw.put_ok(
        "routes",
        "1",
        json!({"uri": "/h", "upstream": {"nodes": nodes(&[&a, &b]), "checks": {"active": {
            "http_path": "/status", "host": "probe.test", "req_headers": ["X-Probe: 1"],
            "healthy": {"interval": 0.5, "successes": 1},
            "unhealthy": {"interval": 0.5, "http_failures": 2}}}}}),
    )
    .await;
    b.set_status(500);
    time_until(&gw, "routes/1", &b.node(), "unhealthy").await;
    let probe = b
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.path == "/status")
        .expect("probed");
    assert_eq!(probe.header("host"), Some("probe.test"));
    assert_eq!(probe.header("x-probe"), Some("1"));
    b.set_status(200);
    time_until(&gw, "routes/1", &b.node(), "healthy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_checker_per_upstream_stopped_when_the_upstream_goes() {
    let a = origin("a").start();
    let gw = gateway().start().await;
    gw.put_ok(
        "upstreams",
        "web",
        json!({"nodes": nodes(&[&a]), "checks": {"active": {"http_path": "/hc",
            "healthy": {"interval": 1}, "unhealthy": {"interval": 1}}}}),
    )
    .await;
    for id in ["1", "2", "3"] {
        gw.put_ok(
            "routes",
            id,
            json!({"uri": format!("/r{id}"), "upstream_id": "web"}),
        )
        .await;
    }
    let probes = || a.requests().iter().filter(|r| r.path == "/hc").count();
    eventually("first probe", Duration::from_secs(10), || async {
        probes() > 0
    })
    .await;
    // Unrelated writes rebuild the snapshot but reuse the unchanged upstream and its checker.
    let before = probes();
    for i in 0..5 {
        gw.put_ok(
            "routes",
            "other",
            json!({"uri": format!("/o{i}"), "upstream": upstream(&[&a])}),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let in_3s = probes() - before;
    println!("probes in 3 s at interval 1 s with 3 routes on the upstream: {in_3s}");
    // One checker probes at most 4 times in 3 s (one may be due right away); three would probe ~9 times.
    assert!((1..=4).contains(&in_3s), "{in_3s} probes in 3 s");

    for id in ["1", "2", "3"] {
        gw.admin().delete("routes", id).await.ok();
    }
    gw.admin().delete("upstreams", "web").await.ok();
    // Let a probe already under way finish, then no more may come.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after_delete = probes();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        probes(),
        after_delete,
        "the checker stopped with its upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_probes_verify_the_node_certificate_unless_told_not_to() {
    let id = support::tls::self_signed(&["localhost"], support::tls::KeyKind::Ecdsa);
    let o = origin("tls").tls(&id).start();
    let gw = gateway().start().await;
    let up = |verify: bool| {
        json!({"scheme": "https", "tls": {"verify": false}, "nodes": nodes(&[&o]),
            "checks": {"active": {"type": "https", "http_path": "/tls-hc", "https_verify_certificate": verify,
                "healthy": {"interval": 0.5}, "unhealthy": {"interval": 0.5, "tcp_failures": 1}}}})
    };
    gw.put_ok("upstreams", "s", up(false)).await;
    eventually(
        "an https probe arrives",
        Duration::from_secs(10),
        || async { o.requests().iter().any(|r| r.path == "/tls-hc") },
    )
    .await;
    assert_eq!(
        node_status(&gw, "upstreams/s", &o.node()).await.as_deref(),
        Some("healthy")
    );
    // The self-signed certificate fails verification: the probe fails its handshake.
    gw.put_ok("upstreams", "s", up(true)).await;
    time_until(&gw, "upstreams/s", &o.node(), "unhealthy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_checks_remove_a_node_returning_500s() {
    let a = origin("a").start();
    let b = origin("b").status(500).start();
    let gw = gateway().start().await;
    gw.put_ok(
        "upstreams",
        "web",
        json!({"nodes": nodes(&[&a, &b]), "retries": 0, "checks": {"passive": {
            "unhealthy": {"http_statuses": [500], "http_failures": 3}}}}),
    )
    .await;
    gw.put_ok("routes", "1", json!({"uri": "/p", "upstream_id": "web"}))
        .await;
    let mut errors = 0;
    for _ in 0..30 {
        let r = gw.get("/p").await;
        if r.status == 500 {
            errors += 1;
        }
    }
    println!("passive check: {errors} client-visible 500s before the node was removed");
    assert_eq!(
        errors, 3,
        "exactly http_failures 500s reach clients, then b is skipped"
    );
    assert_eq!(b.request_count(), 3);
    let report = gw.admin().get("healthcheck/upstreams/web").await.ok();
    let node = report.json["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["node"] == b.node().as_str()))
        .cloned()
        .expect("b listed");
    assert_eq!(node["status"], "unhealthy", "{node}");
    assert_eq!(node["last_check"]["source"], "passive", "{node}");
    assert_eq!(node["last_check"]["status"], 500, "{node}");
    assert_eq!(report.json["active"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_failures_when_one_of_three_nodes_dies_under_load() {
    let a = origin("a").start();
    let b = origin("b").start();
    let c = origin("c").start();
    let gw = gateway().start().await;
    gw.put_ok(
        "routes",
        "1",
        json!({"uri": "/l", "upstream": {"nodes": nodes(&[&a, &b, &c]), "retries": 2,
            "timeout": {"connect": 2, "send": 5, "read": 5},
            "checks": {"active": {"type": "tcp", "healthy": {"interval": 1}, "unhealthy": {"interval": 1, "tcp_failures": 2}},
                       "passive": {"unhealthy": {"tcp_failures": 1}}}}}),
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
            let http = client();
            let url = gw.url("/l");
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    sent.fetch_add(1, Ordering::SeqCst);
                    // Slow enough that requests are in flight on c when it dies.
                    let ok = matches!(
                        http.get(&url).header("x-delay-ms", "20").send().await,
                        Ok(r) if r.status() == 200
                    );
                    if !ok {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let c_node = c.node();
    eventually(
        "requests in flight on c",
        Duration::from_secs(5),
        || async { c.active() > 0 },
    )
    .await;
    drop(c);
    let detection = time_until(&gw, "routes/1", &c_node, "unhealthy").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    join_all(workers).await;
    let (sent, failed) = (sent.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    let resent = gw
        .logs()
        .matches("re-sending it (no body) to another node")
        .count();
    println!("node loss under load: {failed} client-visible failures out of {sent} requests ({resent} in-flight requests re-sent); dead node out after {detection:?}");
    assert!(sent > 50, "steady load: only {sent} requests");
    assert_eq!(failed, 0, "{failed} of {sent} requests failed");
    assert!(a.request_count() > 0 && b.request_count() > 0);
}

/// Accepts connections, reads each request's head and hangs up without answering: the request was sent.
struct Hangup {
    addr: std::net::SocketAddr,
    arrivals: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hangup {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hangup() -> Hangup {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let arrivals = Arc::new(AtomicUsize::new(0));
    let count = arrivals.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    Hangup {
        addr,
        arrivals,
        task,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_is_not_retried_after_being_sent() {
    let (x, y) = (hangup().await, hangup().await);
    let gw = gateway().start().await;
    let up = |extra: Value| {
        let mut u = json!({"nodes": {x.addr.to_string(): 1, y.addr.to_string(): 1}, "retries": 1,
            "keepalive_pool": {"size": 1, "idle_timeout": 0.001, "requests": 1}});
        if let (Some(u), Some(e)) = (u.as_object_mut(), extra.as_object()) {
            u.extend(e.clone());
        }
        u
    };
    gw.put_ok(
        "routes",
        "1",
        json!({"uri": "/w", "upstream": up(json!({}))}),
    )
    .await;
    let arrivals = || x.arrivals.load(Ordering::SeqCst) + y.arrivals.load(Ordering::SeqCst);

    for (method, body) in [
        (reqwest::Method::POST, "payload"),
        (reqwest::Method::POST, ""),
        (reqwest::Method::PATCH, ""),
    ] {
        let before = arrivals();
        let r = send(gw.request(method.clone(), "/w").body(body)).await;
        assert_eq!(r.status, 502, "{method}");
        // Give a wrongly re-sent copy time to arrive before counting.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            arrivals() - before,
            1,
            "{method} {body:?} was sent once, never re-sent"
        );
    }

    // A bodiless GET is idempotent: re-sent to the other node after the first hung up.
    let before = arrivals();
    assert_eq!(gw.get("/w").await.status, 502);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(arrivals() - before, 2, "GET re-sent once (retries: 1)");

    // The opt-in re-sends a bodiless POST too.
    gw.put_ok(
        "routes",
        "1",
        json!({"uri": "/w", "upstream": up(json!({"retry_non_idempotent": true}))}),
    )
    .await;
    let before = arrivals();
    assert_eq!(
        send(gw.request(reqwest::Method::POST, "/w")).await.status,
        502
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        arrivals() - before,
        2,
        "POST re-sent with retry_non_idempotent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_checks_are_rejected_naming_the_field() {
    let a = origin("a").start();
    let gw = gateway().start().await;
    for (checks, field) in [
        (
            json!({"active": {"healthy": {"interval": -1}}}),
            "checks.active.healthy.interval",
        ),
        (json!({"active": {"type": "udp"}}), "type"),
        (
            json!({"passive": {"unhealthy": {"http_statuses": [700]}}}),
            "700",
        ),
        (
            json!({"active": {"concurrency": 0}}),
            "checks.active.concurrency",
        ),
    ] {
        let r = gw
            .admin()
            .put(
                "upstreams",
                "u",
                json!({"nodes": nodes(&[&a]), "checks": checks}),
            )
            .await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert!(
            r.error_msg().unwrap_or("").contains(field),
            "{field}: {}",
            r.text
        );
    }
}
