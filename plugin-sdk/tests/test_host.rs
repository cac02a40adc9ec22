//! The SDK's own tests, through the native test host.
use sluice_plugin_sdk::testing::TestHost;
use sluice_plugin_sdk::{
    cache, clock, consumers, context, counters, export_plugin, http, kv, log, request, response,
    Consumer, Decision, FieldError, Level, Method, OutboundError, OutboundRequest, Phase, Plugin,
    Response,
};
use std::time::Duration;

#[derive(serde::Deserialize)]
struct Cfg {
    #[serde(default)]
    n: u32,
}

/// Overrides only access and log: the attribute must record exactly those.
struct Two;

#[export_plugin]
impl Plugin for Two {
    type Config = Cfg;
    const NAME: &'static str = "two";
    fn validate(cfg: &Cfg) -> Result<(), String> {
        if cfg.n > 10 {
            return Err(format!("n: at most 10, got {}", cfg.n));
        }
        Ok(())
    }
    fn access(cfg: &Cfg) -> Decision {
        if cfg.n == 7 {
            return Decision::respond(418, "teapot");
        }
        Decision::Continue
    }
    fn log(_cfg: &Cfg) {
        log::warn("done");
    }
}

#[test]
fn export_plugin_records_overridden_phases() {
    let host = TestHost::new();
    assert_eq!(host.phases::<Two>(), &[Phase::Access, Phase::Log]);
}

#[test]
fn config_errors_come_from_serde_and_validate() {
    let host = TestHost::new();
    assert_eq!(
        host.configure::<Two>(r#"{"n":11}"#).err().as_deref(),
        Some("n: at most 10, got 11")
    );
    let err = host.configure::<Two>(r#"{"n":"x"}"#).err().unwrap();
    assert!(err.starts_with("invalid config: invalid type"), "{err}");
    assert!(host.configure::<Two>("{}").is_ok());
}

#[test]
fn decisions_and_logs() {
    let host = TestHost::new();
    let cfg = host.configure::<Two>(r#"{"n":7}"#).unwrap();
    assert_eq!(
        host.access(&cfg),
        Decision::Respond(Response::new(418).body("teapot"))
    );
    host.log(&cfg);
    assert_eq!(host.logs(), vec![(Level::Warn, "done".to_string())]);
}

/// Exercises every host module; the phase it runs in is chosen by the test.
struct Everything;

#[export_plugin]
impl Plugin for Everything {
    type Config = ();
    fn rewrite(_: &()) -> Decision {
        assert_eq!(request::method(), Method::Post);
        assert_eq!(request::path(), "/a/b");
        assert_eq!(request::query().as_deref(), Some("x=1"));
        request::set_path("/rewritten").unwrap();
        request::set_query(None).unwrap();
        assert_eq!(request::set_path("no-slash"), Err(FieldError::InvalidValue));
        request::append_header("x-multi", "1").unwrap();
        request::append_header("X-Multi", "2").unwrap();
        assert_eq!(request::header_values("x-multi"), vec!["1", "2"]);
        assert_eq!(
            request::set_header("bad name", "v"),
            Err(FieldError::InvalidName)
        );
        assert_eq!(
            request::set_header("x-ok", "a\r\nb"),
            Err(FieldError::InvalidValue)
        );
        assert_eq!(request::remove_header("x-multi"), Ok(true));
        assert_eq!(request::remove_header("x-multi"), Ok(false));
        assert_eq!(request::client_addr().port(), 40000);
        assert_eq!(response::status(), None);
        assert_eq!(
            response::set_header("x", "y"),
            Err(FieldError::NotInThisPhase)
        );
        context::set("k", "v");
        Decision::Continue
    }
    fn access(_: &()) -> Decision {
        let c = consumers::lookup("everything", "key-1").expect("consumer");
        request::set_consumer(&c.username).unwrap();
        let first = counters::incr("c", 1, Duration::from_secs(10)).unwrap();
        let second = counters::incr("c", 2, Duration::from_secs(10)).unwrap();
        assert_eq!((first.count, second.count), (1, 3));
        kv::set("k", b"v", Some(Duration::from_secs(1))).unwrap();
        assert_eq!(kv::get("k").as_deref(), Some(&b"v"[..]));
        cache::put(
            "page",
            &Response::new(200).body("cached"),
            Duration::from_secs(5),
        )
        .unwrap();
        let resp = http::call("auth", &OutboundRequest::get("/check")).unwrap();
        assert_eq!(resp.status, 204);
        assert_eq!(
            http::call("nope", &OutboundRequest::get("/")),
            Err(OutboundError::UnknownUpstream("nope".into()))
        );
        assert!(clock::now_unix_ms() > 0);
        Decision::Continue
    }
    fn header_filter(_: &()) -> Decision {
        assert_eq!(
            request::set_header("x", "y"),
            Err(FieldError::NotInThisPhase)
        );
        assert_eq!(response::status(), Some(200));
        response::set_status(202).unwrap();
        assert_eq!(response::set_status(42), Err(FieldError::InvalidValue));
        response::set_header("x-h", "1").unwrap();
        assert_eq!(context::get("k").as_deref(), Some("v"));
        Decision::Continue
    }
    fn body_filter(_: &()) {
        let chunk = response::body_chunk().unwrap();
        let mut out = chunk.clone();
        if response::end_of_stream() {
            out.extend_from_slice(b"!");
        }
        response::set_body_chunk(&out).unwrap();
        assert_eq!(response::set_status(500), Err(FieldError::NotInThisPhase));
    }
    fn log(_: &()) {
        assert_eq!(
            response::set_header("x", "y"),
            Err(FieldError::NotInThisPhase)
        );
        assert_eq!(response::body_chunk(), None);
        assert!(context::remove("k"));
    }
}

#[test]
fn every_host_module_follows_the_phase_rules() {
    let host = TestHost::new();
    host.set_method(Method::Post)
        .set_path("/a/b?x=1")
        .add_consumer(
            "everything",
            "key-1",
            Consumer {
                username: "alice".into(),
                plugin_config: "{}".into(),
                labels: vec![],
            },
        )
        .add_upstream("auth", |req| {
            assert_eq!(req.path_with_query, "/check");
            Ok(Response::new(204))
        });
    let cfg = host.configure::<Everything>("null").unwrap();
    assert_eq!(host.phases::<Everything>().len(), 5);

    assert_eq!(host.rewrite(&cfg), Decision::Continue);
    let req = host.request();
    assert_eq!(
        (req.path.as_str(), req.query.as_deref()),
        ("/rewritten", None)
    );

    assert_eq!(host.access(&cfg), Decision::Continue);
    assert_eq!(host.request().consumer.as_deref(), Some("alice"));

    host.set_response(200, &[("content-type", "text/plain")]);
    assert_eq!(host.header_filter(&cfg), Decision::Continue);
    assert_eq!(host.response_status(), 202);
    assert_eq!(host.response_header("x-h").as_deref(), Some("1"));

    assert_eq!(host.body_filter(&cfg, b"ab", false), b"ab");
    assert_eq!(host.body_filter(&cfg, b"cd", true), b"cd!");
    host.log(&cfg);
    assert_eq!(host.context("k"), None);
}

struct TtlUser;

#[export_plugin]
impl Plugin for TtlUser {
    type Config = ();
    fn access(_: &()) -> Decision {
        match kv::get("k") {
            Some(_) => Decision::respond(200, "hit"),
            None => {
                kv::set("k", b"1", Some(Duration::from_secs(1))).unwrap();
                Decision::respond(200, "miss")
            }
        }
    }
}

#[test]
fn fake_clock_expires_kv_entries() {
    let host = TestHost::new();
    let cfg = host.configure::<TtlUser>("null").unwrap();
    assert_eq!(host.access(&cfg), Decision::respond(200, "miss"));
    assert_eq!(host.access(&cfg), Decision::respond(200, "hit"));
    host.advance(Duration::from_millis(1001));
    assert_eq!(host.access(&cfg), Decision::respond(200, "miss"));
}

#[test]
#[should_panic(expected = "only inside a TestHost phase")]
fn host_functions_outside_a_phase_panic_with_a_hint() {
    let _ = request::path();
}
