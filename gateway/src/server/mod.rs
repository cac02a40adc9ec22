//! `sluice serve`: open the store, build the first snapshot, bind the listeners, run until a signal,
//! then drain.
//!
//! Shutdown order: stop accepting, let in-flight requests finish (bounded by `--shutdown-timeout`),
//! then flush the store so nothing acknowledged is lost. With an etcd store, a [`Watcher`] task keeps the
//! live snapshot in step with etcd from the first snapshot on.

use crate::access_log::{AccessLog, DroppedCollector};
use crate::admin::{self, AdminKey, AdminState};
use crate::catalog::Catalog;
use crate::cluster::{self, Mirror, Watcher};
use crate::consumers::LiveConsumers;
use crate::log_sink::LogSinks;
use crate::metrics::{self, HttpMetrics, Metrics, PluginDefinedMetrics};
use crate::plugin::services::LocalCache;
use crate::plugin::{ArtifactCache, HostConfig, HostServices, PluginEngine, PluginRegistry};
use crate::proxy::ProxyState;
use crate::settings::Settings;
use crate::snapshot::{ConfigSet, Live, Snapshot};
use crate::store::etcd::{EtcdStore, EtcdUrl};
use crate::store::{ConfigStore, SledArtifacts, SledStore, StoredObject};
use crate::tls::TlsAcceptor;
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

mod accept;
mod connection;

use accept::ProxyListener;
use connection::ConnServer;

async fn bind(name: &'static str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {name} listener on {addr}"))?;
    let bound = listener.local_addr()?;
    tracing::info!(listener = name, addr = %bound, "listening");
    Ok(listener)
}

/// The store, the compiled-artifact cache, and what the store held at start.
struct Opened {
    store: Arc<dyn ConfigStore>,
    artifacts: Arc<dyn ArtifactCache>,
    plugins: Vec<(String, Vec<u8>)>,
    objects: Vec<StoredObject>,
    /// With etcd: the store again and this node's first copy of it, for the watcher.
    cluster: Option<(Arc<EtcdStore>, Mirror)>,
}

async fn open_store(settings: &Settings) -> anyhow::Result<Opened> {
    let url = settings.config_store.as_str();
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating data dir {}", settings.data_dir.display()))?;
    match url {
        "sled" => {
            let store = SledStore::open(&settings.data_dir)
                .with_context(|| format!("opening the store in {}", settings.data_dir.display()))?;
            let artifacts = Arc::new(store.artifact_cache());
            let plugins = store
                .load_plugins()
                .await
                .context("loading stored plugins")?;
            let objects = store.load_all().await.context("loading stored config")?;
            Ok(Opened {
                store: Arc::new(store),
                artifacts,
                plugins,
                objects,
                cluster: None,
            })
        }
        other if other.starts_with("etcd://") => {
            let url: EtcdUrl = other.parse()?;
            let artifacts = SledArtifacts::open(&settings.data_dir).with_context(|| {
                format!(
                    "opening the artifact cache in {}",
                    settings.data_dir.display()
                )
            })?;
            let joined = cluster::join(&url)
                .await
                .with_context(|| format!("reading the configuration from {other}"))?;
            let mirror = Mirror::from_listing(&joined.listing);
            let store = Arc::new(joined.store);
            Ok(Opened {
                store: Arc::clone(&store) as Arc<dyn ConfigStore>,
                artifacts: Arc::new(artifacts),
                plugins: joined.plugins,
                objects: joined.listing.objects,
                cluster: Some((store, mirror)),
            })
        }
        other => {
            anyhow::bail!("--config-store {other:?}: expected `sled` or `etcd://host:port/prefix`")
        }
    }
}

/// Starts the plugin engine and loads every stored plugin binary (from the compiled-artifact cache when
/// it holds this engine's build of it, so a restart does not recompile).
async fn load_plugins(
    settings: &Settings,
    stored: Vec<(String, Vec<u8>)>,
    artifacts: Arc<dyn ArtifactCache>,
    consumers: Arc<LiveConsumers>,
    plugin_metrics: Arc<PluginDefinedMetrics>,
    log_sinks: Arc<LogSinks>,
) -> anyhow::Result<Catalog> {
    // One cached response may use a sixteenth of the cache (and never more than the host tees).
    let max_entry = (settings.cache_bytes / 16).max(64 << 10);
    let services = HostServices {
        consumers,
        cache: Arc::new(LocalCache::new(settings.cache_bytes, max_entry)),
        metrics: plugin_metrics,
        log_sinks,
        ..HostServices::local()
    };
    let engine = PluginEngine::new(HostConfig::default(), services)
        .map_err(|e| anyhow::anyhow!("starting the plugin engine: {e}"))?;
    let registry = Arc::new(PluginRegistry::new(engine, artifacts));
    for (name, bytes) in stored {
        let reg = Arc::clone(&registry);
        let n = name.clone();
        let loaded = tokio::task::spawn_blocking(move || reg.load(&n, &bytes)).await?;
        match loaded {
            Ok(p) => tracing::info!(
                plugin = %name,
                sha256 = %p.sha256(),
                from_cache = p.loaded_from_cache(),
                load_ms = p.load_time().as_secs_f64() * 1000.0,
                "wasm plugin loaded"
            ),
            Err(e) => {
                tracing::error!(plugin = %name, error = %e, "stored wasm plugin failed to load")
            }
        }
    }
    let registry = Arc::try_unwrap(registry)
        .map_err(|_| anyhow::anyhow!("plugin registry still shared after loading"))?;
    Ok(Catalog::new(registry))
}

/// Serves an axum app (admin API, metrics) on its own task until `stop` turns true.
fn serve_until_stopped(
    name: &'static str,
    listener: TcpListener,
    app: axum::Router,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        });
        if let Err(e) = serve.await {
            tracing::error!(listener = name, error = %e, "listener failed");
        }
    })
}

/// SIGTERM and SIGINT, registered before any listener is bound: a signal that arrives after the
/// "listening" line but before the accept loop first polls must still mean "drain and exit", not the
/// default action of dying on the spot.
#[cfg(unix)]
struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl ShutdownSignals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(ShutdownSignals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
    }
}

#[cfg(not(unix))]
struct ShutdownSignals;

#[cfg(not(unix))]
impl ShutdownSignals {
    fn install() -> anyhow::Result<Self> {
        Ok(ShutdownSignals)
    }

    async fn recv(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let mut signals = ShutdownSignals::install()?;
    // Before any upstream is built: DNS names in nodes and `discovery_type` resolve through these.
    crate::upstream::discovery::install(crate::upstream::discovery::Registry::standard(
        &settings.dns_resolvers,
    ));
    if !settings.dns_resolvers.is_empty() {
        tracing::info!(servers = ?settings.dns_resolvers, "service discovery resolves through the given DNS servers");
    }
    let Opened {
        store,
        artifacts,
        plugins,
        objects,
        cluster,
    } = open_store(&settings).await?;
    let consumers = Arc::new(LiveConsumers::default());
    let plugin_metrics = Arc::new(PluginDefinedMetrics::default());
    let log_sinks = Arc::new(LogSinks::new(Some(settings.plugin_log_dir.clone())));
    let catalog = Arc::new(
        load_plugins(
            &settings,
            plugins,
            artifacts,
            Arc::clone(&consumers),
            Arc::clone(&plugin_metrics),
            Arc::clone(&log_sinks),
        )
        .await?,
    );
    let count = objects.len();
    // Off the async workers: the first build compiles the built-in plugins the config uses.
    let cat = Arc::clone(&catalog);
    let snapshot = tokio::task::spawn_blocking(move || {
        Snapshot::build(ConfigSet::from_objects(objects), None, &cat)
    })
    .await?
    .context("the stored configuration does not validate")?;
    tracing::info!(objects = count, "configuration loaded");
    let live = Arc::new(Live::new(snapshot));
    consumers.bind(&live);

    std::fs::create_dir_all(&settings.data_dir)?;
    let (key, source) = AdminKey::resolve(settings.admin_key.clone(), &settings.data_dir)?;
    match source {
        admin::KeySource::Configured => {}
        admin::KeySource::File(p) => {
            tracing::info!(path = %p.display(), "admin key read from file")
        }
        admin::KeySource::Generated(p) => {
            tracing::warn!(path = %p.display(), "no admin key configured: generated one; send it as X-API-KEY")
        }
    }

    let proxy_listener = bind("http", settings.listen).await?;
    let admin_listener = bind("admin", settings.admin_listen).await?;
    let tls_listener = bind("https", settings.tls_listen).await?;
    let tls_acceptor = Arc::new(TlsAcceptor::new(Arc::clone(&live))?);
    let metrics_listener = match settings.metrics_listen {
        Some(addr) => Some(bind("metrics", addr).await?),
        None => {
            tracing::info!("metrics off: no /metrics, /status or /status/ready, nothing counted");
            None
        }
    };
    let tracer = match &settings.otlp_endpoint {
        Some(endpoint) => {
            let t = crate::otel::Tracer::start(endpoint)?;
            tracing::info!(%endpoint, "exporting request spans over OTLP/HTTP");
            Some(Arc::new(t))
        }
        None => None,
    };
    let access_log = match settings.access_log.clone() {
        Some(target) => Some(Arc::new(
            AccessLog::start(target, settings.access_log_format.clone())
                .context("opening the access log")?,
        )),
        None => None,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut http_metrics = None;
    let mut metrics_task = None;
    if let Some(listener) = metrics_listener {
        let http = Arc::new(HttpMetrics::new(Arc::clone(&live)));
        let mut exporter = Metrics::new(
            Arc::clone(&http),
            Arc::clone(&live),
            Arc::clone(&catalog),
            plugin_metrics,
        )
        .with_collector(Box::new(Arc::clone(&log_sinks)));
        if let Some(log) = &access_log {
            exporter = exporter.with_collector(Box::new(DroppedCollector(Arc::clone(log))));
        }
        let app = metrics::endpoint::router(Arc::new(exporter), Arc::clone(&store));
        metrics_task = Some(serve_until_stopped(
            "metrics",
            listener,
            app,
            stop_rx.clone(),
        ));
        http_metrics = Some(http);
    }
    let admin_state = Arc::new(AdminState::new(
        Arc::clone(&store),
        Arc::clone(&live),
        catalog,
        key,
    ));
    let watcher = cluster.map(|(etcd, mirror)| {
        let watcher = Watcher::new(etcd, Arc::clone(&admin_state), mirror);
        tokio::spawn(watcher.run(stop_rx.clone()))
    });
    let admin_app = admin::router(admin_state);
    let admin_task = serve_until_stopped("admin", admin_listener, admin_app, stop_rx.clone());

    let state = Arc::new(ProxyState {
        live: Arc::clone(&live),
        metrics: http_metrics.clone(),
        access_log: access_log.clone(),
        tracer: tracer.clone(),
        limits: settings.limits,
    });
    let server = Arc::new(ConnServer::new(
        settings.limits,
        state,
        http_metrics.clone(),
        stop_rx,
    ));
    let http = ProxyListener::new("http", proxy_listener, &settings.limits, settings.listen);
    let https = ProxyListener::new("https", tls_listener, &settings.limits, settings.tls_listen);
    loop {
        tokio::select! {
            (stream, conn, slot) = http.admit() => server.spawn_plain(stream, conn, slot),
            (stream, conn, slot) = https.admit() => {
                server.spawn_tls(stream, conn, slot, Arc::clone(&tls_acceptor));
            }
            () = signals.recv() => break,
        }
    }

    tracing::info!("shutting down: no new connections; draining in-flight requests");
    drop(http);
    drop(https);
    let _ = stop_tx.send(true);
    if server.drain(settings.shutdown_timeout).await {
        tracing::info!("all connections drained");
    } else {
        tracing::warn!(timeout = ?settings.shutdown_timeout, "shutdown timeout reached; closing remaining connections");
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), admin_task).await;
    if let Some(task) = metrics_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    if let Some(watcher) = watcher {
        let _ = tokio::time::timeout(Duration::from_secs(5), watcher).await;
    }
    store.flush().await.context("flushing the store")?;
    if let Some(log) = access_log {
        // Lines of requests that finished during the drain are still buffered.
        tokio::task::spawn_blocking(move || log.close(Duration::from_secs(2))).await?;
    }
    log_sinks.shutdown(Duration::from_secs(5)).await;
    if let Some(t) = tracer {
        // So are spans.
        tokio::task::spawn_blocking(move || t.shutdown(Duration::from_secs(2))).await?;
    }
    tracing::info!("stopped");
    Ok(())
}
