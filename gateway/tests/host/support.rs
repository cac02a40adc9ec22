//! Shared helpers: the real components built by scripts/build-plugins.sh, and registries over them.
use sluice::plugin::services::{MemoryConsumers, MemoryMetrics};
use sluice::plugin::{
    HostConfig, HostServices, MemoryArtifactCache, PluginEngine, PluginRegistry, RequestState,
};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// Where `scripts/build-plugins.sh` put the components: `$SLUICE_PLUGIN_DIR`, else
/// `<target dir>/plugins`.
pub fn plugin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SLUICE_PLUGIN_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let p = target.join("plugins");
    assert!(
        p.is_dir(),
        "no built plugins in {}: run scripts/build-plugins.sh (or set SLUICE_PLUGIN_DIR)",
        p.display()
    );
    p
}

pub fn component(name: &str) -> Vec<u8> {
    let path = plugin_dir().join(format!("{name}.wasm"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/build-plugins.sh", path.display()))
}

pub struct Fixture {
    pub registry: PluginRegistry,
    pub metrics: Arc<MemoryMetrics>,
    pub consumers: Arc<MemoryConsumers>,
    pub outbound: Arc<sluice::plugin::services::HyperOutbound>,
}

pub fn fixture_with(config: HostConfig) -> Fixture {
    let metrics = Arc::new(MemoryMetrics::default());
    let consumers = Arc::new(MemoryConsumers::default());
    let outbound = Arc::new(sluice::plugin::services::HyperOutbound::new(
        Default::default(),
    ));
    let mut services = HostServices::local();
    services.metrics = metrics.clone();
    services.consumers = consumers.clone();
    services.outbound = outbound.clone();
    let engine = PluginEngine::new(config, services).expect("engine");
    Fixture {
        registry: PluginRegistry::new(engine, Arc::new(MemoryArtifactCache::default())),
        metrics,
        consumers,
        outbound,
    }
}

/// One registry shared by the tests of a binary, with every fixture loaded once.
pub fn shared() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let f = fixture_with(HostConfig::default());
        for name in ["noop", "add-header", "phases", "faults"] {
            f.registry.load(name, &component(name)).expect(name);
        }
        f
    })
}

pub fn request(path: &str) -> RequestState {
    RequestState {
        path: path.to_string(),
        route_id: "r1".to_string(),
        client_addr: "10.1.2.3:5555".parse().expect("addr"),
        ..RequestState::default()
    }
}
