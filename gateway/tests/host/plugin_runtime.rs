//! The plugin runtime against the real guest components (build them with scripts/build-plugins.sh).

use crate::support::{component, fixture_with, request, shared};
use http::{HeaderMap, HeaderValue, StatusCode};
use sluice::plugin::services::ConsumerRecord;
use sluice::plugin::{
    ArtifactCache, CallSite, ConfigError, Decision, DirArtifactCache, FaultKind, HostConfig,
    HostServices, MemoryArtifactCache, Phase, PluginEngine, PluginRegistry, ResponseState,
    UploadError,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PHASES_CFG: &str = r#"{"header":"x-added","value":"yes","upper":true}"#;

#[test]
fn info_lists_exactly_the_implemented_phases() {
    let f = shared();
    let noop = f.registry.get("noop").unwrap();
    assert_eq!(noop.info().phases, Phase::ALL.to_vec());
    let add = f.registry.get("add-header").unwrap();
    assert_eq!(add.info().phases, vec![Phase::Access]);
    assert_eq!(add.info().name, "add-header");
    let phases = f.registry.get("phases").unwrap();
    assert_eq!(phases.info().priority, 1000);
    assert_eq!(phases.info().name, "phases");
}

#[test]
fn add_header_in_access_and_unimplemented_phases_are_skipped() {
    let f = shared();
    let plugin = f.registry.get("add-header").unwrap();
    let cfg = plugin
        .configure(r#"{"name":"X-Added","value":"1"}"#)
        .unwrap();
    let mut req = request("/a");
    assert_eq!(
        cfg.call(Phase::Access, &mut req).unwrap(),
        Decision::Continue
    );
    assert_eq!(req.headers.get("x-added").unwrap(), "1");
    let before = plugin.metrics().snapshot().calls;
    assert_eq!(
        cfg.call(Phase::Rewrite, &mut req).unwrap(),
        Decision::Continue
    );
    assert_eq!(cfg.call(Phase::Log, &mut req).unwrap(), Decision::Continue);
    let after = plugin.metrics().snapshot().calls;
    assert_eq!(
        before, after,
        "phases the plugin does not implement are not called"
    );
}

/// The shared `phases` fixture configured with [`PHASES_CFG`].
fn phases_config() -> sluice::plugin::ConfiguredPlugin {
    shared()
        .registry
        .get("phases")
        .unwrap()
        .configure(PHASES_CFG)
        .unwrap()
}

#[test]
fn each_phase_reads_and_changes_what_it_may() {
    let f = shared();
    let cfg = phases_config();
    let mut req = request("/p");
    req.headers
        .insert("x-in", HeaderValue::from_static("hello"));

    // rewrite: request writable, response not.
    assert_eq!(
        cfg.call(Phase::Rewrite, &mut req).unwrap(),
        Decision::Continue
    );
    assert_eq!(req.ctx.get("in").map(String::as_str), Some("hello"));
    assert_eq!(req.headers.get("x-rewrite").unwrap(), "r1");
    assert_eq!(
        req.ctx.get("rewrite-status-err").map(String::as_str),
        Some("not writable in this phase")
    );

    // access: request header set, kv round trip across requests.
    assert_eq!(
        cfg.call(Phase::Access, &mut req).unwrap(),
        Decision::Continue
    );
    assert_eq!(req.headers.get("x-added").unwrap(), "yes");

    // header-filter: response writable, request not.
    req.response = Some(ResponseState::new(StatusCode::CREATED, HeaderMap::new()));
    assert_eq!(
        cfg.call(Phase::HeaderFilter, &mut req).unwrap(),
        Decision::Continue
    );
    let resp = req.response.as_ref().unwrap();
    assert_eq!(resp.headers.get("x-status-seen").unwrap(), "201");
    assert_eq!(resp.headers.get("x-resp").unwrap(), "hello");
    assert_eq!(
        req.ctx.get("hf-req-err").map(String::as_str),
        Some("not writable in this phase")
    );
    assert!(req.headers.get("x-late").is_none());

    // body-filter: chunk rewritten.
    let resp = req.response.as_mut().unwrap();
    resp.body_chunk = Some(bytes::Bytes::from_static(b"abc"));
    resp.end_of_stream = true;
    assert_eq!(
        cfg.call(Phase::BodyFilter, &mut req).unwrap(),
        Decision::Continue
    );
    assert_eq!(
        req.response.as_ref().unwrap().body_chunk.as_deref(),
        Some(&b"ABC"[..])
    );

    // log: metrics reach the sink with the plugin's name.
    let labels = [("route".to_string(), "r1".to_string())];
    let before = f.metrics.counter_value("phases", "phases_served", &labels);
    assert_eq!(cfg.call(Phase::Log, &mut req).unwrap(), Decision::Continue);
    assert_eq!(
        f.metrics.counter_value("phases", "phases_served", &labels),
        before + 1
    );
}

#[test]
fn kv_is_shared_across_requests() {
    let f = fixture_with(HostConfig::default());
    let plugin = f.registry.load("phases", &component("phases")).unwrap();
    let cfg = plugin.configure(PHASES_CFG).unwrap();
    let mut first = request("/first");
    cfg.call(Phase::Access, &mut first).unwrap();
    assert!(first.headers.get("x-prev-path").is_none());
    let mut second = request("/second");
    cfg.call(Phase::Access, &mut second).unwrap();
    assert_eq!(second.headers.get("x-prev-path").unwrap(), "/first");
}

#[test]
fn respond_short_circuits() {
    let cfg = phases_config();
    let mut req = request("/secret");
    req.headers.insert("x-deny", HeaderValue::from_static("1"));
    match cfg.call(Phase::Access, &mut req).unwrap() {
        Decision::Respond(r) => {
            assert_eq!(r.status, StatusCode::FORBIDDEN);
            assert_eq!(r.headers.get("x-denied-by").unwrap(), "phases");
            assert_eq!(&r.body[..], b"denied /secret");
        }
        other => panic!("expected respond, got {other:?}"),
    }
    // header-filter may replace the upstream response.
    req.response = Some(ResponseState::new(
        StatusCode::from_u16(599).unwrap(),
        HeaderMap::new(),
    ));
    match cfg.call(Phase::HeaderFilter, &mut req).unwrap() {
        Decision::Respond(r) => assert_eq!(r.status, StatusCode::BAD_GATEWAY),
        other => panic!("expected respond, got {other:?}"),
    }
}

#[test]
fn counters_limit_requests_per_client() {
    let f = fixture_with(HostConfig::default());
    let plugin = f.registry.load("phases", &component("phases")).unwrap();
    let cfg = plugin
        .configure(r#"{"header":"x-a","value":"1","limit":2}"#)
        .unwrap();
    for n in 1..=2 {
        let mut req = request("/");
        assert_eq!(
            cfg.call(Phase::Access, &mut req).unwrap(),
            Decision::Continue
        );
        assert_eq!(req.headers.get("x-count").unwrap(), &n.to_string());
    }
    let mut req = request("/");
    assert!(matches!(cfg.call(Phase::Access, &mut req).unwrap(),
        Decision::Respond(r) if r.status == StatusCode::TOO_MANY_REQUESTS));
}

#[test]
fn consumers_lookup_sets_the_consumer() {
    let f = fixture_with(HostConfig::default());
    f.consumers.insert(
        "phases",
        "k-123",
        ConsumerRecord {
            username: "alice".into(),
            plugin_config: r#"{"key":"k-123"}"#.into(),
            labels: vec![],
        },
    );
    let plugin = f.registry.load("phases", &component("phases")).unwrap();
    let cfg = plugin
        .configure(r#"{"header":"x-a","value":"1","key_auth":true}"#)
        .unwrap();
    let mut req = request("/");
    req.headers
        .insert("x-key", HeaderValue::from_static("k-123"));
    assert_eq!(
        cfg.call(Phase::Access, &mut req).unwrap(),
        Decision::Continue
    );
    assert_eq!(req.consumer.as_deref(), Some("alice"));
    let mut req = request("/");
    req.headers
        .insert("x-key", HeaderValue::from_static("wrong"));
    assert!(matches!(cfg.call(Phase::Access, &mut req).unwrap(),
        Decision::Respond(r) if r.status == StatusCode::UNAUTHORIZED));
}

#[test]
fn validate_and_configure_surface_the_plugins_message() {
    let f = shared();
    let plugin = f.registry.get("phases").unwrap();
    assert!(plugin.validate(PHASES_CFG).is_ok());
    match plugin.validate(r#"{"header":"","value":"v"}"#) {
        Err(ConfigError::Rejected(m)) => assert_eq!(m, "header: must not be empty"),
        other => panic!("{other:?}"),
    }
    match plugin.validate(r#"{"value":"v"}"#) {
        Err(ConfigError::Rejected(m)) => assert!(
            m.starts_with("invalid config: missing field `header`"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    match plugin.configure(r#"{"header":"h","value":"v","bogus":1}"#) {
        Err(ConfigError::Rejected(m)) => assert!(m.contains("unknown field `bogus`"), "{m}"),
        other => panic!("{other:?}"),
    }
    match plugin.configure(r#"{"header":"h","value":"v","limit":0}"#) {
        Err(ConfigError::Rejected(m)) => assert_eq!(m, "limit: must be at least 1"),
        other => panic!("{other:?}"),
    }
}

// ---- uploads ----

fn synthetic_component(wit: &str, world: &str) -> Vec<u8> {
    let mut resolve = wit_parser::Resolve::default();
    let (ours, _) = resolve
        .push_dir(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../wit/sluice-plugin@0.1.0"
        ))
        .unwrap();
    resolve
        .push_str("wasi-fs.wit", "package wasi:filesystem@0.2.0; interface types { read: func(path: string) -> string; }")
        .unwrap();
    let pkg = resolve.push_str("test.wit", wit).unwrap();
    let _ = ours;
    let world = resolve.select_world(&[pkg], Some(world)).unwrap();
    let mut module =
        wit_component::dummy_module(&resolve, world, wit_parser::ManglingAndAbi::Standard32);
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
        false,
    )
    .unwrap();
    wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .validate(true)
        .encode()
        .unwrap()
}

fn upload_err(bytes: &[u8]) -> UploadError {
    shared()
        .registry
        .prepare("bad", bytes)
        .expect_err("upload must be refused")
}

#[test]
fn bad_uploads_are_refused_with_precise_errors() {
    let e = upload_err(b"hello, not wasm");
    assert_eq!(e.code(), "not_wasm", "{e}");

    let core = {
        let mut r = wit_parser::Resolve::default();
        let pkg = r
            .push_str("t.wit", "package t:t; world w { export f: func(); }")
            .unwrap();
        let w = r.select_world(&[pkg], Some("w")).unwrap();
        wit_component::dummy_module(&r, w, wit_parser::ManglingAndAbi::Standard32)
    };
    let e = upload_err(&core);
    assert_eq!(e.code(), "not_a_component", "{e}");
    assert!(e.to_string().contains("core WebAssembly module"), "{e}");

    let good = component("add-header");
    let e = upload_err(&good[..good.len() / 2]);
    assert_eq!(e.code(), "malformed", "{e}");
    assert!(e.to_string().contains("unexpected end"), "{e}");

    let other = synthetic_component(
        "package test:other; world other { export run: func(); }",
        "other",
    );
    let e = upload_err(&other);
    assert_eq!(e.code(), "wrong_world", "{e}");
    assert!(e.to_string().contains("missing exports `info`"), "{e}");

    let wasi = synthetic_component(
        "package test:bad; world bad { include sluice:plugin/plugin@0.1.0; import wasi:filesystem/types@0.2.0; }",
        "bad",
    );
    let e = upload_err(&wasi);
    assert_eq!(e.code(), "disallowed_import", "{e}");
    assert!(
        e.to_string().contains("`wasi:filesystem/types@0.2.0`"),
        "{e}"
    );

    let small = fixture_with(HostConfig {
        max_upload_size: 1000,
        ..HostConfig::default()
    });
    let e = small.registry.prepare("big", &good).unwrap_err();
    assert_eq!(e.code(), "too_large");
    assert_eq!(
        e.to_string(),
        format!(
            "plugin binary is {} bytes; the limit is 1000 bytes",
            good.len()
        )
    );

    // The full world with trapping exports is accepted (world check passes), then info() traps.
    let dummy = synthetic_component(
        "package test:ok; world ok { include sluice:plugin/plugin@0.1.0; }",
        "ok",
    );
    let e = upload_err(&dummy);
    assert_eq!(e.code(), "info", "{e}");
}

// ---- faults ----

fn fault_case(
    phase: Phase,
    fault: &str,
) -> (Result<Decision, sluice::plugin::PluginFault>, Duration) {
    fault_case_in(shared(), phase, fault)
}

fn fault_case_in(
    f: &crate::support::Fixture,
    phase: Phase,
    fault: &str,
) -> (Result<Decision, sluice::plugin::PluginFault>, Duration) {
    let plugin = f.registry.get("faults").unwrap();
    let cfg = plugin
        .configure(&format!(
            r#"{{"phase":"{}","fault":"{fault}"}}"#,
            phase.as_str()
        ))
        .unwrap();
    let mut req = request("/");
    if phase.response_visible() {
        let mut resp = ResponseState::new(StatusCode::OK, HeaderMap::new());
        resp.body_chunk = Some(bytes::Bytes::from_static(b"x"));
        req.response = Some(resp);
    }
    let started = Instant::now();
    let r = cfg.call(phase, &mut req);
    let took = started.elapsed();
    // The same plugin and config work on the next call (fresh instance).
    let mut next = request("/");
    assert_eq!(
        cfg.call(Phase::Access, &mut next).ok(),
        if phase == Phase::Access {
            None
        } else {
            Some(Decision::Continue)
        }
    );
    if phase != Phase::Access {
        assert_eq!(next.headers.get("x-faults-ok").unwrap(), "1");
    }
    // And another config of the same plugin is unaffected.
    let healthy = plugin
        .configure(r#"{"phase":"access","fault":"none"}"#)
        .unwrap();
    let mut other = request("/");
    assert_eq!(
        healthy.call(Phase::Access, &mut other).unwrap(),
        Decision::Continue
    );
    assert_eq!(other.headers.get("x-faults-ok").unwrap(), "1");
    (r, took)
}

#[test]
fn traps_are_contained_in_every_phase() {
    for phase in Phase::ALL {
        let (r, _) = fault_case(phase, "trap");
        let fault = r.expect_err("trap");
        assert_eq!(fault.kind, FaultKind::Trap, "{fault}");
        assert_eq!(fault.plugin, "faults");
        assert_eq!(fault.site, CallSite::Phase(phase));
        let bt = fault.backtrace.as_deref().unwrap_or("");
        if phase == Phase::Rewrite {
            eprintln!("example fault log: {fault}\n{bt}");
        }
        assert!(
            bt.contains("faults"),
            "backtrace names the guest's functions: {bt}"
        );
    }
}

#[test]
fn infinite_loops_stop_at_the_deadline_in_every_phase() {
    let deadline = HostConfig::default().phase_deadline;
    for phase in Phase::ALL {
        let (r, took) = fault_case(phase, "loop");
        let fault = r.expect_err("loop");
        assert_eq!(fault.kind, FaultKind::Deadline, "{fault}");
        assert!(fault.is_deadline());
        assert!(
            took >= deadline - Duration::from_millis(10),
            "{phase}: stopped too early: {took:?}"
        );
        assert!(
            took < deadline + Duration::from_millis(150),
            "{phase}: stopped late: {took:?}"
        );
    }
}

#[test]
fn memory_bombs_hit_the_limit_in_every_phase() {
    // Filling 32 MiB can take longer than 50 ms on a loaded machine: give this registry a long deadline
    // so the limit, not the clock, stops the bomb.
    let f = fixture_with(HostConfig {
        phase_deadline: Duration::from_secs(5),
        ..HostConfig::default()
    });
    f.registry.load("faults", &component("faults")).unwrap();
    let limit = HostConfig::default().max_memory_per_instance;
    for phase in Phase::ALL {
        let (r, _) = fault_case_in(&f, phase, "memory");
        let fault = r.expect_err("memory");
        assert_eq!(fault.kind, FaultKind::Memory, "{fault}");
    }
    let snap = f.registry.get("faults").unwrap().metrics().snapshot();
    assert!(snap.memory_faults >= 5);
    assert!(
        snap.memory_high_water > limit / 2,
        "high water {}",
        snap.memory_high_water
    );
    assert!(snap.memory_high_water <= limit);
}

#[test]
fn parallel_calls_keep_working_while_one_loops() {
    let f = shared();
    let faults = f.registry.get("faults").unwrap();
    let looping = faults
        .configure(r#"{"phase":"rewrite","fault":"loop"}"#)
        .unwrap();
    let add = f
        .registry
        .get("add-header")
        .unwrap()
        .configure(r#"{"name":"x-a","value":"1"}"#)
        .unwrap();
    std::thread::scope(|s| {
        let h = s.spawn(|| looping.call(Phase::Rewrite, &mut request("/")));
        let started = Instant::now();
        let mut ok = 0;
        while started.elapsed() < Duration::from_millis(40) {
            let mut req = request("/");
            assert_eq!(
                add.call(Phase::Access, &mut req).unwrap(),
                Decision::Continue
            );
            ok += 1;
        }
        assert!(ok > 10, "only {ok} calls while another plugin looped");
        assert!(h.join().unwrap().unwrap_err().is_deadline());
    });
}

// ---- artifact cache, hot swap, config lifecycle ----

#[test]
fn artifact_cache_hit_skips_compilation_across_engines() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = component("noop");
    let make = || {
        let engine = PluginEngine::new(HostConfig::default(), HostServices::local()).unwrap();
        let cache: Arc<dyn ArtifactCache> = Arc::new(DirArtifactCache::new(dir.path()).unwrap());
        PluginRegistry::new(engine, cache)
    };
    let first = make().load("noop", &bytes).unwrap();
    assert!(!first.loaded_from_cache());
    // A "restart": new engine, same directory.
    let second = make().load("noop", &bytes).unwrap();
    assert!(
        second.loaded_from_cache(),
        "second load must deserialize the cached artifact"
    );
    assert!(
        second.load_time() < first.load_time(),
        "{:?} vs {:?}",
        second.load_time(),
        first.load_time()
    );
    let cfg = second.configure("{}").unwrap();
    assert_eq!(
        cfg.call(Phase::Access, &mut request("/")).unwrap(),
        Decision::Continue
    );

    // A corrupt artifact is ignored and replaced.
    let key = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&key, b"garbage").unwrap();
    let third = make().load("noop", &bytes).unwrap();
    assert!(!third.loaded_from_cache());
    assert!(make().load("noop", &bytes).unwrap().loaded_from_cache());
}

#[test]
fn memory_cache_is_keyed_by_content() {
    let cache = Arc::new(MemoryArtifactCache::default());
    let engine = PluginEngine::new(HostConfig::default(), HostServices::local()).unwrap();
    let reg = PluginRegistry::new(engine, cache.clone());
    reg.load("a", &component("noop")).unwrap();
    assert!(reg
        .load("b", &component("noop"))
        .unwrap()
        .loaded_from_cache());
    assert_eq!(cache.len(), 1);
    assert!(!reg
        .load("c", &component("add-header"))
        .unwrap()
        .loaded_from_cache());
    assert_eq!(cache.len(), 2);
}

#[test]
fn hot_swap_keeps_old_configs_on_the_old_version() {
    let f = fixture_with(HostConfig::default());
    let v1 = f.registry.load("hdr", &component("add-header")).unwrap();
    let old_cfg = v1.configure(r#"{"name":"x-v","value":"1"}"#).unwrap();
    let v2 = f.registry.load("hdr", &component("phases")).unwrap();
    assert_ne!(v1.sha256(), v2.sha256());
    assert_eq!(f.registry.get("hdr").unwrap().sha256(), v2.sha256());
    let mut req = request("/");
    old_cfg.call(Phase::Access, &mut req).unwrap();
    assert_eq!(req.headers.get("x-v").unwrap(), "1");
    let new_cfg = f
        .registry
        .get("hdr")
        .unwrap()
        .configure(PHASES_CFG)
        .unwrap();
    let mut req = request("/");
    new_cfg.call(Phase::Access, &mut req).unwrap();
    assert_eq!(req.headers.get("x-added").unwrap(), "yes");
}

#[test]
fn configs_are_parsed_once_per_instance_and_released() {
    let f = fixture_with(HostConfig::default());
    let plugin = f
        .registry
        .load("add-header", &component("add-header"))
        .unwrap();
    let cfg = plugin.configure(r#"{"name":"x-a","value":"1"}"#).unwrap();
    for _ in 0..100 {
        cfg.call(Phase::Access, &mut request("/")).unwrap();
    }
    let snap = plugin.metrics().snapshot();
    assert_eq!(snap.configures, 1, "one instance, one parse");
    assert_eq!(snap.calls[Phase::Access as usize], 100);
    drop(cfg);
    let cfg2 = plugin.configure(r#"{"name":"x-b","value":"2"}"#).unwrap();
    let mut req = request("/");
    cfg2.call(Phase::Access, &mut req).unwrap();
    assert_eq!(req.headers.get("x-b").unwrap(), "2");
    assert_eq!(plugin.idle_instances(), 1);
}

#[test]
fn contract_violations_are_faults() {
    let f = fixture_with(HostConfig::default());
    let plugin = f.registry.load("contract", &component("contract")).unwrap();
    let cfg = plugin.configure("{}").unwrap();
    let cases = [
        (Phase::Access, "respond: invalid header \"bad name\""),
        (Phase::HeaderFilter, "respond: invalid status 1000"),
        (Phase::Log, "`respond` is not allowed in log"),
    ];
    for (phase, msg) in cases {
        let mut req = request("/");
        req.response = Some(ResponseState::new(StatusCode::OK, HeaderMap::new()));
        let fault = cfg.call(phase, &mut req).expect_err("contract fault");
        assert_eq!(fault.kind, FaultKind::Contract, "{fault}");
        assert_eq!(fault.message, msg);
        assert_eq!(fault.site, CallSite::Phase(phase));
    }
    assert_eq!(plugin.metrics().snapshot().contract_faults, 3);
}
