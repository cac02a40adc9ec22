//! The built-in `api-breaker` through the real binary and a real origin that answers the status a request
//! asks for (`x-status`): the circuit opens after `unhealthy.failures` 500s, then the gateway answers
//! `break_response_code` itself (the origin sees nothing), reopens for requests after the open time, and
//! `healthy.successes` close it and forget the failures.

use support::*;

/// One GET to `/b`, asking the origin for `status`.
async fn call(gw: &Gateway, status: u16) -> Resp {
    send(
        gw.request(reqwest::Method::GET, "/b")
            .header("x-status", status.to_string()),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_after_failures_answers_itself_and_closes_after_successes() {
    let a = origin("a").start();
    let gw = gateway().start().await;
    gw.put_ok(
        "routes",
        "1",
        json!({"uri": "/b", "upstream": upstream(&[&a]), "plugins": {"api-breaker": {
            "break_response_code": 502,
            "break_response_body": "circuit open",
            "break_response_headers": [{"key": "X-Breaker", "value": "route-$route_id"}],
            "unhealthy": {"http_statuses": [500], "failures": 3},
            "healthy": {"http_statuses": [200], "successes": 2}
        }}}),
    )
    .await;

    for i in 0..3 {
        assert_eq!(
            call(&gw, 500).await.status,
            500,
            "failure {i} reaches the origin"
        );
    }
    assert_eq!(a.request_count(), 3);
    let opened = Instant::now();
    for _ in 0..5 {
        let r = call(&gw, 200).await;
        assert_eq!((r.status, r.text().as_str()), (502, "circuit open"));
        assert_eq!(r.header("x-breaker"), Some("route-1"));
    }
    assert_eq!(
        a.request_count(),
        3,
        "nothing reaches the origin while open"
    );

    // The first opening lasts 2 s.
    tokio::time::sleep(Duration::from_millis(2_300).saturating_sub(opened.elapsed())).await;
    assert_eq!(
        call(&gw, 200).await.status,
        200,
        "closed after the open time"
    );
    assert_eq!(call(&gw, 200).await.status, 200);
    assert_eq!(a.request_count(), 5);
    // Two successes forgot the failures: one new 500 does not reopen it (without the reset, the 4th
    // failure would mean 4 s open from the first opening, which has not passed yet).
    assert_eq!(call(&gw, 500).await.status, 500);
    assert_eq!(call(&gw, 200).await.status, 200);
    assert_eq!(a.request_count(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_route_has_its_own_circuit_and_configs_are_checked() {
    let a = origin("a").start();
    let gw = gateway().start().await;
    let breaker =
        json!({"api-breaker": {"break_response_code": 503, "unhealthy": {"failures": 1}}});
    for (id, uri) in [("1", "/b"), ("2", "/other")] {
        gw.put_ok(
            "routes",
            id,
            json!({"uri": uri, "upstream": upstream(&[&a]), "plugins": breaker}),
        )
        .await;
    }
    assert_eq!(call(&gw, 500).await.status, 500);
    let r = call(&gw, 200).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (503, ""),
        "no body configured: none sent"
    );
    assert_eq!(gw.get("/other").await.status, 200, "route 2 is closed");

    let r = gw
        .admin()
        .put(
            "routes",
            "3",
            json!({"uri": "/c", "upstream": upstream(&[&a]), "plugins": {"api-breaker": {}}}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.error_msg()
            .unwrap_or_default()
            .contains(r#"property "break_response_code" is required"#),
        "{}",
        r.text
    );
    let list = gw.admin().get("plugins/list").await.ok();
    assert!(list.text.contains("\"api-breaker\""), "{}", list.text);
}
