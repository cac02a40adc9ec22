use super::*;
use sluice_builtin_support::testing::{refused, setup};
use sluice_plugin_sdk::testing::{TestConfig, TestHost};
use sluice_plugin_sdk::Phase;

/// Starts a request (access only): `Ok((delay_ms, held key))` when admitted, `Err(status)` when rejected.
fn start(host: &TestHost, cfg: &TestConfig<LimitConn>) -> Result<(u64, Option<String>), u16> {
    host.next_request();
    match host.access(cfg) {
        Decision::Continue => Ok((host.delay_ms(), host.context(HELD))),
        Decision::Respond(r) => Err(r.status),
    }
}

/// Ends a request that holds `key` (its log phase).
fn finish(host: &TestHost, cfg: &TestConfig<LimitConn>, key: &str) {
    host.next_request();
    host.set_context(HELD, key);
    host.log(cfg);
}

const KEY: &str = "route:1:127.0.0.1";

#[test]
fn admits_conn_then_delays_burst_proportionally_then_rejects() {
    let (host, cfg) = setup::<LimitConn>(r#"{"conn": 2, "burst": 2, "default_conn_delay": 0.1}"#);
    assert_eq!(start(&host, &cfg), Ok((0, Some(KEY.into()))));
    assert_eq!(start(&host, &cfg), Ok((0, Some(KEY.into()))));
    assert_eq!(
        start(&host, &cfg),
        Ok((100, Some(KEY.into()))),
        "1 over conn"
    );
    assert_eq!(
        start(&host, &cfg),
        Ok((200, Some(KEY.into()))),
        "2 over conn"
    );
    assert_eq!(start(&host, &cfg), Err(503));
    assert_eq!(
        host.gauge(KEY),
        Some(4),
        "the rejected request gave its slot back"
    );

    // One finishes: the next one takes its place (as the 4th, delayed 200 ms).
    finish(&host, &cfg, KEY);
    assert_eq!(host.gauge(KEY), Some(3));
    assert_eq!(start(&host, &cfg), Ok((200, Some(KEY.into()))));
    for _ in 0..4 {
        finish(&host, &cfg, KEY);
    }
    assert_eq!(host.gauge(KEY), None, "all slots back: the gauge is gone");
}

#[test]
fn only_use_default_delay_delays_every_excess_request_the_same() {
    let (host, cfg) = setup::<LimitConn>(
        r#"{"conn": 1, "burst": 3, "default_conn_delay": 0.25, "only_use_default_delay": true}"#,
    );
    let delays: Vec<_> = (0..4).map(|_| start(&host, &cfg).map(|(d, _)| d)).collect();
    assert_eq!(delays, [Ok(0), Ok(250), Ok(250), Ok(250)]);
}

#[test]
fn rejection_uses_rejected_code_and_msg() {
    let (host, cfg) = setup::<LimitConn>(
        r#"{"conn": 1, "burst": 0, "default_conn_delay": 1, "rejected_code": 429, "rejected_msg": "busy"}"#,
    );
    assert!(start(&host, &cfg).is_ok());
    host.next_request();
    let Decision::Respond(r) = host.access(&cfg) else {
        panic!("second concurrent request must be rejected")
    };
    assert_eq!(
        (r.status, r.body.as_slice()),
        (429, &br#"{"error_msg":"busy"}"#[..])
    );
    assert_eq!(host.context(HELD), None, "a rejected request holds no slot");
}

#[test]
fn log_releases_only_a_slot_this_request_took() {
    let (host, cfg) = setup::<LimitConn>(r#"{"conn": 1, "burst": 0, "default_conn_delay": 1}"#);
    assert!(start(&host, &cfg).is_ok());
    // A request that never counted (rejected, or answered by an earlier plugin) ends: nothing released.
    host.next_request();
    host.log(&cfg);
    assert_eq!(host.gauge(KEY), Some(1));
    finish(&host, &cfg, KEY);
    assert_eq!(host.gauge(KEY), None);
}

#[test]
fn keys_follow_key_type_and_route() {
    let (host, cfg) = setup::<LimitConn>(
        r#"{"conn": 1, "burst": 0, "default_conn_delay": 1, "key_type": "var_combination", "key": "$http_x_user"}"#,
    );
    let send = |user: &str, route: &str| {
        host.next_request();
        host.set_route_id(route);
        host.set_request_header("x-user", user);
        host.access(&cfg) == Decision::Continue
    };
    assert!(send("ann", "1"));
    assert!(!send("ann", "1"));
    assert!(send("bob", "1"));
    assert!(send("ann", "2"));
    assert_eq!(host.gauge("route:1:ann"), Some(1));
}

#[test]
fn validation_messages_follow_apisix() {
    let cases = [
        (
            r#"{"burst": 0, "default_conn_delay": 1}"#,
            r#"property "conn" is required"#,
        ),
        (
            r#"{"conn": 1, "default_conn_delay": 1}"#,
            r#"property "burst" is required"#,
        ),
        (
            r#"{"conn": 1, "burst": 0}"#,
            r#"property "default_conn_delay" is required"#,
        ),
        (
            r#"{"conn": 0, "burst": 0, "default_conn_delay": 1}"#,
            r#"property "conn" validation failed: expected 0 to be greater than 0"#,
        ),
        (
            r#"{"conn": 1, "burst": -2, "default_conn_delay": 1}"#,
            r#"property "burst" validation failed: expected -2 to be at least 0"#,
        ),
        (
            r#"{"conn": 1, "burst": 0, "default_conn_delay": 0}"#,
            r#"property "default_conn_delay" validation failed: expected 0 to be greater than 0"#,
        ),
        (
            r#"{"conn": 1, "burst": 0, "default_conn_delay": 1, "key_type": "constant"}"#,
            r#"property "key_type" validation failed: matches none of the enum values"#,
        ),
        (
            r#"{"conn": 1, "burst": 0, "default_conn_delay": 1, "rejected_msg": ""}"#,
            r#"property "rejected_msg" validation failed: string too short, expected at least 1, got 0"#,
        ),
        (
            r#"{"conn": 1, "burst": 0, "default_conn_delay": 1, "policy": "redis", "redis_host": "h"}"#,
            r#"policy "redis" is not available for limit-conn yet: it counts in this gateway's memory (use "local")"#,
        ),
    ];
    for (json, want) in cases {
        assert_eq!(refused::<LimitConn>(json), want, "{json}");
    }
}

#[test]
fn runs_in_access_and_log() {
    assert_eq!(
        TestHost::new().phases::<LimitConn>(),
        &[Phase::Access, Phase::Log]
    );
}
