//! The built-in `proxy-cache` through the real binary and a real upstream, configured as in APISIX's docs
//! (memory strategy). What a user relies on: a hit never reaches the upstream, an entry lives `cache_ttl`,
//! `PURGE` drops it, bypass / no-cache conditions and the upstream's `Cache-Control` are honoured,
//! concurrent misses cost one upstream fetch, and `Apisix-Cache-Status` says which of these happened.

use futures_util::future::join_all;
use support::*;

/// PUT route `1` on `/c/*` to origin `a` with this `proxy-cache` config.
async fn cached_route(gw: &Gateway, a: &Origin, config: Value) {
    gw.put_ok(
        "routes",
        "1",
        json!({"uri": "/c/*", "upstream": upstream(&[a]), "plugins": {"proxy-cache": config}}),
    )
    .await;
}

fn cache_status(r: &Resp) -> Option<&str> {
    r.header("apisix-cache-status")
}

async fn request(gw: &Gateway, method: &str, path: &str) -> Resp {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    send(gw.request(method, path)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_never_reaches_the_upstream_and_the_entry_expires_after_cache_ttl() {
    let a = origin("a").start();
    let gw = gateway().start().await;
    cached_route(
        &gw,
        &a,
        json!({"cache_strategy": "memory", "cache_zone": "memory_cache", "cache_ttl": 2}),
    )
    .await;

    let miss = gw.get("/c/x?v=1").await;
    assert_eq!((miss.status, cache_status(&miss)), (200, Some("MISS")));
    assert_eq!(a.request_count(), 1);

    let hit = gw.get("/c/x?v=1").await;
    assert_eq!((hit.status, cache_status(&hit)), (200, Some("HIT")));
    assert_eq!(a.request_count(), 1, "a hit never contacts the upstream");
    assert_eq!(hit.body, miss.body, "the stored body, byte for byte");
    assert_eq!(hit.header("x-origin"), Some("a"), "with the stored headers");
    assert!(hit.header("age").is_some_and(|v| v.parse::<u64>().is_ok()));

    let other = gw.get("/c/x?v=2").await;
    assert_eq!(
        cache_status(&other),
        Some("MISS"),
        "another URI is another entry"
    );
    assert_eq!(a.request_count(), 2);

    tokio::time::sleep(Duration::from_millis(2200)).await;
    let expired = gw.get("/c/x?v=1").await;
    assert_eq!(cache_status(&expired), Some("EXPIRED"));
    assert_eq!(a.request_count(), 3, "an expired entry is fetched again");
    assert_eq!(cache_status(&gw.get("/c/x?v=1").await), Some("HIT"));
    assert_eq!(a.request_count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_for_one_key_cost_one_upstream_fetch() {
    let slow = origin("slow").delay(Duration::from_millis(500)).start();
    let gw = gateway().start().await;
    cached_route(&gw, &slow, json!({"cache_ttl": 60})).await;

    let url = gw.url("/c/popular");
    let got = join_all((0..10).map(|_| send(client().get(&url)))).await;
    assert!(got.iter().all(|r| r.status == 200));
    assert_eq!(
        slow.request_count(),
        1,
        "one request filled, the others waited for it"
    );
    let first = &got
        .iter()
        .find(|r| cache_status(r) == Some("MISS"))
        .expect("one MISS")
        .body;
    assert!(
        got.iter().all(|r| r.body == *first),
        "everyone got the filler's response"
    );
    let statuses: Vec<_> = got.iter().map(cache_status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == Some("MISS")).count(),
        1,
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_drops_the_entry() {
    let a = origin("a").start();
    let gw = gateway().start().await;
    cached_route(&gw, &a, json!({})).await;
    gw.get("/c/p").await;
    assert_eq!(cache_status(&gw.get("/c/p").await), Some("HIT"));

    let purged = request(&gw, "PURGE", "/c/p").await;
    assert_eq!(purged.status, 200);
    assert_eq!(a.request_count(), 1, "PURGE is answered by the gateway");
    assert_eq!(
        request(&gw, "PURGE", "/c/p").await.status,
        404,
        "nothing left to purge"
    );
    assert_eq!(cache_status(&gw.get("/c/p").await), Some("MISS"));
    assert_eq!(a.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_and_no_cache_conditions() {
    let a = origin("a").start();
    let gw = gateway().start().await;
    cached_route(
        &gw,
        &a,
        json!({"cache_bypass": ["$arg_bypass"], "no_cache": ["$http_x_no_cache"]}),
    )
    .await;
    gw.get("/c/b?bypass=1").await;
    let bypassed = gw.get("/c/b?bypass=1").await;
    assert_eq!(cache_status(&bypassed), Some("BYPASS"));
    assert_eq!(a.request_count(), 2, "bypassed requests always go upstream");

    gw.get("/c/b?bypass=0").await;
    assert_eq!(
        cache_status(&gw.get("/c/b?bypass=0").await),
        Some("HIT"),
        "\"0\" does not bypass"
    );
    assert_eq!(a.request_count(), 3);

    let no_cache = || {
        send(
            gw.request(reqwest::Method::GET, "/c/n")
                .header("x-no-cache", "1"),
        )
    };
    assert_eq!(cache_status(&no_cache().await), Some("MISS"));
    assert_eq!(cache_status(&no_cache().await), Some("MISS"), "not stored");
    assert_eq!(a.request_count(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_cache_methods_and_statuses_are_stored() {
    let a = origin("a").start();
    let gw = gateway().start().await;
    cached_route(&gw, &a, json!({})).await;
    request(&gw, "POST", "/c/m").await;
    request(&gw, "POST", "/c/m").await;
    assert_eq!(
        a.request_count(),
        2,
        "POST is not in the default cache_method"
    );

    let error = || {
        send(
            gw.request(reqwest::Method::GET, "/c/e")
                .header("x-status", "500"),
        )
    };
    assert_eq!(error().await.status, 500);
    assert_eq!(
        cache_status(&error().await),
        Some("MISS"),
        "500 is not in cache_http_status"
    );
    assert_eq!(a.request_count(), 4);

    let not_found = || {
        send(
            gw.request(reqwest::Method::GET, "/c/gone")
                .header("x-status", "404"),
        )
    };
    not_found().await;
    let hit = not_found().await;
    assert_eq!(
        (hit.status, cache_status(&hit)),
        (404, Some("HIT")),
        "404 is cached by default"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncacheable_upstream_responses_are_not_stored() {
    for (name, value) in [
        ("cache-control", "private, max-age=600"),
        ("cache-control", "no-store"),
        ("set-cookie", "session=abc"),
    ] {
        let a = origin("a").header(name, value).start();
        let gw = gateway().start().await;
        cached_route(&gw, &a, json!({})).await;
        gw.get("/c/u").await;
        let again = gw.get("/c/u").await;
        assert_eq!(cache_status(&again), Some("MISS"), "{name}: {value}");
        assert_eq!(a.request_count(), 2, "{name}: {value} must not be cached");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_control_takes_the_ttl_from_the_upstream_and_hide_cache_headers_hides_it() {
    let a = origin("a")
        .header("cache-control", "public, max-age=1")
        .start();
    let gw = gateway().start().await;
    cached_route(
        &gw,
        &a,
        json!({"cache_control": true, "cache_ttl": 300, "hide_cache_headers": true}),
    )
    .await;
    let miss = gw.get("/c/cc").await;
    assert_eq!(miss.header("cache-control"), None, "hidden from the client");
    let hit = gw.get("/c/cc").await;
    assert_eq!(
        (cache_status(&hit), hit.header("cache-control")),
        (Some("HIT"), None)
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        cache_status(&gw.get("/c/cc").await),
        Some("EXPIRED"),
        "max-age=1 wins over cache_ttl=300"
    );
    assert_eq!(a.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configs_are_refused_with_apisix_messages() {
    let a = origin("a").start();
    let gw = gateway().start().await;
    let cases = [
        (
            json!({"cache_strategy": "disk"}),
            r#"cache_strategy "disk" is not available yet"#,
        ),
        (
            json!({"cache_ttl": 0}),
            r#"property "cache_ttl" validation failed: expected 0 to be at least 1"#,
        ),
        (
            json!({"cache_method": ["GET", "DELETE"]}),
            r#"property "cache_method" validation failed: failed to validate item 2: matches none of the enum values"#,
        ),
        (
            json!({"cache_key": ["$host", "$request_method"]}),
            "cache_key variable $request_method unsupported",
        ),
        (
            json!({"cache_http_status": [200, 700]}),
            r#"property "cache_http_status" validation failed: failed to validate item 2: expected 700 to be at most 599"#,
        ),
    ];
    for (config, want) in cases {
        let r = gw
            .admin()
            .put(
                "routes",
                "bad",
                json!({"uri": "/bad", "upstream": upstream(&[&a]), "plugins": {"proxy-cache": config}}),
            )
            .await;
        assert_eq!(r.status, 400, "{config}: {}", r.text);
        let msg = r.error_msg().unwrap_or_default();
        assert!(msg.contains(want), "{config}: got {msg:?}, want {want:?}");
    }
    let list = gw.admin().get("plugins/list").await.ok();
    assert!(
        list.json
            .as_array()
            .is_some_and(|l| l.iter().any(|n| n == "proxy-cache")),
        "{}",
        list.text
    );
}
