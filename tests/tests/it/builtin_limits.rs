//! The built-in rate limiters through the real binary and a real upstream: routes name `limit-count`,
//! `limit-req` and `limit-conn` exactly as an APISIX config does (no upload), and the tests check what a
//! client of such a route relies on: the exact quota under concurrency, the quota headers, shared groups,
//! smoothing by delay rather than rejection, concurrency slots given back, and APISIX's config errors.

use support::*;

/// PUT route `id` on `uri` to origin `a` with this `plugins` map.
async fn route(gw: &Gateway, id: &str, uri: &str, a: &Origin, plugins: Value) {
    gw.route_to(id, uri, a, plugins).await;
}

/// `n` requests to `path` at once, each on its own client (own connection); responses with how long each
/// took, in the order the requests were started.
async fn at_once(gw: &Gateway, n: usize, path: &str) -> Vec<(Resp, Duration)> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let rb = client().get(gw.url(path));
            tokio::spawn(async move {
                let start = Instant::now();
                let r = send(rb).await;
                (r, start.elapsed())
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.expect("request task"));
    }
    out
}

fn quota(r: &Resp) -> (Option<&str>, Option<&str>, Option<u64>) {
    (
        r.header("x-ratelimit-limit"),
        r.header("x-ratelimit-remaining"),
        r.header("x-ratelimit-reset").and_then(|v| v.parse().ok()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_count_is_exact_under_concurrent_clients() {
    let a = origin("a").start();
    let gw = gateway().start().await;
    route(
        &gw,
        "1",
        "/counted",
        &a,
        json!({"limit-count": {"count": 100, "time_window": 60}}),
    )
    .await;

    // 10 clients, 25 requests each, all racing for the same 100 slots (same key: the client address).
    let clients: Vec<_> = (0..10)
        .map(|_| {
            let (http, url) = (client(), gw.url("/counted"));
            tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..25 {
                    got.push(send(http.get(&url)).await);
                }
                got
            })
        })
        .collect();
    let mut responses = Vec::new();
    for c in clients {
        responses.extend(c.await.expect("client task"));
    }

    let (ok, rejected): (Vec<_>, Vec<_>) = responses.iter().partition(|r| r.status == 200);
    assert_eq!(ok.len(), 100, "exactly the quota succeeds");
    assert!(
        rejected.iter().all(|r| r.status == 503),
        "the rest get APISIX's default 503"
    );
    assert_eq!(
        a.request_count(),
        100,
        "rejected requests never reach the upstream"
    );

    // Every accepted request saw its own slot: remaining counts 99 down to 0, each exactly once.
    let mut remaining: Vec<u64> = ok
        .iter()
        .map(|r| {
            let (limit, remaining, reset) = quota(r);
            assert_eq!(limit, Some("100"));
            assert!(reset.is_some_and(|s| (1..=60).contains(&s)), "{reset:?}");
            remaining
                .and_then(|v| v.parse().ok())
                .expect("X-RateLimit-Remaining")
        })
        .collect();
    remaining.sort_unstable();
    assert_eq!(remaining, (0..100).collect::<Vec<u64>>());
    for r in &rejected {
        let (limit, remaining, reset) = quota(r);
        assert_eq!((limit, remaining), (Some("100"), Some("0")));
        assert!(reset.is_some_and(|s| (1..=60).contains(&s)), "{reset:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_count_rejects_with_the_configured_answer_until_the_window_resets() {
    let a = origin("a").start();
    let gw = gateway().start().await;
    route(
        &gw,
        "1",
        "/w",
        &a,
        json!({"limit-count": {"count": 2, "time_window": 2, "rejected_code": 429,
            "rejected_msg": "quota exceeded"}}),
    )
    .await;
    assert_eq!(gw.get("/w").await.status, 200);
    assert_eq!(gw.get("/w").await.status, 200);
    let r = gw.get("/w").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json(), json!({"error_msg": "quota exceeded"}));
    let reset = quota(&r).2.expect("X-RateLimit-Reset");
    assert!((1..=2).contains(&reset), "{reset}");

    tokio::time::sleep(Duration::from_secs(reset) + Duration::from_millis(100)).await;
    let r = gw.get("/w").await;
    assert_eq!(r.status, 200, "a new window has the full quota");
    assert_eq!(quota(&r).1, Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_count_group_shares_one_counter_between_routes() {
    let a = origin("a").start();
    let gw = gateway().start().await;
    let grouped = json!({"limit-count": {"count": 3, "time_window": 60, "group": "shared"}});
    route(&gw, "1", "/one", &a, grouped.clone()).await;
    route(&gw, "2", "/two", &a, grouped).await;
    route(
        &gw,
        "3",
        "/three",
        &a,
        json!({"limit-count": {"count": 3, "time_window": 60}}),
    )
    .await;

    let mut statuses = Vec::new();
    for path in [
        "/one", "/two", "/one", "/two", "/three", "/three", "/three", "/three",
    ] {
        statuses.push(gw.get(path).await.status);
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 503, 200, 200, 200, 503],
        "/one and /two draw from one quota of 3, /three has its own"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_count_keys_by_a_request_variable() {
    let a = origin("a").start();
    let gw = gateway().start().await;
    route(
        &gw,
        "1",
        "/k",
        &a,
        json!({"limit-count": {"count": 1, "time_window": 60, "key": "http_x_user"}}),
    )
    .await;
    let as_user =
        |u: &'static str| send(gw.request(reqwest::Method::GET, "/k").header("x-user", u));
    assert_eq!(as_user("ann").await.status, 200);
    assert_eq!(as_user("ann").await.status, 503);
    assert_eq!(as_user("bob").await.status, 200, "each user has a quota");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_req_delays_requests_within_burst_and_rejects_above() {
    let a = origin("a").start();
    let gw = gateway().start().await;
    // 2 per second: each request above the rate waits 500 ms more than the previous; 2 may wait.
    route(
        &gw,
        "1",
        "/smooth",
        &a,
        json!({"limit-req": {"rate": 2, "burst": 2, "key": "remote_addr"}}),
    )
    .await;
    let got = at_once(&gw, 4, "/smooth").await;
    let mut accepted: Vec<Duration> = got
        .iter()
        .filter(|(r, _)| r.status == 200)
        .map(|(_, t)| *t)
        .collect();
    let rejected: Vec<Duration> = got
        .iter()
        .filter(|(r, _)| r.status == 503)
        .map(|(_, t)| *t)
        .collect();
    assert_eq!(
        (accepted.len(), rejected.len()),
        (3, 1),
        "within burst: delayed, not rejected; above it: rejected"
    );
    accepted.sort();
    assert!(
        accepted[1] >= Duration::from_millis(400) && accepted[2] >= Duration::from_millis(900),
        "the burst is spread at the rate: {accepted:?}"
    );
    assert!(
        rejected[0] < accepted[2],
        "a rejection is immediate, not delayed: {rejected:?} vs {accepted:?}"
    );
    assert_eq!(a.request_count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_req_nodelay_passes_the_burst_at_once() {
    let a = origin("a").start();
    let gw = gateway().start().await;
    route(
        &gw,
        "1",
        "/fast",
        &a,
        json!({"limit-req": {"rate": 0.5, "burst": 1, "key": "remote_addr", "nodelay": true,
            "rejected_code": 429, "rejected_msg": "slow down"}}),
    )
    .await;
    let start = Instant::now();
    assert_eq!(gw.get("/fast").await.status, 200);
    assert_eq!(gw.get("/fast").await.status, 200);
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "nodelay: no 2 s wait"
    );
    let r = gw.get("/fast").await;
    assert_eq!(
        (r.status, r.json()),
        (429, json!({"error_msg": "slow down"}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_conn_limits_in_flight_requests_to_a_slow_upstream() {
    let slow = origin("slow").delay(Duration::from_millis(800)).start();
    let gw = gateway().start().await;
    route(
        &gw,
        "1",
        "/slow",
        &slow,
        json!({"limit-conn": {"conn": 2, "burst": 1, "default_conn_delay": 0.3,
            "rejected_code": 429, "key": "remote_addr"}}),
    )
    .await;

    let got = at_once(&gw, 5, "/slow").await;
    let mut ok: Vec<Duration> = got
        .iter()
        .filter(|(r, _)| r.status == 200)
        .map(|(_, t)| *t)
        .collect();
    let rejected: Vec<&Resp> = got
        .iter()
        .filter(|(r, _)| r.status == 429)
        .map(|(r, _)| r)
        .collect();
    assert_eq!(
        (ok.len(), rejected.len()),
        (3, 2),
        "conn + burst in flight, the rest refused"
    );
    ok.sort();
    assert!(
        ok[2] >= Duration::from_millis(800 + 250),
        "the burst request waited default_conn_delay before going upstream: {ok:?}"
    );
    assert_eq!(
        slow.request_count(),
        3,
        "refused requests never reach the upstream"
    );

    // Every slot was given back when its request ended (the log phase runs just after the response is
    // sent, so give it a moment): a new wave gets the same admission.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again = at_once(&gw, 3, "/slow").await;
    assert!(
        again.iter().all(|(r, _)| r.status == 200),
        "slots leak: {:?}",
        again.iter().map(|(r, _)| r.status).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_conn_releases_the_slot_of_a_request_rejected_by_a_later_plugin() {
    // limit-conn (1003) takes a slot, then limit-count (1002) rejects: the slot must still come back.
    let a = origin("a").start();
    let gw = gateway().start().await;
    route(
        &gw,
        "1",
        "/both",
        &a,
        json!({
            "limit-conn": {"conn": 1, "burst": 0, "default_conn_delay": 1},
            "limit-count": {"count": 1, "time_window": 60}
        }),
    )
    .await;
    assert_eq!(gw.get("/both").await.status, 200);
    for _ in 0..3 {
        // The slot comes back in the log phase, just after the response was sent.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = gw.get("/both").await;
        assert_eq!(r.status, 503);
        assert_eq!(
            quota(&r).1,
            Some("0"),
            "rejected by limit-count, not by a leaked limit-conn slot"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configs_are_refused_with_apisix_messages() {
    let a = origin("a").start();
    let gw = gateway().start().await;
    let cases = [
        (
            json!({"limit-count": {"count": 0, "time_window": 60}}),
            r#"property "count" validation failed: expected 0 to be greater than 0"#,
        ),
        (
            json!({"limit-count": {"time_window": 60}}),
            r#"property "count" is required"#,
        ),
        (
            json!({"limit-count": {"count": 1, "time_window": 60, "policy": "redis"}}),
            r#"property "redis_host" is required"#,
        ),
        (
            json!({"limit-conn": {"conn": 1, "burst": 0, "default_conn_delay": 1, "policy": "redis", "redis_host": "127.0.0.1"}}),
            r#"policy "redis" is not available for limit-conn yet"#,
        ),
        (
            json!({"limit-count": {"count": 1, "time_window": 60, "rejected_code": 600}}),
            r#"property "rejected_code" validation failed: expected 600 to be at most 599"#,
        ),
        (
            json!({"limit-req": {"burst": 1, "key": "remote_addr"}}),
            r#"property "rate" is required"#,
        ),
        (
            json!({"limit-req": {"rate": 1, "burst": -1, "key": "remote_addr"}}),
            r#"property "burst" validation failed: expected -1 to be at least 0"#,
        ),
        (
            json!({"limit-conn": {"conn": 1, "burst": 0, "default_conn_delay": 0}}),
            r#"property "default_conn_delay" validation failed: expected 0 to be greater than 0"#,
        ),
        (
            json!({"limit-conn": {"conn": 1, "burst": 0, "default_conn_delay": 1, "key_type": "constant"}}),
            r#"property "key_type" validation failed: matches none of the enum values"#,
        ),
    ];
    for (plugins, want) in cases {
        let r = gw
            .admin()
            .put(
                "routes",
                "bad",
                json!({"uri": "/bad", "upstream": upstream(&[&a]), "plugins": plugins}),
            )
            .await;
        assert_eq!(r.status, 400, "{plugins}: {}", r.text);
        let msg = r.error_msg().unwrap_or_default();
        assert!(msg.contains(want), "{plugins}: got {msg:?}, want {want:?}");
    }
    assert_eq!(
        gw.admin().get("routes/bad").await.status,
        404,
        "nothing was stored"
    );

    let list = gw.admin().get("plugins/list").await.ok();
    for name in ["limit-count", "limit-req", "limit-conn"] {
        assert!(
            list.json
                .as_array()
                .is_some_and(|l| l.iter().any(|n| n == name)),
            "{name} missing from {}",
            list.text
        );
    }
}
