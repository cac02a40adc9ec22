//! Plugin call costs. Needs the components from scripts/build-plugins.sh.
//! Run: `cargo bench --bench plugin_calls` (CARGO_TARGET_DIR=/work/scratch/target-plugin in the scratch crate).
use criterion::{criterion_group, criterion_main, Criterion};
use sluice::plugin::{
    HostConfig, HostServices, MemoryArtifactCache, Phase, PluginEngine, PluginRegistry,
    RequestState,
};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

fn component(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("SLUICE_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let m = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            ["../target/plugins"]
                .iter()
                .map(|c| m.join(c))
                .find(|p| p.is_dir())
                .unwrap_or_else(|| panic!("run scripts/build-plugins.sh"))
        });
    std::fs::read(dir.join(format!("{name}.wasm"))).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn registry() -> PluginRegistry {
    let engine = PluginEngine::new(HostConfig::default(), HostServices::local()).unwrap();
    PluginRegistry::new(engine, Arc::new(MemoryArtifactCache::default()))
}

fn req() -> RequestState {
    RequestState {
        route_id: "r1".into(),
        ..RequestState::default()
    }
}

fn calls(c: &mut Criterion) {
    let reg = registry();
    let noop = reg.load("noop", &component("noop")).unwrap();
    let noop_cfg = noop.configure("{}").unwrap();
    let add = reg.load("add-header", &component("add-header")).unwrap();
    let add_cfg = add.configure(r#"{"name":"x-a","value":"1"}"#).unwrap();
    let phases = reg.load("phases", &component("phases")).unwrap();
    let phases_cfg = phases.configure(r#"{"header":"x-a","value":"1"}"#).unwrap();

    let mut g = c.benchmark_group("call");
    let mut r = req();
    g.bench_function("noop_phase_pooled", |b| {
        b.iter(|| black_box(noop_cfg.call(Phase::Access, &mut r).unwrap()))
    });
    g.bench_function("unimplemented_phase", |b| {
        b.iter(|| black_box(add_cfg.call(Phase::Rewrite, &mut r).unwrap()))
    });
    g.bench_function("one_header_set", |b| {
        b.iter(|| black_box(add_cfg.call(Phase::Access, &mut r).unwrap()))
    });
    let mut r2 = req();
    r2.headers
        .insert("x-in", http::HeaderValue::from_static("v"));
    g.bench_function("rewrite_get_set_ctx", |b| {
        // header get + context set + header set + failed response write: 4 host calls
        b.iter(|| black_box(phases_cfg.call(Phase::Rewrite, &mut r2).unwrap()))
    });
    g.finish();

    let mut g = c.benchmark_group("instance");
    g.bench_function("checkout_checkin", |b| {
        b.iter(|| noop.checkout_checkin().unwrap())
    });
    g.bench_function("instantiate_drop", |b| {
        b.iter(|| noop.instantiate_and_drop().unwrap())
    });
    let mut r = req();
    g.bench_function("fresh_instance_configure_call_noop", |b| {
        b.iter(|| black_box(noop_cfg.call_fresh(Phase::Access, &mut r).unwrap()))
    });
    g.bench_function("fresh_instance_configure_call_add_header", |b| {
        b.iter(|| black_box(add_cfg.call_fresh(Phase::Access, &mut r).unwrap()))
    });
    g.finish();
}

fn loading(c: &mut Criterion) {
    let bytes = component("add-header");
    let engine = PluginEngine::new(HostConfig::default(), HostServices::local()).unwrap();
    let mut g = c.benchmark_group("load");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.bench_function("compile_add_header", |b| {
        b.iter(|| {
            let reg = PluginRegistry::new(engine.clone(), Arc::new(MemoryArtifactCache::default()));
            black_box(reg.prepare("a", &bytes).unwrap())
        })
    });
    let warm = Arc::new(MemoryArtifactCache::default());
    PluginRegistry::new(engine.clone(), warm.clone())
        .prepare("a", &bytes)
        .unwrap();
    g.bench_function("cached_load_add_header", |b| {
        b.iter(|| {
            let reg = PluginRegistry::new(engine.clone(), warm.clone());
            let p = reg.prepare("a", &bytes).unwrap();
            assert!(p.loaded_from_cache());
            black_box(p)
        })
    });
    g.finish();
}

/// A loopback upstream answering 200 with keep-alive, for the outbound-call cost.
fn loopback_upstream(rt: &tokio::runtime::Runtime) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    loop {
                        let n = match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let resp = b"HTTP/1.1 200 OK\r\nx-user: a\r\ncontent-length: 0\r\n\r\n";
                            if sock.write_all(resp).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        addr
    })
}

fn outbound(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr = loopback_upstream(&rt);
    let outbound = Arc::new(sluice::plugin::services::HyperOutbound::new(
        Default::default(),
    ));
    outbound.set_upstream("auth", addr);
    let mut services = HostServices::local();
    services.outbound = outbound;
    let engine = PluginEngine::new(HostConfig::default(), services).unwrap();
    let reg = PluginRegistry::new(engine, Arc::new(MemoryArtifactCache::default()));
    let phases = reg.load("phases", &component("phases")).unwrap();
    let plain = phases.configure(r#"{"header":"x-a","value":"1"}"#).unwrap();
    let with_call = phases
        .configure(r#"{"header":"x-a","value":"1","auth_upstream":"auth"}"#)
        .unwrap();
    let mut g = c.benchmark_group("outbound");
    let mut r = req();
    g.bench_function("access_without_call", |b| {
        b.iter(|| black_box(plain.call(Phase::Access, &mut r).unwrap()))
    });
    g.bench_function("access_with_loopback_call", |b| {
        b.iter(|| black_box(with_call.call(Phase::Access, &mut r).unwrap()))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = calls, loading, outbound
}
criterion_main!(benches);
