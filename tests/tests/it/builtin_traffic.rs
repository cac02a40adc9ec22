//! The traffic-rule built-in plugins through the real binary: `ip-restriction`, `cors`, `proxy-rewrite`,
//! `response-rewrite` and `request-id`, referenced by name (they ship inside `sluice`, nothing is uploaded)
//! with APISIX configs, against a real upstream that records what it receives.

use std::collections::HashSet;
use support::*;

/// PUT route `id` on `uri` to origin `a` with this `plugins` map.
async fn route(gw: &Gateway, id: &str, uri: &str, a: &Origin, plugins: Value) {
    gw.route_to(id, uri, a, plugins).await;
}

/// A request with these headers.
async fn request(
    gw: &Gateway,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Resp {
    let mut rb = gw.request(method, path);
    for (name, value) in headers {
        rb = rb.header(*name, *value);
    }
    send(rb).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_five_are_listed_as_available_plugins() {
    let gw = gateway().start().await;
    let list = gw.admin().get("plugins/list").await.ok();
    let names: Vec<&str> = list
        .json
        .as_array()
        .expect("a JSON array")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for name in [
        "ip-restriction",
        "cors",
        "proxy-rewrite",
        "response-rewrite",
        "request-id",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_restriction_refuses_at_the_gateway_and_lets_allowed_clients_through() {
    let a = origin("a").start();
    let gw = gateway().start().await;
    route(
        &gw,
        "deny",
        "/deny",
        &a,
        json!({"ip-restriction": {"blacklist": ["127.0.0.0/8", "::1"]}}),
    )
    .await;
    route(
        &gw,
        "custom",
        "/custom",
        &a,
        json!({"ip-restriction": {"blacklist": ["127.0.0.1"], "message": "Go away", "response_code": 404}}),
    )
    .await;
    route(
        &gw,
        "unlisted",
        "/unlisted",
        &a,
        json!({"ip-restriction": {"whitelist": ["10.0.0.0/8", "2001:db8::/32"]}}),
    )
    .await;
    route(
        &gw,
        "allow",
        "/allow",
        &a,
        json!({"ip-restriction": {"whitelist": ["127.0.0.1/32", "fe80::/10"]}}),
    )
    .await;

    let r = gw.get("/deny").await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json(),
        json!({"message": "Your IP address is not allowed"})
    );
    let r = gw.get("/custom").await;
    assert_eq!((r.status, r.json()), (404, json!({"message": "Go away"})));
    assert_eq!(gw.get("/unlisted").await.status, 403);
    assert_eq!(
        a.request_count(),
        0,
        "a refused client never reaches the upstream"
    );

    assert_eq!(gw.get("/allow").await.hit(), (200, Some("a")));
    assert_eq!(a.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_preflights_itself_and_decorates_allowed_responses() {
    let a = origin("a").start();
    let gw = gateway().start().await;
    route(
        &gw,
        "1",
        "/api/*",
        &a,
        json!({"cors": {
            "allow_origins": "https://app.example,https://admin.example",
            "allow_methods": "GET,POST",
            "allow_headers": "x-token",
            "expose_headers": "x-trace",
            "max_age": 600,
            "allow_credential": true
        }}),
    )
    .await;

    let preflight = request(
        &gw,
        reqwest::Method::OPTIONS,
        "/api/items",
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
        ],
    )
    .await;
    assert_eq!(preflight.status, 200);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("GET,POST")
    );
    assert_eq!(
        preflight.header("access-control-allow-headers"),
        Some("x-token")
    );
    assert_eq!(preflight.header("access-control-max-age"), Some("600"));
    assert_eq!(
        preflight.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(preflight.header("vary"), Some("Origin"));
    assert_eq!(
        a.request_count(),
        0,
        "the preflight is answered by the gateway"
    );

    let actual = request(
        &gw,
        reqwest::Method::GET,
        "/api/items",
        &[("origin", "https://admin.example")],
    )
    .await;
    assert_eq!(actual.hit(), (200, Some("a")));
    assert_eq!(
        actual.header("access-control-allow-origin"),
        Some("https://admin.example")
    );
    assert_eq!(
        actual.header("access-control-expose-headers"),
        Some("x-trace")
    );

    let foreign = request(
        &gw,
        reqwest::Method::GET,
        "/api/items",
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(foreign.hit(), (200, Some("a")));
    assert_eq!(foreign.header("access-control-allow-origin"), None);
    assert_eq!(foreign.header("access-control-allow-methods"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_defaults_allow_everyone_and_regexes_restrict() {
    let a = origin("a").start();
    let gw = gateway().start().await;
    route(&gw, "open", "/open", &a, json!({"cors": {}})).await;
    route(
        &gw,
        "regex",
        "/regex",
        &a,
        json!({"cors": {"allow_origins_by_regex": ["^https://[a-z]+\\.test\\.com$"]}}),
    )
    .await;

    let r = request(
        &gw,
        reqwest::Method::GET,
        "/open",
        &[("origin", "https://x.example")],
    )
    .await;
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-max-age"), Some("5"));

    let r = request(
        &gw,
        reqwest::Method::GET,
        "/regex",
        &[("origin", "https://app.test.com")],
    )
    .await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.test.com")
    );
    let r = request(
        &gw,
        reqwest::Method::GET,
        "/regex",
        &[("origin", "https://app.test.com.evil")],
    )
    .await;
    assert_eq!(r.header("access-control-allow-origin"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_rewrite_changes_uri_host_method_and_headers_the_upstream_sees() {
    let a = origin("a").start();
    let gw = gateway().start().await;
    route(
        &gw,
        "regex",
        "/api/*",
        &a,
        json!({"proxy-rewrite": {
            "regex_uri": ["^/api/(\\w+)/(\\d+)$", "/v2/$1/$2"],
            "host": "backend.internal",
            "method": "POST",
            "headers": {
                "add": {"x-from-arg": "$arg_k"},
                "set": {"x-user": "id-$2", "x-client": "$remote_addr"},
                "remove": ["x-drop"]
            }
        }}),
    )
    .await;
    route(
        &gw,
        "fixed",
        "/old/*",
        &a,
        json!({"proxy-rewrite": {"uri": "/new/$arg_name?via=gw", "headers": {"X-Api-Version": "2"}}}),
    )
    .await;

    let r = request(
        &gw,
        reqwest::Method::GET,
        "/api/users/42?k=v",
        &[("x-drop", "secret"), ("x-keep", "1")],
    )
    .await;
    assert_eq!(r.hit(), (200, Some("a")));
    let seen = a.last().expect("the upstream got the request");
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/v2/users/42");
    assert_eq!(seen.query.as_deref(), Some("k=v"));
    assert_eq!(seen.header("host"), Some("backend.internal"));
    assert_eq!(seen.header("x-from-arg"), Some("v"));
    assert_eq!(seen.header("x-user"), Some("id-42"));
    assert_eq!(seen.header("x-client"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-drop"), None);
    assert_eq!(seen.header("x-keep"), Some("1"));

    gw.get("/old/page?name=bob").await;
    let seen = a.last().expect("the upstream got the request");
    assert_eq!(seen.path, "/new/bob");
    assert_eq!(seen.query.as_deref(), Some("via=gw&name=bob"));
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.header("x-api-version"), Some("2"));

    // No pattern matches: the client's path goes through unchanged.
    gw.get("/api/not-a-match").await;
    assert_eq!(a.last().expect("request").path, "/api/not-a-match");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_rewrite_replaces_status_body_and_headers() {
    let a = origin("a").header("x-internal", "1").start();
    let gw = gateway().start().await;
    route(
        &gw,
        "1",
        "/r",
        &a,
        json!({"response-rewrite": {
            "status_code": 201,
            "body": "{\"replaced\":true}",
            "headers": {
                "add": ["x-added: $remote_addr"],
                "set": {"x-gateway": "sluice", "content-type": "application/json"},
                "remove": ["x-internal"]
            }
        }}),
    )
    .await;
    route(
        &gw,
        "b64",
        "/b64",
        &a,
        json!({"response-rewrite": {"body": "aGVsbG8=", "body_base64": true}}),
    )
    .await;

    let r = gw.get("/r").await;
    assert_eq!(r.status, 201);
    assert_eq!(r.text(), r#"{"replaced":true}"#);
    assert_eq!(r.header("x-gateway"), Some("sluice"));
    assert_eq!(r.header("x-added"), Some("127.0.0.1"));
    assert_eq!(r.header("x-internal"), None);
    assert_eq!(r.origin(), Some("a"), "the upstream still answered");
    assert_eq!(a.request_count(), 1);

    assert_eq!(gw.get("/b64").await.text(), "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_rewrite_body_replaces_an_empty_upstream_body_too() {
    let empty = origin("empty").body("").start();
    let gw = gateway().start().await;
    route(
        &gw,
        "1",
        "/empty",
        &empty,
        json!({"response-rewrite": {"body": "filled in"}}),
    )
    .await;
    let r = gw.get("/empty").await;
    assert_eq!(r.hit(), (200, Some("empty")));
    assert_eq!(r.text(), "filled in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_rewrite_vars_limit_it_to_matching_responses() {
    let a = origin("a").start();
    let gw = gateway().start().await;
    route(
        &gw,
        "1",
        "/maybe",
        &a,
        json!({"response-rewrite": {
            "vars": [["status", "==", 500]],
            "status_code": 503,
            "body": "under maintenance",
            "headers": {"set": {"retry-after": "30"}}
        }}),
    )
    .await;

    let broken = request(&gw, reqwest::Method::GET, "/maybe", &[("x-status", "500")]).await;
    assert_eq!(broken.status, 503);
    assert_eq!(broken.text(), "under maintenance");
    assert_eq!(broken.header("retry-after"), Some("30"));

    let fine = gw.get("/maybe").await;
    assert_eq!(fine.status, 200);
    assert_eq!(fine.json()["path"], "/maybe", "the upstream's own body");
    assert_eq!(fine.header("retry-after"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_reaches_the_upstream_and_the_client_and_is_unique() {
    let a = origin("a").start();
    let gw = gateway().start().await;
    route(&gw, "1", "/id", &a, json!({"request-id": {}})).await;
    route(
        &gw,
        "2",
        "/trace",
        &a,
        json!({"request-id": {"header_name": "X-Trace-Id", "include_in_response": false, "algorithm": "nanoid"}}),
    )
    .await;

    let mut ids = HashSet::new();
    for _ in 0..20 {
        let r = gw.get("/id").await;
        let returned = r
            .header("x-request-id")
            .expect("the client gets the id")
            .to_string();
        let upstream = a.last().expect("request");
        assert_eq!(upstream.header("x-request-id"), Some(returned.as_str()));
        assert_eq!(returned.len(), 36, "a uuid: {returned}");
        ids.insert(returned);
    }
    assert_eq!(ids.len(), 20, "every request gets its own id");

    let r = request(
        &gw,
        reqwest::Method::GET,
        "/id",
        &[("x-request-id", "client-123")],
    )
    .await;
    assert_eq!(r.header("x-request-id"), Some("client-123"));
    assert_eq!(
        a.last().expect("request").header("x-request-id"),
        Some("client-123")
    );

    let r = gw.get("/trace").await;
    assert_eq!(r.header("x-trace-id"), None);
    let id = a
        .last()
        .expect("request")
        .header("x-trace-id")
        .map(str::len);
    assert_eq!(id, Some(21));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugins_work_together_on_one_route() {
    let a = origin("a").start();
    let gw = gateway().start().await;
    route(
        &gw,
        "1",
        "/all/*",
        &a,
        json!({
            "request-id": {},
            "cors": {"allow_origins": "https://app.example"},
            "ip-restriction": {"whitelist": ["127.0.0.1"]},
            "proxy-rewrite": {"regex_uri": ["^/all/(.*)", "/$1"], "headers": {"set": {"x-rid": "$http_x_request_id"}}},
            "response-rewrite": {"headers": {"set": {"x-done": "1"}}}
        }),
    )
    .await;

    let r = request(
        &gw,
        reqwest::Method::GET,
        "/all/thing",
        &[("origin", "https://app.example")],
    )
    .await;
    assert_eq!(r.hit(), (200, Some("a")));
    let seen = a.last().expect("request");
    assert_eq!(seen.path, "/thing");
    let id = r.header("x-request-id").expect("id returned");
    assert_eq!(
        seen.header("x-rid"),
        Some(id),
        "request-id runs before proxy-rewrite"
    );
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(r.header("x-done"), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configs_are_refused_with_the_plugins_message() {
    let a = origin("a").start();
    let gw = gateway().start().await;
    let cases = [
        (
            json!({"ip-restriction": {}}),
            "\"whitelist\" or \"blacklist\" is required",
        ),
        (
            json!({"ip-restriction": {"whitelist": ["10.0.0.0/33"]}}),
            "property \"whitelist\" validation failed: invalid ip address: 10.0.0.0/33",
        ),
        (
            json!({"ip-restriction": {"blacklist": ["::1"], "response_code": 500}}),
            "property \"response_code\" validation failed: expected 500 to be at most 404",
        ),
        (
            json!({"cors": {"allow_credential": true}}),
            "you can not set '*' for other option when 'allow_credential' is true",
        ),
        (
            json!({"cors": {"allow_origins": "app.example"}}),
            "property \"allow_origins\" validation failed",
        ),
        (
            json!({"cors": {"allow_origins_by_regex": ["("]}}),
            "property \"allow_origins_by_regex\" validation failed: invalid regex",
        ),
        (
            json!({"proxy-rewrite": {"uri": "no-slash"}}),
            "property \"uri\" validation failed: failed to match pattern",
        ),
        (
            json!({"proxy-rewrite": {"regex_uri": ["^/a", "/b", "^/c"]}}),
            "The length of regex_uri should be an even number",
        ),
        (
            json!({"proxy-rewrite": {"method": "FETCH"}}),
            "property \"method\" validation failed: matches none of the enum values",
        ),
        (
            json!({"proxy-rewrite": {"headers": {"set": {"bad name": "1"}}}}),
            "invalid field character in header",
        ),
        (
            json!({"response-rewrite": {"status_code": 700}}),
            "property \"status_code\" validation failed: expected 700 to be at most 598",
        ),
        (
            json!({"response-rewrite": {"body": "%%%", "body_base64": true}}),
            "invalid base64 content",
        ),
        (
            json!({"response-rewrite": {"vars": [["status", "=~", 200]]}}),
            "failed to validate the 'vars' expression",
        ),
        (
            json!({"request-id": {"algorithm": "snowflake"}}),
            "unknown variant `snowflake`",
        ),
        (
            json!({"request-id": {"header_name": "bad header"}}),
            "property \"header_name\" validation failed",
        ),
    ];
    for (i, (plugins, message)) in cases.into_iter().enumerate() {
        let id = format!("bad{i}");
        let r = gw
            .admin()
            .put(
                "routes",
                &id,
                json!({"uri": "/x", "upstream": upstream(&[&a]), "plugins": plugins.clone()}),
            )
            .await;
        assert_eq!(r.status, 400, "{plugins}: {}", r.text);
        let msg = r.error_msg().unwrap_or_default();
        assert!(msg.contains(message), "{plugins}: {msg}");
        assert_eq!(
            gw.admin().get(&format!("routes/{id}")).await.status,
            404,
            "nothing stored"
        );
    }
}
