use super::*;
use sluice_builtin_support::testing::{answer, header, refused, setup};
use sluice_plugin_sdk::testing::{TestConfig, TestHost};
use std::time::Duration;

/// One request on `route`: the breaker's answer status if it refused, else the upstream's `status` after
/// `log` has seen it.
fn request(host: &TestHost, cfg: &TestConfig<ApiBreaker>, route: &str, status: u16) -> u16 {
    host.next_request();
    host.set_route_id(route);
    let answered = match host.access(cfg) {
        Decision::Respond(r) => {
            host.set_response(r.status, &[]);
            r.status
        }
        _ => {
            host.set_response(status, &[]);
            status
        }
    };
    host.log(cfg);
    answered
}

const CONFIG: &str = r#"{"break_response_code": 502, "unhealthy": {"http_statuses": [500, 503], "failures": 3},
    "healthy": {"successes": 2}, "max_breaker_sec": 5}"#;

#[test]
fn opens_after_failures_and_refuses_without_counting_its_own_answers() {
    let (host, cfg) = setup::<ApiBreaker>(CONFIG);
    assert_eq!(request(&host, &cfg, "1", 500), 500);
    assert_eq!(request(&host, &cfg, "1", 503), 503);
    assert_eq!(
        request(&host, &cfg, "1", 404),
        404,
        "neither list: not counted"
    );
    assert_eq!(
        request(&host, &cfg, "1", 500),
        500,
        "the third failure opens it"
    );
    for _ in 0..5 {
        assert_eq!(request(&host, &cfg, "1", 200), 502);
    }
    assert_eq!(
        request(&host, &cfg, "2", 200),
        200,
        "each route has its own circuit"
    );
    // Open for 2 s: its own 502s (while refusing) did not extend or reopen it.
    host.advance(Duration::from_millis(2_000));
    assert_eq!(request(&host, &cfg, "1", 200), 200);
}

/// Moves the clock to `at_ms` after the start.
fn at(host: &TestHost, start: &mut u64, at_ms: u64) {
    host.advance(Duration::from_millis(at_ms - *start));
    *start = at_ms;
}

#[test]
fn each_reopening_doubles_the_open_time_up_to_max_breaker_sec() {
    let (host, cfg) = setup::<ApiBreaker>(CONFIG);
    let now = &mut 0;
    let send = |status| request(&host, &cfg, "1", status);
    for _ in 0..3 {
        send(500);
    }
    at(&host, now, 1_999);
    assert_eq!(send(200), 502, "open for 2 s");
    at(&host, now, 2_000);
    assert_eq!(send(500), 500, "closed after 2 s");
    // As APISIX: the open time follows the failure count, so the 4th failure already means 4 s from the
    // opening at 0.
    assert_eq!(send(200), 502);
    at(&host, now, 4_000);
    assert_eq!(
        (send(500), send(500)),
        (500, 500),
        "the 6th failure reopens"
    );
    at(&host, now, 7_999);
    assert_eq!(send(200), 502, "open for 4 s");
    at(&host, now, 8_000);
    assert_eq!(send(500), 500);
    // 7 failures: 8 s, capped at max_breaker_sec = 5, from the opening at 4 s.
    assert_eq!(send(200), 502);
    at(&host, now, 9_000);
    assert_eq!((send(500), send(500)), (500, 500));
    at(&host, now, 13_999);
    assert_eq!(send(200), 502, "open for the 5 s cap");
    at(&host, now, 14_000);
    assert_eq!(send(200), 200);
}

#[test]
fn successes_close_it_for_good() {
    let (host, cfg) = setup::<ApiBreaker>(CONFIG);
    for _ in 0..3 {
        request(&host, &cfg, "1", 500);
    }
    host.advance(Duration::from_secs(2));
    assert_eq!(request(&host, &cfg, "1", 200), 200);
    assert_eq!(request(&host, &cfg, "1", 200), 200);
    // Forgotten: two more failures do not reopen it (a fresh count of three is needed).
    request(&host, &cfg, "1", 500);
    request(&host, &cfg, "1", 500);
    assert_eq!(request(&host, &cfg, "1", 200), 200);
}

#[test]
fn the_answer_has_body_and_headers_as_apisix() {
    let (host, cfg) = setup::<ApiBreaker>(
        r#"{"break_response_code": 599, "break_response_body": "down",
            "break_response_headers": [{"key": "X-Route", "value": "r-$route_id"}],
            "unhealthy": {"failures": 1}}"#,
    );
    request(&host, &cfg, "9", 500);
    host.next_request();
    host.set_route_id("9");
    let r = answer(host.access(&cfg));
    assert_eq!((r.status, r.body.as_slice()), (599, &b"down"[..]));
    assert_eq!(header(&r, "x-route").as_deref(), Some("r-9"));

    let (host, bare) = setup::<ApiBreaker>(
        r#"{"break_response_code": 503, "break_response_headers": [{"key": "X-A", "value": "1"}],
            "unhealthy": {"failures": 1}}"#,
    );
    request(&host, &bare, "1", 500);
    host.next_request();
    let r = answer(host.access(&bare));
    assert_eq!((r.status, r.body.len(), r.headers.len()), (503, 0, 0));
}

#[test]
fn configs_are_checked_with_apisix_messages() {
    assert_eq!(
        refused::<ApiBreaker>("{}"),
        r#"property "break_response_code" is required"#
    );
    assert_eq!(
        refused::<ApiBreaker>(r#"{"break_response_code": 600}"#),
        r#"property "break_response_code" validation failed: expected 600 to be at most 599"#
    );
    assert_eq!(
        refused::<ApiBreaker>(r#"{"break_response_code": 502, "max_breaker_sec": 2}"#),
        r#"property "max_breaker_sec" validation failed: expected 2 to be at least 3"#
    );
    assert_eq!(
        refused::<ApiBreaker>(
            r#"{"break_response_code": 502, "unhealthy": {"http_statuses": [500, 404]}}"#
        ),
        r#"property "unhealthy" validation failed: property "http_statuses" validation failed: failed to validate item 2: expected 404 to be at least 500"#
    );
    assert_eq!(
        refused::<ApiBreaker>(r#"{"break_response_code": 502, "healthy": {"http_statuses": []}}"#),
        r#"property "healthy" validation failed: property "http_statuses" validation failed: expect array to have at least 1 items"#
    );
    assert_eq!(
        refused::<ApiBreaker>(r#"{"break_response_code": 502, "healthy": {"successes": 0}}"#),
        r#"property "healthy" validation failed: property "successes" validation failed: expected 0 to be at least 1"#
    );
    assert!(refused::<ApiBreaker>(
        r#"{"break_response_code": 502, "break_response_headers": [{"key": "a b", "value": "1"}]}"#
    )
    .contains("break_response_headers"));
}
