use super::*;
use sluice_builtin_support::testing::{configure, refused, setup};
use sluice_plugin_sdk::testing::{TestConfig, TestHost};
use sluice_plugin_sdk::Phase;
use std::net::SocketAddr;

/// One full request from `client` on `route`: access, then (if it went on) header_filter on a 200.
/// Returns the status and the quota headers the client sees.
fn request(
    host: &TestHost,
    cfg: &TestConfig<LimitCount>,
    route: &str,
    client: &str,
) -> (u16, Vec<Option<String>>) {
    host.next_request();
    host.set_route_id(route);
    host.set_client_addr(client.parse::<SocketAddr>().expect("client address"));
    let (status, headers) = match host.access(cfg) {
        Decision::Respond(r) => {
            let get = |n: &str| {
                r.headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(n))
                    .map(|(_, v)| v.clone())
            };
            (
                r.status,
                [
                    get("x-ratelimit-limit"),
                    get("x-ratelimit-remaining"),
                    get("x-ratelimit-reset"),
                ],
            )
        }
        Decision::Continue => {
            host.set_response(200, &[]);
            assert_eq!(host.header_filter(cfg), Decision::Continue);
            let get = |n: &str| host.response_header(n);
            (
                200,
                [
                    get("x-ratelimit-limit"),
                    get("x-ratelimit-remaining"),
                    get("x-ratelimit-reset"),
                ],
            )
        }
    };
    (status, headers.to_vec())
}

fn quota(limit: &str, remaining: &str, reset: &str) -> Vec<Option<String>> {
    [limit, remaining, reset]
        .iter()
        .map(|s| Some(s.to_string()))
        .collect()
}

const A: &str = "10.0.0.1:1000";
const B: &str = "10.0.0.2:1000";

#[test]
fn allows_count_requests_per_window_then_rejects_with_quota_headers() {
    let (host, cfg) = setup::<LimitCount>(r#"{"count": 2, "time_window": 60}"#);
    assert_eq!(request(&host, &cfg, "1", A), (200, quota("2", "1", "60")));
    host.advance(Duration::from_millis(10_500));
    assert_eq!(request(&host, &cfg, "1", A), (200, quota("2", "0", "50")));
    let (status, headers) = request(&host, &cfg, "1", A);
    assert_eq!((status, headers), (503, quota("2", "0", "50")));

    // The window resets: the full quota is back.
    host.advance(Duration::from_secs(50));
    assert_eq!(request(&host, &cfg, "1", A), (200, quota("2", "1", "60")));
}

#[test]
fn rejection_uses_rejected_code_and_msg() {
    let (host, cfg) = setup::<LimitCount>(
        r#"{"count": 1, "time_window": 10, "rejected_code": 429, "rejected_msg": "slow down"}"#,
    );
    assert_eq!(host.access(&cfg), Decision::Continue);
    let Decision::Respond(r) = host.access(&cfg) else {
        panic!("second request must be rejected")
    };
    assert_eq!(r.status, 429);
    assert_eq!(r.body, br#"{"error_msg":"slow down"}"#);
    assert!(r
        .headers
        .contains(&("content-type".into(), "application/json".into())));

    // Without a message the body is empty, as APISIX.
    let cfg = configure::<LimitCount>(
        &host,
        r#"{"count": 1, "time_window": 10, "key": "x", "key_type": "constant"}"#,
    );
    assert_eq!(host.access(&cfg), Decision::Continue);
    let Decision::Respond(r) = host.access(&cfg) else {
        panic!("second request must be rejected")
    };
    assert_eq!((r.status, r.body.len()), (503, 0));
}

#[test]
fn default_key_is_the_client_address() {
    let (host, cfg) = setup::<LimitCount>(r#"{"count": 1, "time_window": 60}"#);
    assert_eq!(request(&host, &cfg, "1", A).0, 200);
    assert_eq!(request(&host, &cfg, "1", A).0, 503);
    // Same IP, other port: the same client.
    assert_eq!(request(&host, &cfg, "1", "10.0.0.1:2000").0, 503);
    assert_eq!(
        request(&host, &cfg, "1", B).0,
        200,
        "another client has its own quota"
    );
}

#[test]
fn var_key_counts_per_variable_value_and_falls_back_to_the_client_address() {
    let (host, cfg) =
        setup::<LimitCount>(r#"{"count": 1, "time_window": 60, "key": "http_x_user"}"#);
    let as_user = |user: Option<&str>, client: &str| {
        host.next_request();
        host.set_client_addr(client.parse().expect("addr"));
        if let Some(u) = user {
            host.set_request_header("x-user", u);
        }
        matches!(host.access(&cfg), Decision::Continue)
    };
    assert!(as_user(Some("ann"), A));
    assert!(
        !as_user(Some("ann"), B),
        "ann's quota is spent whatever her address"
    );
    assert!(as_user(Some("bob"), A));
    // No header: limited by address, not all together under one empty key.
    assert!(as_user(None, A));
    assert!(!as_user(None, A));
    assert!(as_user(None, B));
}

#[test]
fn var_combination_key_joins_the_variables() {
    let (host, cfg) = setup::<LimitCount>(
        r#"{"count": 1, "time_window": 60, "key_type": "var_combination", "key": "$http_x_user ${http_x_app}"}"#,
    );
    let send = |user: Option<&str>, app: Option<&str>, client: &str| {
        host.next_request();
        host.set_client_addr(client.parse().expect("addr"));
        for (name, value) in [("x-user", user), ("x-app", app)] {
            if let Some(v) = value {
                host.set_request_header(name, v);
            }
        }
        matches!(host.access(&cfg), Decision::Continue)
    };
    assert!(send(Some("ann"), Some("web"), A));
    assert!(!send(Some("ann"), Some("web"), B));
    assert!(send(Some("ann"), Some("cli"), A));
    assert!(
        send(Some("ann"), None, A),
        "one variable resolved: `ann ` is its own key"
    );
    // None resolved: per client address.
    assert!(send(None, None, A));
    assert!(!send(None, None, A));
    assert!(send(None, None, B));
}

#[test]
fn constant_key_shares_one_quota_between_all_clients() {
    let (host, cfg) = setup::<LimitCount>(
        r#"{"count": 2, "time_window": 60, "key_type": "constant", "key": "all"}"#,
    );
    assert_eq!(request(&host, &cfg, "1", A).0, 200);
    assert_eq!(request(&host, &cfg, "1", B).0, 200);
    assert_eq!(request(&host, &cfg, "1", "10.0.0.3:1").0, 503);
}

#[test]
fn counters_are_per_route_unless_grouped() {
    let (host, cfg) = setup::<LimitCount>(r#"{"count": 1, "time_window": 60}"#);
    assert_eq!(request(&host, &cfg, "r1", A).0, 200);
    assert_eq!(
        request(&host, &cfg, "r2", A).0,
        200,
        "another route counts apart"
    );
    assert_eq!(request(&host, &cfg, "r1", A).0, 503);

    let grouped =
        configure::<LimitCount>(&host, r#"{"count": 1, "time_window": 60, "group": "g"}"#);
    assert_eq!(request(&host, &grouped, "r1", A).0, 200);
    assert_eq!(
        request(&host, &grouped, "r2", A).0,
        503,
        "the group shares one counter"
    );
    assert_eq!(
        request(&host, &grouped, "r2", B).0,
        200,
        "still per key within the group"
    );
}

#[test]
fn quota_headers_can_be_turned_off() {
    let (host, cfg) =
        setup::<LimitCount>(r#"{"count": 1, "time_window": 60, "show_limit_quota_header": false}"#);
    assert_eq!(request(&host, &cfg, "1", A), (200, vec![None, None, None]));
    assert_eq!(request(&host, &cfg, "1", A), (503, vec![None, None, None]));
}

#[test]
fn header_filter_adds_nothing_when_access_did_not_count() {
    // An earlier plugin answered (or this one rejected): no quota in the context, no headers.
    let (host, cfg) = setup::<LimitCount>(r#"{"count": 1, "time_window": 60}"#);
    host.set_response(401, &[]);
    assert_eq!(host.header_filter(&cfg), Decision::Continue);
    assert_eq!(host.response_header("x-ratelimit-limit"), None);
}

#[test]
fn validation_messages_follow_apisix() {
    let cases = [
        (r#"{"time_window": 60}"#, r#"property "count" is required"#),
        (r#"{"count": 1}"#, r#"property "time_window" is required"#),
        (
            r#"{"count": 0, "time_window": 60}"#,
            r#"property "count" validation failed: expected 0 to be greater than 0"#,
        ),
        (
            r#"{"count": 1, "time_window": -5}"#,
            r#"property "time_window" validation failed: expected -5 to be greater than 0"#,
        ),
        (
            r#"{"count": 1, "time_window": 1, "key_type": "header"}"#,
            r#"property "key_type" validation failed: matches none of the enum values"#,
        ),
        (
            r#"{"count": 1, "time_window": 1, "rejected_code": 199}"#,
            r#"property "rejected_code" validation failed: expected 199 to be at least 200"#,
        ),
        (
            r#"{"count": 1, "time_window": 1, "rejected_code": 600}"#,
            r#"property "rejected_code" validation failed: expected 600 to be at most 599"#,
        ),
        (
            r#"{"count": 1, "time_window": 1, "rejected_msg": ""}"#,
            r#"property "rejected_msg" validation failed: string too short, expected at least 1, got 0"#,
        ),
        (
            r#"{"count": 1, "time_window": 1, "group": ""}"#,
            r#"property "group" validation failed: string too short, expected at least 1, got 0"#,
        ),
        (
            r#"{"count": 1, "time_window": 1, "policy": "memcached"}"#,
            r#"property "policy" validation failed: matches none of the enum values"#,
        ),
    ];
    for (json, want) in cases {
        assert_eq!(refused::<LimitCount>(json), want, "{json}");
    }
    assert_eq!(
        refused::<LimitCount>(r#"{"count": 1, "time_window": 1, "policy": "redis"}"#),
        r#"property "redis_host" is required"#
    );
    assert_eq!(
        refused::<LimitCount>(r#"{"count": 1, "time_window": 1, "policy": "redis-cluster"}"#),
        r#"property "redis_cluster_nodes" is required"#
    );
    assert!(
        refused::<LimitCount>(r#"{"count": "ten", "time_window": 1}"#).contains("invalid type")
    );
    // APISIX configs with fields this plugin does not use still load.
    configure::<LimitCount>(
        &TestHost::new(),
        r#"{"count": 1, "time_window": 1, "policy": "local", "redis_timeout": 1000, "_meta": {}}"#,
    );
}

#[test]
fn runs_in_access_and_header_filter_only() {
    let phases = TestHost::new().phases::<LimitCount>();
    assert_eq!(phases, &[Phase::Access, Phase::HeaderFilter]);
}

const ON_REDIS: &str =
    r#"{"count": 2, "time_window": 60, "policy": "redis", "redis_host": "127.0.0.1""#;

#[test]
fn a_redis_policy_counts_in_the_shared_store() {
    let (host, cfg) = setup::<LimitCount>(&format!("{ON_REDIS}}}"));
    assert_eq!(request(&host, &cfg, "1", A), (200, quota("2", "1", "60")));
    // Another gateway naming the same Redis shares the count; the local counters saw nothing.
    let local = configure::<LimitCount>(&host, r#"{"count": 2, "time_window": 60}"#);
    assert_eq!(request(&host, &local, "1", A).0, 200);
    assert_eq!(request(&host, &local, "1", A).0, 200);
    assert_eq!(request(&host, &cfg, "1", A), (200, quota("2", "0", "60")));
    assert_eq!(request(&host, &cfg, "1", A).0, 503);
}

#[test]
fn with_redis_down_requests_fail_or_are_counted_locally_per_allow_degradation() {
    let (host, strict) = setup::<LimitCount>(&format!("{ON_REDIS}}}"));
    host.set_shared_unavailable(true);
    assert_eq!(request(&host, &strict, "1", A).0, 500);
    let lenient = configure::<LimitCount>(
        &host,
        &format!(r#"{ON_REDIS}, "allow_degradation": true}}"#),
    );
    assert_eq!(request(&host, &lenient, "1", A).0, 200);
    assert_eq!(request(&host, &lenient, "1", A).0, 200);
    assert_eq!(
        request(&host, &lenient, "1", A).0,
        503,
        "the limit still holds on this gateway"
    );
    host.set_shared_unavailable(false);
    assert_eq!(
        request(&host, &lenient, "1", A).0,
        200,
        "Redis is back: its own count (one so far) applies again"
    );
}
