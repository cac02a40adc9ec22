//! Router: every match kind (uri exact/prefix, uris, methods, hosts incl. wildcard, vars operators,
//! remote_addrs, status) and precedence (exact over prefix, longest prefix, priority), plus the 404 reply,
//! service/upstream references and h2c on the same port.

use reqwest::Method;
use support::*;

/// A gateway and one origin per name; route helpers send each route to the origin of that name.
async fn setup(names: &[&str]) -> (Gateway, Vec<Origin>) {
    let origins = names.iter().map(|n| origin(n).start()).collect();
    (gateway().start().await, origins)
}

/// `{"upstream": ...}` merged into `extra`, pointing at `o`.
fn to(o: &Origin, extra: Value) -> Value {
    let mut v = extra;
    v["upstream"] = upstream(&[o]);
    v
}

/// Which origin answered `GET path` with header `host` (if given), or the status when none did.
async fn who(gw: &Gateway, method: Method, path: &str, headers: &[(&str, &str)]) -> String {
    let mut rb = gw.request(method, path);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let r = send(rb).await;
    match r.origin() {
        Some(o) if r.status == 200 => o.to_string(),
        _ => r.status.to_string(),
    }
}

/// (path, request headers, expected `who` result).
type Expect<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

/// The expectations that did not hold, described.
async fn mismatches(gw: &Gateway, cases: &[Expect<'_>]) -> Vec<String> {
    let mut wrong = Vec::new();
    for (path, headers, want) in cases {
        let got = who(gw, Method::GET, path, headers).await;
        if got != *want {
            wrong.push(format!("{path} {headers:?}: want {want}, got {got}"));
        }
    }
    wrong
}

async fn get(gw: &Gateway, path: &str) -> String {
    who(gw, Method::GET, path, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_request_is_apisix_404() {
    let gw = gateway().start().await;
    let r = gw.get("/nothing/here").await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json(),
        json!({"error_msg": "404 Route Not Found"}),
        "body: {}",
        r.text()
    );
    assert!(
        r.header("content-type").is_some_and(|c| c.contains("json")),
        "{:?}",
        r.headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_uri_matches_only_that_path() {
    let (gw, o) = setup(&["a"]).await;
    gw.put_ok("routes", "1", to(&o[0], json!({"uri": "/exact"})))
        .await;
    assert_eq!(get(&gw, "/exact").await, "a");
    assert_eq!(
        get(&gw, "/exact?x=1").await,
        "a",
        "query string is not part of the uri"
    );
    assert_eq!(get(&gw, "/exact/more").await, "404");
    assert_eq!(get(&gw, "/exactly").await, "404");
    assert_eq!(get(&gw, "/").await, "404");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_uri_matches_everything_below() {
    let (gw, o) = setup(&["a"]).await;
    gw.put_ok("routes", "1", to(&o[0], json!({"uri": "/pre/*"})))
        .await;
    assert_eq!(get(&gw, "/pre/").await, "a");
    assert_eq!(get(&gw, "/pre/x").await, "a");
    assert_eq!(get(&gw, "/pre/x/y/z?q=1").await, "a");
    assert_eq!(get(&gw, "/prefix").await, "404");
    assert_eq!(get(&gw, "/other/pre/x").await, "404");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_beats_prefix_and_longest_prefix_wins() {
    let (gw, o) = setup(&["short", "long", "exact", "root"]).await;
    gw.put_ok("routes", "1", to(&o[0], json!({"uri": "/api/*"})))
        .await;
    gw.put_ok("routes", "2", to(&o[1], json!({"uri": "/api/v1/*"})))
        .await;
    gw.put_ok("routes", "3", to(&o[2], json!({"uri": "/api/v1/users"})))
        .await;
    gw.put_ok("routes", "4", to(&o[3], json!({"uri": "/*"})))
        .await;
    assert_eq!(get(&gw, "/api/v1/users").await, "exact");
    assert_eq!(get(&gw, "/api/v1/users/7").await, "long");
    assert_eq!(get(&gw, "/api/v1/other").await, "long");
    assert_eq!(get(&gw, "/api/v2/x").await, "short");
    assert_eq!(get(&gw, "/elsewhere").await, "root");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uris_list_matches_any_entry() {
    let (gw, o) = setup(&["a"]).await;
    gw.put_ok(
        "routes",
        "1",
        to(&o[0], json!({"uris": ["/one", "/two/*"]})),
    )
    .await;
    assert_eq!(get(&gw, "/one").await, "a");
    assert_eq!(get(&gw, "/two/x").await, "a");
    assert_eq!(get(&gw, "/three").await, "404");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_decides_between_same_uri_and_can_be_changed() {
    let (gw, o) = setup(&["low", "high"]).await;
    gw.put_ok(
        "routes",
        "low",
        to(&o[0], json!({"uri": "/p", "priority": 1})),
    )
    .await;
    gw.put_ok(
        "routes",
        "high",
        to(&o[1], json!({"uri": "/p", "priority": 10})),
    )
    .await;
    assert_eq!(get(&gw, "/p").await, "high");
    gw.admin()
        .patch("routes", "low", json!({"priority": 20}))
        .await
        .ok();
    eventually(
        "priority change applies",
        Duration::from_secs(1),
        || async { get(&gw, "/p").await == "low" },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_route_that_does_not_match_falls_through() {
    let (gw, o) = setup(&["any", "post"]).await;
    gw.put_ok(
        "routes",
        "1",
        to(&o[0], json!({"uri": "/f", "priority": 0})),
    )
    .await;
    gw.put_ok(
        "routes",
        "2",
        to(
            &o[1],
            json!({"uri": "/f", "priority": 5, "methods": ["POST"]}),
        ),
    )
    .await;
    assert_eq!(who(&gw, Method::POST, "/f", &[]).await, "post");
    assert_eq!(who(&gw, Method::GET, "/f", &[]).await, "any");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_restrict_matching() {
    let (gw, o) = setup(&["a", "all"]).await;
    gw.put_ok(
        "routes",
        "1",
        to(&o[0], json!({"uri": "/m", "methods": ["GET", "POST"]})),
    )
    .await;
    gw.put_ok("routes", "2", to(&o[1], json!({"uri": "/any"})))
        .await;
    assert_eq!(who(&gw, Method::GET, "/m", &[]).await, "a");
    assert_eq!(who(&gw, Method::POST, "/m", &[]).await, "a");
    assert_eq!(who(&gw, Method::DELETE, "/m", &[]).await, "404");
    assert_eq!(who(&gw, Method::PUT, "/m", &[]).await, "404");
    for m in [
        Method::GET,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
    ] {
        assert_eq!(
            who(&gw, m.clone(), "/any", &[]).await,
            "all",
            "no methods = every method ({m})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_exact_and_wildcard() {
    let (gw, o) = setup(&["api", "wild", "nohost"]).await;
    gw.put_ok(
        "routes",
        "1",
        to(&o[0], json!({"uri": "/h", "host": "api.example.com"})),
    )
    .await;
    gw.put_ok(
        "routes",
        "2",
        to(
            &o[1],
            json!({"uri": "/h", "hosts": ["*.example.org", "b.test"]}),
        ),
    )
    .await;
    let h = |host: &'static str| [("host", host)];
    assert_eq!(
        who(&gw, Method::GET, "/h", &h("api.example.com")).await,
        "api"
    );
    assert_eq!(
        who(&gw, Method::GET, "/h", &h("api.example.com:9080")).await,
        "api",
        "port is ignored"
    );
    assert_eq!(
        who(&gw, Method::GET, "/h", &h("API.Example.COM")).await,
        "api",
        "host is case-insensitive"
    );
    assert_eq!(
        who(&gw, Method::GET, "/h", &h("x.example.org")).await,
        "wild"
    );
    assert_eq!(
        who(&gw, Method::GET, "/h", &h("a.b.example.org")).await,
        "wild"
    );
    assert_eq!(who(&gw, Method::GET, "/h", &h("b.test")).await, "wild");
    assert_eq!(
        who(&gw, Method::GET, "/h", &h("example.org")).await,
        "404",
        "wildcard needs a label"
    );
    assert_eq!(who(&gw, Method::GET, "/h", &h("other.com")).await, "404");
    assert_eq!(
        who(&gw, Method::GET, "/h", &h("xapi.example.com")).await,
        "404"
    );
    gw.put_ok("routes", "3", to(&o[2], json!({"uri": "/h"})))
        .await;
    assert_eq!(who(&gw, Method::GET, "/h", &h("other.com")).await, "nohost");
    assert_eq!(
        who(&gw, Method::GET, "/h", &h("api.example.com")).await,
        "api",
        "host route still wins"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vars_comparison_operators() {
    let (gw, o) = setup(&["v"]).await;
    let routes = [
        ("eq", json!([["arg_name", "==", "json"]])),
        ("ne", json!([["http_x_ver", "~=", "1"]])),
        ("gt", json!([["arg_n", ">", 10]])),
        ("lt", json!([["arg_n", "<", "10"]])),
        ("in", json!([["cookie_session", "in", ["a", "b"]]])),
        ("not", json!([["arg_x", "!", "==", "1"]])),
        (
            "and",
            json!([["arg_a", "==", "1"], ["http_x_b", "==", "2"]]),
        ),
    ];
    for (id, vars) in routes {
        gw.put_ok(
            "routes",
            id,
            to(&o[0], json!({"uri": format!("/v/{id}"), "vars": vars})),
        )
        .await;
    }
    let cases: &[Expect] = &[
        ("/v/eq?name=json", &[], "v"),
        ("/v/eq?name=xml", &[], "404"),
        ("/v/eq", &[], "404"),
        ("/v/ne", &[("x-ver", "2")], "v"),
        ("/v/ne", &[("x-ver", "1")], "404"),
        ("/v/gt?n=11", &[], "v"),
        ("/v/gt?n=9", &[], "404"), // numeric, not string, comparison ("9" > "10" as strings)
        ("/v/gt?n=10", &[], "404"),
        ("/v/lt?n=9", &[], "v"),
        ("/v/lt?n=100", &[], "404"),
        ("/v/in", &[("cookie", "session=b; other=1")], "v"),
        ("/v/in", &[("cookie", "session=c")], "404"),
        ("/v/not?x=2", &[], "v"),
        ("/v/not?x=1", &[], "404"),
        ("/v/and?a=1", &[("x-b", "2")], "v"),
        ("/v/and?a=1", &[("x-b", "3")], "404"),
        ("/v/and", &[("x-b", "2")], "404"),
    ];
    let wrong = mismatches(&gw, cases).await;
    assert!(wrong.is_empty(), "vars mismatches:\n{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vars_regex_has_and_builtin_variables() {
    let (gw, o) = setup(&["v"]).await;
    let routes = [
        ("re", json!([["uri", "~~", "^/v/re/[0-9]+$"]]), "/v/re/*"),
        ("has", json!([["http_x_tags", "has", "beta"]]), "/v/has"),
        ("host", json!([["host", "==", "h.test"]]), "/v/host"),
        (
            "addr",
            json!([["remote_addr", "==", "127.0.0.1"]]),
            "/v/addr",
        ),
        (
            "noaddr",
            json!([["remote_addr", "==", "10.1.1.1"]]),
            "/v/noaddr",
        ),
    ];
    for (id, vars, uri) in routes {
        gw.put_ok("routes", id, to(&o[0], json!({"uri": uri, "vars": vars})))
            .await;
    }
    let cases: &[Expect] = &[
        ("/v/re/123", &[], "v"),
        ("/v/re/12a", &[], "404"),
        ("/v/host", &[("host", "h.test")], "v"),
        ("/v/host", &[("host", "g.test")], "404"),
        ("/v/addr", &[], "v"),
        ("/v/noaddr", &[], "404"),
        ("/v/has", &[("x-tags", "beta")], "v"),
        ("/v/has", &[("x-tags", "alpha")], "404"),
    ];
    let mut wrong = mismatches(&gw, cases).await;
    // `has` over a header sent twice: the values form a list that contains "beta".
    let r = send(
        gw.request(Method::GET, "/v/has")
            .header("x-tags", "alpha")
            .header("x-tags", "beta"),
    )
    .await;
    if r.status != 200 {
        wrong.push(format!(
            "/v/has with x-tags: alpha + x-tags: beta: want 200, got {}",
            r.status
        ));
    }
    assert!(wrong.is_empty(), "vars mismatches:\n{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_addrs_match_client_ip_and_cidr() {
    let (gw, o) = setup(&["two", "net", "ten"]).await;
    gw.put_ok(
        "routes",
        "1",
        to(
            &o[0],
            json!({"uri": "/ip", "remote_addrs": ["127.0.0.2"], "priority": 2}),
        ),
    )
    .await;
    gw.put_ok(
        "routes",
        "2",
        to(
            &o[1],
            json!({"uri": "/ip", "remote_addrs": ["127.0.0.0/24"], "priority": 1}),
        ),
    )
    .await;
    gw.put_ok(
        "routes",
        "3",
        to(
            &o[2],
            json!({"uri": "/ten", "remote_addrs": ["10.0.0.0/8"]}),
        ),
    )
    .await;
    let from = |ip: &str| {
        reqwest::Client::builder()
            .no_proxy()
            .local_address(ip.parse::<std::net::IpAddr>().unwrap())
            .build()
            .unwrap()
    };
    let r = send(from("127.0.0.2").get(gw.url("/ip"))).await;
    assert_eq!(r.hit(), (200, Some("two")));
    let r = send(from("127.0.0.1").get(gw.url("/ip"))).await;
    assert_eq!(r.hit(), (200, Some("net")), "127.0.0.1 is only in the /24");
    let r = send(from("127.0.1.1").get(gw.url("/ip"))).await;
    assert_eq!(r.status, 404, "127.0.1.1 is in neither");
    assert_eq!(
        send(from("127.0.0.1").get(gw.url("/ten"))).await.status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_route_does_not_match_until_enabled() {
    let (gw, o) = setup(&["a"]).await;
    gw.put_ok("routes", "1", to(&o[0], json!({"uri": "/s", "status": 0})))
        .await;
    assert_eq!(get(&gw, "/s").await, "404");
    gw.admin()
        .patch("routes", "1", json!({"status": 1}))
        .await
        .ok();
    eventually("enabled route matches", Duration::from_secs(1), || async {
        get(&gw, "/s").await == "a"
    })
    .await;
    assert_eq!(
        o[0].request_count(),
        1,
        "the disabled route never reached the origin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_uses_upstream_id_and_service_and_overrides_service_upstream() {
    let (gw, o) = setup(&["byid", "bysvc", "own"]).await;
    gw.put_ok("upstreams", "u", upstream(&[&o[0]])).await;
    gw.put_ok("services", "s", json!({"upstream": upstream(&[&o[1]])}))
        .await;
    gw.put_ok("routes", "1", json!({"uri": "/id", "upstream_id": "u"}))
        .await;
    gw.put_ok("routes", "2", json!({"uri": "/svc", "service_id": "s"}))
        .await;
    gw.put_ok(
        "routes",
        "3",
        to(&o[2], json!({"uri": "/own", "service_id": "s"})),
    )
    .await;
    assert_eq!(get(&gw, "/id").await, "byid");
    assert_eq!(get(&gw, "/svc").await, "bysvc");
    assert_eq!(
        get(&gw, "/own").await,
        "own",
        "the route's upstream overrides its service's"
    );

    gw.put_ok("services", "s", json!({"upstream_id": "u"}))
        .await;
    eventually(
        "service change reaches its routes",
        Duration::from_secs(1),
        || async { get(&gw, "/svc").await == "byid" },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_on_the_same_port() {
    let (gw, o) = setup(&["a"]).await;
    gw.put_ok("routes", "1", to(&o[0], json!({"uri": "/h2"})))
        .await;
    let r = send(h2c_client().post(gw.url("/h2?x=1")).body("hello")).await;
    assert_eq!(r.version, http::Version::HTTP_2);
    assert_eq!(r.hit(), (200, Some("a")));
    let rec = o[0].last().unwrap();
    assert_eq!(
        (rec.method.as_str(), rec.path.as_str(), rec.query.as_deref()),
        ("POST", "/h2", Some("x=1"))
    );
    assert_eq!(rec.body_len, 5);
    assert_eq!(send(h2c_client().get(gw.url("/none"))).await.status, 404);
    assert_eq!(
        gw.get("/h2").await.version,
        http::Version::HTTP_11,
        "HTTP/1.1 still works"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_path_query_and_body_reach_the_origin_intact() {
    let (gw, o) = setup(&["a"]).await;
    gw.put_ok("routes", "1", to(&o[0], json!({"uri": "/x/*"})))
        .await;
    let r = send(
        gw.request(Method::PUT, "/x/a%20b/c?k=v&k=w&e=%2F")
            .header("x-custom", "1")
            .body(vec![7u8; 12345]),
    )
    .await;
    assert_eq!(r.status, 200);
    let rec = o[0].last().unwrap();
    assert_eq!(rec.method, "PUT");
    assert_eq!(rec.path, "/x/a%20b/c");
    assert_eq!(rec.query.as_deref(), Some("k=v&k=w&e=%2F"));
    assert_eq!(rec.header("x-custom"), Some("1"));
    assert_eq!(rec.body_len, 12345);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_added() {
    let (gw, o) = setup(&["a"]).await;
    gw.put_ok("routes", "1", to(&o[0], json!({"uri": "/fw"})))
        .await;
    send(gw.request(Method::GET, "/fw").header("host", "shop.test")).await;
    let rec = o[0].last().unwrap();
    assert_eq!(rec.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(rec.header("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(rec.header("x-forwarded-proto"), Some("http"));
    assert_eq!(rec.header("x-forwarded-host"), Some("shop.test"));

    send(
        gw.request(Method::GET, "/fw")
            .header("x-forwarded-for", "203.0.113.9"),
    )
    .await;
    let xff = o[0]
        .last()
        .unwrap()
        .header_all("x-forwarded-for")
        .join(", ");
    assert_eq!(
        xff, "203.0.113.9, 127.0.0.1",
        "the client address is appended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_stripped_both_ways() {
    let o = origin("a")
        .header("connection", "x-hop-resp")
        .header("x-hop-resp", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-authenticate", "Basic")
        .header("x-end-to-end", "kept")
        .start();
    let gw = gateway().start().await;
    gw.put_ok("routes", "1", to(&o, json!({"uri": "/hop"})))
        .await;
    let r = send(
        gw.request(Method::GET, "/hop")
            .header("connection", "keep-alive, x-secret")
            .header("x-secret", "s")
            .header("keep-alive", "timeout=5")
            .header("te", "trailers")
            .header("trailer", "x-t")
            .header("proxy-authorization", "Basic abc")
            .header("proxy-connection", "keep-alive")
            .header("x-normal", "n"),
    )
    .await;
    assert_eq!(r.status, 200);
    let rec = o.last().unwrap();
    for h in [
        "x-secret",
        "keep-alive",
        "te",
        "trailer",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert_eq!(
            rec.header(h),
            None,
            "request hop-by-hop header {h} reached the origin"
        );
    }
    assert!(
        rec.header("connection")
            .is_none_or(|c| !c.contains("x-secret")),
        "client's Connection header was forwarded: {:?}",
        rec.header("connection")
    );
    assert_eq!(rec.header("x-normal"), Some("n"));
    for h in ["x-hop-resp", "keep-alive", "proxy-authenticate"] {
        assert_eq!(
            r.header(h),
            None,
            "response hop-by-hop header {h} reached the client"
        );
    }
    assert_eq!(r.header("x-end-to-end"), Some("kept"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_host_pass_node_and_rewrite() {
    let (gw, o) = setup(&["a"]).await;
    let node = o[0].node();
    let up = |extra: Value| {
        let mut u = upstream(&[&o[0]]);
        u.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        u
    };
    gw.put_ok(
        "routes",
        "1",
        json!({"uri": "/pass", "upstream": up(json!({}))}),
    )
    .await;
    gw.put_ok(
        "routes",
        "2",
        json!({"uri": "/node", "upstream": up(json!({"pass_host": "node"}))}),
    )
    .await;
    gw.put_ok(
        "routes",
        "3",
        json!({"uri": "/rw", "upstream": up(json!({"pass_host": "rewrite", "upstream_host": "internal.svc"}))}),
    )
    .await;
    let host_seen = |path: &'static str| {
        let gw = &gw;
        let o = &o[0];
        async move {
            send(gw.request(Method::GET, path).header("host", "public.test")).await;
            o.last().unwrap().header("host").map(str::to_string)
        }
    };
    assert_eq!(
        host_seen("/pass").await.as_deref(),
        Some("public.test"),
        "pass is the default"
    );
    assert_eq!(host_seen("/node").await, Some(node));
    assert_eq!(host_seen("/rw").await.as_deref(), Some("internal.svc"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn star_without_slash_is_a_plain_string_prefix() {
    // radixtree (APISIX): `/bar*` matches every path that starts with `/bar`.
    let (gw, o) = setup(&["a"]).await;
    gw.put_ok("routes", "1", to(&o[0], json!({"uri": "/bar*"})))
        .await;
    assert_eq!(get(&gw, "/bar").await, "a");
    assert_eq!(get(&gw, "/barn").await, "a");
    assert_eq!(get(&gw, "/bar/x").await, "a");
    assert_eq!(get(&gw, "/ba").await, "404");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_cannot_escape_a_prefix_route() {
    // Only /public/* is exposed. A raw `/public/../secret` must not reach the origin as a path that resolves
    // outside /public/ (origins commonly normalise it to /secret).
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (gw, o) = setup(&["pub"]).await;
    gw.put_ok("routes", "1", to(&o[0], json!({"uri": "/public/*"})))
        .await;
    let mut escaped = Vec::new();
    for raw in [
        "/public/../secret",
        "/public/%2e%2e/secret",
        "/public/./../secret",
    ] {
        let mut tcp = tokio::net::TcpStream::connect(gw.http_addr())
            .await
            .unwrap();
        let req = format!("GET {raw} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
        let head = String::from_utf8_lossy(&buf);
        if head.starts_with("HTTP/1.1 200") {
            let seen = o[0].last().unwrap().path;
            let escapes = seen
                .split('/')
                .any(|s| s == ".." || s.eq_ignore_ascii_case("%2e%2e"));
            if escapes {
                escaped.push(format!("{raw} was proxied to the origin as {seen}"));
            }
        }
    }
    assert!(escaped.is_empty(), "{}", escaped.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cannot_spoof_x_real_ip() {
    let (gw, o) = setup(&["a"]).await;
    gw.put_ok("routes", "1", to(&o[0], json!({"uri": "/ip"})))
        .await;
    send(
        gw.request(Method::GET, "/ip")
            .header("x-real-ip", "6.6.6.6"),
    )
    .await;
    assert_eq!(o[0].last().unwrap().header_all("x-real-ip"), ["127.0.0.1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_status_headers_and_head_pass_through() {
    let o = origin("a")
        .header("set-cookie", "a=1; Path=/")
        .header("set-cookie", "b=2; Path=/")
        .header("cache-control", "no-store")
        .body("hello")
        .start();
    let gw = gateway().start().await;
    gw.put_ok("routes", "1", to(&o, json!({"uri": "/r"}))).await;
    let r = gw.get("/r").await;
    let cookies: Vec<_> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        cookies,
        ["a=1; Path=/", "b=2; Path=/"],
        "repeated headers are kept apart, in order"
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.text(), "hello");

    let head = send(gw.request(Method::HEAD, "/r")).await;
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(o.last().unwrap().method, "HEAD");
    for code in ["204", "301", "304", "503"] {
        let r = send(gw.request(Method::GET, "/r").header("x-status", code)).await;
        assert_eq!(r.status.to_string(), code);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostname_nodes_are_resolved() {
    let (gw, o) = setup(&["a"]).await;
    let node = format!("localhost:{}", o[0].addr().port());
    gw.put_ok(
        "routes",
        "1",
        json!({"uri": "/dns", "upstream": {"nodes": {node.clone(): 1}}}),
    )
    .await;
    assert_eq!(get(&gw, "/dns").await, "a");
    let list = json!([{"host": "localhost", "port": o[0].addr().port(), "weight": 1}]);
    gw.put_ok(
        "routes",
        "2",
        json!({"uri": "/dns2", "upstream": {"nodes": list, "pass_host": "node"}}),
    )
    .await;
    assert_eq!(get(&gw, "/dns2").await, "a");
    assert_eq!(
        o[0].last().unwrap().header("host"),
        Some(node.as_str()),
        "pass_host node sends host:port"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_routes_each_route_to_their_own_target() {
    use futures_util::{stream, StreamExt};
    let (gw, o) = setup(&["even", "odd"]).await;
    let admin = gw.admin();
    let results: Vec<u16> = stream::iter(0..400)
        .map(|i| {
            let (admin, target) = (admin.clone(), &o[i % 2]);
            let uri = if i % 4 < 2 {
                format!("/svc{i}/item")
            } else {
                format!("/svc{i}/*")
            };
            async move {
                admin
                    .put("routes", &format!("r{i}"), to(target, json!({"uri": uri})))
                    .await
                    .status
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert!(
        results.iter().all(|s| (200..300).contains(s)),
        "{results:?}"
    );
    assert_eq!(admin.get("routes").await.json["total"], 400);
    for i in (0..400).step_by(7) {
        let path = if i % 4 < 2 {
            format!("/svc{i}/item")
        } else {
            format!("/svc{i}/deep/path")
        };
        let want = if i % 2 == 0 { "even" } else { "odd" };
        assert_eq!(get(&gw, &path).await, want, "{path}");
    }
    assert_eq!(get(&gw, "/svc0/other").await, "404");
    assert_eq!(get(&gw, "/svc400/item").await, "404");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (gw, o) = setup(&["a", "b"]).await;
    gw.put_ok("routes", "1", to(&o[0], json!({"uri": "/one"})))
        .await;
    gw.put_ok("routes", "2", to(&o[1], json!({"uri": "/two"})))
        .await;
    let mut tcp = tokio::net::TcpStream::connect(gw.http_addr())
        .await
        .unwrap();
    let reqs = "GET /one HTTP/1.1\r\nHost: x\r\nx-delay-ms: 200\r\n\r\n\
                GET /two HTTP/1.1\r\nHost: x\r\n\r\n\
                GET /none HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    tcp.write_all(reqs.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    // Each response: its status line, then (for proxied ones) the x-origin header.
    let order: Vec<&str> = text
        .split("HTTP/1.1 ")
        .skip(1)
        .flat_map(|resp| {
            let status = resp.lines().next().unwrap_or("");
            let origin = resp.lines().find_map(|l| l.strip_prefix("x-origin: "));
            std::iter::once(status).chain(origin)
        })
        .collect();
    assert_eq!(
        order,
        ["200 OK", "a", "200 OK", "b", "404 Not Found"],
        "{text}"
    );
}
