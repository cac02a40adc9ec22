//! Router-level tests: precedence, fall-through, each condition kind and
//! build errors.

use http::Method;
use serde_json::json;

use super::*;

type Spec = RouteSpec<&'static str>;

fn build(specs: Vec<Spec>) -> Router<&'static str> {
    Router::build(specs).unwrap_or_else(|e| panic!("build failed: {e}"))
}

fn get(r: &Router<&'static str>, path: &str) -> Option<&'static str> {
    r.find(&Method::GET, Some("example.com"), path, &NoVars)
        .copied()
}

fn build_err(specs: Vec<Spec>) -> String {
    match Router::build(specs) {
        Ok(_) => panic!("build should fail"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn module_doc_example() {
    let r = build(vec![
        Spec::new("1", "/blog/*", "r1"),
        Spec::new("2", "/blog/foo/*", "r2").methods([Method::GET]),
        Spec::new("3", "/blog/foo/*", "r3")
            .priority(10)
            .vars(json!([["arg_v", "==", "2"]])),
        Spec::new("4", "/blog/foo/bar", "r4"),
    ]);
    let v2 = [("arg_v", "2")];
    let find = |m: Method, p: &str, vars: &dyn VarSource| r.find(&m, None, p, vars).copied();
    assert_eq!(find(Method::GET, "/blog/foo/bar", &v2), Some("r4"));
    assert_eq!(find(Method::GET, "/blog/foo/x", &v2), Some("r3"));
    assert_eq!(find(Method::GET, "/blog/foo/x", &NoVars), Some("r2"));
    assert_eq!(find(Method::POST, "/blog/foo/x", &NoVars), Some("r1"));
    assert_eq!(find(Method::GET, "/blog", &NoVars), None);
}

#[test]
fn exact_match_only_matches_exactly() {
    let r = build(vec![Spec::new("1", "/a/b", "exact")]);
    assert_eq!(get(&r, "/a/b"), Some("exact"));
    assert_eq!(get(&r, "/a/b/"), None);
    assert_eq!(get(&r, "/a/bc"), None);
    assert_eq!(get(&r, "/a"), None);
    assert_eq!(get(&r, "/A/B"), None, "paths are case-sensitive");
}

#[test]
fn query_string_is_ignored() {
    let r = build(vec![Spec::new("1", "/a/b", "exact")]);
    assert_eq!(get(&r, "/a/b?x=1"), Some("exact"));
}

#[test]
fn prefix_semantics() {
    let r = build(vec![
        Spec::new("1", "/foo/*", "slash"),
        Spec::new("2", "/bar*", "bare"),
    ]);
    assert_eq!(get(&r, "/foo/"), Some("slash"));
    assert_eq!(get(&r, "/foo/anything/deeper"), Some("slash"));
    assert_eq!(get(&r, "/foo"), None, "/foo/* does not match /foo");
    assert_eq!(get(&r, "/foobar"), None);
    assert_eq!(get(&r, "/bar"), Some("bare"));
    assert_eq!(get(&r, "/bar/x"), Some("bare"));
    assert_eq!(get(&r, "/barfoo"), Some("bare"));
    assert_eq!(get(&r, "/ba"), None);
}

#[test]
fn root_wildcard_matches_everything() {
    let r = build(vec![Spec::new("1", "/*", "all")]);
    for p in ["/", "/a", "/a/b/c", "/?q"] {
        assert_eq!(get(&r, p), Some("all"), "{p}");
    }
}

#[test]
fn exact_beats_prefix_and_longest_prefix_wins() {
    // APISIX router-radixtree doc table.
    let r = build(vec![
        Spec::new("1", "/blog/foo/*", "foo"),
        Spec::new("2", "/blog/foo/a/*", "foo-a"),
        Spec::new("3", "/blog/foo/c/*", "foo-c"),
        Spec::new("4", "/blog/foo/bar", "bar"),
        // Higher priority must not let a shorter prefix beat a longer one.
        Spec::new("5", "/blog/*", "blog").priority(100),
    ]);
    assert_eq!(get(&r, "/blog/foo/bar"), Some("bar"));
    assert_eq!(get(&r, "/blog/foo/a/b/c"), Some("foo-a"));
    assert_eq!(get(&r, "/blog/foo/c/d"), Some("foo-c"));
    assert_eq!(get(&r, "/blog/foo/gloo"), Some("foo"));
    assert_eq!(get(&r, "/blog/bar"), Some("blog"));
    assert_eq!(get(&r, "/other"), None);
}

#[test]
fn priority_orders_same_uri_then_id() {
    let r = build(vec![
        Spec::new("a", "/x", "low").priority(-1),
        Spec::new("b", "/x", "high").priority(5),
        Spec::new("c", "/x", "mid"),
    ]);
    assert_eq!(get(&r, "/x"), Some("high"));

    // Equal priority: numeric ids by value ("9" < "10"), regardless of input order.
    let r = build(vec![
        Spec::new("10", "/x", "ten"),
        Spec::new("9", "/x", "nine"),
    ]);
    assert_eq!(get(&r, "/x"), Some("nine"));
    let r = build(vec![
        Spec::new("b", "/p/*", "b"),
        Spec::new("a", "/p/*", "a"),
    ]);
    assert_eq!(get(&r, "/p/1"), Some("a"));
    let r = build(vec![
        Spec::new("z", "/x", "name"),
        Spec::new("100", "/x", "num"),
    ]);
    assert_eq!(get(&r, "/x"), Some("num"));
}

#[test]
fn fall_through_same_uri_then_shorter_prefix() {
    let r = build(vec![
        Spec::new("1", "/api/*", "api"),
        Spec::new("2", "/api/v1/*", "v1-post")
            .methods([Method::POST])
            .priority(2),
        Spec::new("3", "/api/v1/*", "v1-host")
            .hosts(["svc.local"])
            .priority(1),
        Spec::new("4", "/api/v1/users", "users").methods([Method::DELETE]),
    ]);
    let find = |m: Method, h: &str| r.find(&m, Some(h), "/api/v1/users", &NoVars).copied();
    assert_eq!(find(Method::DELETE, "x"), Some("users"));
    assert_eq!(find(Method::POST, "svc.local"), Some("v1-post"));
    assert_eq!(find(Method::GET, "svc.local"), Some("v1-host"));
    assert_eq!(find(Method::GET, "other"), Some("api"));
}

#[test]
fn method_filtering() {
    let r = build(vec![
        Spec::new("1", "/m", "gp").methods([Method::GET, Method::POST])
    ]);
    let find = |m: Method| r.find(&m, None, "/m", &NoVars).copied();
    assert_eq!(find(Method::GET), Some("gp"));
    assert_eq!(find(Method::POST), Some("gp"));
    assert_eq!(find(Method::PUT), None);
    assert_eq!(find(Method::HEAD), None, "HEAD is not implied by GET");
    let any = build(vec![Spec::new("1", "/m", "any")]);
    assert_eq!(any.find(&Method::PATCH, None, "/m", &NoVars), Some(&"any"));
    let ext = Method::from_bytes(b"PURGE").expect("valid method");
    let r = build(vec![Spec::new("1", "/m", "purge").methods([ext.clone()])]);
    assert_eq!(r.find(&ext, None, "/m", &NoVars), Some(&"purge"));
    assert_eq!(r.find(&Method::GET, None, "/m", &NoVars), None);
}

#[test]
fn host_matching() {
    let r = build(vec![
        Spec::new("1", "/h", "exact").hosts(["API.example.com"]),
        Spec::new("2", "/h", "wild").hosts(["*.example.com"]),
        Spec::new("3", "/h", "fallback").hosts(["other.org", "example.com"]),
    ]);
    let find = |h: Option<&str>| r.find(&Method::GET, h, "/h", &NoVars).copied();
    assert_eq!(find(Some("api.example.com")), Some("exact"));
    assert_eq!(
        find(Some("api.EXAMPLE.com:8443")),
        Some("exact"),
        "port ignored"
    );
    assert_eq!(find(Some("a.b.example.com")), Some("wild"));
    assert_eq!(find(Some("web.example.com:80")), Some("wild"));
    assert_eq!(find(Some("example.com")), Some("fallback"));
    assert_eq!(find(Some("other.org")), Some("fallback"));
    assert_eq!(find(Some("example.org")), None);
    assert_eq!(find(None), None, "hosts set but no host given");
    let any = build(vec![Spec::new("1", "/h", "any")]);
    assert_eq!(any.find(&Method::GET, None, "/h", &NoVars), Some(&"any"));
}

#[test]
fn remote_addr_matching() {
    let r = build(vec![
        Spec::new("1", "/r", "lan").remote_addrs(["192.168.0.0/16", "::1"]),
        Spec::new("2", "/r", "rest").priority(-1),
    ]);
    let find = |addr: &str| {
        r.find(&Method::GET, None, "/r", &[("remote_addr", addr)])
            .copied()
    };
    assert_eq!(find("192.168.3.4"), Some("lan"));
    assert_eq!(find("::1"), Some("lan"));
    assert_eq!(find("10.0.0.1"), Some("rest"));
    assert_eq!(find("garbage"), Some("rest"));
    assert_eq!(r.find(&Method::GET, None, "/r", &NoVars), Some(&"rest"));
}

#[test]
fn vars_condition_on_route() {
    let r = build(vec![
        Spec::new("1", "/v", "json").vars(json!([
            ["arg_fmt", "==", "json"],
            ["http_x_a", "~~", "^a.*"]
        ])),
        Spec::new("2", "/v", "null-vars")
            .vars(serde_json::Value::Null)
            .priority(-1),
    ]);
    let hit = [("arg_fmt", "json"), ("http_x_a", "abc")];
    let miss = [("arg_fmt", "json"), ("http_x_a", "xyz")];
    assert_eq!(r.find(&Method::GET, None, "/v", &hit), Some(&"json"));
    assert_eq!(r.find(&Method::GET, None, "/v", &miss), Some(&"null-vars"));
}

#[test]
fn multiple_uris_per_route() {
    let r = build(vec![
        Spec::new("1", "/foo", "foo").uris(["/foo", "/foo/*", "/foo"])
    ]);
    assert_eq!(get(&r, "/foo"), Some("foo"));
    assert_eq!(get(&r, "/foo/x"), Some("foo"));
    assert_eq!(get(&r, "/foox"), None);
    assert_eq!(r.len(), 1);
}

#[test]
fn find_match_reports_id_and_len() {
    let r = build(vec![Spec::new("7", "/a", "A"), Spec::new("8", "/b", "B")]);
    let m = r.find_match(&Method::GET, None, "/b", &NoVars);
    assert_eq!(m.map(|m| (m.id, *m.target)), Some(("8", "B")));
    assert_eq!(r.len(), 2);
    assert!(!r.is_empty());
    let empty: Router<()> = Router::build(Vec::new()).unwrap_or_default();
    assert!(empty.is_empty());
    assert_eq!(empty.find(&Method::GET, None, "/", &NoVars), None);
}

#[test]
fn many_routes_each_reachable() {
    let mut specs = Vec::new();
    for i in 0..2000 {
        specs.push(RouteSpec::new(
            format!("p{i}"),
            format!("/api/v1/svc{i}/items/*"),
            i,
        ));
        specs.push(RouteSpec::new(
            format!("e{i}"),
            format!("/api/v1/svc{i}/health"),
            10_000 + i,
        ));
    }
    let r = Router::build(specs).unwrap_or_else(|e| panic!("{e}"));
    for i in (0..2000).step_by(7) {
        let p = format!("/api/v1/svc{i}/items/42");
        assert_eq!(r.find(&Method::GET, None, &p, &NoVars), Some(&i), "{p}");
        let e = format!("/api/v1/svc{i}/health");
        assert_eq!(
            r.find(&Method::GET, None, &e, &NoVars),
            Some(&(10_000 + i)),
            "{e}"
        );
    }
    assert_eq!(
        r.find(&Method::GET, None, "/api/v1/svc2000/items/1", &NoVars),
        None
    );
    assert_eq!(
        r.find(&Method::GET, None, "/api/v1/svc1/items", &NoVars),
        None
    );
}

#[test]
fn router_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Router<std::sync::Arc<String>>>();
}

#[test]
fn build_errors_name_route_and_field() {
    assert_eq!(
        build_err(vec![Spec::new("7", "api", "x")]),
        "route 7: uris[0]: must start with \"/\""
    );
    assert_eq!(
        build_err(vec![Spec::new("7", "/ok", "x").uris(["/ok", "/a/*/b"])]),
        "route 7: uris[1]: \"*\" is only allowed as the last character (prefix match); path parameters are not supported"
    );
    assert_eq!(
        build_err(vec![Spec::new("7", "/ok", "x").uris(Vec::<String>::new())]),
        "route 7: uris: at least one uri is required"
    );
    let e = build_err(vec![
        Spec::new("7", "/ok", "x").vars(json!([["arg_a", "==", "1"], ["arg_b", "~~", "(["]]))
    ]);
    assert!(
        e.starts_with("route 7: vars[1]: invalid regex \"([\": "),
        "{e}"
    );
    assert_eq!(
        build_err(vec![
            Spec::new("7", "/ok", "x").vars(json!([["arg_a", "=~", "1"]]))
        ]),
        "route 7: vars[0]: unknown operator \"=~\""
    );
    assert_eq!(
        build_err(vec![
            Spec::new("7", "/ok", "x").hosts(["ok.com", "bad host"])
        ]),
        "route 7: hosts[1]: invalid character ' ' in host \"bad host\""
    );
    assert_eq!(
        build_err(vec![Spec::new("7", "/ok", "x").remote_addrs(["10.0.0.300"])]),
        "route 7: remote_addrs[0]: invalid IP address \"10.0.0.300\""
    );
    assert_eq!(
        build_err(vec![Spec::new("7", "/a", "x"), Spec::new("7", "/b", "y")]),
        "route 7: id: duplicate route id"
    );
    assert_eq!(
        build_err(vec![Spec::new("", "/a", "x")]),
        "route : id: must not be empty"
    );
    // One bad route fails the whole build, whatever its position.
    let err = Router::build(vec![Spec::new("1", "/a", "x"), Spec::new("2", "b", "y")]).err();
    assert_eq!(err.as_ref().map(RouteBuildError::route_id), Some("2"));
}
