use super::*;
use sluice_builtin_support::testing::{refused, setup};
use sluice_plugin_sdk::testing::{TestConfig, TestHost};
use sluice_plugin_sdk::{kv, Backend, Phase, Redis, RedisNode};

/// One request from `client`: `Ok(delay_ms)` when it goes on, `Err(status)` when rejected.
fn request(host: &TestHost, cfg: &TestConfig<LimitReq>, client: &str) -> Result<u64, u16> {
    host.next_request();
    host.set_client_addr(client.parse().expect("client address"));
    match host.access(cfg) {
        Decision::Continue => Ok(host.delay_ms()),
        Decision::Respond(r) => Err(r.status),
    }
}

const A: &str = "10.0.0.1:1000";
const B: &str = "10.0.0.2:1000";

#[test]
fn requests_within_burst_are_delayed_to_the_rate_and_the_rest_rejected() {
    let (host, cfg) = setup::<LimitReq>(r#"{"rate": 2, "burst": 2, "key": "remote_addr"}"#);
    // At 2/s each request adds half a second of excess; two may wait, the third over the rate is refused.
    assert_eq!(request(&host, &cfg, A), Ok(0));
    assert_eq!(request(&host, &cfg, A), Ok(500));
    assert_eq!(request(&host, &cfg, A), Ok(1000));
    assert_eq!(request(&host, &cfg, A), Err(503));
    assert_eq!(
        request(&host, &cfg, B),
        Ok(0),
        "another key has its own bucket"
    );

    // The bucket leaks at the rate: 250 ms later it holds 1500 milli, one more request is still too many;
    // 750 ms later it holds 500, and a request waits (500 + 1000) / 2 = 750 ms.
    host.advance(Duration::from_millis(250));
    assert_eq!(request(&host, &cfg, A), Err(503));
    host.advance(Duration::from_millis(500));
    assert_eq!(request(&host, &cfg, A), Ok(750));
    // A rejected request does not fill the bucket, an idle key empties it.
    host.advance(Duration::from_secs(10));
    assert_eq!(request(&host, &cfg, A), Ok(0));
}

#[test]
fn nodelay_passes_the_burst_at_once() {
    let (host, cfg) =
        setup::<LimitReq>(r#"{"rate": 1, "burst": 1, "key": "remote_addr", "nodelay": true}"#);
    assert_eq!(request(&host, &cfg, A), Ok(0));
    assert_eq!(request(&host, &cfg, A), Ok(0), "within burst, not delayed");
    assert_eq!(request(&host, &cfg, A), Err(503));
}

#[test]
fn burst_zero_allows_exactly_the_rate() {
    let (host, cfg) = setup::<LimitReq>(
        r#"{"rate": 1, "burst": 0, "key": "remote_addr", "rejected_code": 429, "rejected_msg": "too fast"}"#,
    );
    assert_eq!(host.access(&cfg), Decision::Continue);
    host.next_request();
    let Decision::Respond(r) = host.access(&cfg) else {
        panic!("second request within the second must be rejected")
    };
    assert_eq!(
        (r.status, r.body.as_slice()),
        (429, &br#"{"error_msg":"too fast"}"#[..])
    );
    host.advance(Duration::from_secs(1));
    host.next_request();
    assert_eq!(
        host.access(&cfg),
        Decision::Continue,
        "one second later the bucket has room"
    );
}

#[test]
fn fractional_rate_and_burst_work_in_milli_requests() {
    let (host, cfg) = setup::<LimitReq>(r#"{"rate": 0.5, "burst": 1.5, "key": "remote_addr"}"#);
    assert_eq!(request(&host, &cfg, A), Ok(0));
    assert_eq!(
        request(&host, &cfg, A),
        Ok(2000),
        "1000 milli at 500 milli/s"
    );
    assert_eq!(
        request(&host, &cfg, A),
        Err(503),
        "2000 milli is over a burst of 1500"
    );
}

#[test]
fn bucket_state_expires_only_once_a_new_request_would_start_from_zero() {
    let (host, cfg) = setup::<LimitReq>(r#"{"rate": 1, "burst": 5, "key": "remote_addr"}"#);
    assert_eq!(request(&host, &cfg, A), Ok(0));
    assert_eq!(request(&host, &cfg, A), Ok(1000));
    let key = "route:1:10.0.0.1";
    assert!(host.kv(key).is_some());
    // excess 1000 at 1/s: after 1.5 s a request still finds 500 milli of the record's share.
    host.advance(Duration::from_millis(1500));
    assert!(host.kv(key).is_some(), "kept while it still matters");
    assert_eq!(request(&host, &cfg, A), Ok(500));
    host.advance(Duration::from_millis(1600));
    assert!(host.kv(key).is_none(), "dropped once leaked empty");
}

#[test]
fn var_combination_keys_and_route_scope() {
    let (host, cfg) = setup::<LimitReq>(
        r#"{"rate": 1, "burst": 0, "key_type": "var_combination", "key": "$http_x_app"}"#,
    );
    let send = |app: &str, route: &str| {
        host.next_request();
        host.set_route_id(route);
        host.set_request_header("x-app", app);
        matches!(host.access(&cfg), Decision::Continue)
    };
    assert!(send("web", "1"));
    assert!(!send("web", "1"));
    assert!(send("cli", "1"));
    assert!(send("web", "2"), "each route has its own buckets");
}

#[test]
fn leak_matches_nginx_and_tolerates_a_clock_step_back() {
    let b = Bucket {
        excess: 2000.0,
        last_ms: 10_000,
    };
    // 1 s at 1/s leaks 1000, the request adds 1000.
    assert_eq!(
        leak(Some(b), 11_000, 1000.0, 3000.0),
        Verdict::Accept(
            Bucket {
                excess: 2000.0,
                last_ms: 11_000
            },
            2000
        )
    );
    // nginx takes |elapsed|: a wall clock that stepped back still leaks rather than piling up.
    assert!(matches!(
        leak(Some(b), 9_000, 1000.0, 3000.0),
        Verdict::Accept(_, 2000)
    ));
    assert_eq!(leak(Some(b), 10_000, 1000.0, 2500.0), Verdict::Reject);
    assert_eq!(Bucket::decode(&b.encode()), Some(b));
    assert_eq!(Bucket::decode(b"short"), None);
}

#[test]
fn a_corrupt_record_counts_as_an_empty_bucket() {
    let (host, cfg) = setup::<LimitReq>(r#"{"rate": 1, "burst": 0, "key": "remote_addr"}"#);
    struct Seed;
    impl Plugin for Seed {
        type Config = Config;
        fn access(_: &Config) -> Decision {
            let _ = kv::set("route:1:127.0.0.1", b"garbage", None);
            Decision::Continue
        }
    }
    let seed = host
        .configure::<Seed>(r#"{"rate": 1, "burst": 0, "key": "k"}"#)
        .expect("config");
    host.access(&seed);
    assert_eq!(host.access(&cfg), Decision::Continue);
    assert!(
        matches!(host.access(&cfg), Decision::Respond(_)),
        "and is then replaced"
    );
}

#[test]
fn validation_messages_follow_apisix() {
    let cases = [
        (
            r#"{"burst": 1, "key": "remote_addr"}"#,
            r#"property "rate" is required"#,
        ),
        (
            r#"{"rate": 1, "key": "remote_addr"}"#,
            r#"property "burst" is required"#,
        ),
        (
            r#"{"rate": 1, "burst": 1}"#,
            r#"property "key" is required"#,
        ),
        (
            r#"{"rate": 0, "burst": 1, "key": "remote_addr"}"#,
            r#"property "rate" validation failed: expected 0 to be greater than 0"#,
        ),
        (
            r#"{"rate": 1, "burst": -1, "key": "remote_addr"}"#,
            r#"property "burst" validation failed: expected -1 to be at least 0"#,
        ),
        (
            r#"{"rate": 1, "burst": 1, "key": "remote_addr", "key_type": "constant"}"#,
            r#"property "key_type" validation failed: matches none of the enum values"#,
        ),
        (
            r#"{"rate": 1, "burst": 1, "key": "remote_addr", "rejected_code": 100}"#,
            r#"property "rejected_code" validation failed: expected 100 to be at least 200"#,
        ),
    ];
    for (json, want) in cases {
        assert_eq!(refused::<LimitReq>(json), want, "{json}");
    }
    let e =
        refused::<LimitReq>(r#"{"rate": 1, "burst": 1, "key": "remote_addr", "policy": "redis"}"#);
    assert_eq!(e, r#"property "redis_host" is required"#);
}

const ON_REDIS: &str = r#"{"rate": 1, "burst": 0, "key": "remote_addr", "policy": "redis",
    "redis_host": "10.0.0.9", "redis_port": 6380, "redis_password": "pw", "redis_timeout": 200"#;

fn the_redis() -> Backend {
    Backend::Redis(Redis {
        node: RedisNode {
            host: "10.0.0.9".into(),
            port: 6380,
        },
        username: None,
        password: Some("pw".into()),
        database: 0,
        timeout: Duration::from_millis(200),
    })
}

#[test]
fn a_redis_policy_keeps_the_bucket_in_the_shared_store() {
    let (host, cfg) = setup::<LimitReq>(&format!("{ON_REDIS}}}"));
    assert_eq!(request(&host, &cfg, A), Ok(0));
    assert_eq!(request(&host, &cfg, A), Err(503));
    let key = "route:1:10.0.0.1";
    assert!(host.shared_kv(&the_redis(), key).is_some());
    assert!(host.kv(key).is_none(), "nothing in this gateway's own kv");
}

#[test]
fn with_redis_down_requests_fail_or_are_limited_locally_per_allow_degradation() {
    let (host, strict) = setup::<LimitReq>(&format!("{ON_REDIS}}}"));
    host.set_shared_unavailable(true);
    assert_eq!(request(&host, &strict, A), Err(500));

    let lenient = sluice_builtin_support::testing::configure::<LimitReq>(
        &host,
        &format!(r#"{ON_REDIS}, "allow_degradation": true}}"#),
    );
    assert_eq!(request(&host, &lenient, A), Ok(0));
    assert_eq!(
        request(&host, &lenient, A),
        Err(503),
        "still limited, on this gateway"
    );
    assert!(host.kv("route:1:10.0.0.1").is_some());
    let warnings = host
        .logs()
        .iter()
        .filter(|(_, m)| m.contains("counting on this gateway only"))
        .count();
    assert_eq!(warnings, 1, "an outage is logged once, not per request");
}

#[test]
fn runs_in_access_only() {
    assert_eq!(TestHost::new().phases::<LimitReq>(), &[Phase::Access]);
}
