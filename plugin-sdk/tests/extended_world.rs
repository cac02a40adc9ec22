//! The host functions added with the extended world (method/var/delay, gauges, kv CAS, cache lookup and
//! store-response, random) and the consumer-facing trait items, through the native test host.
use sluice_plugin_sdk::cache::Lookup;
use sluice_plugin_sdk::testing::TestHost;
use sluice_plugin_sdk::{
    cache, counters, export_plugin, kv, random, request, response, Decision, FieldError, Method,
    Phase, Plugin, Response, StoreError,
};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

thread_local! {
    /// The body the next `Probe` phase runs; a phase method cannot capture, so the test hands it over here.
    static STEP: RefCell<Option<Box<dyn FnOnce()>>> = RefCell::new(None);
}

/// Runs whatever [`in_phase`] handed over, in whichever phase the host calls.
struct Probe;

fn step() -> Decision {
    if let Some(f) = STEP.with(|s| s.borrow_mut().take()) {
        f();
    }
    Decision::Continue
}

#[export_plugin]
impl Plugin for Probe {
    type Config = ();
    fn rewrite(_: &()) -> Decision {
        step()
    }
    fn access(_: &()) -> Decision {
        step()
    }
    fn header_filter(_: &()) -> Decision {
        step()
    }
    fn body_filter(_: &()) {
        step();
    }
    fn log(_: &()) {
        step();
    }
}

/// Runs `f` inside `phase` on `host` (as the plugin code of that phase would run) and returns its result.
fn in_phase<R: 'static>(host: &TestHost, phase: Phase, f: impl FnOnce() -> R + 'static) -> R {
    let out = Rc::new(RefCell::new(None));
    let slot = Rc::clone(&out);
    STEP.with(|s| *s.borrow_mut() = Some(Box::new(move || *slot.borrow_mut() = Some(f()))));
    let cfg = host.configure::<Probe>("null").unwrap();
    match phase {
        Phase::Rewrite => assert_eq!(host.rewrite(&cfg), Decision::Continue),
        Phase::Access => assert_eq!(host.access(&cfg), Decision::Continue),
        Phase::HeaderFilter => assert_eq!(host.header_filter(&cfg), Decision::Continue),
        Phase::BodyFilter => assert_eq!(host.body_filter(&cfg, b"", true), b""),
        Phase::Log => host.log(&cfg),
    }
    let result = out.borrow_mut().take();
    result.expect("the phase did not run the step")
}

const REQUEST_PHASES: [Phase; 2] = [Phase::Rewrite, Phase::Access];
const RESPONSE_PHASES: [Phase; 3] = [Phase::HeaderFilter, Phase::BodyFilter, Phase::Log];

#[test]
fn set_method_works_only_in_request_phases() {
    let host = TestHost::new();
    for phase in REQUEST_PHASES {
        assert_eq!(
            in_phase(&host, phase, || request::set_method(Method::Put)),
            Ok(())
        );
    }
    assert_eq!(host.request().method, Method::Put);
    let bad = in_phase(&host, Phase::Access, || {
        request::set_method(Method::Other("NOT A TOKEN".into()))
    });
    assert_eq!(bad, Err(FieldError::InvalidValue));
    for phase in RESPONSE_PHASES {
        let refused = in_phase(&host, phase, || request::set_method(Method::Delete));
        assert_eq!(refused, Err(FieldError::NotInThisPhase), "{phase:?}");
    }
    assert_eq!(host.request().method, Method::Put);
}

#[test]
fn delays_add_up_to_the_cap_and_only_in_request_phases() {
    let host = TestHost::new();
    in_phase(&host, Phase::Rewrite, || request::delay(100).unwrap());
    in_phase(&host, Phase::Access, || request::delay(250).unwrap());
    assert_eq!(host.delay_ms(), 350);
    for phase in RESPONSE_PHASES {
        let refused = in_phase(&host, phase, || request::delay(1));
        assert_eq!(refused, Err(FieldError::NotInThisPhase), "{phase:?}");
    }
    assert_eq!(host.delay_ms(), 350);
    in_phase(&host, Phase::Access, || request::delay(u32::MAX).unwrap());
    assert_eq!(host.delay_ms(), 60_000);
    host.next_request();
    assert_eq!(host.delay_ms(), 0);
}

#[test]
fn var_derives_apisix_variables_from_the_request() {
    let host = TestHost::new();
    host.set_method(Method::Post)
        .set_path("/p/q?name=a%20b+c&x=1&x=2&empty=&flag")
        .set_request_header("X-Api-Key", "k1")
        .set_request_header("x-multi", "a")
        .set_request_header("x-multi", "b")
        .set_request_header("cookie", "a=1; session=abc")
        .set_request_header("host", "Example.COM:9080")
        .set_client_addr("10.0.0.9:5555".parse().unwrap())
        .set_route_id("r7");
    let vars = [
        "arg_name",
        "arg_x",
        "arg_empty",
        "arg_flag",
        "arg_missing",
        "http_x_api_key",
        "http_x_multi",
        "http_absent",
        "cookie_session",
        "cookie_none",
        "uri",
        "request_uri",
        "args",
        "request_method",
        "remote_addr",
        "remote_port",
        "route_id",
        "host",
        "consumer_name",
        "status",
        "sent_http_content_type",
        "no_such_variable",
    ];
    let got = in_phase(&host, Phase::Access, move || {
        vars.map(|name| (name, request::var(name)))
    });
    let want: [(&str, Option<&str>); 22] = [
        ("arg_name", Some("a b c")),
        ("arg_x", Some("1")),
        ("arg_empty", Some("")),
        ("arg_flag", Some("")),
        ("arg_missing", None),
        ("http_x_api_key", Some("k1")),
        ("http_x_multi", Some("a, b")),
        ("http_absent", None),
        ("cookie_session", Some("abc")),
        ("cookie_none", None),
        ("uri", Some("/p/q")),
        ("request_uri", Some("/p/q?name=a%20b+c&x=1&x=2&empty=&flag")),
        ("args", Some("name=a%20b+c&x=1&x=2&empty=&flag")),
        ("request_method", Some("POST")),
        ("remote_addr", Some("10.0.0.9")),
        ("remote_port", Some("5555")),
        ("route_id", Some("r7")),
        ("host", Some("example.com")),
        // No consumer yet, and no response in a request phase.
        ("consumer_name", None),
        ("status", None),
        ("sent_http_content_type", None),
        ("no_such_variable", None),
    ];
    for ((name, got), (_, want)) in got.iter().zip(want) {
        assert_eq!(got.as_deref(), want, "{name}");
    }
}

#[test]
fn var_follows_plugin_changes_and_set_var() {
    let host = TestHost::new();
    host.set_var("server_port", "9443")
        .set_var("uri", "/pinned");
    let got = in_phase(&host, Phase::Rewrite, || {
        request::set_query(None).unwrap();
        request::set_consumer("alice").unwrap();
        (
            request::var("request_uri"),
            request::var("consumer_name"),
            request::var("server_port"),
            request::var("uri"),
        )
    });
    assert_eq!(
        got,
        (
            Some("/".to_string()),
            Some("alice".to_string()),
            Some("9443".to_string()),
            // A variable set on the host wins over the derived one.
            Some("/pinned".to_string()),
        )
    );
    assert_eq!(host.consumer().as_deref(), Some("alice"));
    host.next_request();
    let after = in_phase(&host, Phase::Rewrite, || request::var("server_port"));
    assert_eq!(after, None);
}

#[test]
fn response_variables_appear_in_response_phases() {
    let host = TestHost::new();
    host.set_response(503, &[("Content-Type", "text/plain"), ("x-up", "1")]);
    for phase in RESPONSE_PHASES {
        let got = in_phase(&host, phase, || {
            (
                request::var("status"),
                request::var("sent_http_content_type"),
                request::var("upstream_http_x_up"),
            )
        });
        let want = (
            Some("503".to_string()),
            Some("text/plain".to_string()),
            Some("1".to_string()),
        );
        assert_eq!(got, want, "{phase:?}");
    }
}

#[test]
fn counters_add_is_a_windowless_gauge_removed_at_zero() {
    let host = TestHost::new();
    let up = in_phase(&host, Phase::Access, || {
        (counters::add("conn", 1), counters::add("conn", 1))
    });
    assert_eq!(up, (Ok(1), Ok(2)));
    host.advance(Duration::from_secs(3600));
    assert_eq!(host.gauge("conn"), Some(2), "a gauge has no window");
    let down = in_phase(&host, Phase::Log, || {
        (counters::add("conn", -1), counters::add("conn", -1))
    });
    assert_eq!(down, (Ok(1), Ok(0)));
    assert_eq!(host.gauge("conn"), None);
    let negative = in_phase(&host, Phase::Log, || counters::add("conn", -3));
    assert_eq!(negative, Ok(-3));
}

#[test]
fn kv_compare_and_swap_sees_absent_expired_and_current_values() {
    let host = TestHost::new();
    let ttl = Some(Duration::from_secs(1));
    let first = in_phase(&host, Phase::Access, move || {
        [
            kv::compare_and_swap("b", None, b"1", ttl),
            kv::compare_and_swap("b", None, b"x", ttl),
            kv::compare_and_swap("b", Some(b"0"), b"x", ttl),
            kv::compare_and_swap("b", Some(b"1"), b"2", ttl),
        ]
    });
    assert_eq!(first, [Ok(true), Ok(false), Ok(false), Ok(true)]);
    assert_eq!(host.kv("b").as_deref(), Some(&b"2"[..]));

    host.advance(Duration::from_millis(1000));
    assert_eq!(host.kv("b"), None);
    let after_expiry = in_phase(&host, Phase::Access, || {
        [
            kv::compare_and_swap("b", Some(b"2"), b"3", None),
            kv::compare_and_swap("b", None, b"3", None),
        ]
    });
    assert_eq!(after_expiry, [Ok(false), Ok(true)]);
    host.advance(Duration::from_secs(86_400));
    assert_eq!(host.kv("b").as_deref(), Some(&b"3"[..]), "no TTL: kept");
}

#[test]
fn kv_delete_of_an_expired_key_reports_absent() {
    let host = TestHost::new();
    in_phase(&host, Phase::Access, || {
        kv::set("k", b"v", Some(Duration::from_millis(10))).unwrap()
    });
    host.advance(Duration::from_millis(10));
    assert!(!in_phase(&host, Phase::Access, || kv::delete("k")));
}

#[test]
fn cache_lookup_tells_hit_with_age_from_expired_and_miss() {
    let host = TestHost::new();
    let stored = Response::new(200).body("page");
    let to_store = stored.clone();
    let first = in_phase(&host, Phase::Access, move || {
        let before = cache::lookup("k", Duration::from_millis(50));
        cache::put("k", &to_store, Duration::from_secs(10)).unwrap();
        before
    });
    assert_eq!(first, Lookup::Miss);

    host.advance(Duration::from_millis(2500));
    let hit = in_phase(&host, Phase::Access, || cache::lookup("k", Duration::ZERO));
    assert_eq!(
        hit,
        Lookup::Hit {
            response: stored,
            age: Duration::from_millis(2500)
        }
    );

    host.advance(Duration::from_millis(7500));
    let expired = in_phase(&host, Phase::Access, || {
        (cache::lookup("k", Duration::ZERO), cache::get("k"))
    });
    assert_eq!(expired, (Lookup::Expired, None));
    let purged = in_phase(&host, Phase::Access, || {
        (cache::purge("k"), cache::lookup("k", Duration::ZERO))
    });
    assert_eq!(purged, (true, Lookup::Miss));
}

#[test]
fn store_response_only_in_header_filter() {
    let host = TestHost::new();
    for phase in [Phase::Rewrite, Phase::Access, Phase::BodyFilter, Phase::Log] {
        let refused = in_phase(&host, phase, || {
            cache::store_response("k", Duration::from_secs(1))
        });
        assert_eq!(refused, Err(StoreError::NotInThisPhase), "{phase:?}");
    }
    host.finish_response_body(b"body");
    assert_eq!(host.cache_lookup("k"), Lookup::Miss);
}

#[test]
fn store_response_commits_the_response_when_the_body_ends() {
    let host = TestHost::new();
    host.set_response(200, &[("content-type", "text/plain")]);
    in_phase(&host, Phase::HeaderFilter, || {
        response::set_header("x-before", "1").unwrap();
        cache::store_response("page", Duration::from_secs(60)).unwrap();
        // Headers set after the call are not part of the stored response.
        response::set_header("x-after", "1").unwrap();
    });
    assert_eq!(
        host.cache_lookup("page"),
        Lookup::Miss,
        "not before the body ends"
    );

    host.advance(Duration::from_millis(20));
    host.finish_response_body(b"hello");
    host.advance(Duration::from_millis(5));
    let want = Response::new(200)
        .header("content-type", "text/plain")
        .header("x-before", "1")
        .body("hello");
    let hit = in_phase(&host, Phase::Access, || {
        cache::lookup("page", Duration::ZERO)
    });
    assert_eq!(
        hit,
        Lookup::Hit {
            response: want,
            age: Duration::from_millis(5)
        }
    );
    host.advance(Duration::from_secs(60));
    assert_eq!(host.cache_lookup("page"), Lookup::Expired);
}

#[test]
fn a_store_left_pending_is_dropped_with_the_request() {
    let host = TestHost::new();
    in_phase(&host, Phase::HeaderFilter, || {
        cache::store_response("page", Duration::from_secs(60)).unwrap()
    });
    host.next_request();
    host.finish_response_body(b"other request");
    assert_eq!(host.cache_lookup("page"), Lookup::Miss);
}

#[test]
fn random_bytes_differ_per_call_and_any_length_works() {
    let host = TestHost::new();
    let (a, b, empty, big, arr) = in_phase(&host, Phase::Access, || {
        (
            random::fill(16),
            random::fill(16),
            random::fill(0),
            random::fill(3000),
            random::bytes::<32>(),
        )
    });
    assert_eq!(
        (a.len(), b.len(), empty.len(), big.len()),
        (16, 16, 0, 3000)
    );
    assert_ne!(a, b);
    // 3000 bytes take three host calls (1024 each at most); their chunks must differ too.
    assert_ne!(big[..1024], big[1024..2048]);
    assert_ne!(arr[..16], a[..]);
    // Repeatable: a fresh host answers the same first call.
    let again = in_phase(&TestHost::new(), Phase::Log, || random::fill(16));
    assert_eq!(again, a);
}

#[derive(serde::Deserialize)]
struct KeyAuthConsumer {
    key: String,
}

/// An auth plugin: route config is empty, consumer config needs a non-empty `key`.
struct KeyAuth;

#[export_plugin]
impl Plugin for KeyAuth {
    type Config = ();
    const CONSUMER_CREDENTIAL: Option<&'static str> = Some("key");
    fn validate_consumer(json: &str) -> Result<(), String> {
        let c: KeyAuthConsumer =
            serde_json::from_str(json).map_err(|e| format!("invalid consumer config: {e}"))?;
        if c.key.is_empty() {
            return Err("key: must not be empty".into());
        }
        Ok(())
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitCfg {
    count: u32,
}

/// Not an auth plugin: on a consumer its config is checked like a route config.
struct Limit;

#[export_plugin]
impl Plugin for Limit {
    type Config = LimitCfg;
    fn validate(cfg: &LimitCfg) -> Result<(), String> {
        if cfg.count == 0 {
            return Err("count: must be positive".into());
        }
        Ok(())
    }
}

#[test]
fn auth_plugins_declare_a_credential_and_check_consumers() {
    assert_eq!(KeyAuth::CONSUMER_CREDENTIAL, Some("key"));
    assert_eq!(KeyAuth::validate_consumer(r#"{"key":"k1"}"#), Ok(()));
    assert_eq!(
        KeyAuth::validate_consumer(r#"{"key":""}"#).unwrap_err(),
        "key: must not be empty"
    );
    let missing = KeyAuth::validate_consumer("{}").unwrap_err();
    assert!(missing.contains("missing field `key`"), "{missing}");
}

#[test]
fn other_plugins_validate_consumer_configs_like_route_configs() {
    assert_eq!(Limit::CONSUMER_CREDENTIAL, None);
    assert_eq!(Limit::validate_consumer(r#"{"count":5}"#), Ok(()));
    assert_eq!(
        Limit::validate_consumer(r#"{"count":0}"#).unwrap_err(),
        "count: must be positive"
    );
    let unknown = Limit::validate_consumer(r#"{"count":1,"key":"x"}"#).unwrap_err();
    assert!(
        unknown.starts_with("invalid config: unknown field"),
        "{unknown}"
    );
}

#[test]
fn store_error_not_in_this_phase_reads_as_such() {
    assert_eq!(
        StoreError::NotInThisPhase.to_string(),
        "not allowed in this phase"
    );
}
