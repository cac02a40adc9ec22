//! `limit-count` and `limit-req` with `policy: "redis"` / `"redis-cluster"` against a real `redis-server`:
//! one limit for every node, exact under concurrent load, and with Redis gone or hung the answer follows
//! `allow_degradation` within `redis_timeout`.

use support::*;

/// `n` gateways with the same route `1` on `/limited` (sled stores: only the counters are shared).
async fn nodes_with(n: usize, a: &Origin, plugins: Value) -> Vec<Gateway> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let gw = gateway().start().await;
        gw.route_to("1", "/limited", a, plugins.clone()).await;
        out.push(gw);
    }
    out
}

/// APISIX's `policy: "redis"` fields for this server.
fn on_redis(redis: &Redis, extra: Value) -> Value {
    let mut conf = json!({
        "policy": "redis",
        "redis_host": "127.0.0.1",
        "redis_port": redis.port(),
        "redis_password": "s3cret",
        "redis_database": 3,
        "redis_timeout": 500,
    });
    if let (Some(c), Some(e)) = (conf.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    conf
}

/// GETs `path` on `gw`: the status and how long the answer took.
async fn timed(gw: &Gateway, path: &str) -> (u16, Duration) {
    let start = Instant::now();
    let status = gw.get(path).await.status;
    (status, start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_sharing_a_limit_count_of_100_let_exactly_100_through() {
    let redis = Redis::start(Some("s3cret")).await;
    let a = origin("a").start();
    let limit = on_redis(&redis, json!({"count": 100, "time_window": 60}));
    let gws = nodes_with(2, &a, json!({"limit-count": limit})).await;

    // 10 clients, 30 requests each, alternating between the nodes, all racing for the same 100 slots.
    let urls: Vec<String> = gws.iter().map(|g| g.url("/limited")).collect();
    let clients: Vec<_> = (0..10)
        .map(|c| {
            let (http, urls) = (client(), urls.clone());
            tokio::spawn(async move {
                let mut got = Vec::new();
                for i in 0..30 {
                    got.push(send(http.get(&urls[(c + i) % 2])).await);
                }
                got
            })
        })
        .collect();
    let mut responses = Vec::new();
    for c in clients {
        responses.extend(c.await.expect("client task"));
    }
    let ok = responses.iter().filter(|r| r.status == 200).count();
    let limited = responses.iter().filter(|r| r.status == 503).count();
    assert_eq!(
        (ok, limited),
        (100, 200),
        "exactly the shared quota succeeds"
    );
    assert_eq!(a.request_count(), 100);
    let remaining: Vec<u64> = responses
        .iter()
        .filter(|r| r.status == 200)
        .filter_map(|r| r.header("x-ratelimit-remaining")?.parse().ok())
        .collect();
    let mut sorted = remaining.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..100).collect::<Vec<u64>>(),
        "every accepted request saw its own place in the one count"
    );
    // The count lives in the configured database, under the plugin's namespace.
    let keys = redis.command_in(3, &["KEYS", "sluice/limit-count/*"]);
    assert!(keys.starts_with("*1\r\n"), "{keys}");
    assert_eq!(
        redis.command(&["DBSIZE"]),
        ":0\r\n",
        "nothing in database 0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_req_through_redis_drains_one_bucket_for_both_nodes() {
    let redis = Redis::start(Some("s3cret")).await;
    let a = origin("a").start();
    let limit = on_redis(&redis, json!({"rate": 1, "burst": 0, "key": "remote_addr"}));
    let gws = nodes_with(2, &a, json!({"limit-req": limit})).await;
    assert_eq!(gws[0].get("/limited").await.status, 200);
    assert_eq!(
        gws[1].get("/limited").await.status,
        503,
        "the other node sees the same bucket, already full"
    );
    assert_eq!(a.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_or_hung_the_answer_follows_allow_degradation_within_redis_timeout() {
    let mut redis = Redis::start(Some("s3cret")).await;
    let a = origin("a").start();
    let gw = gateway().start().await;
    let strict = on_redis(&redis, json!({"count": 2, "time_window": 60}));
    let lenient = on_redis(
        &redis,
        json!({"count": 2, "time_window": 60, "allow_degradation": true}),
    );
    gw.route_to("s", "/strict", &a, json!({"limit-count": strict}))
        .await;
    gw.route_to("l", "/lenient", &a, json!({"limit-count": lenient}))
        .await;
    assert_eq!(gw.get("/strict").await.status, 200);
    assert_eq!(gw.get("/lenient").await.status, 200);
    // What "never hangs" means here: the 500 ms redis_timeout plus the gateway's own work on a busy machine.
    let bound = Duration::from_millis(500) + Duration::from_millis(1500);

    // Hung: the connection is open, nothing answers.
    redis.pause();
    let (status, took) = timed(&gw, "/strict").await;
    assert_eq!(status, 500, "fail closed without allow_degradation");
    assert!(took < bound, "answered after {took:?}");
    assert!(
        took >= Duration::from_millis(400),
        "it did wait for Redis ({took:?})"
    );
    // Degraded: counted on this node alone, so the limit of 2 still holds here.
    let lenient_answers = [
        timed(&gw, "/lenient").await,
        timed(&gw, "/lenient").await,
        timed(&gw, "/lenient").await,
    ];
    assert_eq!(
        lenient_answers.map(|(s, _)| s),
        [200, 200, 503],
        "counted locally"
    );
    for (_, took) in lenient_answers {
        assert!(took < bound, "answered after {took:?}");
    }
    gw.wait_for_log("counting on this gateway only", Duration::from_secs(5))
        .await;

    // Gone: connections are refused.
    redis.resume();
    redis.kill();
    let (status, took) = timed(&gw, "/strict").await;
    assert_eq!(status, 500);
    assert!(took < bound, "answered after {took:?}");
    assert_eq!(timed(&gw, "/lenient").await.0, 503, "still counted locally");

    // Back (empty: nothing persisted): the shared count starts again.
    redis.restart().await;
    eventually(
        "the strict route counts in Redis again",
        Duration::from_secs(10),
        || async { gw.get("/strict").await.status == 200 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_policy_shares_the_count_between_nodes() {
    let redis = Redis::start_cluster(None).await;
    let a = origin("a").start();
    let limit = json!({
        "count": 3,
        "time_window": 60,
        "policy": "redis-cluster",
        "redis_cluster_nodes": [redis.node()],
        "redis_cluster_name": "test",
        "redis_timeout": 1000,
    });
    let gws = nodes_with(2, &a, json!({"limit-count": limit})).await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        statuses.push(gws[i % 2].get("/limited").await.status);
    }
    assert_eq!(statuses, [200, 200, 200, 503, 503, 503]);
}
