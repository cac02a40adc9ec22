use super::*;
use sluice_builtin_support::testing::{configure, refused, setup};
use sluice_plugin_sdk::testing::{TestConfig, TestHost};
use sluice_plugin_sdk::Phase;

/// What the client got.
#[derive(Debug)]
struct Got {
    /// Whether the upstream was contacted.
    upstream: bool,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn cache_status(&self) -> Option<&str> {
        self.header("apisix-cache-status")
    }
}

/// The upstream's answer in a test.
struct Upstream<'a> {
    status: u16,
    headers: &'a [(&'a str, &'a str)],
    body: &'a [u8],
}

const OK: Upstream = Upstream {
    status: 200,
    headers: &[("content-type", "text/plain")],
    body: b"fresh",
};

/// Runs one request through the plugin the way the gateway does: access; the upstream unless access
/// answered; header_filter on whichever response; then the body ends (committing any store).
fn fetch(
    host: &TestHost,
    cfg: &TestConfig<ProxyCache>,
    method: &str,
    path: &str,
    request_headers: &[(&str, &str)],
    upstream: &Upstream,
) -> Got {
    host.next_request();
    host.set_method(Method::parse(method)).set_path(path);
    host.set_request_header("host", "example.com");
    for (n, v) in request_headers {
        host.set_request_header(n, v);
    }
    let (answered, body) = match host.access(cfg) {
        Decision::Respond(r) => {
            let headers: Vec<(&str, &str)> = r
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            host.set_response(r.status, &headers);
            (true, r.body.clone())
        }
        Decision::Continue => {
            host.set_response(upstream.status, upstream.headers);
            (false, upstream.body.to_vec())
        }
    };
    assert_eq!(host.header_filter(cfg), Decision::Continue);
    host.finish_response_body(&body);
    let headers = [
        "content-type",
        "cache-control",
        "expires",
        "age",
        "apisix-cache-status",
        "x-ratelimit-remaining",
        "x-ratelimit-limit",
        "set-cookie",
    ]
    .iter()
    .filter_map(|n| host.response_header(n).map(|v| (n.to_string(), v)))
    .collect();
    Got {
        upstream: !answered,
        status: host.response_status(),
        headers,
        body,
    }
}

fn get(host: &TestHost, cfg: &TestConfig<ProxyCache>, path: &str, upstream: &Upstream) -> Got {
    fetch(host, cfg, "GET", path, &[], upstream)
}

fn is_cached(host: &TestHost, key: &str) -> bool {
    matches!(host.cache_lookup(key), Lookup::Hit { .. })
}

const KEY: &str = "memory_cache:example.com/a?x=1";

#[test]
fn a_miss_is_stored_and_the_next_request_is_served_from_the_cache() {
    let (host, cfg) = setup::<ProxyCache>("{}");
    let first = get(&host, &cfg, "/a?x=1", &OK);
    assert!(first.upstream);
    assert_eq!(first.cache_status(), Some("MISS"));
    assert!(is_cached(&host, KEY));

    host.advance(Duration::from_secs(7));
    let upstream_changed = Upstream {
        body: b"changed",
        ..OK
    };
    let hit = get(&host, &cfg, "/a?x=1", &upstream_changed);
    assert!(!hit.upstream, "a hit never contacts the upstream");
    assert_eq!((hit.status, hit.body.as_slice()), (200, &b"fresh"[..]));
    assert_eq!(hit.cache_status(), Some("HIT"));
    assert_eq!(hit.header("age"), Some("7"));
    assert_eq!(hit.header("content-type"), Some("text/plain"));

    // Another URI is another entry.
    assert_eq!(get(&host, &cfg, "/a?x=2", &OK).cache_status(), Some("MISS"));
}

#[test]
fn an_entry_expires_after_cache_ttl() {
    let (host, cfg) = setup::<ProxyCache>(r#"{"cache_ttl": 10}"#);
    get(&host, &cfg, "/a?x=1", &OK);
    host.advance(Duration::from_secs(9));
    assert_eq!(get(&host, &cfg, "/a?x=1", &OK).cache_status(), Some("HIT"));
    host.advance(Duration::from_secs(2));
    let expired = get(&host, &cfg, "/a?x=1", &OK);
    assert!(expired.upstream);
    assert_eq!(expired.cache_status(), Some("EXPIRED"));
    assert_eq!(
        get(&host, &cfg, "/a?x=1", &OK).cache_status(),
        Some("HIT"),
        "refilled"
    );
}

#[test]
fn purge_removes_the_entry() {
    let (host, cfg) = setup::<ProxyCache>("{}");
    get(&host, &cfg, "/a?x=1", &OK);
    let purged = fetch(&host, &cfg, "PURGE", "/a?x=1", &[], &OK);
    assert_eq!((purged.upstream, purged.status), (false, 200));
    assert_eq!(purged.cache_status(), None);
    assert!(!is_cached(&host, KEY));
    assert_eq!(fetch(&host, &cfg, "PURGE", "/a?x=1", &[], &OK).status, 404);
    assert_eq!(get(&host, &cfg, "/a?x=1", &OK).cache_status(), Some("MISS"));
}

#[test]
fn only_cache_method_requests_use_the_cache() {
    let (host, cfg) = setup::<ProxyCache>("{}");
    let post = fetch(&host, &cfg, "POST", "/a?x=1", &[], &OK);
    assert_eq!((post.upstream, post.cache_status()), (true, Some("MISS")));
    assert!(
        !is_cached(&host, KEY),
        "a POST response is not stored by default"
    );

    let cfg = configure::<ProxyCache>(&host, r#"{"cache_method": ["POST"]}"#);
    fetch(&host, &cfg, "POST", "/a?x=1", &[], &OK);
    assert!(is_cached(&host, KEY));
    assert_eq!(
        fetch(&host, &cfg, "POST", "/a?x=1", &[], &OK).cache_status(),
        Some("HIT")
    );
}

#[test]
fn head_is_answered_from_the_cache_but_never_fills_it() {
    let (host, cfg) = setup::<ProxyCache>("{}");
    let head = fetch(
        &host,
        &cfg,
        "HEAD",
        "/a?x=1",
        &[],
        &Upstream { body: b"", ..OK },
    );
    assert_eq!(head.cache_status(), Some("MISS"));
    assert!(
        !is_cached(&host, KEY),
        "a GET must not get a HEAD's empty body"
    );
    get(&host, &cfg, "/a?x=1", &OK);
    let head = fetch(&host, &cfg, "HEAD", "/a?x=1", &[], &OK);
    assert_eq!((head.upstream, head.cache_status()), (false, Some("HIT")));
}

#[test]
fn cache_bypass_skips_the_cache_when_any_value_is_set() {
    let (host, cfg) = setup::<ProxyCache>(r#"{"cache_bypass": ["$arg_bypass", "$http_bypass"]}"#);
    get(&host, &cfg, "/p?bypass=0", &OK);
    let key = "memory_cache:example.com/p?bypass=0";
    assert!(is_cached(&host, key), "\"0\" does not bypass");
    let bypassed = get(&host, &cfg, "/p?bypass=1", &OK);
    assert_eq!(
        (bypassed.upstream, bypassed.cache_status()),
        (true, Some("BYPASS"))
    );
    assert!(
        !is_cached(&host, "memory_cache:example.com/p?bypass=1"),
        "a bypass does not fill"
    );
    let by_header = fetch(&host, &cfg, "GET", "/p?bypass=0", &[("bypass", "yes")], &OK);
    assert_eq!(
        (by_header.upstream, by_header.cache_status()),
        (true, Some("BYPASS"))
    );
    assert_eq!(
        get(&host, &cfg, "/p?bypass=0", &OK).cache_status(),
        Some("HIT")
    );
}

#[test]
fn no_cache_keeps_the_response_out_of_the_cache() {
    let (host, cfg) = setup::<ProxyCache>(r#"{"no_cache": ["$arg_no_cache"]}"#);
    let got = get(&host, &cfg, "/a?no_cache=1", &OK);
    assert_eq!((got.upstream, got.cache_status()), (true, Some("MISS")));
    assert!(!is_cached(&host, "memory_cache:example.com/a?no_cache=1"));
    get(&host, &cfg, "/a?no_cache=0", &OK);
    assert!(is_cached(&host, "memory_cache:example.com/a?no_cache=0"));
}

#[test]
fn only_cache_http_status_responses_are_stored() {
    let (host, cfg) = setup::<ProxyCache>("{}");
    for (status, stored) in [
        (200, true),
        (301, true),
        (404, true),
        (500, false),
        (302, false),
    ] {
        host.next_request();
        let path = format!("/s{status}");
        get(&host, &cfg, &path, &Upstream { status, ..OK });
        assert_eq!(
            is_cached(&host, &format!("memory_cache:example.com{path}")),
            stored,
            "{status}"
        );
    }
    let cfg = configure::<ProxyCache>(&host, r#"{"cache_http_status": [502]}"#);
    get(&host, &cfg, "/bad", &Upstream { status: 502, ..OK });
    assert!(is_cached(&host, "memory_cache:example.com/bad"));
}

#[test]
fn private_uncacheable_cookie_and_vary_star_responses_are_never_stored() {
    let (host, cfg) = setup::<ProxyCache>("{}");
    let cases: [&[(&str, &str)]; 6] = [
        &[("cache-control", "private, max-age=60")],
        &[("cache-control", "no-store")],
        &[("Cache-Control", "public"), ("cache-control", "No-Cache")],
        &[("set-cookie", "session=1")],
        &[("vary", "accept, *")],
        &[("cache-control", "public, max-age=60"), ("vary", "accept")],
    ];
    for (i, headers) in cases.iter().enumerate() {
        let path = format!("/c{i}");
        let got = get(&host, &cfg, &path, &Upstream { headers, ..OK });
        assert_eq!(got.cache_status(), Some("MISS"));
        let stored = is_cached(&host, &format!("memory_cache:example.com{path}"));
        assert_eq!(stored, i == 5, "case {i}: {headers:?}");
    }
}

#[test]
fn cache_control_takes_the_ttl_from_the_upstream() {
    let (host, cfg) = setup::<ProxyCache>(r#"{"cache_control": true, "cache_ttl": 1000}"#);
    // Fresh until the returned number of seconds from now, or not stored.
    let check = |path: &str, headers: &[(&str, &str)], ttl: Option<u64>| {
        get(&host, &cfg, path, &Upstream { headers, ..OK });
        let key = format!("memory_cache:example.com{path}");
        match ttl {
            None => assert!(!is_cached(&host, &key), "{path} must not be stored"),
            Some(secs) => {
                host.advance(Duration::from_secs(secs) - Duration::from_millis(1));
                assert!(is_cached(&host, &key), "{path} fresh just before {secs} s");
                host.advance(Duration::from_millis(1));
                assert!(!is_cached(&host, &key), "{path} stale at {secs} s");
            }
        }
    };
    check(
        "/max-age",
        &[("cache-control", "public, max-age=30")],
        Some(30),
    );
    check(
        "/s-maxage",
        &[("cache-control", "max-age=30, s-maxage=5")],
        Some(5),
    );
    let in_20s =
        httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_millis(host_now(&host) + 20_000));
    check("/expires", &[("expires", &in_20s)], Some(20));
    check(
        "/past",
        &[("expires", "Thu, 01 Jan 1970 00:00:00 GMT")],
        None,
    );
    check("/garbage", &[("expires", "soon")], None);
    check("/nothing", &[], None);
}

/// The test host's wall clock (ms), read inside a phase.
fn host_now(host: &TestHost) -> u64 {
    struct Now;
    impl Plugin for Now {
        type Config = Config;
        fn access(_: &Config) -> Decision {
            Decision::Respond(Response::new(200).body(clock::now_unix_ms().to_string()))
        }
    }
    let cfg = host.configure::<Now>("{}").expect("config");
    match host.access(&cfg) {
        Decision::Respond(r) => String::from_utf8_lossy(&r.body).parse().expect("ms"),
        Decision::Continue => unreachable!("Now always answers"),
    }
}

#[test]
fn cache_control_honours_the_request_directives() {
    let (host, cfg) = setup::<ProxyCache>(r#"{"cache_control": true}"#);
    let cacheable = Upstream {
        headers: &[("cache-control", "max-age=60")],
        ..OK
    };
    let only_if_cached = fetch(
        &host,
        &cfg,
        "GET",
        "/a?x=1",
        &[("cache-control", "only-if-cached")],
        &cacheable,
    );
    assert_eq!(
        (only_if_cached.upstream, only_if_cached.status),
        (false, 504)
    );
    assert_eq!(only_if_cached.cache_status(), Some("MISS"));

    get(&host, &cfg, "/a?x=1", &cacheable);
    for directive in ["no-cache", "no-store"] {
        let got = fetch(
            &host,
            &cfg,
            "GET",
            "/a?x=1",
            &[("cache-control", directive)],
            &cacheable,
        );
        assert_eq!(
            (got.upstream, got.cache_status()),
            (true, Some("BYPASS")),
            "{directive}"
        );
    }
    host.advance(Duration::from_secs(10));
    let young_enough = fetch(
        &host,
        &cfg,
        "GET",
        "/a?x=1",
        &[("cache-control", "max-age=20")],
        &cacheable,
    );
    assert_eq!(young_enough.cache_status(), Some("HIT"));
    let too_old = fetch(
        &host,
        &cfg,
        "GET",
        "/a?x=1",
        &[("cache-control", "max-age=5")],
        &cacheable,
    );
    assert_eq!(
        (too_old.upstream, too_old.cache_status()),
        (true, Some("STALE"))
    );
    assert_eq!(
        get(&host, &cfg, "/a?x=1", &cacheable).header("age"),
        Some("0"),
        "refilled"
    );

    // Without cache_control the request's directives are ignored.
    let cfg = configure::<ProxyCache>(&host, r#"{"cache_zone": "plain"}"#);
    get(&host, &cfg, "/a?x=1", &OK);
    let got = fetch(
        &host,
        &cfg,
        "GET",
        "/a?x=1",
        &[("cache-control", "no-cache")],
        &OK,
    );
    assert_eq!(got.cache_status(), Some("HIT"));
}

#[test]
fn hide_cache_headers_strips_cache_control_and_expires_from_clients() {
    let (host, cfg) = setup::<ProxyCache>(r#"{"hide_cache_headers": true}"#);
    let upstream = Upstream {
        headers: &[
            ("cache-control", "public"),
            ("expires", "Thu, 01 Jan 2099 00:00:00 GMT"),
            ("content-type", "text/plain"),
        ],
        ..OK
    };
    let miss = get(&host, &cfg, "/a?x=1", &upstream);
    assert_eq!(
        (miss.header("cache-control"), miss.header("expires")),
        (None, None)
    );
    let hit = get(&host, &cfg, "/a?x=1", &upstream);
    assert_eq!(hit.cache_status(), Some("HIT"));
    assert_eq!(
        (hit.header("cache-control"), hit.header("expires")),
        (None, None)
    );
    assert_eq!(hit.header("content-type"), Some("text/plain"));

    let cfg = configure::<ProxyCache>(&host, r#"{"cache_zone": "shown"}"#);
    get(&host, &cfg, "/a?x=1", &upstream);
    let hit = get(&host, &cfg, "/a?x=1", &upstream);
    assert_eq!(hit.header("cache-control"), Some("public"));
}

#[test]
fn replay_drops_headers_that_belong_to_the_filling_request() {
    let (host, cfg) = setup::<ProxyCache>("{}");
    let upstream = Upstream {
        headers: &[
            ("content-length", "5"),
            ("connection", "keep-alive"),
            ("x-ratelimit-remaining", "3"),
            ("x-ratelimit-limit", "10"),
        ],
        ..OK
    };
    get(&host, &cfg, "/a?x=1", &upstream);
    let Lookup::Hit { response, .. } = host.cache_lookup(KEY) else {
        panic!("stored")
    };
    assert!(response
        .headers
        .iter()
        .any(|(n, _)| n == "x-ratelimit-remaining"));
    let replayed = replay(cfg.get(), response, Duration::from_secs(3));
    let names: Vec<&str> = replayed.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["x-ratelimit-limit", "Age"]);
}

#[test]
fn cache_key_and_zone_choose_the_entry() {
    let (host, cfg) = setup::<ProxyCache>(r#"{"cache_key": ["$uri", "::", "$http_x_lang"]}"#);
    fetch(&host, &cfg, "GET", "/a?x=1", &[("x-lang", "en")], &OK);
    assert!(is_cached(&host, "memory_cache:/a::en"));
    let other_query = fetch(&host, &cfg, "GET", "/a?x=2", &[("x-lang", "en")], &OK);
    assert_eq!(
        other_query.cache_status(),
        Some("HIT"),
        "the query is not part of this key"
    );
    let other_lang = fetch(&host, &cfg, "GET", "/a?x=1", &[("x-lang", "de")], &OK);
    assert_eq!(other_lang.cache_status(), Some("MISS"));

    let zone_b = configure::<ProxyCache>(
        &host,
        r#"{"cache_zone": "b", "cache_key": ["$uri", "::", "$http_x_lang"]}"#,
    );
    let got = fetch(&host, &zone_b, "GET", "/a?x=1", &[("x-lang", "en")], &OK);
    assert_eq!(
        got.cache_status(),
        Some("MISS"),
        "zones do not share entries"
    );
}

#[test]
fn header_filter_leaves_responses_alone_when_access_did_not_run() {
    let (host, cfg) = setup::<ProxyCache>("{}");
    host.set_response(200, &[("cache-control", "public")]);
    assert_eq!(host.header_filter(&cfg), Decision::Continue);
    assert_eq!(host.response_header("apisix-cache-status"), None);
    host.finish_response_body(b"x");
    assert!(!is_cached(&host, "memory_cache:/"));
}

#[test]
fn validation_messages_follow_apisix() {
    let cases = [
        (
            r#"{"cache_strategy": "ssd"}"#,
            r#"property "cache_strategy" validation failed: matches none of the enum values"#,
        ),
        (
            r#"{"cache_zone": ""}"#,
            r#"property "cache_zone" validation failed: string too short, expected at least 1, got 0"#,
        ),
        (
            r#"{"cache_zone": "disk_cache_one"}"#,
            "invalid or empty cache_zone for cache_strategy: memory",
        ),
        (
            r#"{"cache_key": []}"#,
            r#"property "cache_key" validation failed: expect array to have at least 1 items"#,
        ),
        (
            r#"{"cache_key": ["$host", "$"]}"#,
            r#"property "cache_key" validation failed: failed to validate item 2: failed to match pattern "(^[^\\$].+$|^\\$[0-9a-zA-Z_]+$)" with "$""#,
        ),
        (
            r#"{"cache_key": ["$host", "$request_method"]}"#,
            "cache_key variable $request_method unsupported",
        ),
        (
            r#"{"cache_bypass": ["$arg-x"]}"#,
            r#"property "cache_bypass" validation failed: failed to validate item 1: failed to match pattern "(^[^\\$].+$|^\\$[0-9a-zA-Z_]+$)" with "$arg-x""#,
        ),
        (
            r#"{"no_cache": ["1"]}"#,
            r#"property "no_cache" validation failed: failed to validate item 1: failed to match pattern "(^[^\\$].+$|^\\$[0-9a-zA-Z_]+$)" with "1""#,
        ),
        (
            r#"{"cache_method": ["GET", "PUT"]}"#,
            r#"property "cache_method" validation failed: failed to validate item 2: matches none of the enum values"#,
        ),
        (
            r#"{"cache_method": ["GET", "GET"]}"#,
            r#"property "cache_method" validation failed: expected unique items but items 1 and 2 are equal"#,
        ),
        (
            r#"{"cache_http_status": [200, 199]}"#,
            r#"property "cache_http_status" validation failed: failed to validate item 2: expected 199 to be at least 200"#,
        ),
        (
            r#"{"cache_ttl": 0}"#,
            r#"property "cache_ttl" validation failed: expected 0 to be at least 1"#,
        ),
    ];
    for (json, want) in cases {
        assert_eq!(refused::<ProxyCache>(json), want, "{json}");
    }
    let disk = refused::<ProxyCache>(r#"{"cache_strategy": "disk"}"#);
    assert!(
        disk.starts_with("cache_strategy \"disk\" is not available yet"),
        "{disk}"
    );
    // APISIX's memory example config loads as is.
    configure::<ProxyCache>(
        &TestHost::new(),
        r#"{"cache_strategy": "memory", "cache_zone": "memory_cache", "cache_ttl": 10}"#,
    );
}

#[test]
fn runs_in_access_and_header_filter_only() {
    assert_eq!(
        TestHost::new().phases::<ProxyCache>(),
        &[Phase::Access, Phase::HeaderFilter]
    );
}
