//! Bad input: every rejected admin write is a 400 whose `error_msg` names what is wrong, stores nothing, and
//! leaves the previous config serving. Garbage on the proxy port gets a 400 and the gateway carries on.

use reqwest::Method;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A gateway with a working route `1` (`/ok` → origin `a`) that every test tries to break.
struct Fixture {
    gw: Gateway,
    _o: Origin,
    route: Value,
}

async fn fixture() -> Fixture {
    let o = origin("a").start();
    let gw = gateway().start().await;
    gw.put_ok(
        "routes",
        "1",
        json!({"uri": "/ok", "upstream": upstream(&[&o])}),
    )
    .await;
    let route = gw.admin().get("routes/1").await.ok().json;
    Fixture { gw, _o: o, route }
}

/// A write that must be refused: method, admin path, raw body, and words of which the `error_msg` must contain
/// at least one (case-insensitive): the field, value or plugin at fault.
type Case<'a> = (Method, &'a str, String, &'a [&'a str]);

fn put_route(body: Value) -> (Method, &'static str, String) {
    (Method::PUT, "routes/1", body.to_string())
}

/// Route 1 with `upstream` replaced (a field merged into a valid upstream).
fn with_upstream(f: &Fixture, extra: Value) -> String {
    let mut v = f.route["value"].clone();
    for k in ["create_time", "update_time", "id"] {
        v.as_object_mut().unwrap().remove(k);
    }
    for (k, x) in extra.as_object().unwrap() {
        v["upstream"][k] = x.clone();
    }
    v.to_string()
}

impl Fixture {
    /// Sends every case, then checks that route 1 and the list are unchanged and `/ok` still serves.
    async fn assert_all_rejected(&self, cases: Vec<Case<'_>>) {
        let admin = self.gw.admin();
        let mut failures = Vec::new();
        for (method, path, body, words) in &cases {
            let r = admin.send(method.clone(), path, Some(body.clone())).await;
            let msg = r.error_msg().unwrap_or("").to_lowercase();
            let named = words.iter().any(|w| msg.contains(&w.to_lowercase()));
            if r.status != 400 || msg.is_empty() || !named {
                failures.push(format!(
                    "{method} {path} {body}\n    want 400 with error_msg naming one of {words:?}\n    got {} {}",
                    r.status, r.text
                ));
            }
        }
        let now = admin.get("routes/1").await.json;
        if now != self.route {
            failures.push(format!(
                "route 1 changed:\n    before {}\n    after  {now}",
                self.route
            ));
        }
        let list = admin.get("routes").await.json;
        if list["total"] != 1 {
            failures.push(format!("a rejected write stored something: {list}"));
        }
        let r = self.gw.get("/ok").await;
        if r.hit() != (200, Some("a")) {
            failures.push(format!(
                "previous config no longer serves: {} {}",
                r.status,
                r.text()
            ));
        }
        assert!(
            failures.is_empty(),
            "{} problem(s):\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

fn case<'a>((m, p, b): (Method, &'a str, String), words: &'a [&'a str]) -> Case<'a> {
    (m, p, b, words)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_and_empty_body() {
    let f = fixture().await;
    let json_words: &[&str] = &["json", "parse", "invalid", "expected", "eof", "body"];
    f.assert_all_rejected(vec![
        (
            Method::PUT,
            "routes/1",
            r#"{"uri": "/x","#.into(),
            json_words,
        ),
        (
            Method::PUT,
            "routes/1",
            "not json at all".into(),
            json_words,
        ),
        (Method::PUT, "routes/1", "".into(), json_words),
        (
            Method::PUT,
            "routes/1",
            "[1, 2]".into(),
            &["object", "expected", "invalid", "json"],
        ),
        (Method::POST, "routes", r#"{"uri": "/x""#.into(), json_words),
        (
            Method::PUT,
            "upstreams/u",
            r#"{"nodes": {"127.0.0.1:1": 1}"#.into(),
            json_words,
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_types_name_the_field() {
    let f = fixture().await;
    let n = json!({"nodes": {"127.0.0.1:1980": 1}});
    f.assert_all_rejected(vec![
        case(put_route(json!({"uri": 42, "upstream": n})), &["uri"]),
        case(
            put_route(json!({"uri": "/x", "methods": "GET", "upstream": n})),
            &["methods"],
        ),
        case(
            put_route(json!({"uri": "/x", "priority": "high", "upstream": n})),
            &["priority"],
        ),
        case(
            put_route(json!({"uri": "/x", "hosts": "a.com", "upstream": n})),
            &["hosts"],
        ),
        case(
            put_route(json!({"uri": "/x", "vars": {"a": 1}, "upstream": n})),
            &["vars"],
        ),
        case(
            put_route(json!({"uri": "/x", "upstream": "u1"})),
            &["upstream"],
        ),
        case(
            put_route(json!({"uri": "/x", "upstream": {"nodes": 5}})),
            &["nodes"],
        ),
        case(
            put_route(json!({"uri": "/x", "upstream": {"nodes": n["nodes"], "retries": "3"}})),
            &["retries"],
        ),
        case(
            put_route(json!({"uri": "/x", "plugins": [], "upstream": n})),
            &["plugins"],
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_name_the_field() {
    let f = fixture().await;
    let n = json!({"nodes": {"127.0.0.1:1980": 1}});
    f.assert_all_rejected(vec![
        case(
            put_route(json!({"uri": "/x", "bogus_field": 1, "upstream": n})),
            &["bogus_field"],
        ),
        case(
            put_route(json!({"uri": "/x", "upstream": {"nodez": {"127.0.0.1:1": 1}}})),
            &["nodez"],
        ),
        case(
            put_route(
                json!({"uri": "/x", "upstream": {"nodes": n["nodes"], "timeout": {"reed": 1}}}),
            ),
            &["reed"],
        ),
        (
            Method::POST,
            "routes",
            json!({"uri": "/x", "upstreem": n}).to_string(),
            &["upstreem"],
        ),
        (
            Method::PUT,
            "upstreams/u",
            json!({"nodes": n["nodes"], "wieght": 1}).to_string(),
            &["wieght"],
        ),
        (
            Method::PUT,
            "services/s",
            json!({"upstream": n, "extra": true}).to_string(),
            &["extra"],
        ),
        (
            Method::PUT,
            "consumers/jack",
            json!({"username": "jack", "pasword": "x"}).to_string(),
            &["pasword"],
        ),
    ])
    .await;
    let admin = f.gw.admin();
    for res in ["upstreams/u", "services/s", "consumers/jack"] {
        assert_eq!(
            admin.get(res).await.status,
            404,
            "{res} must not exist after a rejected PUT"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_plugin_names_the_plugin() {
    let f = fixture().await;
    let n = json!({"nodes": {"127.0.0.1:1980": 1}});
    f.assert_all_rejected(vec![
        case(
            put_route(json!({"uri": "/x", "plugins": {"no-such-plugin": {}}, "upstream": n})),
            &["no-such-plugin"],
        ),
        (
            Method::PUT,
            "services/s",
            json!({"upstream": n, "plugins": {"ghost-plugin": {}}}).to_string(),
            &["ghost-plugin"],
        ),
        (
            Method::PUT,
            "global_rules/g",
            json!({"plugins": {"phantom": {"x": 1}}}).to_string(),
            &["phantom"],
        ),
        (
            Method::PUT,
            "plugin_configs/p",
            json!({"plugins": {"imaginary": {}}}).to_string(),
            &["imaginary"],
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_references_are_rejected() {
    let f = fixture().await;
    f.assert_all_rejected(vec![
        case(put_route(json!({"uri": "/x", "upstream_id": "missing-up"})), &["missing-up", "upstream_id"]),
        case(put_route(json!({"uri": "/x", "service_id": "missing-svc"})), &["missing-svc", "service_id"]),
        case(
            put_route(json!({"uri": "/x", "plugin_config_id": "missing-pc", "upstream": {"nodes": {"127.0.0.1:1": 1}}})),
            &["missing-pc", "plugin_config_id"],
        ),
        (Method::PUT, "services/s", json!({"upstream_id": "missing-up"}).to_string(), &["missing-up", "upstream_id"]),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_vars_are_rejected() {
    let f = fixture().await;
    let n = json!({"nodes": {"127.0.0.1:1980": 1}});
    let route = |vars: Value| put_route(json!({"uri": "/x", "vars": vars, "upstream": n}));
    f.assert_all_rejected(vec![
        case(
            route(json!([["uri", "~~", "(["]])),
            &["regex", "vars", "(["],
        ),
        case(
            route(json!([["uri", "=~~", "x"]])),
            &["operator", "vars", "=~~"],
        ),
        case(route(json!([["uri"]])), &["vars"]),
        case(
            route(json!([["arg_a", "in", "not-a-list"]])),
            &["in", "vars"],
        ),
        case(route(json!(["uri", "==", "/x"])), &["vars"]),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_upstream_values_are_rejected() {
    let f = fixture().await;
    let bad = |extra: Value| (Method::PUT, "routes/1", with_upstream(&f, extra));
    f.assert_all_rejected(vec![
        case(
            bad(json!({"nodes": {"127.0.0.1:1980": -1}})),
            &["weight", "nodes"],
        ),
        case(
            bad(json!({"nodes": {"127.0.0.1:1980": "heavy"}})),
            &["weight", "nodes"],
        ),
        case(
            bad(json!({"nodes": [{"host": "127.0.0.1", "port": 1980, "weight": -5}]})),
            &["weight", "nodes"],
        ),
        case(
            bad(json!({"nodes": {"127.0.0.1:99999": 1}})),
            &["port", "nodes", "99999"],
        ),
        case(bad(json!({"type": "random"})), &["type", "random"]),
        case(
            bad(json!({"type": "chash", "hash_on": "bogus", "key": "uri"})),
            &["hash_on", "bogus"],
        ),
        case(bad(json!({"type": "chash"})), &["key"]),
        case(
            bad(json!({"timeout": {"connect": 1, "send": 1, "read": -1}})),
            &["read", "timeout"],
        ),
        case(
            bad(json!({"timeout": {"connect": 0, "send": 1, "read": 1}})),
            &["connect", "timeout"],
        ),
        case(bad(json!({"retries": -1})), &["retries"]),
        case(
            bad(json!({"keepalive_pool": {"size": 0, "idle_timeout": 60, "requests": 1000}})),
            &["size", "keepalive_pool"],
        ),
        case(bad(json!({"pass_host": "sideways"})), &["pass_host"]),
        case(bad(json!({"pass_host": "rewrite"})), &["upstream_host"]),
        case(bad(json!({"scheme": "gopher"})), &["scheme"]),
    ])
    .await;
    let r =
        f.gw.admin()
            .put("upstreams", "u", json!({"nodes": {"127.0.0.1:1": -1}}))
            .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        f.gw.admin().get("upstreams/u").await.status,
        404,
        "nothing stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_route_values_are_rejected() {
    let f = fixture().await;
    let n = json!({"nodes": {"127.0.0.1:1980": 1}});
    f.assert_all_rejected(vec![
        case(put_route(json!({"upstream": n})), &["uri"]),
        case(
            put_route(json!({"uri": "/x", "methods": ["FETCH"], "upstream": n})),
            &["methods", "fetch"],
        ),
        case(
            put_route(json!({"uri": "/x", "remote_addrs": ["not-an-ip"], "upstream": n})),
            &["remote_addrs", "not-an-ip"],
        ),
        case(
            put_route(json!({"uri": "/x", "remote_addrs": ["10.0.0.0/40"], "upstream": n})),
            &["remote_addrs", "10.0.0.0/40"],
        ),
        case(
            put_route(json!({"uri": "/x", "hosts": ["exa mple.com"], "upstream": n})),
            &["host"],
        ),
        case(
            put_route(json!({"uri": "/x", "status": 2, "upstream": n})),
            &["status"],
        ),
        case(put_route(json!({"uri": "", "upstream": n})), &["uri"]),
        case(
            put_route(json!({"uri": "/x", "upstream": n, "upstream_id": "u"})),
            &["upstream", "upstream_id"],
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ids_are_rejected() {
    let f = fixture().await;
    let body = json!({"uri": "/x", "upstream": {"nodes": {"127.0.0.1:1980": 1}}});
    let long = format!("routes/{}", "a".repeat(65));
    let mut with_other_id = body.clone();
    with_other_id["id"] = json!("2");
    f.assert_all_rejected(vec![
        (Method::PUT, "routes/bad$id", body.to_string(), &["id"]),
        (Method::PUT, "routes/bad%20id", body.to_string(), &["id"]),
        (Method::PUT, &long, body.to_string(), &["id"]),
        (Method::PUT, "routes/1", with_other_id.to_string(), &["id"]),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_patch_and_post_change_nothing() {
    let f = fixture().await;
    f.assert_all_rejected(vec![
        (
            Method::PATCH,
            "routes/1",
            json!({"uri": 5}).to_string(),
            &["uri"],
        ),
        (
            Method::PATCH,
            "routes/1",
            json!({"bogus": 1}).to_string(),
            &["bogus"],
        ),
        (
            Method::PATCH,
            "routes/1",
            json!({"upstream": {"nodes": {"127.0.0.1:1": -3}}}).to_string(),
            &["weight", "nodes"],
        ),
        (
            Method::PATCH,
            "routes/1",
            json!({"upstream_id": "nope"}).to_string(),
            &["nope", "upstream_id"],
        ),
        (
            Method::POST,
            "routes",
            json!({"uri": "/y", "methods": "GET"}).to_string(),
            &["methods"],
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_http_request_gets_400_and_gateway_keeps_serving() {
    let f = fixture().await;
    for garbage in [
        "GARBAGE\r\n\r\n",
        "GET /ok HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
    ] {
        let mut tcp = tokio::net::TcpStream::connect(f.gw.http_addr())
            .await
            .unwrap();
        tcp.write_all(garbage.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
        let head = String::from_utf8_lossy(&buf);
        assert!(head.starts_with("HTTP/1.1 400"), "{garbage:?} → {head:?}");
    }
    assert_eq!(f.gw.get("/ok").await.hit(), (200, Some("a")));
}
